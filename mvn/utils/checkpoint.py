"""Checkpoints: reading torch files safely, atomic writes, the official ``best_epoch.bin`` format,
and full resume state.

``best_epoch.bin`` = {'epoch', 'lr', 'model', 'optimizer'} with ``module.``-prefixed model keys,
exactly what the official code writes and loads. ``last.pth`` adds everything needed to continue:
best score, seed, AMP scaler and the resolved config (as YAML text, so ``weights_only`` loading
works).
"""
import glob
import os

import torch

from mvn.utils.io import atomic_open

BEST_NAME = 'best_epoch.bin'
LAST_NAME = 'last.pth'
DDP_PREFIX = 'module.'          # the DistributedDataParallel wrapper's prefix on model keys


class WeightsError(RuntimeError):
    """A weight file that is missing, unreadable or does not fit the model."""


def read_weights(path, what='weights', hint=''):
    """torch.load with weights_only=True on the CPU, with one-line errors (``hint`` is added
    when the file does not exist)."""
    if not path:
        raise WeightsError('no %s file given' % what)
    if not os.path.isfile(path):
        raise WeightsError('%s file not found: %s%s' % (what, path, ' (%s)' % hint if hint else ''))
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:    # corrupt, truncated, or a pickle that asks to run code
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError('cannot read %s file %s: %s' % (what, path, first_line)) from None


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


def save_last(path, epoch, lr, best_p1, model, optimizer, config_yaml, seed, scaler=None, pending=None):
    """State after ``epoch`` (1-based) epochs; ``lr`` is the rate the next epoch will use;
    ``best_p1`` the best evaluation score so far (the report's score, such as an average P1 in
    mm); ``pending`` the training figures of epoch ``epoch`` while its evaluation is still to be
    done, else None.

    No RNG state is needed: training reseeds every epoch from (seed, rank, epoch).
    """
    atomic_save({'epoch': epoch, 'lr': lr, 'best_p1': best_p1, 'model': official_model_state(model),
                 'optimizer': optimizer.state_dict(), 'seed': seed,
                 'scaler': scaler.state_dict() if scaler is not None else None,
                 'config': config_yaml, 'pending': pending}, path)


def load_resume_state(path):
    state = read_weights(path, 'resume checkpoint')
    required = ('epoch', 'lr', 'best_p1', 'model', 'optimizer', 'seed', 'config')
    missing = [k for k in required if not isinstance(state, dict) or k not in state]
    if missing:
        raise WeightsError('%s is not a resumable checkpoint (no %s); resume from a %s file'
                           % (path, ', '.join(missing), LAST_NAME))
    return state

