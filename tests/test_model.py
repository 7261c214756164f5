"""CA_PF: shapes, parameter counts, initialisation, sampling convention, frozen backbone."""
import math

import pytest
import torch

from mvn.models.conpose import CA_PF
from mvn.models.pose_dformer import sample_at
from mvn.utils.cfg import load_config


def make_model(config_path, backbone):
    torch.manual_seed(0)
    return CA_PF(load_config(config_path, backbone=backbone))


def random_inputs(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 256, 192, 3, generator=g)
    keypoints_2d = torch.rand(batch, 17, 2, generator=g) * 2 - 1
    keypoints_crop = torch.rand(batch, 17, 2, generator=g) * torch.tensor([191.0, 255.0])
    return images, keypoints_2d, keypoints_crop


@pytest.fixture(scope='module')
def hrnet32(tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg') / 'empty.yaml'
    path.write_text('title: t\n')
    return make_model(str(path), 'hrnet_32').eval()


@pytest.fixture(scope='module')
def empty_config(tmp_path_factory):
    path = tmp_path_factory.mktemp('cfg2') / 'empty.yaml'
    path.write_text('title: t\n')
    return str(path)


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_hrnet32_parameter_counts_match_the_paper_model(hrnet32):
    assert count(hrnet32.volume_net) == 14_094_147
    assert count(hrnet32.backbone) == 28_535_552


@pytest.mark.parametrize('backbone,head,body', [('hrnet_48', 14_155_587, 63_594_912),
                                                ('cpn', 14_233_411, 27_406_826)])
def test_other_backbones_parameter_counts(empty_config, backbone, head, body):
    model = make_model(empty_config, backbone)
    assert (count(model.volume_net), count(model.backbone)) == (head, body)


def test_hrnet32_forward_batch_of_two(hrnet32):
    with torch.no_grad():
        out = hrnet32(*random_inputs())
    assert out.shape == (2, 1, 17, 3)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize('backbone,channels,size', [
    ('hrnet_32', [32, 64, 128, 256], [(64, 48), (32, 24), (16, 12), (8, 6)]),
    ('hrnet_48', [48, 96, 192, 384], [(64, 48), (32, 24), (16, 12), (8, 6)]),
    ('cpn', [256] * 4, [(64, 48)] * 4)])
def test_backbone_maps_and_model_output_shapes(empty_config, backbone, channels, size):
    model = make_model(empty_config, backbone).eval()
    images, keypoints_2d, keypoints_crop = random_inputs()
    with torch.no_grad():
        maps = model.backbone(images.permute(0, 3, 1, 2))
        out = model(images, keypoints_2d, keypoints_crop)
    assert [m.shape[1] for m in maps] == channels
    assert [tuple(m.shape[2:]) for m in maps] == size
    assert out.shape == (2, 1, 17, 3)


def test_sampling_offsets_start_on_a_ring_and_weights_at_zero(hrnet32):
    # Head h points at angle 2*pi*h/4, scaled so its largest component is 0.01; sample i is
    # (i+1) times that: head 0 -> (+x), 1 -> (+y), 2 -> (-x), 3 -> (-y).
    directions = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    expected = torch.stack([0.01 * directions[h] * (i + 1) for h in range(4) for i in range(4)]).reshape(-1)
    for block in hrnet32.volume_net.context_blocks:
        assert torch.allclose(block.sampling_offsets.bias, expected, rtol=1e-6, atol=1e-8)
        assert torch.count_nonzero(block.sampling_offsets.weight) == 0
        assert torch.count_nonzero(block.attention_weights.weight) == 0
        assert torch.count_nonzero(block.attention_weights.bias) == 0
    assert torch.count_nonzero(hrnet32.volume_net.Spatial_pos_embed) == 0
    assert hrnet32.volume_net.Spatial_pos_embed.shape == (1, 5, 17, 128)


def test_stochastic_depth_rates_rise_linearly_to_0_2(hrnet32):
    rates = [getattr(b.drop_path, 'p', 0.0) for b in hrnet32.volume_net.joint_blocks]
    assert rates == pytest.approx([0.0, 0.2 / 3, 0.4 / 3, 0.2])


def test_crop_pixels_map_to_feature_coordinates(hrnet32):
    # Maps whose value is their own column (x) or row (y) index: sampling them at the grid
    # position of a crop pixel must give that pixel in map cells, computed by hand: with
    # align_corners, crop pixel 0 is cell 0 and crop pixel W (H) is the last cell.
    height, width = 64, 48
    xs = torch.arange(width, dtype=torch.float32).expand(height, width)
    ys = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    maps = torch.stack([xs, ys])[None]                                     # (1, 2, H, W)
    crop = torch.tensor([[[0.0, 0.0], [96.0, 128.0], [192.0, 256.0], [48.0, 200.0], [150.5, 10.25]]])
    sampled = sample_at(maps, hrnet32.crop_to_grid(crop)[:, :, None], padding_mode='zeros')[0, :, 0]
    expected = torch.stack([crop[0, :, 0] * (width - 1) / 192, crop[0, :, 1] * (height - 1) / 256], dim=-1)
    assert torch.allclose(sampled, expected, atol=1e-4)


def test_inputs_are_not_modified(hrnet32):
    inputs = random_inputs()
    copies = [t.clone() for t in inputs]
    with torch.no_grad():
        hrnet32(*inputs)
    for before, after in zip(copies, inputs):
        assert torch.equal(before, after)


def test_backbone_stays_frozen_through_a_training_step(empty_config):
    model = make_model(empty_config, 'hrnet_tiny')
    backbone_state = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_state = {k: v.clone() for k, v in model.volume_net.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    assert not model.backbone.training and model.volume_net.training
    assert all(not m.training for m in model.backbone.modules())
    images, keypoints_2d, keypoints_crop = random_inputs(batch=4)
    loss = model(images * 3 + 1, keypoints_2d, keypoints_crop).square().mean()   # shifted: BN stats would move
    loss.backward()
    optimizer.step()
    assert all(p.grad is None for p in model.backbone.parameters())
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, backbone_state[key]), key             # weights and BN statistics
    assert any(not torch.equal(v, head_state[k]) for k, v in model.volume_net.state_dict().items())


def test_head_channels_must_match_the_backbone(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('title: t\n')
    cfg = load_config(str(path), backbone='hrnet_32')
    cfg.model.poseformer.base_dim = 48
    with pytest.raises(ValueError, match='model.poseformer.base_dim'):
        CA_PF(cfg)


def test_unknown_backbone_name_fails_loudly(tmp_path):
    path = tmp_path / 'bad.yaml'
    path.write_text('model:\n  backbone:\n    type: resnet152\n')
    with pytest.raises(ValueError, match="unknown backbone 'resnet152'"):
        load_config(str(path))


def test_drop_path_keeps_expectation_and_drops_whole_samples():
    from mvn.models.transformer import DropPath
    torch.manual_seed(0)
    layer = DropPath(0.25).train()
    out = layer(torch.ones(20000, 3, 4))
    per_sample = out.flatten(1)
    assert set(torch.unique(per_sample).tolist()) <= {0.0, torch.tensor(1 / 0.75).item()}
    assert torch.all(per_sample.min(dim=1).values == per_sample.max(dim=1).values)
    assert math.isclose(out.mean().item(), 1.0, abs_tol=0.02)
    assert torch.equal(layer.eval()(torch.ones(3, 2)), torch.ones(3, 2))
