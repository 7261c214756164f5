"""Checkpoints: reading torch files safely, atomic writes, the official ``best_epoch.bin`` format,
and full resume state.

``best_epoch.bin`` = {'epoch', 'lr', 'model', 'optimizer'} with ``module.``-prefixed model keys,
exactly what the official code writes and loads. ``last.pth`` adds everything needed to continue:
best score, seed, AMP scaler and the resolved config (as YAML text, so ``weights_only`` loading
works).
"""
import glob
import os
import re
import tarfile
import zipfile

import torch

from mvn.utils.io import atomic_open

BEST_NAME = 'best_epoch.bin'
LAST_NAME = 'last.pth'
DDP_PREFIX = 'module.'          # the DistributedDataParallel wrapper's prefix on model keys


class WeightsError(RuntimeError):
    """A weight file that is missing, unreadable or does not fit the model."""


def read_weights(path, what='weights', hint='', expected=''):
    """torch.load with weights_only=True on the CPU, with one-line errors: ``hint`` is added when
    the file does not exist, ``expected`` (what the caller wants, say "--resume takes a last.pth")
    when it is not a PyTorch checkpoint. Never torch's advice to load with weights_only=False: a
    file that needs it could run code."""
    if not path:
        raise WeightsError('no %s file given' % what)
    if os.path.isdir(path):
        raise WeightsError('%s is a folder, not a %s file%s' % (path, what, '; ' + expected if expected else ''))
    if not os.path.isfile(path):
        raise WeightsError('%s file not found: %s%s' % (what, path, ' (%s)' % hint if hint else ''))
    kind = _not_a_checkpoint(path)      # first: torch.load would warn about a plain pickle's protocol
    if kind is not None:
        raise WeightsError('not a PyTorch checkpoint: %s (%s)%s' % (path, kind, '; ' + expected if expected else ''))
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:    # damaged, or a pickle that asks for more than tensors and plain values
        raise _unreadable(path, what, e) from None


# Near the start of a file written by torch.save before torch 1.6: its magic number, pickled.
_LEGACY_TORCH_MAGIC = b'\x8a\x0a' + (0x1950a86a20f9469cfc6c).to_bytes(10, 'little')


def _not_a_checkpoint(path):
    """What ``path`` is when it is not a file torch.save could have written, else None."""
    if os.path.getsize(path) == 0:
        return 'an empty file'
    with open(path, 'rb') as f:
        head = f.read(4096)
    if head.startswith(b'PK\x03\x04'):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return 'a damaged or truncated zip archive'
        return None if any(name.endswith('/data.pkl') for name in names) else 'a zip archive of other files'
    if _LEGACY_TORCH_MAGIC in head[:32] or tarfile.is_tarfile(path):   # older torch.save formats
        return None
    if head[:1] == b'\x80' and head[1:2] in (b'\x02', b'\x03', b'\x04', b'\x05'):
        return 'a plain pickle, not written by torch.save'
    try:
        head.decode('utf-8')
        return 'a text file'
    except UnicodeDecodeError as e:
        if e.start >= len(head) - 3:            # a character cut at the end of the block read
            return 'a text file'
    return 'not in any format torch.save writes'


def _unreadable(path, what, error):
    """The WeightsError of a torch file that torch.load refused (``error``)."""
    message = str(error)
    refused = re.search(r'GLOBAL ([\w.]+)', message)
    if refused:
        return WeightsError('%s file %s holds a %s, more than tensors and plain values: not loaded, as loading it '
                            'could run code' % (what, path, refused.group(1)))
    lines = [line.strip() for line in message.splitlines()
             if line.strip() and 'weights_only' not in line and 'Weights only load failed' not in line]
    return WeightsError('cannot read %s file %s: %s' % (what, path, lines[0] if lines else type(error).__name__))


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


def save_last(path, epoch, lr, best_p1, model, optimizer, config_yaml, seed, scaler=None, pending=None,
              final_evaluated=False):
    """State after ``epoch`` (1-based) epochs; ``lr`` is the rate the next epoch will use;
    ``best_p1`` the best evaluation score so far (the report's score, such as an average P1 in
    mm); ``pending`` the training figures of epoch ``epoch`` while its evaluation is still to be
    done, else None; ``final_evaluated``: the best checkpoint's evaluation on every frame that ends
    a run with thinned validation is done (for the best of these epochs).

    No RNG state is needed: training reseeds every epoch from (seed, rank, epoch).
    """
    atomic_save({'epoch': epoch, 'lr': lr, 'best_p1': best_p1, 'model': official_model_state(model),
                 'optimizer': optimizer.state_dict(), 'seed': seed,
                 'scaler': scaler.state_dict() if scaler is not None else None,
                 'config': config_yaml, 'pending': pending, 'final_evaluated': final_evaluated}, path)


def load_resume_state(path):
    state = read_weights(path, 'resume checkpoint', expected="--resume takes a run's checkpoints/%s, or auto"
                         % LAST_NAME)
    required = ('epoch', 'lr', 'best_p1', 'model', 'optimizer', 'seed', 'config')
    missing = [k for k in required if not isinstance(state, dict) or k not in state]
    if missing:
        raise WeightsError('%s is not a resumable checkpoint (no %s); resume from a %s file'
                           % (path, ', '.join(missing), LAST_NAME))
    return state

