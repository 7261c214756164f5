"""The MPI-INF-3DHP evaluation of the official MATLAB scripts (``3dhp_test/test_util``), in NumPy.

``mpii_test_predictions_py.m`` takes, for every valid frame of TS1..TS6, the error of each of the
17 joints: the distance between the prediction (root-relative; the official code sets its
pelvis to zero) and the universal-skeleton ground truth minus its pelvis. From these errors
(``mpii_evaluate_errors.m``, ``mpii_compute_3d_pck.m``):

* MPJPE: per joint the mean over frames, then the mean over all 17 joints (the pelvis, always 0,
  included);
* PCK: the percentage of errors below 150 mm (strictly), over the 14 joints of the PCK groups
  (pelvis, spine and head excluded), the groups weighted by their joint counts;
* AUC: the mean over the thresholds 0, 5, ..., 150 mm of that fraction, in percent (threshold 0
  counts nothing, so the best possible AUC is 30/31 = 96.77 %).

Each test sequence is scored on its own frames; the overall row ('All' in the official tables,
what papers report) pools the frames of every sequence, so it is frame-weighted. Scenes (GS,
noGS, Outdoor) pool their two sequences, which equals the test README's weighted averages.

Pure functions; inputs in millimetres, computed in float64 (the official MATLAB path mixes single
and double precision: results agree to ~1e-4 mm, and a PCK differs only for an error within
float rounding of a threshold).
"""
from typing import Dict, List

import numpy as np

from mvn.datasets import mpi_meta as meta

PCK_JOINTS = sorted(j for joints in meta.PCK_JOINT_GROUPS.values() for j in joints)


def joint_errors(pred_mm, gt_mm, root=meta.ROOT_JOINT):
    """Per-joint Euclidean errors (N, J) in mm, as mpii_test_predictions_py.m forms them.

    pred_mm: (N, [1,] J, 3) root-relative predictions; their root joint is set to zero (the
    official code does this before saving them). gt_mm: (N, [1,] J, 3) ground truth, absolute
    or relative: its root joint is subtracted.
    """
    pred = np.asarray(pred_mm, dtype=np.float64)
    gt = np.asarray(gt_mm, dtype=np.float64)
    pred = pred.reshape(pred.shape[0], -1, 3).copy()
    gt = gt.reshape(gt.shape[0], -1, 3)
    if pred.shape != gt.shape:
        raise ValueError('predictions %s and ground truth %s differ in shape' % (pred.shape, gt.shape))
    pred[:, root] = 0.0
    return np.linalg.norm(pred - (gt - gt[:, root:root + 1]), axis=-1)


def pck_curve(errors, joints=PCK_JOINTS, thresholds=meta.AUC_THRESHOLDS_MM):
    """Fraction (0..1) of errors[:, joints] strictly below each threshold: (len(thresholds),)."""
    selected = np.asarray(errors, dtype=np.float64)[:, joints]
    if selected.size == 0:
        return np.full(len(thresholds), np.nan)
    return np.array([(selected < t).mean() for t in thresholds])


def pck(errors, joints=PCK_JOINTS, threshold=meta.PCK_THRESHOLD_MM):
    """PCK in percent: errors (N, J) mm below ``threshold`` mm, over ``joints``."""
    return 100.0 * float(pck_curve(errors, joints, [threshold])[0])


def auc(errors, joints=PCK_JOINTS, thresholds=meta.AUC_THRESHOLDS_MM):
    """AUC in percent: the mean of the PCK curve over ``thresholds`` (mm)."""
    return 100.0 * float(pck_curve(errors, joints, thresholds).mean())


def score(errors):
    """MPJPE (mm), PCK and AUC (%) overall and per joint group, of errors (N, J) mm."""
    errors = np.asarray(errors, dtype=np.float64)
    return {
        'frames': int(errors.shape[0]),
        'mpjpe_mm': float(errors.mean()) if errors.size else float('nan'),
        'pck': pck(errors),
        'auc': auc(errors),
        'mpjpe_per_joint_mm': [float(v) for v in errors.mean(axis=0)] if errors.size else [],
        'pck_per_group': {name: pck(errors, joints) for name, joints in meta.PCK_JOINT_GROUPS.items()},
        'auc_per_group': {name: auc(errors, joints) for name, joints in meta.PCK_JOINT_GROUPS.items()},
    }


def evaluate_3dhp(pred_mm, gt_mm, test_sequence, valid=None, activity=None) -> Dict:
    """The official evaluation of predictions for test frames.

    pred_mm, gt_mm: (N, [1,] 17, 3) millimetres (see ``joint_errors``); test_sequence: (N,)
    ints 1..6 (TS1..TS6); valid: (N,) flags, frames with 0 are skipped (default: all valid);
    activity: optional (N,) activity ids 1..7 for the activity-wise rows.
    Returns {'sequences': {'TS1': score, ...}, 'scenes': {'GS': score, ...},
    'activities': {name: score, ...}, 'overall': score} (see ``score``); only groups with frames.
    """
    errors = joint_errors(pred_mm, gt_mm)
    test_sequence = np.asarray(test_sequence).reshape(-1)
    keep = np.ones(len(errors), bool) if valid is None else np.asarray(valid).reshape(-1).astype(bool)
    if test_sequence.shape != (len(errors),) or keep.shape != (len(errors),):
        raise ValueError('%d poses but %d sequence ids and %d valid flags'
                         % (len(errors), test_sequence.size, keep.size))
    errors, test_sequence = errors[keep], test_sequence[keep]
    report = {'sequences': {}, 'scenes': {}, 'activities': {}}
    for s in meta.TEST_SEQUENCES:
        mask = test_sequence == s
        if mask.any():
            report['sequences']['TS%d' % s] = score(errors[mask])
    for name, sequences in meta.SCENES.items():
        mask = np.isin(test_sequence, sequences)
        if mask.any():
            report['scenes'][name] = score(errors[mask])
    if activity is not None:
        activity = np.asarray(activity).reshape(-1)[keep]
        for a, name in meta.ACTIVITY_NAMES.items():
            mask = activity == a
            if mask.any():
                report['activities'][name] = score(errors[mask])
    report['overall'] = score(errors)
    return report


def format_table(report) -> List[str]:
    """Printed lines: one per test sequence, then the overall row (PCK, AUC in %, MPJPE in mm)."""
    lines = ['%-8s %7s %7s %7s %11s' % ('sequence', 'frames', 'PCK', 'AUC', 'MPJPE (mm)')]
    rows = list(report['sequences'].items()) + list(report['scenes'].items()) + [('All', report['overall'])]
    for name, s in rows:
        lines.append('%-8s %7d %7.2f %7.2f %11.2f' % (name, s['frames'], s['pck'], s['auc'], s['mpjpe_mm']))
    return lines


def summary(report: Dict) -> Dict[str, float]:
    """The three reported numbers of the overall row: {'pck', 'auc', 'mpjpe_mm'}."""
    overall = report['overall']
    return {'pck': overall['pck'], 'auc': overall['auc'], 'mpjpe_mm': overall['mpjpe_mm']}
