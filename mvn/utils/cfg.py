"""Configuration: every default in one place, YAML on top, then the backbone preset.

``load_config(path, backbone=None)`` returns a fresh EasyDict. A key this implementation does not
know is an error naming it (and the nearest valid key), except keys of the official code that
have no effect here: those are accepted and named once in a warning, so the official YAML files
load unchanged.
"""
import copy
import difflib
import os
import warnings

import yaml
from easydict import EasyDict

DEFAULTS = {
    'title': 'human36m',
    'kind': 'human36m',
    'model': {
        'image_shape': [192, 256],          # crop (width, height) in pixels
        'checkpoint': '',                   # optional CA-PF weights loaded before training/evaluation
        'backbone': {
            'type': 'hrnet_32',             # hrnet_32 | hrnet_48 | cpn | hrnet_tiny
            'num_joints': 17,
            'init_weights': True,           # load the COCO-pretrained detector weights
            'fix_weights': True,            # frozen and in eval mode
            'train_batchnorm': False,       # true: a frozen backbone's BatchNorm follows train() (official 3DHP)
            'checkpoint': 'data/pretrained/coco/pose_hrnet_w32_256x192.pth',
        },
        'poseformer': {
            'base_dim': 32,                 # channels of the backbone's first map (from the preset)
            'embed_dim_ratio': 128,         # E, the token width
            'depth': 4,                     # blocks of each kind
            'levels': 4,                    # backbone maps sampled per joint
            'num_heads': 8,
            'mlp_ratio': 2.0,
            'drop_path_rate': 0.2,
            'context_blocks': True,         # false: no deformable context blocks (official 3DHP model)
            'output_unit': 'm',             # unit the head predicts: m, or mm (official 3DHP model)
        },
    },
    'loss': {
        'criterion': 'MPJPE',               # mean per-joint Euclidean error, metres
        'grad_clip': 0.0,                   # > 0: clip the gradient norm at grad_clip / volume_net_lr
    },
    'dataset': {
        'kind': 'human36m',
        'root': 'H36M-Toolbox/images/',
        'train_labels_path': 'data/h36m_train.pkl',
        'val_labels_path': 'data/h36m_validation.pkl',
        # Non-empty: the labels and images are synthetic and generated on first use with these
        # arguments of mvn.datasets.synthetic.generate_processed (see experiments/synthetic/).
        'synthetic': {},
    },
    'train': {
        'n_epochs': 9999,
        'batch_size': 512,                  # per process
        'volume_net_lr': 0.00064,
        'volume_net_lr_decay': 0.99,        # lr multiplied by this after every epoch
        'weight_decay': 0.1,
        'shuffle': True,
        'num_workers': 14,
        'amp': 'off',                       # off | bf16 | fp16 (autocast); off is plain fp32
    },
    'val': {
        'batch_size': 512,
        'flip_test': True,
        'num_workers': 14,
    },
    'vis_n_elements': 4,                    # skeletons drawn to TensorBoard per epoch
}

# Backbone presets, applied after the YAML (as the official code does for --backbone).
BACKBONE_PRESETS = {
    'hrnet_32': {'model.poseformer.base_dim': 32,
                 'model.backbone.checkpoint': 'data/pretrained/coco/pose_hrnet_w32_256x192.pth'},
    'hrnet_48': {'model.poseformer.base_dim': 48,
                 'model.backbone.checkpoint': 'data/pretrained/coco/pose_hrnet_w48_256x192.pth'},
    'cpn': {'model.poseformer.base_dim': 256,
            'model.backbone.checkpoint': 'data/pretrained/coco/CPN50_256x192.pth.tar',
            'train.batch_size': 256, 'val.batch_size': 256, 'train.volume_net_lr': 0.00032},
    'hrnet_tiny': {'model.poseformer.base_dim': 8, 'model.backbone.init_weights': False,
                   'model.backbone.checkpoint': ''},
}

