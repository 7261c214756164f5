"""Configuration rules: what a preset may replace, values a run cannot use, misspelled
sections, and where relative paths start."""
import os
import shutil

import pytest
import yaml

from mvn.utils.cfg import REPO_ROOT, ConfigError, load_config

LEGACY = os.path.join(REPO_ROOT, 'experiments', 'human36m', 'train', 'human36m_vol_softmax_single.yaml')


def write(folder, tree, name='c.yaml'):
    path = folder / name
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def official_with(tmp_path, **changes):
    """The original README's YAML with some ``section.key`` values changed."""
    with open(LEGACY) as f:
        tree = yaml.safe_load(f)
    for dotted, value in changes.items():
        node = tree
        *parents, leaf = dotted.split('.')
        for key in parents:
            node = node[key]
        node[leaf] = value
    return write(tmp_path, tree)


def test_values_set_in_the_file_win_over_the_preset(tmp_path):
    # The original README's command with the weights elsewhere: HRNet-32 keeps the file's path,
    # as the official code does.
    path = official_with(tmp_path, **{'model.backbone.checkpoint': '/weights/pose_hrnet_w32_256x192.pth'})
    assert load_config(path).model.backbone.checkpoint == '/weights/pose_hrnet_w32_256x192.pth'
    assert load_config(path, backbone='hrnet_32').model.backbone.checkpoint == '/weights/pose_hrnet_w32_256x192.pth'
    custom = load_config(official_with(tmp_path, **{'train.batch_size': 128}), backbone='cpn')
    assert (custom.train.batch_size, custom.train.volume_net_lr) == (128, 0.00032)


def test_the_preset_replaces_values_left_at_their_default_or_another_preset(tmp_path):
    # The official YAML names the HRNet-32 file and batch 512 (the defaults): --backbone changes them.
    cfg = load_config(LEGACY, backbone='hrnet_48')
    assert (cfg.model.backbone.checkpoint, cfg.model.poseformer.base_dim) == (
        'data/pretrained/coco/pose_hrnet_w48_256x192.pth', 48)
    cfg = load_config(LEGACY, backbone='cpn')
    assert (cfg.train.batch_size, cfg.val.batch_size, cfg.train.volume_net_lr, cfg.model.backbone.checkpoint) == (
        256, 256, 0.00032, 'data/pretrained/coco/CPN50_256x192.pth.tar')
    cfg = load_config(official_with(tmp_path, **{'model.backbone.checkpoint':
                                                 'data/pretrained/coco/CPN50_256x192.pth.tar'}), backbone='hrnet_32')
    assert cfg.model.backbone.checkpoint == 'data/pretrained/coco/pose_hrnet_w32_256x192.pth'


def test_a_value_that_contradicts_the_architecture_names_both(tmp_path):
    path = write(tmp_path, {'model': {'poseformer': {'base_dim': 32}}})
    assert load_config(path).model.poseformer.base_dim == 32
    with pytest.raises(ConfigError, match=r"^config key 'model.poseformer.base_dim' in .*c.yaml is 32, but backbone "
                                          r"hrnet_48 needs 48$"):
        load_config(path, backbone='hrnet_48')
    with pytest.raises(ConfigError, match="'kind' \\(human36m\\) and 'dataset.kind' \\(mpii\\) in .*d.yaml disagree"):
        load_config(write(tmp_path, {'kind': 'human36m', 'dataset': {'kind': 'mpii'}}, 'd.yaml'))


@pytest.mark.parametrize('key, value, message', [
    ('train.batch_size', 0, 'must be positive, got 0'),
    ('val.batch_size', -8, 'must be positive, got -8'),
    ('train.n_epochs', -1, 'must be at least 0, got -1'),
    ('train.num_workers', -2, 'must be at least 0, got -2'),
    ('val.num_workers', -1, 'must be at least 0, got -1'),
    ('train.volume_net_lr', 0, 'must be positive, got 0.0')])
