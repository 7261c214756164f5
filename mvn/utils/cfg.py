"""Configuration: every default in one place, the YAML on top, then the presets of the dataset
kind and of the backbone (``mvn/registry.py``).

``load_config(path, backbone=None, resolve_paths=False)`` returns a fresh EasyDict; train.py asks
for absolute paths (see ``resolve_config_paths``). A key this implementation does not
know is an error naming it (and the nearest valid key), except keys of the official code that
have no effect here: those are accepted and named once in a warning, so the official YAML files
load unchanged. A preset replaces values left at their default (or at another entry's preset
value); any other value the file sets wins, and one that contradicts the architecture (a
``fixed`` value of the entry) is an error naming both.
"""
import copy
import difflib
import os
import warnings

import yaml
from easydict import EasyDict

from mvn import registry

DEFAULTS = {
    'title': '',
    'kind': registry.DEFAULT_DATASET,       # the official configs' name for dataset.kind (kept equal)
    'model': {
        'image_shape': [192, 256],          # crop (width, height) in pixels
        'checkpoint': '',                   # optional CA-PF weights loaded before training/evaluation
        'backbone': {
            'type': registry.DEFAULT_BACKBONE,  # a name in mvn.registry.BACKBONES
            'num_joints': 17,               # set by the dataset kind (its skeleton)
            'init_weights': True,           # load the pretrained detector weights
            'fix_weights': True,            # frozen and in eval mode
            'train_batchnorm': False,       # true: a frozen backbone's BatchNorm follows train() (official 3DHP)
            'checkpoint': '',               # the detector's weight file (set by the backbone preset)
        },
        'poseformer': {
            'base_dim': 32,                 # channels of the backbone's first map (set by the backbone)
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
        'kind': registry.DEFAULT_DATASET,   # a name in mvn.registry.DATASETS
        'root': '',                         # frames folder       } set by the dataset kind's
        'train_labels_path': '',            # label files         } preset
        'val_labels_path': '',
        'keypoints_2d': 'cpn',              # 2D input: the labels' joints_2d_<this> and joints_2d_<this>_crop
        # Crops from a crop cache (see mvn/datasets/crop_cache.py): '' off, 'auto' a valid cache
        # beside each label file when there is one, or a folder holding <label file name>.crops.
        'crop_cache': '',
        # Non-empty: the labels and images are synthetic and generated on first use with these
        # arguments of the dataset kind's generator (see experiments/synthetic/).
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
        # > 1: every epoch evaluates frames 0, n, 2n, ... of the file only (the official
        # retain_every_n_frames_in_test); --eval and the best checkpoint's final evaluation use all.
        'retain_every_n_frames': 1,
    },
    'vis_n_elements': 4,                    # skeletons drawn to TensorBoard per epoch
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

# Numbers a run cannot use below zero, or at zero either ('positive').
LIMITS = {
    'train.n_epochs': 'at least 0', 'train.num_workers': 'at least 0', 'val.num_workers': 'at least 0',
    'train.weight_decay': 'at least 0', 'loss.grad_clip': 'at least 0', 'vis_n_elements': 'at least 0',
    'train.batch_size': 'positive', 'val.batch_size': 'positive', 'train.volume_net_lr': 'positive',
    'val.retain_every_n_frames': 'positive',
}
CHOICES = {
    'loss.criterion': ('MPJPE',),
    'train.amp': ('off', 'bf16', 'fp16'),
    'model.poseformer.output_unit': ('m', 'mm'),
}
# Top-level key of per-backbone overrides in an experiment YAML (see _per_backbone_section).
PER_BACKBONE = 'per_backbone'
# The rate the official code effectively trained at when a file said 0.0064 (see _check_legacy_lr).
LEGACY_LR = 0.0064
# Relative paths in a config file inside the repository, in defaults and in presets start here.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Where files are; nodes of one job may keep the same files in different places.
PATH_KEYS = ('model.checkpoint', 'model.backbone.checkpoint', 'dataset.root', 'dataset.train_labels_path',
             'dataset.val_labels_path', 'dataset.crop_cache')
# Values of path keys that are words, not paths.
PATH_WORDS = {'dataset.crop_cache': ('auto',)}


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
            raise ConfigError("unknown config key '%s' in %s%s" % (path, source, _did_you_mean(path, defaults_node)))
        default = defaults_node[key]
        if isinstance(default, dict) and default:
            if not isinstance(value, dict):
                raise ConfigError("config key '%s' in %s must be a mapping, got %r" % (path, source, value))
            _merge(cfg, value, source, legacy, path + '.')
        else:
            _set(cfg, path, _coerce(path, default, value, source))


def _did_you_mean(path, siblings):
    """' (did you mean ...?)' with the nearest key of the same section (a misspelled section
    name too), else the nearest key anywhere; '' if none is near."""
    prefix, _, key = path.rpartition('.')
    close = difflib.get_close_matches(key, [str(k) for k in siblings], n=1, cutoff=0.6)
    if close:
        return " (did you mean '%s'?)" % ((prefix + '.' if prefix else '') + close[0])
    close = difflib.get_close_matches(path, _valid_paths(), n=1, cutoff=0.6)
    return " (did you mean '%s'?)" % close[0] if close else ''


def _coerce(path, default, value, source):
    """Check a leaf against its default's type; ints are accepted for floats."""
    if path == 'dataset.synthetic':          # its keys are the dataset generator's (checked on use)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError("config key '%s' in %s must be a mapping, got %r" % (path, source, value))
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


def _is_stock(path, value):
    """True for a key's default and for the value any registry entry's preset gives it."""
    entries = list(registry.DATASETS.values()) + list(registry.BACKBONES.values())
    return value == _get(DEFAULTS, path) or any(path in e.preset and value == e.preset[path] for e in entries)


def apply_preset(cfg, entry, what, explicit, source):
    """Applies a registry entry (``what``: 'backbone hrnet_48', ...) to ``cfg``: its fixed values
    (a different value the file set is an error naming both), then its preset values where the
    file set nothing or a stock value (see _is_stock). ``explicit``: flat keys the file set.
    Returns the keys it set."""
    applied = set(entry.fixed)
    for path, value in entry.fixed.items():
        if path in explicit and _get(cfg, path) != value:
            raise ConfigError("config key '%s' in %s is %r, but %s needs %r"
                              % (path, source, _get(cfg, path), what, value))
        _set(cfg, path, value)
    for path, value in entry.preset.items():
        if path not in explicit or _is_stock(path, _get(cfg, path)):
            _set(cfg, path, value)
            applied.add(path)
    return applied


def _dataset_kind(cfg, explicit, source):
    """dataset.kind, or the official top-level ``kind`` when only that is set; both kept equal."""
    if 'kind' in explicit and 'dataset.kind' in explicit and cfg.kind != cfg.dataset.kind:
        raise ConfigError("config keys 'kind' (%s) and 'dataset.kind' (%s) in %s disagree"
                          % (cfg.kind, cfg.dataset.kind, source))
    if 'kind' in explicit and 'dataset.kind' not in explicit:
        cfg.dataset.kind = cfg.kind
    cfg.kind = cfg.dataset.kind
    _check_name(cfg.kind, registry.DATASETS, 'dataset kind', 'dataset.kind in %s' % source)
    return cfg.kind


def _check_name(name, table, what, where):
    if name not in table:
        raise ConfigError("unknown %s '%s' (%s); choose one of: %s" % (what, name, where, ', '.join(table)))


def load_config(path, backbone=None, resolve_paths=False):
    """defaults <- YAML file <- dataset kind preset <- backbone preset (``backbone`` or the
    file's model.backbone.type), with the YAML's ``per_backbone`` entry for that backbone counted
    as part of the file. With ``resolve_paths`` the file paths become absolute (see
    resolve_config_paths); otherwise they are kept as written."""
    tree = _read_yaml(path)
    per_backbone = _per_backbone_section(tree.pop(PER_BACKBONE, None), path)
    cfg = EasyDict(copy.deepcopy(DEFAULTS))
    legacy = []
    _merge(cfg, tree, path, legacy)
    if legacy:
        warnings.warn('%s: ignoring %d key(s) of the official code that have no effect here: %s'
                      % (path, len(legacy), ', '.join(legacy)), stacklevel=2)
    _check_legacy_lr(cfg, tree, path, legacy)
    explicit = _flatten(tree)
    kind = _dataset_kind(cfg, explicit, path)
    applied = apply_preset(cfg, registry.DATASETS[kind], 'dataset %s' % kind, explicit, path)
    if backbone is not None:
        _check_name(backbone, registry.BACKBONES, 'backbone', '--backbone')
        cfg.model.backbone.type = backbone
    name = cfg.model.backbone.type
    _check_name(name, registry.BACKBONES, 'backbone', 'model.backbone.type in %s' % path)
    if per_backbone.get(name):
        _merge(cfg, per_backbone[name], '%s (%s.%s)' % (path, PER_BACKBONE, name), legacy)
        explicit.update(_flatten(per_backbone[name]))
    applied |= apply_preset(cfg, registry.BACKBONES[name], 'backbone %s' % name, explicit, path)
    _check_values(cfg, path)
    if resolve_paths:
        resolve_config_paths(cfg, path, from_file=set(explicit) - applied)
    return cfg


def _check_values(cfg, source):
    if cfg.model.poseformer.levels != 4:
        raise ConfigError("config key 'model.poseformer.levels' in %s: every backbone gives 4 maps, got %r"
                          % (source, cfg.model.poseformer.levels))
    for key, bound in LIMITS.items():
        value = _get(cfg, key)
        if value < 0 or (value == 0 and bound == 'positive'):
            raise ConfigError("config key '%s' in %s must be %s, got %r" % (key, source, bound, value))


def config_base_dir(path):
    """Where the relative paths a config file writes start: the repository root for a file
    inside the repository (experiments/...), else the file's own folder."""
    folder = os.path.dirname(os.path.realpath(path))
    root = os.path.realpath(REPO_ROOT)
    return REPO_ROOT if os.path.commonpath([folder, root]) == root else folder


def resolve_config_paths(cfg, path, from_file):
    """Makes the PATH_KEYS of ``cfg`` absolute (``~`` expanded): values the file ``path`` wrote
    (``from_file``: its flat keys) against config_base_dir(path); defaults and presets against
    the repository root. Whatever the working directory, a config means the same files."""
    base = config_base_dir(path)
    for key in PATH_KEYS:
        value = _get(cfg, key)
        if value and value not in PATH_WORDS.get(key, ()):
            start = base if key in from_file else REPO_ROOT
            _set(cfg, key, os.path.normpath(os.path.join(start, os.path.expanduser(value))))


def _per_backbone_section(section, path):
    """``per_backbone: {name: {overrides}}``: settings an experiment ties to one backbone (say the
    3DHP head's token width), applied as if the file set them when that backbone is used."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError("config key '%s' in %s must be a mapping of backbone names" % (PER_BACKBONE, path))
    for name, overrides in section.items():
        _check_name(name, registry.BACKBONES, 'backbone', '%s in %s' % (PER_BACKBONE, path))
        if not isinstance(overrides, dict):
            raise ConfigError("config key '%s.%s' in %s must be a mapping" % (PER_BACKBONE, name, path))
    return section


def _read_yaml(path):
    if os.path.isdir(path):
        raise ConfigError('config file %s is a folder; give a YAML file (such as one in experiments/)' % path)
    if not os.path.isfile(path):
        raise ConfigError('config file not found: %s' % path)
    try:
        with open(path, encoding='utf-8') as f:
            tree = yaml.safe_load(f)
    except UnicodeDecodeError as e:
        raise ConfigError('config file %s is not UTF-8 text (byte 0x%02x at offset %d)'
                          % (path, e.object[e.start], e.start)) from None
    except yaml.YAMLError as e:
        raise ConfigError('cannot parse config file %s: %s' % (path, str(e).splitlines()[0])) from None
    tree = {} if tree is None else tree
    if not isinstance(tree, dict):
        raise ConfigError('config file %s must hold a mapping at the top level' % path)
    return tree


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


def config_differences(old_yaml, new_yaml, ignore=()):
    """['key: old -> new', ...] for every key whose value differs between two resolved configs
    (YAML text, as config_to_yaml writes them), in the order of the new one; a key one side lacks
    counts. Keys in ``ignore`` are not compared."""
    old = _flatten(yaml.safe_load(old_yaml) or {})
    new = _flatten(yaml.safe_load(new_yaml) or {})
    keys = list(new) + [k for k in old if k not in new]
    return ['%s: %s -> %s' % (k, old.get(k, '(absent)'), new.get(k, '(absent)'))
            for k in keys if k not in ignore and old.get(k, _ABSENT) != new.get(k, _ABSENT)]
