"""What a dataset kind provides, and what every kind shares.

A dataset kind is one file in ``mvn/datasets/`` holding a ``PoseDataset`` subclass, plus one
entry in ``mvn.registry.DATASETS`` (README, "Adding a dataset"). The subclass sets

    skeleton                the joint layout (``mvn.datasets.skeleton.Skeleton``)
    label_fields            {name: per-frame shape} it reads beyond the shared fields below
    integer_label_fields    which of those are integers (stored as int32)

and writes ``image_path(j)`` (the image file of frame j of the label file) and
``evaluation_report(joints_gt, joints_pred)`` (its protocol over the whole file, an
``EvaluationReport``). It may also provide ``labels_crop_size()`` (the crop size its labels'
crop keypoints were made for, checked against ``model.image_shape``), ``make_synthetic`` (the
generator behind ``dataset.synthetic``), another ``crop(j)`` with its ``crop_source()`` (what the
log says crops come from), and ``crop_cache_script`` (the toolbox script that builds its crop
cache, for messages).

Shared: a label file is a pickled list of per-frame dicts (read through the label cache) with
``joints_3d`` (J, 3) metres in the camera frame, ``joints_2d_<source>`` (J, 2) normalised screen
coordinates and ``joints_2d_<source>_crop`` (J, 2) pixels in the crop, for the 2D source of
``dataset.keypoints_2d``, and ``center``, ``scale`` (the crop box, see ``mvn.utils.img``).
"""
import logging
import re

import numpy as np
from torch.utils.data import Dataset

from mvn.datasets import crop_cache as crops
from mvn.datasets.images import DataError, decoding_description, read_crop
from mvn.datasets.label_cache import load_labels
from mvn.utils.cfg import ConfigError

logger = logging.getLogger(__name__)


def shard_range(n, rank, world_size):
    """Contiguous evaluation shards: N//world frames per rank, the last rank the rest.
    Returns (start, end, sizes of all shards)."""
    per_rank = n // world_size
    sizes = [per_rank] * (world_size - 1) + [n - per_rank * (world_size - 1)]
    start = per_rank * rank
    return start, start + sizes[rank], sizes


def keypoint_keys(source):
    """Label keys of a 2D keypoint source: 'cpn' -> ('joints_2d_cpn', 'joints_2d_cpn_crop'); a
    full key such as 'joints_2d_gt' names its source too."""
    name = source[len('joints_2d_'):] if source.startswith('joints_2d_') else source
    if not re.fullmatch(r'\w+', name or ''):
        raise ConfigError("config key 'dataset.keypoints_2d': %r is not a 2D keypoint source such as 'cpn' or 'gt'" % source)
    return 'joints_2d_' + name, 'joints_2d_%s_crop' % name


