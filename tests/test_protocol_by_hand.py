"""The Human3.6M protocol on tiny pose sets whose figures are worked out by hand: P2 and MPJVE
weighted by each trial's frames, one-frame trials, the plain mean over the 15 actions, and the
Procrustes scale when the best orthogonal fit would be a reflection."""
import math

import numpy as np
import pytest

from mvn.datasets.evaluation import ActionReport, evaluate_by_action, summarize
from mvn.models.loss import p_mpjpe, procrustes_align

# A "cross" of four joints in the z = 0 plane, radius 0.1 m, centred at (0.3, -0.2, 4.0).
CROSS = np.array([[0.1, 0, 0], [-0.1, 0, 0], [0, 0.1, 0], [0, -0.1, 0]]) + [0.3, -0.2, 4.0]
# The same cross with joints 0, 1 lifted and 2, 3 lowered by 0.1 m. Its best similarity fit
# to CROSS keeps the rotation (the cross-covariance is diag(0.02, 0.02, 0)) and scales by
# 0.02 * 2 / (0.02 * 2 + 4 * 0.01) = 1/2, leaving each joint (0.05, 0, 0.05) off: P2 = 0.05 * sqrt(2).
BENT = CROSS + np.array([[0, 0, 0.1], [0, 0, 0.1], [0, 0, -0.1], [0, 0, -0.1]])
BENT_P2 = 0.05 * math.sqrt(2)


def frames(pose, n, step=(0.0, 0.0, 0.0)):
    """n frames of ``pose`` moving by ``step`` (m) per frame: (n, J, 3)."""
    return np.stack([pose + i * np.asarray(step) for i in range(n)])


def test_bent_cross_by_hand():
    assert p_mpjpe(BENT[None], CROSS[None]) == pytest.approx(BENT_P2, abs=1e-12)


def test_p2_of_an_action_weights_its_two_trials_by_their_frames():
    # Directions-1: 2 frames, bent (P2 = BENT_P2); Directions-2: 3 frames, a similar copy (P2 = 0).
    gt = np.concatenate([frames(CROSS, 2), frames(CROSS, 3)])
    pred = np.concatenate([frames(BENT, 2), frames(1.3 * CROSS + 0.5, 3)])
    results = evaluate_by_action(pred, gt, np.full(5, 2), np.array([1, 1, 2, 2, 2]))
    assert results['Directions']['P_MPJPE'] == pytest.approx(2 * BENT_P2 / 5, abs=1e-12)   # not BENT_P2 / 2


def test_mpjve_of_an_action_weights_its_two_trials_by_their_frames():
    # The truth stands still. Trial 1: 2 frames drifting by (3, 4, 0) mm per frame: velocity error 5 mm;
    # trial 2: 4 frames drifting by (0, 6, 8) mm per frame: 10 mm. Weights: the frames, 2 and 4.
    gt = np.concatenate([frames(CROSS, 2), frames(CROSS, 4)])
    pred = np.concatenate([frames(CROSS, 2, (0.003, 0.004, 0)), frames(CROSS, 4, (0, 0.006, 0.008))])
    results = evaluate_by_action(pred, gt, np.full(6, 5), np.array([1, 1, 2, 2, 2, 2]))
    assert results['Greeting']['MPJVE'] == pytest.approx((2 * 0.005 + 4 * 0.010) / 6, abs=1e-12)
    # MPJPE: trial 1 is off by 0, 5 mm; trial 2 by 0, 10, 20, 30 mm: (0 + 5 + 0 + 10 + 20 + 30) / 6
    assert results['Greeting']['MPJPE'] == pytest.approx(0.065 / 6, abs=1e-12)
    assert results['Greeting']['frame_count'] == 6


