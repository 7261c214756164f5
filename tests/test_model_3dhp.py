"""The official MPI-INF-3DHP model variant: config, structure, and outputs of the official code.

``tests/data/official_3dhp_outputs.npz`` holds outputs of the official ``ContextPose_mpi`` model
(``model/conpose.py``, built by ``run_3dhp.py``'s settings for ``--backbone hrnet_32`` and
``hrnet_48``) in eval mode, for the inputs of ``fixture_inputs`` and the weights of
``fixture_weight`` below, loaded into it with ``load_state_dict(strict=True)``. It was made once
by running the official code (torch 2.14.1, CPU, float32) from a scratch copy; only its outputs
(B, 3, 1, 17, 1), permuted as its caller does to (B, 1, 17, 3), millimetres, are stored.
"""
import os
import zlib

import numpy as np
import pytest
import torch

from mvn.models.conpose import CA_PF
from mvn.models.weights import WeightsError, load_model_checkpoint
from mvn.utils.cfg import ConfigError, load_config

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      'experiments', 'mpi_inf_3dhp', 'mpi_inf_3dhp.yaml')
FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'official_3dhp_outputs.npz')


def fixture_weight(name, shape):
    """The value given to state-dict entry ``name`` of ``shape``: a function of both alone.

    A generator seeded with the CRC-32 of the key draws: for ``num_batches_tracked`` 0; for
    ``running_var`` 0.5 + U(0, 1); for other 1-D ``weight`` entries (norm scales) 1 + 0.1 N(0, 1);
    for other 1-D entries (biases, running means) 0.1 N(0, 1); for the rest N(0, 1) / sqrt(fan-in),
    fan-in = numel / shape[0].
    """
    if name.endswith('num_batches_tracked'):
        return torch.zeros(shape, dtype=torch.int64)
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    if name.endswith('running_var'):
        return 0.5 + torch.rand(shape, generator=g)
    if len(shape) == 1:
        base = 1.0 if name.endswith('weight') else 0.0
        return base + 0.1 * torch.randn(shape, generator=g)
    fan_in = max(1, int(np.prod(shape)) // shape[0])
    return torch.randn(shape, generator=g) / fan_in ** 0.5


def fixture_state_dict(keys_and_shapes):
    return {name: fixture_weight(name, tuple(shape)) for name, shape in keys_and_shapes}


def fixture_inputs(batch=2, seed=2024):
    """(images (B, 256, 192, 3) normalised-like values, keypoints_2d (B, 17, 2) in [-1, 1],
    keypoints_2d_crop (B, 17, 2) crop pixels inside 192x256)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 256, 192, 3, generator=g)
    keypoints_2d = torch.rand(batch, 17, 2, generator=g) * 2 - 1
    keypoints_crop = torch.rand(batch, 17, 2, generator=g) * torch.tensor([191.0, 255.0])
    return images, keypoints_2d, keypoints_crop


def build(backbone):
    torch.manual_seed(0)
    return CA_PF(load_config(CONFIG, backbone=backbone))


@pytest.mark.parametrize('backbone,width,head_parameters', [('hrnet_32', 64, 3_462_979), ('hrnet_48', 96, 7_773_411)])
def test_config_builds_the_official_variant(backbone, width, head_parameters):
    cfg = load_config(CONFIG, backbone=backbone)
    assert cfg.model.poseformer.embed_dim_ratio == width
    assert cfg.model.poseformer.base_dim == width // 2
    assert cfg.model.poseformer.context_blocks is False
    model = CA_PF(cfg)
    assert len(model.volume_net.context_blocks) == 0
    assert not any('context_blocks' in k for k in model.state_dict())
    assert model.volume_net.Spatial_pos_embed.shape == (1, 5, 17, width)
    assert sum(p.numel() for p in model.volume_net.parameters()) == head_parameters


def test_official_schedule_in_the_config():
    cfg = load_config(CONFIG, backbone='hrnet_32')
    # run_3dhp.py -b 160 -lrd 0.97, 79 epochs, AdamW weight decay 0.1; --lr 0.0007 trained at 0.1x.
    assert (cfg.train.batch_size, cfg.train.n_epochs, cfg.train.volume_net_lr_decay) == (160, 79, 0.97)
    assert cfg.train.volume_net_lr == pytest.approx(0.00007)
    assert cfg.train.weight_decay == 0.1 and cfg.val.flip_test is True
    assert cfg.model.backbone.train_batchnorm is True and cfg.dataset.kind == 'mpi_inf_3dhp'


def test_unknown_backbone_under_per_backbone_is_named(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('per_backbone:\n  hrnet_64:\n    model: {poseformer: {embed_dim_ratio: 8}}\n')
    with pytest.raises(ConfigError, match="unknown backbone 'hrnet_64'.*hrnet_32"):
        load_config(str(path))


@pytest.fixture(scope='module')
def official_outputs():
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize('backbone', ['hrnet_32', 'hrnet_48'])
def test_official_format_checkpoint_loads_strictly_and_gives_official_outputs(tmp_path, official_outputs, backbone):
    model = build(backbone)
    weights = fixture_state_dict((k, v.shape) for k, v in model.state_dict().items())
    # The released files: a bare state dict saved from nn.DataParallel, keys prefixed 'module.'.
    path = str(tmp_path / 'HRNet_official_layout.pth')
    torch.save({'module.' + k: v for k, v in weights.items()}, path)
    fresh = build(backbone)
    load_model_checkpoint(fresh, path)
    fresh.eval()
    inputs = fixture_inputs()
    with torch.no_grad():
        out = fresh(*inputs)
    official_mm = torch.from_numpy(official_outputs[backbone])
    assert out.shape == official_mm.shape == (2, 1, 17, 3)
    # Bit for bit: our head output is the official one, times 0.001 in float32 (into metres).
    assert torch.equal(out, official_mm * 0.001)


def test_official_layout_with_a_missing_key_is_refused(tmp_path):
    model = build('hrnet_32')
    weights = {'module.' + k: v for k, v in model.state_dict().items() if k != 'volume_net.head.1.bias'}
    path = str(tmp_path / 'broken.pth')
    torch.save(weights, path)
    with pytest.raises(WeightsError, match='volume_net.head.1.bias'):
        load_model_checkpoint(build('hrnet_32'), path)


def test_frozen_backbone_batchnorm_follows_train_mode_only_when_asked():
    official = build('hrnet_32').train()
    assert official.backbone.training is True            # as the official 3DHP training step
    assert not any(p.requires_grad for p in official.backbone.parameters())
    cfg = load_config(CONFIG, backbone='hrnet_32')
    cfg.model.backbone.train_batchnorm = False
    assert CA_PF(cfg).train().backbone.training is False
