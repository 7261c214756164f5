"""Weight files (COCO detectors, CA-PF checkpoints) and configuration loading."""
import os
import pickle
import warnings

import pytest
import torch
import yaml

from mvn.models.conpose import CA_PF
from mvn.models.weights import WeightsError, load_coco_backbone, load_model_checkpoint
from mvn.utils import checkpoint as ckpt
from mvn.utils.cfg import ConfigError, config_differences, config_to_yaml, load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / 'c.yaml'
    path.write_text('title: t\n')
    cfg = load_config(str(path), backbone='hrnet_tiny')
    torch.manual_seed(0)
    return cfg, CA_PF(cfg).eval()


def inputs():
    g = torch.Generator().manual_seed(1)
    return (torch.randn(2, 256, 192, 3, generator=g), torch.rand(2, 17, 2, generator=g) * 2 - 1,
            torch.rand(2, 17, 2, generator=g) * 190)


def test_checkpoint_round_trip_in_the_official_format(tiny, tmp_path):
    cfg, model = tiny
    optimizer = torch.optim.AdamW(model.volume_net.parameters(), lr=1e-3)
    path = str(tmp_path / 'best_epoch.bin')
    ckpt.save_best(path, 3, 1e-3, model, optimizer)
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {'epoch', 'lr', 'model', 'optimizer'}
    assert all(k.startswith('module.') for k in saved['model'])

    torch.manual_seed(123)
    fresh = CA_PF(cfg).eval()
    load_model_checkpoint(fresh, path)
    with torch.no_grad():
        assert torch.equal(fresh(*inputs()), model(*inputs()))
    # a bare state dict without the prefix loads too
    torch.save(model.state_dict(), tmp_path / 'bare.pth')
    load_model_checkpoint(CA_PF(cfg), str(tmp_path / 'bare.pth'))


def test_checkpoint_shape_mismatch_names_keys_and_both_shapes(tiny, tmp_path):
    cfg, model = tiny
    state = {'model': {k: v for k, v in model.state_dict().items()}}
    state['model']['volume_net.head.1.weight'] = torch.zeros(3, 7)
    torch.save(state, tmp_path / 'bad.bin')
    with pytest.raises(WeightsError, match=r'volume_net\.head\.1\.weight: file \(3, 7\) vs model \(3, 640\)'):
        load_model_checkpoint(model, str(tmp_path / 'bad.bin'))


def test_checkpoint_missing_and_unexpected_keys_are_named(tiny, tmp_path):
    cfg, model = tiny
    state = dict(model.state_dict())
    del state['volume_net.coord_embed.bias']
    torch.save({'model': state}, tmp_path / 'missing.bin')
    with pytest.raises(WeightsError, match='lacks keys.*volume_net.coord_embed.bias'):
        load_model_checkpoint(model, str(tmp_path / 'missing.bin'))
    state = dict(model.state_dict(), extra_layer=torch.zeros(1))
    torch.save({'model': state}, tmp_path / 'extra.bin')
    with pytest.raises(WeightsError, match='does not have: extra_layer'):
        load_model_checkpoint(model, str(tmp_path / 'extra.bin'))


def test_corrupt_and_code_running_files_are_refused(tiny, tmp_path):
    cfg, model = tiny
    (tmp_path / 'corrupt.bin').write_bytes(b'not a checkpoint at all')
    with pytest.raises(WeightsError, match=r'not a PyTorch checkpoint: .*corrupt.bin \(a text file\)'):
        load_model_checkpoint(model, str(tmp_path / 'corrupt.bin'))

    class RunsCode:
        def __reduce__(self):
            return (os.system, ('echo pwned',))
    with open(tmp_path / 'evil.bin', 'wb') as f:
        pickle.dump({'model': RunsCode()}, f, protocol=2)
    with pytest.raises(WeightsError, match=r'not a PyTorch checkpoint: .*evil.bin \(a plain pickle'):
        load_model_checkpoint(model, str(tmp_path / 'evil.bin'))
    with pytest.raises(WeightsError, match='not found: .*nowhere.bin'):
        load_model_checkpoint(model, str(tmp_path / 'nowhere.bin'))


def test_coco_hrnet_file_loads_with_only_final_layer_left_over(tiny, tmp_path):
    cfg, model = tiny
    torch.manual_seed(7)
    donor = CA_PF(cfg).backbone
    state = dict(donor.state_dict(), **{'final_layer.weight': torch.zeros(17, 8, 1, 1),
                                        'final_layer.bias': torch.zeros(17)})
    torch.save(state, tmp_path / 'coco.pth')
    load_coco_backbone(model.backbone, 'hrnet_tiny', str(tmp_path / 'coco.pth'))
    for key, value in donor.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value)

    del state['conv1.weight']
    torch.save(state, tmp_path / 'partial.pth')
    with pytest.raises(WeightsError, match='lacks keys the model needs: conv1.weight'):
        load_coco_backbone(model.backbone, 'hrnet_tiny', str(tmp_path / 'partial.pth'))