# Keys of the official configs (today's and older ones) that have no effect in this implementation.
LEGACY_KEYS = {
    'azureroot', 'logdir', 'batch_output', 'vis_freq', 'id', 'frame',
    'model.name', 'model.kind', 'model.init_weights', 'model.heatmap_shape', 'model.heatmap_softmax',
    'model.heatmap_multiplier',
    'model.backbone.name', 'model.backbone.style', 'model.backbone.num_final_layer_channel',
    'model.backbone.num_layers', 'model.backbone.NUM_JOINTS', 'model.backbone.PRETRAINED_LAYERS',
    'model.backbone.STEM_INPLANES', 'model.backbone.FINAL_CONV_KERNEL', 'model.backbone.NUM_LAYERS',
    'model.backbone.DECONV_WITH_BIAS', 'model.backbone.NUM_DECONV_LAYERS',
    'model.backbone.NUM_DECONV_FILTERS', 'model.backbone.NUM_DECONV_KERNELS',
    'loss.mse_smooth_threshold', 'loss.scale_keypoints_3d', 'loss.use_volumetric_ce_loss',
    'loss.volumetric_ce_loss_weight', 'loss.use_global_attention_loss',
    'loss.global_attention_loss_weight',
    'dataset.data_format', 'dataset.transfer_cmu_to_human36m', 'dataset.extra_root',
    'dataset.train_dataset', 'dataset.val_dataset',
    'train.n_objects_per_epoch', 'train.n_iters_per_epoch', 'train.optimizer', 'train.backbone_lr',
    'train.backbone_lr_step', 'train.backbone_lr_factor', 'train.process_features_lr',
    'train.volume_net_lr_step', 'train.volume_net_lr_factor', 'train.with_damaged_actions',
    'train.undistort_images', 'train.scale_bbox', 'train.ignore_cameras', 'train.crop', 'train.erase',
    'train.randomize_n_views', 'train.min_n_views', 'train.max_n_views', 'train.limb_length_path',
    'train.pred_results_path',
    'val.with_damaged_actions', 'val.undistort_images', 'val.scale_bbox', 'val.ignore_cameras',
    'val.crop', 'val.erase', 'val.shuffle', 'val.randomize_n_views', 'val.min_n_views',
    'val.max_n_views', 'val.retain_every_n_frames_in_test', 'val.limb_length_path',
    'val.pred_results_path',
}
# Whole legacy sections: anything below them is accepted.
LEGACY_SECTIONS = ('model.volume_net', 'model.backbone.STAGE2', 'model.backbone.STAGE3',
                   'model.backbone.STAGE4')

CHOICES = {
    'kind': ('human36m',),
    'dataset.kind': ('human36m', 'mpi_inf_3dhp'),
    'loss.criterion': ('MPJPE',),
    'train.amp': ('off', 'bf16', 'fp16'),
    'model.poseformer.output_unit': ('m', 'mm'),
}
# Top-level key of per-backbone overrides in an experiment YAML (see _per_backbone_section).
PER_BACKBONE = 'per_backbone'
# Arguments of mvn.datasets.synthetic.generate_processed that dataset.synthetic may set.
SYNTHETIC_KEYS = ('subjects', 'actions', 'subactions', 'cameras', 'frames', 'val_frames', 'seed', 'jpeg_quality')
# The rate the official code effectively trained at when a file said 0.0064 (see _check_legacy_lr).
LEGACY_LR = 0.0064


class ConfigError(ValueError):
    """A configuration file or value that cannot be used; the message names the key."""


def _flatten(tree, prefix=''):
    flat = {}
    for key, value in tree.items():
        path = prefix + str(key)
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, path + '.'))
        else:
            flat[path] = value
    return flat


def _valid_paths():
    return sorted(_flatten(DEFAULTS))


def _is_legacy(path):
    return path in LEGACY_KEYS or any(path == s or path.startswith(s + '.') for s in LEGACY_SECTIONS)


def _set(cfg, path, value):
    node = cfg
    *parents, leaf = path.split('.')
    for key in parents:
        node = node[key]
    node[leaf] = value


