#!/usr/bin/env python3
"""Step 2: the 192x256 crops of every labelled frame, as the official preparation stores them.

    mpi_inf_3dhp/S1/Seq1/imageSequence/video_0.avi, frame 1  -> images/s_01_seq_01_ca_00/s_01_seq_01_ca_00_000001.jpg
    mpi_inf_3dhp_test_set/TS1/imageSequence/img_000001.jpg   -> images/TS1/TS1_000001.jpg

Each crop is cut from its frame with the label's box (center, scale) by a bilinear affine warp
(mvn.utils.img.crop_image) and written as JPEG (OpenCV's default quality 95, as the official
convert_to_small*.py). Training frames come from the videos: through ffmpeg when installed
(``-qscale:v 3`` JPEGs in a temporary folder, as the official video_to_images.py, so the crops
match the official ones), or OpenCV's decoder (``--backend opencv``: the same frames without
the JPEG round trip). Only the 2048x2048 frames of one video are on disk at a time.

Each crop folder is written into a temporary folder and renamed when complete: finished folders
are skipped on the next run (unless --force), an interrupted one is redone.
"""
import argparse
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mvn.datasets import mpi_meta as meta  # noqa: E402
from mvn.utils.img import crop_image  # noqa: E402

CROP_JPEG_QUALITY = 95


class ToolboxError(RuntimeError):
    """An input that cannot be used; the message names it."""


def read_frame(path):
    image = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise ToolboxError('cannot read frame %s' % path)
    return image


def ffmpeg_frames(video, wanted, scratch):
    """{frame (1-based): image} of the wanted frames, through ffmpeg's JPEGs."""
    last = max(wanted)
    command = ['ffmpeg', '-nostdin', '-nostats', '-loglevel', 'error', '-i', video, '-frames:v', str(last),
               '-qscale:v', '3', os.path.join(scratch, '%06d.jpg')]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolboxError('ffmpeg failed on %s: %s' % (video, result.stderr.strip().splitlines()[-1:]))
    for frame in sorted(wanted):
        path = os.path.join(scratch, '%06d.jpg' % frame)
        if not os.path.isfile(path):
            raise ToolboxError('%s has fewer than %d frames' % (video, frame))
        yield frame, read_frame(path)


def opencv_frames(video, wanted, scratch=None):
    capture = cv2.VideoCapture(video)
    if not capture.isOpened():
        raise ToolboxError('OpenCV cannot open video %s' % video)
    try:
        frame, last = 0, max(wanted)
        while frame < last:
            ok, image = capture.read()
            if not ok:
                raise ToolboxError('%s has fewer than %d frames' % (video, last))
            frame += 1
            if frame in wanted:
                yield frame, image
    finally:
        capture.release()


def image_frames(folder, wanted, scratch=None):
    for frame in sorted(wanted):
        yield frame, read_frame(os.path.join(folder, 'img_%06d.jpg' % frame))


def source_of(args, label):
    """(reader, source path) of a label's frames: a training video or a test image folder."""
    if label['subject'] == 0:
        return image_frames, os.path.join(args.test_dir, 'TS%d' % label['sequence'], 'imageSequence')
    video = os.path.join(args.train_dir, 'S%d' % label['subject'], 'Seq%d' % label['sequence'], 'imageSequence',
                         'video_%d.avi' % label['camera_id'])
    return (ffmpeg_frames if args.backend == 'ffmpeg' else opencv_frames), video


def write_folder(args, folder, labels):
    """Crops of one folder's labels into images/<folder>, atomically."""
    target = os.path.join(args.images, folder)
    reader, source = source_of(args, labels[0])
    if not os.path.exists(source):
        raise ToolboxError('missing %s' % source)
    by_frame = {label['image_id']: label for label in labels}
    partial = tempfile.mkdtemp(prefix='.%s.partial-' % folder, dir=args.images)
    scratch = tempfile.mkdtemp(prefix='.frames-', dir=args.images)
    try:
        for frame, image in reader(source, set(by_frame), scratch):
            label = by_frame[frame]
            crop = crop_image(image, label['center'], label['scale'], meta.CROP_SIZE)
            path = os.path.join(partial, os.path.basename(label['image']))
            if not cv2.imwrite(path, crop, [cv2.IMWRITE_JPEG_QUALITY, CROP_JPEG_QUALITY]):
                raise ToolboxError('cannot write %s' % path)
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.replace(partial, target)
    finally:
        for tmp in (partial, scratch):
            if os.path.isdir(tmp):
                shutil.rmtree(tmp)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', default='.', help='toolbox folder (default: the current folder)')
    parser.add_argument('--labels', nargs='+', help='label files (default ROOT/mpi_inf_3dhp_{train,test}.pkl)')
    parser.add_argument('--train-dir', help='training set (default ROOT/mpi_inf_3dhp)')
    parser.add_argument('--test-dir', help='test set (default ROOT/mpi_inf_3dhp_test_set)')
    parser.add_argument('--images', help='output folder (default ROOT/images)')
    parser.add_argument('--backend', choices=['auto', 'ffmpeg', 'opencv'], default='auto')
    parser.add_argument('--force', action='store_true', help='write folders that are already done again')
    args = parser.parse_args(argv)
    args.labels = args.labels or [os.path.join(args.root, n) for n in ('mpi_inf_3dhp_train.pkl', 'mpi_inf_3dhp_test.pkl')]
    args.train_dir = args.train_dir or os.path.join(args.root, 'mpi_inf_3dhp')
    args.test_dir = args.test_dir or os.path.join(args.root, 'mpi_inf_3dhp_test_set')
    args.images = args.images or os.path.join(args.root, 'images')
    if args.backend == 'auto':
        args.backend = 'ffmpeg' if shutil.which('ffmpeg') else 'opencv'
    elif args.backend == 'ffmpeg' and not shutil.which('ffmpeg'):
        parser.error('--backend ffmpeg but no ffmpeg on PATH')
    return args


def main(argv=None):
    args = parse_args(argv)
    folders = defaultdict(list)
    for path in args.labels:
        try:
            with open(path, 'rb') as f:
                for label in pickle.load(f):
                    folders[os.path.dirname(label['image'])].append(label)
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError) as e:
            print('error: cannot read label file %s: %s' % (path, e), file=sys.stderr)
            return 1
    os.makedirs(args.images, exist_ok=True)
    for name in os.listdir(args.images):            # left behind by an interrupted run
        if name.startswith('.') and ('.partial-' in name or name.startswith('.frames-')):
            shutil.rmtree(os.path.join(args.images, name), ignore_errors=True)
    done = skipped = 0
    failed = []
    for folder, labels in tqdm(sorted(folders.items()), desc='crops (%s)' % args.backend):
        if os.path.isdir(os.path.join(args.images, folder)) and not args.force:
            skipped += 1
            continue
        try:
            write_folder(args, folder, labels)
            done += 1
        except ToolboxError as e:
            failed.append(str(e))
    print('%d folders of crops written, %d already done, %d failed' % (done, skipped, len(failed)))
    for message in failed[:30]:
        print('  failed: %s' % message)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
