"""The 3DHP evaluation against the official MATLAB scripts, run once under GNU Octave.

``tests/data/official_3dhp_eval_reference.json`` holds the numbers the official
``3dhp_test/test_util`` scripts printed for the data of ``reference_case`` below:
``mpii_test_predictions_py.m`` (its inference_data.mat path pointed at this data and its final
``writetable`` calls replaced by printing the two tables, since Octave has no ``writetable``)
reading per-sequence ``annot_data.mat`` files (MATLAB v5, written with scipy) and an
``inference_data.mat`` of predictions (single precision, pelvis zeroed, as the official
``run_3dhp.py`` saves them), then ``mpii_evaluate_errors.m``. GNU Octave 7.3.0 (Debian 12).
"""
import json
import os

import numpy as np
import pytest

from mvn.datasets.evaluation_3dhp import evaluate_3dhp

REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'official_3dhp_eval_reference.json')
ROOT = 14
# Errors that sit exactly on thresholds (Pythagorean: exact in single and double precision).
EXACT_ERRORS = [(0, 0, 0), (3, 4, 0), (6, 8, 0), (0, 0, 75), (90, 120, 0), (0, 150, 0), (80, 0, 150), (0, 0, 145)]


def reference_case(seed=3):
    """{TS number: (univ_annot3 (N, 17, 3) mm, valid (N,), activity (N,), pred (N, 17, 3) mm)}.

    Ground truth: whole millimetres, pelvis near 4 m depth. Predictions: the pelvis-relative
    truth plus, per joint, either an exact threshold-sized error from EXACT_ERRORS or a random
    whole-millimetre error of up to ~250 mm; their pelvis is zero. Every third frame is invalid.
    """
    rng = np.random.default_rng(seed)
    case = {}
    for ts in range(1, 7):
        n = 6 + ts
        gt = rng.integers(-700, 700, size=(n, 17, 3)).astype(np.float64)
        gt[:, :, 2] += 4000
        offsets = rng.integers(-150, 150, size=(n, 17, 3)).astype(np.float64)
        exact = rng.random((n, 17)) < 0.3
        picks = rng.integers(0, len(EXACT_ERRORS), size=(n, 17))
        offsets[exact] = np.array(EXACT_ERRORS, dtype=np.float64)[picks[exact]]
        pred = (gt - gt[:, ROOT:ROOT + 1]) + offsets
        pred[:, ROOT] = 0
        valid = (np.arange(n) % 3 != 2).astype(np.float64)
        activity = 1 + (np.arange(n) + ts) % 7
        case[ts] = (gt, valid, activity, pred.astype(np.float32))
    return case


@pytest.fixture(scope='module')
def reference():
    with open(REFERENCE) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def report():
    case = reference_case()
    gt = np.concatenate([case[t][0] for t in case])
    valid = np.concatenate([case[t][1] for t in case])
    activity = np.concatenate([case[t][2] for t in case])
    pred = np.concatenate([case[t][3] for t in case])
    sequence = np.concatenate([np.full(len(case[t][0]), t) for t in case])
    return evaluate_3dhp(pred, gt, sequence, valid=valid, activity=activity)


def test_sequencewise_rows_match_the_official_scripts(report, reference):
    for name, row in reference['sequencewise'].items():
        ours = report['sequences']['TS%s' % name[len('TestSeq'):]]
        # 1e-4 mm: the official script subtracts in single precision (its predictions are float32).
        assert ours['mpjpe_mm'] == pytest.approx(row['mpjpe'], abs=1e-4)
        assert ours['mpjpe_per_joint_mm'] == pytest.approx(row['mpjpe_per_joint'], abs=1e-4)
        assert ours['pck'] == pytest.approx(row['pck']['Total'], abs=1e-9)
        assert ours['auc'] == pytest.approx(row['auc']['Total'], abs=1e-9)
        for group in ours['pck_per_group']:
            assert ours['pck_per_group'][group] == pytest.approx(row['pck'][group], abs=1e-9)
            assert ours['auc_per_group'][group] == pytest.approx(row['auc'][group], abs=1e-9)


def test_activitywise_and_all_rows_match_the_official_scripts(report, reference):
    rows = dict(report['activities'], All=report['overall'])
    for name, row in reference['activitywise'].items():
        if name not in rows:
            assert np.isnan(row['mpjpe'])     # the official tables keep empty activities as NaN
            continue
        assert rows[name]['mpjpe_mm'] == pytest.approx(row['mpjpe'], abs=1e-4)
        assert rows[name]['pck'] == pytest.approx(row['pck']['Total'], abs=1e-9)
        assert rows[name]['auc'] == pytest.approx(row['auc']['Total'], abs=1e-9)
