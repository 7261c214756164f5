"""Skeleton pictures for TensorBoard, drawn with OpenCV (no plotting library needed)."""
import cv2
import numpy as np

GT_COLOR = (60, 200, 60)        # BGR
PRED_COLOR = (40, 40, 230)
INPUT_COLOR = (230, 160, 40)
OUTLINE_COLOR = (0, 0, 0)
LEGEND_HEIGHT = 22
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_skeleton(canvas, points, color, parents, left, thickness=2, outline=0):
    """Draws a skeleton at (J, 2) pixel positions: a line from every joint to its parent
    (``parents``, -1 for the root); limbs of ``left`` joints in a lighter shade so the two sides
    can be told apart. ``outline`` > 0 puts a black border of that width around lines and
    joints, so they stand out on any image."""
    left_color = tuple(int(c * 0.6 + 255 * 0.4) for c in color)
    pts = np.round(np.asarray(points, dtype=np.float64)).astype(int)
    limbs = [(joint, parent) for joint, parent in enumerate(parents) if parent >= 0]
    if outline:
        for joint, parent in limbs:
            cv2.line(canvas, tuple(pts[parent]), tuple(pts[joint]), OUTLINE_COLOR, thickness + 2 * outline, cv2.LINE_AA)
    for joint, parent in limbs:
        c = left_color if joint in left else color
        cv2.line(canvas, tuple(pts[parent]), tuple(pts[joint]), c, thickness, cv2.LINE_AA)
    for p in pts:                   # each joint with its own ring, so crowded joints stay visible
        if outline:
            cv2.circle(canvas, tuple(p), thickness + 1 + outline, OUTLINE_COLOR, -1, cv2.LINE_AA)
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


def _legend(width, front_x, side_x, caption):
    """The strip above a row: what each panel shows, in the colours it is drawn in; ``caption``
    over the side view."""
    strip = np.full((LEGEND_HEIGHT, width, 3), 255, np.uint8)
    baseline = LEGEND_HEIGHT - 7
    for text, x, color in (('input, 2D', 4, INPUT_COLOR), ('prediction', front_x + 4, PRED_COLOR),
                           ('truth', front_x + 96, GT_COLOR), (caption, side_x + 4, OUTLINE_COLOR)):
        cv2.putText(strip, text, (x, baseline), _FONT, 0.45, color, 1, cv2.LINE_AA)
    return strip


def pose_comparison(crop_bgr, keypoints_crop, pred_3d, gt_3d, parents, left, caption='', extent_m=1.0):
    """One RGB picture: a legend strip (with ``caption``, say the frame's P1), then the input crop
    with its 2D keypoints, and front (x-y) and side (z-y) views of the predicted (red) and
    ground-truth (green) root-relative 3D poses.

    crop_bgr: (H, W, 3) uint8; keypoints_crop: (J, 2) crop pixels; pred_3d, gt_3d: (J, 3) metres;
    parents, left: the skeleton's parent of every joint (-1 for the root) and its left joints.
    """
    crop = np.ascontiguousarray(crop_bgr).copy()
    draw_skeleton(crop, keypoints_crop, INPUT_COLOR, parents, left, thickness=2, outline=1)
    size = crop.shape[0]
    poses = [(gt_3d, GT_COLOR), (pred_3d, PRED_COLOR)]
    front = _view(poses, [0, 1], size, extent_m, parents, left)
    side = _view(poses, [2, 1], size, extent_m, parents, left)
    row = np.concatenate([crop, front, side], axis=1)
    legend = _legend(row.shape[1], crop.shape[1], crop.shape[1] + front.shape[1], caption)
    picture = np.concatenate([legend, row], axis=0)
    return cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)
