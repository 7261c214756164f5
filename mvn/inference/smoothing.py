"""Temporal smoothing for videos: the One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) and
people followed from frame to frame.

The One-Euro filter is a low-pass filter whose cut-off frequency rises with the signal's speed:
still keypoints are smoothed strongly (little jitter), fast ones lightly (little lag). With
``dt`` the time between frames (s):

    alpha(f) = 1 / (1 + 1 / (2 pi f dt))
    dx_hat = alpha(d_cutoff) * (x - x_hat_prev) / dt + (1 - alpha(d_cutoff)) * dx_hat_prev
    f = min_cutoff + beta * |dx_hat|
    x_hat = alpha(f) * x + (1 - alpha(f)) * x_hat_prev

The first sample passes unchanged. Video inference smooths each person's box (before cropping)
and 2D keypoints (before the 3D model, so the 3D pose follows them).
"""
import math

import numpy as np

from mvn.inference.boxes import iou

# Settings for pixel coordinates at video frame rates (a cut-off of 1.5 Hz when still).
PIXEL_FILTER = dict(min_cutoff=1.5, beta=0.02, d_cutoff=1.0)


class OneEuroFilter:
    """Smooths arrays of any fixed shape, element-wise (module docstring)."""

    def __init__(self, min_cutoff=1.0, beta=0.0, d_cutoff=1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x_hat = None
        self.dx_hat = None

    @staticmethod
    def alpha(cutoff, dt):
        return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))

    def __call__(self, x, dt):
        x = np.asarray(x, dtype=np.float64)
        if self.x_hat is None:
            self.x_hat, self.dx_hat = x.copy(), np.zeros_like(x)
            return x.copy()
        a_d = self.alpha(self.d_cutoff, dt)
        self.dx_hat = a_d * (x - self.x_hat) / dt + (1 - a_d) * self.dx_hat
        a = self.alpha(self.min_cutoff + self.beta * np.abs(self.dx_hat), dt)
        self.x_hat = a * x + (1 - a) * self.x_hat
        return self.x_hat.copy()


class Tracks:
    """People followed over a video: each frame's boxes are matched greedily (highest overlap
    first, at least ``min_iou``) to the last boxes of the people seen before; unmatched boxes
    start new tracks, people not seen for ``max_missing`` frames are dropped. Each track keeps
    a One-Euro filter per named quantity."""

    def __init__(self, min_iou=0.3, max_missing=10, settings=PIXEL_FILTER):
        self.min_iou, self.max_missing, self.settings = min_iou, max_missing, settings
        self.tracks = []            # dicts: box, missing, filters
        self.next_id = 0

    def assign(self, boxes):
        """Track ids of ``boxes`` (list of [x0, y0, x1, y1]) in this frame, in their order."""
        pairs = sorted(((iou(b, t['box']), i, k) for i, b in enumerate(boxes) for k, t in enumerate(self.tracks)),
                       reverse=True)
        ids, used = [None] * len(boxes), set()
        for overlap, i, k in pairs:
            if overlap < self.min_iou:
                break
            if ids[i] is None and k not in used:
                ids[i], _ = self.tracks[k]['id'], used.add(k)
        for k, track in enumerate(self.tracks):
            track['missing'] = 0 if k in used else track['missing'] + 1
        self.tracks = [t for t in self.tracks if t['missing'] <= self.max_missing]
        for i, box in enumerate(boxes):
            if ids[i] is None:
                ids[i] = self.next_id
                self.tracks.append({'id': self.next_id, 'box': box, 'missing': 0, 'filters': {}})
                self.next_id += 1
        for i, box in enumerate(boxes):
            self._track(ids[i])['box'] = box
        return ids

    def _track(self, track_id):
        return next(t for t in self.tracks if t['id'] == track_id)

    def smooth(self, track_id, name, value, dt):
        """``value`` of quantity ``name`` of person ``track_id``, filtered."""
        filters = self._track(track_id)['filters']
        if name not in filters:
            filters[name] = OneEuroFilter(**self.settings)
        return filters[name](value, dt)
