"""train.py end to end on small synthetic data: one process, two processes (gloo), resume, errors."""
import glob
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from mvn.models.conpose import CA_PF
from mvn.models.weights import load_model_checkpoint
from mvn.utils.cfg import load_config
from tests.helpers import free_port, run_together, write_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')


def train(*args, nproc=0, env=None, timeout=600, device='cpu'):
    """Runs train.py plainly (nproc=0) or under the launcher of the original README, by default
    on the CPU (also where a GPU is present, so that several ranks never share one)."""
    launcher = [] if nproc == 0 else ['-m', 'torch.distributed.launch', '--nproc_per_node=%d' % nproc,
                                      '--master_port=%s' % free_port()]
    return subprocess.run([sys.executable, *launcher, 'train.py', *args, '--device', device], cwd=REPO,
                          capture_output=True, text=True, env=env or ENV, timeout=timeout)


def run_dirs(logdir):
    return sorted(glob.glob(os.path.join(str(logdir), '*@*')))


@pytest.fixture(scope='module')
def trained(tmp_path_factory, processed_data):
    """One plain two-epoch training run, shared by the checks below."""
    base = tmp_path_factory.mktemp('train')
    config = write_config(base / 'tiny.yaml', processed_data)
    result = train('--config', config, '--logdir', str(base / 'logs'))
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = run_dirs(base / 'logs')
    return {'config': config, 'base': base, 'run_dir': run_dir, 'stdout': result.stdout}


def test_plain_run_writes_the_run_directory(trained):
    run_dir = trained['run_dir']
    assert os.path.basename(run_dir).startswith('tiny_hrnet_tiny@')
    for name in ('config.yaml', 'log.txt', 'eval_epoch_001.json', 'eval_epoch_002.json',
                 'checkpoints/best_epoch.bin', 'checkpoints/last.pth'):
        assert os.path.isfile(os.path.join(run_dir, name)), name
    lines = re.findall(r'\[Epoch (\d)\] time: [\d.]+m \| lr: ([\d.]+) \| train-loss: [\d.]+ \| val-p1: [\d.]+ \| '
                       r'val-p2: [\d.]+', trained['stdout'])
    assert [(e, float(lr)) for e, lr in lines] == [('1', 0.001), ('2', 0.00099)]
    # the saved config is the resolved one and loads back to the same values
    assert load_config(os.path.join(run_dir, 'config.yaml')) == load_config(trained['config'])


