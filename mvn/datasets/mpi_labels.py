"""How one MPI-INF-3DHP label entry is made (toolbox, npz reader and synthetic data share it).

The schema is the Human3.6M one where a key applies (``image``, ``joints_2d_gt``,
``joints_2d_gt_crop``, ``joints_3d``, ``joints_vis``, ``video_id``, ``image_id``, ``subject``,
``camera_id``, ``source``, ``camera``, ``nposes``, ``center``, ``scale``, ``box``), plus:

* ``sequence``: Seq 1..2 of a training subject; for the test set the TS number 1..6 (``subject``
  is then 0);
* ``valid``: 1 when the frame counts in the evaluation (the test set's ``valid_frame``; 1 for
  training frames);
* ``activity``: the test set's activity annotation 1..7 (0 for training frames).

``image`` is a 192x256 crop already (the official preparation stores crops, not the 2048x2048
frames); ``center``, ``scale`` and ``box`` describe where it was cut from the frame.
``camera_id`` indexes ``mpi_meta.INTRINSICS`` (studio camera id; 8 for TS1-TS4, 14 for TS5-TS6).
"""
import numpy as np

from mvn.datasets import mpi_meta as meta
from mvn.datasets.h36m_labels import normalize_screen_coordinates, person_box
from mvn.utils.img import crop_transform, transform_points


def crop_box(joints_3d_univ_mm, camera_id):
    """(center, scale, box) of the crop, from the universal-skeleton pose's pelvis (mpi_meta)."""
    box = person_box(joints_3d_univ_mm, meta.camera_dict(camera_id), root_joint=meta.ROOT_JOINT)
    center = (0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3]))
    scale = ((box[2] - box[0]) / 200.0, (box[3] - box[1]) / 200.0)
    return center, scale, box


def make_label(*, image_relpath, joints_2d_px, joints_3d_univ_mm, frame_size, subject, sequence, camera_id,
               image_id, video_id, nposes, valid=1, activity=0, crop_keypoints_camera=None):
    """One label dict. joints_2d_px (17, 2) frame pixels (annot2); joints_3d_univ_mm (17, 3)
    camera frame (univ_annot3); frame_size (w, h) normalises the 2D input.

    ``crop_keypoints_camera``: the camera whose intrinsics place the crop keypoints' box
    (default ``camera_id``, the one the crop image is cut with; see
    ``mpi_meta.official_training_crop_camera`` for the official preparation's choice).
    Stored: ``joints_3d`` in metres, ``joints_2d_gt`` normalised screen coordinates,
    ``joints_2d_gt_crop`` float32 crop pixels, box / center / scale in frame pixels (of the crop
    image's box).
    """
    center, scale, box = crop_box(joints_3d_univ_mm, camera_id)
    keypoint_center, keypoint_scale = center, scale
    if crop_keypoints_camera is not None and crop_keypoints_camera != camera_id:
        keypoint_center, keypoint_scale, _ = crop_box(joints_3d_univ_mm, crop_keypoints_camera)
    to_crop = crop_transform(keypoint_center, keypoint_scale, meta.CROP_SIZE)
    width, height = frame_size
    return {
        'image': image_relpath,
        'joints_2d_gt': normalize_screen_coordinates(joints_2d_px[..., :2], w=width, h=height),
        'joints_2d_gt_crop': transform_points(joints_2d_px[..., :2], to_crop).astype(np.float32),
        'joints_3d': joints_3d_univ_mm / 1000.0,
        'joints_vis': np.ones((meta.NUM_JOINTS, 3)),
        'video_id': video_id,
        'image_id': image_id,
        'subject': subject,
        'sequence': sequence,
        'camera_id': camera_id,
        'source': 'mpi_inf_3dhp',
        'camera': meta.camera_dict(camera_id),
        'nposes': nposes,
        'center': center,
        'scale': scale,
        'box': box,
        'valid': int(valid),
        'activity': int(activity),
    }
