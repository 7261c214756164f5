"""MPI-INF-3DHP-Toolbox on the synthetic raw dataset: labels against hand-computed values, crops,
and the reader of the official npz files."""
import importlib.util
import os
import pickle

import cv2
import numpy as np
import pytest

from mvn.datasets import mpi_meta as meta
from mvn.datasets.synthetic_3dhp import generate_raw, sequence_poses

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def toolbox(name):
    path = os.path.join(REPO, 'MPI-INF-3DHP-Toolbox', name + '.py')
    spec = importlib.util.spec_from_file_location('toolbox_3dhp_' + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp('raw3dhp')
    generate_raw(str(root), subjects=(1,), sequences=(1,), cameras=(0, 4), frames=3, test_sequences=(1, 5),
                 test_frames=3)
    return root


@pytest.fixture(scope='module')
def labels(raw):
    assert toolbox('generate_labels_3dhp').main(['--root', str(raw), '--subjects', '1', '--cameras', '0', '4']) == 0
    with open(raw / 'mpi_inf_3dhp_train.pkl', 'rb') as f:
        train = pickle.load(f)
    with open(raw / 'mpi_inf_3dhp_test.pkl', 'rb') as f:
        test = pickle.load(f)
    return train, test


def expected_crop_point(point, pelvis_mm, k):
    """By hand: the box is the pelvis shifted by -1000/+1000 mm (x) and -900/+1100 mm (y),
    projected; the crop maps the box centre to (95.5, 127.5) and scales by 191 / (width - 1)."""
    x0 = k.fx * (pelvis_mm[0] - 1000) / pelvis_mm[2] + k.cx
    x1 = k.fx * (pelvis_mm[0] + 1000) / pelvis_mm[2] + k.cx
    y0 = k.fy * (pelvis_mm[1] - 900) / pelvis_mm[2] + k.cy
    y1 = k.fy * (pelvis_mm[1] + 1100) / pelvis_mm[2] + k.cy
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    factor = 191.0 / (x1 - x0 - 1)
    return (np.asarray(point) - centre) * factor + [95.5, 127.5], (x0, y0, x1, y1)


def test_training_labels_by_hand(labels):
    train, _ = labels
    assert len(train) == 2 * 3          # cameras 0 and 4, 3 frames
    label = next(l for l in train if l['camera_id'] == 4 and l['image_id'] == 2)
    annot2, _, univ = sequence_poses((1, 2 + 1 % 7), 3, 4)      # what the generator wrote for S1 Seq1
    np.testing.assert_allclose(label['joints_3d'], univ[1] / 1000.0, rtol=1e-12)
    np.testing.assert_allclose(label['joints_2d_gt'], annot2[1] / 1024.0 - 1.0, rtol=1e-12)   # 2048 x 2048
    crop, box = expected_crop_point(annot2[1], univ[1][meta.ROOT_JOINT], meta.INTRINSICS[4])
    np.testing.assert_allclose(label['box'], box, rtol=1e-9)
    np.testing.assert_allclose(label['joints_2d_gt_crop'], crop, atol=2e-3)
    assert label['joints_2d_gt_crop'].dtype == np.float32
    assert label['image'] == 's_01_seq_01_ca_04/s_01_seq_01_ca_04_000002.jpg'
    assert (label['subject'], label['sequence'], label['valid'], label['activity']) == (1, 1, 1, 0)


def test_test_labels_by_hand_keep_valid_frames_only(labels):
    _, test = labels
    assert [(l['sequence'], l['image_id']) for l in test] == [(1, 1), (1, 3), (5, 1), (5, 3)]   # frame 2 invalid
    label = test[3]
    annot2, _, univ = sequence_poses((9 + 5 % 3, 13 + 5 % 3), 3, 14)
    # TS5 frames are 1920 x 1080: x / 960 - 1, y / 960 - 1080 / 1920.
    np.testing.assert_allclose(label['joints_2d_gt'], annot2[2] / 960.0 - [1.0, 0.5625], rtol=1e-12)
    crop, _ = expected_crop_point(annot2[2], univ[2][meta.ROOT_JOINT], meta.INTRINSICS[meta.OUTDOOR_CAMERA])
    np.testing.assert_allclose(label['joints_2d_gt_crop'], crop, atol=2e-3)
    assert (label['subject'], label['camera_id'], label['image']) == (0, 14, 'TS5/TS5_000003.jpg')
    assert label['activity'] == 1 + (2 + 5) % 7


def test_official_crop_keypoints_option(raw, tmp_path):
    assert toolbox('generate_labels_3dhp').main(['--root', str(raw), '--subjects', '1', '--cameras', '4',
                                                 '--official-crop-keypoints', '--out-dir', str(tmp_path)]) == 0
    with open(tmp_path / 'mpi_inf_3dhp_train.pkl', 'rb') as f:
        label = pickle.load(f)[0]
    annot2, _, univ = sequence_poses((1, 3), 3, 4)
    # Camera 4 is the 4th training camera: the official script used camera 3's intrinsics here.
    crop, _ = expected_crop_point(annot2[0], univ[0][meta.ROOT_JOINT], meta.INTRINSICS[3])
    np.testing.assert_allclose(label['joints_2d_gt_crop'], crop, atol=2e-3)
    _, box = expected_crop_point(annot2[0], univ[0][meta.ROOT_JOINT], meta.INTRINSICS[4])
    np.testing.assert_allclose(label['box'], box, rtol=1e-9)        # the image box stays camera 4's


def test_crops_are_cut_from_the_right_frames(raw, labels):
    assert toolbox('make_crops').main(['--root', str(raw), '--backend', 'opencv']) == 0
    train, test = labels
    for label in train + test:
        crop = cv2.imread(str(raw / 'images' / label['image']))
        assert crop.shape == (256, 192, 3)
    assert not (raw / 'images' / 'TS1' / 'TS1_000002.jpg').exists()
    # The crop of S1 camera 0 frame 2 is that frame's box, not a neighbour's: compare with crops
    # of the decoded video's frames cut by hand with OpenCV's affine warp.
    label = next(l for l in train if l['camera_id'] == 0 and l['image_id'] == 2)
    capture = cv2.VideoCapture(str(raw / 'mpi_inf_3dhp' / 'S1' / 'Seq1' / 'imageSequence' / 'video_0.avi'))
    frames = [capture.read()[1] for _ in range(3)]
    capture.release()
    x0, y0, x1, _ = label['box']
    factor = 191.0 / (x1 - x0 - 1)
    centre = np.array(label['center'])
    matrix = np.array([[factor, 0, 95.5 - factor * centre[0]], [0, factor, 127.5 - factor * centre[1]]])
    stored = cv2.imread(str(raw / 'images' / label['image'])).astype(float)
    errors = [np.abs(cv2.warpAffine(f, matrix, (192, 256), flags=cv2.INTER_LINEAR) - stored).mean() for f in frames]
    assert np.argmin(errors) == 1 and errors[1] < 2.0


def official_npz(raw, path_train, path_test):
    """The official files' layout, from the same synthetic annotations (crop keypoints as the
    official preparation placed them: training camera i of TRAIN_CAMERAS with camera i's intrinsics)."""
    from mvn.datasets.mpi_labels import crop_box
    from mvn.utils.img import crop_transform, transform_points
    cams = {}
    for camera in (0, 4):
        annot2, _, univ = sequence_poses((1, 3), 3, camera)
        crops = []
        for i in range(3):
            center, scale, _ = crop_box(univ[i], meta.official_training_crop_camera(camera))
            crops.append(transform_points(annot2[i], crop_transform(center, scale)))
        cams[str(camera)] = {'data_2d': annot2, 'data_2d_crop': np.array(crops), 'data_3d': univ}
    np.savez_compressed(path_train, data={'S1 Seq1': [cams, 25]})
    test = {}
    for ts in (1, 5):
        annot2, _, univ = sequence_poses((9 + ts % 3, 13 + ts % 3), 3, meta.TEST_CAMERA[ts])
        test['TS%d' % ts] = {'data_2d': annot2, 'data_2d_crop': annot2 * 0, 'data_3d': univ,
                             'valid': np.array([1.0, 0.0, 1.0])}
    np.savez_compressed(path_test, data=test)


def test_official_npz_reader_gives_the_toolbox_labels(raw, labels, tmp_path):
    official_npz(raw, tmp_path / 'data_train_3dhp.npz', tmp_path / 'data_test_3dhp.npz')
    reader = toolbox('npz_to_labels')
    out = tmp_path / 'out'
    assert reader.main(['--train', str(tmp_path / 'data_train_3dhp.npz'), '--test', str(tmp_path / 'data_test_3dhp.npz'),
                        '--out-dir', str(out)]) == 0
    for name, ours in zip(('mpi_inf_3dhp_train.pkl', 'mpi_inf_3dhp_test.pkl'), labels):
        with open(out / name, 'rb') as f:
            theirs = pickle.load(f)
        assert len(theirs) == len(ours)
        for a, b in zip(theirs, ours):
            prefix = reader.TRAIN_PREFIX if b['subject'] else reader.TEST_PREFIX
            assert a['image'] == prefix + b['image']
            for key in ('joints_2d_gt', 'joints_2d_gt_crop', 'joints_3d', 'center', 'scale', 'box', 'sequence',
                        'camera_id', 'image_id', 'valid'):
                np.testing.assert_allclose(np.asarray(a[key], float), np.asarray(b[key], float), rtol=1e-12, err_msg=key)
    # With --keep-npz-crop-keypoints, camera 4 keeps the official (camera 3) placement.
    assert reader.main(['--train', str(tmp_path / 'data_train_3dhp.npz'), '--out-dir', str(tmp_path / 'kept'),
                        '--keep-npz-crop-keypoints']) == 0
    with open(tmp_path / 'kept' / 'mpi_inf_3dhp_train.pkl', 'rb') as f:
        kept = pickle.load(f)
    annot2, _, univ = sequence_poses((1, 3), 3, 4)
    crop, _ = expected_crop_point(annot2[0], univ[0][meta.ROOT_JOINT], meta.INTRINSICS[3])
    np.testing.assert_allclose(kept[3]['joints_2d_gt_crop'], crop, atol=2e-3)


def test_npz_reader_names_a_bad_file(tmp_path, capsys):
    bad = tmp_path / 'data_test_3dhp.npz'
    np.savez_compressed(bad, data={'TS1': {'data_2d': np.zeros((2, 17, 2))}})
    assert toolbox('npz_to_labels').main(['--test', str(bad), '--out-dir', str(tmp_path)]) == 1
    assert "lacks one of data_2d, data_3d, valid" in capsys.readouterr().err


def test_processed_synthetic_data_is_what_the_toolbox_makes_of_the_raw_data(labels, tmp_path):
    from mvn.datasets.synthetic_3dhp import generate_processed
    counts = generate_processed(str(tmp_path / 'images'), str(tmp_path / 'train.pkl'), str(tmp_path / 'test.pkl'),
                                subjects=(1,), sequences=(1,), cameras=(0, 4), frames=3, test_sequences=(1, 5),
                                test_frames=3, progress=False)
    assert counts == {'train': 6, 'test': 4}
    for name, toolbox_labels in zip(('train.pkl', 'test.pkl'), labels):
        with open(tmp_path / name, 'rb') as f:
            made = pickle.load(f)
        for a, b in zip(made, toolbox_labels):
            assert a['image'] == b['image'] and cv2.imread(str(tmp_path / 'images' / a['image'])).shape == (256, 192, 3)
            for key in ('joints_2d_gt', 'joints_2d_gt_crop', 'joints_3d', 'box', 'video_id', 'valid', 'activity'):
                np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