def test_tensorboard_holds_the_expected_tags(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(os.path.join(trained['run_dir'], 'tb'), size_guidance={'images': 0})
    events.Reload()
    tags = events.Tags()
    for tag in ('train/loss_iter', 'train/lr_iter', 'train/loss_epoch', 'val/p1', 'val/p2', 'val/mpjve',
                'val_actions/p1_Directions', 'val_actions/p1_Discussion', 'val_actions/p2_Directions',
                'val_actions/mpjve_Discussion', 'time/epoch_s',
                'time/train_samples_per_s'):
        assert tag in tags['scalars'], tag
    assert 'val/poses' in tags['images'] and 'config/text_summary' in tags['tensors']
    assert [e.step for e in events.Scalars('val/p1')] == [1, 2]
    with open(os.path.join(trained['run_dir'], 'eval_epoch_002.json')) as f:
        epoch2 = json.load(f)
    assert events.Scalars('val/p1')[1].value == pytest.approx(epoch2['summary']['p1_mm'], rel=1e-6)
    assert events.Scalars('val_actions/p2_Directions')[1].value == pytest.approx(
        epoch2['actions']['Directions']['p2_mm'], rel=1e-6)


def test_best_checkpoint_is_official_and_loads_strictly(trained):
    path = os.path.join(trained['run_dir'], 'checkpoints', 'best_epoch.bin')
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {'epoch', 'lr', 'model', 'optimizer'}
    assert all(k.startswith('module.') for k in saved['model'])
    model = CA_PF(load_config(trained['config']))
    load_model_checkpoint(model, path)


def evaluate(config, checkpoint, logdir, nproc=0, device='cpu', env=None):
    """(eval_results.json, stdout) of ``train.py --eval`` on ``checkpoint``."""
    result = train('--config', config, '--eval', '--checkpoint', checkpoint, '--logdir', str(logdir), nproc=nproc,
                   device=device, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = run_dirs(logdir)
    with open(os.path.join(run_dir, 'eval_results.json')) as f:
        return json.load(f), result.stdout


def test_two_process_evaluation_equals_one_process(trained, processed_data):
    # 23 frames: the two shards are unequal (11 and 12)
    labels = trained['base'] / 'val23.pkl'
    with open(processed_data['val'], 'rb') as f:
        entries = pickle.load(f)
    with open(labels, 'wb') as f:
        pickle.dump(entries[:23], f)
    config = write_config(trained['base'] / 'eval.yaml', dict(processed_data, val=str(labels)))
    checkpoint = os.path.join(trained['run_dir'], 'checkpoints', 'best_epoch.bin')
    single, stdout = evaluate(config, checkpoint, trained['base'] / 'eval1')
    double, stdout2 = evaluate(config, checkpoint, trained['base'] / 'eval2', nproc=2)
    # the printed table: one line per action with frames, then the averages
    table = [line for line in stdout.splitlines() if re.fullmatch(r'\w+: p1=[\d.]+, p2=[\d.]+, e_vel=[\d.]+', line)]
    assert [line.split(':')[0] for line in table] == ['Directions', 'Discussion']
    avg = re.search(r'avg p1: ([\d.]+) p2: ([\d.]+) MPJVE: ([\d.]+)', stdout)
    assert float(avg.group(1)) == round(single['summary']['p1_mm'], 1)
    assert 'gloo' in stdout2
    # Same frames, same order; only float32 rounding may differ (CPU kernels vary with batch size).
    assert double['labels'] == single['labels']
    for action, values in single['actions'].items():
        assert double['actions'][action]['frames'] == values['frames']
        for metric in ('p1_mm', 'p2_mm', 'mpjve_mm'):
            assert double['actions'][action][metric] == pytest.approx(values[metric], rel=1e-6), (action, metric)


def two_nodes(*args, cwds, timeout=600):
    """train.py under torchrun as two nodes of one process each (static rendezvous on this
    machine, node i holds rank i), started together in the working folders ``cwds``."""
    port = free_port()
    commands = [[sys.executable, '-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=%d' % i,
                 '--nproc_per_node=1', '--master_addr=127.0.0.1', '--master_port=%s' % port,
                 os.path.join(REPO, 'train.py'), *args, '--device', 'cpu'] for i in range(len(cwds))]
    return run_together(commands, cwds, ENV, timeout)


def test_two_process_training_then_resumed_on_two_nodes(processed_data, tmp_path):
    config = write_config(tmp_path / 'tiny.yaml', processed_data, **{'train.n_epochs': 1})
    result = train('--config', config, '--logdir', str(tmp_path / 'logs'), nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'world size 2' in result.stdout and result.stdout.count('[Epoch 1]') == 1   # rank 0 alone prints
    (run_dir,) = run_dirs(tmp_path / 'logs')
    assert os.path.isfile(os.path.join(run_dir, 'checkpoints', 'best_epoch.bin'))
    with open(os.path.join(run_dir, 'config.yaml')) as f:
        original_config = f.read()

    # The same run continued for a second epoch by torchrun on two "nodes" that share no files:
    # the relative --logdir exists only where the first node runs, so rank 0 must hand the state on.
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    nodes = two_nodes('--config', config, '--logdir', 'logs', '--resume', 'auto', '--epochs', '2',
                      cwds=[tmp_path, elsewhere])
    assert [n.returncode for n in nodes] == [0, 0], [n.stderr[-3000:] for n in nodes]
    printed = nodes[0].stdout + nodes[1].stdout
    assert printed.count('resumed from') == 1 and printed.count('[Epoch 2]') == 1 and '[Epoch 1]' not in printed
    assert 'world size 2' in nodes[0].stdout and nodes[1].stdout == ''
    assert "warning: the config differs from the resumed run's: train.n_epochs: 1 -> 2" in printed
    assert run_dirs(tmp_path / 'logs') == [run_dir] and os.listdir(elsewhere) == []
    with open(os.path.join(run_dir, 'config.yaml')) as f:
        assert f.read() == original_config                          # what the first run wrote stays
    assert load_config(os.path.join(run_dir, 'config_resumed_epoch001.yaml')).train.n_epochs == 2
    last = torch.load(os.path.join(run_dir, 'checkpoints', 'last.pth'), weights_only=True)
    assert last['epoch'] == 2 and last['lr'] == pytest.approx(0.001 * 0.99 ** 2)

    # Every rank continued as in an uninterrupted two-process run: the same weights, bit for bit.
    straight = train('--config', config, '--logdir', str(tmp_path / 'straight'), '--epochs', '2', nproc=2)
    assert straight.returncode == 0, straight.stderr[-3000:]
    (straight_last,) = glob.glob(str(tmp_path / 'straight' / '*' / 'checkpoints' / 'last.pth'))
    straight_last = torch.load(straight_last, weights_only=True)
    assert (straight_last['epoch'], straight_last['best_p1']) == (last['epoch'], last['best_p1'])
    for key, value in straight_last['model'].items():
        assert torch.equal(value, last['model'][key]), key


def test_resume_continues_exactly(trained, processed_data, tmp_path):
    # The uninterrupted reference is the shared plain run: the same config, two epochs.
    config = write_config(tmp_path / 'tiny.yaml', processed_data)
    assert load_config(config) == load_config(trained['config'])
    first = train('--config', config, '--logdir', str(tmp_path / 'resumed'), '--epochs', '1')
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = train('--config', config, '--logdir', str(tmp_path / 'resumed'), '--epochs', '2', '--resume', 'auto')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resumed from' in resumed.stdout and '[Epoch 1]' not in resumed.stdout and '[Epoch 2]' in resumed.stdout
    assert len(run_dirs(tmp_path / 'resumed')) == 1                     # the same run directory continues

    a = os.path.join(trained['run_dir'], 'checkpoints', 'last.pth')
    (b,) = glob.glob(str(tmp_path / 'resumed' / '*' / 'checkpoints' / 'last.pth'))
    a, b = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert (a['epoch'], a['lr'], a['best_p1']) == (b['epoch'], b['lr'], b['best_p1'])
    assert b['epoch'] == 2 and b['lr'] == pytest.approx(0.001 * 0.99 ** 2)
    for key, value in a['model'].items():
        assert torch.equal(value, b['model'][key]), key


def test_nodes_with_different_configs_stop_with_an_error_not_a_hang(processed_data, tmp_path):
    nodes = [tmp_path / 'node0', tmp_path / 'node1']
    for node, epochs, root in zip(nodes, (1, 2), ('images', 'elsewhere')):    # roots may differ, epochs not
        node.mkdir()
        write_config(node / 'tiny.yaml', dict(processed_data, root=root), **{'train.n_epochs': epochs})
    results = two_nodes('--config', 'tiny.yaml', '--logdir', str(tmp_path / 'logs'), cwds=nodes, timeout=240)
    assert all(r.returncode != 0 for r in results)
    assert ('error: rank 1 resolved another config than rank 0 from tiny.yaml: train.n_epochs: 1 -> 2'
            in results[1].stderr.splitlines())
    assert 'error: another rank resolved another config than this one (rank 0)' in results[0].stderr.splitlines()
    assert not os.path.exists(tmp_path / 'logs')                # stopped before anything was written


def test_nodes_that_share_no_folder_each_make_the_synthetic_data(tmp_path):
    nodes = [tmp_path / 'node0', tmp_path / 'node1']
    relative = {'root': 'data/images', 'train': 'data/train.pkl', 'val': 'data/val.pkl'}
    spec = {'subjects': [1, 9], 'actions': [2], 'subactions': [1], 'cameras': [1], 'frames': 2}
    for node in nodes:
        node.mkdir()
        write_config(node / 'synthetic.yaml', relative, **{'dataset.synthetic': spec, 'train.n_epochs': 1})
    results = two_nodes('--config', 'synthetic.yaml', '--logdir', 'logs', cwds=nodes, timeout=240)
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-3000:] for r in results]
    assert '[Epoch 1]' in results[0].stdout
    # The generator is seeded: both copies are the same, byte for byte.
    made = [sorted(str(p.relative_to(node)) for p in (node / 'data').rglob('*') if p.is_file()) for node in nodes]
    assert made[0] == made[1] and 'data/train.pkl' in made[0] and 'data/train.pkl.synthetic.json' in made[0]
    for name in made[0]:
        if '.cache' not in name:                                # the label cache records mtimes
            assert (nodes[0] / name).read_bytes() == (nodes[1] / name).read_bytes(), name


def test_one_failing_rank_ends_the_whole_job(processed_data, tmp_path):
    import shutil
    images = tmp_path / 'images'
    shutil.copytree(processed_data['root'], images)
    with open(processed_data['val'], 'rb') as f:
        last = pickle.load(f)[-1]                                   # in rank 1's shard only
    os.remove(images / last['image'])
    config = write_config(tmp_path / 'tiny.yaml', dict(processed_data, root=str(images)))
    checkpoint = tmp_path / 'model.bin'
    torch.save({'model': CA_PF(load_config(config)).state_dict()}, checkpoint)
    result = train('--config', config, '--eval', '--checkpoint', str(checkpoint), '--logdir', str(tmp_path / 'logs'),
                   nproc=2, timeout=240)
    assert result.returncode != 0
    assert 'error: missing image: %s' % (images / last['image']) in result.stderr


def one_line_error(result):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1
    return lines[-1]


def test_bad_inputs_give_one_line_errors(trained, tmp_path):
    corrupt = tmp_path / 'corrupt.bin'
    corrupt.write_bytes(b'garbage')
    line = one_line_error(train('--config', trained['config'], '--eval', '--checkpoint', str(corrupt),
                                '--logdir', str(tmp_path)))
    assert line == 'error: not a PyTorch checkpoint: %s (a text file)' % corrupt
    line = one_line_error(train('--config', trained['config'], '--eval', '--logdir', str(tmp_path)))
    assert line == ('error: checkpoint file not found: %s/checkpoint/best_epoch_hrnet_tiny.bin '
                    '(place the released checkpoint there or pass --checkpoint)' % REPO)   # the official default
    line = one_line_error(train('--config', str(tmp_path / 'nope.yaml'), '--logdir', str(tmp_path)))
    assert line == 'error: config file not found: %s' % (tmp_path / 'nope.yaml')
    last = os.path.join(trained['run_dir'], 'checkpoints', 'last.pth')
    wider = write_config(tmp_path / 'wider.yaml', {'root': 'x', 'train': 'x', 'val': 'x'},
                         **{'model.poseformer.embed_dim_ratio': 24})
    line = one_line_error(train('--config', wider, '--resume', last, '--logdir', str(tmp_path)))
    assert line.startswith('error: shape mismatch loading %s: ' % last) and 'file' in line and 'vs model' in line
    assert not glob.glob(os.path.join(trained['run_dir'], 'config_resumed*'))    # the run was left as it was
    env = dict(ENV, WORLD_SIZE='2', RANK='0')
    line = one_line_error(train('--config', trained['config'], '--logdir', str(tmp_path), env=env))
    assert line.startswith('error: RANK, WORLD_SIZE set but MASTER_ADDR, MASTER_PORT missing')


@pytest.mark.parametrize('signum, code, said, logged', [(signal.SIGINT, 130, 'interrupted', 'KeyboardInterrupt'),
                                                         (signal.SIGTERM, 143, 'terminated', 'Terminated')])
def test_ctrl_c_or_sigterm_stops_cleanly_and_the_log_says_so(processed_data, tmp_path, signum, code, said, logged):
    config = write_config(tmp_path / 'tiny.yaml', processed_data, **{'train.n_epochs': 1000})
    run = subprocess.Popen([sys.executable, 'train.py', '--config', config, '--logdir', str(tmp_path / 'logs'),
                            '--device', 'cpu'], cwd=REPO, env=ENV, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        start = time.time()
        while not glob.glob(str(tmp_path / 'logs' / '*' / 'eval_epoch_001.json')):
            assert run.poll() is None and time.time() - start < 120, 'no first epoch'
            time.sleep(0.1)
        run.send_signal(signum)
        _, stderr = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == code and stderr.strip().splitlines()[-1] == said, stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path / 'logs')
    with open(os.path.join(run_dir, 'log.txt')) as f:
        assert f.read().splitlines()[-1].endswith(' stopped: %s' % logged)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(os.path.join(run_dir, 'tb'))
    events.Reload()                                                 # flushed on the way out
    assert [e.step for e in events.Scalars('val/p1')][:1] == [1]


def test_flags_that_do_not_go_together_are_refused(trained, tmp_path):
    for flags, message in ((['--checkpoint', 'x.bin'], '--checkpoint is for --eval'),
                           (['--eval', '--resume', 'auto'], '--resume continues training')):
        result = train('--config', trained['config'], '--logdir', str(tmp_path), *flags)
        assert result.returncode == 2 and message in result.stderr.strip().splitlines()[-1]
    assert os.listdir(tmp_path) == []                               # nothing was started


def test_a_missing_frame_in_a_loader_worker_names_the_file(processed_data, tmp_path):
    import shutil
    images = tmp_path / 'images'
    shutil.copytree(processed_data['root'], images)
    victim = sorted(glob.glob(str(images / 's_01_*' / '*.jpg')))[0]
    os.remove(victim)
    config = write_config(tmp_path / 'tiny.yaml', dict(processed_data, root=str(images)),
                          **{'train.num_workers': 1, 'train.n_epochs': 1})
    line = one_line_error(train('--config', config, '--logdir', str(tmp_path / 'logs')))
    assert line == 'error: missing image: %s' % victim
    (run_dir,) = run_dirs(tmp_path / 'logs')
    with open(os.path.join(run_dir, 'log.txt')) as f:           # the run's log says why it stopped
        assert f.read().splitlines()[-1].endswith(' stopped: missing image: %s' % victim)
