"""The two extension points, as data: dataset kinds (``dataset.kind``) and backbones
(``model.backbone.type`` / ``--backbone``). Adding either is one new file plus one line here
(see the README, "Adding a dataset" and "Adding a backbone").

Entries name their code lazily ('package.module:attribute'), so this module imports nothing
from the project: the configuration (``mvn/utils/cfg.py``) validates names and applies presets
from it without importing models or datasets, and ``resolve`` imports an entry's code on use.

Every entry may carry two sets of flat config keys:
  ``preset``: values that go with this entry (weight file, batch size, label paths ...). They
      replace a value the user left at its default (or at another entry's preset value); any
      other value the user set wins.
  ``fixed``: values the entry's architecture requires (a backbone's channels, a skeleton's joint
      count). A different value set by the user is an error naming both.
"""
import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class Entry:
    target: str                                  # 'package.module:attribute' of a class
    kwargs: Mapping[str, Any] = field(default_factory=dict)    # given to the class when built
    preset: Mapping[str, Any] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)


_COCO = 'data/pretrained/coco/'

# dataset.kind -> a mvn.datasets.base.PoseDataset subclass.
DATASETS = {
    'human36m': Entry('mvn.datasets.human36m:Human36MSingleViewDataset',
                      preset={'dataset.root': 'H36M-Toolbox/images/',
                              'dataset.train_labels_path': 'data/h36m_train.pkl',
                              'dataset.val_labels_path': 'data/h36m_validation.pkl'},
                      fixed={'model.backbone.num_joints': 17}),
    'mpi_inf_3dhp': Entry('mvn.datasets.mpi_inf_3dhp:MPIINF3DHPDataset',
                          preset={'dataset.root': 'MPI-INF-3DHP-Toolbox/images/',
                                  'dataset.train_labels_path': 'data/mpi_inf_3dhp_train.pkl',
                                  'dataset.val_labels_path': 'data/mpi_inf_3dhp_test.pkl',
                                  'dataset.keypoints_2d': 'gt'},
                          fixed={'model.backbone.num_joints': 17}),
}
DEFAULT_DATASET = 'human36m'

# model.backbone.type -> a feature backbone class (see mvn.models.backbones for what it provides).
BACKBONES = {
    'hrnet_32': Entry('mvn.models.pose_hrnet:PoseHighResolutionNet', {'width': 32},
                      preset={'model.backbone.checkpoint': _COCO + 'pose_hrnet_w32_256x192.pth'},
                      fixed={'model.poseformer.base_dim': 32}),
    'hrnet_48': Entry('mvn.models.pose_hrnet:PoseHighResolutionNet', {'width': 48},
                      preset={'model.backbone.checkpoint': _COCO + 'pose_hrnet_w48_256x192.pth'},
                      fixed={'model.poseformer.base_dim': 48}),
    'cpn': Entry('mvn.models.cpn:CPN',
                 preset={'model.backbone.checkpoint': _COCO + 'CPN50_256x192.pth.tar', 'train.batch_size': 256,
                         'val.batch_size': 256, 'train.volume_net_lr': 0.00032},
                 fixed={'model.poseformer.base_dim': 256}),
    # A few-MFLOP HRNet of the same shape, for the synthetic default and the tests (no weight file).
    'hrnet_tiny': Entry('mvn.models.pose_hrnet:PoseHighResolutionNet',
                        {'width': 8, 'stem_channels': 16, 'stem_blocks': 1, 'stage_modules': (1, 1, 1),
                         'blocks_per_branch': 1},
                        preset={'model.backbone.init_weights': False, 'model.backbone.checkpoint': ''},
                        fixed={'model.poseformer.base_dim': 8}),
}
DEFAULT_BACKBONE = 'hrnet_32'


def entry(table, name, what):
    """``table[name]``, or a ValueError naming the known names (``what``: 'backbone', ...)."""
    if name not in table:
        raise ValueError("unknown %s '%s'; choose one of: %s" % (what, name, ', '.join(table)))
    return table[name]


def resolve(entry_or_target):
    """The object an entry (or a 'module:attribute' string) names, imported on first use."""
    target = entry_or_target.target if isinstance(entry_or_target, Entry) else entry_or_target
    module, _, attribute = target.partition(':')
    return getattr(importlib.import_module(module), attribute)
