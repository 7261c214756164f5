"""Rules of the training loop against values worked out by hand (in-process, tiny models): the
best-checkpoint rule, AdamW's decoupled weight decay, the per-epoch seeds, the sample weighting
of the reported loss, and what a Ctrl-C during a checkpoint write leaves behind."""
import collections
import os
import signal
import types

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mvn import engine, training
from mvn.datasets.evaluation import ActionReport
from mvn.training import Trainer
from mvn.utils.cfg import load_config
from mvn.utils.checkpoint import atomic_save
from mvn.utils.io import atomic_open

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FakeMonitor:
    """What the Trainer reports to, kept in lists."""
    writer = None

    def __init__(self, folder):
        self.folder = str(folder)
        self.lines = []

    def info(self, message):
        self.lines.append(message)

    warning = info

    def path(self, *parts):
        return os.path.join(self.folder, *parts)

    def scalars(self, values, step):
        pass


def make_trainer(tmp_path, evaluate=None, lr=0.01, weight_decay=0.1, seed=0):
    cfg = types.SimpleNamespace(
        train=types.SimpleNamespace(volume_net_lr=lr, weight_decay=weight_decay, amp='off', volume_net_lr_decay=0.5),
        loss=types.SimpleNamespace(grad_clip=0.0))
    model = nn.Module()
    model.backbone = nn.Linear(2, 2).requires_grad_(False)          # frozen: not trained
    model.volume_net = nn.Linear(2, 2)
    return Trainer(model, cfg, torch.device('cpu'), seed=seed, monitor=FakeMonitor(tmp_path),
                   evaluate=evaluate or (lambda model, epoch: None), config_yaml='')


def epoch_stats():
    """What engine.train_one_epoch returns, for a stand-in: any other figure reads as 0."""
    return collections.defaultdict(float, loss=0.0, samples=1, skipped=0, seconds=0.0, global_step=0)


def report_with_p1(p1_mm):
    return ActionReport({'Directions': {'MPJPE': p1_mm / 1000, 'P_MPJPE': 0.0, 'MPJVE': 0.0, 'frame_count': 1}})


# --------------------------------------------------------------------------------------------
# The best checkpoint

def test_the_best_checkpoint_is_replaced_only_by_a_strictly_lower_p1_rounded_to_a_tenth(tmp_path, monkeypatch):
    # Average P1 per epoch (mm) and its score: 50.04 -> 50.0 (first: saved), 49.96 -> 50.0 (equal: kept),
    # 50.02 -> 50.0 (equal), 49.94 -> 49.9 (lower: saved), 60.0 (higher), 49.86 -> 49.9 (equal).
    p1 = [50.04, 49.96, 50.02, 49.94, 60.0, 49.86]
    saved = []
    monkeypatch.setattr(training.ckpt, 'save_best', lambda path, epoch, *a: saved.append((os.path.basename(path), epoch)))
    monkeypatch.setattr(training.ckpt, 'save_last', lambda *a, **k: None)
    trainer = make_trainer(tmp_path, evaluate=lambda model, epoch: report_with_p1(p1[epoch - 1]))
    for epoch in range(1, len(p1) + 1):
        trainer.epoch = epoch
        trainer.pending = epoch_stats()
        trainer.pending.update(lr=0.001, loss=0.1, seconds=1.0)
        trainer.finish_epoch()
    assert saved == [('best_epoch.bin', 1), ('best_epoch.bin', 4)]
    assert trainer.best_score == 49.9


# --------------------------------------------------------------------------------------------
# AdamW

def test_the_official_weight_decay_is_0_1():
    # official train.py: optim.AdamW(param_dicts, weight_decay=0.1)
    cfg = load_config(os.path.join(REPO, 'experiments', 'human36m', 'human36m.yaml'), backbone='hrnet_32')
    assert cfg.train.weight_decay == 0.1


def test_adamw_decays_the_head_weights_decoupled_from_the_gradient(tmp_path):
    trainer = make_trainer(tmp_path, lr=0.01, weight_decay=0.1)
    head = trainer.model.volume_net
    with torch.no_grad():
        head.weight.fill_(2.0)
        head.bias.fill_(-1.0)
    trained = [p for group in trainer.optimizer.param_groups for p in group['params']]
    assert len(trained) == 2 and all(any(p is q for q in head.parameters()) for p in trained)   # the head only
    for p in trained:
        p.grad = torch.zeros_like(p)
    trainer.optimizer.step()
    # A zero gradient moves nothing; the decay multiplies by 1 - lr * wd = 0.999 (Adam with an
    # L2 term would step by lr = 0.01 instead).
    torch.testing.assert_close(head.weight, torch.full((2, 2), 1.998), rtol=0, atol=1e-6)
    torch.testing.assert_close(head.bias, torch.full((2,), -0.999), rtol=0, atol=1e-6)
    group = trainer.optimizer.param_groups[0]
    assert (group['betas'], group['eps']) == ((0.9, 0.999), 1e-8)       # the official defaults


def test_each_epoch_trains_at_the_rate_decayed_once_per_epoch_before_it(tmp_path, monkeypatch):
    # volume_net_lr 0.01, decay 0.5: epochs 1, 2, 3 train at 0.01, 0.005, 0.0025 (official: lr *= lr_decay
    # after every epoch, applied to the optimizer before the next one)
    rates = []

    def one_epoch(model, optimizer, *args, **kwargs):
        rates.append(optimizer.param_groups[0]['lr'])
        return epoch_stats()
    monkeypatch.setattr(training.engine, 'train_one_epoch', one_epoch)
    monkeypatch.setattr(training.ckpt, 'save_last', lambda *a, **k: None)
    trainer = make_trainer(tmp_path, lr=0.01)
    loader = DataLoader(TensorDataset(torch.arange(4)), batch_size=2, generator=torch.Generator())
    trainer.fit(loader, types.SimpleNamespace(generator=torch.Generator()), n_epochs=3)
    assert rates == pytest.approx([0.01, 0.005, 0.0025], rel=1e-12)
    assert trainer.lr == pytest.approx(0.00125, rel=1e-12) and trainer.epoch == 3


