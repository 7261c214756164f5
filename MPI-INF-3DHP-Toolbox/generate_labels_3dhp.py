#!/usr/bin/env python3
"""Step 1: MPI-INF-3DHP annotations -> mpi_inf_3dhp_train.pkl, mpi_inf_3dhp_test.pkl.

Reads, relative to --root (default: the current folder):
    mpi_inf_3dhp/S<1-8>/Seq<1-2>/annot.mat          training annotations (MATLAB v5)
    mpi_inf_3dhp_test_set/TS<1-6>/annot_data.mat    test annotations (MATLAB v7.3 = HDF5)
and writes one label dict per frame (schema: mvn/datasets/mpi_labels.py) as the official
preparation (P-STMO's data_to_npz_3dhp*.py, extended by CA-PF with crop keypoints) selects them:
the 8 training cameras, the 17 joints, the first F frames of each sequence (F from
mpii_get_sequence_info), ground-truth 2D (annot2) and universal-skeleton 3D (univ_annot3), and
only the valid test frames (``--all-test-frames`` keeps the others, flagged ``valid: 0``).
Sequences whose files are missing are listed; existing outputs are kept unless --force.
"""
import argparse
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mvn.datasets import mpi_meta as meta  # noqa: E402
from mvn.datasets.mpi_labels import make_label  # noqa: E402
from mvn.utils.io import atomic_open  # noqa: E402

OUTPUTS = ('mpi_inf_3dhp_train.pkl', 'mpi_inf_3dhp_test.pkl')


class ToolboxError(RuntimeError):
    """An input file that exists but cannot be used; the message names it."""


def _first_line(e):
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def read_train_annotations(path):
    """{camera: (annot2 (F, 17, 2) px, univ_annot3 (F, 17, 3) mm)} of an annot.mat."""
    from scipy.io import loadmat
    try:
        data = loadmat(path)
        cameras = np.asarray(data['cameras']).reshape(-1)
        out = {}
        for index, camera in enumerate(cameras):
            annot2 = np.asarray(data['annot2'][index][0])
            univ = np.asarray(data['univ_annot3'][index][0])
            out[int(camera)] = (annot2.reshape(len(annot2), -1, 2)[:, meta.JOINTS_28_TO_17],
                                univ.reshape(len(univ), -1, 3)[:, meta.JOINTS_28_TO_17])
        return out
    except Exception as e:
        raise ToolboxError('cannot read training annotations %s: %s' % (path, _first_line(e))) from None


def read_test_annotations(path):
    """(annot2 (F, 17, 2) px, univ_annot3 (F, 17, 3) mm, valid (F,), activity (F,)) of an annot_data.mat."""
    import h5py
    try:
        with h5py.File(path, 'r') as f:
            annot2 = np.asarray(f['annot2'][:]).reshape(-1, meta.NUM_JOINTS, 2)
            univ = np.asarray(f['univ_annot3'][:]).reshape(-1, meta.NUM_JOINTS, 3)
            valid = np.asarray(f['valid_frame'][:]).reshape(-1)
            activity = np.asarray(f['activity_annotation'][:]).reshape(-1) if 'activity_annotation' in f \
                else np.zeros(len(valid))
    except Exception as e:
        raise ToolboxError('cannot read test annotations %s: %s' % (path, _first_line(e))) from None
    if not len(annot2) == len(univ) == len(valid):
        raise ToolboxError('%s: annot2, univ_annot3 and valid_frame have %d, %d and %d frames'
                           % (path, len(annot2), len(univ), len(valid)))
    return annot2, univ, valid, activity


