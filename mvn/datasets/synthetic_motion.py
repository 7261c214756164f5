"""Synthetic people for the built-in dataset: plausible 17-joint motions, seen through the real
Human3.6M cameras, drawn as coloured stick figures.

Each (subject, action, subaction) gets one deterministic motion (as Human3.6M records one motion
with four synchronised cameras): a kinematic skeleton with the subject's bone lengths, joint
angles that follow the action (walking gait, sitting, arm gestures...), a heading and a path on
the floor. Units: millimetres in the world frame (z up) and camera frame, pixels on images.
"""
import functools
import math

import cv2
import numpy as np

from mvn.datasets.h36m_meta import ACTIONS, CAMERAS, CAMERA_IDS, CAMERA_RESOLUTION, JOINTS_LEFT, PARENTS

# Rest pose: offset of every joint from its parent, body frame (x: the person's left, y: forward,
# z: up), millimetres.
REST_OFFSETS = np.array([
    [0, 0, 0], [-130, 0, 0], [0, 0, -450], [0, 0, -440], [130, 0, 0], [0, 0, -450], [0, 0, -440],
    [0, 0, 230], [0, 0, 250], [0, 40, 110], [0, -20, 120],
    [150, 0, -20], [0, 0, -280], [0, 0, -250], [-150, 0, -20], [0, 0, -280], [0, 0, -250]], dtype=np.float64)

# Per action: base joint angles in degrees, oscillation amplitudes, and gait/travel speed.
# Angles: hip/knee flexion (legs), spine bend, shoulder raise (forward) and abduction, elbow flexion.
_STAND = dict(hip=0, knee=5, spine=5, sh_r=10, sh_l=10, ab_r=10, ab_l=10, el_r=15, el_l=15)
_SIT = dict(_STAND, hip=85, knee=85, spine=10)
ACTION_STYLES = {
    2: dict(_STAND, sh_r=70, el_r=10),                              # Directions: pointing
    3: dict(_STAND, sh_r=35, sh_l=35, el_r=70, el_l=70, gesture=25),  # Discussion
    4: dict(_SIT, sh_r=40, el_r=125, gesture=15),                   # Eating
    5: dict(_STAND, ab_r=120, el_r=30, gesture=30),                 # Greeting: waving
    6: dict(_STAND, sh_r=45, ab_r=30, el_r=145),                    # Phoning
    7: dict(_STAND, ab_r=80, ab_l=80, el_r=5, el_l=5),              # Posing
    8: dict(_STAND, sh_r=45, el_r=50, gait=0.6, speed=400),         # Purchases
    9: dict(_SIT, el_r=40, el_l=40),                                # Sitting
    10: dict(_SIT, hip=110, knee=125, spine=30),                    # SittingDown
    11: dict(_STAND, sh_r=35, el_r=130, gesture=20),                # Smoking
    12: dict(_STAND, sh_r=65, sh_l=65, el_r=120, el_l=120),         # TakingPhoto
    13: dict(_STAND, spine=0, el_r=60, el_l=60, sway=8),            # Waiting
    14: dict(_STAND, gait=1.0, speed=1200),                         # Walking
    15: dict(_STAND, spine=20, sh_r=30, el_r=20, gait=0.8, speed=900),   # WalkingDog
    16: dict(_STAND, ab_l=25, el_l=40, gait=0.9, speed=1000),       # WalkingTogether
}
assert sorted(ACTION_STYLES) == ACTIONS


def rotation(axis, degrees):
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    if axis == 'x':
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == 'y':
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def forward_kinematics(local_rotations, offsets, root_rotation):
    """World-frame joints (17, 3) relative to the root from per-joint rotations (17, 3, 3)."""
    joints = np.zeros((17, 3))
    frames = [None] * 17
    for j, parent in enumerate(PARENTS):
        if parent < 0:
            frames[j] = root_rotation @ local_rotations[j]
            continue
        joints[j] = joints[parent] + frames[parent] @ offsets[j]
        frames[j] = frames[parent] @ local_rotations[j]
    return joints


