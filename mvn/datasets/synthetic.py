"""Built-in synthetic Human3.6M, in two layouts.

* ``generate_processed``: what the toolbox produces (JPEG frames under ``images/`` and the two
  label pickles), in the official layout and schema. The embedded default trains on it.
* ``generate_raw``: a mini raw Human3.6M (``extracted/S*/Poses_D3_Positions_mono/*.cdf``,
  ``Poses_D2_Positions/*.cdf``, ``Videos/*.mp4`` and VideoPose3D's CPN file), so the toolbox
  runs end to end.

Both are deterministic functions of their arguments. As a command::

    python -m mvn.datasets.synthetic processed --out data/synthetic
    python -m mvn.datasets.synthetic raw --out /tmp/h36m_raw --subjects 1 9 --actions 2 3
"""
import argparse
import os
import pickle

import cv2
import numpy as np
from tqdm import tqdm

from mvn.datasets import h36m_meta as meta
from mvn.datasets.h36m_labels import make_label
from mvn.datasets.synthetic_scene import add_sensor_noise, natural_backdrop
from mvn.datasets.synthetic_motion import (Motion, cpn_like_detections, frame_size, project_with_distortion,
                                           render_frame, world_to_camera)
from mvn.utils.io import atomic_open

# Human3.6M's 32 mocap joints that are not among the 17: filled with the nearest of the 17.
_FILL_32 = {4: 3, 5: 3, 9: 6, 10: 6, 11: 0, 13: 8, 20: 13, 21: 13, 22: 13, 23: 13, 24: 8,
            28: 16, 29: 16, 30: 16, 31: 16}
_FROM_17 = [meta.H36M_32_TO_17.index(i) if i in meta.H36M_32_TO_17 else _FILL_32[i] for i in range(32)]


def sequence_ground_truth(subject, action, subaction, camera_index, num_frames, seed=0, fps=10.0):
    """The true data of one sequence: (joints_cam (N, 17, 3) mm, joints_2d (N, 17, 2) pixels with
    lens distortion, cpn (N, 17, 2) float32 noisy detections)."""
    world = Motion(subject, action, subaction, seed=seed, fps=fps).poses(num_frames)
    joints_cam = world_to_camera(world, subject, camera_index)
    joints_2d = project_with_distortion(joints_cam, subject, camera_index)
    cpn = cpn_like_detections(joints_2d, seed=[seed, subject, action, subaction, camera_index])
    return joints_cam, joints_2d, cpn


def expand_to_32(joints_17):
    """(N, 17, C) -> (N, 32, C) in Human3.6M's mocap order (extra joints copy a neighbour)."""
    return joints_17[:, _FROM_17]


def _write_jpeg(path, image, quality):
    if not cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError('cannot write %s' % path)


def _dump_pickle(obj, path):
    with atomic_open(path) as f:
        pickle.dump(obj, f)


def generate_processed(image_root, train_labels_path, val_labels_path, *, subjects=tuple(meta.SUBJECTS),
                       actions=tuple(meta.ACTIONS), subactions=(1, 2), cameras=(1, 2, 3, 4), frames=4,
                       val_frames=None, seed=0, jpeg_quality=90, backdrop='plain', progress=True):
    """Writes frames and both label pickles; returns {'train': n, 'validation': n} frame counts.

    ``frames`` per training sequence, ``val_frames`` (default: ``frames``) per test sequence;
    frames are 0.1 s apart. ``backdrop``: 'plain' (smooth, small files) or 'natural' (a
    photograph-like scene per camera and sensor noise per frame: ~100 KB frames whose decoding
    and crops cost what real ones do; ``mvn.datasets.synthetic_scene``). Labels are written last
    and atomically: their presence means done.
    """
    if backdrop not in ('plain', 'natural'):
        raise ValueError("backdrop must be 'plain' or 'natural', got %r" % (backdrop,))
    val_frames = frames if val_frames is None else val_frames
    splits = {'train': [], 'validation': []}
    video_id = 0
    for s, a, sa, c in tqdm(meta.sequences(subjects, actions, subactions, cameras), desc='synthetic frames',
                            disable=not progress):
        n = frames if s in meta.TRAIN_SUBJECTS else val_frames
        joints_cam, joints_2d, cpn = sequence_ground_truth(s, a, sa, c, n, seed)
        folder = os.path.join(image_root, meta.sequence_dirname(s, a, sa, c - 1))
        os.makedirs(folder, exist_ok=True)
        width, height = frame_size(c)
        camera = meta.camera_dict(s, c)
        split = splits['train' if s in meta.TRAIN_SUBJECTS else 'validation']
        for i in range(n):
            relpath = meta.image_relpath(s, a, sa, c - 1, i + 1)
            image = _frame(joints_2d[i], joints_cam[i], c, backdrop, noise_seed=video_id * 10007 + i)
            _write_jpeg(os.path.join(image_root, relpath), image, jpeg_quality)
            split.append(make_label(
                subject=s, action=a, subaction=sa, camera_index=c, image_id=i + 1, video_id=video_id, nposes=n,
                camera=camera, joints_3d_mm=joints_cam[i], joints_2d_gt_px=joints_2d[i], joints_2d_cpn_px=cpn[i],
                image_width=width, image_height=height, image_relpath=relpath))
        video_id += 1
    _dump_pickle(splits['train'], train_labels_path)
    _dump_pickle(splits['validation'], val_labels_path)
    return {k: len(v) for k, v in splits.items()}


