#!/usr/bin/env python3
"""Step 1: Human3.6M videos -> JPEG frames, with the official folder and file names.

    extracted/S1/Videos/Directions 1.54138969.mp4
        -> images/s_01_act_02_subact_01_ca_01/s_01_act_02_subact_01_ca_01_000001.jpg, ...

Frames are numbered from 1. Uses ffmpeg when it is installed (``-qscale:v 3``, as the official
script), OpenCV otherwise. Each sequence is extracted into a temporary folder and renamed into
place when complete, so finished sequences are skipped on the next run (unless ``--force``) and
an interrupted run resumes with the sequence it was working on.

Run from the toolbox folder with no arguments, or point --root elsewhere.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mvn.datasets import h36m_meta as meta  # noqa: E402

JPEG_QUALITY = 95          # OpenCV's quality closest to ffmpeg's -qscale:v 3


def extract_with_ffmpeg(video, folder, stem):
    command = ['ffmpeg', '-nostdin', '-nostats', '-loglevel', 'error', '-i', video, '-qscale:v', '3',
               os.path.join(folder, stem + '_%06d.jpg')]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError('ffmpeg failed on %s: %s' % (video, result.stderr.strip().splitlines()[-1:]))


def extract_with_opencv(video, folder, stem):
    capture = cv2.VideoCapture(video)
    if not capture.isOpened():
        raise RuntimeError('OpenCV cannot open video %s' % video)
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            index += 1
            path = os.path.join(folder, '%s_%06d.jpg' % (stem, index))
            if not cv2.imwrite(path, frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                raise RuntimeError('cannot write %s' % path)
    finally:
        capture.release()
    if index == 0:
        raise RuntimeError('no frame could be decoded from %s' % video)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', default='.', help='toolbox folder (default: the current folder)')
    parser.add_argument('--extracted', help='raw data folder (default ROOT/extracted)')
    parser.add_argument('--images', help='output folder (default ROOT/images)')
    parser.add_argument('--subjects', type=int, nargs='+', default=meta.SUBJECTS)
    parser.add_argument('--backend', choices=['auto', 'ffmpeg', 'opencv'], default='auto')
    parser.add_argument('--force', action='store_true', help='extract sequences that are already done again')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    extracted = args.extracted or os.path.join(args.root, 'extracted')
    images = args.images or os.path.join(args.root, 'images')
    backend = args.backend
    if backend == 'auto':
        backend = 'ffmpeg' if shutil.which('ffmpeg') else 'opencv'
    elif backend == 'ffmpeg' and not shutil.which('ffmpeg'):
        sys.exit('error: --backend ffmpeg but no ffmpeg on PATH')
    extract = extract_with_ffmpeg if backend == 'ffmpeg' else extract_with_opencv
    os.makedirs(images, exist_ok=True)
    for name in os.listdir(images):            # left behind by an interrupted run
        if name.startswith('.') and '.partial-' in name:
            shutil.rmtree(os.path.join(images, name), ignore_errors=True)

    done = skipped = 0
    missing, failed = [], []
    sequences = meta.sequences(args.subjects)
    for s, a, sa, c in tqdm(sequences, desc='videos (%s)' % backend):
        stem = meta.sequence_dirname(s, a, sa, c - 1)
        target = os.path.join(images, stem)
        if os.path.isdir(target) and not args.force:
            skipped += 1
            continue
        video = os.path.join(extracted, 'S%d' % s, 'Videos', meta.sequence_basename(s, a, sa, c) + '.mp4')
        if not os.path.isfile(video):
            missing.append(video)
            continue
        partial = tempfile.mkdtemp(prefix='.%s.partial-' % stem, dir=images)
        try:
            extract(video, partial, stem)
            if os.path.isdir(target):
                shutil.rmtree(target)
            os.replace(partial, target)
            done += 1
        except RuntimeError as e:
            failed.append(str(e))
        finally:
            if os.path.isdir(partial):
                shutil.rmtree(partial)

    print('%d sequences extracted, %d already done, %d videos missing, %d failed'
          % (done, skipped, len(missing), len(failed)))
    for path in missing[:20]:
        print('  missing: %s' % path)
    if len(missing) > 20:
        print('  ... and %d more' % (len(missing) - 20))
    for message in failed:
        print('  failed: %s' % message)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
