"""CA_PF from a config, starting from the weights it should start from."""
import logging
import warnings

import torch

from mvn.models.conpose import CA_PF
from mvn.models.weights import load_checked, load_model_checkpoint

logger = logging.getLogger(__name__)


def build_model(cfg, device, *, seed, resume_state=None, checkpoint=None, checkpoint_hint='', sync_bn=False):
    """CA_PF on ``device``, initialised as the official code does for ``seed``, then loaded from
    the first of: ``resume_state`` (a last.pth's contents, with its 'path'), the CA-PF
    ``checkpoint`` file, the backbone's pretrained weights (``model.backbone.init_weights``).
    Returns (model, the checkpoint file's contents or None)."""
    torch.manual_seed(seed)
    model = CA_PF(cfg)
    backbone_cfg = cfg.model.backbone
    loaded = None
    # A CA-PF checkpoint holds the backbone too (it loads strictly), so no backbone file is needed then.
    if resume_state is not None:
        load_checked(model, resume_state['model'], resume_state['path'])
    elif checkpoint:
        loaded = load_model_checkpoint(model, checkpoint, hint=checkpoint_hint)
        logger.info('loaded CA-PF weights from %s' % checkpoint)
    elif backbone_cfg.init_weights:
        model.backbone.load_pretrained(backbone_cfg.checkpoint)
        logger.info('loaded %s weights from %s' % (backbone_cfg.type, backbone_cfg.checkpoint))
    elif backbone_cfg.checkpoint:
        warnings.warn('model.backbone.init_weights is false: the %s backbone is randomly initialised'
                      % backbone_cfg.type)
    if sync_bn and device.type == 'cuda':
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif sync_bn:
        warnings.warn('--sync_bn needs CUDA; ignored (a frozen backbone keeps its statistics anyway)')
    model.to(device)
    logger.info('parameters: backbone %d, head %d' % (sum(p.numel() for p in model.backbone.parameters()),
                                                       sum(p.numel() for p in model.volume_net.parameters())))
    return model, loaded