def _get(cfg, path):
    node = cfg
    for key in path.split('.'):
        node = node[key]
    return node


def _merge(cfg, tree, source, legacy, prefix=''):
    for key, value in tree.items():
        path = prefix + str(key)
        if _is_legacy(path):
            legacy.append(path)
            continue
        defaults_node = _get(DEFAULTS, prefix[:-1]) if prefix else DEFAULTS
        if key not in defaults_node:
            close = difflib.get_close_matches(path, _valid_paths(), n=1, cutoff=0.6)
            hint = " (did you mean '%s'?)" % close[0] if close else ''
            raise ConfigError("unknown config key '%s' in %s%s" % (path, source, hint))
        default = defaults_node[key]
        if isinstance(default, dict) and default:
            if not isinstance(value, dict):
                raise ConfigError("config key '%s' in %s must be a mapping, got %r" % (path, source, value))
            _merge(cfg, value, source, legacy, path + '.')
        else:
            _set(cfg, path, _coerce(path, default, value, source))


def _coerce(path, default, value, source):
    """Check a leaf against its default's type; ints are accepted for floats."""
    if path == 'dataset.synthetic':
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError("config key '%s' in %s must be a mapping, got %r" % (path, source, value))
        for key in value:
            if key not in SYNTHETIC_KEYS:
                raise ConfigError("unknown config key 'dataset.synthetic.%s' in %s; choose from %s"
                                  % (key, source, ', '.join(SYNTHETIC_KEYS)))
        return copy.deepcopy(value)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str) or (value is None and path.endswith('checkpoint'))
        value = '' if value is None else value
    elif isinstance(default, list):
        ok = isinstance(value, (list, tuple)) and len(value) == len(default)
        value = list(value) if ok else value
    else:
        ok = True
    if not ok:
        raise ConfigError("config key '%s' in %s: expected %s like %r, got %r"
                          % (path, source, type(default).__name__, default, value))
    if path in CHOICES and value not in CHOICES[path]:
        raise ConfigError("config key '%s' in %s: %r is not one of %s"
                          % (path, source, value, ', '.join(CHOICES[path])))
    return value


def apply_backbone_preset(cfg, backbone, source='the backbone preset', explicit=None):
    """Set model.backbone.type and the values that belong to it (channels, weight file, and for
    CPN the batch size and learning rate), as the official code does for --backbone.
    ``explicit``: flat {key: value} the user wrote; a custom value (neither a default nor
    another preset's) that the preset replaces is named in a warning."""
    if backbone not in BACKBONE_PRESETS:
        raise ConfigError("unknown backbone '%s' (%s); choose one of: %s"
                          % (backbone, source, ', '.join(BACKBONE_PRESETS)))
    cfg.model.backbone.type = backbone
    replaced = []
    for path, value in BACKBONE_PRESETS[backbone].items():
        stock = [_get(DEFAULTS, path)] + [p[path] for p in BACKBONE_PRESETS.values() if path in p]
        if explicit and path in explicit and explicit[path] != value and explicit[path] not in stock:
            replaced.append('%s=%r (was %r)' % (path, value, explicit[path]))
        _set(cfg, path, value)
    if replaced:
        warnings.warn('backbone %s sets %s' % (backbone, ', '.join(replaced)), stacklevel=3)
    return cfg


