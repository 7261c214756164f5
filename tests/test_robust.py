"""Faults a run must survive or report in one line: non-finite labels, a full disk while saving,
SIGTERM to a process group with loader workers, files that are not checkpoints."""
import os
import pickle
import re

import numpy as np
import pytest

import train
from mvn.datasets import label_cache
from mvn.datasets.human36m import Human36MSingleViewDataset
from mvn.datasets.label_cache import LabelError
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
