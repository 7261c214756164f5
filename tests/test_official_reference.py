"""Our model and Human3.6M evaluation against figures produced by RUNNING THE OFFICIAL CODE.

How tests/data/official_h36m_model_outputs.npz and official_h36m_eval_reference.json were made
(once; the official code is not in this repository, only these numbers are):

1. ``git archive`` of the official repository (QitaoZhao/ContextAware-PoseFormer) into a scratch
   folder; its missing dependencies installed beside it, not in the project:
   ``pip install --target <scratch>/pkgs --no-deps einops timm==0.6.7 yacs`` (timm 0.6.7 is the
   version of its requirements.txt; torch 2.14.1 on the CPU, one thread).
2. A script with ``<scratch>/pkgs`` and ``ContextPose/`` first on ``sys.path`` loaded
   ``tests/reference_inputs.py`` by path and, for each backbone, configured the official model as
   its ``train.py main()`` does (``update_config('experiments/human36m/human36m.yaml')``, the
   backbone's channels and ``base_dim``), built ``CA_PF(config)``, loaded
   ``formula_state(model.state_dict())`` strictly, and ran ``model_inputs()`` (batch 2, 64x64
   images) through it:
   - eval: ``model.eval()``, ``torch.no_grad()``;
   - train: ``model.train(); model.backbone.eval(); model.volume_net.train()`` (its
     ``one_epoch_full`` with a fixed backbone), ``torch.manual_seed(1234)``, then the forward
     (stochastic depth draws its masks);
   and saved the (2, 1, 17, 3) outputs as ``<backbone>_eval`` / ``<backbone>_train``.
3. The same script built the official ``Human36MSingleViewDataset`` without its ``__init__``,
   set ``labels_action_idx = (action - 2) * 2 + (subaction - 1)`` and ``video_idx`` for
   ``evaluation_set()``, called its ``evaluate(gt, pred)`` (float64 tensors), and saved each
   action's MPJPE, P_MPJPE, MPJVE x 1000 and the lines its ``train.py --eval`` prints.

The official state dict keys equal ours (the formula gives both the same weights by name).
"""
import json
import os

import numpy as np
import pytest
import torch

from mvn.datasets.evaluation import evaluate_by_action, format_table
from mvn.models.conpose import CA_PF
from mvn.utils.cfg import load_config
from tests import reference_inputs as ref

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


@pytest.fixture(scope='module')
def official_outputs():
    return np.load(os.path.join(HERE, 'data', 'official_h36m_model_outputs.npz'))


@pytest.mark.parametrize('backbone', ['hrnet_32', 'hrnet_48', 'cpn'])
def test_the_model_gives_the_official_outputs_in_eval_and_train_mode(backbone, official_outputs):
    cfg = load_config(os.path.join(REPO, 'experiments', 'human36m', 'human36m.yaml'), backbone=backbone)
    model = CA_PF(cfg)
    model.load_state_dict(ref.formula_state(model.state_dict()), strict=True)
    images, keypoints, crop = ref.model_inputs()
    model.eval()
    with torch.no_grad():
        evaluated = model(images, keypoints, crop)
    model.train()
    torch.manual_seed(ref.TRAIN_SEED)
    with torch.no_grad():
        trained = model(images, keypoints, crop)
    # The same float32 arithmetic in the same order: equal to the last bit on the CPU where they
    # were made; a few ulp of slack for other CPUs' kernels.
    torch.testing.assert_close(evaluated, torch.from_numpy(official_outputs[backbone + '_eval']), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(trained, torch.from_numpy(official_outputs[backbone + '_train']), rtol=1e-5, atol=1e-6)
    # the train-mode reference really holds stochastic depth (it is not the eval answer again)
    assert not np.allclose(official_outputs[backbone + '_train'], official_outputs[backbone + '_eval'], atol=1e-3)


def test_the_evaluation_gives_the_official_table():
    with open(os.path.join(HERE, 'data', 'official_h36m_eval_reference.json')) as f:
        official = json.load(f)
    pred, gt, action, subaction = ref.evaluation_set()
    results = evaluate_by_action(torch.from_numpy(pred), torch.from_numpy(gt), action, subaction)
    assert list(results) == list(official['actions'])
    for name, row in official['actions'].items():
        ours = results[name]
        assert 1000 * ours['MPJPE'] == pytest.approx(row['p1_mm'], rel=1e-12), name
        assert 1000 * ours['P_MPJPE'] == pytest.approx(row['p2_mm'], rel=1e-12), name
        assert 1000 * ours['MPJVE'] == pytest.approx(row['mpjve_mm'], rel=1e-12), name
    assert format_table(results) == official['printed']
