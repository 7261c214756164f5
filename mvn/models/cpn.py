"""CPN-50 feature backbone: ResNet-50, GlobalNet (feature pyramid) and RefineNet.

Module names follow the COCO weight file ``CPN50_256x192.pth.tar`` (after removing the
``module.`` prefix), so it loads strictly, heads included. The network returns the four
RefineNet maps, each (B, 256, H/4, W/4); the heatmap heads exist only so that the weight file
loads and are never run.
"""
from typing import List

import torch
from torch import nn

from mvn.models.backbones import FeatureBackbone
from mvn.models.pose_hrnet import Bottleneck, make_residual_layer
from mvn.models.weights import load_backbone_state

PYRAMID_CHANNELS = 256
PIXEL_MEANS = (122.7717, 115.9465, 102.9801)    # RGB, 0..255: CPN subtracts the mean only


class ResNet50(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = make_residual_layer(Bottleneck, 64, 64, 3)
        self.layer2 = make_residual_layer(Bottleneck, 256, 128, 4, stride=2)
        self.layer3 = make_residual_layer(Bottleneck, 512, 256, 6, stride=2)
        self.layer4 = make_residual_layer(Bottleneck, 1024, 512, 3, stride=2)

    def forward(self, x) -> List[torch.Tensor]:
        """Returns the four stages, coarsest first: strides 32, 16, 8, 4."""
        c1 = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        return [self.layer4(c3), c3, c2, c1]


class GlobalNet(nn.Module):
    def __init__(self, in_channels=(2048, 1024, 512, 256), heatmap_size=(64, 48), num_joints=17):
        super().__init__()
        c = PYRAMID_CHANNELS
        self.laterals = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(ch, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
             for ch in in_channels])
        self.upsamples = nn.ModuleList(
            [nn.Sequential(nn.Upsample(scale_factor=2, mode='bilinear', align_corners=True),
                           nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))
             for _ in in_channels[:-1]])
        # Heatmap heads of the 2D detector: kept for the weight file, unused by CA-PF.
        self.predict = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                           nn.Conv2d(c, num_joints, 3, 1, 1, bias=False),
                           nn.Upsample(size=heatmap_size, mode='bilinear', align_corners=True),
                           nn.BatchNorm2d(num_joints))
             for _ in in_channels])

    def forward(self, stages: List[torch.Tensor]) -> List[torch.Tensor]:
        pyramid = []
        for i, (lateral, x) in enumerate(zip(self.laterals, stages)):
            feature = lateral(x) if i == 0 else lateral(x) + self.upsamples[i - 1](pyramid[-1])
            pyramid.append(feature)
        return pyramid


class RefineBottleneck(nn.Module):
    """RefineNet's bottleneck: 256 output channels and an always-present projection shortcut."""

    def __init__(self, in_channels, channels=128):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels * 2, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * 2)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv2d(in_channels, channels * 2, 1, bias=False),
                                        nn.BatchNorm2d(channels * 2))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


class RefineNet(nn.Module):
    def __init__(self, heatmap_size=(64, 48), num_joints=17, num_levels=4):
        super().__init__()
        c = PYRAMID_CHANNELS
        # level i (coarsest first) gets num_levels-1-i bottlenecks, then goes to heatmap resolution
        self.cascade = nn.ModuleList(
            [nn.Sequential(*[RefineBottleneck(c) for _ in range(num_levels - 1 - i)],
                           nn.Upsample(size=heatmap_size, mode='bilinear', align_corners=True))
             for i in range(num_levels)])
        # Final heatmap head of the 2D detector: kept for the weight file, unused by CA-PF.
        self.final_predict = nn.Sequential(RefineBottleneck(num_levels * c),
                                           nn.Conv2d(c, num_joints, 3, 1, 1, bias=False),
                                           nn.BatchNorm2d(num_joints))

    def forward(self, pyramid: List[torch.Tensor]) -> List[torch.Tensor]:
        return [level(x) for level, x in zip(self.cascade, pyramid)]


class CPN(FeatureBackbone):
    """CPN-50 for 256x192 inputs; ``forward`` returns four (B, 256, 64, 48) maps."""

    def __init__(self, heatmap_size=(64, 48), num_joints=17):
        super().__init__()
        self.resnet = ResNet50()
        self.global_net = GlobalNet(heatmap_size=heatmap_size, num_joints=num_joints)
        self.refine_net = RefineNet(heatmap_size=heatmap_size, num_joints=num_joints)

    def forward(self, images: torch.Tensor) -> List[torch.Tensor]:
        return self.refine_net(self.global_net(self.resnet(images)))

    @property
    def feature_channels(self) -> List[int]:
        return [PYRAMID_CHANNELS] * 4

    @staticmethod
    def normalize_input(images):
        """RGB in [0, 1] minus the training set's mean colour (no division)."""
        return images - torch.tensor(PIXEL_MEANS, device=images.device) / 255.0

    def load_pretrained(self, path):
        """``CPN50_256x192.pth.tar``: {'state_dict': ...} with ``module.`` prefixes, heads included."""
        load_backbone_state(self, path, state_key='state_dict')
