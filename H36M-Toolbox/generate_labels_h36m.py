#!/usr/bin/env python3
"""Step 2: raw Human3.6M + CPN detections + extracted frames -> h36m_train.pkl, h36m_validation.pkl.

Reads, relative to --root (default: the current folder, as the official script):
    extracted/S*/Poses_D3_Positions_mono/<sequence>.cdf   3D joints, camera frame, mm
    extracted/S*/Poses_D2_Positions/<sequence>.cdf        2D ground truth, pixels
    data/data_2d_h36m_cpn_ft_h36m_dbb.npz                VideoPose3D's CPN detections
    images/                                              frames from video_to_images.py
and writes one label dict per frame with an image (see mvn/datasets/h36m_labels.py): subjects
1, 5, 6, 7, 8 to h36m_train.pkl, 9 and 11 to h36m_validation.pkl, with the official keys and
numbers. Sequences whose files are missing are listed in a summary. Existing outputs are kept
unless --force; outputs are written atomically.
"""
import argparse
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mvn.datasets import h36m_meta as meta  # noqa: E402
from mvn.datasets.h36m_labels import make_label  # noqa: E402
from mvn.utils.io import atomic_open  # noqa: E402

OUTPUTS = ('h36m_train.pkl', 'h36m_validation.pkl')


class ToolboxError(RuntimeError):
    """An input file that exists but cannot be used; the message names it."""


def read_cdf_poses(path, dims):
    """(N, 32, dims) array of a Human3.6M CDF file's 'Pose' variable, in the file's dtype."""
    import cdflib
    try:
        poses = np.array(cdflib.CDF(path).varget('Pose'))
        return poses.reshape(-1, 32, dims)
    except Exception as e:
        raise ToolboxError('cannot read CDF file %s: %s' % (path, str(e).strip().splitlines()[0] if str(e).strip()
                                                               else type(e).__name__)) from None


def load_cpn(path):
    if not os.path.isfile(path):
        raise ToolboxError('CPN detections not found: %s (see data/README.md)' % path)
    try:
        return np.load(path, allow_pickle=True)['positions_2d'].item()
    except Exception as e:
        raise ToolboxError('cannot read CPN detections %s: %s' % (path, e)) from None


def find_cpn(cpn, subject, basename, camera_index):
    """This sequence's CPN detections, trying the names VideoPose3D uses; None if absent."""
    actions = cpn.get('S%d' % subject, {})
    for name in meta.cpn_action_candidates(basename.split('.')[0]):
        if name in actions and len(actions[name]) >= camera_index:
            return np.asarray(actions[name][camera_index - 1])
    return None


def sequence_labels(args, cpn, subject, action, subaction, camera_index, video_id, problems):
    """Label dicts of one sequence, or None (reason appended to ``problems``) when it is missing."""
    basename = meta.sequence_basename(subject, action, subaction, camera_index)
    subject_dir = os.path.join(args.extracted, 'S%d' % subject)
    path_3d = os.path.join(subject_dir, 'Poses_D3_Positions_mono', basename + '.cdf')
    path_2d = os.path.join(subject_dir, 'Poses_D2_Positions', basename + '.cdf')
    for path in (path_3d, path_2d):
        if not os.path.isfile(path):
            problems.append('missing %s' % path)
            return None
    detections = find_cpn(cpn, subject, basename, camera_index)
    if detections is None:
        problems.append('no CPN detections for S%d %s' % (subject, basename))
        return None
    poses_3d, poses_2d = read_cdf_poses(path_3d, 3), read_cdf_poses(path_2d, 2)
    nposes = min(poses_3d.shape[0], poses_2d.shape[0])
    if detections.shape[0] < nposes:
        problems.append('CPN detections of S%d %s have %d frames, the mocap %d'
                        % (subject, basename, detections.shape[0], nposes))
        return None
    detections = detections[:nposes]

    folder = meta.sequence_dirname(subject, action, subaction, camera_index - 1)
    present = set(os.listdir(os.path.join(args.images, folder))) if os.path.isdir(
        os.path.join(args.images, folder)) else set()
    frames = [i for i in range(nposes) if os.path.basename(meta.image_relpath(
        subject, action, subaction, camera_index - 1, i + 1)) in present]
    if not frames:
        problems.append('no frames in %s' % os.path.join(args.images, folder))
        return []
    first = os.path.join(args.images, meta.image_relpath(subject, action, subaction, camera_index - 1, frames[0] + 1))
    image = cv2.imread(first, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise ToolboxError('cannot read image %s' % first)
    height, width = image.shape[:2]            # every frame of a video has the video's size
    camera = meta.camera_dict(subject, camera_index)
    labels = []
    for i in frames:
        labels.append(make_label(
            subject=subject, action=action, subaction=subaction, camera_index=camera_index, image_id=i + 1,
            video_id=video_id, nposes=nposes, camera=camera,
            joints_3d_mm=poses_3d[i, meta.H36M_32_TO_17, :], joints_2d_gt_px=poses_2d[i, meta.H36M_32_TO_17, :],
            joints_2d_cpn_px=detections[i], image_width=width, image_height=height,
            image_relpath=meta.image_relpath(subject, action, subaction, camera_index - 1, i + 1)))
    return labels


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', default='.', help='toolbox folder (default: the current folder)')
    parser.add_argument('--extracted', help='raw data folder (default ROOT/extracted)')
    parser.add_argument('--images', help='frames folder (default ROOT/images)')
    parser.add_argument('--cpn', help='CPN file (default ROOT/data/data_2d_h36m_cpn_ft_h36m_dbb.npz)')
    parser.add_argument('--out-dir', help='where the two pickles go (default ROOT)')
    parser.add_argument('--subjects', type=int, nargs='+', default=meta.SUBJECTS)
    parser.add_argument('--force', action='store_true', help='overwrite existing label files')
    args = parser.parse_args(argv)
    args.extracted = args.extracted or os.path.join(args.root, 'extracted')
    args.images = args.images or os.path.join(args.root, 'images')
    args.cpn = args.cpn or os.path.join(args.root, 'data', 'data_2d_h36m_cpn_ft_h36m_dbb.npz')
    args.out_dir = args.out_dir or args.root
    return args


def main(argv=None):
    args = parse_args(argv)
    outputs = [os.path.join(args.out_dir, name) for name in OUTPUTS]
    if all(os.path.isfile(p) for p in outputs) and not args.force:
        print('%s and %s exist; nothing to do (use --force to regenerate)' % tuple(outputs))
        return 0
    try:
        cpn = load_cpn(args.cpn)
        splits = {'train': [], 'validation': []}
        problems = []
        video_id = 0
        sequences = meta.sequences(args.subjects)
        for s, a, sa, c in tqdm(sequences, desc='sequences'):
            labels = sequence_labels(args, cpn, s, a, sa, c, video_id, problems)
            if labels is None:
                continue
            splits['train' if s in meta.TRAIN_SUBJECTS else 'validation'].extend(labels)
            video_id += 1
    except ToolboxError as e:
        print('error: %s' % e, file=sys.stderr)
        return 1

    for path, split in zip(outputs, ('train', 'validation')):
        with atomic_open(path) as f:
            pickle.dump(splits[split], f)
    print('wrote %d training frames to %s and %d test frames to %s'
          % (len(splits['train']), outputs[0], len(splits['validation']), outputs[1]))
    if problems:
        print('%d sequence(s) skipped or without frames:' % len(problems))
        for line in problems[:30]:
            print('  ' + line)
        if len(problems) > 30:
            print('  ... and %d more' % (len(problems) - 30))
    return 0


if __name__ == '__main__':
    sys.exit(main())
