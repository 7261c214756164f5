"""Built-in synthetic MPI-INF-3DHP in the dataset's raw layout, so the toolbox, training and the
evaluation run end to end without the dataset.

    mpi_inf_3dhp/S<s>/Seq<q>/annot.mat MATLAB v5: annot2, annot3, univ_annot3 (cells of 14 cameras,
                                       F x 56 / F x 84, 28 joints), cameras, frames
    mpi_inf_3dhp/S<s>/Seq<q>/camera.calibration  the 14 studio cameras (Skeletool text format)
    mpi_inf_3dhp/S<s>/Seq<q>/imageSequence/video_<c>.avi  2048x2048 videos of the requested cameras
    mpi_inf_3dhp_test_set/TS<n>/annot_data.mat   MATLAB v7.3 (HDF5): annot2 (F,1,17,2),
                                       annot3, univ_annot3 (F,1,17,3), valid_frame, activity_annotation
    mpi_inf_3dhp_test_set/TS<n>/imageSequence/img_<frame:06d>.jpg

``generate_processed`` writes what the toolbox would make of it (crops and the two label files)
directly, for training runs on synthetic data.

People are the synthetic Human3.6M motions (``synthetic_motion``) in the 3DHP joint order,
filmed by cameras on a circle around them with the dataset's intrinsics; the universal skeleton
(univ_annot3) is the metric pose (annot3) scaled about the pelvis. Deterministic in its arguments::

    python -m mvn.datasets.synthetic_3dhp --out /tmp/3dhp_raw
"""
import argparse
import math
import os
import pickle

import cv2
import numpy as np
from tqdm import tqdm

from mvn.datasets import mpi_meta as meta
from mvn.datasets.mpi_labels import make_label
from mvn.datasets.synthetic_motion import Motion, render_frame
from mvn.utils.io import atomic_open

# Joint j of the 3DHP order is joint H36M_TO_3DHP[j] of the Human3.6M order.
H36M_TO_3DHP = [10, 8, 14, 15, 16, 11, 12, 13, 1, 2, 3, 4, 5, 6, 0, 7, 9]
# The 28 annotated joints from the 17 (the others copy a neighbour: clavicles the neck, hands
# the wrists, feet and toes the ankles, the upper spine joints the spine or neck).
_FILL_28 = {0: 15, 1: 1, 2: 15, 8: 1, 12: 7, 13: 1, 17: 4, 21: 13, 22: 13, 26: 10, 27: 10}
FROM_17_TO_28 = [meta.JOINTS_28_TO_17.index(i) if i in meta.JOINTS_28_TO_17 else _FILL_28[i]
                 for i in range(meta.NUM_ANNOTATED_JOINTS)]
UNIVERSAL_SCALE = 0.95       # univ_annot3 = pelvis + 0.95 (annot3 - pelvis)
_MATLAB_HEADER = b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: synthetic HDF5 schema 1.00 .'


def camera_pose(camera, num_cameras=15):
    """(R, T): world (mm, z up) -> camera frame X_cam = R (X - T), for a camera on a 4.5 m circle,
    1.2 m high, looking at (0, 0, 900) mm."""
    angle = 2 * math.pi * camera / num_cameras
    centre = np.array([4500 * math.cos(angle), 4500 * math.sin(angle), 1200.0])
    forward = np.array([0.0, 0.0, 900.0]) - centre
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward]), centre


def project(joints_cam, camera):
    k = meta.INTRINSICS[camera]
    return np.stack([k.fx * joints_cam[..., 0] / joints_cam[..., 2] + k.cx,
                     k.fy * joints_cam[..., 1] / joints_cam[..., 2] + k.cy], axis=-1)


# The synthetic motion (subject, action) behind a training sequence and a test sequence.
def _train_motion(subject, sequence):
    return subject, 2 + 7 * (sequence - 1) + subject % 7


def _test_motion(test_sequence):
    return 9 + test_sequence % 3, 13 + test_sequence % 3


def sequence_poses(motion_key, num_frames, camera, seed=0):
    """(annot2 (F, 17, 2) px, annot3 (F, 17, 3) mm, univ_annot3 (F, 17, 3) mm), 3DHP joint order."""
    subject, action = motion_key
    world = Motion(subject, action, 1, seed=seed, fps=10.0).poses(num_frames)
    rotation, centre = camera_pose(camera)
    annot3 = ((world - centre) @ rotation.T)[:, H36M_TO_3DHP]
    pelvis = annot3[:, meta.ROOT_JOINT:meta.ROOT_JOINT + 1]
    univ = pelvis + UNIVERSAL_SCALE * (annot3 - pelvis)
    return project(annot3, camera), annot3, univ


