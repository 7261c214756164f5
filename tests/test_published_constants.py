"""Dataset constants against the published values, written out here by hand (never imported from
the code under test), plus the places that use them.

Sources, as published with the datasets and the official code:
* Human3.6M ``metadata.xml`` (shipped with the dataset and with the official H36M-Toolbox): the
  ``<w0>`` calibration vector (per camera, for subjects S1..S11 in turn: 3 rotation angles and the
  camera centre T in mm; then per camera f (2), c (2), k (3), p (2)), ``<index2id>`` and
  ``<actionnames>``;
* VideoPose3D's ``h36m_dataset.py`` (the official toolbox's ``common/``): the same extrinsics as a
  camera-to-world quaternion (w, x, y, z) in float32, an independent form of the rotation;
* the official ``generate_labels_h36m.py``: ``joint_idx``, the 17 of the 32 mocap joints;
* the official ``train.py``: ``joints_left``/``joints_right`` of the 17;
* MPI-INF-3DHP's ``mpii_get_joints.m`` ('relevant' set, 1-based there) and
  ``mpii_get_pck_auc_joint_groups.m``, and the official ``run_3dhp.py`` left/right lists.
"""
import os
import types

import cv2
import numpy as np
import pytest
import torch

from mvn.datasets import h36m_meta, mpi_meta
from mvn.datasets.batch import BatchPreparer
from mvn.datasets.synthetic import _write_cdf, expand_to_32

# --------------------------------------------------------------------------------------------
# Human3.6M joints

# Human3.6M's 32 mocap joints (the D3_Positions files), by name.
H36M_32_NAMES = ['Hip', 'RightUpLeg', 'RightLeg', 'RightFoot', 'RightToeBase', 'Site', 'LeftUpLeg', 'LeftLeg',
                 'LeftFoot', 'LeftToeBase', 'Site', 'Spine', 'Spine1', 'Neck', 'Head', 'Site', 'LeftShoulder',
                 'LeftArm', 'LeftForeArm', 'LeftHand', 'LeftHandThumb', 'Site', 'L_Wrist_End', 'Site',
                 'RightShoulder', 'RightArm', 'RightForeArm', 'RightHand', 'RightHandThumb', 'Site',
                 'R_Wrist_End', 'Site']
# generate_labels_h36m.py: joint_idx = [0, 1, 2, 3, 6, 7, 8, 12, 16, 14, 15, 17, 18, 19, 25, 26, 27]
OFFICIAL_JOINT_IDX = [0, 1, 2, 3, 6, 7, 8, 12, 16, 14, 15, 17, 18, 19, 25, 26, 27]
# official train.py
OFFICIAL_LEFT, OFFICIAL_RIGHT = [4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]


def test_h36m_32_to_17_table_is_the_official_one():
    assert list(h36m_meta.H36M_32_TO_17) == OFFICIAL_JOINT_IDX
    # what those joints are: pelvis, right leg, left leg, spine, thorax (the shoulders' common
    # origin), head, head top, left arm, right arm
    assert [H36M_32_NAMES[i] for i in OFFICIAL_JOINT_IDX] == [
        'Hip', 'RightUpLeg', 'RightLeg', 'RightFoot', 'LeftUpLeg', 'LeftLeg', 'LeftFoot', 'Spine1', 'LeftShoulder',
        'Head', 'Site', 'LeftArm', 'LeftForeArm', 'LeftHand', 'RightArm', 'RightForeArm', 'RightHand']


def test_the_synthetic_generator_writes_each_of_the_17_joints_at_its_mocap_index():
    joints = np.arange(2 * 17 * 3, dtype=np.float64).reshape(2, 17, 3)
    assert np.array_equal(expand_to_32(joints)[:, OFFICIAL_JOINT_IDX], joints)


