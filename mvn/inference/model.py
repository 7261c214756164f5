"""The networks inference needs: CA-PF from its checkpoint (architecture read from the weights)
and the COCO HRNet 2D detector with its heatmap layer (``final_layer``) from the COCO file."""
import copy
import os

import torch
from easydict import EasyDict
from torch import nn

from mvn import registry
from mvn.models.build import build_model
from mvn.models.backbones import build_backbone
from mvn.models.weights import WeightsError, check_state_dict, read_weights, strip_prefix
from mvn.utils.cfg import DEFAULTS, REPO_ROOT, load_config

CHECKPOINT_HINT = 'place a CA-PF checkpoint there, e.g. the released best_epoch_hrnet_32.bin'
COCO_HINT = ('place the COCO HRNet weight file there (pose_hrnet_w32_256x192.pth for HRNet-32; '
             'see data/pretrained/coco/README.md)')
HEATMAP_KEYS = ('final_layer.weight', 'final_layer.bias')


def config_from_state(state_dict, path):
    """The config of the CA-PF whose (``module.``-free) state dict this is: the backbone whose
    channels match, the head's width, depth and MLP ratio from their shapes (8 attention heads,
    as every released model). Only Human3.6M-style heads (with context blocks) are accepted."""
    try:
        width = state_dict['volume_net.feat_embed.0.weight'].shape[1]
        embed = state_dict['volume_net.coord_embed.weight'].shape[0]
        joints = state_dict['volume_net.Spatial_pos_embed'].shape[2]
        hidden = state_dict['volume_net.res_blocks.0.mlp.fc1.weight'].shape[0]
    except KeyError as e:
        raise WeightsError('%s is not a CA-PF checkpoint: no %s' % (path, e.args[0])) from None
    depth = len({k.split('.')[2] for k in state_dict if k.startswith('volume_net.joint_blocks.')})
    if not any(k.startswith('volume_net.context_blocks.') for k in state_dict):
        raise WeightsError('%s is a head without context blocks (the MPI-INF-3DHP model); in-the-wild inference '
                           'takes Human3.6M checkpoints' % path)
    names = [name for name, e in registry.BACKBONES.items() if e.fixed.get('model.poseformer.base_dim') == width]
    if not names:
        raise WeightsError('%s: no known backbone gives %d channels' % (path, width))
    cfg = EasyDict(copy.deepcopy(DEFAULTS))
    cfg.model.backbone.type = names[0]
    cfg.model.backbone.init_weights = False
    cfg.model.backbone.num_joints = int(joints)
    cfg.model.poseformer.update(base_dim=int(width), embed_dim_ratio=int(embed), depth=depth,
                                mlp_ratio=hidden / embed)
    return cfg


def load_capf(checkpoint, device, config=None):
    """(CA_PF in eval mode on ``device``, its config). ``config``: an experiment YAML for
    settings the weights do not tell; default: read from the checkpoint."""
    data = read_weights(checkpoint, 'CA-PF checkpoint', hint=CHECKPOINT_HINT)
    state = data.get('model', data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not state:
        raise WeightsError("%s holds no model state dict (expected a 'model' entry)" % checkpoint)
    if config:
        cfg = load_config(config)
        cfg.model.backbone.init_weights = False
    else:
        cfg = config_from_state(strip_prefix(state), checkpoint)
    model, _ = build_model(cfg, torch.device('cpu'), seed=0, resume_state={'model': state, 'path': checkpoint})
    return model.eval().to(device), cfg


class HeatmapDetector(nn.Module):
    """The COCO 2D pose network: an HRNet ``backbone`` and its ``final_layer`` (1x1 conv to 17
    heatmaps at 1/4 of the crop's resolution). ``backbone`` may be CA-PF's own when their weights
    are the same (then one backbone pass serves both networks)."""

    def __init__(self, backbone, final_layer):
        super().__init__()
        self.backbone = backbone
        self.final_layer = final_layer

    def heatmaps(self, features):
        """Heatmaps (B, 17, H/4, W/4) from the backbone's maps (its first map is the stage-4 output)."""
        return self.final_layer(features[0])

    def forward(self, images):
        return self.heatmaps(self.backbone(images))


def default_coco_weights(backbone_type):
    """The COCO weight file of a backbone, as its registry preset names it (repository-relative)."""
    preset = registry.BACKBONES[backbone_type].preset.get('model.backbone.checkpoint', '')
    return os.path.join(REPO_ROOT, preset) if preset else ''


def load_heatmap_detector(path, backbone_type, capf_backbone, device):
    """HeatmapDetector from a COCO HRNet file; it shares ``capf_backbone`` when the file's
    backbone weights equal it (the released models froze the COCO weights)."""
    if not backbone_type.startswith('hrnet'):
        raise WeightsError('2D keypoints come from the COCO HRNet heatmap layer; backbone %s has none '
                           '(pass --keypoints, or use an HRNet checkpoint)' % backbone_type)
    state = read_weights(path, 'COCO HRNet weights', hint=COCO_HINT)
    state = strip_prefix(state.get('state_dict', state) if isinstance(state, dict) else {})
    missing = [k for k in HEATMAP_KEYS if k not in state]
    if missing:
        raise WeightsError('%s has no %s: in-the-wild inference needs the full COCO HRNet file (its heatmap '
                           'layer)' % (path, missing[0]))
    weight, bias = state.pop('final_layer.weight'), state.pop('final_layer.bias')
    final_layer = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2])
    final_layer.load_state_dict({'weight': weight, 'bias': bias})
    own = capf_backbone.state_dict()
    same = set(own) == set(state) and all(own[k].shape == state[k].shape and torch.equal(own[k].cpu(), state[k])
                                          for k in own)
    if same:
        backbone = capf_backbone
    else:
        backbone = build_backbone(backbone_type)
        check_state_dict(backbone, state, path)
        backbone.load_state_dict(state)
    return HeatmapDetector(backbone, final_layer).eval().to(device), same