def _frame(joints_2d, joints_cam, camera_index, backdrop, noise_seed):
    if backdrop == 'plain':
        return render_frame(joints_2d, joints_cam, camera_index)
    width, height = frame_size(camera_index)
    scene = natural_backdrop(width, height, camera_index)
    return add_sensor_noise(render_frame(joints_2d, joints_cam, camera_index, background=scene), noise_seed)


def _write_cdf(path, poses):
    """One record holding (N, D) float32 poses in variable 'Pose', as Human3.6M's files."""
    from cdflib.cdfwrite import CDF
    if os.path.exists(path):
        os.remove(path)
    data = poses.reshape(1, poses.shape[0], -1).astype(np.float32)
    cdf = CDF(path, cdf_spec={'Majority': 'row_major', 'Compressed': 0})
    try:
        cdf.write_var({'Variable': 'Pose', 'Data_Type': CDF.CDF_FLOAT, 'Num_Elements': 1, 'Rec_Vary': True,
                       'Dim_Sizes': list(data.shape[1:])}, var_attrs={}, var_data=data)
    finally:
        cdf.close()


def _write_video(path, frames_bgr, fps=50):
    height, width = frames_bgr[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps, (width, height))
    if not writer.isOpened():
        raise OSError('OpenCV cannot write video %s' % path)
    for frame in frames_bgr:
        writer.write(frame)
    writer.release()


def generate_raw(root, *, subjects=(1, 9), actions=(2, 3), subactions=(1, 2), cameras=(1, 2, 3, 4), frames=6,
                 seed=0, cpn_extra_frames=2, progress=True):
    """Writes a raw mini Human3.6M under ``root``; returns the list of sequences written.

    The CPN file holds ``cpn_extra_frames`` more frames than the mocap for every camera-1
    sequence (as VideoPose3D's file sometimes does), which the toolbox must truncate.
    """
    positions_2d = {}
    written = []
    for s, a, sa, c in tqdm(meta.sequences(subjects, actions, subactions, cameras), desc='synthetic raw',
                            disable=not progress):
        base = meta.sequence_basename(s, a, sa, c)
        extra = cpn_extra_frames if c == 1 else 0
        joints_cam, joints_2d, cpn = sequence_ground_truth(s, a, sa, c, frames + extra, seed)
        subject_dir = os.path.join(root, 'extracted', 'S%d' % s)
        for sub in ('Poses_D3_Positions_mono', 'Poses_D2_Positions', 'Videos'):
            os.makedirs(os.path.join(subject_dir, sub), exist_ok=True)
        _write_cdf(os.path.join(subject_dir, 'Poses_D3_Positions_mono', base + '.cdf'),
                   expand_to_32(joints_cam[:frames]))
        _write_cdf(os.path.join(subject_dir, 'Poses_D2_Positions', base + '.cdf'), expand_to_32(joints_2d[:frames]))
        _write_video(os.path.join(subject_dir, 'Videos', base + '.mp4'),
                     [render_frame(joints_2d[i], joints_cam[i], c) for i in range(frames)])
        # VideoPose3D names two actions differently; its lists hold the four cameras in order.
        stem = meta.cpn_action_candidates(base.split('.')[0])[-1]
        cams = positions_2d.setdefault('S%d' % s, {}).setdefault(stem, [None] * 4)
        cams[c - 1] = cpn
        written.append((s, a, sa, c))
    for actions_of_subject in positions_2d.values():
        for stem, cams in actions_of_subject.items():
            actions_of_subject[stem] = [x if x is not None else np.zeros((0, 17, 2), np.float32) for x in cams]
    os.makedirs(os.path.join(root, 'data'), exist_ok=True)
    metadata = {'layout_name': 'h36m', 'num_joints': 17,
                'keypoints_symmetry': [meta.JOINTS_LEFT, meta.JOINTS_RIGHT]}
    np.savez_compressed(os.path.join(root, 'data', 'data_2d_h36m_cpn_ft_h36m_dbb.npz'),
                        positions_2d=positions_2d, metadata=metadata)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description='Generate synthetic Human3.6M data.')
    parser.add_argument('layout', choices=['processed', 'raw'])
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--subjects', type=int, nargs='+')
    parser.add_argument('--actions', type=int, nargs='+')
    parser.add_argument('--subactions', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--cameras', type=int, nargs='+', default=[1, 2, 3, 4])
    parser.add_argument('--frames', type=int, help='frames per (training) sequence')
    parser.add_argument('--val-frames', type=int, help='frames per test sequence (processed)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    common = dict(subactions=tuple(args.subactions), cameras=tuple(args.cameras), seed=args.seed)
    if args.subjects:
        common['subjects'] = tuple(args.subjects)
    if args.actions:
        common['actions'] = tuple(args.actions)
    if args.frames:
        common['frames'] = args.frames
    if args.layout == 'processed':
        counts = generate_processed(os.path.join(args.out, 'images'), os.path.join(args.out, 'h36m_train.pkl'),
                                    os.path.join(args.out, 'h36m_validation.pkl'), val_frames=args.val_frames,
                                    **common)
        print('wrote %(train)d training and %(validation)d validation frames' % counts, 'to', args.out)
    else:
        written = generate_raw(args.out, **common)
        print('wrote %d raw sequences to %s' % (len(written), args.out))


if __name__ == '__main__':
    main()
