#!/usr/bin/env python3
"""A bounded fault-injection campaign against train.py on a small synthetic config.

    python bench/fault_campaign.py            # the figures (a few minutes on a quiet machine)
    python bench/fault_campaign.py --quick    # a check that the campaign works (fewer trials)

1. **kill -9**: a run (the synthetic config's model on a small generated dataset, 4 epochs, 2
   loader workers) is killed, its whole process group with SIGKILL, at a random moment of its
   training, then continued with ``--resume auto`` until it finishes. A kill is survived when
   every checkpoint left behind loads and the finished run's last.pth equals an uninterrupted
   run's bit for bit (weights, epoch, learning rate, best score). Epochs lost: epochs whose
   training had finished before the kill and was done again after it (counted by a probe
   around ``Trainer.train_epoch``).
2. **SIGTERM to the process group** (scancel, docker stop) at a random moment: clean when the
   exit status is 143 (a run still starting, before its handlers exist, dies of the signal: the
   same status for a shell) and nothing on stderr looks like a traceback.
3. **Bad inputs** (48 kinds: configs, label files, images, checkpoints, flags, launcher
   variables): each must exit non-zero with one error line and no traceback.

Prints one line per trial, then
``kills survived X of Y, epochs lost Z, bad inputs with a clear one-line error A of B``.
All runs use OMP_NUM_THREADS=1 (float sums are bit-identical only for one thread count).
"""
import argparse
import concurrent.futures
import glob
import io
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
EPOCHS = 4

# train.py with a probe: every epoch whose training finished is appended to the file argv[1].
PROBED = r'''
import os, sys
sys.path.insert(0, %r)
import train
from mvn import training
train_epoch = training.Trainer.train_epoch
def probed(self, *args, **kwargs):
    stats = train_epoch(self, *args, **kwargs)
    with open(sys.argv[1], 'a') as f:
        f.write('%%d\n' %% (self.epoch + 1))
        f.flush()
        os.fsync(f.fileno())
    return stats
training.Trainer.train_epoch = probed
train.cli(sys.argv[2:])
''' % REPO


def write_config(folder, **overrides):
    """The synthetic config's model and schedule on a small dataset generated in ``folder``."""
    with open(os.path.join(REPO, 'experiments', 'synthetic', 'synthetic.yaml')) as f:
        tree = yaml.safe_load(f)
    tree['dataset'] = {'root': 'data/images', 'train_labels_path': 'data/train.pkl', 'val_labels_path': 'data/val.pkl',
                       'synthetic': {'subjects': [1, 5, 9], 'actions': [2, 3], 'subactions': [1, 2], 'cameras': [1, 2],
                                     'frames': 6, 'seed': 0}}
    tree['train'].update(n_epochs=EPOCHS, batch_size=16, num_workers=2)
    tree['val'].update(batch_size=16, num_workers=2)
    tree['vis_n_elements'] = 1
    for dotted, value in overrides.items():
        node = tree
        *parents, leaf = dotted.split('.')
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path = os.path.join(folder, 'campaign_%d.yaml' % len(glob.glob(os.path.join(folder, 'campaign_*.yaml'))))
    with open(path, 'w') as f:
        yaml.safe_dump(tree, f)
    return path