def test_a_one_frame_trial_counts_for_p1_and_p2_but_adds_no_velocity():
    # Eating-1: one frame 30 mm off along x (no velocity); Eating-2: 3 frames bent and drifting 5 mm/frame.
    gt = np.concatenate([frames(CROSS, 1), frames(CROSS, 3)])
    pred = np.concatenate([frames(CROSS + [0.03, 0, 0], 1), frames(BENT, 3, (0.003, 0.004, 0))])
    results = evaluate_by_action(pred, gt, np.full(4, 4), np.array([1, 2, 2, 2]))
    eating = results['Eating']
    assert eating['MPJVE'] == pytest.approx(0.005, abs=1e-12)            # trial 2 alone, not NaN, not 3/4 of it
    assert eating['P_MPJPE'] == pytest.approx(3 * BENT_P2 / 4, abs=1e-12)
    assert eating['frame_count'] == 4
    # a lone one-frame trial: P1 as usual, MPJVE undefined
    alone = evaluate_by_action(pred[:1], gt[:1], np.array([4]), np.array([1]))['Eating']
    assert alone['MPJPE'] == pytest.approx(0.03, abs=1e-12) and math.isnan(alone['MPJVE'])


def test_the_average_is_the_plain_mean_over_the_actions_in_millimetres():
    # 15 actions, action a (2..16) has (a - 1) frames, all off along y by a mm (by 100 mm for
    # WalkingTogether, 16): the plain mean over the actions is (2 + ... + 15 + 100) / 15 = 14.6 mm
    # (a frame-weighted mean would be 2620 / 105 = 24.95, the median 9).
    gt, pred, action, subaction = [], [], [], []
    for a in range(2, 17):
        n = a - 1
        gt.append(frames(CROSS, n))
        pred.append(frames(CROSS + [0, (a if a < 16 else 100) / 1000.0, 0], n))
        action += [a] * n
        subaction += [1 + i % 2 for i in range(n)]
    results = evaluate_by_action(np.concatenate(pred), np.concatenate(gt), np.array(action), np.array(subaction))
    assert len(results) == 15
    assert summarize(results)['p1'] == pytest.approx(14.6, abs=1e-9)
    report = ActionReport(results)
    assert report.summary['p1_mm'] == pytest.approx(14.6, abs=1e-9)
    assert report.rows['WalkingTogether']['p1_mm'] == pytest.approx(100.0, abs=1e-9)
    assert report.rows['Directions']['frames'] == 1


def test_the_best_checkpoint_score_is_the_average_p1_rounded_to_a_tenth_of_a_millimetre():
    def report(p1_mm):
        return ActionReport({'Directions': {'MPJPE': p1_mm / 1000, 'P_MPJPE': 0.0, 'MPJVE': 0.0, 'frame_count': 1}})
    assert report(50.04).score == 50.0
    assert report(50.06).score == 50.1
    assert report(41.349).score == 41.3


# --------------------------------------------------------------------------------------------
# Procrustes when the best orthogonal fit is a reflection

def test_procrustes_scale_under_a_reflection_by_hand():
    # Six joints on the axes: (+-2, 0, 0), (0, +-1, 0), (0, 0, +-0.5); the prediction is the mirror
    # image in z. Its cross-covariance with the truth is diag(8, 2, -0.5): the best proper rotation
    # is the identity, and the best scale (8 + 2 - 0.5) / (8 + 2 + 0.5) = 19/21 (a scale from
    # 8 + 2 + 0.5 would be 1). Errors: 2 * 2/21 on the x joints, 2/21 on the y joints, 0.5 * 40/21
    # on the z joints: P2 = (8 + 4 + 40) / (21 * 6) = 26/63.
    gt = np.array([[2, 0, 0], [-2, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 0.5], [0, 0, -0.5]], dtype=np.float64)
    pred = gt * [1, 1, -1] + [5.0, -3.0, 7.0]
    aligned = procrustes_align(pred[None], gt[None])[0]
    np.testing.assert_allclose(aligned, gt * [19 / 21, 19 / 21, -19 / 21], atol=1e-12)
    assert p_mpjpe(pred[None], gt[None]) == pytest.approx(26 / 63, abs=1e-12)
