"""MPI-INF-3DHP facts: the 17-joint skeleton, sequences, cameras, test-set settings, PCK groups.

Everything here is data: from the dataset's own files (``mpii_get_joints.m``,
``mpii_get_sequence_info``, ``mpii_get_pck_auc_joint_groups.m``, the test set's README) and the
settings of the official CA-PF 3DHP code (``ContextPose_mpi``, data prepared as in P-STMO), so the
toolbox, the dataset class, the evaluation and the synthetic generator agree on it.

Units: millimetres for 3D annotations, pixels for 2D ones, as in the dataset's files.
"""
from typing import NamedTuple

import numpy as np

from mvn.datasets.skeleton import Skeleton

# The 17 joints ('relevant' set of mpii_get_joints: Human3.6M's joints in the CPM order).
JOINT_NAMES = ['head_top', 'neck', 'right_shoulder', 'right_elbow', 'right_wrist', 'left_shoulder',
               'left_elbow', 'left_wrist', 'right_hip', 'right_knee', 'right_ankle', 'left_hip', 'left_knee',
               'left_ankle', 'pelvis', 'spine', 'head']
NUM_JOINTS = 17
ROOT_JOINT = 14                                     # pelvis
JOINTS_LEFT = [5, 6, 7, 11, 12, 13]
JOINTS_RIGHT = [2, 3, 4, 8, 9, 10]
# First-order parents (joint_parents_o1 of the 'relevant' set, 0-based; the root's is -1).
PARENTS = [1, 15, 1, 2, 3, 1, 5, 6, 14, 8, 9, 14, 11, 12, -1, 14, 1]
SKELETON = Skeleton(JOINT_NAMES, ROOT_JOINT, JOINTS_LEFT, JOINTS_RIGHT, PARENTS)
# The 17 joints as indices into the 28 joints of the annotation files (annot2, annot3, univ_annot3).
JOINTS_28_TO_17 = [7, 5, 14, 15, 16, 9, 10, 11, 23, 24, 25, 18, 19, 20, 4, 3, 6]
NUM_ANNOTATED_JOINTS = 28

# PCK / AUC joint groups of mpii_get_pck_auc_joint_groups.m (0-based). Pelvis, spine and head
# belong to none, so PCK and AUC are over these 14 joints.
PCK_JOINT_GROUPS = {'Head': [0], 'Neck': [1], 'Shou': [2, 5], 'Elbow': [3, 6], 'Wrist': [4, 7],
                    'Hip': [8, 11], 'Knee': [9, 12], 'Ankle': [10, 13]}
PCK_THRESHOLD_MM = 150.0                            # a joint counts when its error is < 150 mm
AUC_THRESHOLDS_MM = np.arange(0.0, 151.0, 5.0)      # 0, 5, ..., 150: 31 thresholds

# Training set: subjects S1..S8, sequences Seq1, Seq2; frames to use and the video frame rate
# (mpii_get_sequence_info: annotations may run past the last video frame).
TRAIN_SUBJECTS = list(range(1, 9))
TRAIN_SEQUENCES = [1, 2]
SEQUENCE_INFO = {  # (subject, sequence) -> (frames, fps)
    (1, 1): (6416, 25), (1, 2): (12430, 50), (2, 1): (6502, 25), (2, 2): (6081, 25),
    (3, 1): (12488, 50), (3, 2): (12283, 50), (4, 1): (6171, 25), (4, 2): (6675, 25),
    (5, 1): (12820, 50), (5, 2): (12312, 50), (6, 1): (6188, 25), (6, 2): (6145, 25),
    (7, 1): (6239, 25), (7, 2): (6320, 25), (8, 1): (6468, 25), (8, 2): (6054, 25),
}
# The 8 of the 14 studio cameras used for training (VNect's set, the official CA-PF/P-STMO choice).
TRAIN_CAMERAS = [0, 1, 2, 4, 5, 6, 7, 8]
NUM_STUDIO_CAMERAS = 14

# Test set TS1..TS6: frame size (width, height) used to normalise the 2D input, the camera whose
# intrinsics place the crop box (an index into INTRINSICS), and scene.
TEST_SEQUENCES = [1, 2, 3, 4, 5, 6]
TEST_FRAME_SIZE = {1: (2048, 2048), 2: (2048, 2048), 3: (2048, 2048), 4: (2048, 2048),
                   5: (1920, 1080), 6: (1920, 1080)}
