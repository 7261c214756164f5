"""Faults a run must survive or report in one line: non-finite labels, a full disk while saving,
SIGTERM to a process group with loader workers, files that are not checkpoints."""
import errno
import glob
import io
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

import train
from mvn.datasets import label_cache
from mvn.datasets.human36m import Human36MSingleViewDataset
from mvn.datasets.label_cache import LabelError
from mvn.models import weights
from mvn.models.weights import WeightsError
from mvn.utils import checkpoint, signals
from mvn.utils.io import DiskFullError
from mvn.utils.monitor import Monitor
from tests.helpers import write_config

FIELDS = Human36MSingleViewDataset.fields('cpn')


def labels_with(processed_data, tmp_path, split, entry, key, value):
    """A copy of the ``split`` labels with ``labels[entry][key]`` (first element) set to ``value``."""
    with open(processed_data[split], 'rb') as f:
        labels = pickle.load(f)
    changed = np.array(labels[entry][key], copy=True)
    changed.flat[0] = value
    labels[entry][key] = changed
    path = tmp_path / ('%s_%s.pkl' % (split, key))
    with open(path, 'wb') as f:
        pickle.dump(labels, f)
    return str(path)


@pytest.mark.parametrize('key, value, shown', [('joints_3d', np.nan, 'nan'), ('center', np.inf, 'inf'),
                                               ('joints_2d_cpn_crop', -np.inf, '-inf')])
def test_a_non_finite_label_names_file_entry_and_key(processed_data, tmp_path, key, value, shown):
    path = labels_with(processed_data, tmp_path, 'val', 5, key, value)
    with pytest.raises(LabelError, match=r"%s: entry 5 key '%s' holds %s \(1 entries hold NaN or inf\)"
                       % (re.escape(path), key, shown)):
        label_cache.load_labels(path, FIELDS, Human36MSingleViewDataset.integer_label_fields, progress=False)
    assert not os.path.exists(label_cache.cache_dir_for(path))          # no cache that a later run would trust


def test_a_non_finite_label_stops_train_py_before_training_with_one_line(processed_data, tmp_path, capsys):
    val = labels_with(processed_data, tmp_path, 'val', 2, 'joints_3d', np.nan)
    config = write_config(tmp_path / 'nan.yaml', dict(processed_data, val=val))
    with pytest.raises(SystemExit) as stopped:
        train.cli(['--config', config, '--logdir', str(tmp_path / 'logs'), '--device', 'cpu'])
    err = capsys.readouterr().err
    assert stopped.value.code == 1
    assert err.splitlines() == ["error: %s: entry 2 key 'joints_3d' holds nan (1 entries hold NaN or inf); "
                                "labels must be finite" % val]
    assert not os.path.exists(tmp_path / 'logs')


class FullDisk:
    """An open file on a disk with ``room`` bytes left: writes beyond fail with ENOSPC, as the
    kernel reports it (at write or flush time)."""

    def __init__(self, file, room):
        self.file, self.room, self.written = file, room, 0

    def write(self, data):
        self.written += len(data)
        if self.written > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.file.__exit__(*exc)


@pytest.fixture
def full_disk(monkeypatch):
    """Files opened by os.fdopen (atomic writes) get ``room`` bytes; the file system reports
    12,345,678 bytes free."""
    def fill(room):
        fdopen = os.fdopen
        monkeypatch.setattr(os, 'fdopen', lambda *a, **k: FullDisk(fdopen(*a, **k), room))
        monkeypatch.setattr(shutil, 'disk_usage', lambda path: shutil._ntuple_diskusage(10 ** 9, 10 ** 9 - 12345678,
                                                                                        12345678))
    return fill


def disk_full_message(path):
    return ('no space left on the device writing %s (free there: 12.3 MB); an earlier version of the file is unchanged'
            % path)