def test_cpn_file_with_module_prefix_loads_strictly(tmp_path):
    from mvn.models.cpn import CPN
    torch.manual_seed(3)
    donor, target = CPN(), CPN()
    torch.save({'state_dict': {'module.' + k: v for k, v in donor.state_dict().items()}, 'epoch': 1},
               tmp_path / 'CPN50_256x192.pth.tar')
    load_coco_backbone(target, 'cpn', str(tmp_path / 'CPN50_256x192.pth.tar'))
    assert all(torch.equal(target.state_dict()[k], v) for k, v in donor.state_dict().items())
    torch.save(donor.state_dict(), tmp_path / 'plain.pth')
    with pytest.raises(WeightsError, match="not a CPN weight file: no 'state_dict'"):
        load_coco_backbone(target, 'cpn', str(tmp_path / 'plain.pth'))


# ---------------------------------------------------------------- configuration

def write(tmp_path, tree, name='c.yaml'):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def test_defaults_yaml_and_preset_in_that_order(tmp_path):
    path = write(tmp_path, {'train': {'batch_size': 64, 'n_epochs': 3}})
    cfg = load_config(path)
    assert (cfg.train.batch_size, cfg.train.n_epochs, cfg.train.volume_net_lr) == (64, 3, 0.00064)
    cfg = load_config(path, backbone='cpn')         # the file's own batch size wins over the preset's 256
    assert (cfg.train.batch_size, cfg.train.volume_net_lr, cfg.model.poseformer.base_dim) == (64, 0.00032, 256)
    assert cfg.model.backbone.checkpoint == 'data/pretrained/coco/CPN50_256x192.pth.tar'
    cfg = load_config(path, backbone='hrnet_48')
    assert (cfg.model.poseformer.base_dim, cfg.model.backbone.type) == (48, 'hrnet_48')
    assert load_config(path) is not load_config(path)      # a fresh object every time


def test_config_differences_name_changed_added_and_removed_keys(tmp_path):
    cfg = load_config(write(tmp_path, {'train': {'batch_size': 64, 'n_epochs': 3}}))
    saved = config_to_yaml(cfg)
    assert config_differences(saved, saved) == []
    cfg.train.n_epochs, cfg.model.image_shape = 5, [256, 256]
    old_tree = yaml.safe_load(saved)
    old_tree['train']['retired_key'] = 1
    del old_tree['val']['flip_test']
    assert config_differences(yaml.safe_dump(old_tree), config_to_yaml(cfg)) == [   # in the order of the defaults
        'model.image_shape: [192, 256] -> [256, 256]', 'train.n_epochs: 3 -> 5',
        'val.flip_test: (absent) -> True', 'train.retired_key: 1 -> (absent)']
    assert config_differences(yaml.safe_dump(old_tree), config_to_yaml(cfg),
                              ignore=('train.n_epochs', 'val.flip_test')) == [
        'model.image_shape: [192, 256] -> [256, 256]', 'train.retired_key: 1 -> (absent)']


def test_misspelled_key_names_it_and_the_nearest_valid_key(tmp_path):
    path = write(tmp_path, {'train': {'bacth_size': 64}})
    with pytest.raises(ConfigError, match=r"unknown config key 'train.bacth_size' in .*\(did you mean 'train.batch_size'\?\)"):
        load_config(path)
    with pytest.raises(ConfigError, match="'train.batch_size'.*expected int"):
        load_config(write(tmp_path, {'train': {'batch_size': 'big'}}, 'd.yaml'))
    with pytest.raises(ConfigError, match="'train.amp'.*'fp8' is not one of off, bf16, fp16"):
        load_config(write(tmp_path, {'train': {'amp': 'fp8'}}, 'e.yaml'))
    with pytest.raises(ConfigError, match='config file not found: .*absent.yaml'):
        load_config(str(tmp_path / 'absent.yaml'))
    with pytest.raises(ConfigError, match='config file %s is a folder; give a YAML file' % tmp_path):
        load_config(str(tmp_path))
    for key, value, reason in (('levels', 3, ': every backbone gives 4 maps, got 3'),
                               ('num_joints', 16, ' is 16, but dataset human36m needs 17')):
        section = 'poseformer' if key == 'levels' else 'backbone'
        with pytest.raises(ConfigError, match="'model.%s.%s' in .*f.yaml%s" % (section, key, reason)):
            load_config(write(tmp_path, {'model': {section: {key: value}}}, 'f.yaml'))


