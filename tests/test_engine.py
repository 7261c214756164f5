"""train_one_epoch and predict in-process: NaN steps, gradient clipping, mixed precision."""
import math
import time

import pytest
import torch
from torch.utils.data import DataLoader

from mvn import engine
from mvn.datasets.human36m import Human36MSingleViewDataset
from mvn.models.conpose import CA_PF
from mvn.utils.cfg import ConfigError, load_config
from tests.helpers import free_port, h36m_preparer, write_config


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
    stats = engine.train_one_epoch(model, optimizer, loader, h36m_preparer('hrnet_tiny', 'cpu', train=True), 1)
    assert stats['skipped'] == len(loader) and stats['samples'] == 0 and math.isnan(stats['loss'])
    assert all(torch.equal(v, before[k]) for k, v in model.volume_net.state_dict().items())


def test_gradient_clipping_uses_clip_over_initial_lr(setup, monkeypatch):
    model, loader, optimizer = setup
    seen = []
    real_clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, 'clip_grad_norm_', lambda params, max_norm: seen.append(max_norm)
                        or real_clip(params, max_norm))
    engine.train_one_epoch(model, optimizer, loader, h36m_preparer('hrnet_tiny', 'cpu', train=True), 1,
                           grad_clip=0.5, base_lr=0.001)
    assert seen == [pytest.approx(500.0)] * len(loader)
    seen.clear()
    engine.train_one_epoch(model, optimizer, loader, h36m_preparer('hrnet_tiny', 'cpu', train=True), 2)
    assert seen == []


def test_loss_is_sample_weighted_mpjpe_and_training_lowers_it(setup):
    model, loader, optimizer = setup
    first = engine.train_one_epoch(model, optimizer, loader, h36m_preparer('hrnet_tiny', 'cpu', train=True), 1)
    assert first['samples'] == len(loader.dataset) and first['skipped'] == 0
    for epoch in range(2, 6):
        last = engine.train_one_epoch(model, optimizer, loader, h36m_preparer('hrnet_tiny', 'cpu', train=True), epoch)
    assert last['loss'] < first['loss']


@pytest.mark.parametrize('amp', ['bf16', 'fp16'])
def test_mixed_precision_trains_and_predicts(setup, amp):
    model, loader, optimizer = setup
    if amp == 'fp16' and not hasattr(torch.amp, 'GradScaler'):
        pytest.skip('fp16 autocast on the CPU needs torch >= 2.3')
    scaler = engine.make_grad_scaler(amp, torch.device('cpu'))
    assert (scaler is None) == (amp == 'bf16')
    stats = engine.train_one_epoch(model, optimizer, loader, h36m_preparer('hrnet_tiny', 'cpu', train=True), 1,
                                   amp=amp, scaler=scaler)
    assert math.isfinite(stats['loss'])
    pred, target = engine.predict(model, loader, h36m_preparer('hrnet_tiny', 'cpu', flip_test=True), amp=amp)
    assert pred.dtype == torch.float32 and pred.shape == target.shape == (len(loader.dataset), 1, 17, 3)


def test_fp16_on_the_cpu_under_old_torch_is_a_config_error(monkeypatch):
    monkeypatch.delattr(torch.amp, 'GradScaler', raising=False)     # as in torch < 2.3
    with pytest.raises(ConfigError, match=r"train.amp 'fp16' on the CPU needs torch >= 2.3 .*use 'bf16'"):
        engine.make_grad_scaler('fp16', torch.device('cpu'))
    assert engine.make_grad_scaler('off', torch.device('cpu')) is None


def test_amp_off_is_plain_fp32(setup):
    model, loader, _ = setup
    preparer = h36m_preparer('hrnet_tiny', 'cpu', flip_test=False)
    pred, _ = engine.predict(model, loader, preparer, flip_test=False, amp='off')
    with torch.no_grad():
        model.eval()
        images, _, keypoints_2d, keypoints_crop = preparer(next(iter(loader)))
        assert torch.equal(pred[:8], model(images, keypoints_2d, keypoints_crop))


def _nan_on_rank_one(rank, port, config_path, processed_data, results):
    import os
    import torch.distributed as torch_dist
    from torch.nn.parallel import DistributedDataParallel
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=port)
    torch_dist.init_process_group('gloo', rank=rank, world_size=2)
    torch.manual_seed(0)
    model = CA_PF(load_config(config_path))
    if rank == 1:
        real_forward = model.forward
        model.forward = lambda *a: real_forward(*a) * float('nan')
    dataset = Human36MSingleViewDataset(root=processed_data['root'], labels_path=processed_data['train'],
                                        progress=False)
    loader = DataLoader(dataset, batch_size=8, shuffle=False)
    optimizer = torch.optim.AdamW(model.volume_net.parameters(), lr=1e-3)
    stats = engine.train_one_epoch(DistributedDataParallel(model), optimizer, loader,
                                   h36m_preparer('hrnet_tiny', 'cpu', train=True), 1)
    results[rank] = stats['skipped']
    torch_dist.destroy_process_group()


def test_a_nan_on_one_rank_skips_the_step_on_all_ranks(tmp_path, processed_data):
    # Without agreeing, the rank that skipped would leave the other one waiting in DDP's all-reduce.
    import torch.multiprocessing as mp
    port = free_port()
    config_path = write_config(tmp_path / 'tiny.yaml', processed_data)
    results = mp.Manager().dict()
    context = mp.spawn(_nan_on_rank_one, args=(port, config_path, processed_data, results), nprocs=2, join=False)
    start = time.time()
    while not context.join(timeout=5):
        assert time.time() - start < 120, 'the ranks hung'
    assert dict(results) == {0: 6, 1: 6}        # all 3 steps skipped on both ranks, summed over ranks
