"""Faults a run must survive or report in one line: non-finite labels, a full disk while saving,
SIGTERM to a process group with loader workers, files that are not checkpoints."""
import errno
import json
import os
import pickle
import re
import shutil

import numpy as np
import pytest
import torch

import train
from mvn.datasets import label_cache
from mvn.datasets.human36m import Human36MSingleViewDataset
from mvn.datasets.label_cache import LabelError
from mvn.utils import checkpoint
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
