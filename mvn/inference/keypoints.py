"""2D keypoints: HRNet heatmap decoding, its flip test, and COCO-17 -> Human3.6M-17.

Decoding follows the COCO HRNet release (deep-high-resolution-net.pytorch, ``get_max_preds`` and
``get_final_preds`` with ``POST_PROCESS``; ``flip_back`` with ``SHIFT_HEATMAP``), rewritten:

* the peak of each heatmap is its argmax (first in row-major order on ties); its value is the
  keypoint's score; a joint whose peak is <= 0 is placed at (0, 0);
* the peak moves a quarter cell towards the higher of its two neighbours, in x and in y
  separately (no move on a tie), but only where 1 < x < W-1 and 1 < y < H-1 (HRNet's bounds,
  which also leave out the second column and row);
* flip test: the heatmaps of the mirrored crop are mirrored back, their left/right channels
  exchanged, shifted one cell to the right (column 0 keeps its value) and averaged with the
  plain ones before decoding.

Heatmap cells are 4 crop pixels (a 48x64 map of a 192x256 crop): crop pixel = 4 * cell, as the
HRNet training targets place a joint at cell int(pixel / 4 + 0.5).

COCO-17 -> Human3.6M-17 (pixels, scores alike; means of the named points):

    H36M joint        from COCO                   H36M joint         from COCO
    0 pelvis          mid-hip (11, 12)            9 neck/nose        nose (0)
    1-3 right hip,    right hip, knee, ankle      10 head            mid-eye (1, 2)
        knee, ankle   (12, 14, 16)                11-13 left         left shoulder, elbow,
    4-6 left ...      (11, 13, 15)                    shoulder ...   wrist (5, 7, 9)
    7 spine           mid-pelvis-thorax           14-16 right ...    (6, 8, 10)
    8 thorax          mid-shoulder (5, 6)

(the mapping commonly used to feed COCO detections to Human3.6M lifters, e.g. MotionBERT's).
"""
import numpy as np

COCO_JOINT_NAMES = ('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder', 'right_shoulder',
                    'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip', 'right_hip',
                    'left_knee', 'right_knee', 'left_ankle', 'right_ankle')
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
# Limbs of the COCO skeleton, for drawing: (joint, joint).
COCO_EDGES = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
              (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4))
HEATMAP_STRIDE = 4          # crop pixels per heatmap cell

# Human3.6M-17 joint j = mean of the COCO joints COCO_TO_H36M[j]; 7 (spine) and 8 (thorax) are
# computed from the other H36M joints (see coco_to_h36m).
COCO_TO_H36M = {0: (11, 12), 1: (12,), 2: (14,), 3: (16,), 4: (11,), 5: (13,), 6: (15,), 8: (5, 6), 9: (0,),
                10: (1, 2), 11: (5,), 12: (7,), 13: (9,), 14: (6,), 15: (8,), 16: (10,)}


def coco_flip_permutation():
    perm = list(range(17))
    for a, b in COCO_FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


def heatmap_peaks(heatmaps):
    """Argmax of each heatmap. heatmaps (..., H, W) -> (coords (..., 2) float64 cells (x, y),
    scores (...,)); coords of a peak <= 0 are (0, 0) (HRNet's mask)."""
    heatmaps = np.asarray(heatmaps)
    h, w = heatmaps.shape[-2:]
    flat = heatmaps.reshape(heatmaps.shape[:-2] + (h * w,))
    index = flat.argmax(axis=-1)
    scores = np.take_along_axis(flat, index[..., None], axis=-1)[..., 0]
    coords = np.stack([index % w, index // w], axis=-1).astype(np.float64)
    coords *= (scores > 0)[..., None]
    return coords, scores


def decode_heatmaps(heatmaps):
    """HRNet decoding (module docstring): heatmaps (N, K, H, W) -> (coords (N, K, 2) cells,
    scores (N, K))."""
    heatmaps = np.asarray(heatmaps, dtype=np.float64)
    coords, scores = heatmap_peaks(heatmaps)
    h, w = heatmaps.shape[-2:]
    for n, k in np.ndindex(*coords.shape[:2]):
        hm = heatmaps[n, k]
        x, y = int(np.floor(coords[n, k, 0] + 0.5)), int(np.floor(coords[n, k, 1] + 0.5))
        if 1 < x < w - 1 and 1 < y < h - 1:
            diff = np.array([hm[y, x + 1] - hm[y, x - 1], hm[y + 1, x] - hm[y - 1, x]])
            coords[n, k] += np.sign(diff) * 0.25
    return coords, scores


def merge_flipped_heatmaps(heatmaps, heatmaps_of_mirror, flip_permutation):
    """HRNet's flip test on (N, K, H, W) arrays (numpy or torch): the mirrored crop's heatmaps
    mirrored back, channels exchanged, shifted right one cell, averaged with ``heatmaps``."""
    back = heatmaps_of_mirror[:, list(flip_permutation)]
    back = back[..., ::-1] if isinstance(back, np.ndarray) else back.flip(-1)
    shifted = back.copy() if isinstance(back, np.ndarray) else back.clone()
    shifted[..., 1:] = back[..., :-1]
    return (heatmaps + shifted) * 0.5


def coco_to_h36m(keypoints, scores=None):
    """COCO-17 (..., 17, 2) points (and optional (..., 17) scores) -> Human3.6M-17 (module
    docstring). Returns points (float64), or (points, scores) when scores are given."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    out = np.zeros_like(keypoints)
    for j, sources in COCO_TO_H36M.items():
        out[..., j, :] = keypoints[..., list(sources), :].mean(axis=-2)
    out[..., 7, :] = (out[..., 0, :] + out[..., 8, :]) / 2
    if scores is None:
        return out
    scores = np.asarray(scores, dtype=np.float64)
    out_scores = np.zeros_like(scores)
    for j, sources in COCO_TO_H36M.items():
        out_scores[..., j] = scores[..., list(sources)].mean(axis=-1)
    out_scores[..., 7] = (out_scores[..., 0] + out_scores[..., 8]) / 2
    return out, out_scores