def test_values_a_run_cannot_use_name_key_and_value(tmp_path, key, value, message):
    section, leaf = key.split('.')
    with pytest.raises(ConfigError, match=r"^config key '%s' in .*c.yaml %s$" % (key, message)):
        load_config(write(tmp_path, {section: {leaf: value}}))


def test_zero_epochs_and_workers_are_allowed(tmp_path):
    cfg = load_config(write(tmp_path, {'train': {'n_epochs': 0, 'num_workers': 0}}))
    assert (cfg.train.n_epochs, cfg.train.num_workers) == (0, 0)


def test_a_config_that_is_not_utf8_names_the_file_and_the_byte(tmp_path):
    path = tmp_path / 'latin1.yaml'
    path.write_bytes('title: caf\u00e9\n'.encode('latin-1'))
    with pytest.raises(ConfigError, match=r'^config file .*latin1.yaml is not UTF-8 text \(byte 0xe9 at offset 10\)$'):
        load_config(str(path))
    path.write_bytes('title: caf\u00e9\n'.encode('utf-8'))
    assert load_config(str(path)).title == 'caf\u00e9'


@pytest.mark.parametrize('tree, suggestion', [
    ({'trian': {'batch_size': 64}}, 'train'),
    ({'modle': {'checkpoint': ''}}, 'model'),
    ({'train': {'bacth_size': 64}}, 'train.batch_size'),
    ({'model': {'backbone': {'chekpoint': 'x'}}}, 'model.backbone.checkpoint')])
def test_a_misspelled_key_or_section_gets_a_did_you_mean(tmp_path, tree, suggestion):
    with pytest.raises(ConfigError, match=r"\(did you mean '%s'\?\)$" % suggestion):
        load_config(write(tmp_path, tree))


def test_relative_paths_start_at_the_repository_root_or_at_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                                     # anywhere but the repository
    shipped = load_config(os.path.join(REPO_ROOT, 'experiments', 'synthetic', 'synthetic.yaml'), resolve_paths=True)
    assert shipped.dataset.train_labels_path == os.path.join(REPO_ROOT, 'data', 'synthetic', 'h36m_train.pkl')
    assert shipped.dataset.root == os.path.join(REPO_ROOT, 'data', 'synthetic', 'images')
    official = load_config(LEGACY, backbone='hrnet_48', resolve_paths=True)       # presets: the repository
    assert official.model.backbone.checkpoint == os.path.join(REPO_ROOT, 'data', 'pretrained', 'coco',
                                                              'pose_hrnet_w48_256x192.pth')
    # A config elsewhere: its own folder (not the working folder), '~' expanded, absolute kept.
    (tmp_path / 'mine').mkdir()
    shutil.copy(LEGACY, tmp_path / 'mine' / 'copy.yaml')
    monkeypatch.chdir(REPO_ROOT)
    tree = {'dataset': {'root': 'frames/', 'train_labels_path': '~/train.pkl', 'val_labels_path': '/data/val.pkl'},
            'model': {'backbone': {'checkpoint': '../coco/w32.pth'}}}
    mine = load_config(write(tmp_path / 'mine', tree), resolve_paths=True)
    assert (mine.dataset.root, mine.dataset.train_labels_path, mine.dataset.val_labels_path) == (
        str(tmp_path / 'mine' / 'frames'), os.path.join(os.path.expanduser('~'), 'train.pkl'), '/data/val.pkl')
    assert mine.model.backbone.checkpoint == str(tmp_path / 'coco' / 'w32.pth')
    assert load_config(write(tmp_path / 'mine', tree)).dataset.root == 'frames/'   # as written without resolving
    # What the file leaves to the presets (the weight file, the dataset's paths) is the repository's.
    plain = load_config(write(tmp_path / 'mine', {'title': 'plain'}, 'plain.yaml'), backbone='cpn', resolve_paths=True)
    assert plain.model.backbone.checkpoint == os.path.join(REPO_ROOT, 'data', 'pretrained', 'coco',
                                                           'CPN50_256x192.pth.tar')
    assert plain.dataset.val_labels_path == os.path.join(REPO_ROOT, 'data', 'h36m_validation.pkl')
