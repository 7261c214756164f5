"""What demo.py does with an estimator: every frame of an image, a folder or a video through it,
``results.json``, and a picture per image or a video per video (the frame with its 2D skeletons
beside a 3D view), with tqdm progress."""
import os

import cv2
import numpy as np
from tqdm import tqdm

from mvn.datasets.h36m_meta import JOINTS_LEFT, JOINTS_RIGHT, PARENTS
from mvn.inference.media import (InputError, VideoReader, list_inputs, person_json, read_image, write_results,
                                 write_results_npz)
from mvn.utils.io import atomic_open
from mvn.utils.render import SkeletonView, draw_skeleton_2d, edges_from_parents, fit_height, put_label

EDGES = edges_from_parents(PARENTS)
MIN_HEIGHT, MAX_HEIGHT = 360, 720       # rendering height range (pixels)


class SameForEveryFrame:
    """{frame index: value} that holds ``value`` for every frame (--box)."""

    def __init__(self, value):
        self.value = value

    def __contains__(self, index):
        return True

    def __getitem__(self, index):
        return self.value


def render_height(frame_height):
    return int(min(MAX_HEIGHT, max(MIN_HEIGHT, frame_height))) // 2 * 2     # even: video codecs want it


class Renderer:
    """Pictures of results: the frame with 2D skeletons and boxes, scaled to ``height``, beside a
    height x height 3D view of the root-relative poses (people side by side, by their box
    position)."""

    def __init__(self, height):
        self.height = height
        self.view = SkeletonView(EDGES, JOINTS_LEFT, JOINTS_RIGHT, size=(height, height))

    def __call__(self, frame, people, caption=''):
        h, w = frame.shape[:2]
        scale = self.height / h
        picture = fit_height(frame, self.height).copy()
        for person in people:
            x0, y0, x1, y1 = (np.asarray(person['box']) * scale).round().astype(int)
            cv2.rectangle(picture, (int(x0), int(y0)), (int(x1), int(y1)), (0, 200, 255), 1)
            draw_skeleton_2d(picture, np.asarray(person['keypoints_2d']) * scale, EDGES, JOINTS_LEFT, JOINTS_RIGHT)
        poses = []
        for person in people:
            shift = (0.5 * (person['box'][0] + person['box'][2]) / w - 0.5) * 2.5 if len(people) > 1 else 0.0
            poses.append(np.asarray(person['keypoints_3d']) + [shift, 0.0, 0.0])
        view = self.view.render(poses)
        if caption:
            put_label(picture, caption)
        if not people:
            put_label(view, 'nobody found', (8, self.height - 12))
        out = np.concatenate([picture, view], axis=1)
        return out[:, :out.shape[1] // 2 * 2]


def _frame_entry(index, people):
    return {'frame': index, 'people': [person_json(p) for p in people]}


def output_name(path, taken, suffix):
    """``<stem><suffix>``, with the extension added when two inputs share a stem."""
    stem, ext = os.path.splitext(os.path.basename(path))
    name = stem + suffix
    if name in taken:
        name = '%s_%s%s' % (stem, ext.lstrip('.'), suffix)
    taken.add(name)
    return name


def write_image(path, image):
    ok, data = cv2.imencode(os.path.splitext(path)[1], image)
    if not ok:
        raise InputError('cannot encode %s' % path)
    with atomic_open(path) as f:
        f.write(data.tobytes())


def _check_not_an_input(path, inputs):
    if any(os.path.abspath(path) == os.path.abspath(p) for p in inputs):
        raise InputError('output %s would overwrite an input; choose another --output' % path)


def run_images(estimator, files, output, boxes=None, keypoints=None, render=True, progress=True):
    """Every image through ``estimator``; a PNG each; returns the results' frame entries."""
    entries, taken = [], set()
    frames = _kept(read_image(path) for path in files)
    people_per_frame = estimator.run(frames, boxes=boxes, keypoints=keypoints, track=False)
    # Closed on any exit, so that an error message starts on a line of its own.
    with tqdm(zip(files, people_per_frame), total=len(files), desc='images', disable=not progress,
              dynamic_ncols=True) as bar:
        for index, (path, people) in enumerate(bar):
            entries.append(_frame_entry(index, people))
            if render:
                target = os.path.join(output, output_name(path, taken, '.png'))
                _check_not_an_input(target, files)
                image = frames.last[index]
                write_image(target, Renderer(render_height(image.shape[0]))(image, people))
            frames.forget_before(index)
    return entries


def run_video(estimator, path, output, boxes=None, keypoints=None, smooth=True, render=True, gif=False,
              progress=True):
    """Every frame of the video at ``path``; an MP4 at its frame rate (and a GIF); returns
    (frame entries, fps)."""
    reader = VideoReader(path)
    entries, writer, gif_frames = [], None, []
    target = os.path.join(output, os.path.splitext(os.path.basename(path))[0] + '.mp4')
    _check_not_an_input(target, [path])
    partial = os.path.join(output, '.%s.partial.mp4' % os.path.basename(target))
    renderer = Renderer(render_height(reader.size[1]))
    frames = _kept(reader)
    try:
        results = estimator.run(frames, boxes=boxes, keypoints=keypoints, smooth=smooth, fps=reader.fps)
        with tqdm(results, total=reader.frame_count, desc='video', disable=not progress, dynamic_ncols=True) as bar:
            for index, people in enumerate(bar):
                entries.append(_frame_entry(index, people))
                if render:
                    picture = renderer(frames.last[index], people)
                    writer = writer or _video_writer(partial, target, reader.fps, picture.shape)
                    writer.write(picture)
                    if gif:
                        gif_frames.append(cv2.cvtColor(fit_height(picture, 240), cv2.COLOR_BGR2RGB))
                frames.forget_before(index)
    except BaseException:
        if writer is not None:
            writer.release()
            os.remove(partial)              # no half video left behind
        raise
    if writer is not None:
        writer.release()
        os.replace(partial, target)
    if gif_frames:
        write_gif(os.path.join(output, os.path.splitext(os.path.basename(path))[0] + '.gif'), gif_frames, reader.fps)
    return entries, reader.fps


def _video_writer(path, target, fps, shape):
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps, (shape[1], shape[0]))
    if not writer.isOpened():
        raise InputError('cannot write video %s (no mp4v encoder in this OpenCV build)' % target)
    return writer