class Motion:
    """The motion of one (subject, action, subaction), sampled at ``fps``."""

    def __init__(self, subject, action, subaction, seed=0, fps=10.0):
        self.fps = fps
        rng = np.random.default_rng([seed, subject, action, subaction])
        body = np.random.default_rng([seed, subject])
        self.offsets = REST_OFFSETS * body.uniform(0.9, 1.1)          # the subject's size
        self.style = dict(ACTION_STYLES[action])
        self.phase = rng.uniform(0, 2 * math.pi, size=8)
        self.rate = rng.uniform(0.3, 0.6)
        self.heading = rng.uniform(0, 360)
        self.turn = rng.uniform(-20, 20)                               # degrees per second
        self.start = rng.uniform(-700, 700, size=2)
        self.jitter = rng.normal(0, 4, size=9)                         # a personal variant, degrees

    def _angles(self, t):
        s, p, w = self.style, self.phase, 2 * math.pi * self.rate * t
        gesture, sway = s.get('gesture', 0), s.get('sway', 0)
        a = {k: s[k] + j for k, j in zip(('hip', 'knee', 'spine', 'sh_r', 'sh_l', 'ab_r', 'ab_l', 'el_r', 'el_l'),
                                         self.jitter)}
        a['el_r'] += gesture * math.sin(w + p[0])
        a['el_l'] += gesture * math.sin(w + p[1])
        a['ab_r'] += 0.5 * gesture * math.sin(w + p[2])
        a['spine'] += 3 * math.sin(0.5 * w + p[3])
        hips = [a['hip'], a['hip']]
        knees = [a['knee'], a['knee']]
        if s.get('gait'):
            g = 2 * math.pi * 0.9 * s['gait'] * t + p[4]
            swing = 25 * math.sin(g)
            hips = [a['hip'] + swing, a['hip'] - swing]
            knees = [a['knee'] + 25 * (1 + math.sin(g - 1.2)), a['knee'] + 25 * (1 + math.sin(g + math.pi - 1.2))]
            a['sh_r'] -= 0.8 * swing
            a['sh_l'] += 0.8 * swing
        return a, hips, knees, sway * math.sin(w + p[5])

    def pose(self, t):
        """World-frame joints (17, 3) in mm at time t seconds, feet on the floor (z = 0)."""
        a, hips, knees, sway = self._angles(t)
        local = np.tile(np.eye(3), (17, 1, 1))
        local[1] = rotation('x', hips[0]) @ rotation('y', sway)       # right hip: flexion forward
        local[4] = rotation('x', hips[1]) @ rotation('y', sway)
        local[2] = rotation('x', -knees[0])                            # knees bend backwards
        local[5] = rotation('x', -knees[1])
        local[7] = rotation('x', a['spine'])
        local[14] = rotation('x', a['sh_r']) @ rotation('y', a['ab_r'])    # right shoulder
        local[11] = rotation('x', a['sh_l']) @ rotation('y', -a['ab_l'])   # left shoulder
        local[15] = rotation('x', a['el_r'])
        local[12] = rotation('x', a['el_l'])
        heading = self.heading + self.turn * t
        joints = forward_kinematics(local, self.offsets, rotation('z', heading))
        travel = self.style.get('speed', 60) * t
        direction = np.array([-math.sin(math.radians(heading)), math.cos(math.radians(heading))])
        xy = np.clip(self.start + travel * direction, -1800, 1800)
        joints[:, :2] += xy
        joints[:, 2] -= joints[[3, 6], 2].min() - 80.0                 # ankles 8 cm above the floor
        return joints

    def poses(self, num_frames):
        return np.stack([self.pose(i / self.fps) for i in range(num_frames)])


