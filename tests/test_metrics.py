"""Pose errors and the per-action evaluation, against hand-computed values."""
import math
import re

import numpy as np
import pytest
import torch

from mvn.datasets.evaluation import evaluate_by_action, format_table, summarize
from mvn.models.loss import mpjpe, mpjve, n_mpjpe, p_mpjpe, procrustes_align


def random_pose(seed=0, n=1):
    return np.random.default_rng(seed).normal(size=(n, 17, 3))


def rotation(axis_angle):
    axis = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(axis)
    k = axis / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def test_mpjpe_of_a_3_4_5_shift():
    gt = random_pose()
    assert mpjpe(gt + [3.0, 4.0, 0.0], gt) == pytest.approx(5.0)
    # tensors too, differentiable, with a zero gradient at a perfect joint
    pred = torch.tensor(gt, requires_grad=True)
    loss = mpjpe(pred, torch.tensor(gt))
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(pred.grad).all()


def test_mpjpe_mixed_errors_by_hand():
    gt = np.zeros((1, 2, 3))
    pred = np.array([[[1.0, 0, 0], [0, 0, 3.0]]])
    assert mpjpe(pred, gt) == pytest.approx(2.0)          # (1 + 3) / 2


def test_p_mpjpe_is_zero_for_a_similar_copy():
    gt = random_pose(1, n=4)
    pred = 1.7 * gt @ rotation([0.3, -1.1, 0.4]).T + np.array([0.5, -2.0, 3.0])
    assert p_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-9)
    assert np.allclose(procrustes_align(pred, gt), gt, atol=1e-9)


def test_p_mpjpe_never_aligns_with_a_reflection():
    gt = random_pose(2)
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    # A mirror image of a 3D pose cannot be reached by a proper rotation: the error stays > 0 ...
    assert p_mpjpe(mirrored, gt) > 0.1
    aligned = procrustes_align(mirrored, gt)[0]
    # ... and the transform that was applied is a rotation (det +1), not a reflection.
    a = np.c_[mirrored[0], np.ones(17)]
    linear = np.linalg.lstsq(a, aligned, rcond=None)[0][:3]
    assert np.linalg.det(linear) > 0
    # A flat pose (z = 0) is its own mirror image up to a half turn about y: error 0.
    flat = gt.copy()
    flat[..., 2] = 0
    assert p_mpjpe(flat * np.array([-1.0, 1.0, 1.0]), flat) == pytest.approx(0.0, abs=1e-9)


def test_n_mpjpe_removes_scale_only():
    gt = random_pose(3)
    assert n_mpjpe(0.5 * gt, gt) == pytest.approx(0.0, abs=1e-12)
    assert n_mpjpe(torch.tensor(2 * gt), torch.tensor(gt)).item() == pytest.approx(0.0, abs=1e-12)
    assert n_mpjpe(gt + 1.0, gt) > 0


def test_mpjve_by_hand():
    gt = np.zeros((4, 17, 3))
    pred = np.zeros((4, 17, 3))
    pred[:, :, 0] = np.arange(4)[:, None] * 2.0        # moves 2 per frame while the truth stands still
    assert mpjve(pred, gt) == pytest.approx(2.0)
    pred[2:] += [0, 3.0, 0]                            # one jump of (2, 3, 0) between frames 1 and 2
    assert mpjve(pred, gt) == pytest.approx((2 + math.sqrt(13) + 2) / 3)


def test_per_action_evaluation_weights_trials_by_frames_and_averages_actions():
    # Directions-1: 2 frames off by 1; Directions-2: 3 frames off by 4; Eating-1: 2 frames off by 10
    # (constant shifts along x).
    gt = random_pose(5, n=7)[:, None]
    pred = gt.copy()
    pred[:2, ..., 0] += 1.0
    pred[2:5, ..., 0] += 4.0
    pred[5:, ..., 0] += 10.0
    action = np.array([2, 2, 2, 2, 2, 4, 4])
    subaction = np.array([1, 1, 2, 2, 2, 1, 1])
    results = evaluate_by_action(torch.tensor(pred), torch.tensor(gt), action, subaction)
    assert list(results) == ['Directions', 'Eating']
    assert results['Directions']['MPJPE'] == pytest.approx((2 * 1 + 3 * 4) / 5)
    assert results['Directions']['frame_count'] == 5
    assert results['Eating']['MPJPE'] == pytest.approx(10.0)
    assert results['Directions']['MPJVE'] == pytest.approx(0.0)      # constant offsets: no velocity error
    summary = summarize(results)
    assert summary['p1'] == pytest.approx(1000 * ((14 / 5) + 10) / 2)
    # P2 removes the translation entirely
    assert summary['p2'] == pytest.approx(0.0, abs=1e-6)


def test_official_table_format_parses():
    gt = random_pose(4, n=4)[:, None]
    pred = gt + 0.01
    results = evaluate_by_action(pred, gt, np.array([5, 5, 5, 5]), np.array([1, 1, 2, 2]))
    lines = format_table(results)
    assert re.fullmatch(r'Greeting: p1=\d+\.\d\d, p2=\d+\.\d\d, e_vel=\d+\.\d\d', lines[0])
    match = re.fullmatch(r'avg p1: ([\d.]+) p2: ([\d.]+) MPJVE: ([\d.]+)', lines[-1])
    assert float(match.group(1)) == pytest.approx(round(1000 * math.sqrt(3) * 0.01, 1))


def test_evaluation_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match='differ in shape'):
        evaluate_by_action(np.zeros((2, 17, 3)), np.zeros((3, 17, 3)), np.array([2, 2]), np.array([1, 1]))
