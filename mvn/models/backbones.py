"""Feature backbones: what a backbone class provides, and building one by name.

A backbone is one file in ``mvn/models/`` and one entry in ``mvn.registry.BACKBONES``. Its class
is an ``nn.Module`` (most simply a ``FeatureBackbone``) that is
  - built as ``cls(**entry.kwargs)``;
  - ``forward(images)``: images (B, 3, H, W), normalised by ``normalize_input`` -> a list of
    four maps (B, C_l, h_l, w_l) that the head samples at the joints' crop positions;
  - ``feature_channels``: [C_1, .., C_4], the channels of those maps;
  - ``normalize_input(images)`` (a static method): (..., 3) float RGB in [0, 1] -> the input the
    backbone was trained on (batch preparation calls it on the training device);
  - ``load_pretrained(path)``: loads its pretrained weight file (``model.backbone.checkpoint``),
    raising ``WeightsError`` when the file does not fit.
"""
import torch
from torch import nn

from mvn import registry
from mvn.models.weights import load_backbone_state

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureBackbone(nn.Module):
    """Defaults for a backbone class: ImageNet input normalisation and a weight file that holds
    exactly its state dict (``module.`` prefixes and a ``state_dict`` wrapper allowed)."""

    @staticmethod
    def normalize_input(images):
        mean = torch.tensor(IMAGENET_MEAN, device=images.device)
        std = torch.tensor(IMAGENET_STD, device=images.device)
        return (images - mean) / std

    def load_pretrained(self, path):
        load_backbone_state(self, path)


def backbone_class(name):
    """The class registered as ``name``; ValueError listing the known names otherwise."""
    return registry.resolve(registry.entry(registry.BACKBONES, name, 'backbone'))


def build_backbone(name) -> nn.Module:
    entry = registry.entry(registry.BACKBONES, name, 'backbone')
    return registry.resolve(entry)(**entry.kwargs)


def input_normalization(name):
    """``normalize_input`` of backbone ``name``: (..., 3) RGB in [0, 1] -> its input."""
    return backbone_class(name).normalize_input