@pytest.mark.parametrize('room', [0, 300, 5000])
def test_a_full_disk_while_saving_a_checkpoint_names_path_and_space_and_keeps_the_earlier_one(tmp_path, full_disk,
                                                                                             room):
    path = str(tmp_path / 'last.pth')
    checkpoint.atomic_save({'epoch': 1, 'weights': torch.arange(4.0)}, path)
    full_disk(room)
    with pytest.raises(DiskFullError) as error:
        checkpoint.atomic_save({'epoch': 2, 'weights': torch.zeros(100000)}, path)
    assert str(error.value) == disk_full_message(path) and error.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == ['last.pth']                              # no temporary file left
    earlier = torch.load(path, weights_only=True)
    assert earlier['epoch'] == 1 and torch.equal(earlier['weights'], torch.arange(4.0))


def test_a_full_disk_while_saving_json_names_path_and_space(tmp_path, full_disk):
    with Monitor(str(tmp_path / 'run')) as monitor:
        monitor.save_json('eval.json', {'p1_mm': 1.0})
        full_disk(3)
        with pytest.raises(DiskFullError, match=re.escape(disk_full_message(monitor.path('eval.json')))):
            monitor.save_json('eval.json', {'p1_mm': 2.0})
    with open(tmp_path / 'run' / 'eval.json') as f:
        assert json.load(f) == {'p1_mm': 1.0}


def test_a_full_disk_while_building_a_label_cache_names_the_cache(processed_data, tmp_path, monkeypatch):
    path = str(tmp_path / 'labels.pkl')
    shutil.copy(processed_data['val'], path)
    save = np.save
    monkeypatch.setattr(np, 'save', lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, 'No space left')))
    monkeypatch.setattr(shutil, 'disk_usage', lambda p: shutil._ntuple_diskusage(10 ** 9, 10 ** 9 - 12345678, 12345678))
    with pytest.raises(DiskFullError, match=re.escape(disk_full_message(label_cache.cache_dir_for(path)))):
        label_cache.load_labels(path, FIELDS, Human36MSingleViewDataset.integer_label_fields, progress=False)
    assert os.listdir(tmp_path) == ['labels.pkl', 'labels.pkl.cache.lock']
    monkeypatch.setattr(np, 'save', save)


def test_a_full_disk_stops_train_py_with_one_line_and_exit_1(processed_data, tmp_path, monkeypatch, capsys):
    config = write_config(tmp_path / 'tiny.yaml', processed_data, **{'train.n_epochs': 1})
    real_save_last = checkpoint.save_last

    def save_last_on_a_full_disk(path, *args, **kwargs):
        fdopen = os.fdopen
        monkeypatch.setattr(os, 'fdopen', lambda *a, **k: FullDisk(fdopen(*a, **k), 1000))
        real_save_last(path, *args, **kwargs)
    monkeypatch.setattr(checkpoint, 'save_last', save_last_on_a_full_disk)
    with pytest.raises(SystemExit) as stopped:
        train.cli(['--config', config, '--logdir', str(tmp_path / 'logs'), '--device', 'cpu'])
    err = capsys.readouterr().err
    lines = [line for line in re.split(r'[\r\n]', err) if line.strip()]
    assert stopped.value.code == 1 and 'Traceback' not in err
    assert [line for line in lines if line.startswith('error')] == lines[-1:]
    assert re.fullmatch(r'error: no space left on the device writing .*/checkpoints/last\.pth \(free there: '
                        r'[\d.]+ MB\); an earlier version of the file is unchanged', lines[-1]), lines[-1]


