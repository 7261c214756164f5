"""Run directories and stops: no finished epoch is lost, a stopped run resumes to the weights of
an uninterrupted one, runs that fail early leave nothing behind, and what a run records."""
import glob
import json
import os
import re
import signal
import subprocess
import sys

import pytest
import torch

import train
from mvn import engine
from mvn.datasets.label_cache import LabelError
from mvn.models.weights import WeightsError
from mvn.utils.cfg import ConfigError
from tests.helpers import run_main, write_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')

# train.py's command line, stopped at a chosen moment of the first epoch: code patched in, so
# the moment is exact; kill -9 unless said otherwise.
DRIVER = r'''
import os, signal, sys
sys.path.insert(0, %r)
import torch
import train
from mvn import engine, evaluator
from mvn.utils import checkpoint

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

moment = sys.argv[1]
if moment == 'training':                # in the middle of epoch 1's training
    engine.train_one_epoch = die
elif moment == 'evaluating':            # epoch 1 trained, its evaluation under way
    evaluator.Evaluator.__call__ = die
elif moment == 'best saved':            # epoch 1's best_epoch.bin written, last.pth not yet updated
    save_best = checkpoint.save_best
    checkpoint.save_best = lambda *a, **k: (save_best(*a, **k), die())
elif moment == 'sigterm while saving the best':   # SIGTERM arrives inside the best_epoch.bin write
    save_best, save = checkpoint.save_best, torch.save
    def interrupted_save(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        save(*args, **kwargs)
    def best(*args, **kwargs):
        torch.save = interrupted_save
        try:
            save_best(*args, **kwargs)
        finally:
            torch.save = save
    checkpoint.save_best = best
train.cli(sys.argv[2:])
''' % REPO


def run_dirs(logdir):
    return sorted(glob.glob(os.path.join(str(logdir), '*@*')))


def last_state(logdir):
    (path,) = glob.glob(os.path.join(str(logdir), '*@*', 'checkpoints', 'last.pth'))
    return torch.load(path, weights_only=True)


@pytest.fixture(scope='module')
def straight(tmp_path_factory, processed_data):
    """An uninterrupted two-epoch run: the reference for every stopped-and-resumed one."""
    base = tmp_path_factory.mktemp('straight')
    config = write_config(base / 'tiny.yaml', processed_data)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_main('--config', config, '--logdir', str(base / 'logs'))
    finally:
        torch.set_num_threads(threads)
    return {'config': config, 'last': last_state(base / 'logs')}


@pytest.mark.parametrize('moment, code, lost_training', [
    ('training', -signal.SIGKILL, True),
    ('evaluating', -signal.SIGKILL, False),
    ('best saved', -signal.SIGKILL, False),
    ('sigterm while saving the best', 143, False)])
def test_a_stop_after_training_loses_at_most_the_evaluation(straight, tmp_path, monkeypatch, one_thread, capsys,
                                                            moment, code, lost_training):
    logdir = tmp_path / 'logs'
    stopped = subprocess.run([sys.executable, '-c', DRIVER, moment, '--config', straight['config'], '--logdir',
                              str(logdir), '--device', 'cpu'], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                             timeout=300)
    assert stopped.returncode == code, stopped.stderr[-3000:]
    (run_dir,) = run_dirs(logdir)
    if not lost_training:
        state = torch.load(os.path.join(run_dir, 'checkpoints', 'last.pth'), weights_only=True)
        assert state['epoch'] == 1 and state['pending'] is not None       # trained, evaluation outstanding

    trained = []
    real_train_one_epoch = engine.train_one_epoch
    monkeypatch.setattr(engine, 'train_one_epoch', lambda *a, **k: trained.append(a[4]) or real_train_one_epoch(*a, **k))
    run_main('--config', straight['config'], '--logdir', str(logdir), '--resume', 'auto')
    out = capsys.readouterr().out
    assert trained == ([1, 2] if lost_training else [2])
    assert ('epoch 1 was trained but not evaluated' in out) != lost_training
    assert run_dirs(logdir) == [run_dir]                                # the same run continued
    assert os.path.isfile(os.path.join(run_dir, 'eval_epoch_001.json'))
    assert os.path.isfile(os.path.join(run_dir, 'checkpoints', 'best_epoch.bin'))
    resumed, reference = last_state(logdir), straight['last']
    assert (resumed['epoch'], resumed['lr'], resumed['best_p1'], resumed['pending']) == \
        (reference['epoch'], reference['lr'], reference['best_p1'], None)
    for key, value in reference['model'].items():
        assert torch.equal(value, resumed['model'][key]), key


