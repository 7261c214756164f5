"""Loading weight files: COCO detectors (HRNet, CPN) and CA-PF checkpoints.

Everything goes through ``torch.load(weights_only=True)``: a weight file can never run code.
Any problem is a ``WeightsError`` whose message names the file and the offending keys.
"""
from typing import Dict, Iterable

import torch

# Reading a torch file safely is shared with the training checkpoints (mvn/utils/checkpoint.py).
from mvn.utils.checkpoint import DDP_PREFIX, WeightsError, read_weights  # noqa: F401 (re-exported)


def strip_prefix(state_dict: Dict[str, torch.Tensor], prefix=DDP_PREFIX):
    """Removes a leading DistributedDataParallel ``module.`` from every key that has one."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def _names(keys: Iterable[str], limit=5):
    keys = sorted(keys)
    shown = ', '.join(keys[:limit])
    return shown + (' ... (%d in all)' % len(keys) if len(keys) > limit else '')


def check_state_dict(module: torch.nn.Module, state_dict, path, allowed_unexpected=(), allow_missing=False):
    """Raise WeightsError unless ``state_dict`` fits ``module``: shapes first, then key sets."""
    expected = module.state_dict()
    mismatched = [(k, tuple(v.shape), tuple(expected[k].shape)) for k, v in state_dict.items()
                  if k in expected and hasattr(v, 'shape') and tuple(v.shape) != tuple(expected[k].shape)]
    if mismatched:
        detail = '; '.join('%s: file %s vs model %s' % m for m in mismatched[:3])
        more = ' ... (%d in all)' % len(mismatched) if len(mismatched) > 3 else ''
        raise WeightsError('shape mismatch loading %s: %s%s' % (path, detail, more))
    unexpected = set(state_dict) - set(expected) - set(allowed_unexpected)
    missing = set() if allow_missing else set(expected) - set(state_dict)
    if unexpected:
        raise WeightsError('%s holds keys the model does not have: %s' % (path, _names(unexpected)))
    if missing:
        raise WeightsError('%s lacks keys the model needs: %s' % (path, _names(missing)))


def load_backbone_state(backbone: torch.nn.Module, path: str, state_key=None, allowed_unexpected=()):
    """Loads pretrained detector weights into ``backbone``: the file holds its state dict, under
    ``state_key`` when given (required then), else as is or under 'state_dict'; ``module.``
    prefixes are removed; only ``allowed_unexpected`` keys may be left over, none missing."""
    data = read_weights(path, 'backbone weights', hint='see data/pretrained/coco/README.md')
    if state_key is not None:
        if not isinstance(data, dict) or state_key not in data:
            raise WeightsError("%s is not a %s weight file: no '%s' key" % (path, type(backbone).__name__, state_key))
        state_dict = data[state_key]
    else:
        state_dict = data.get('state_dict', data) if isinstance(data, dict) else data
    if not isinstance(state_dict, dict):
        raise WeightsError('%s does not hold a state dict' % path)
    state_dict = strip_prefix(state_dict)
    check_state_dict(backbone, state_dict, path, allowed_unexpected=allowed_unexpected)
    expected = backbone.state_dict().keys()
    backbone.load_state_dict({k: v for k, v in state_dict.items() if k in expected}, strict=True)


def load_coco_backbone(backbone: torch.nn.Module, backbone_type: str, path: str):
    """Loads COCO-pretrained detector weights with the backbone's own loader (its
    ``load_pretrained``, see mvn.models.backbones); ``backbone_type`` names it in messages."""
    if not hasattr(backbone, 'load_pretrained'):
        raise WeightsError('backbone %s has no load_pretrained(path) to read %s' % (backbone_type, path))
    backbone.load_pretrained(path)


def load_model_checkpoint(model: torch.nn.Module, path: str, hint=''):
    """Loads a CA-PF checkpoint (``{'model': state_dict, ...}`` as written by the official code
    and by this one, or a bare state dict), with or without ``module.``, strictly. Returns the
    file's contents for callers that want more than the weights."""
    data = read_weights(path, 'checkpoint', hint)
    state_dict = data.get('model', data) if isinstance(data, dict) else None
    if not isinstance(state_dict, dict) or not state_dict:
        raise WeightsError("%s holds no model state dict (expected a 'model' entry)" % path)
    load_checked(model, state_dict, path)
    return data


def load_checked(model: torch.nn.Module, state_dict, source: str):
    """Loads ``state_dict`` (with or without ``module.``) strictly, after check_state_dict;
    ``source`` names where it came from in errors."""
    state_dict = strip_prefix(state_dict)
    check_state_dict(model, state_dict, source)
    model.load_state_dict(state_dict, strict=True)