class Runs:
    """Unpickling this runs code: it would create the file ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def not_checkpoints(tmp_path):
    """{name: (path, what the message calls it)} of files that are not PyTorch checkpoints."""
    files = {'text.pth': (b'epoch: 3\nlr: 0.1\n', 'a text file'),
             'random.pth': (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
                            'not in any format torch.save writes'),
             'empty.pth': (b'', 'an empty file'),
             'code.pkl': (pickle.dumps(Runs(str(tmp_path / 'code ran'))), 'a plain pickle, not written by torch.save')}
    with zipfile.ZipFile(tmp_path / 'other.zip', 'w') as archive:
        archive.writestr('notes.txt', 'not weights')
    buffer = io.BytesIO()
    torch.save({'model': {'w': torch.ones(100)}}, buffer)
    files['truncated.pth'] = (buffer.getvalue()[:len(buffer.getvalue()) // 2], 'a damaged or truncated zip archive')
    paths = {'other.zip': (str(tmp_path / 'other.zip'), 'a zip archive of other files')}
    for name, (content, kind) in files.items():
        (tmp_path / name).write_bytes(content)
        paths[name] = (str(tmp_path / name), kind)
    return paths


LOADERS = {
    'read_weights': lambda path: checkpoint.read_weights(path, 'checkpoint'),
    'load_model_checkpoint': lambda path: weights.load_model_checkpoint(torch.nn.Linear(2, 2), path),
    'load_backbone_state': lambda path: weights.load_backbone_state(torch.nn.Linear(2, 2), path),
}


@pytest.mark.parametrize('loader', LOADERS)
def test_a_file_that_is_not_a_checkpoint_is_named_so_without_torchs_advice(tmp_path, loader):
    for name, (path, kind) in not_checkpoints(tmp_path).items():
        with pytest.raises(WeightsError) as error:
            LOADERS[loader](path)
        assert str(error.value) == 'not a PyTorch checkpoint: %s (%s)' % (path, kind), name
    assert not os.path.exists(tmp_path / 'code ran')


def test_a_torch_file_holding_more_than_tensors_is_refused_without_torchs_advice(tmp_path):
    path = str(tmp_path / 'module.pth')
    torch.save({'model': torch.nn.Linear(2, 2)}, path)
    with pytest.raises(WeightsError) as error:
        checkpoint.read_weights(path, 'checkpoint')
    assert str(error.value) == ('checkpoint file %s holds a torch.nn.modules.linear.Linear, more than tensors and '
                                'plain values: not loaded, as loading it could run code' % path)


def test_checkpoints_of_both_torch_formats_still_load(tmp_path):
    state = {'epoch': 3, 'model': {'w': torch.arange(5.0)}}
    torch.save(state, tmp_path / 'zip.pth')
    torch.save(state, tmp_path / 'legacy.pth', _use_new_zipfile_serialization=False)   # torch < 1.6, the COCO weights
    for name in ('zip.pth', 'legacy.pth'):
        loaded = checkpoint.read_weights(str(tmp_path / name))
        assert loaded['epoch'] == 3 and torch.equal(loaded['model']['w'], torch.arange(5.0))


def test_resume_from_a_run_folder_says_what_to_pass(tmp_path):
    with pytest.raises(WeightsError) as error:
        checkpoint.load_resume_state(str(tmp_path))
    assert str(error.value) == ("%s is a folder, not a resume checkpoint file; --resume takes a run's "
                                "checkpoints/last.pth, or auto" % tmp_path)


def test_resume_from_a_config_file_says_what_is_wrong_in_one_line(processed_data, tmp_path, capsys):
    config = write_config(tmp_path / 'tiny.yaml', processed_data)
    with pytest.raises(SystemExit) as stopped:
        train.cli(['--config', config, '--resume', config, '--logdir', str(tmp_path / 'logs'), '--device', 'cpu'])
    assert stopped.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: not a PyTorch checkpoint: %s (a text file); --resume takes a run's checkpoints/last.pth, or auto"
        % config]


# train.py whose first loader item sends SIGTERM to the whole process group (as scancel or docker
# stop do) from inside a loader worker, while the main process waits for the batch; or, with
# 'worker', to that worker alone, the order in which the main process learns of it by the
# worker's death first.
GROUP_SIGTERM = r'''
import os, signal, sys
sys.path.insert(0, %r)
import train
from mvn.datasets.base import PoseDataset

main_pid, frame = os.getpid(), PoseDataset.frame
def frame_then_stop(self, j):
    if os.getpid() != main_pid:
        try:
            os.close(os.open(sys.argv[1], os.O_CREAT | os.O_EXCL))      # one worker sends it, once
            if sys.argv[2] == 'group':
                os.killpg(0, signal.SIGTERM)
            else:                       # this worker first: its death is what the main process notices first
                os.kill(os.getpid(), signal.SIGTERM)
        except FileExistsError:
            pass
    return frame(self, j)
PoseDataset.frame = frame_then_stop
train.cli(sys.argv[3:])
''' % os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('to', ['group', 'worker'])
def test_sigterm_to_the_process_group_with_loader_workers_ends_cleanly_with_143(processed_data, tmp_path, to):
    config = write_config(tmp_path / 'workers.yaml', processed_data, **{'train.num_workers': 2, 'val.num_workers': 2})
    run = subprocess.run([sys.executable, '-c', GROUP_SIGTERM, str(tmp_path / 'sent'), to, '--config', config,
                          '--logdir', str(tmp_path / 'logs'), '--device', 'cpu'], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, start_new_session=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert os.path.exists(tmp_path / 'sent')
    assert (run.returncode, run.stderr.splitlines()[-1]) == (143, 'terminated'), run.stderr[-3000:]
    assert 'Traceback' not in run.stderr and 'Error' not in run.stderr, run.stderr[-3000:]
    (log,) = glob.glob(str(tmp_path / 'logs' / '*' / 'log.txt'))
    with open(log) as f:       # the log names the stop as the main process learnt of it
        assert re.search(r' stopped: (Terminated|DataLoader worker \(pid\(s\) \d+\) exited unexpectedly|'
                         r'DataLoader worker \(pid \d+\) is killed by signal: Terminated\.)$',
                         f.read().splitlines()[-1].strip())


def raised_from(error, cause):
    error.__cause__ = cause
    return error


@pytest.mark.parametrize('error, expected', [
    (signals.Terminated(), ('terminated', 143)),
    (KeyboardInterrupt(), ('interrupted', 130)),
    # PyTorch's message when it notices a worker killed by the group's signal before the main
    # process handled its own (torch/csrc/DataLoader.cpp)
    (RuntimeError('DataLoader worker (pid 4242) is killed by signal: Terminated. '), ('terminated', 143)),
    (RuntimeError('DataLoader worker (pid 4242) is killed by signal: Interrupt. '), ('interrupted', 130)),
    (RuntimeError('DataLoader worker (pid 4242) is killed by signal: Bus error. '), None),
    (raised_from(RuntimeError('DataLoader worker (pid(s) 4242) exited unexpectedly'),
                 RuntimeError('DataLoader worker (pid 4242) is killed by signal: Terminated. ')), ('terminated', 143)),
    (raised_from(RuntimeError('DataLoader worker (pid(s) 4242) exited unexpectedly'), ValueError('bad item')), None),
    (ValueError('anything else'), None)])
def test_what_counts_as_a_stop_by_a_signal(error, expected, monkeypatch):
    monkeypatch.setattr(signals, '_stopped', [])
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)}
    try:
        signals.install()
        assert signals.stop_code(error) == expected
        if expected is not None:            # on the way out: further signals are ignored, worker checks off
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN == signal.getsignal(signal.SIGINT)
            assert signal.getsignal(signal.SIGCHLD) not in (signal.SIG_DFL, handlers[signal.SIGCHLD])
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def test_a_signal_ignored_at_start_stays_ignored(monkeypatch):
    monkeypatch.setattr(signals, '_stopped', [])
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)}
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)            # as under nohup cmd &
        replaced = signals.install()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN and list(replaced) == [signal.SIGTERM]
        with pytest.raises(signals.Terminated):
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
