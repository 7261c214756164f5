"""Checkpoints: atomic writes, the official ``best_epoch.bin`` format, and full resume state.

``best_epoch.bin`` = {'epoch', 'lr', 'model', 'optimizer'} with ``module.``-prefixed model keys,
exactly what the official code writes and loads. ``last.pth`` adds everything needed to continue:
best score, seed, AMP scaler and the resolved config (as YAML text, so ``weights_only`` loading
works).
"""
import glob
import os

import torch

from mvn.models.weights import DDP_PREFIX, WeightsError, read_weights
from mvn.utils.io import atomic_open

BEST_NAME = 'best_epoch.bin'
LAST_NAME = 'last.pth'


def atomic_save(obj, path):
    """torch.save that never leaves a partial file at ``path``. Temporary files that a killed
    earlier save left beside it are removed first (checkpoints have a single writer, rank 0)."""
    for stale in glob.glob(os.path.join(glob.escape(os.path.dirname(os.path.abspath(path))),
                                        '.%s.*.tmp' % glob.escape(os.path.basename(path)))):
        os.remove(stale)
    with atomic_open(path) as f:
        torch.save(obj, f)


def official_model_state(model):
    """The model's state dict with the DistributedDataParallel prefix the official files carry."""
    return {DDP_PREFIX + k: v for k, v in model.state_dict().items()}


def save_best(path, epoch, lr, model, optimizer):
    atomic_save({'epoch': epoch, 'lr': lr, 'model': official_model_state(model),
                 'optimizer': optimizer.state_dict()}, path)


def save_last(path, epoch, lr, best_p1, model, optimizer, config_yaml, seed, scaler=None):
    """State after ``epoch`` (1-based) epochs; ``lr`` is the rate the next epoch will use.

    No RNG state is needed: train.py reseeds every epoch from (seed, rank, epoch).
    """
    atomic_save({'epoch': epoch, 'lr': lr, 'best_p1': best_p1, 'model': official_model_state(model),
                 'optimizer': optimizer.state_dict(), 'seed': seed,
                 'scaler': scaler.state_dict() if scaler is not None else None,
                 'config': config_yaml}, path)


def load_resume_state(path):
    state = read_weights(path, 'resume checkpoint')
    required = ('epoch', 'lr', 'best_p1', 'model', 'optimizer', 'seed', 'config')
    missing = [k for k in required if not isinstance(state, dict) or k not in state]
    if missing:
        raise WeightsError('%s is not a resumable checkpoint (no %s); resume from a %s file'
                           % (path, ', '.join(missing), LAST_NAME))
    return state


def find_latest_run(logdir, run_name):
    """The newest ``<logdir>/<run_name>@*/checkpoints/last.pth``, or None."""
    candidates = glob.glob(os.path.join(glob.escape(logdir), glob.escape(run_name) + '@*', 'checkpoints', LAST_NAME))
    return max(candidates, key=os.path.getmtime) if candidates else None