def _backdrop(width, height, shade):
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    image = np.array([60, 70, 50], np.float32) + shade + 50 * rows
    image = np.where((np.arange(height) > 0.65 * height)[:, None, None], image * 0.6, image)
    return np.broadcast_to(np.clip(image, 0, 255).astype(np.uint8), (height, width, 3))


def render(annot2, annot3, size, shade=0):
    """A BGR frame (size = (w, h)) with the person of the 3DHP-order pose drawn on it."""
    to_h36m = np.argsort(H36M_TO_3DHP)
    return render_frame(annot2[to_h36m], annot3[to_h36m], 1, background=_backdrop(*size, shade))


def _cell(arrays):
    cell = np.empty((len(arrays), 1), dtype=object)
    for i, a in enumerate(arrays):
        cell[i, 0] = a
    return cell


def write_calibration(path):
    lines = ['Skeletool Camera Calibration File V1.0']
    for c in range(meta.NUM_STUDIO_CAMERAS):
        k = meta.INTRINSICS[c]
        rotation, centre = camera_pose(c)
        extrinsic = np.eye(4)
        extrinsic[:3, :3], extrinsic[:3, 3] = rotation, -rotation @ centre
        intrinsic = [k.fx, 0, k.cx, 0, 0, k.fy, k.cy, 0, 0, 0, 1, 0, 0, 0, 0, 1]
        lines += ['name          %d' % c, '  sensor      10 10', '  size        2048 2048', '  animated    0',
                  '  intrinsic   ' + ' '.join('%.6g' % v for v in intrinsic),
                  '  extrinsic   ' + ' '.join('%.7g' % v for v in extrinsic.reshape(-1)), '  radial      0']
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def write_train_sequence(root, subject, sequence, cameras, frames, seed=0):
    """annot.mat (all 14 cameras), camera.calibration and the videos of ``cameras``."""
    from scipy.io import savemat
    folder = os.path.join(root, 'mpi_inf_3dhp', 'S%d' % subject, 'Seq%d' % sequence)
    os.makedirs(os.path.join(folder, 'imageSequence'), exist_ok=True)
    annot2, annot3, univ = [], [], []
    for c in range(meta.NUM_STUDIO_CAMERAS):
        a2, a3, u3 = sequence_poses(_train_motion(subject, sequence), frames, c, seed)
        annot2.append(a2[:, FROM_17_TO_28].reshape(frames, -1))
        annot3.append(a3[:, FROM_17_TO_28].reshape(frames, -1))
        univ.append(u3[:, FROM_17_TO_28].reshape(frames, -1))
        if c in cameras:
            path = os.path.join(folder, 'imageSequence', 'video_%d.avi' % c)
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'MJPG'), 25, meta.TRAIN_FRAME_SIZE)
            if not writer.isOpened():
                raise OSError('OpenCV cannot write video %s' % path)
            for i in range(frames):
                writer.write(render(a2[i], a3[i], meta.TRAIN_FRAME_SIZE, shade=5 * c))
            writer.release()
    savemat(os.path.join(folder, 'annot.mat'),
            {'annot2': _cell(annot2), 'annot3': _cell(annot3), 'univ_annot3': _cell(univ),
             'cameras': np.arange(meta.NUM_STUDIO_CAMERAS, dtype=np.uint8)[None],
             'frames': np.arange(frames, dtype=np.float64)[:, None]})
    write_calibration(os.path.join(folder, 'camera.calibration'))


def write_test_sequence(root, test_sequence, frames, seed=0):
    """annot_data.mat (HDF5 with a MATLAB header) and the full frames of TS<test_sequence>;
    every second frame (0-based index odd) is marked invalid."""
    import h5py
    folder = os.path.join(root, 'mpi_inf_3dhp_test_set', 'TS%d' % test_sequence)
    os.makedirs(os.path.join(folder, 'imageSequence'), exist_ok=True)
    camera = meta.TEST_CAMERA[test_sequence]
    size = meta.TEST_FRAME_SIZE[test_sequence]
    a2, a3, u3 = sequence_poses(_test_motion(test_sequence), frames, camera, seed)
    for i in range(frames):
        path = os.path.join(folder, 'imageSequence', 'img_%06d.jpg' % (i + 1))
        if not cv2.imwrite(path, render(a2[i], a3[i], size, shade=10 * test_sequence), [cv2.IMWRITE_JPEG_QUALITY, 90]):
            raise OSError('cannot write %s' % path)
    valid = np.array([[float(i % 2 == 0)] for i in range(frames)])
    activity = np.array([[1.0 + (i + test_sequence) % 7] for i in range(frames)])
    path = os.path.join(folder, 'annot_data.mat')
    with h5py.File(path, 'w', userblock_size=512) as f:
        f['annot2'] = a2[:, None].astype(np.float64)
        f['annot3'] = a3[:, None].astype(np.float64)
        f['univ_annot3'] = u3[:, None].astype(np.float64)
        f['valid_frame'] = valid
        f['activity_annotation'] = activity
    with open(path, 'r+b') as f:
        f.write(_MATLAB_HEADER.ljust(116) + b'\x00' * 8 + b'\x00\x02IM')


