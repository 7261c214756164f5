"""MPI-INF-3DHP metrics against hand-computed cases (the official MATLAB definitions)."""
import numpy as np
import pytest

from mvn.datasets import mpi_meta as meta
from mvn.datasets.evaluation_3dhp import evaluate_3dhp, format_table, joint_errors, summary

ROOT = 14


def poses_with_errors(errors_per_frame, offset=(100.0, 200.0, 3000.0), pred_root=(555.0, -5.0, 7.0)):
    """(pred, gt) in mm whose joint j of frame i is off by exactly errors[i][j] mm. gt is absolute
    (pelvis at ``offset`` plus a body of whole millimetres); pred is root-relative, each joint
    moved along an axis that varies with the joint, with a junk pelvis value that the evaluation
    must set to zero. All values are exact in binary, so errors of 150.0 are exactly 150.0."""
    rng = np.random.default_rng(0)
    n = len(errors_per_frame)
    body = rng.integers(-400, 400, size=(n, 17, 3)).astype(np.float64)
    body[:, ROOT] = 0
    gt = body + np.array(offset)
    directions = np.eye(3)[np.arange(17) % 3] * np.where(np.arange(17) % 2, -1.0, 1.0)[:, None]
    pred = body + np.asarray(errors_per_frame, dtype=np.float64)[:, :, None] * directions
    pred[:, ROOT] = pred_root
    return pred, gt


def errors_frame(default, **joint_errors_mm):
    e = np.full(17, float(default))
    e[ROOT] = 0.0
    for name, value in joint_errors_mm.items():
        e[meta.JOINT_NAMES.index(name)] = value
    return e


def two_hand_made_frames():
    # Frame 0: the 13 other PCK joints exact, head_top exactly 150 (does not count), right wrist
    # 149.5 (counts only at the 150 threshold); spine and head (outside PCK) 1000.
    f0 = errors_frame(0, head_top=150.0, right_wrist=149.5, spine=1000.0, head=1000.0)
    # Frame 1: 10 mm everywhere, right ankle 200, spine and head 1000.
    f1 = errors_frame(10, right_ankle=200.0, spine=1000.0, head=1000.0)
    return [f0, f1]


def test_joint_errors_zero_the_predicted_root_and_subtract_the_true_one():
    pred, gt = poses_with_errors(two_hand_made_frames())
    np.testing.assert_allclose(joint_errors(pred, gt), two_hand_made_frames(), atol=1e-9)


def test_pck_auc_mpjpe_by_hand_with_thresholds_at_the_boundary():
    pred, gt = poses_with_errors(two_hand_made_frames())
    report = evaluate_3dhp(pred, gt, test_sequence=[1, 1])
    overall = report['overall']
    # PCK@150: 13 of 14 joints in each frame (150.0 itself is not below 150).
    assert overall['pck'] == pytest.approx(100 * 26 / 28)
    # AUC over t = 0, 5, ..., 150 (31 values); joints below t in both frames together:
    # t=0: 0; t=5, 10: 12 (frame 0's exact joints); t=15..145 (27 values): 12 + 13;
    # t=150: 13 + 13.  Sum 725 of 28 joints x 31 thresholds.
    assert overall['auc'] == pytest.approx(100 * 725 / (28 * 31))
    # MPJPE over all 17 joints, the pelvis (0) included: (2299.5 + 2330) / 34.
    assert overall['mpjpe_mm'] == pytest.approx(4629.5 / 34)
    assert report['sequences']['TS1']['pck'] == overall['pck']
    assert report['scenes']['GS']['frames'] == 2 and list(report['sequences']) == ['TS1']


def test_joint_groups():
    pred, gt = poses_with_errors(two_hand_made_frames())
    groups = evaluate_3dhp(pred, gt, [1, 1])['overall']['pck_per_group']
    # Head is head_top alone (150 then 10): 1 of 2; Wrist: 149.5, 10, 0, 10: all; Ankle: 0, 0, 200, 10.
    assert groups == pytest.approx({'Head': 50.0, 'Neck': 100.0, 'Shou': 100.0, 'Elbow': 100.0,
                                    'Wrist': 100.0, 'Hip': 100.0, 'Knee': 100.0, 'Ankle': 75.0})
    assert sorted(j for g in meta.PCK_JOINT_GROUPS.values() for j in g) == list(range(14))


def test_invalid_frames_are_skipped():
    frames = two_hand_made_frames() + [errors_frame(5000)]
    pred, gt = poses_with_errors(frames)
    with_invalid = evaluate_3dhp(pred, gt, [1, 1, 1], valid=[1, 1, 0])
    pred2, gt2 = poses_with_errors(two_hand_made_frames())
    assert with_invalid['overall']['frames'] == 2
    assert summary(with_invalid) == pytest.approx(summary(evaluate_3dhp(pred2, gt2, [1, 1])))


def test_overall_pools_frames_while_sequences_are_scored_alone():
    # TS1: one exact frame; TS5: three frames 200 mm off at every joint but the pelvis.
    frames = [errors_frame(0)] + [errors_frame(200)] * 3
    pred, gt = poses_with_errors(frames)
    report = evaluate_3dhp(pred, gt, [1, 5, 5, 5], activity=[1, 6, 6, 7])
    assert report['sequences']['TS1']['pck'] == 100.0 and report['sequences']['TS5']['pck'] == 0.0
    assert report['overall']['pck'] == pytest.approx(25.0)            # 1 frame of 4, not (100 + 0) / 2
    assert report['sequences']['TS5']['mpjpe_mm'] == pytest.approx(200 * 16 / 17)
    assert report['overall']['mpjpe_mm'] == pytest.approx(3 * 200 * 16 / (4 * 17))
    assert report['scenes']['Outdoor']['frames'] == 3
    assert report['activities']['Sports']['frames'] == 2
    # The best possible AUC: threshold 0 never counts.
    assert report['sequences']['TS1']['auc'] == pytest.approx(100 * 30 / 31)
    lines = format_table(report)
    assert lines[-1].split()[:4] == ['All', '4', '25.00', '%.2f' % report['overall']['auc']]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match='differ in shape'):
        evaluate_3dhp(np.zeros((2, 17, 3)), np.zeros((3, 17, 3)), [1, 1])
    with pytest.raises(ValueError, match='sequence ids'):
        evaluate_3dhp(np.zeros((2, 17, 3)), np.zeros((2, 17, 3)), [1])


def test_skeleton_facts():
    # Left and right joints mirror each other by name, pair for pair.
    for left, right in zip(meta.JOINTS_LEFT, meta.JOINTS_RIGHT):
        assert meta.JOINT_NAMES[left].replace('left_', '') == meta.JOINT_NAMES[right].replace('right_', '')
        assert meta.JOINT_NAMES[left].startswith('left_') and meta.JOINT_NAMES[right].startswith('right_')
    assert meta.JOINT_NAMES[meta.ROOT_JOINT] == 'pelvis' and meta.PARENTS[meta.ROOT_JOINT] == -1
    # Every joint reaches the pelvis through its parents.
    for j in range(17):
        seen = 0
        while j != meta.ROOT_JOINT:
            j, seen = meta.PARENTS[j], seen + 1
            assert seen < 17
    assert len(meta.AUC_THRESHOLDS_MM) == 31 and meta.AUC_THRESHOLDS_MM[-1] == 150.0