def test_the_toolbox_reads_the_17_joints_from_their_mocap_indices(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'generate_labels_h36m', os.path.join(os.path.dirname(os.path.dirname(__file__)), 'H36M-Toolbox',
                                             'generate_labels_h36m.py'))
    toolbox = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toolbox)
    subject, action, subaction, camera = 9, 2, 1, 1
    base = h36m_meta.sequence_basename(subject, action, subaction, camera)
    # Mocap joint i sits at (10 i, -5 i, 4000 + i) mm in the camera frame and at (300 + i, 200 + 2 i) px.
    i = np.arange(32, dtype=np.float32)
    poses_3d = np.stack([10 * i, -5 * i, 4000 + i], axis=-1)[None]
    poses_2d = np.stack([300 + i, 200 + 2 * i], axis=-1)[None]
    for sub, poses in (('Poses_D3_Positions_mono', poses_3d), ('Poses_D2_Positions', poses_2d)):
        os.makedirs(tmp_path / 'extracted' / 'S9' / sub)
        _write_cdf(str(tmp_path / 'extracted' / 'S9' / sub / (base + '.cdf')), poses)
    folder = tmp_path / 'images' / h36m_meta.sequence_dirname(subject, action, subaction, camera - 1)
    folder.mkdir(parents=True)
    cv2.imwrite(str(tmp_path / 'images' / h36m_meta.image_relpath(subject, action, subaction, camera - 1, 1)),
                np.zeros((1002, 1000, 3), np.uint8))
    cpn = {'S9': {base.split('.')[0]: [np.zeros((1, 17, 2), np.float32)] * 4}}
    args = types.SimpleNamespace(extracted=str(tmp_path / 'extracted'), images=str(tmp_path / 'images'))
    (label,) = toolbox.sequence_labels(args, cpn, subject, action, subaction, camera, 0, [])
    expected = np.array(OFFICIAL_JOINT_IDX, dtype=np.float64)
    np.testing.assert_allclose(label['joints_3d'], np.stack([10 * expected, -5 * expected, 4000 + expected], -1) / 1000)
    np.testing.assert_allclose(label['joints_2d_gt'] * 500 + [500, 501],      # normalised: x/w*2-1, y/w*2-h/w
                               np.stack([300 + expected, 200 + 2 * expected], -1), atol=1e-9)


def test_h36m_left_right_pairs_are_the_official_ones():
    skeleton = h36m_meta.SKELETON
    assert list(skeleton.left) == OFFICIAL_LEFT and list(skeleton.right) == OFFICIAL_RIGHT
    assert skeleton.root == 0
    # by name: each left joint's partner is the right joint of the same body part
    for left, right in zip(OFFICIAL_LEFT, OFFICIAL_RIGHT):
        assert h36m_meta.JOINT_NAMES[left].replace('left_', '') == h36m_meta.JOINT_NAMES[right].replace('right_', '')


def test_a_training_flip_exchanges_every_left_right_pair_and_negates_x():
    """All six pairs (hips, knees, ankles, shoulders, elbows, wrists), not only the hips."""
    joints = torch.arange(17 * 3, dtype=torch.float64).reshape(1, 1, 17, 3) + 1.0
    keypoints = torch.arange(17 * 2, dtype=torch.float64).reshape(1, 17, 2) + 1.0
    crop = keypoints.clone() * 3
    preparer = BatchPreparer('cpu', normalize=lambda x: x, skeleton=h36m_meta.SKELETON, crop_width=192, train=True)
    for seed in range(20):                     # find a seed whose first draw flips
        preparer.generator.manual_seed(seed)
        batch = (torch.zeros(1, 4, 4, 3, dtype=torch.uint8), joints, keypoints, crop)
        _, joints_out, keypoints_out, crop_out = preparer(batch)
        if keypoints_out[0, 0, 0] < 0:
            break
    else:
        pytest.fail('no flip in 20 seeds')
    partner = list(range(17))
    for left, right in zip(OFFICIAL_LEFT, OFFICIAL_RIGHT):
        partner[left], partner[right] = right, left
    rel = joints - joints[:, :, :1]
    for j in range(17):
        k = partner[j]
        assert keypoints_out[0, j].tolist() == [-keypoints[0, k, 0].item(), keypoints[0, k, 1].item()], j
        assert crop_out[0, j].tolist() == [191 - crop[0, k, 0].item(), crop[0, k, 1].item()], j
        assert joints_out[0, 0, j].tolist() == [-rel[0, 0, k, 0].item(), rel[0, 0, k, 1].item(),
                                                 rel[0, 0, k, 2].item()], j


# --------------------------------------------------------------------------------------------
# Human3.6M actions and cameras

# metadata.xml <actionnames> items 2..16 (item 1 is 'Miscellaneous', the unused "_ALL" action)
PUBLISHED_ACTIONS = ['Directions', 'Discussion', 'Eating', 'Greeting', 'Phoning', 'Posing', 'Purchases', 'Sitting',
                     'SittingDown', 'Smoking', 'TakingPhoto', 'Waiting', 'Walking', 'WalkingDog', 'WalkingTogether']


def test_the_15_actions_are_the_published_ones_in_order():
    assert list(h36m_meta.ACTION_NAMES) == PUBLISHED_ACTIONS
    assert list(h36m_meta.ACTIONS) == list(range(2, 17))
    # trial index (action - 2) * 2 + (subaction - 1): the official 30 'Action-k' names in order
    assert [h36m_meta.action_trial_index(a, s) for a in range(2, 17) for s in (1, 2)] == list(range(30))
    assert (h36m_meta.TRAIN_SUBJECTS, h36m_meta.TEST_SUBJECTS) == ([1, 5, 6, 7, 8], [9, 11])


