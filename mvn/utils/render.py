"""Fast skeleton renderings with OpenCV: 2D skeletons on frames, 3D skeletons seen by a virtual
camera, and the two side by side. No plotting library: a 1000x500 picture takes a few
milliseconds (``bench/bench_inference.py`` measures it), where matplotlib 3D takes hundreds.

Skeletons are given as ``edges`` [(joint, joint)] plus the ``left`` and ``right`` joints (drawn
in their own colours); nothing here knows a dataset's joint layout.
"""
import math

import cv2
import numpy as np

LEFT_COLOR = (230, 140, 40)       # BGR: blue-ish
RIGHT_COLOR = (40, 60, 230)       # red-ish
CENTER_COLOR = (90, 90, 90)
GRID_COLOR = (215, 215, 215)
BACKGROUND = 255


def edges_from_parents(parents):
    """[(joint, parent)] of a kinematic tree given as the parent of every joint (-1: root)."""
    return [(j, p) for j, p in enumerate(parents) if p >= 0]


def _edge_colors(edges, left, right):
    left, right = set(left), set(right)
    return [LEFT_COLOR if (a in left or b in left) else RIGHT_COLOR if (a in right or b in right) else CENTER_COLOR
            for a, b in edges]


def draw_skeleton_2d(canvas, points, edges, left=(), right=(), scores=None, threshold=0.0, thickness=None):
    """Draws (J, 2) pixel ``points`` on ``canvas`` (in place; returned): limbs coloured by side,
    joints as dots; limbs and joints whose score is <= ``threshold`` are left out."""
    points = np.asarray(points, np.float64)
    h, w = canvas.shape[:2]
    thickness = thickness or max(1, int(round(max(h, w) / 300)))
    visible = np.ones(len(points), bool) if scores is None else np.asarray(scores) > threshold
    visible &= np.all(np.isfinite(points), axis=1)
    pts = np.round(np.where(np.isfinite(points), points, 0)).astype(np.int32)
    for (a, b), color in zip(edges, _edge_colors(edges, left, right)):
        if visible[a] and visible[b]:
            cv2.line(canvas, (int(pts[a, 0]), int(pts[a, 1])), (int(pts[b, 0]), int(pts[b, 1])), color, thickness,
                     cv2.LINE_AA)
    for j in np.flatnonzero(visible):
        cv2.circle(canvas, (int(pts[j, 0]), int(pts[j, 1])), thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)
    return canvas


class SkeletonView:
    """A virtual perspective camera looking at root-relative 3D poses (metres, camera axes: x
    right, y down, z forward), from ``yaw`` degrees around the vertical axis and ``elevation``
    degrees above, ``distance`` metres away, on a size[0] x size[1] (width, height) panel with a
    floor grid under the feet."""

    def __init__(self, edges, left=(), right=(), size=(500, 500), yaw=-35.0, elevation=15.0, distance=4.0,
                 field_of_view=45.0, floor_extent=2.0, floor_step=0.5):
        self.edges = list(edges)
        self.colors = _edge_colors(self.edges, left, right)
        self.size = tuple(size)
        w, h = self.size
        self.focal = 0.5 * h / math.tan(math.radians(field_of_view) / 2)
        self.center = np.array([w / 2.0, h / 2.0])
        y, p = math.radians(yaw), math.radians(elevation)
        turn = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
        tilt = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
        self.rotation = tilt @ turn
        self.distance = distance
        ticks = np.arange(-floor_extent, floor_extent + 1e-9, floor_step)
        lines = [((t, -floor_extent), (t, floor_extent)) for t in ticks] + \
                [((-floor_extent, t), (floor_extent, t)) for t in ticks]
        self.floor = np.array(lines, np.float64)          # (L, 2 ends, (x, z)) on the floor plane
        self.background = np.full((h, w, 3), BACKGROUND, np.uint8)

    def project(self, points):
        """(N, 3) pose-space metres -> (N, 2) panel pixels and (N,) depths."""
        cam = np.asarray(points, np.float64) @ self.rotation.T
        cam[:, 2] += self.distance
        depth = np.maximum(cam[:, 2], 1e-3)
        return cam[:, :2] / depth[:, None] * self.focal + self.center, depth

    def render(self, poses, canvas=None):
        """Draws (J, 3) pose(s) (one array or a list; root-relative metres) -> (h, w, 3) uint8."""
        canvas = self.background.copy() if canvas is None else canvas
        poses = [poses] if isinstance(poses, np.ndarray) and poses.ndim == 2 else list(poses)
        poses = [np.asarray(p, np.float64) for p in poses if p is not None and np.all(np.isfinite(p))]
        floor_y = max((p[:, 1].max() for p in poses), default=0.9)
        ends = np.concatenate([self.floor[:, :, :1], np.full(self.floor.shape[:2] + (1,), floor_y),
                               self.floor[:, :, 1:]], axis=2).reshape(-1, 3)
        uv, _ = self.project(ends)
        uv = np.round(uv).astype(np.int32).reshape(-1, 2, 2)
        for a, b in uv:
            cv2.line(canvas, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), GRID_COLOR, 1)
        thickness = max(2, int(round(self.size[1] / 160)))
        for pose in poses:
            uv, depth = self.project(pose)
            pts = np.round(uv).astype(np.int32)
            # Far limbs first, so near ones are drawn over them.
            order = np.argsort([-(depth[a] + depth[b]) for a, b in self.edges])
            for k in order:
                a, b = self.edges[k]
                cv2.line(canvas, (int(pts[a, 0]), int(pts[a, 1])), (int(pts[b, 0]), int(pts[b, 1])), self.colors[k],
                         thickness, cv2.LINE_AA)
            for x, y in pts:
                cv2.circle(canvas, (int(x), int(y)), thickness, (60, 60, 60), -1, cv2.LINE_AA)
        return canvas


def fit_height(image, height):
    """``image`` scaled to ``height`` pixels, aspect kept (area filter when shrinking)."""
    h, w = image.shape[:2]
    if h == height:
        return image
    width = max(1, int(round(w * height / h)))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if height < h else cv2.INTER_LINEAR)


def side_by_side(left, right):
    """Two pictures of the same height next to each other."""
    return np.concatenate([left, right], axis=1)


def put_label(image, text, origin=(8, 22), scale=0.6):
    """Dark text with a light outline, readable on any background (in place)."""
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (30, 30, 30), 1, cv2.LINE_AA)
    return image