# --------------------------------------------------------------------------------------------
# Per-epoch seeds

def draws_of_epoch(tmp_path, monkeypatch, epoch, rank=0, seed=0):
    """What an epoch's randomness draws first: the global torch and NumPy generators, the flip
    generator of the batch preparation and the loader's shuffle."""
    monkeypatch.setattr(training.dist, 'get_rank', lambda: rank)
    trainer = make_trainer(tmp_path, seed=seed)
    trainer.epoch = epoch                                   # as a resumed run would be
    loader = DataLoader(TensorDataset(torch.arange(50)), batch_size=50, shuffle=True,
                        generator=torch.Generator().manual_seed(123))
    preparer = types.SimpleNamespace(generator=torch.Generator().manual_seed(456))
    seen = {}

    def one_epoch(model, optimizer, loader, preparer, epoch, **kwargs):
        seen['torch'] = torch.rand(3).tolist()
        seen['numpy'] = np.random.rand(3).tolist()
        seen['flips'] = torch.rand(3, generator=preparer.generator).tolist()
        seen['order'] = next(iter(loader))[0].tolist()
        return epoch_stats()

    monkeypatch.setattr(training.engine, 'train_one_epoch', one_epoch)
    trainer.train_epoch(trainer.model, loader, preparer)
    return seen


def test_every_epoch_and_rank_draws_anew_and_a_resumed_epoch_draws_the_same(tmp_path, monkeypatch):
    first = draws_of_epoch(tmp_path, monkeypatch, epoch=0)
    second = draws_of_epoch(tmp_path, monkeypatch, epoch=1)
    other_rank = draws_of_epoch(tmp_path, monkeypatch, epoch=1, rank=1)
    other_seed = draws_of_epoch(tmp_path, monkeypatch, epoch=1, seed=1)
    again = draws_of_epoch(tmp_path, monkeypatch, epoch=1)
    for source in ('torch', 'numpy', 'flips', 'order'):
        assert second[source] == again[source], source              # a resumed run repeats the epoch
        assert second[source] != first[source], source              # the next epoch differs
        assert second[source] != other_seed[source], source         # --seed matters
        if source != 'order':                                       # ranks share the loader's seed
            assert second[source] != other_rank[source], source     # (DistributedSampler splits it)


# --------------------------------------------------------------------------------------------
# The reported loss

class Shifted(nn.Module):
    """Predicts its 'images' input (the test passes the poses it wants predicted)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, images, keypoints_2d, keypoints_crop):
        return images + self.w


class IdentityPreparer:
    device = torch.device('cpu')

    def __call__(self, batch):
        return batch


def test_the_epoch_loss_is_the_mean_over_samples_not_over_batches():
    # Batch 1: 3 samples, every joint (6, 8, 0) mm off: 10 mm; batch 2: 1 sample, (18, 24, 0) mm: 30 mm.
    # Sample-weighted: (3 * 10 + 1 * 30) / 4 = 15 mm (a mean of batch losses would be 20 mm).
    batches = []
    for n, offset in ((3, (0.006, 0.008, 0.0)), (1, (0.018, 0.024, 0.0))):
        pred = torch.zeros(n, 1, 17, 3) + torch.tensor(offset)
        batches.append((pred, torch.zeros(n, 1, 17, 3), torch.zeros(n, 17, 2), torch.zeros(n, 17, 2)))
    preparer = IdentityPreparer()
    model = Shifted()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    stats = engine.train_one_epoch(model, optimizer, batches, preparer, 1)
    assert stats['samples'] == 4 and stats['skipped'] == 0
    assert stats['loss'] == pytest.approx(0.015, abs=1e-8)


# --------------------------------------------------------------------------------------------
# Ctrl-C during a write

def test_ctrl_c_inside_a_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path):
    path = tmp_path / 'best_epoch.bin'
    path.write_bytes(b'old')
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(path) as f:
            f.write(b'half of the new')
            raise KeyboardInterrupt
    assert path.read_bytes() == b'old'
    assert os.listdir(tmp_path) == ['best_epoch.bin']


def test_ctrl_c_inside_torch_save_keeps_the_old_checkpoint_and_removes_the_temporary_one(tmp_path, monkeypatch):
    path = tmp_path / 'last.pth'
    atomic_save({'epoch': 1}, str(path))
    real_save = torch.save

    def interrupted(obj, f, *args, **kwargs):
        f.write(b'PK\x03\x04 partial')
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, 'save', interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({'epoch': 2}, str(path))
    monkeypatch.setattr(torch, 'save', real_save)
    assert torch.load(path, weights_only=True) == {'epoch': 1}
    assert os.listdir(tmp_path) == ['last.pth']


def test_a_sigint_during_a_write_completes_it_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / 'best_epoch.bin'
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(path) as f:
            f.write(b'first, ')
            os.kill(os.getpid(), signal.SIGINT)         # deferred to the end of the write
            f.write(b'second')
    assert path.read_bytes() == b'first, second'
    assert os.listdir(tmp_path) == ['best_epoch.bin']