class _kept:
    """Iterates a video's frames and keeps those not yet rendered (the estimator works in batches)."""

    def __init__(self, frames):
        self.frames = frames
        self.last = {}

    def __iter__(self):
        for index, frame in enumerate(self.frames):
            self.last[index] = frame
            yield frame

    def forget_before(self, index):
        for k in [k for k in self.last if k <= index]:
            del self.last[k]


def write_gif(path, frames_rgb, fps):
    """An animated GIF (Pillow, which torchvision brings) at up to 15 frames/s."""
    from PIL import Image
    step = max(1, int(round(fps / 15.0)))
    # Fast octree palettes: the default median cut takes about a second per frame.
    images = [Image.fromarray(f).quantize(method=Image.Quantize.FASTOCTREE) for f in frames_rgb[::step]]
    with atomic_open(path) as f:
        images[0].save(f, format='GIF', save_all=True, append_images=images[1:], duration=int(1000 * step / fps),
                       loop=0)


def run(estimator, input_path, output, boxes=None, keypoints=None, smooth=True, render=True, gif=False,
        progress=True, npz=False):
    """The demo: results.json (+ pictures or a video; + results.npz with ``npz``) for
    ``input_path`` in ``output``; returns the results.json path."""
    kind, items = list_inputs(input_path)
    os.makedirs(output, exist_ok=True)
    extra = {'input': os.path.abspath(input_path)}
    if kind == 'video':
        entries, fps = run_video(estimator, items, output, boxes, keypoints, smooth, render, gif, progress)
        extra['fps'] = fps
    else:
        entries = run_images(estimator, items, output, boxes, keypoints, render, progress)
        extra['files'] = [os.path.basename(p) for p in items]
    target = os.path.join(output, 'results.json')
    _check_not_an_input(target, [input_path] + ([] if kind == 'video' else items))
    write_results(target, entries, **extra)
    if npz:
        write_results_npz(os.path.join(output, 'results.npz'), entries)
    return target