def start(folder, probe, *args):
    return subprocess.Popen([sys.executable, '-c', PROBED, probe, *args, '--device', 'cpu'], cwd=folder, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def run(folder, probe, *args, timeout=900):
    process = start(folder, probe, *args)
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def last_state(logdir):
    import torch
    (path,) = glob.glob(os.path.join(logdir, '*@*', 'checkpoints', 'last.pth'))
    return torch.load(path, weights_only=True)


def same_run(a, b):
    import torch
    same_figures = all(a[key] == b[key] for key in ('epoch', 'lr', 'best_p1', 'pending'))
    return (same_figures and a['model'].keys() == b['model'].keys()
            and all(torch.equal(a['model'][k], b['model'][k]) for k in a['model']))


def checkpoints_load(logdir):
    import torch
    for path in glob.glob(os.path.join(logdir, '*@*', 'checkpoints', '*')):
        try:
            torch.load(path, weights_only=True)
        except Exception:
            return False
    return True


def trained_epochs(probe):
    if not os.path.exists(probe):
        return []
    with open(probe) as f:
        return [int(line) for line in f.read().split()]


def kill_trial(folder, config, reference, window, rng, n):
    """One kill -9 at a random moment of ``window`` (seconds after start), then --resume auto
    until done. Returns (survived, epochs lost)."""
    logdir, probe = os.path.join(folder, 'kill%d' % n), os.path.join(folder, 'kill%d.epochs' % n)
    process = start(folder, probe, '--config', config, '--logdir', logdir)
    moment = rng.uniform(*window)
    try:
        process.wait(timeout=moment)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    before = trained_epochs(probe)
    loadable = checkpoints_load(logdir)
    for _ in range(3):                              # --resume auto until the run is finished
        code, _, err = run(folder, probe, '--config', config, '--logdir', logdir, '--resume', 'auto')
        if code != 0:
            print('    resume failed: %s' % err.strip().splitlines()[-1:], flush=True)
            return False, 0
        if last_state(logdir)['epoch'] == EPOCHS:
            break
    after = trained_epochs(probe)
    lost = len(after) - EPOCHS                      # finished trainings done twice
    survived = loadable and same_run(last_state(logdir), reference)
    print('  kill at %5.1f s: %d epoch(s) trained before, %s, %d epoch(s) lost'
          % (moment, len(before), 'identical final weights' if survived else 'DIFFERENT or unloadable', lost),
          flush=True)
    return survived, lost


def sigterm_trial(folder, config, window, rng, n):
    process = start(folder, os.path.join(folder, 'term%d.epochs' % n), '--config', config,
                    '--logdir', os.path.join(folder, 'term%d' % n))
    moment = rng.uniform(*window)
    try:
        process.wait(timeout=moment)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    lines = error_lines(err)
    clean = (process.returncode in (143, -signal.SIGTERM) and 'Traceback' not in err
             and (process.returncode != 143 or lines == ['terminated']))
    print('  SIGTERM at %5.1f s: exit %s, %s' % (moment, process.returncode, 'clean' if clean else 'NOT CLEAN: %s'
                                                 % lines[-3:]), flush=True)
    return clean


def error_lines(err):
    """stderr without progress bars."""
    return [line for line in re.split(r'[\r\n]', err) if line.strip() and not re.search(r'\d+/\d+ \[|it/s|s/it', line)]


# ----------------------------------------------------------------------------------------------
# Bad inputs: (name, arguments, environment changes, files to make) -> run, then judge stderr.

def bad_inputs(folder, config):
    """[(name, argv, env)] of 48 bad inputs; files they need are made in ``folder``."""
    import numpy as np
    import torch
    bad = os.path.join(folder, 'bad')
    os.makedirs(bad, exist_ok=True)
    data = os.path.join(folder, 'data')
    with open(os.path.join(data, 'train.pkl'), 'rb') as f:
        labels = pickle.load(f)

    def path(name):
        return os.path.join(bad, name)

    def write(name, content):
        with open(path(name), 'wb' if isinstance(content, bytes) else 'w') as f:
            f.write(content)
        return path(name)

    def labels_file(name, change):
        entries = [dict(entry) for entry in labels]
        change(entries)
        with open(path(name), 'wb') as f:
            pickle.dump(entries, f)
        return path(name)

    def labels_config(train_labels):
        return write_config(folder, **{'dataset.train_labels_path': train_labels, 'dataset.synthetic': {}})

    def set_entry(key, value, index=3):
        def change(entries):
            array = np.array(entries[index][key], copy=True)
            array.flat[0] = value
            entries[index][key] = array
        return change

    def checkpoint_bytes(obj):
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return buffer.getvalue()

    class RunsCode:
        def __reduce__(self):
            return (os.system, ('echo ran',))

    with zipfile.ZipFile(path('other.zip'), 'w') as archive:
        archive.writestr('notes.txt', 'not weights')
    images = os.path.join(bad, 'images')
    if not os.path.isdir(images):
        shutil.copytree(os.path.join(data, 'images'), images)
    first_image = os.path.join(images, labels[0]['image'])
    broken_images = os.path.join(bad, 'broken_images')
    if not os.path.isdir(broken_images):
        shutil.copytree(os.path.join(data, 'images'), broken_images)
    with open(os.path.join(broken_images, labels[0]['image']), 'wb') as f:
        f.write(b'\xff\xd8\xff not a whole jpeg')
    os.remove(first_image)
    run = ['--config', config, '--logdir', os.path.join(folder, 'badlogs')]
    evaluate = run + ['--eval', '--checkpoint']
    yaml_text = open(config).read()
    cases = [
        ('config file missing', ['--config', path('absent.yaml')], {}),
        ('config is a folder', ['--config', bad], {}),
        ('config not UTF-8', ['--config', write('latin1.yaml', yaml_text.encode() + b'title: caf\xe9\n')], {}),
        ('config YAML syntax', ['--config', write('syntax.yaml', 'train: {batch_size: [8\n')], {}),
        ('config is a list', ['--config', write('list.yaml', '- 1\n- 2\n')], {}),
        ('misspelled section', ['--config', write_config(folder, **{'trian': {'batch_size': 8}})], {}),
        ('misspelled key', ['--config', write_config(folder, **{'train.batch_sise': 8})], {}),
        ('batch size 0', ['--config', write_config(folder, **{'train.batch_size': 0})], {}),
        ('batch size negative', ['--config', write_config(folder, **{'train.batch_size': -4})], {}),
        ('batch size not a number', ['--config', write_config(folder, **{'train.batch_size': 'many'})], {}),
        ('epochs negative', ['--config', write_config(folder, **{'train.n_epochs': -1})], {}),
        ('workers negative', ['--config', write_config(folder, **{'train.num_workers': -1})], {}),
        ('learning rate 0', ['--config', write_config(folder, **{'train.volume_net_lr': 0})], {}),
        ('unknown backbone', ['--config', write_config(folder, **{'model.backbone.type': 'resnet_9'})], {}),
        ('unknown dataset kind', ['--config', write_config(folder, **{'dataset.kind': 'coco'})], {}),
        ('base_dim against the backbone', ['--config', write_config(folder, **{'model.poseformer.base_dim': 32})], {}),
        ('crop size against the labels', ['--config', write_config(folder, **{'model.image_shape': [96, 128]})], {}),
        ('unknown 2D keypoint source', ['--config', write_config(folder, **{'dataset.keypoints_2d': 'openpose'})], {}),
        ('model.checkpoint missing', ['--config', write_config(folder, **{'model.checkpoint': path('none.pth')})], {}),
        ('COCO weights missing', ['--config', write_config(folder, **{'model.backbone.type': 'hrnet_32',
                                                                     'model.backbone.checkpoint': path('none.pth')})],
         {}),
        ('label file missing', ['--config', labels_config(path('absent.pkl'))], {}),
        ('label file garbage', ['--config', labels_config(write('garbage.pkl', b'\x00garbage'))], {}),
        ('label file holds a dict', ['--config', labels_config(write('dict.pkl', pickle.dumps({'a': 1})))], {}),
        ('label file empty list', ['--config', labels_config(write('empty.pkl', pickle.dumps([])))], {}),
        ('label entry lacks a key', ['--config', labels_config(labels_file('nokey.pkl', lambda e: e[2].pop('center')))],
         {}),
        ('label with a wrong shape', ['--config', labels_config(labels_file(
            'shape.pkl', lambda e: e[2].update(joints_3d=np.zeros((16, 3)))))], {}),
        ('NaN 3D label', ['--config', labels_config(labels_file('nan.pkl', set_entry('joints_3d', np.nan)))], {}),
        ('inf crop centre', ['--config', labels_config(labels_file('inf.pkl', set_entry('center', np.inf)))], {}),
        ('missing image', ['--config', write_config(folder, **{'dataset.root': images, 'dataset.synthetic': {}})], {}),
        ('broken image', ['--config', write_config(folder, **{'dataset.root': broken_images,
                                                              'dataset.synthetic': {}})], {}),
        ('checkpoint missing', evaluate + [path('absent.bin')], {}),
        ('checkpoint is text', evaluate + [write('text.bin', 'epoch: 3\n')], {}),
        ('checkpoint random bytes', evaluate + [write('random.bin', bytes(random.Random(0).randrange(256)
                                                                          for _ in range(4096)))], {}),
        ('checkpoint another zip', evaluate + [path('other.zip')], {}),
        ('checkpoint a code pickle', evaluate + [write('code.bin', pickle.dumps({'model': RunsCode()}))], {}),
        ('checkpoint truncated', evaluate + [write('truncated.bin', checkpoint_bytes({'model': {'w': torch.ones(999)}})
                                                   [:2000])], {}),
        ('checkpoint of another model',
         evaluate + [write('other.bin', checkpoint_bytes({'model': {'w': torch.ones(3)}}))], {}),
        ('checkpoint holding a module',
         evaluate + [write('module.bin', checkpoint_bytes({'model': torch.nn.Linear(2, 2)}))], {}),
        ('--resume a config file', run + ['--resume', config], {}),
        ('--resume a missing file', run + ['--resume', path('absent.pth')], {}),
        ('--resume a best_epoch.bin', run + ['--resume', write('best.bin', checkpoint_bytes(
            {'epoch': 1, 'lr': 0.1, 'model': {}, 'optimizer': {}}))], {}),
        ('--epochs negative', run + ['--epochs', '-2'], {}),
        ('--backbone unknown', run + ['--backbone', 'vgg'], {}),
        ('--dist-timeout 0', run + ['--dist-timeout', '0'], {}),
        ('half a launch environment', run, {'WORLD_SIZE': '2', 'RANK': '0'}),
        ('--local_rank without a launcher', run + ['--local_rank', '1'], {}),
        ('--logdir is a file', ['--config', config, '--logdir', write('logdir_file', 'x')], {}),
        ('--device cuda without CUDA', run + ['--device', 'cuda'], {'CUDA_VISIBLE_DEVICES': ''}),
    ]
    return cases


def judge(err, code):
    """(clear, the error line): non-zero, no traceback, one error line (argparse: its usage too)."""
    lines = error_lines(err)
    if code in (0, None) or 'Traceback' in err or not lines:
        return False, lines[-1:] or ['(nothing)']
    if code == 2 and ': error: ' in lines[-1]:       # argparse: "usage: ..." then "train.py: error: ..."
        return True, lines[-1]
    return len(lines) == 1 and lines[0].startswith('error: '), ' | '.join(lines[-3:])


def bad_input_trial(folder, case, names_width):
    name, argv, env = case
    device = [] if '--device' in argv else ['--device', 'cpu']
    process = subprocess.run([sys.executable, os.path.join(REPO, 'train.py'), *argv, *device], cwd=folder,
                             env=dict(ENV, **env), capture_output=True, text=True, timeout=600)
    clear, line = judge(process.stderr, process.returncode)
    print('  %-*s exit %3s  %s  %s' % (names_width, name, process.returncode, 'ok ' if clear else 'BAD', line[:150]),
          flush=True)
    return clear


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='a check: 2 kills, 1 SIGTERM, 6 bad inputs')
    parser.add_argument('--kills', type=int, default=10)
    parser.add_argument('--sigterms', type=int, default=6)
    parser.add_argument('--seed', type=int, default=0, help='of the random moments')
    parser.add_argument('--jobs', type=int, default=2, help='bad inputs run at once')
    parser.add_argument('--workdir', help='keep the runs here (default: a temporary folder, removed)')
    args = parser.parse_args()
    if args.quick:
        args.kills, args.sigterms = 2, 1
    rng = random.Random(args.seed)
    folder = os.path.abspath(args.workdir) if args.workdir else tempfile.mkdtemp(prefix='fault_campaign_')
    os.makedirs(folder, exist_ok=True)
    try:
        config = write_config(folder)
        print('reference: an uninterrupted run of %d epochs in %s' % (EPOCHS, folder), flush=True)
        started = time.monotonic()
        code, _, err = run(folder, os.path.join(folder, 'reference.epochs'), '--config', config,
                           '--logdir', os.path.join(folder, 'reference'))
        if code != 0:
            sys.exit('the reference run failed: %s' % err[-2000:])
        duration = time.monotonic() - started
        reference = last_state(os.path.join(folder, 'reference'))
        window = (0.2 * duration, duration)      # mostly inside training (start-up is the first part)
        print('kill -9 of the process group at random moments, then --resume auto (%d trials):' % args.kills)
        kills = [kill_trial(folder, config, reference, window, rng, n) for n in range(args.kills)]
        print('SIGTERM to the process group at random moments (%d trials):' % args.sigterms)
        terms = [sigterm_trial(folder, config, window, rng, n) for n in range(args.sigterms)]
        cases = bad_inputs(folder, config)
        if args.quick:
            cases = cases[::8]
        print('bad inputs (%d):' % len(cases))
        width = max(len(case[0]) for case in cases)
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            clear = list(pool.map(lambda case: bad_input_trial(folder, case, width), cases))
        print('SIGTERMs ending cleanly (exit 143, no traceback): %d of %d' % (sum(terms), len(terms)))
        print('kills survived %d of %d, epochs lost %d, bad inputs with a clear one-line error %d of %d'
              % (sum(s for s, _ in kills), len(kills), sum(lost for _, lost in kills), sum(clear), len(clear)))
    finally:
        if not args.workdir:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == '__main__':
    main()
