"""Shared fixtures: small synthetic datasets and configs made on the fly (CPU only)."""
import os
import signal
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from mvn.datasets.synthetic import generate_processed, generate_raw  # noqa: E402
from tests.helpers import SMALL  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def default_sigint():
    """Every test runs with Python's own SIGINT handler (Ctrl-C raises KeyboardInterrupt), and
    the previous disposition comes back afterwards. A shell starts a background job (``cmd &``,
    ``nohup cmd &``) with SIGINT ignored, and Python keeps an inherited "ignore": then an
    interrupt deferred by an atomic write and re-raised at its end would be dropped, and a
    train.py started by a test would inherit the "ignore" too and never see the test's Ctrl-C
    (an exec resets a handled signal to the default, but keeps an ignored one ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


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


@pytest.fixture
def one_thread():
    """In-process runs use one thread, as the subprocesses (OMP_NUM_THREADS=1): float sums are
    only bit-identical for the same thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
