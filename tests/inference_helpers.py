"""Weight files for the inference tests: a tiny CA-PF checkpoint and a COCO HRNet file in the
official key layouts (``module.`` prefixed model state; plain backbone state + final_layer)."""
import copy

import torch
from easydict import EasyDict

from mvn.models.conpose import CA_PF
from mvn.utils.cfg import DEFAULTS


def tiny_config():
    cfg = EasyDict(copy.deepcopy(DEFAULTS))
    cfg.model.backbone.type = 'hrnet_tiny'
    cfg.model.backbone.init_weights = False
    cfg.model.poseformer.update(base_dim=8, embed_dim_ratio=16, depth=2)
    return cfg


def write_weights(folder, seed=0, same_backbone=True):
    """(checkpoint path, COCO file path, the model) with random weights. The COCO file holds the
    model's backbone (as a released checkpoint froze it) unless ``same_backbone`` is false."""
    torch.manual_seed(seed)
    model = CA_PF(tiny_config()).eval()
    checkpoint = str(folder / 'best_epoch_tiny.bin')
    torch.save({'epoch': 3, 'lr': 0.1, 'model': {'module.' + k: v for k, v in model.state_dict().items()},
                'optimizer': {}}, checkpoint)
    backbone = model.backbone.state_dict()
    if not same_backbone:
        backbone = CA_PF(tiny_config()).backbone.state_dict()
    coco = dict(backbone, **{'final_layer.weight': torch.randn(17, 8, 1, 1) * 0.5,
                             'final_layer.bias': torch.full((17,), 0.1)})
    coco_path = str(folder / ('coco_tiny.pth' if same_backbone else 'coco_other.pth'))
    torch.save(coco, coco_path)
    return checkpoint, coco_path, model
