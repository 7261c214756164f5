#!/usr/bin/env python3
"""The official data_train_3dhp.npz / data_test_3dhp.npz -> our label files, for users who ran the
official preparation (ContextPose_mpi/dataset/process_data.sh) and have its crops.

The official files (P-STMO's layout, with CA-PF's crop keypoints), read with allow_pickle (they
hold a pickled dict: only load files you made or trust):
    data_train_3dhp.npz: data = {'S1 Seq1': [{'0': {'data_2d' (F, 17, 2) px, 'data_2d_crop' (F, 17, 2),
                          'data_3d' (F, 17, 3) univ_annot3 mm}, '1': ..., ...}, fps], ...}
    data_test_3dhp.npz:  data = {'TS1': {'data_2d', 'data_2d_crop', 'data_3d', 'valid' (F,)}, ...}
Image paths point into the official dataset folder (set ``dataset.root`` to it):
``mpi_inf_3dhp/images/s_01_seq_01_ca_00/s_01_seq_01_ca_00_000001.jpg`` and
``mpi_inf_3dhp_test_set/images/TS1/TS1_000001.jpg``.

Crop keypoints are recomputed with the camera each crop was cut with (the official training
keypoints of cameras 4-8 used another camera's intrinsics; see mvn/datasets/mpi_meta.py);
``--keep-npz-crop-keypoints`` keeps the file's values instead. Only valid test frames are kept,
as the official test loader does (``--all-test-frames`` keeps all).

    python npz_to_labels.py --train dataset/data_train_3dhp.npz --test dataset/data_test_3dhp.npz --out-dir ../data
"""
import argparse
import os
import pickle
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from mvn.datasets import mpi_meta as meta  # noqa: E402
from mvn.datasets.mpi_labels import make_label  # noqa: E402
from mvn.utils.io import atomic_open  # noqa: E402

TRAIN_PREFIX = 'mpi_inf_3dhp/images/'
TEST_PREFIX = 'mpi_inf_3dhp_test_set/images/'


class NpzError(RuntimeError):
    """A file that is not the official npz; the message names it and the key."""


def load_official(path):
    try:
        with np.load(path, allow_pickle=True) as f:
            return f['data'].item()
    except Exception as e:
        raise NpzError('cannot read %s as an official 3DHP npz: %s' % (path, e)) from None


def _arrays(entry, keys, where):
    try:
        return [np.asarray(entry[k]) for k in keys]
    except (KeyError, TypeError, IndexError):
        raise NpzError('%s lacks one of %s' % (where, ', '.join(keys))) from None


def train_labels(data, path, keep_crop_keypoints=False):
    labels, video_id = [], 0
    for name in sorted(data, key=lambda n: (int(n.split()[0][1:]), int(n.split()[1][3:]))):
        subject, sequence = int(name.split()[0][1:]), int(name.split()[1][3:])
        cameras = data[name][0]
        for camera_key in sorted(cameras, key=int):
            camera = int(camera_key)
            where = "%s ['%s'][0]['%s']" % (path, name, camera_key)
            data_2d, data_2d_crop, data_3d = _arrays(cameras[camera_key], ('data_2d', 'data_2d_crop', 'data_3d'), where)
            for i in range(len(data_2d)):
                label = make_label(
                    image_relpath=TRAIN_PREFIX + meta.train_image_relpath(subject, sequence, camera, i + 1),
                    joints_2d_px=data_2d[i], joints_3d_univ_mm=data_3d[i], frame_size=meta.TRAIN_FRAME_SIZE,
                    subject=subject, sequence=sequence, camera_id=camera, image_id=i + 1, video_id=video_id,
                    nposes=len(data_2d))
                if keep_crop_keypoints:
                    label['joints_2d_gt_crop'] = data_2d_crop[i].astype(np.float32)
                labels.append(label)
            video_id += 1
    return labels, video_id


def test_labels(data, path, video_id=0, all_frames=False):
    labels = []
    for name in sorted(data, key=lambda n: int(n[2:])):
        ts = int(name[2:])
        data_2d, data_3d, valid = _arrays(data[name], ('data_2d', 'data_3d', 'valid'), "%s ['%s']" % (path, name))
        for i in range(len(data_2d)):
            if valid[i] or all_frames:
                labels.append(make_label(
                    image_relpath=TEST_PREFIX + meta.test_image_relpath(ts, i + 1), joints_2d_px=data_2d[i],
                    joints_3d_univ_mm=data_3d[i], frame_size=meta.TEST_FRAME_SIZE[ts], subject=0, sequence=ts,
                    camera_id=meta.TEST_CAMERA[ts], image_id=i + 1, video_id=video_id, nposes=len(data_2d),
                    valid=bool(valid[i])))
        video_id += 1
    return labels


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--train', help='data_train_3dhp.npz')
    parser.add_argument('--test', help='data_test_3dhp.npz')
    parser.add_argument('--out-dir', default='.', help='where mpi_inf_3dhp_{train,test}.pkl go')
    parser.add_argument('--keep-npz-crop-keypoints', action='store_true')
    parser.add_argument('--all-test-frames', action='store_true')
    parser.add_argument('--force', action='store_true', help='overwrite existing label files')
    args = parser.parse_args(argv)
    if not args.train and not args.test:
        parser.error('give --train and/or --test')
    return args


def main(argv=None):
    args = parse_args(argv)
    jobs = [(p, name) for p, name in ((args.train, 'mpi_inf_3dhp_train.pkl'), (args.test, 'mpi_inf_3dhp_test.pkl')) if p]
    video_id = 0
    for source, name in jobs:
        out = os.path.join(args.out_dir, name)
        if os.path.exists(out) and not args.force:
            print('%s exists; skipped (use --force to overwrite)' % out)
            continue
        try:
            if not os.path.isfile(source):
                raise NpzError('file not found: %s' % source)
            data = load_official(source)
            if name.endswith('train.pkl'):
                labels, video_id = train_labels(data, source, args.keep_npz_crop_keypoints)
            else:
                labels = test_labels(data, source, video_id, args.all_test_frames)
        except NpzError as e:
            print('error: %s' % e, file=sys.stderr)
            return 1
        os.makedirs(args.out_dir, exist_ok=True)
        with atomic_open(out) as f:
            pickle.dump(labels, f)
        print('wrote %d frames to %s' % (len(labels), out))
    return 0


if __name__ == '__main__':
    sys.exit(main())
