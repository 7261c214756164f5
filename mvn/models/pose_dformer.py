"""The context-aware PoseFormer lifting head (``volume_net`` in checkpoints).

Every joint carries L+1 tokens of width E: token 0 embeds its 2D keypoint, tokens 1..L embed the
backbone's L feature maps sampled at the joint. Deformable context blocks refine the level tokens
with features sampled around the joint, transformer blocks mix the tokens of each joint, and
transformer blocks over the concatenated (L+1)*E joint vectors mix the joints. Output: root-relative
3D joints in the unit the head was trained in (metres for Human3.6M; the official MPI-INF-3DHP
head, built without context blocks, predicts millimetres and CA_PF converts them).

Sampling positions are grid coordinates in [-1, 1] over the crop (x right, y down), see
``CA_PF.forward`` for the conversion from crop pixels.
"""
import math
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mvn.models.transformer import Block, Mlp, drop_path_or_identity


def sample_at(feature_map: torch.Tensor, grid: torch.Tensor, padding_mode: str) -> torch.Tensor:
    """Bilinear samples of (B, C, H, W) at grid (B, P, S, 2) -> (B, P, S, C) (align_corners=True)."""
    sampled = F.grid_sample(feature_map, grid, mode='bilinear', padding_mode=padding_mode, align_corners=True)
    # Contiguous, so the projection that follows runs the same GEMM as the released model's and
    # gives bit-identical outputs.
    return sampled.permute(0, 2, 3, 1).contiguous()


