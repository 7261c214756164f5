"""Human3.6M single-view dataset over the official label pickles (through the label cache)."""
import os

import numpy as np

from mvn.datasets import evaluation
from mvn.datasets.base import PoseDataset
from mvn.datasets.h36m_meta import CAMERA_IDS, CAMERA_RESOLUTION, SKELETON, image_relpath
from mvn.datasets.synthetic import generate_processed


class Human36MSingleViewDataset(PoseDataset):
    """Frames of a Human3.6M label pickle (``h36m_train.pkl``, ``h36m_validation.pkl``) with their
    crops; items, sharding and keywords as ``PoseDataset``. Evaluation: the official per-action
    protocol (``evaluation.ActionReport``)."""

    skeleton = SKELETON
    label_fields = {'subject': (), 'action': (), 'subaction': (), 'camera_id': (), 'image_id': ()}
    integer_label_fields = tuple(label_fields)
    make_synthetic = staticmethod(generate_processed)
    crop_cache_script = 'H36M-Toolbox/make_crop_cache.py'

    def image_path(self, j):
        """Frame ``j``'s file: <root>/s_SS_act_AA_subact_BB_ca_CC/s_SS_..._CC_IIIIII.jpg."""
        t = self.labels
        return os.path.join(self.root, image_relpath(t['subject'][j], t['action'][j], t['subaction'][j],
                                                     t['camera_id'][j], t['image_id'][j]))

    def evaluation_report(self, joints_gt, joints_pred):
        return evaluation.ActionReport(evaluation.evaluate_by_action(
            joints_pred, joints_gt, np.asarray(self.labels['action']), np.asarray(self.labels['subaction'])))

    def labels_crop_size(self):
        """(W, H) of the crops the labels' crop keypoints were made for, estimated from frame 0 (to a
        small fraction of a pixel when the frame size is right; the height within a pixel): the crop
        maps frame pixels p to (W-1) * (p - center) / (s-1) + ((W-1)/2, (H-1)/2), s = scale[0] * 200,
        and the frame pixels of the 2D keypoints follow from their normalised coordinates (x/w*2-1,
        y/w*2-h/w) and the camera's frame size. None when frame 0 does not tell (a degenerate pose)."""
        t = self.labels
        width, height = CAMERA_RESOLUTION[CAMERA_IDS[int(t['camera_id'][0])]]
        pixels = (np.asarray(t[self.keypoints_key][0], np.float64) + [1.0, height / width]) * width / 2
        crop = np.asarray(t[self.crop_keypoints_key][0], np.float64)
        unit = (pixels - np.asarray(t['center'][0], np.float64)) / (float(t['scale'][0][0]) * 200 - 1)
        joint = int(np.argmax(np.abs(unit[:, 0] + 0.5)))
        if not np.all(np.isfinite(unit)) or abs(unit[joint, 0] + 0.5) < 0.1:
            return None
        crop_width = crop[joint, 0] / (unit[joint, 0] + 0.5) + 1
        crop_height = np.median(2 * (crop[:, 1] - (crop_width - 1) * unit[:, 1])) + 1
        return float(crop_width), float(crop_height)