def train_labels(args, problems):
    labels, video_id = [], 0
    for subject in tqdm(args.subjects, desc='training subjects'):
        for sequence in meta.TRAIN_SEQUENCES:
            path = os.path.join(args.train_dir, 'S%d' % subject, 'Seq%d' % sequence, 'annot.mat')
            if not os.path.isfile(path):
                problems.append('missing %s' % path)
                continue
            annotations = read_train_annotations(path)
            for camera in args.cameras:
                if camera not in annotations:
                    problems.append('%s has no camera %d' % (path, camera))
                    continue
                annot2, univ = annotations[camera]
                frames = min(len(annot2), meta.SEQUENCE_INFO[(subject, sequence)][0])
                keypoint_camera = meta.official_training_crop_camera(camera) if args.official_crop_keypoints else None
                for i in range(frames):
                    labels.append(make_label(
                        image_relpath=meta.train_image_relpath(subject, sequence, camera, i + 1),
                        joints_2d_px=annot2[i], joints_3d_univ_mm=univ[i], frame_size=meta.TRAIN_FRAME_SIZE,
                        subject=subject, sequence=sequence, camera_id=camera, image_id=i + 1, video_id=video_id,
                        nposes=frames, crop_keypoints_camera=keypoint_camera))
                video_id += 1
    return labels, video_id


def test_labels(args, problems, video_id):
    labels = []
    for ts in tqdm(meta.TEST_SEQUENCES, desc='test sequences'):
        path = os.path.join(args.test_dir, 'TS%d' % ts, 'annot_data.mat')
        if not os.path.isfile(path):
            problems.append('missing %s' % path)
            continue
        annot2, univ, valid, activity = read_test_annotations(path)
        for i in range(len(annot2)):
            if valid[i] or args.all_test_frames:
                labels.append(make_label(
                    image_relpath=meta.test_image_relpath(ts, i + 1), joints_2d_px=annot2[i],
                    joints_3d_univ_mm=univ[i], frame_size=meta.TEST_FRAME_SIZE[ts], subject=0, sequence=ts,
                    camera_id=meta.TEST_CAMERA[ts], image_id=i + 1, video_id=video_id, nposes=len(annot2),
                    valid=bool(valid[i]), activity=int(activity[i])))
        video_id += 1
    return labels


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', default='.', help='toolbox folder (default: the current folder)')
    parser.add_argument('--train-dir', help='training set (default ROOT/mpi_inf_3dhp)')
    parser.add_argument('--test-dir', help='test set (default ROOT/mpi_inf_3dhp_test_set)')
    parser.add_argument('--out-dir', help='where the two pickles go (default ROOT)')
    parser.add_argument('--subjects', type=int, nargs='+', default=meta.TRAIN_SUBJECTS)
    parser.add_argument('--cameras', type=int, nargs='+', default=meta.TRAIN_CAMERAS,
                        help='training cameras (default: the official 8)')
    parser.add_argument('--all-test-frames', action='store_true', help='keep invalid test frames (valid: 0)')
    parser.add_argument('--official-crop-keypoints', action='store_true',
                        help="place training crop keypoints as the official preparation did (cameras 4-8 with "
                             "another camera's intrinsics; see mvn/datasets/mpi_meta.py)")
    parser.add_argument('--force', action='store_true', help='overwrite existing label files')
    args = parser.parse_args(argv)
    args.train_dir = args.train_dir or os.path.join(args.root, 'mpi_inf_3dhp')
    args.test_dir = args.test_dir or os.path.join(args.root, 'mpi_inf_3dhp_test_set')
    args.out_dir = args.out_dir or args.root
    return args


def main(argv=None):
    args = parse_args(argv)
    outputs = [os.path.join(args.out_dir, name) for name in OUTPUTS]
    if all(os.path.isfile(p) for p in outputs) and not args.force:
        print('%s and %s exist; nothing to do (use --force to regenerate)' % tuple(outputs))
        return 0
    problems = []
    try:
        train, video_id = train_labels(args, problems)
        test = test_labels(args, problems, video_id)
    except ToolboxError as e:
        print('error: %s' % e, file=sys.stderr)
        return 1
    if not train and not test:
        print('error: no annotations found under %s or %s' % (args.train_dir, args.test_dir), file=sys.stderr)
        return 1
    for path, labels in zip(outputs, (train, test)):
        with atomic_open(path) as f:
            pickle.dump(labels, f)
    print('wrote %d training frames to %s and %d test frames to %s' % (len(train), outputs[0], len(test), outputs[1]))
    if problems:
        print('%d sequence(s) skipped:' % len(problems))
        for line in problems[:30]:
            print('  ' + line)
    return 0


if __name__ == '__main__':
    sys.exit(main())
