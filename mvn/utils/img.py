"""The crop: an affine map from a full frame to the network's 192x256 input.

A box is given by ``center`` (x, y) and ``scale`` (units of 200 px); only the width
``s = scale[0] * 200`` matters. The map sends the box centre to the crop centre
((W-1)/2, (H-1)/2) and the point (s-1)/2 above it to the point (W-1)/2 above the crop centre,
without rotation, so one frame pixel spans (W-1)/(s-1) crop pixels in both directions.
"""
import cv2
import numpy as np


def _third_point(a, b):
    """The point c with c - b = (a - b) turned by 90 degrees: fixes an affine map without shear."""
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=np.float32)


def crop_transform(center, scale, output_size=(192, 256), inverse=False):
    """2x3 float64 matrix mapping frame pixels to crop pixels (or back, with ``inverse``).

    The arithmetic keeps the dtypes of ``center`` and ``scale`` (float32 in labels made from
    Human3.6M's float32 files) and ends in cv2.getAffineTransform on float32 point pairs, exactly
    as the official code, so crops and the labels' ``*_crop`` keypoints agree to the last bit.
    """
    center = np.array(center)
    src_width = (np.array(scale) * 200.0)[0]
    dst_w, dst_h = output_size
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = center
    src[1] = center + np.array([0, (src_width - 1) * -0.5], np.float32)
    dst[0] = [(dst_w - 1) * 0.5, (dst_h - 1) * 0.5]
    dst[1] = np.array([(dst_w - 1) * 0.5, (dst_h - 1) * 0.5]) + np.array([0, (dst_w - 1) * -0.5], np.float32)
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    return cv2.getAffineTransform(dst, src) if inverse else cv2.getAffineTransform(src, dst)


def crop_image(image, center, scale, output_size=(192, 256)):
    """Bilinear warp of an (h, w, 3) frame into an (H, W, 3) crop; outside the frame is zero."""
    return warp_crop(image, crop_transform(center, scale, output_size), output_size)


def warp_crop(image, transform, output_size=(192, 256)):
    """``crop_image`` with its ``crop_transform`` already computed."""
    return cv2.warpAffine(image, transform, tuple(output_size), flags=cv2.INTER_LINEAR)


def transform_points(points, transform):
    """Applies a 2x3 affine matrix to (..., 2) points; returns float64."""
    points = np.asarray(points, dtype=np.float64)
    return points @ transform[:, :2].T + transform[:, 2]


def is_truncated_jpeg(data):
    """True for a JPEG byte array (uint8) without its end marker near the end: OpenCV decodes such a
    file with a grey bottom and only a warning, so the readers refuse it instead."""
    return data.size >= 2 and data[0] == 0xFF and data[1] == 0xD8 and b'\xff\xd9' not in data[-64:].tobytes()
