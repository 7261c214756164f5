"""The flip test, the crop's interpolation and the deformable block's sample weights, against
values worked out by hand (tiny tensors, in-process)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from mvn import engine
from mvn.datasets.batch import BatchPreparer
from mvn.datasets.h36m_meta import SKELETON
from mvn.models.pose_dformer import DeformableBlock
from mvn.utils.img import crop_image, transform_points

# The official Human3.6M pairs (train.py), written out: partner[j] is j's mirror joint.
LEFT, RIGHT = [4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]
PARTNER = list(range(17))
for _l, _r in zip(LEFT, RIGHT):
    PARTNER[_l], PARTNER[_r] = _r, _l


class Echo(nn.Module):
    """A stand-in model whose answer shows what it was asked: per joint (2D x + 10 * the first
    pixel's red value, 2D y + 1000 * crop y, crop x)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, images, keypoints_2d, keypoints_crop):
        first_pixel = images[:, 0, 0, 0].view(-1, 1)
        out = torch.stack([keypoints_2d[..., 0] + 10 * first_pixel,
                           keypoints_2d[..., 1] + 1000 * keypoints_crop[..., 1],
                           keypoints_crop[..., 0]], dim=-1)
        return out.unsqueeze(1) + self.weight


def test_the_flip_test_mirrors_the_2d_and_crop_keypoints_and_merges_the_two_answers():
    # One frame: 2D keypoints x_j = 0.01 (j + 1)^2 (no two alike), y_j = -0.02 j; crop x c_j = 3 j + 7,
    # crop y = 2 j + 1; a 4x6 image black but for a white top-left pixel.
    j = torch.arange(17, dtype=torch.float64)
    keypoints = torch.stack([0.01 * (j + 1) ** 2, -0.02 * j], dim=-1)[None]
    crop = torch.stack([3 * j + 7, 2 * j + 1], dim=-1)[None]
    image = torch.zeros(1, 4, 6, 3, dtype=torch.uint8)
    image[0, 0, 0] = 255
    batch = (image, torch.zeros(1, 1, 17, 3, dtype=torch.float64), keypoints, crop)
    preparer = BatchPreparer('cpu', normalize=lambda x: x, skeleton=SKELETON, crop_width=192, flip_test=True)
    pred, _ = engine.predict(Echo(), [batch], preparer, flip_test=True)
    # By hand. Plain answer: (x_j + 10, y_j + 1000 cy_j, c_j). The mirrored question holds, at joint j,
    # 2D (-x_p, y_p) and crop (191 - c_p, cy_p) of the partner p, and a black first pixel; mirrored back
    # (x negated, partners exchanged) its answer is (x_j, y_j + 1000 cy_j, 191 - c_j). The mean:
    expected = torch.stack([keypoints[0, :, 0] + 5, keypoints[0, :, 1] + 1000 * crop[0, :, 1],
                            torch.full((17,), 95.5, dtype=torch.float64)], dim=-1)
    assert pred.shape == (1, 1, 17, 3)
    torch.testing.assert_close(pred[0, 0].double(), expected, rtol=1e-6, atol=1e-6)   # float32


def test_the_flip_test_stacks_the_mirrored_question_by_hand():
    preparer = BatchPreparer('cpu', normalize=lambda x: x, skeleton=SKELETON, crop_width=192, flip_test=True)
    keypoints = torch.zeros(1, 17, 2)
    keypoints[0, 2] = torch.tensor([0.25, -0.5])          # right knee
    crop = torch.zeros(1, 17, 2)
    crop[0, 15] = torch.tensor([40.0, 100.0])              # right elbow
    _, _, keypoints_out, crop_out = preparer((torch.zeros(1, 2, 2, 3, dtype=torch.uint8),
                                              torch.zeros(1, 1, 17, 3), keypoints, crop))
    assert keypoints_out[0, 1, 5].tolist() == [-0.25, -0.5]       # the left knee of the mirror image
    assert crop_out[0, 1, 12].tolist() == [151.0, 100.0]          # left elbow at 192 - 40 - 1
    assert crop_out[0, 1, 15].tolist() == [191.0, 0.0]            # the left elbow's (0, 0) mirrored
    assert torch.equal(keypoints_out[:, 0], keypoints) and torch.equal(crop_out[:, 0], crop)


def test_merging_by_hand():
    preparer = BatchPreparer('cpu', normalize=lambda x: x, skeleton=SKELETON, crop_width=192)
    pred = torch.zeros(1, 1, 17, 3)
    mirrored = torch.zeros(1, 1, 17, 3)
    pred[0, 0, 16] = torch.tensor([1.0, 2.0, 3.0])             # right wrist
    mirrored[0, 0, 13] = torch.tensor([5.0, 6.0, 7.0])         # the mirror's left wrist: our right wrist
    merged = preparer.merge_flip_test(pred, mirrored)
    assert merged[0, 0, 16].tolist() == [(1.0 - 5.0) / 2, (2.0 + 6.0) / 2, (3.0 + 7.0) / 2]
    assert merged[0, 0, 13].tolist() == [0.0, 0.0, 0.0]
    assert merged.shape == (1, 1, 17, 3)


# --------------------------------------------------------------------------------------------
# The crop samples the frame bilinearly.

def test_the_crop_interpolates_bilinearly():
    # A 64x64 frame: black left of column 32, 200 from column 32 on. A box 96.5 px wide centred on
    # (32, 32) makes the 192-wide crop twice as fine: crop column u samples frame x = 32 + (u - 95.5) / 2.
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[:, 32:] = 200
    crop = crop_image(frame, (32.0, 32.0), (96.5 / 200, 96.5 / 200))
    row = crop[128, :, 0].astype(int)
    # u = 94 -> x = 31.25 (a quarter of the way to the bright column): 50; u = 95 -> x = 31.75: 150;
    # u = 96 -> 32.25 and u = 97 -> 32.75: 200; u = 93 -> 30.75: 0. Nearest-neighbour would give
    # 0, 0, 200, 200 ..., bicubic overshoots (< 0 clipped, > 200).
    assert row[93:98].tolist() == [0, 50, 150, 200, 200]


def test_an_affine_map_applies_to_points_by_hand():
    # [[1, 2, 3], [4, 5, 6]] sends (1, 10) to (1 + 20 + 3, 4 + 50 + 6); a general matrix, since a
    # crop's own (a scale and a shift) is symmetric and would hide a transposed product
    t = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert transform_points([[1.0, 10.0], [0.0, 0.0]], t).tolist() == [[24.0, 60.0], [3.0, 6.0]]


# --------------------------------------------------------------------------------------------
# The deformable block weighs each head's samples by a softmax over the samples.

def test_deformable_block_weights_each_heads_samples_by_a_softmax_over_the_samples():
    # 2 heads x 2 samples, width 4 (2 channels per head), one level, one joint at the centre.
    block = DeformableBlock([1], dim=4, num_heads=2, num_samples=2)
    with torch.no_grad():
        # sample 0 of every head at x = +0.5, sample 1 at x = -0.5 (grid units, after tanh)
        block.sampling_offsets.bias.copy_(torch.tensor([math.atanh(0.5), 0, math.atanh(-0.5), 0] * 2))
        # logits (head 0: 0, ln 3), (head 1: 0, 0): softmax over samples (0.25, 0.75), (0.5, 0.5)
        block.attention_weights.bias.copy_(torch.tensor([0.0, math.log(3.0), 0.0, 0.0]))
        block.embed_proj[0].weight.fill_(1.0)               # both channels of a head = the sampled value
        block.embed_proj[0].bias.zero_()
        block.mlp.fc2.weight.zero_()                        # no MLP term: output = input + context
        block.mlp.fc2.bias.zero_()
    # A 5x5 map whose value is the column index: grid x (align_corners) -> 2 (x + 1); +0.5 -> 3, -0.5 -> 1.
    feature_map = torch.arange(5.0).repeat(5, 1).view(1, 1, 5, 5)
    tokens = torch.zeros(1, 2, 1, 4)                        # (B, L+1, J, E), all zero: the queries are the biases
    out = block.eval()(tokens, torch.zeros(1, 1, 2), [feature_map])
    # head 0: 0.25 * 3 + 0.75 * 1 = 1.5; head 1: 0.5 * 3 + 0.5 * 1 = 2.0. (A softmax over the heads
    # would give 0.5 * 3 + 0.75 * 1 = 2.25 for head 0.)
    torch.testing.assert_close(out[0, 1, 0], torch.tensor([1.5, 1.5, 2.0, 2.0]), rtol=0, atol=1e-6)
    assert torch.equal(out[0, 0], tokens[0, 0])                    # the coordinate token passes unchanged


@pytest.mark.parametrize('num_levels', [2])
def test_deformable_block_samples_each_level_from_its_own_map(num_levels):
    block = DeformableBlock([1] * num_levels, dim=2, num_heads=1, num_samples=1)
    with torch.no_grad():
        block.sampling_offsets.bias.zero_()
        for proj in block.embed_proj:
            proj.weight.fill_(1.0)
            proj.bias.zero_()
        block.mlp.fc2.weight.zero_()
        block.mlp.fc2.bias.zero_()
    maps = [torch.full((1, 1, 3, 3), 10.0 * (level + 1)) for level in range(num_levels)]
    out = block.eval()(torch.zeros(1, num_levels + 1, 1, 2), torch.zeros(1, 1, 2), maps)
    assert out[0, 1:, 0, 0].tolist() == [10.0, 20.0]
