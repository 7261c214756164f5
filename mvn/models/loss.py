"""3D pose errors as pure functions.

Poses are (..., J, 3) in any length unit (the result has the same unit). ``mpjpe`` and
``n_mpjpe`` accept torch tensors (differentiable; used as the training loss) or NumPy arrays;
``p_mpjpe`` and ``mpjve`` work on NumPy arrays in float64.
"""
import numpy as np
import torch


def _joint_distances(pred, gt):
    if pred.shape != gt.shape:
        raise ValueError('pose shapes differ: %s vs %s' % (tuple(pred.shape), tuple(gt.shape)))
    if isinstance(pred, torch.Tensor):
        return torch.linalg.vector_norm(pred - gt, dim=-1)
    return np.linalg.norm(np.asarray(pred, dtype=np.float64) - np.asarray(gt, dtype=np.float64), axis=-1)


def mpjpe(pred, gt):
    """Mean per-joint position error: mean Euclidean distance over all joints and poses."""
    return _joint_distances(pred, gt).mean()


def n_mpjpe(pred, gt):
    """MPJPE after scaling each pose by the least-squares optimal factor (no rotation, no shift)."""
    if isinstance(pred, torch.Tensor):
        scale = (pred * gt).sum(dim=(-2, -1), keepdim=True) / (pred * pred).sum(dim=(-2, -1), keepdim=True)
    else:
        pred = np.asarray(pred, dtype=np.float64)
        scale = (pred * gt).sum(axis=(-2, -1), keepdims=True) / (pred * pred).sum(axis=(-2, -1), keepdims=True)
    return mpjpe(scale * pred, gt)


def procrustes_align(pred, gt):
    """Aligns every pose of pred (N, J, 3) to gt by the similarity transform (scale, rotation,
    translation) that minimises the squared error; reflections are excluded. Returns float64."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    mu_gt = gt.mean(axis=1, keepdims=True)
    mu_pred = pred.mean(axis=1, keepdims=True)
    gt0, pred0 = gt - mu_gt, pred - mu_pred
    norm_gt = np.sqrt((gt0 ** 2).sum(axis=(1, 2), keepdims=True))
    norm_pred = np.sqrt((pred0 ** 2).sum(axis=(1, 2), keepdims=True))
    gt0, pred0 = gt0 / norm_gt, pred0 / norm_pred

    u, s, vt = np.linalg.svd(np.matmul(gt0.transpose(0, 2, 1), pred0))
    v = vt.transpose(0, 2, 1)
    rotation = np.matmul(v, u.transpose(0, 2, 1))
    # A determinant of -1 means a reflection: flip the axis of the smallest singular value.
    sign = np.sign(np.linalg.det(rotation))[:, None]
    v[:, :, -1] *= sign
    s[:, -1] *= sign[:, 0]
    rotation = np.matmul(v, u.transpose(0, 2, 1))

    scale = s.sum(axis=1)[:, None, None] * norm_gt / norm_pred
    shift = mu_gt - scale * np.matmul(mu_pred, rotation)
    return scale * np.matmul(pred, rotation) + shift


def p_mpjpe(pred, gt):
    """MPJPE after per-pose similarity Procrustes alignment (protocol #2). pred, gt: (N, J, 3)."""
    return float(mpjpe(procrustes_align(pred, gt), gt))


def mpjve(pred, gt):
    """Mean per-joint velocity error: MPJPE of the frame-to-frame differences along axis 0."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    return float(mpjpe(np.diff(pred, axis=0), np.diff(gt, axis=0)))
