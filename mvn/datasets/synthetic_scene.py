"""Backdrops with the statistics of real photographs, for synthetic frames that cost what real
Human3.6M frames cost to decode, crop and store.

The plain synthetic backdrop (``synthetic_motion._background``) is a smooth gradient: its JPEG
files are small and its crops compress far better than real ones, which would flatter every
figure of the data path. Here a backdrop is a "dead leaves" picture (overlapping shapes with
power-law sizes: edges at every scale and a roughly 1/f amplitude spectrum, as natural
images have), seen through slightly soft optics, with fine texture and, per frame, sensor
noise. A 1000x1000 Human3.6M-like frame (backdrop, person, noise) is about 100 KB as a quality-90
JPEG, as the real frames are.
"""
import functools

import cv2
import numpy as np


def _fractal_texture(rng, height, width, amplitude):
    """Zero-mean noise with a 1/f amplitude spectrum, (height, width) float32, std ``amplitude``."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.sqrt(fx * fx + fy * fy)
    radius[0, 0] = 1.0
    spectrum = (rng.normal(size=radius.shape) + 1j * rng.normal(size=radius.shape)) / radius
    spectrum[0, 0] = 0
    texture = np.fft.irfft2(spectrum, s=(height, width))
    return (amplitude * texture / texture.std()).astype(np.float32)


@functools.lru_cache(maxsize=4)
def natural_backdrop(width, height, seed, shapes=400):
    """A (height, width, 3) BGR uint8 backdrop: dead leaves (``shapes`` rectangles and ellipses,
    sizes from 4 to width/2 px with density ~ 1/size^3), soft optics, 1/f texture. Cached (the
    same array is returned again: do not draw on it)."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.float32)
    image[:] = rng.uniform(60, 160, size=3)
    # A muted palette, as a lab's walls, floor and equipment: colours pulled towards grey.
    palette = rng.uniform(20, 235, size=(24, 3))
    palette = 0.45 * palette + 0.55 * palette.mean(axis=1, keepdims=True)
    low, high = 4.0, width / 2.0
    # Inverse-CDF draw of r with p(r) ~ r^-3 on [low, high]; drawn largest first, so small
    # shapes lie on top, as the nearer leaves.
    u = rng.random(shapes)
    sizes = np.sort(1.0 / np.sqrt(low ** -2 - u * (low ** -2 - high ** -2)))[::-1]
    canvas = image.copy()
    for size in sizes:
        color = tuple(float(c) for c in np.clip(palette[rng.integers(len(palette))] + rng.normal(0, 8, 3), 0, 255))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            w, h = int(size), int(size * rng.uniform(0.3, 1.5))
            cv2.rectangle(canvas, (cx - w, cy - h), (cx + w, cy + h), color, -1, cv2.LINE_AA)
        else:
            axes = (int(size), int(size * rng.uniform(0.3, 1.0)))
            cv2.ellipse(canvas, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
    canvas = cv2.GaussianBlur(canvas, (0, 0), 1.5)
    canvas += _fractal_texture(rng, height, width, 1.5)[:, :, None]
    return np.clip(canvas, 0, 255).astype(np.uint8)


def add_sensor_noise(image, seed, sigma=0.8):
    """``image`` plus per-pixel Gaussian noise (std ``sigma`` grey levels), uint8."""
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.float32) + rng.normal(0, sigma, size=image.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)