def test_resume_auto_of_a_finished_run_has_nothing_to_do(straight, tmp_path, capsys, one_thread):
    logdir = tmp_path / 'logs'
    run_main('--config', straight['config'], '--logdir', str(logdir), '--epochs', '1')
    (run_dir,) = run_dirs(logdir)
    files = sorted(glob.glob(os.path.join(run_dir, '**'), recursive=True))
    capsys.readouterr()
    run_main('--config', straight['config'], '--logdir', str(logdir), '--epochs', '1', '--resume', 'auto')
    out = capsys.readouterr().out
    assert re.search(r'nothing left to do: .*last.pth has trained all 1 epochs \(raise --epochs to go on\)', out)
    assert sorted(glob.glob(os.path.join(run_dir, '**'), recursive=True)) == files


def test_zero_epochs_is_a_run_without_a_best_score(straight, tmp_path, capsys):
    run_main('--config', straight['config'], '--logdir', str(tmp_path / 'logs'), '--epochs', '0')
    out = capsys.readouterr().out
    assert 'done; no epoch was evaluated' in out and 'inf' not in out


def test_a_run_that_fails_before_starting_leaves_no_run_directory(straight, tmp_path, processed_data):
    logdir = tmp_path / 'logs'
    with pytest.raises(WeightsError, match='checkpoint file not found'):
        run_main('--config', straight['config'], '--eval', '--checkpoint', str(tmp_path / 'absent.bin'),
                 '--logdir', str(logdir))
    weights = write_config(tmp_path / 'weights.yaml', processed_data, **{'model.checkpoint': str(tmp_path / 'absent.pth')})
    with pytest.raises(WeightsError, match='checkpoint file not found: .*absent.pth'):
        run_main('--config', weights, '--logdir', str(logdir))
    labels = write_config(tmp_path / 'labels.yaml', dict(processed_data, val=str(tmp_path / 'absent.pkl')))
    with pytest.raises(LabelError, match='label file not found: .*absent.pkl'):
        run_main('--config', labels, '--logdir', str(logdir))
    with pytest.raises(ConfigError, match='config file not found'):
        run_main('--config', str(tmp_path / 'absent.yaml'), '--logdir', str(logdir))
    assert not os.path.exists(logdir)


def test_evaluation_records_its_checkpoint_and_makes_no_checkpoint_folder(straight, tmp_path, processed_data):
    source = tmp_path / 'source'
    run_main('--config', straight['config'], '--logdir', str(source), '--epochs', '1')
    (best,) = glob.glob(str(source / '*' / 'checkpoints' / 'best_epoch.bin'))
    run_main('--config', straight['config'], '--eval', '--checkpoint', best, '--logdir', str(tmp_path / 'eval'))
    (run_dir,) = run_dirs(tmp_path / 'eval')
    assert not os.path.exists(os.path.join(run_dir, 'checkpoints'))
    with open(os.path.join(run_dir, 'eval_results.json')) as f:
        result = json.load(f)
    assert (result['checkpoint'], result['checkpoint_epoch']) == (best, 1)


