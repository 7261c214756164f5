"""Skeleton pictures for TensorBoard, drawn with OpenCV (no plotting library needed)."""
import cv2
import numpy as np

GT_COLOR = (60, 200, 60)        # BGR
PRED_COLOR = (40, 40, 230)
INPUT_COLOR = (230, 160, 40)


def draw_skeleton(canvas, points, color, parents, left, thickness=2):
    """Draws a skeleton at (J, 2) pixel positions: a line from every joint to its parent
    (``parents``, -1 for the root); limbs of ``left`` joints in a lighter shade so the two sides
    can be told apart."""
    left_color = tuple(int(c * 0.6 + 255 * 0.4) for c in color)
    pts = np.round(np.asarray(points, dtype=np.float64)).astype(int)
    for joint, parent in enumerate(parents):
        if parent < 0:
            continue
        c = left_color if joint in left else color
        cv2.line(canvas, tuple(pts[parent]), tuple(pts[joint]), c, thickness, cv2.LINE_AA)
    for p in pts:
        cv2.circle(canvas, tuple(p), thickness + 1, color, -1, cv2.LINE_AA)
    return canvas


def _view(poses, axes, size, extent_m, parents, left):
    """Orthographic view of root-relative poses (metres) onto ``axes`` of a size x size panel."""
    panel = np.full((size, size, 3), 255, np.uint8)
    scale = size / (2 * extent_m)
    for pose, color in poses:
        xy = np.asarray(pose, dtype=np.float64)[:, axes] * scale + size / 2
        draw_skeleton(panel, xy, color, parents, left)
    return panel


def pose_comparison(crop_bgr, keypoints_crop, pred_3d, gt_3d, parents, left, extent_m=1.0):
    """One RGB picture: the input crop with its 2D keypoints, then front (x-y) and side (z-y)
    views of the predicted (red) and ground-truth (green) root-relative 3D poses.

    crop_bgr: (H, W, 3) uint8; keypoints_crop: (J, 2) crop pixels; pred_3d, gt_3d: (J, 3) metres;
    parents, left: the skeleton's parent of every joint (-1 for the root) and its left joints.
    """
    crop = np.ascontiguousarray(crop_bgr).copy()
    draw_skeleton(crop, keypoints_crop, INPUT_COLOR, parents, left, thickness=1)
    size = crop.shape[0]
    poses = [(gt_3d, GT_COLOR), (pred_3d, PRED_COLOR)]
    front = _view(poses, [0, 1], size, extent_m, parents, left)
    side = _view(poses, [2, 1], size, extent_m, parents, left)
    return cv2.cvtColor(np.concatenate([crop, front, side], axis=1), cv2.COLOR_BGR2RGB)
