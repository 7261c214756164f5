"""The two extension points (mvn/registry.py): a toy dataset kind and a toy backbone, added
through exactly the README's steps, train and evaluate; unknown names list the known ones; and
mvn/utils imports nothing from models/ or datasets/."""
import ast
import glob
import json
import os

import numpy as np
import pytest
import torch
import yaml

import train
from mvn import registry
from mvn.datasets.build import dataset_class
from mvn.models.backbones import build_backbone
from mvn.utils.cfg import ConfigError, load_config
from tests import toy_extensions

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def toy_registry(monkeypatch):
    """The two registry lines the README's steps add."""
    monkeypatch.setitem(registry.DATASETS, 'toy', registry.Entry(
        'tests.toy_extensions:ToyDataset', fixed={'model.backbone.num_joints': 4}))
    monkeypatch.setitem(registry.BACKBONES, 'toy_net', registry.Entry(
        'tests.toy_extensions:ToyNet', {'width': 4}, preset={'model.backbone.init_weights': False},
        fixed={'model.poseformer.base_dim': 4}))


def toy_config(tmp_path):
    tree = {'dataset': {'kind': 'toy', 'root': str(tmp_path / 'frames'), 'train_labels_path': str(tmp_path / 'train.pkl'),
                        'val_labels_path': str(tmp_path / 'val.pkl'), 'synthetic': {'frames': 8, 'sequences': 2}},
            'model': {'backbone': {'type': 'toy_net'}, 'poseformer': {'embed_dim_ratio': 16, 'depth': 1}},
            'train': {'n_epochs': 2, 'batch_size': 8, 'num_workers': 0, 'volume_net_lr': 0.001},
            'val': {'batch_size': 8, 'num_workers': 0}, 'vis_n_elements': 2}
    path = tmp_path / 'toy.yaml'
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def test_a_toy_dataset_and_a_toy_backbone_train_and_evaluate(toy_registry, tmp_path, capsys, monkeypatch):
    normalised = []
    real_normalize = toy_extensions.ToyNet.normalize_input
    monkeypatch.setattr(toy_extensions.ToyNet, 'normalize_input',
                        staticmethod(lambda images: normalised.append(images.shape) or real_normalize(images)))
    config = toy_config(tmp_path)
    cfg = load_config(config)
    assert (cfg.model.backbone.num_joints, cfg.model.poseformer.base_dim, cfg.model.backbone.init_weights) == (4, 4, False)

    train.main(train.parse_args(['--config', config, '--logdir', str(tmp_path / 'logs'), '--device', 'cpu']))
    out = capsys.readouterr().out
    assert '[Epoch 2]' in out and 'done; best mean P1 ' in out
    (run_dir,) = glob.glob(str(tmp_path / 'logs' / 'toy_toy_net@*'))
    with open(os.path.join(run_dir, 'eval_epoch_002.json')) as f:
        result = json.load(f)
    rows = result['sequences']
    assert sorted(rows) == ['seq0', 'seq1'] and [r['frames'] for r in rows.values()] == [8, 8]
    assert result['summary']['p1_mm'] == pytest.approx(np.mean([r['p1_mm'] for r in rows.values()]))
    # the toy backbone's own normalisation prepared every batch: 2 epochs x 2 batches, 2 evaluations x 2 batches
    assert len(normalised) == 8 and all(shape == (8, 256, 192, 3) for shape in normalised)
    last = torch.load(os.path.join(run_dir, 'checkpoints', 'last.pth'), weights_only=True)
    assert last['model']['module.volume_net.Spatial_pos_embed'].shape == (1, 5, 4, 16)     # four joints

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(os.path.join(run_dir, 'tb'), size_guidance={'images': 0})
    events.Reload()
    assert {'val/p1', 'val_sequences/p1_seq0', 'val_sequences/p1_seq1'} <= set(events.Tags()['scalars'])
    assert events.Scalars('val/p1')[1].value == pytest.approx(result['summary']['p1_mm'], rel=1e-6)
    assert 'val/poses' in events.Tags()['images']

    best = os.path.join(run_dir, 'checkpoints', 'best_epoch.bin')
    train.main(train.parse_args(['--config', config, '--backbone', 'toy_net', '--eval', '--checkpoint', best,
                                 '--logdir', str(tmp_path / 'eval'), '--device', 'cpu']))
    out = capsys.readouterr().out
    assert 'seq0: p1=' in out and 'mean p1: ' in out


def test_unknown_names_list_the_known_ones(tmp_path):
    path = tmp_path / 'c.yaml'
    path.write_text('dataset:\n  kind: mpii\n')
    with pytest.raises(ConfigError, match=r"unknown dataset kind 'mpii' \(dataset.kind in .*c.yaml\); "
                                          r"choose one of: human36m"):
        load_config(str(path))
    path.write_text('title: t\n')
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnet' \(--backbone\); choose one of: "
                                          r"hrnet_32, hrnet_48, cpn, hrnet_tiny"):
        load_config(str(path), backbone='resnet')
    with pytest.raises(ValueError, match="unknown backbone 'resnet'; choose one of: hrnet_32, hrnet_48, cpn"):
        build_backbone('resnet')
    with pytest.raises(ValueError, match="unknown dataset kind 'mpii'; choose one of: human36m"):
        dataset_class('mpii')
    with pytest.raises(SystemExit):
        train.parse_args(['--config', str(path), '--backbone', 'resnet'])


def test_backbone_choices_come_from_the_registry(toy_registry, tmp_path):
    assert train.parse_args(['--config', 'x.yaml', '--backbone', 'toy_net']).backbone == 'toy_net'


def test_utils_import_nothing_from_models_or_datasets():
    for path in glob.glob(os.path.join(REPO, 'mvn', 'utils', '*.py')):
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module or ''] + ['%s.%s' % (node.module, a.name) for a in node.names]
                     if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(('mvn.models', 'mvn.datasets')), (path, name)