class EveryNthFrame:
    """Frames 0, n, 2n, ... of a label table, read like the table (``t['joints_3d']`` is an
    (ceil(N / n), 17, 3) array): strided views of its columns, no copies. The official
    ``retain_every_n_frames_in_test``: its test-set indices ``[::n]``, kept before sharding."""

    def __init__(self, table, every_n):
        self.table = table
        self.every_n = every_n

    def __getitem__(self, name):
        return self.table[name][::self.every_n]

    def __len__(self):
        return -(-len(self.table) // self.every_n)


class PoseDataset(Dataset):
    """Frames of ``labels_path`` with their crops.

    ``dataset[i]`` = (crop uint8 (H, W, 3) BGR, joints_3d (1, J, 3) metres, keypoints_2d (J, 2)
    normalised screen coordinates, keypoints_2d_crop (J, 2) crop pixels), dtypes as in the
    labels; the 2D keypoints come from ``keypoints_2d`` (see ``keypoint_keys``). With ``rank``
    and ``world_size`` the dataset holds only that rank's contiguous shard of the file, while
    ``labels``, ``frame(j)`` and ``evaluate`` always cover the whole file. With
    ``retain_every_n_frames`` n > 1 the file is thinned first: the dataset is frames 0, n, 2n, ...
    of the file (``labels``, ``file_size``, shards and evaluation all of those frames only).
    With ``crop_cache`` (a cache file of this label file, see ``mvn.datasets.crop_cache``) crops
    are read from it; one made for other labels or crop settings is a DataError.
    """

    skeleton = None
    label_fields = {}
    integer_label_fields = ()
    make_synthetic = None       # f(root, train_labels_path, val_labels_path, *, progress, **dataset.synthetic)
    crop_cache_script = None    # 'Toolbox/make_crop_cache.py'; None: 'python -m mvn.datasets.crop_cache --kind K'

    def __init__(self, root, labels_path, image_shape=(192, 256), keypoints_2d='cpn', rank=None, world_size=None,
                 progress=True, retain_every_n_frames=1, crop_cache=None):
        self.root = root
        self.labels_path = labels_path
        self.image_shape = tuple(image_shape)
        self.keypoints_2d = keypoints_2d
        self.keypoints_key, self.crop_keypoints_key = keypoint_keys(keypoints_2d)
        self.labels = load_labels(labels_path, self.fields(keypoints_2d), self.integer_label_fields, progress=progress)
        if not (isinstance(retain_every_n_frames, int) and retain_every_n_frames >= 1):
            raise ConfigError('retain_every_n_frames must be a positive integer, got %r' % (retain_every_n_frames,))
        self.retain_every_n_frames = retain_every_n_frames
        self.crop_cache = crops.open_for_dataset(crop_cache, self) if crop_cache else None
        if progress:
            logger.info('crops of %s from %s' % (labels_path, 'the crop cache %s' % crop_cache if self.crop_cache
                                                 else self.crop_source()))
        if retain_every_n_frames > 1:
            self.labels = EveryNthFrame(self.labels, retain_every_n_frames)
        self.file_size = len(self.labels)
        if rank is not None and world_size is not None:
            self.start, self.end, self.dist_size = shard_range(self.file_size, rank, world_size)
        else:
            self.start, self.end, self.dist_size = 0, self.file_size, None
        self._check_crop_size()

    @classmethod
    def fields(cls, keypoints_2d='cpn'):
        """{label key: per-frame shape} the dataset reads with 2D keypoints from ``keypoints_2d``."""
        joints = cls.skeleton.num_joints
        keypoints_key, crop_keypoints_key = keypoint_keys(keypoints_2d)
        return {'joints_3d': (joints, 3), keypoints_key: (joints, 2), crop_keypoints_key: (joints, 2),
                'center': (2,), 'scale': (2,), **cls.label_fields}

    def _check_crop_size(self):
        made_for = self.labels_crop_size()
        if made_for is not None and np.abs(np.subtract(made_for, self.image_shape)).max() > 2:
            raise DataError('%s: its crop keypoints (%s) were made for %dx%d crops, but model.image_shape is %s'
                            % (self.labels_path, self.crop_keypoints_key, round(made_for[0]), round(made_for[1]),
                               list(self.image_shape)))

    def labels_crop_size(self):
        """(width, height) the labels' crop keypoints were made for (an estimate, checked to within
        2 pixels against ``image_shape``), or None if unknown."""
        return None

    def __len__(self):
        return self.end - self.start

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.frame(self.start + index)

    def frame(self, j):
        """Frame ``j`` of the label file (of any shard), as an item."""
        t = self.labels
        crop = (self.crop(j) if self.crop_cache is None
                else self.crop_cache.read(j * self.retain_every_n_frames))     # its index in the whole file
        return (crop, np.array(t['joints_3d'][j])[None], np.array(t[self.keypoints_key][j]),
                np.array(t[self.crop_keypoints_key][j]))

    def crop_source(self):
        """Where ``crop`` takes its crops from, for the log."""
        return 'the frames, %s' % decoding_description()

    def crop(self, j):
        """The network input of frame ``j``: its box (center, scale) warped to ``image_shape``."""
        return read_crop(self.image_path(j), self.labels['center'][j], self.labels['scale'][j], self.image_shape)

    def image_path(self, j):
        raise NotImplementedError

    def crop_cache_command(self, out, force=False):
        """The command that builds this label file's crop cache as ``out``."""
        from mvn import registry
        script = self.crop_cache_script or '-m mvn.datasets.crop_cache --kind %s' % next(
            (name for name, entry in registry.DATASETS.items() if registry.resolve(entry) is type(self)), '?')
        return crops.rebuild_command(script, self.labels_path, self.root, out, self.image_shape, force=force)

    def evaluate(self, joints_gt, joints_pred):
        """The protocol's EvaluationReport of predictions for the whole file (all shards, in
        file order): (N, 1, J, 3) root-relative metres each."""
        if len(joints_gt) != self.file_size:
            raise ValueError('%d poses to evaluate but %s has %d frames' % (len(joints_gt), self.labels_path,
                                                                             self.file_size))
        return self.evaluation_report(joints_gt, joints_pred)

    def evaluation_report(self, joints_gt, joints_pred):
        raise NotImplementedError
