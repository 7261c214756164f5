"""Inputs and outputs of in-the-wild inference: images, folders and videos in; the user's 2D
keypoints; results.json out. Every problem is an InputError naming the file.

Images are read as 8-bit BGR whatever they hold: grey becomes three equal channels, 16-bit
values are divided by 257 (65535 -> 255), float images (0..1) are scaled by 255, an alpha
channel is composited over white, and a JPEG's EXIF orientation is applied (a phone photo shows
upright; the training frames are read without it, ``mvn.datasets.images``).
"""
import json
import os

import cv2
import numpy as np

from mvn.utils.img import is_truncated_jpeg
from mvn.utils.io import atomic_open

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.jp2', '.pgm', '.ppm')


class InputError(ValueError):
    """An input (image, video, folder, keypoints file) that cannot be used; names it."""


def to_bgr8(image):
    """Any decoded image (h, w), (h, w, 1|3|4), uint8/uint16/float -> (h, w, 3) uint8 BGR."""
    if image.dtype == np.uint16:
        image = np.round(image.astype(np.float32) / 257.0).astype(np.uint8)
    elif image.dtype.kind == 'f':
        image = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InputError('unsupported pixel type %s' % image.dtype)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        alpha = image[..., 3:].astype(np.float32) / 255.0
        over_white = image[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.round(over_white).astype(np.uint8)
    return np.ascontiguousarray(image[..., :3])


def read_image(path):
    """(h, w, 3) uint8 BGR (module docstring), or InputError naming ``path``."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise InputError('image not found: %s' % path) from None
    except OSError as e:
        raise InputError('cannot read image %s: %s' % (path, e.strerror)) from None
    # IMREAD_COLOR applies the EXIF orientation (IMREAD_UNCHANGED would not); ANYDEPTH keeps 16 bits.
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH) if data.size else None
    truncated = is_truncated_jpeg(data)
    if image is None or truncated:
        raise InputError('corrupt or unreadable image: %s' % path)
    raw = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if raw is not None and raw.ndim == 3 and raw.shape[2] == 4:
        image = raw                       # keep the alpha channel to composite it
    return to_bgr8(image)


class VideoReader:
    """Frames of a video as BGR uint8, with its frame rate and size; InputError when it cannot be
    opened or yields no frame."""

    def __init__(self, path):
        self.path = path
        self.capture = cv2.VideoCapture(path)
        if not self.capture.isOpened():
            raise InputError('cannot open video: %s' % path)
        ok, self.first = self.capture.read()
        if not ok or self.first is None:
            self.capture.release()
            raise InputError('unreadable video (no frame could be decoded): %s' % path)
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 30.0
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 else None     # containers may not tell

    @property
    def size(self):
        return self.first.shape[1], self.first.shape[0]

    def __iter__(self):
        frame, self.first = self.first, None
        while frame is not None:
            yield to_bgr8(frame)
            ok, frame = self.capture.read()
            if not ok:
                frame = None
        self.capture.release()


def list_inputs(path):
    """('image', [path]), ('folder', [image paths, sorted]) or ('video', path)."""
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path)
                       if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(path, f)))
        if not files:
            raise InputError('no images (%s) in folder %s' % (', '.join(IMAGE_EXTENSIONS), path))
        return 'folder', files
    if not os.path.exists(path):
        raise InputError('input not found: %s' % path)
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return 'image', [path]
    return 'video', path


def _people_from_json(entry, where):
    people = entry.get('people', []) if isinstance(entry, dict) else entry
    if not isinstance(people, list):
        raise InputError('%s: expected a list of people' % where)
    return people


def _person(value, layout, where):
    """A person of a keypoints file -> {'keypoints_2d_coco' | 'keypoints_2d': (17, 2), scores, box}."""
    box = None
    if isinstance(value, dict):
        box = value.get('box')
        found = [k for k in ('keypoints_2d_coco', 'keypoints_2d', 'keypoints') if value.get(k) is not None]
        if not found:
            raise InputError('%s: a person needs keypoints_2d_coco, keypoints_2d or keypoints' % where)
        if found[0] != 'keypoints':
            layout = 'coco' if found[0] == 'keypoints_2d_coco' else 'h36m'
        value = value[found[0]]
    points = np.asarray(value, dtype=np.float64)
    if points.shape not in ((17, 2), (17, 3)) or not np.all(np.isfinite(points)):
        raise InputError('%s: keypoints must be 17 x 2 (or 17 x 3 with scores) finite numbers, got shape %s'
                         % (where, points.shape))
    if layout not in ('coco', 'h36m'):
        raise InputError("%s: say whether keypoints are COCO- or Human3.6M-ordered ('layout': 'coco' or 'h36m', "
                         "or the keys keypoints_2d_coco / keypoints_2d)" % where)
    key = 'keypoints_2d_coco' if layout == 'coco' else 'keypoints_2d'
    person = {key: points[:, :2], key.replace('keypoints', 'scores'): points[:, 2] if points.shape[1] == 3 else None}
    if box is not None:
        person['box'] = np.asarray(box, np.float64)
    return person


def load_keypoints_file(path):
    """The user's 2D keypoints (frame pixels) -> {frame index: [person, ...]} for Pose3DEstimator.run.

    JSON: results.json's form ({"frames": [{"frame": i, "people": [{"keypoints_2d_coco": ...}]}]}),
    or a list per frame of people; a person is a dict with keypoints_2d_coco (COCO order),
    keypoints_2d (Human3.6M order) or keypoints (+ a top-level "layout": "coco" | "h36m"), or a
    bare 17 x 2|3 list (then "layout" is required). NPZ: keypoints_2d_coco or keypoints_2d, or
    keypoints with layout, shaped (F, 17, 2|3) or (F, P, 17, 2|3); a third column is a score."""
    if not os.path.isfile(path):
        raise InputError('keypoints file not found: %s' % path)
    if path.lower().endswith('.npz'):
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as e:
            raise InputError('cannot read keypoints file %s: %s' % (path, str(e).splitlines()[0])) from None
        found = [k for k in ('keypoints_2d_coco', 'keypoints_2d', 'keypoints') if k in arrays]
        if not found:
            raise InputError('%s holds none of keypoints_2d_coco, keypoints_2d, keypoints' % path)
        layout = {'keypoints_2d_coco': 'coco', 'keypoints_2d': 'h36m'}.get(found[0], str(arrays.get('layout', '')))
        points = arrays[found[0]]
        points = points[:, None] if points.ndim == 3 else points
        if points.ndim != 4:
            raise InputError('%s: %s must be (frames, 17, 2|3) or (frames, people, 17, 2|3), got %s'
                             % (path, found[0], points.shape))
        return {f: [_person(p, layout, '%s, frame %d' % (path, f)) for p in points[f]] for f in range(len(points))}
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError('cannot read keypoints file %s: %s' % (path, str(e).splitlines()[0])) from None
    layout = data.get('layout') if isinstance(data, dict) else None
    frames = data.get('frames') if isinstance(data, dict) else data
    if not isinstance(frames, list):
        raise InputError('%s: expected a list of frames or {"frames": [...]}' % path)
    out = {}
    for i, entry in enumerate(frames):
        index = int(entry.get('frame', i)) if isinstance(entry, dict) else i
        where = '%s, frame %d' % (path, index)
        out[index] = [_person(p, layout, where) for p in _people_from_json(entry, where)]
    return out


def _rounded(array, digits):
    return None if array is None else np.round(np.asarray(array, np.float64), digits).tolist()


def person_json(person):
    """The results.json form of a person: box and 2D keypoints in pixels, 3D in metres."""
    return {'box': _rounded(person['box'], 2), 'score': round(float(person['score']), 4),
            'keypoints_2d_coco': _rounded(person.get('keypoints_2d_coco'), 2),
            'keypoints_2d': _rounded(person['keypoints_2d'], 2),
            'keypoints_3d': _rounded(person['keypoints_3d'], 5)}


def write_results(path, frames, **extra):
    """results.json: {"frames": [{"frame": i, "people": [...]}, ...], **extra}, written atomically."""
    with atomic_open(path, 'w') as f:
        json.dump(dict(frames=frames, **extra), f)


def write_results_npz(path, frames):
    """The same results as arrays, one row per person (long videos): frame (P,) int, box (P, 4),
    score (P,), keypoints_2d_coco (P, 17, 2) (NaN where not known), keypoints_2d (P, 17, 2)
    pixels, keypoints_3d (P, 17, 3) metres; and frame_count."""
    people = [(entry['frame'], p) for entry in frames for p in entry['people']]

    def column(key, shape):
        rows = [np.full(shape, np.nan) if p[key] is None else np.asarray(p[key], np.float64) for _, p in people]
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0,) + shape, np.float32)
    with atomic_open(path) as f:
        np.savez(f, frame=np.array([i for i, _ in people], np.int64), box=column('box', (4,)),
                 score=np.array([p['score'] for _, p in people], np.float32),
                 keypoints_2d_coco=column('keypoints_2d_coco', (17, 2)), keypoints_2d=column('keypoints_2d', (17, 2)),
                 keypoints_3d=column('keypoints_3d', (17, 3)), frame_count=np.array(len(frames)))