def load_config(path, backbone=None):
    """defaults <- YAML file <- backbone preset (``backbone`` or the file's model.backbone.type)
    <- the YAML's ``per_backbone`` entry for that backbone, if any."""
    if not os.path.isfile(path):
        raise ConfigError('config file not found: %s' % path)
    try:
        with open(path) as f:
            tree = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise ConfigError('cannot parse config file %s: %s' % (path, str(e).splitlines()[0])) from None
    tree = {} if tree is None else tree
    if not isinstance(tree, dict):
        raise ConfigError('config file %s must hold a mapping at the top level' % path)

    cfg = EasyDict(copy.deepcopy(DEFAULTS))
    legacy = []
    tree = dict(tree)
    per_backbone = _per_backbone_section(tree.pop(PER_BACKBONE, None), path)
    _merge(cfg, tree, path, legacy)
    if legacy:
        warnings.warn('%s: ignoring %d key(s) of the official code that have no effect here: %s'
                      % (path, len(legacy), ', '.join(legacy)), stacklevel=2)
    _check_legacy_lr(cfg, tree, path, legacy)
    apply_backbone_preset(cfg, backbone or cfg.model.backbone.type,
                          source=path if backbone is None else '--backbone', explicit=_flatten(tree))
    overrides = per_backbone.get(cfg.model.backbone.type)
    if overrides:
        _merge(cfg, overrides, '%s (%s.%s)' % (path, PER_BACKBONE, cfg.model.backbone.type), legacy)
    if cfg.model.poseformer.levels != 4:
        raise ConfigError("config key 'model.poseformer.levels' in %s: every backbone gives 4 maps, got %r"
                          % (path, cfg.model.poseformer.levels))
    if cfg.model.backbone.num_joints != 17:
        raise ConfigError("config key 'model.backbone.num_joints' in %s: the Human3.6M labels have 17 joints, got %r"
                          % (path, cfg.model.backbone.num_joints))
    return cfg


def _per_backbone_section(section, path):
    """``per_backbone: {name: {overrides}}``: settings that an experiment ties to one backbone
    (say the 3DHP head's token width), applied after that backbone's preset."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError("config key '%s' in %s must be a mapping of backbone names" % (PER_BACKBONE, path))
    for name, overrides in section.items():
        if name not in BACKBONE_PRESETS:
            raise ConfigError("unknown backbone '%s' under '%s' in %s; choose from %s"
                              % (name, PER_BACKBONE, path, ', '.join(BACKBONE_PRESETS)))
        if not isinstance(overrides, dict):
            raise ConfigError("config key '%s.%s' in %s must be a mapping" % (PER_BACKBONE, name, path))
    return section


def _check_legacy_lr(cfg, tree, path, legacy):
    # Files written for the older official code said volume_net_lr 0.0064, but that code put
    # every head parameter into a group at 0.1x the rate (a name-matching slip), so it trained
    # at 0.00064: what today's official config states and what this implementation ships.
    lr = tree.get('train', {}).get('volume_net_lr') if isinstance(tree.get('train'), dict) else None
    if legacy and lr is not None and abs(float(lr) - LEGACY_LR) < 1e-12:
        warnings.warn("%s: train.volume_net_lr is 0.0064; the official code this file was written for "
                      "trained every head parameter at 0.1x that, i.e. 0.00064 (today's official value). "
                      "This run uses 0.0064 as written; set 0.00064 to reproduce the paper." % path,
                      stacklevel=3)


def config_to_yaml(cfg) -> str:
    """The resolved config as YAML (plain types, stable key order)."""
    def plain(node):
        if isinstance(node, dict):
            return {k: plain(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [plain(v) for v in node]
        return node
    return yaml.safe_dump(plain(cfg), sort_keys=False)


_ABSENT = object()
# Where files are; nodes of one job may keep the same files in different places.
PATH_KEYS = ('model.checkpoint', 'model.backbone.checkpoint', 'dataset.root', 'dataset.train_labels_path',
             'dataset.val_labels_path')


def config_differences(old_yaml, new_yaml, ignore=()):
    """['key: old -> new', ...] for every key whose value differs between two resolved configs
    (YAML text, as config_to_yaml writes them), in the order of the new one; a key one side lacks
    counts. Keys in ``ignore`` are not compared."""
    old = _flatten(yaml.safe_load(old_yaml) or {})
    new = _flatten(yaml.safe_load(new_yaml) or {})
    keys = list(new) + [k for k in old if k not in new]
    return ['%s: %s -> %s' % (k, old.get(k, '(absent)'), new.get(k, '(absent)'))
            for k in keys if k not in ignore and old.get(k, _ABSENT) != new.get(k, _ABSENT)]
