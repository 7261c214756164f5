"""Weights, inputs and a prediction set defined by formulas, so that the reference files in
tests/data hold only the official code's outputs: the test and the script that ran the official
implementation both compute these from here. Nothing in this file imports the code under test
(the generating script loads it by path beside the official code).

Weights: every floating-point tensor of a state dict, taken in sorted key order (k = its
position), gets v = sin(0.61803 (i mod 9973) + 0.5 k + 0.25) over its flattened index i, then
  running_var -> 1 + 0.5 |v|;  a 1-D '...weight' (a norm's scale) -> 1 + 0.1 v;
  other 1-D tensors (biases, running means) -> 0.1 v;  others -> v / sqrt(fan_in)
(fan_in = elements per output channel). Integer tensors (BatchNorm's counters) are kept.
"""
import math

import numpy as np
import torch

IMAGE_SIZE = (64, 64)       # (height, width) of the test images: small, and divisible by 32 as the backbones need
BATCH = 2
TRAIN_SEED = 1234           # torch.manual_seed right before the train-mode forward


PERIOD = 9973


def _wave(n, k):
    period = torch.sin(0.61803 * torch.arange(PERIOD, dtype=torch.float64) + 0.5 * k + 0.25)
    return period.repeat(n // PERIOD + 1)[:n]


def formula_state(state):
    """{name: tensor} -> the same names and shapes filled by the formula above."""
    out = {}
    for k, name in enumerate(sorted(state)):
        t = state[name]
        if not t.is_floating_point():
            out[name] = t.clone()
            continue
        v = _wave(t.numel(), k).view(t.shape)
        if name.endswith('running_var'):
            v = 1.0 + 0.5 * v.abs()
        elif t.dim() == 1 and name.endswith('weight'):
            v = 1.0 + 0.1 * v
        elif t.dim() <= 1:
            v = 0.1 * v
        else:
            v = v / math.sqrt(t[0].numel())
        out[name] = v.to(t.dtype)
    return out


def model_inputs(batch=BATCH, size=IMAGE_SIZE):
    """(images (B, H, W, 3) float32 as the backbone takes them (already normalised),
    keypoints_2d (B, 17, 2) normalised screen coordinates, keypoints_2d_crop (B, 17, 2) pixels of
    the 192x256 crop frame, some outside it)."""
    h, w = size
    b, y, x, c = torch.meshgrid(torch.arange(batch), torch.arange(h), torch.arange(w), torch.arange(3), indexing='ij')
    images = 2.0 * torch.sin(0.05 * x * (c + 1) + 0.07 * y + 0.9 * b + c.double())
    b, j = torch.meshgrid(torch.arange(batch), torch.arange(17), indexing='ij')
    keypoints = torch.stack([0.4 * torch.sin(1.3 * j + 0.7 * b + 0.1), 0.5 * torch.cos(0.9 * j + 1.1 * b)], dim=-1)
    # some joints fall outside the crop (as in real data), where the two samplings pad differently
    crop = torch.stack([96 + 120 * torch.sin(2.1 * j + 0.3 * b), 128 + 150 * torch.cos(1.7 * j + 0.5 * b)], dim=-1)
    return images.float(), keypoints.float(), crop.float()


def evaluation_set():
    """A fixed prediction set over all 30 Human3.6M action trials (no trial of a single frame,
    where the official MPJVE is undefined): (pred, gt) (N, 1, 17, 3) float64 metres,
    action (N,) 2..16, subaction (N,) 1..2."""
    preds, gts, actions, subactions = [], [], [], []
    for t in range(30):
        action, subaction = 2 + t // 2, 1 + t % 2
        n = 2 + t % 4
        f, j, c = np.meshgrid(np.arange(n), np.arange(17), np.arange(3), indexing='ij')
        gt = 0.4 * np.sin(0.8 * j + 1.3 * c + 0.05 * f + 0.3 * t) + 0.1 * c
        noise = 0.03 * np.sin(2.7 * j + 0.9 * c + 1.9 * f + 0.7 * t)
        pred = (1.0 + 0.02 * (t % 5)) * gt + noise + 0.01 * t
        preds.append(pred)
        gts.append(gt)
        actions += [action] * n
        subactions += [subaction] * n
    return (np.concatenate(preds)[:, None], np.concatenate(gts)[:, None], np.array(actions), np.array(subactions))
