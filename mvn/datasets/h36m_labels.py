"""How one label entry of ``h36m_train.pkl`` / ``h36m_validation.pkl`` is made.

Shared by the toolbox (from raw Human3.6M) and the synthetic generator, so both write the schema
and the numbers of the official ``generate_labels_h36m.py``.
"""
import numpy as np

from mvn.utils.img import crop_transform, transform_points

CROP_SIZE = (192, 256)      # (width, height) of the network input


def normalize_screen_coordinates(points, w, h):
    """Pixels -> [-1, 1] across the width, aspect ratio kept: x/w*2-1, y/w*2-h/w."""
    return points / w * 2 - [1, h / w]


def pinhole_project(points_cam, fx, fy, cx, cy):
    """(N, 3) camera-frame points -> (N, 2) pixels with the intrinsics only (no distortion)."""
    uv = points_cam[:, :2] / points_cam[:, 2:3]
    uv[:, 0] *= fx
    uv[:, 1] *= fy
    uv[:, 0] += cx
    uv[:, 1] += cy
    return uv


def person_box(joints_3d_mm, camera, root_joint=0):
    """[x0, y0, x1, y1] pixels: the root shifted by (-1000, -900) and (+1000, +1100) mm at its own
    depth, projected with the pinhole intrinsics."""
    root = joints_3d_mm[root_joint]
    top_left = root.copy()
    top_left[0] -= 1000.0
    top_left[1] -= 900.0
    bottom_right = root.copy()
    bottom_right[0] += 1000.0
    bottom_right[1] += 1100.0
    corners = [pinhole_project(p.reshape(1, 3), camera['fx'], camera['fy'], camera['cx'], camera['cy']).flatten()
               for p in (top_left, bottom_right)]
    return np.array([corners[0][0], corners[0][1], corners[1][0], corners[1][1]])


def make_label(*, subject, action, subaction, camera_index, image_id, video_id, nposes, camera,
               joints_3d_mm, joints_2d_gt_px, joints_2d_cpn_px, image_width, image_height, image_relpath):
    """One label dict. joints_3d_mm (17, 3) camera frame; 2D inputs (17, 2) frame pixels.

    Stored: ``joints_3d`` in metres, ``joints_2d_*`` normalised screen coordinates,
    ``joints_2d_*_crop`` float32 pixels in the 192x256 crop, box / center / scale in pixels.
    """
    box = person_box(joints_3d_mm, camera)
    center = (0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3]))
    scale = ((box[2] - box[0]) / 200.0, (box[3] - box[1]) / 200.0)
    to_crop = crop_transform(center, scale, CROP_SIZE)
    return {
        'image': image_relpath,
        'joints_2d_gt': normalize_screen_coordinates(joints_2d_gt_px[..., :2], w=image_width, h=image_height),
        'joints_2d_cpn': normalize_screen_coordinates(joints_2d_cpn_px[..., :2], w=image_width, h=image_height),
        'joints_3d': joints_3d_mm / 1000.0,
        'joints_vis': np.ones((17, 3)),
        'video_id': video_id,
        'image_id': image_id,
        'subject': subject,
        'action': action,
        'subaction': subaction,
        'camera_id': camera_index - 1,
        'source': 'h36m',
        'camera': camera,
        'nposes': nposes,
        'center': center,
        'scale': scale,
        'box': box,
        'joints_2d_gt_crop': transform_points(joints_2d_gt_px[..., :2], to_crop).astype(np.float32),
        'joints_2d_cpn_crop': transform_points(joints_2d_cpn_px[..., :2], to_crop).astype(np.float32),
    }