def world_to_camera(joints_world, subject, camera_index):
    """(..., 3) world mm -> camera frame mm with Human3.6M's calibration."""
    cam = CAMERAS[(subject, camera_index)]
    return (joints_world - cam.translation()) @ cam.rotation().T


def project_with_distortion(joints_cam, subject, camera_index):
    """(..., 3) camera-frame mm -> (..., 2) pixels, with the radial and tangential distortion."""
    cam = CAMERAS[(subject, camera_index)]
    xy = joints_cam[..., :2] / joints_cam[..., 2:3]
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    k1, k2, k3 = cam.k
    p1, p2 = cam.p
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([cam.f[0] * xd + cam.c[0], cam.f[1] * yd + cam.c[1]], axis=-1)


def frame_size(camera_index):
    """(width, height) of a camera's frames."""
    return CAMERA_RESOLUTION[CAMERA_IDS[camera_index - 1]]


@functools.lru_cache(maxsize=4)
def _background(camera_index):
    """A fixed backdrop per camera: a wall gradient, a darker floor and some texture."""
    width, height = frame_size(camera_index)
    rng = np.random.default_rng(camera_index)
    rows = np.linspace(0, 1, height)[:, None, None]
    wall = np.array([70, 60, 50]) + 40 * rows
    floor = (np.arange(height) > 0.62 * height)[:, None, None]
    # Smooth blotches rather than pixel noise: some texture, yet small JPEG files.
    blotches = cv2.resize(rng.normal(0, 10, size=(height // 25, width // 25)).astype(np.float32), (width, height),
                          interpolation=cv2.INTER_CUBIC)[:, :, None]
    image = np.where(floor, wall * 0.55, wall) + blotches
    return np.clip(image, 0, 255).astype(np.uint8)


def _limb_color(joint):
    if joint in (1, 2, 3, 14, 15, 16):
        return (40, 90, 230)        # right side: red-orange (BGR)
    if joint in JOINTS_LEFT:
        return (230, 150, 40)       # left side: blue
    return (60, 210, 210)           # torso and head: yellow


def render_frame(joints_2d, joints_cam, camera_index, background=None):
    """A BGR frame with the person drawn at ``joints_2d`` (17, 2) pixels, Human3.6M joint order;
    limb width and joint size shrink with depth (``joints_cam`` (17, 3) mm), farther limbs are
    drawn first. ``background``: the backdrop to draw on (default: the Human3.6M camera's)."""
    image = (_background(camera_index) if background is None else background).copy()
    pts = np.round(joints_2d).astype(int)
    limbs = sorted((j for j in range(17) if PARENTS[j] >= 0),
                   key=lambda j: -(joints_cam[j, 2] + joints_cam[PARENTS[j], 2]))
    for j in limbs:
        depth = 0.5 * (joints_cam[j, 2] + joints_cam[PARENTS[j], 2])
        thickness = max(2, int(60000 / max(depth, 1000)))
        cv2.line(image, tuple(pts[PARENTS[j]]), tuple(pts[j]), _limb_color(j), thickness, cv2.LINE_AA)
    for j in range(17):
        radius = max(2, int(40000 / max(joints_cam[j, 2], 1000)))
        shade = 80 + 10 * j
        cv2.circle(image, tuple(pts[j]), radius, (shade, 255 - shade, 200), -1, cv2.LINE_AA)
    head_radius = max(4, int(450000 / max(joints_cam[10, 2], 1000)) // 4)
    cv2.circle(image, tuple(pts[10]), head_radius, (150, 200, 240), -1, cv2.LINE_AA)
    return image


def cpn_like_detections(joints_2d, seed):
    """Noisy 2D keypoints like a detector's: 4 px Gaussian error and rare 20 px outliers."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 4.0, size=joints_2d.shape)
    outliers = rng.random(joints_2d.shape[:-1]) < 0.04
    noise[outliers] += rng.normal(0, 20.0, size=(int(outliers.sum()), 2))
    return (joints_2d + noise).astype(np.float32)