# metadata.xml <index2id>, and the frame sizes (VideoPose3D's res_w, res_h)
PUBLISHED_CAMERA_IDS = ['54138969', '55011271', '58860488', '60457274']
PUBLISHED_RESOLUTION = {'54138969': (1000, 1002), '55011271': (1000, 1000), '58860488': (1000, 1000),
                        '60457274': (1000, 1002)}
# metadata.xml <w0>, the intrinsics at its end: f (2), c (2), k (3), p (2) per camera 1..4
PUBLISHED_INTRINSICS = [
    [1145.04940458804, 1143.78109572365, 512.541504956548, 515.4514869776, -0.207098910824901, 0.247775183068982,
     -0.00307515035078854, -0.00142447157470321, -0.000975698859470499],
    [1149.67569986785, 1147.59161666764, 508.848621645943, 508.064917088557, -0.194213629607385, 0.240408539138292,
     0.00681997559022603, -0.0027408943961907, -0.001619026613787],
    [1149.14071676148, 1148.7989685676, 519.815837182153, 501.402658888552, -0.208338188251856, 0.255488007488945,
     -0.00246049749891915, -0.000759999321030303, 0.00148438698385668],
    [1145.51133842318, 1144.77392807652, 514.968197319863, 501.882018537695, -0.198384093827848, 0.218323676298049,
     -0.00894780704152122, -0.00181336200488089, -0.000587205583421232],
]
# metadata.xml <w0>: camera centre T (mm) of (subject, camera)
PUBLISHED_T = {
    (1, 1): [1841.10702774543, 4955.28462344526, 1563.4453958977],
    (1, 2): [1761.27853428116, -5078.00659454077, 1606.2649598335],
    (1, 3): [-1846.7776610084, 5215.04650469073, 1491.97246576518],
    (1, 4): [-1794.78972871109, -3722.69891503676, 1574.89272604599],
    (5, 1): [2097.39151027444, 4880.94465755369, 1605.73247183927],
    (9, 2): [1990.9596621548, -5123.81055155997, 1568.80481574437],
    (11, 3): [-1609.81534310074, 5177.33597262935, 1537.89671533582],
    (11, 4): [-1590.73799072229, -3854.16900368964, 1578.01760714384],
}
# VideoPose3D: camera-to-world orientation quaternion (w, x, y, z), float32
PUBLISHED_ORIENTATION = {
    (1, 1): [0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088],
    (1, 2): [0.6157187819480896, -0.764836311340332, -0.14833825826644897, 0.11794740706682205],
    (1, 3): [0.14651472866535187, -0.14647851884365082, 0.7653023600578308, -0.6094175577163696],
    (1, 4): [0.5834008455276489, -0.7853162288665771, 0.14548823237419128, -0.14749594032764435],
    (5, 1): [0.1467377245426178, -0.162370964884758, -0.7551892995834351, 0.6178938746452332],
    (9, 2): [0.618784487247467, -0.7634735107421875, -0.14132238924503326, 0.11933968216180801],
    (11, 3): [0.14943228662014008, -0.15650227665901184, 0.7681233882904053, -0.6026304364204407],
    (11, 4): [0.5894251465797424, -0.7818877100944519, 0.13991211354732513, -0.14715361595153809],
}


