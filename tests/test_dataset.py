"""The label cache and Human36MSingleViewDataset, and their errors."""
import os
import pickle
import shutil

import numpy as np
import pytest

from mvn.datasets import label_cache
from mvn.datasets.base import shard_range
from mvn.datasets.build import ensure_synthetic_data
from mvn.datasets.human36m import Human36MSingleViewDataset
from mvn.datasets.images import DataError
from mvn.datasets.label_cache import LabelError, cache_dir_for
from mvn.utils.cfg import load_config
from mvn.utils.img import crop_image
from tests.helpers import write_config


# The label fields of the Human3.6M dataset with its default (CPN) 2D keypoints.
FIELDS = Human36MSingleViewDataset.fields('cpn')
INTEGER_FIELDS = Human36MSingleViewDataset.integer_label_fields


def load_labels(path, progress=True):
    return label_cache.load_labels(path, FIELDS, INTEGER_FIELDS, progress=progress)


@pytest.fixture
def labels_copy(tmp_path, processed_data):
    """A private copy of the small validation labels (its cache is ours to break)."""
    path = tmp_path / 'labels.pkl'
    shutil.copy(processed_data['val'], path)
    return str(path)


def read_pickle(path):
    with open(path, 'rb') as f:
        return pickle.load(f)


def test_cache_equals_the_pickle_bit_for_bit(labels_copy):
    labels = read_pickle(labels_copy)
    table = load_labels(labels_copy, progress=False)
    assert os.path.isfile(os.path.join(cache_dir_for(labels_copy), 'manifest.json'))
    assert len(table) == len(labels)
    for name in FIELDS:
        column = table[name]
        expected = np.stack([np.asarray(entry[name]) for entry in labels])
        assert isinstance(column, np.memmap) or isinstance(column.base, np.memmap)
        assert np.array_equal(column, expected), name
        if name not in INTEGER_FIELDS:
            assert column.dtype == expected.dtype, name


def test_cache_is_rebuilt_when_the_pickle_changes(labels_copy):
    load_labels(labels_copy, progress=False)
    labels = read_pickle(labels_copy)
    labels[0]['joints_3d'] = labels[0]['joints_3d'] + 1.0
    with open(labels_copy, 'wb') as f:
        pickle.dump(labels, f)
    table = load_labels(labels_copy, progress=False)
    assert np.array_equal(table['joints_3d'][0], labels[0]['joints_3d'])


