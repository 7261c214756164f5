"""train_one_epoch and predict in-process: NaN steps, gradient clipping, mixed precision."""
import math

import pytest
import torch
from torch.utils.data import DataLoader

from mvn import engine
from mvn.datasets.batch import BatchPreparer
from mvn.datasets.human36m import Human36MSingleViewDataset
from mvn.models.conpose import CA_PF
from mvn.utils.cfg import load_config
from tests.helpers import write_config


@pytest.fixture
def setup(tmp_path, processed_data):
    cfg = load_config(write_config(tmp_path / 'tiny.yaml', processed_data))
    torch.manual_seed(0)
    model = CA_PF(cfg)
    dataset = Human36MSingleViewDataset(root=processed_data['root'], labels_path=processed_data['train'],
                                        progress=False)
    loader = DataLoader(dataset, batch_size=8, shuffle=False)
    optimizer = torch.optim.AdamW(model.volume_net.parameters(), lr=1e-3, weight_decay=0.1)
    return model, loader, optimizer


def head_state(model):
    return {k: v.clone() for k, v in model.volume_net.state_dict().items()}


def test_a_nan_loss_skips_the_step(setup, monkeypatch):
    model, loader, optimizer = setup
    real_forward = model.forward
    monkeypatch.setattr(model, 'forward', lambda *a: real_forward(*a) * float('nan'))
    before = head_state(model)
    stats = engine.train_one_epoch(model, optimizer, loader, BatchPreparer('hrnet_tiny', 'cpu', train=True), 1)
    assert stats['skipped'] == len(loader) and stats['samples'] == 0 and math.isnan(stats['loss'])
    assert all(torch.equal(v, before[k]) for k, v in model.volume_net.state_dict().items())


def test_gradient_clipping_uses_clip_over_initial_lr(setup, monkeypatch):
    model, loader, optimizer = setup
    seen = []
    real_clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, 'clip_grad_norm_', lambda params, max_norm: seen.append(max_norm)
                        or real_clip(params, max_norm))
    engine.train_one_epoch(model, optimizer, loader, BatchPreparer('hrnet_tiny', 'cpu', train=True), 1,
                           grad_clip=0.5, base_lr=0.001)
    assert seen == [pytest.approx(500.0)] * len(loader)
    seen.clear()
    engine.train_one_epoch(model, optimizer, loader, BatchPreparer('hrnet_tiny', 'cpu', train=True), 2)
    assert seen == []


def test_loss_is_sample_weighted_mpjpe_and_training_lowers_it(setup):
    model, loader, optimizer = setup
    first = engine.train_one_epoch(model, optimizer, loader, BatchPreparer('hrnet_tiny', 'cpu', train=True), 1)
    assert first['samples'] == len(loader.dataset) and first['skipped'] == 0
    for epoch in range(2, 6):
        last = engine.train_one_epoch(model, optimizer, loader, BatchPreparer('hrnet_tiny', 'cpu', train=True), epoch)
    assert last['loss'] < first['loss']


@pytest.mark.parametrize('amp', ['bf16', 'fp16'])
def test_mixed_precision_trains_and_predicts(setup, amp):
    model, loader, optimizer = setup
    scaler = torch.amp.GradScaler('cpu') if amp == 'fp16' else None
    stats = engine.train_one_epoch(model, optimizer, loader, BatchPreparer('hrnet_tiny', 'cpu', train=True), 1,
                                   amp=amp, scaler=scaler)
    assert math.isfinite(stats['loss'])
    pred, target = engine.predict(model, loader, BatchPreparer('hrnet_tiny', 'cpu', flip_test=True), amp=amp)
    assert pred.dtype == torch.float32 and pred.shape == target.shape == (len(loader.dataset), 1, 17, 3)


def test_amp_off_is_plain_fp32(setup):
    model, loader, _ = setup
    preparer = BatchPreparer('hrnet_tiny', 'cpu', flip_test=False)
    pred, _ = engine.predict(model, loader, preparer, flip_test=False, amp='off')
    with torch.no_grad():
        model.eval()
        images, _, keypoints_2d, keypoints_crop = preparer(next(iter(loader)))
        assert torch.equal(pred[:8], model(images, keypoints_2d, keypoints_crop))