def quaternion_matrix(q):
    """Rotation matrix of the unit quaternion (w, x, y, z)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def test_camera_ids_and_frame_sizes_are_the_published_ones():
    assert list(h36m_meta.CAMERA_IDS) == PUBLISHED_CAMERA_IDS
    assert dict(h36m_meta.CAMERA_RESOLUTION) == PUBLISHED_RESOLUTION


@pytest.mark.parametrize('subject', [1, 5, 6, 7, 8, 9, 11])
def test_intrinsics_are_the_published_ones_for_every_subject(subject):
    for index, (fx, fy, cx, cy, k1, k2, k3, p1, p2) in enumerate(PUBLISHED_INTRINSICS):
        cam = h36m_meta.CAMERAS[(subject, index + 1)]
        assert cam.name == PUBLISHED_CAMERA_IDS[index]
        assert list(cam.f) == [fx, fy] and list(cam.c) == [cx, cy]
        assert list(cam.k) == [k1, k2, k3] and list(cam.p) == [p1, p2]


@pytest.mark.parametrize('key', sorted(PUBLISHED_T))
def test_extrinsics_are_the_published_ones(key):
    cam = h36m_meta.CAMERAS[key]
    assert list(cam.T) == PUBLISHED_T[key]
    # R maps world to camera; VideoPose3D's quaternion maps camera to world (float32 precision)
    np.testing.assert_allclose(cam.rotation(), quaternion_matrix(PUBLISHED_ORIENTATION[key]).T, atol=2e-7)
    # the labels' camera entry keeps the same numbers
    entry = h36m_meta.camera_dict(*key)
    assert entry['T'].shape == (3, 1) and entry['T'][:, 0].tolist() == PUBLISHED_T[key]
    fx, fy, cx, cy = PUBLISHED_INTRINSICS[key[1] - 1][:4]
    assert (entry['fx'].item(), entry['fy'].item(), entry['cx'].item(), entry['cy'].item()) == (fx, fy, cx, cy)


# --------------------------------------------------------------------------------------------
# MPI-INF-3DHP

# mpii_get_joints('relevant'): joint_idx (1-based) into the 28 'all' joints, and joint_parents_o1 (1-based)
RELEVANT_JOINT_IDX = [8, 6, 15, 16, 17, 10, 11, 12, 24, 25, 26, 19, 20, 21, 5, 4, 7]
RELEVANT_PARENTS = [2, 16, 2, 3, 4, 2, 6, 7, 15, 9, 10, 15, 12, 13, 15, 15, 2]
ALL_28_NAMES = ['spine3', 'spine4', 'spine2', 'spine', 'pelvis', 'neck', 'head', 'head_top', 'left_clavicle',
                'left_shoulder', 'left_elbow', 'left_wrist', 'left_hand', 'right_clavicle', 'right_shoulder',
                'right_elbow', 'right_wrist', 'right_hand', 'left_hip', 'left_knee', 'left_ankle', 'left_foot',
                'left_toe', 'right_hip', 'right_knee', 'right_ankle', 'right_foot', 'right_toe']
# run_3dhp.py
MPI_LEFT, MPI_RIGHT = [5, 6, 7, 11, 12, 13], [2, 3, 4, 8, 9, 10]
# mpii_get_pck_auc_joint_groups.m (1-based)
PCK_GROUPS = {'Head': [1], 'Neck': [2], 'Shou': [3, 6], 'Elbow': [4, 7], 'Wrist': [5, 8], 'Hip': [9, 12],
              'Knee': [10, 13], 'Ankle': [11, 14]}


def test_3dhp_joint_table_parents_and_names_are_the_published_ones():
    assert list(mpi_meta.JOINTS_28_TO_17) == [i - 1 for i in RELEVANT_JOINT_IDX]
    # the pelvis (joint 15, 1-based) is its own parent there; the root's parent is -1 here
    assert list(mpi_meta.PARENTS) == [-1 if j == 14 else p - 1 for j, p in enumerate(RELEVANT_PARENTS)]
    assert mpi_meta.ROOT_JOINT == 14 and ALL_28_NAMES[RELEVANT_JOINT_IDX[14] - 1] == 'pelvis'
    assert list(mpi_meta.JOINT_NAMES) == [ALL_28_NAMES[i - 1] for i in RELEVANT_JOINT_IDX]


def test_3dhp_left_right_pairs_and_pck_groups_are_the_published_ones():
    skeleton = mpi_meta.SKELETON
    assert list(skeleton.left) == MPI_LEFT and list(skeleton.right) == MPI_RIGHT
    for left, right in zip(MPI_LEFT, MPI_RIGHT):
        assert ALL_28_NAMES[RELEVANT_JOINT_IDX[left] - 1].replace('left_', '') == \
            ALL_28_NAMES[RELEVANT_JOINT_IDX[right] - 1].replace('right_', '')
    assert mpi_meta.PCK_JOINT_GROUPS == {name: [j - 1 for j in joints] for name, joints in PCK_GROUPS.items()}
    assert mpi_meta.PCK_THRESHOLD_MM == 150.0
    assert mpi_meta.AUC_THRESHOLDS_MM.tolist() == [5.0 * i for i in range(31)]
    # the test set's README: valid frames per sequence, the weights of the scene averages
    assert mpi_meta.TEST_VALID_FRAMES == {1: 603, 2: 540, 3: 505, 4: 553, 5: 276, 6: 452}


def test_a_3dhp_flip_exchanges_every_left_right_pair():
    preparer = BatchPreparer('cpu', normalize=lambda x: x, skeleton=mpi_meta.SKELETON, crop_width=192,
                             flip_test=True)
    joints = torch.zeros(1, 1, 17, 3, dtype=torch.float64)
    keypoints = torch.arange(17 * 2, dtype=torch.float64).reshape(1, 17, 2) + 1.0
    _, _, keypoints_out, _ = preparer((torch.zeros(1, 4, 4, 3, dtype=torch.uint8), joints, keypoints, keypoints))
    mirrored = keypoints_out[0, 1]
    partner = list(range(17))
    for left, right in zip(MPI_LEFT, MPI_RIGHT):
        partner[left], partner[right] = right, left
    for j in range(17):
        assert mirrored[j].tolist() == [-keypoints[0, partner[j], 0].item(), keypoints[0, partner[j], 1].item()], j