def generate_raw(root, *, subjects=(1, 2), sequences=(1,), cameras=(0, 4), frames=3, test_sequences=(1, 5),
                 test_frames=3, seed=0):
    """Writes the raw layout under ``root`` (see the module docstring)."""
    for s in subjects:
        for q in sequences:
            write_train_sequence(root, s, q, cameras, frames, seed)
    for t in test_sequences:
        write_test_sequence(root, t, test_frames, seed)


def generate_processed(image_root, train_labels_path, val_labels_path, *, subjects=(1, 2), sequences=(1,),
                       cameras=(0, 4), frames=3, test_sequences=(1, 5), test_frames=3, seed=0, jpeg_quality=90,
                       progress=True):
    """Crops under ``image_root`` and the two label pickles, as the toolbox makes them from the raw
    layout (the invalid test frames, every second one, are left out as the toolbox does). The person is drawn straight into the crop at its crop keypoints. Labels are
    written last and atomically. Returns {'train': n, 'test': n}."""
    jobs = [('train', s, q, c) for s in subjects for q in sequences for c in cameras]
    jobs += [('test', t, None, meta.TEST_CAMERA[t]) for t in test_sequences]
    splits = {'train': [], 'test': []}
    for video_id, (split, a, b, camera) in enumerate(tqdm(jobs, desc='synthetic 3DHP', disable=not progress)):
        n = frames if split == 'train' else test_frames
        motion = _train_motion(a, b) if split == 'train' else _test_motion(a)
        annot2, annot3, univ = sequence_poses(motion, n, camera, seed)
        for i in range(n):
            if split == 'train':
                label = make_label(image_relpath=meta.train_image_relpath(a, b, camera, i + 1), joints_2d_px=annot2[i],
                                   joints_3d_univ_mm=univ[i], frame_size=meta.TRAIN_FRAME_SIZE, subject=a, sequence=b,
                                   camera_id=camera, image_id=i + 1, video_id=video_id, nposes=n)
            elif i % 2 == 1:
                continue
            else:
                label = make_label(image_relpath=meta.test_image_relpath(a, i + 1), joints_2d_px=annot2[i],
                                   joints_3d_univ_mm=univ[i], frame_size=meta.TEST_FRAME_SIZE[a], subject=0, sequence=a,
                                   camera_id=camera, image_id=i + 1, video_id=video_id, nposes=n,
                                   activity=1 + (i + a) % 7)
            path = os.path.join(image_root, label['image'])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            # Limb widths follow depth in frame pixels; seen through the crop's zoom they are as far off as
            # the crop is smaller than the box.
            zoom = (meta.CROP_SIZE[0] - 1) / (label['scale'][0] * 200 - 1)
            crop = render(label['joints_2d_gt_crop'].astype(np.float64), annot3[i] / zoom, meta.CROP_SIZE, shade=5 * camera)
            if not cv2.imwrite(path, crop, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
                raise OSError('cannot write %s' % path)
            splits[split].append(label)
    for path, labels in ((train_labels_path, splits['train']), (val_labels_path, splits['test'])):
        with atomic_open(path) as f:
            pickle.dump(labels, f)
    return {k: len(v) for k, v in splits.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description='Generate a synthetic raw MPI-INF-3DHP.')
    parser.add_argument('--out', required=True)
    parser.add_argument('--subjects', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--sequences', type=int, nargs='+', default=[1])
    parser.add_argument('--cameras', type=int, nargs='+', default=[0, 4])
    parser.add_argument('--frames', type=int, default=3)
    parser.add_argument('--test-sequences', type=int, nargs='+', default=[1, 5])
    parser.add_argument('--test-frames', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    generate_raw(args.out, subjects=args.subjects, sequences=args.sequences, cameras=args.cameras,
                 frames=args.frames, test_sequences=args.test_sequences, test_frames=args.test_frames,
                 seed=args.seed)
    print('wrote a synthetic raw MPI-INF-3DHP to %s' % args.out)


if __name__ == '__main__':
    main()
