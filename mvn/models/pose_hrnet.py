"""HRNet feature backbone (COCO 256x192 architecture, without the heatmap layer).

Module names follow the COCO-pretrained weight files (``pose_hrnet_w32_256x192.pth``), so those
load directly. The network returns four maps instead of heatmaps:

* the stage-4 high-resolution output, (B, C, H/4, W/4);
* for branches 2..4, the maps after the *first* stage-4 module's branch blocks and before its
  fuse layers: (B, 2C, H/8, W/8), (B, 4C, H/16, W/16), (B, 8C, H/32, W/32).

The second group is what the official implementation ends up returning (its forward pass
overwrites the list it hands to stage 4); the released CA-PF heads were trained on exactly
those maps, so we return them on purpose, without mutating anything.
"""
from typing import List, Sequence

import torch
from torch import nn

from mvn.models.backbones import FeatureBackbone
from mvn.models.weights import load_backbone_state

# What the COCO HRNet files hold beyond this backbone: the heatmap layer of the 2D detector.
COCO_LEFTOVER_KEYS = ('final_layer.weight', 'final_layer.bias')


def _conv_bn(in_channels, out_channels, kernel_size, stride=1, relu=True):
    layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
              nn.BatchNorm2d(out_channels)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


def make_residual_layer(block, in_channels, channels, num_blocks, stride=1):
    """A stack of residual blocks; the first one gets a 1x1 projection when shapes change."""
    downsample = None
    if stride != 1 or in_channels != channels * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, channels * block.expansion, 1, stride, bias=False),
            nn.BatchNorm2d(channels * block.expansion))
    layers = [block(in_channels, channels, stride, downsample)]
    layers += [block(channels * block.expansion, channels) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks followed by a cross-resolution fuse."""

    def __init__(self, channels: Sequence[int], num_blocks: int, multi_scale_output=True):
        super().__init__()
        self.num_branches = len(channels)
        self.branches = nn.ModuleList(
            [make_residual_layer(BasicBlock, c, c, num_blocks) for c in channels])
        num_outputs = self.num_branches if multi_scale_output else 1
        self.fuse_layers = nn.ModuleList(
            [nn.ModuleList([self._fuse_path(channels, src, dst) for src in range(self.num_branches)])
             for dst in range(num_outputs)])
        self.relu = nn.ReLU(True)

    @staticmethod
    def _fuse_path(channels, src, dst):
        if src == dst:
            return None
        if src > dst:   # lower resolution: 1x1 conv, then nearest upsampling
            return nn.Sequential(nn.Conv2d(channels[src], channels[dst], 1, 1, 0, bias=False),
                                 nn.BatchNorm2d(channels[dst]),
                                 nn.Upsample(scale_factor=2 ** (src - dst), mode='nearest'))
        # higher resolution: a chain of stride-2 3x3 convs, ReLU on all but the last
        steps = [_conv_bn(channels[src], channels[src], 3, 2) for _ in range(dst - src - 1)]
        steps.append(_conv_bn(channels[src], channels[dst], 3, 2, relu=False))
        return nn.Sequential(*steps)

    def run_branches(self, inputs: List[torch.Tensor]) -> List[torch.Tensor]:
        return [branch(x) for branch, x in zip(self.branches, inputs)]

    def fuse(self, branch_outputs: List[torch.Tensor]) -> List[torch.Tensor]:
        fused = []
        for dst, paths in enumerate(self.fuse_layers):
            y = branch_outputs[0] if dst == 0 else paths[0](branch_outputs[0])
            for src in range(1, self.num_branches):
                y = y + (branch_outputs[src] if src == dst else paths[src](branch_outputs[src]))
            fused.append(self.relu(y))
        return fused

    def forward(self, inputs: List[torch.Tensor]) -> List[torch.Tensor]:
        return self.fuse(self.run_branches(inputs))


class PoseHighResolutionNet(FeatureBackbone):
    """HRNet-W{width}. ``width`` is C, the channels of the high-resolution branch.

    The defaults are the COCO architecture (stem 64, four bottlenecks, stages of 1/4/3 modules
    with four basic blocks per branch); smaller values give a cheap network of the same shape.
    Input: ImageNet mean/std normalisation (the FeatureBackbone default).
    """

    def __init__(self, width=32, stem_channels=64, stem_blocks=4, stage_modules=(1, 4, 3),
                 blocks_per_branch=4):
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(3, stem_channels, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.conv2 = nn.Conv2d(stem_channels, stem_channels, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_residual_layer(Bottleneck, stem_channels, stem_channels, stem_blocks)

        previous = [stem_channels * Bottleneck.expansion]
        for stage, num_modules in enumerate(stage_modules, start=2):
            channels = [width * 2 ** i for i in range(stage)]
            setattr(self, 'transition%d' % (stage - 1), self._transition(previous, channels))
            last_single_scale = stage == 4
            modules = [HighResolutionModule(channels, blocks_per_branch,
                                            multi_scale_output=not (last_single_scale and i == num_modules - 1))
                       for i in range(num_modules)]
            setattr(self, 'stage%d' % stage, nn.Sequential(*modules))
            previous = channels

    @staticmethod
    def _transition(previous, channels):
        layers = []
        for i, c in enumerate(channels):
            if i < len(previous):
                layers.append(None if previous[i] == c else _conv_bn(previous[i], c, 3))
            else:   # a new, lower-resolution branch made from the last existing one
                src = previous[-1]
                steps = [_conv_bn(src, src, 3, 2) for _ in range(i - len(previous))]
                steps.append(_conv_bn(src, c, 3, 2))
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    @staticmethod
    def _branch_inputs(transition, previous_outputs):
        return [previous_outputs[i] if layer is None else layer(previous_outputs[min(i, len(previous_outputs) - 1)])
                for i, layer in enumerate(transition)]

    def forward(self, images: torch.Tensor) -> List[torch.Tensor]:
        """images: (B, 3, H, W) normalised RGB -> four maps, see the module docstring."""
        x = self.relu(self.bn1(self.conv1(images)))
        x = self.relu(self.bn2(self.conv2(x)))
        outputs = [self.layer1(x)]
        outputs = self.stage2(self._branch_inputs(self.transition1, outputs))
        outputs = self.stage3(self._branch_inputs(self.transition2, outputs))

        stage4_inputs = self._branch_inputs(self.transition3, outputs)
        first, rest = self.stage4[0], self.stage4[1:]
        branch_maps = first.run_branches(stage4_inputs)
        outputs = rest(first.fuse(branch_maps))
        return [outputs[0]] + branch_maps[1:]

    @property
    def feature_channels(self) -> List[int]:
        return [self.width * 2 ** i for i in range(4)]

    def load_pretrained(self, path):
        """A COCO HRNet file: a plain state dict; only the heatmap layer may be left over."""
        load_backbone_state(self, path, allowed_unexpected=COCO_LEFTOVER_KEYS)