class DeformableBlock(nn.Module):
    """Refines the level tokens of each joint with features sampled at learned offsets.

    For level l the block predicts, from ``norm1(level token + coordinate token)``, ``num_heads *
    num_samples`` offsets (tanh, grid units) around the joint and softmax weights per head; it
    samples map l there, projects the samples to E/num_heads channels, takes the weighted sum per
    head and concatenates the heads. Token 0 passes through unchanged.
    """

    def __init__(self, feature_channels: Sequence[int], dim, num_heads=4, num_samples=4, drop_path=0.0,
                 mlp_ratio=2.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError('context dim %d is not divisible by num_heads %d' % (dim, num_heads))
        self.num_heads = num_heads
        self.num_samples = num_samples
        self.norm1 = nn.LayerNorm(dim)
        self.attention_weights = nn.Linear(dim, num_heads * num_samples)
        self.sampling_offsets = nn.Linear(dim, 2 * num_heads * num_samples)
        self.embed_proj = nn.ModuleList([nn.Linear(c, dim // num_heads) for c in feature_channels])
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path_or_identity(drop_path)
        self.reset_sampling_parameters()

    def reset_sampling_parameters(self):
        """Offsets start on a ring: head h points at angle 2*pi*h/heads, its direction scaled so
        the largest component is 0.01, and sample i sits (i+1) times that far out. Uniform weights."""
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        directions = torch.stack([angles.cos(), angles.sin()], dim=-1)
        directions = 0.01 * directions / directions.abs().max(dim=-1, keepdim=True)[0]
        steps = torch.arange(1, self.num_samples + 1, dtype=torch.float32).view(1, -1, 1)
        ring = directions.view(self.num_heads, 1, 2) * steps          # (heads, samples, 2)
        with torch.no_grad():
            self.sampling_offsets.weight.zero_()
            self.sampling_offsets.bias.copy_(ring.reshape(-1))
            self.attention_weights.weight.zero_()
            self.attention_weights.bias.zero_()

    def forward(self, tokens: torch.Tensor, ref: torch.Tensor, feature_maps: List[torch.Tensor]):
        """tokens (B, L+1, J, E); ref (B, J, 2) grid coordinates; feature_maps L x (B, C_l, H_l, W_l)."""
        coord_token, levels = tokens[:, :1], tokens[:, 1:]
        b, num_levels, num_joints, dim = levels.shape
        heads, samples = self.num_heads, self.num_samples

        query = self.norm1(levels + coord_token)
        weights = self.attention_weights(query).view(b, num_levels, num_joints, heads, samples)
        weights = weights.softmax(dim=-1).unsqueeze(-1)                   # (B, L, J, heads, samples, 1)
        offsets = self.sampling_offsets(query).reshape(b, num_levels, num_joints, heads * samples, 2).tanh()
        positions = offsets + ref.view(b, 1, num_joints, 1, 2)            # (B, L, J, heads*samples, 2)

        sampled = torch.stack(
            [proj(sample_at(fmap, positions[:, level], padding_mode='border'))
             for level, (proj, fmap) in enumerate(zip(self.embed_proj, feature_maps))], dim=1)
        sampled = sampled.view(b, num_levels, num_joints, heads, samples, dim // heads)
        context = (weights * sampled).sum(dim=-2).view(b, num_levels, num_joints, dim)

        levels = levels + self.drop_path(context)
        levels = levels + self.drop_path(self.mlp(self.norm2(levels)))
        return torch.cat([coord_token, levels], dim=1)


class PoseTransformer(nn.Module):
    """The lifting head.

    Args:
        feature_channels: channels of the L backbone maps (L = 4 for every backbone).
        embed_dim_ratio: E, the width of one token; joint vectors have (L+1)*E channels.
        depth: number of blocks of each kind (context, per-joint, cross-joint).
        context_blocks: with False, no deformable context blocks: the coordinate and sampled
            feature tokens go straight into the per-joint blocks (the official MPI-INF-3DHP model).
    """

    def __init__(self, feature_channels: Sequence[int], num_joints=17, embed_dim_ratio=128, depth=4,
                 num_heads=8, mlp_ratio=2.0, qkv_bias=True, drop_path_rate=0.2,
                 context_heads=4, context_samples=4, context_blocks=True):
        super().__init__()
        num_levels = len(feature_channels)
        e = embed_dim_ratio
        joint_dim = e * (num_levels + 1)
        self.coord_embed = nn.Linear(2, e)
        self.feat_embed = nn.ModuleList([nn.Linear(c, e) for c in feature_channels])
        self.Spatial_pos_embed = nn.Parameter(torch.zeros(1, num_levels + 1, num_joints, e))

        rates = [r.item() for r in torch.linspace(0, drop_path_rate, depth)]
        # Built in the official order, so a seed gives the official random initialisation.
        self.joint_blocks = nn.ModuleList(
            [Block(joint_dim, num_heads, mlp_ratio, qkv_bias, drop_path=r) for r in rates])
        self.res_blocks = nn.ModuleList(
            [Block(e, num_heads, mlp_ratio, qkv_bias, drop_path=r) for r in rates])
        if context_blocks:
            self.context_blocks = nn.ModuleList(
                [DeformableBlock(feature_channels, e, context_heads, context_samples, drop_path=r) for r in rates])
        else:
            self.context_blocks = nn.ModuleList()   # no keys, and no draws from the random generator
        self.head = nn.Sequential(nn.LayerNorm(joint_dim), nn.Linear(joint_dim, 3))

    def forward(self, keypoints_2d: torch.Tensor, ref: torch.Tensor, feature_maps: List[torch.Tensor]):
        """keypoints_2d (B, J, 2) normalised screen coordinates; ref (B, J, 2) grid coordinates of
        the joints in the crop; feature_maps L x (B, C_l, H_l, W_l). Returns (B, 1, J, 3) in the unit of the
        training targets (metres for the Human3.6M models, millimetres for the 3DHP ones)."""
        b, num_joints, _ = keypoints_2d.shape
        at_joints = ref.unsqueeze(-2)                                       # (B, J, 1, 2)
        tokens = [self.coord_embed(keypoints_2d)]
        tokens += [embed(sample_at(fmap, at_joints, padding_mode='zeros').squeeze(-2))
                   for embed, fmap in zip(self.feat_embed, feature_maps)]
        x = torch.stack(tokens, dim=1) + self.Spatial_pos_embed           # (B, L+1, J, E)

        for block in self.context_blocks:
            x = block(x, ref, feature_maps)

        x = x.transpose(1, 2).reshape(b * num_joints, x.shape[1], x.shape[3])   # (B*J, L+1, E)
        for block in self.res_blocks:
            x = block(x)
        x = x.reshape(b, num_joints, -1)                                    # (B, J, (L+1)*E)
        for block in self.joint_blocks:
            x = block(x)
        return self.head(x).view(b, 1, num_joints, 3)
