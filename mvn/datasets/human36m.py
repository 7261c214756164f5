"""Human3.6M single-view dataset over the official label pickles (through the label cache)."""
import ctypes
import functools
import os

import cv2
import numpy as np
from torch.utils.data import Dataset

from mvn.datasets import evaluation
from mvn.datasets.h36m_meta import SUBJECTS, action_trial_index, image_relpath
from mvn.datasets.label_cache import load_labels
from mvn.utils.img import crop_image


class DataError(ValueError):
    """An image or label that cannot be read; the message names the file."""


@functools.cache
def _keep_image_buffers():
    """Decoding a 1000x1002 frame allocates and frees a ~3 MB buffer. With glibc's defaults such
    buffers go back to the kernel on every free, so each frame pays ~750 fresh page faults (this
    made item reads 2.3x slower). Keep up to 32 MiB of freed heap instead. Once per process: a
    forked loader worker inherits the setting with the cache, a spawned one sets it again."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):     # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 16 << 20)
    mallopt(m_trim_threshold, 32 << 20)


def read_image(path):
    """BGR uint8 (h, w, 3), EXIF orientation ignored, as the official loader reads frames."""
    _keep_image_buffers()
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError('missing image: %s' % path) from None
    except OSError as e:
        raise DataError('cannot read image %s: %s' % (path, e.strerror)) from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    # OpenCV decodes a truncated JPEG with a grey bottom and only a warning; refuse it instead.
    truncated = data.size >= 2 and data[0] == 0xFF and data[1] == 0xD8 and b'\xff\xd9' not in data[-64:].tobytes()
    if image is None or truncated:
        raise DataError('corrupt or unreadable image: %s' % path)
    return image


def shard_range(n, rank, world_size):
    """Contiguous evaluation shards: N//world frames per rank, the last rank the rest.
    Returns (start, end, sizes of all shards)."""
    per_rank = n // world_size
    sizes = [per_rank] * (world_size - 1) + [n - per_rank * (world_size - 1)]
    start = per_rank * rank
    return start, start + sizes[rank], sizes


class Human36MSingleViewDataset(Dataset):
    """Frames of ``labels_path`` with their crops.

    ``dataset[i]`` = (crop uint8 (H, W, 3) BGR, joints_3d (1, 17, 3) metres, joints_2d_cpn (17, 2)
    normalised screen coordinates, joints_2d_cpn_crop (17, 2) crop pixels), dtypes as in the labels.
    With ``rank`` and ``world_size`` the dataset holds only that rank's contiguous shard;
    ``action``, ``subaction``, ``labels_action_idx`` and ``labels_subject_idx`` always describe the
    whole file, for the evaluation.
    The remaining keywords of the official class are accepted and have no effect here.
    """

    def __init__(self, root, labels_path, image_shape=(192, 256), train=False, test=False, crop=True,
                 rank=None, world_size=None, pred_results_path=None, retain_every_n_frames_in_test=1,
                 with_damaged_actions=True, cuboid_size=2000.0, scale_bbox=1.0, norm_image=True,
                 kind='human36m', undistort_images=False, ignore_cameras=(), erase=False, data_format='',
                 frame=1, progress=True):
        if frame != 1:
            raise ValueError('frame=%r: CA-PF is a single-frame model' % frame)
        self.root = root
        self.labels_path = labels_path
        self.image_shape = tuple(image_shape)
        self.crop = crop
        self.labels = load_labels(labels_path, progress=progress)
        n = len(self.labels)
        self.action = np.asarray(self.labels['action'])
        self.subaction = np.asarray(self.labels['subaction'])
        self.labels_action_idx = action_trial_index(self.action, self.subaction)
        subjects = np.asarray(self.labels['subject'])
        subject_to_index = np.full(max(int(subjects.max()), max(SUBJECTS)) + 1, -1)
        subject_to_index[SUBJECTS] = np.arange(len(SUBJECTS))
        self.labels_subject_idx = subject_to_index[subjects]     # index into SUBJECTS, -1 if unknown
        if rank is not None and world_size is not None:
            self.start, self.end, self.dist_size = shard_range(n, rank, world_size)
        else:
            self.start, self.end, self.dist_size = 0, n, None

    def __len__(self):
        return self.end - self.start

    def image_path(self, index):
        """Absolute frame path of item ``index`` (within this shard)."""
        j = self.start + index
        t = self.labels
        return os.path.join(self.root, image_relpath(t['subject'][j], t['action'][j], t['subaction'][j],
                                                     t['camera_id'][j], t['image_id'][j]))

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        j = self.start + index
        t = self.labels
        image = read_image(self.image_path(index))
        if self.crop:
            image = crop_image(image, t['center'][j], t['scale'][j], self.image_shape)
        return (image, np.array(t['joints_3d'][j])[None], np.array(t['joints_2d_cpn'][j]),
                np.array(t['joints_2d_cpn_crop'][j]))

    def evaluate(self, keypoints_gt, keypoints_3d_predicted):
        """Per-action errors of predictions for the whole file (all shards, in file order)."""
        if len(keypoints_gt) != len(self.action):
            raise ValueError('%d poses to evaluate but %s has %d frames'
                             % (len(keypoints_gt), self.labels_path, len(self.action)))
        return evaluation.evaluate_by_action(keypoints_3d_predicted, keypoints_gt, self.action, self.subaction)