def test_cache_is_rebuilt_when_a_cache_file_is_truncated(labels_copy):
    load_labels(labels_copy, progress=False)
    victim = os.path.join(cache_dir_for(labels_copy), 'joints_2d_cpn_crop.npy')
    with open(victim, 'r+b') as f:
        f.truncate(os.path.getsize(victim) // 2)
    table = load_labels(labels_copy, progress=False)
    expected = np.stack([e['joints_2d_cpn_crop'] for e in read_pickle(labels_copy)])
    assert np.array_equal(table['joints_2d_cpn_crop'], expected)


def test_an_interrupted_conversion_leaves_no_cache_behind(labels_copy, monkeypatch):
    def fail(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(label_cache.np, 'save', fail)
    with pytest.raises(KeyboardInterrupt):
        load_labels(labels_copy, progress=False)
    folder = os.path.dirname(labels_copy)
    assert not os.path.exists(cache_dir_for(labels_copy))
    assert not [n for n in os.listdir(folder) if '.tmp-' in n]
    monkeypatch.undo()
    assert len(load_labels(labels_copy, progress=False)) == len(read_pickle(labels_copy))


def test_without_file_locks_a_conversion_finished_elsewhere_meanwhile_is_taken(labels_copy, monkeypatch):
    columns = label_cache.columns_from_labels(read_pickle(labels_copy), labels_copy, FIELDS, INTEGER_FIELDS)
    fingerprint = label_cache._fingerprint(labels_copy)
    cache_dir = cache_dir_for(labels_copy)
    load_labels(labels_copy, progress=False)                        # the other process's cache, in place
    real_exists = os.path.exists
    # This writer looked before the other's rename landed; its own rename then meets a full folder.
    monkeypatch.setattr(label_cache.os.path, 'exists', lambda p: False if p == cache_dir else real_exists(p))
    label_cache._write_cache(cache_dir, columns, fingerprint)
    assert label_cache._cache_is_valid(cache_dir, fingerprint)
    assert sorted(os.listdir(os.path.dirname(labels_copy))) == ['labels.pkl', 'labels.pkl.cache', 'labels.pkl.cache.lock']
    with pytest.raises(OSError):                # a folder there that is no valid cache is not taken
        label_cache._write_cache(cache_dir, columns, 'another fingerprint')


def test_table_pickles_as_paths_for_spawned_workers(labels_copy):
    table = load_labels(labels_copy, progress=False)
    blob = pickle.dumps(table)
    assert len(blob) < 2000
    again = pickle.loads(blob)
    assert np.array_equal(again['center'], table['center'])


@pytest.mark.parametrize('content,message', [
    ([], 'is empty'),
    ({'not': 'a list'}, 'expected a list of per-frame dicts'),
])
def test_unusable_label_files(tmp_path, content, message):
    path = tmp_path / 'bad.pkl'
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(LabelError, match=message):
        load_labels(str(path), progress=False)


def test_label_missing_a_key_names_entry_and_key(labels_copy):
    labels = read_pickle(labels_copy)
    del labels[3]['joints_2d_cpn_crop']
    with open(labels_copy, 'wb') as f:
        pickle.dump(labels, f)
    with pytest.raises(LabelError, match=r"labels.pkl: entry 3 has no key 'joints_2d_cpn_crop'"):
        load_labels(labels_copy, progress=False)


def test_label_with_a_wrong_shape_names_entry_and_key(labels_copy):
    labels = read_pickle(labels_copy)
    labels[2]['joints_3d'] = labels[2]['joints_3d'][:16]
    with open(labels_copy, 'wb') as f:
        pickle.dump(labels, f)
    with pytest.raises(LabelError, match=r"entry 2 key 'joints_3d' has shape \(16, 3\), expected \(17, 3\)"):
        load_labels(labels_copy, progress=False)


def test_missing_and_garbage_label_files(tmp_path):
    with pytest.raises(LabelError, match='label file not found: .*nothing.pkl'):
        load_labels(str(tmp_path / 'nothing.pkl'))
    (tmp_path / 'garbage.pkl').write_bytes(b'\x00garbage')
    with pytest.raises(LabelError, match='cannot read label file .*garbage.pkl'):
        load_labels(str(tmp_path / 'garbage.pkl'), progress=False)


def test_items_are_crops_and_label_values(processed_data):
    dataset = Human36MSingleViewDataset(root=processed_data['root'], labels_path=processed_data['val'],
                                        image_shape=[192, 256], progress=False)
    labels = read_pickle(processed_data['val'])
    assert len(dataset) == len(labels)
    image, joints_3d, keypoints_2d, keypoints_crop = dataset[5]
    entry = labels[5]
    assert image.shape == (256, 192, 3) and image.dtype == np.uint8
    assert joints_3d.shape == (1, 17, 3) and np.array_equal(joints_3d[0], entry['joints_3d'])
    assert np.array_equal(keypoints_2d, entry['joints_2d_cpn'])
    assert keypoints_crop.dtype == np.float32 and np.array_equal(keypoints_crop, entry['joints_2d_cpn_crop'])
    import cv2
    frame = cv2.imread(os.path.join(processed_data['root'], entry['image']))
    assert np.array_equal(image, crop_image(frame, entry['center'], entry['scale']))
    assert (dataset.labels['action'][5], dataset.labels['subject'][5]) == (entry['action'], entry['subject'])


def test_shards_are_contiguous_and_cover_everything(processed_data):
    assert shard_range(10, 0, 3) == (0, 3, [3, 3, 4])
    assert shard_range(10, 2, 3) == (6, 10, [3, 3, 4])
    whole = Human36MSingleViewDataset(root=processed_data['root'], labels_path=processed_data['val'], progress=False)
    parts = [Human36MSingleViewDataset(root=processed_data['root'], labels_path=processed_data['val'], rank=r,
                                       world_size=3, progress=False) for r in range(3)]
    assert sum(len(p) for p in parts) == len(whole)
    assert parts[2].dist_size == [len(whole) // 3] * 2 + [len(whole) - 2 * (len(whole) // 3)]
    assert np.array_equal(parts[1][0][1], whole[len(whole) // 3][1])


def test_missing_and_corrupt_images_name_the_file(tmp_path, processed_data):
    root = tmp_path / 'images'
    shutil.copytree(processed_data['root'], root)
    dataset = Human36MSingleViewDataset(root=str(root), labels_path=processed_data['val'], progress=False)
    missing = dataset.image_path(0)
    os.remove(missing)
    with pytest.raises(DataError, match='missing image: .*' + os.path.basename(missing)):
        dataset[0]
    corrupt = dataset.image_path(1)
    with open(corrupt, 'wb') as f:
        f.write(b'this is not a JPEG')
    with pytest.raises(DataError, match='corrupt or unreadable image: .*' + os.path.basename(corrupt)):
        dataset[1]
    truncated = dataset.image_path(2)
    data = open(truncated, 'rb').read()
    with open(truncated, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(DataError, match='corrupt or unreadable image'):
        dataset[2]


def test_synthetic_data_is_made_once_and_again_when_its_settings_change(tmp_path):
    def config(frames):
        paths = {'root': str(tmp_path / 'images'), 'train': str(tmp_path / 'train.pkl'), 'val': str(tmp_path / 'val.pkl')}
        spec = {'subjects': [1, 9], 'actions': [2], 'subactions': [1], 'cameras': [1], 'frames': frames}
        return load_config(write_config(tmp_path / 'synthetic.yaml', paths, **{'dataset.synthetic': spec}))

    said = []
    ensure_synthetic_data(config(2), log=said.append)
    ensure_synthetic_data(config(2), log=said.append)              # complete and current: left alone
    assert len(said) == 1 and said[0].startswith('generating the synthetic dataset')
    assert len(load_labels(str(tmp_path / 'train.pkl'), progress=False)) == 2
    ensure_synthetic_data(config(3), log=said.append)              # other settings: made again
    assert len(said) == 2 and len(load_labels(str(tmp_path / 'train.pkl'), progress=False)) == 3


def test_the_2d_source_picks_its_keypoints_and_the_cache_keeps_every_source(labels_copy, processed_data, monkeypatch):
    labels = read_pickle(labels_copy)
    root = processed_data['root']
    gt = Human36MSingleViewDataset(root=root, labels_path=labels_copy, keypoints_2d='gt', progress=False)
    cpn = Human36MSingleViewDataset(root=root, labels_path=labels_copy, progress=False)
    for dataset, source in ((gt, 'gt'), (cpn, 'cpn')):
        _, joints_3d, keypoints_2d, keypoints_crop = dataset[4]
        assert np.array_equal(keypoints_2d, labels[4]['joints_2d_%s' % source])
        assert np.array_equal(keypoints_crop, labels[4]['joints_2d_%s_crop' % source])
        assert np.array_equal(joints_3d[0], labels[4]['joints_3d'])
    assert not np.array_equal(gt[4][2], cpn[4][2])                  # the synthetic detections are noisy
    # Both sources are now cached: neither needs the pickle again.
    monkeypatch.setattr(label_cache, 'read_label_pickle', lambda path: pytest.fail('read the pickle again'))
    for source in ('gt', 'cpn', 'joints_2d_gt'):
        Human36MSingleViewDataset(root=root, labels_path=labels_copy, keypoints_2d=source, progress=False)


def test_a_2d_source_the_labels_lack_names_the_file_and_the_key(labels_copy):
    with pytest.raises(LabelError, match=r"^label file .*labels.pkl has no key 'joints_2d_hrnet'$"):
        Human36MSingleViewDataset(root='x', labels_path=labels_copy, keypoints_2d='hrnet', progress=False)
    labels = read_pickle(labels_copy)
    for entry in labels:
        entry['joints_2d_det'] = entry['joints_2d_cpn']           # a source without its crop keypoints
    with open(labels_copy, 'wb') as f:
        pickle.dump(labels, f)
    with pytest.raises(LabelError, match=r"^label file .*labels.pkl has no key 'joints_2d_det_crop'$"):
        Human36MSingleViewDataset(root='x', labels_path=labels_copy, keypoints_2d='det', progress=False)


def test_labels_made_for_another_crop_size_are_refused(tmp_path, processed_data, monkeypatch):
    with pytest.raises(DataError, match=r"h36m_validation.pkl: its crop keypoints \(joints_2d_cpn_crop\) were made "
                                        r"for 192x256 crops, but model.image_shape is \[256, 256\]$"):
        Human36MSingleViewDataset(root=processed_data['root'], labels_path=processed_data['val'],
                                  image_shape=(256, 256), progress=False)
    # Labels whose crop keypoints the label maker computed for 256x256 crops (cameras with
    # 1000x1000 and 1000x1002 frames) fit that shape, and no longer 192x256.
    from mvn.datasets import h36m_labels, synthetic
    monkeypatch.setattr(h36m_labels, 'CROP_SIZE', (256, 256))
    paths = [str(tmp_path / name) for name in ('images', 'train.pkl', 'val.pkl')]
    synthetic.generate_processed(*paths, subjects=(1, 9), actions=(2,), subactions=(1,), cameras=(2, 4), frames=2,
                                 progress=False)
    for labels_path in paths[1:]:
        Human36MSingleViewDataset(root=paths[0], labels_path=labels_path, image_shape=(256, 256), progress=False)
        with pytest.raises(DataError, match='were made for 256x256 crops, but model.image_shape is \\[192, 256\\]'):
            Human36MSingleViewDataset(root=paths[0], labels_path=labels_path, progress=False)
