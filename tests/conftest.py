"""Shared fixtures: small synthetic datasets and configs made on the fly (CPU only)."""
import os
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from mvn.datasets.synthetic import generate_processed, generate_raw  # noqa: E402
from tests.helpers import SMALL  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(scope='session')
def processed_data(tmp_path_factory):
    """{'root', 'train', 'val'} of a small processed synthetic dataset."""
    base = tmp_path_factory.mktemp('processed')
    paths = {'root': str(base / 'images'), 'train': str(base / 'h36m_train.pkl'),
             'val': str(base / 'h36m_validation.pkl')}
    generate_processed(paths['root'], paths['train'], paths['val'], progress=False, **SMALL)
    return paths


@pytest.fixture(scope='session')
def raw_data(tmp_path_factory):
    """A raw mini Human3.6M folder laid out as the official toolbox expects."""
    base = tmp_path_factory.mktemp('raw')
    generate_raw(str(base), subjects=(1, 9), actions=(2, 12), subactions=(1, 2), cameras=(1, 2), frames=4,
                 progress=False)
    return base