def test_an_official_legacy_file_loads_with_one_warning_and_an_lr_note(tmp_path):
    legacy = {
        'title': 'human36m_vol_softmax_single', 'kind': 'human36m', 'azureroot': '', 'batch_output': True,
        'vis_freq': 1000, 'vis_n_elements': 10,
        'model': {'name': 'vol', 'kind': 'mpii', 'image_shape': [192, 256], 'heatmap_shape': [72, 96],
                  'init_weights': False, 'checkpoint': '',
                  'backbone': {'name': 'resnet152', 'style': 'simple', 'num_final_layer_channel': 17,
                               'num_joints': 17, 'num_layers': 152, 'init_weights': True, 'fix_weights': True,
                               'checkpoint': 'data/pretrained/coco/pose_hrnet_w32_256x192.pth'},
                  'volume_net': {'volume_aggregation_method': 'softmax', 'cuboid_size': 2500.0},
                  'poseformer': {'embed_dim_ratio': 128, 'depth': 4}},
        'loss': {'criterion': 'MPJPE', 'scale_keypoints_3d': 0.1, 'use_volumetric_ce_loss': True},
        'dataset': {'kind': 'human36m', 'root': '../H36M-Toolbox/images/', 'extra_root': 'data/human36m/extra',
                    'train_labels_path': 'data/h36m_train.pkl', 'val_labels_path': 'data/h36m_validation.pkl'},
        'train': {'n_objects_per_epoch': 15000, 'n_epochs': 9999, 'batch_size': 512, 'optimizer': 'Adam',
                  'volume_net_lr': 0.0064, 'volume_net_lr_decay': 0.99, 'limb_length_path': 'x.h5'},
        'val': {'batch_size': 512, 'flip_test': True, 'retain_every_n_frames_in_test': 1},
    }
    path = write(tmp_path, legacy)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        cfg = load_config(path)
    messages = [str(w.message) for w in caught]
    ignored = [m for m in messages if 'have no effect here' in m]
    assert len(ignored) == 1
    for key in ('model.name', 'model.heatmap_shape', 'model.volume_net', 'train.limb_length_path',
                'azureroot'):
        assert key in ignored[0]
    lr_notes = [m for m in messages if '0.0064' in m]
    assert len(lr_notes) == 1 and '0.00064' in lr_notes[0]
    assert cfg.train.volume_net_lr == 0.0064 and cfg.vis_n_elements == 10


@pytest.mark.parametrize('relpath,backbone,lr,batch', [
    ('experiments/human36m/human36m.yaml', 'hrnet_32', 0.00064, 512),
    ('experiments/human36m/train/human36m_vol_softmax_single.yaml', 'hrnet_32', 0.00064, 512),
    ('experiments/human36m/human36m_hrnet_48.yaml', 'hrnet_48', 0.00064, 512),
    ('experiments/human36m/human36m_cpn.yaml', 'cpn', 0.00032, 256),
    ('experiments/synthetic/synthetic.yaml', 'hrnet_tiny', 0.001, 32)])
def test_shipped_configs_load_without_warnings(relpath, backbone, lr, batch):
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        cfg = load_config(os.path.join(REPO, relpath))
    assert (cfg.model.backbone.type, cfg.train.volume_net_lr, cfg.train.batch_size) == (backbone, lr, batch)
    if 'human36m' in relpath:
        assert (cfg.train.volume_net_lr_decay, cfg.train.weight_decay, cfg.val.flip_test) == (0.99, 0.1, True)
        assert (cfg.dataset.root, cfg.dataset.val_labels_path) == ('H36M-Toolbox/images/', 'data/h36m_validation.pkl')


def test_synthetic_section_takes_exactly_the_generator_arguments(tmp_path):
    from mvn.datasets.build import synthetic_arguments
    spec = {'subjects': [1, 9], 'actions': [2], 'subactions': [1], 'cameras': [1], 'frames': 2, 'val_frames': 1,
            'seed': 0, 'jpeg_quality': 80}
    _, arguments = synthetic_arguments(load_config(write(tmp_path, {'dataset': {'synthetic': spec}})))
    assert arguments == dict(spec, subjects=(1, 9), actions=(2,), subactions=(1,), cameras=(1,))
    with pytest.raises(ConfigError, match="unknown config key 'dataset.synthetic.frame'; choose from subjects"):
        synthetic_arguments(load_config(write(tmp_path, {'dataset': {'synthetic': {'frame': 3}}}, 'd.yaml')))
