"""A toy dataset kind and a toy backbone, each written as the README's "Adding a dataset" and
"Adding a backbone" say: one file (this one holds both) plus one registry line each (the test
adds the lines with monkeypatch, as an edit of mvn/registry.py would)."""
import os
import pickle

import cv2
import numpy as np
import torch
from torch import nn

from mvn.datasets.base import PoseDataset
from mvn.datasets.report import EvaluationReport
from mvn.datasets.skeleton import Skeleton
from mvn.models.backbones import FeatureBackbone
from mvn.utils.img import crop_transform, transform_points

FRAME_SIZE = 160        # square frames, pixels


def make_toy_data(root, train_labels_path, val_labels_path, *, frames=8, sequences=2, seed=0, progress=True):
    """Frames of a four-joint figure and its label pickles (``frames`` per sequence and split)."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    frame_id = 0
    for path in (train_labels_path, val_labels_path):
        labels = []
        for sequence in range(sequences):
            for i in range(frames):
                joints = np.array([[-0.3, -0.2, 3.0], [0, 0, 3.0], [0.3, -0.2, 3.0], [0, -0.5, 3.0]])
                joints = joints + rng.normal(0, 0.05, size=joints.shape) + [0.1 * sequence, 0, 0]
                pixels = joints[:, :2] / joints[:, 2:] * 200 + FRAME_SIZE / 2
                image = np.full((FRAME_SIZE, FRAME_SIZE, 3), 40 * sequence, np.uint8)
                for x, y in pixels:
                    cv2.circle(image, (int(x), int(y)), 4, (255, 255, 255), -1)
                frame_id += 1
                cv2.imwrite(os.path.join(root, 'frame_%05d.png' % frame_id), image)
                center, scale = (FRAME_SIZE / 2, FRAME_SIZE / 2), (0.8, 1.0)
                labels.append({'frame_id': frame_id, 'sequence': sequence, 'joints_3d': joints,
                               'joints_2d_cpn': pixels / FRAME_SIZE * 2 - 1,
                               'joints_2d_cpn_crop': transform_points(pixels, crop_transform(center, scale)),
                               'center': center, 'scale': scale})
        with open(path, 'wb') as f:
            pickle.dump(labels, f)


class SequenceReport(EvaluationReport):
    """MPJPE per sequence and over all frames; the best checkpoint has the lowest overall."""

    group_name = 'sequences'
    score_name = 'mean P1'
    score_unit = 'mm'
    epoch_columns = ('p1_mm',)

    def __init__(self, joints_gt, joints_pred, sequence):
        errors = 1000 * np.linalg.norm(np.asarray(joints_pred, np.float64) - np.asarray(joints_gt, np.float64), axis=-1)
        per_frame = errors.reshape(len(errors), -1).mean(axis=1)
        rows = {'seq%d' % s: {'p1_mm': float(per_frame[sequence == s].mean()), 'frames': int((sequence == s).sum())}
                for s in np.unique(sequence)}
        super().__init__(rows, {'p1_mm': float(per_frame.mean())}, score=round(float(per_frame.mean()), 1))

    def table_lines(self):
        return ['%s: p1=%.2f' % (name, row['p1_mm']) for name, row in self.rows.items()] + \
            ['mean p1: %.1f' % self.summary['p1_mm']]


class ToyDataset(PoseDataset):
    skeleton = Skeleton(('left_hand', 'pelvis', 'right_hand', 'head'), root=1, left=(0,), right=(2,),
                        parents=(1, -1, 1, 1))
    label_fields = {'sequence': (), 'frame_id': ()}
    integer_label_fields = ('sequence', 'frame_id')
    make_synthetic = staticmethod(make_toy_data)

    def image_path(self, j):
        return os.path.join(self.root, 'frame_%05d.png' % self.labels['frame_id'][j])

    def evaluation_report(self, joints_gt, joints_pred):
        return SequenceReport(joints_gt, joints_pred, np.asarray(self.labels['sequence']))


class ToyNet(FeatureBackbone):
    """Four maps of ``width`` channels at strides 4, 8, 16, 32."""

    def __init__(self, width=4):
        super().__init__()
        self.width = width
        self.stem = nn.Conv2d(3, width, 3, stride=4, padding=1)
        self.downs = nn.ModuleList([nn.Conv2d(width, width, 3, stride=2, padding=1) for _ in range(3)])

    @property
    def feature_channels(self):
        return [self.width] * 4

    @staticmethod
    def normalize_input(images):
        return images * 2 - 1

    def forward(self, images):
        maps = [torch.relu(self.stem(images))]
        for down in self.downs:
            maps.append(torch.relu(down(maps[-1])))
        return maps