TEST_CAMERA = {1: 8, 2: 8, 3: 8, 4: 8, 5: 14, 6: 14}
TRAIN_FRAME_SIZE = (2048, 2048)
# Valid frames per test sequence (the test set's README: the weights of its scene averages).
TEST_VALID_FRAMES = {1: 603, 2: 540, 3: 505, 4: 553, 5: 276, 6: 452}
SCENES = {'GS': [1, 2], 'noGS': [3, 4], 'Outdoor': [5, 6]}    # green screen, studio without, outdoor
ACTIVITY_NAMES = {1: 'Standing/Walking', 2: 'Exercising', 3: 'Sitting', 4: 'Reaching/Crouching',
                  5: 'On The Floor', 6: 'Sports', 7: 'Miscellaneous'}


class Intrinsics(NamedTuple):
    """Pinhole intrinsics in pixels (distortion is not used for the crop box)."""
    fx: float
    fy: float
    cx: float
    cy: float


# Intrinsics the official preparation uses for the crop boxes: the 14 studio cameras (index =
# camera id, as in camera.calibration) and, at index 14, the outdoor camera of TS5/TS6.
INTRINSICS = [
    Intrinsics(1497.693, 1497.103, 1024.704, 1051.394), Intrinsics(1495.217, 1495.52, 1030.519, 1052.626),
    Intrinsics(1495.587, 1497.828, 983.8873, 987.5902), Intrinsics(1495.886, 1496.033, 1029.06, 1041.409),
    Intrinsics(1490.952, 1491.108, 987.6075, 1019.069), Intrinsics(1500.414, 1499.971, 1012.331, 998.5009),
    Intrinsics(1498.471, 1498.8, 999.7319, 1010.251), Intrinsics(1498.831, 1499.674, 987.2716, 976.8773),
    Intrinsics(1500.172, 1500.837, 1017.387, 1043.032), Intrinsics(1501.554, 1501.9, 1010.423, 1037.096),
    Intrinsics(1498.423, 1498.585, 1041.614, 997.0433), Intrinsics(1495.779, 1493.703, 1009.802, 999.9984),
    Intrinsics(1501.326, 1501.491, 1000.56, 1014.975), Intrinsics(1496.961, 1497.378, 1005.702, 1004.214),
    Intrinsics(1683.98345952, 1672.59370772, 939.85754016, 560.140743168),
]
OUTDOOR_CAMERA = 14

# The crop box (same convention as Human3.6M): the pelvis of the universal-skeleton pose
# (univ_annot3, mm, camera frame) shifted by (-1000, -900) and (+1000, +1100) mm at its own depth,
# projected with INTRINSICS (no distortion); center = box middle, scale = box size / 200; the
# 192x256 crop is then fixed by the box width alone (mvn.utils.img.crop_transform).
# The official preparation (data_to_npz_3dhp.py) placed the training crop KEYPOINTS with the
# intrinsics of position i in TRAIN_CAMERAS rather than of camera TRAIN_CAMERAS[i] (so cameras
# 4..8 used those of cameras 3..7), while it cut the crop IMAGES with the right camera's: the
# keypoints of those cameras sit up to ~10 px off their crops. This toolbox uses the right
# camera for both (``official_training_crop_camera`` gives the official choice).
CROP_SIZE = (192, 256)

# Ground truth: univ_annot3 ("scaled to the height of the universal skeleton used by Human3.6M")
# is both the training target and the test reference, and its pelvis places the crop box;
# annot3 is the metric pose that projects onto annot2. The 2D input is annot2 (ground truth).


def official_training_crop_camera(camera):
    """The camera whose intrinsics the official data_to_npz_3dhp.py used for the crop keypoints
    of training camera ``camera`` (its position in TRAIN_CAMERAS)."""
    return TRAIN_CAMERAS.index(camera)


def train_sequence_dirname(subject, sequence, camera):
    """Crop folder of a training video, as the official preparation names it (camera id 0-based)."""
    return 's_%02d_seq_%02d_ca_%02d' % (subject, sequence, camera)


def train_image_relpath(subject, sequence, camera, frame):
    """Crop of training frame ``frame`` (1-based) relative to the image root."""
    folder = train_sequence_dirname(subject, sequence, camera)
    return '%s/%s_%06d.jpg' % (folder, folder, frame)


def test_image_relpath(test_sequence, frame):
    """Crop of test frame ``frame`` (1-based) of TS<test_sequence> relative to the image root."""
    name = 'TS%d' % test_sequence
    return '%s/%s_%06d.jpg' % (name, name, frame)


def camera_dict(camera):
    """The labels' ``camera`` entry for INTRINSICS[camera] (arrays shaped as in the H36M labels)."""
    k = INTRINSICS[camera]
    return {'fx': np.array([k.fx]), 'fy': np.array([k.fy]), 'cx': np.array([k.cx]), 'cy': np.array([k.cy])}
