"""CA_PF: a frozen 2D-pose backbone plus the context-aware PoseFormer head.

Attribute names ``backbone`` and ``volume_net`` are the checkpoint keys of the released models.
"""
import torch
from torch import nn

from mvn.models.backbones import build_backbone
from mvn.models.pose_dformer import PoseTransformer
from mvn.utils.cfg import ConfigError

# model.poseformer.output_unit -> factor into metres.
OUTPUT_SCALES = {'m': 1.0, 'mm': 0.001}


class CA_PF(nn.Module):
    """Context-Aware PoseFormer.

    ``forward(images, keypoints_2d, keypoints_2d_crop)``:
        images: (B, H, W, 3) float, normalised for the backbone (H, W = 256, 192).
        keypoints_2d: (B, J, 2) normalised screen coordinates (x/w*2-1, y/w*2-h/w).
        keypoints_2d_crop: (B, J, 2) the same joints in crop pixels.
    Returns (B, 1, J, 3): root-relative 3D joints in metres, camera frame. Inputs are not modified.

    Options for the official MPI-INF-3DHP model (``experiments/mpi_inf_3dhp/``):
    ``model.poseformer.context_blocks: false`` (no deformable context blocks),
    ``model.poseformer.output_unit: mm`` (its head predicts millimetres; they are converted to
    metres here; the official forward returned them as (B, 3, 1, J, 1) for its caller to permute
    into this (B, 1, J, 3)), and ``model.backbone.train_batchnorm: true`` (its training step put the
    frozen detector's BatchNorm layers in training mode: batch statistics, running statistics
    updated; weights stay frozen).
    """

    def __init__(self, config):
        super().__init__()
        model_cfg = config.model
        self.backbone = build_backbone(model_cfg.backbone.type)
        self.backbone_frozen = bool(model_cfg.backbone.fix_weights)
        self.backbone_batchnorm_follows_mode = bool(model_cfg.backbone.train_batchnorm)
        if self.backbone_frozen:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

        channels = list(self.backbone.feature_channels)
        head_cfg = model_cfg.poseformer
        if head_cfg.base_dim != channels[0]:
            raise ConfigError('model.poseformer.base_dim is %s but backbone %s gives %d channels'
                             % (head_cfg.base_dim, model_cfg.backbone.type, channels[0]))
        self.volume_net = PoseTransformer(
            channels, num_joints=model_cfg.backbone.num_joints, embed_dim_ratio=head_cfg.embed_dim_ratio,
            depth=head_cfg.depth, num_heads=head_cfg.num_heads, mlp_ratio=head_cfg.mlp_ratio,
            drop_path_rate=head_cfg.drop_path_rate, context_blocks=head_cfg.context_blocks)
        # Multiplies the head's output into metres (the 3DHP head predicts millimetres).
        self.output_scale = OUTPUT_SCALES[head_cfg.output_unit]

        width, height = model_cfg.image_shape
        # Crop pixels -> grid coordinates: x / (W//2) - 1, y / (H//2) - 1, as the released model
        # (so pixel 0 is -1 and pixel W is +1, the centres of the first and last map cells).
        self.register_buffer('crop_half_size', torch.tensor([width // 2, height // 2], dtype=torch.float32),
                             persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.backbone_frozen and not self.backbone_batchnorm_follows_mode:
            self.backbone.eval()      # BatchNorm statistics of the frozen detector never move
        return self

    def crop_to_grid(self, keypoints_2d_crop):
        """Crop pixels (B, J, 2) -> grid_sample coordinates in [-1, 1] (a new tensor)."""
        return keypoints_2d_crop / self.crop_half_size - 1

    def forward(self, images, keypoints_2d, keypoints_2d_crop):
        ref = self.crop_to_grid(keypoints_2d_crop)
        images = images.permute(0, 3, 1, 2).contiguous()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.backbone_frozen):
            feature_maps = self.backbone(images)
        out = self.volume_net(keypoints_2d, ref, feature_maps)
        return out if self.output_scale == 1.0 else out * self.output_scale