def test_everything_printed_reaches_the_log_in_millimetres(tmp_path, processed_data, capsys):
    labels = {name: str(tmp_path / os.path.basename(processed_data[name])) for name in ('train', 'val')}
    for name, path in labels.items():                   # fresh copies: their label caches get built
        with open(processed_data[name], 'rb') as src, open(path, 'wb') as dst:
            dst.write(src.read())
    config = write_config(tmp_path / 'tiny.yaml', dict(processed_data, **labels), **{'train.n_epochs': 1})
    run_main('--config', config, '--logdir', str(tmp_path / 'logs'), '--sync_bn')
    printed = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    (run_dir,) = run_dirs(tmp_path / 'logs')
    with open(os.path.join(run_dir, 'log.txt')) as f:
        logged = [line.split(' ', 2)[2] for line in f.read().splitlines()]     # without the date and time
    assert logged == printed
    assert any(line.startswith('converting %s into a label cache' % labels['train']) for line in logged)
    assert 'warning: --sync_bn needs CUDA; ignored (a frozen backbone keeps its statistics anyway)' in logged

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(os.path.join(run_dir, 'tb'))
    events.Reload()
    steps = [e.value for e in events.Scalars('train/loss_iter')]
    (epoch,) = [e.value for e in events.Scalars('train/loss_epoch')]
    # 24 frames in 3 batches of 8: the epoch loss is the mean of the steps' losses, all in mm
    assert len(steps) == 3 and sum(steps) / 3 == pytest.approx(epoch, rel=1e-5)
    train_loss = float(re.search(r'train-loss: ([\d.]+)', '\n'.join(printed)).group(1))
    assert train_loss == pytest.approx(epoch, abs=1e-3)
    with open(os.path.join(run_dir, 'eval_epoch_001.json')) as f:
        result = json.load(f)
    columns = set(result['summary']) | {c for row in result['actions'].values() for c in row}
    assert columns == {'p1_mm', 'p2_mm', 'mpjve_mm', 'frames'}
    assert events.Scalars('val/mpjve')[0].value == pytest.approx(result['summary']['mpjve_mm'], rel=1e-6)


def test_help_prints_its_description_once_and_its_commands_whole(capsys):
    with pytest.raises(SystemExit):
        train.parse_args(['--help'])
    text = capsys.readouterr().out
    description = text[text.index('Train and evaluate'):text.index('options:')]
    assert text.count('Train and evaluate Context-Aware PoseFormer') == 1
    commands = [line for line in description.splitlines() if line.startswith('$ ')]
    assert len(commands) == 7 and all('train.py' in line for line in commands)
    assert not [line for line in description.splitlines() if '  ' in line or line.endswith('\\')]


def test_a_config_means_the_same_files_from_any_working_folder(tmp_path, monkeypatch, capsys):
    conf, elsewhere = tmp_path / 'conf', tmp_path / 'elsewhere'
    conf.mkdir()
    elsewhere.mkdir()
    spec = {'subjects': [1, 9], 'actions': [2], 'subactions': [1], 'cameras': [1], 'frames': 2}
    relative = {'root': 'data/images', 'train': 'data/train.pkl', 'val': 'data/val.pkl'}
    config = write_config(conf / 'synthetic.yaml', relative, **{'dataset.synthetic': spec})
    monkeypatch.chdir(elsewhere)
    run_main('--config', config, '--logdir', 'logs', '--epochs', '0')
    assert (conf / 'data' / 'train.pkl').is_file() and not (elsewhere / 'data').exists()
    (run_dir,) = run_dirs(elsewhere / 'logs')                     # command-line paths: the working folder
    with open(os.path.join(run_dir, 'config.yaml')) as f:
        assert 'root: %s\n' % (conf / 'data' / 'images') in f.read()
    monkeypatch.chdir(conf)
    capsys.readouterr()
    run_main('--config', 'synthetic.yaml', '--logdir', 'logs', '--epochs', '0')
    assert 'generating the synthetic dataset' not in capsys.readouterr().out     # the same data, found
