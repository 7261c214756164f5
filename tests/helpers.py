"""Helpers shared by the tests."""
import socket

import yaml

from mvn.datasets.batch import BatchPreparer
from mvn.datasets.h36m_meta import SKELETON
from mvn.models.backbones import input_normalization

# A dataset small enough for seconds-long tests: 2 subjects (S1 train, S9 test), 2 actions.
SMALL = dict(subjects=(1, 9), actions=(2, 3), subactions=(1, 2), cameras=(1, 2), frames=3, seed=0)


def write_config(path, data_paths, **overrides):
    """A tiny experiment YAML over ``data_paths`` (from processed_data); returns its path."""
    tree = {
        'title': 'test',
        'model': {'backbone': {'type': 'hrnet_tiny'},
                  'poseformer': {'embed_dim_ratio': 16, 'depth': 2, 'drop_path_rate': 0.1}},
        'dataset': {'root': data_paths['root'], 'train_labels_path': data_paths['train'],
                    'val_labels_path': data_paths['val']},
        'train': {'n_epochs': 2, 'batch_size': 8, 'volume_net_lr': 0.001, 'num_workers': 0},
        'val': {'batch_size': 10, 'num_workers': 0},
        'vis_n_elements': 2,
    }
    for dotted, value in overrides.items():
        node = tree
        *parents, leaf = dotted.split('.')
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    with open(path, 'w') as f:
        yaml.safe_dump(tree, f)
    return str(path)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def h36m_preparer(backbone, device, crop_width=192, **kwargs):
    """BatchPreparer of Human3.6M batches for ``backbone`` (as train.py builds it)."""
    return BatchPreparer(device, normalize=input_normalization(backbone), skeleton=SKELETON, crop_width=crop_width,
                         **kwargs)
