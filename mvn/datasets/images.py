"""Reading frames and crops: BGR uint8 as the official loader reads them, with one-line errors.

``read_crop`` is the dataset's crop. For a JPEG frame it decodes only the rows and columns the
crop reads (plus a margin) when the compiled partial decoder is built (``python setup.py
build_ext --inplace``, mvn/datasets/jpeg_region.c) and agrees with OpenCV's decoder; the crop is
then bit-identical to warping the whole decoded frame. Otherwise, and for any file the decoder
declines, it decodes the whole frame as the official loader does.
"""
import ctypes
import functools
import logging
import math
import os

import cv2
import numpy as np

from mvn.utils.img import crop_transform, is_truncated_jpeg, warp_crop

try:
    from mvn.datasets import _jpeg_region
except ImportError:             # not built: whole-frame decoding
    _jpeg_region = None

# Frame pixels decoded beyond those the bilinear warp can read, on every side: partial decoding
# may differ from a full decode in the outermost columns of a cropped row (libjpeg-turbo's
# libjpeg.txt, "Partial image decompression"); 16 covers any iMCU.
REGION_MARGIN = 16


class DataError(ValueError):
    """An image or label that cannot be read; the message names the file."""


@functools.cache
def _keep_image_buffers():
    """Decoding a 1000x1002 frame allocates and frees a ~3 MB buffer. With glibc's defaults such
    buffers go back to the kernel on every free, so each frame pays ~750 fresh page faults (this
    made item reads 2.3x slower). Keep up to 32 MiB of freed heap instead. Once per process: a
    forked loader worker inherits the setting with the cache, a spawned one sets it again."""
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):     # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 16 << 20)
    mallopt(m_trim_threshold, 32 << 20)


def read_image(path):
    """BGR uint8 (h, w, 3), EXIF orientation ignored, as the official loader reads frames."""
    return _decode(_read_bytes(path), path)


def read_crop(path, center, scale, output_size=(192, 256)):
    """The (H, W, 3) BGR crop of the frame at ``path`` for the box (center, scale): exactly
    ``crop_image(read_image(path), center, scale, output_size)``, decoding less when it can."""
    data = _read_bytes(path)
    transform = crop_transform(center, scale, output_size)
    frame = _partly_decoded(data, transform, output_size) if region_decoding_available() else None
    return warp_crop(_decode(data, path) if frame is None else frame, transform, output_size)


def _partly_decoded(data, transform, output_size):
    """The frame with every pixel the crop by ``transform`` reads decoded and the rest zero, or
    None for a file the partial decoder declines."""
    size = _jpeg_region.supported_size(data)
    if size is None or is_truncated_jpeg(data):
        return None
    _keep_image_buffers()
    width, height = size
    frame = np.zeros((height, width, 3), np.uint8)
    rectangle = source_rectangle(transform, output_size, width, height)
    if rectangle is None or _jpeg_region.decode_into(data, frame, width, height, *rectangle):
        return frame
    return None


def source_rectangle(transform, output_size, width, height, margin=REGION_MARGIN):
    """The frame pixels (x0, y0, x1, y1), end-exclusive, that bilinear warping of a ``width`` x
    ``height`` frame by ``transform`` (frame -> crop, 2x3) into ``output_size`` (W, H) can read,
    grown by ``margin`` and clipped to the frame; None when the crop lies wholly outside it.

    A crop pixel whose source position is x reads columns floor(x) and floor(x) + 1. OpenCV rounds x
    to the nearest 1/32 pixel first; when that lands on the next integer, the column after it gets
    the weight 0 exactly, so its value never matters. Rows likewise."""
    back = cv2.invertAffineTransform(transform)
    w, h = output_size
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], np.float64) @ back.T
    (left, top), (right, bottom) = corners.min(axis=0), corners.max(axis=0)
    x0, y0 = max(math.floor(left) - margin, 0), max(math.floor(top) - margin, 0)
    x1, y1 = min(math.floor(right) + 2 + margin, width), min(math.floor(bottom) + 2 + margin, height)
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


@functools.cache
def region_decoding_available():
    """True when the partial decoder is built, not switched off (environment variable
    CAPF_WHOLE_FRAME_DECODE=1) and gives OpenCV's pixels on a test frame in each layout it takes
    (checked once per process; a mismatch logs a warning and turns it off)."""
    if _jpeg_region is None or os.environ.get('CAPF_WHOLE_FRAME_DECODE') == '1':
        return False
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8), (5, 5), 1.5)
    for sampling in (cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
                     cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444):
        for progressive in (0, 1):
            data = cv2.imencode('.jpg', frame, [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling,
                                                cv2.IMWRITE_JPEG_PROGRESSIVE, progressive])[1]
            full = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
            canvas = np.zeros_like(full)
            if not (_jpeg_region.decode_into(data, canvas, 90, 70, 23, 17, 61, 53)
                    and np.array_equal(canvas[17:53, 23 + 8:61 - 8], full[17:53, 23 + 8:61 - 8])):
                logging.getLogger(__name__).warning(
                    'the partial JPEG decoder (libjpeg-turbo %s) disagrees with OpenCV %s on a test frame: '
                    'decoding whole frames', _jpeg_region.library_version(), cv2.__version__)
                return False
    return True


def decoding_description():
    """How ``read_crop`` decodes JPEG frames in this process, for the log."""
    if region_decoding_available():
        version = _jpeg_region.library_version()
        return 'decoding only the rows and columns each crop reads (libjpeg-turbo %d.%d.%d)' % (
            version // 1000000, version // 1000 % 1000, version % 1000)
    if _jpeg_region is None:
        return 'decoding whole frames (the partial decoder is not built: python setup.py build_ext --inplace)'
    if os.environ.get('CAPF_WHOLE_FRAME_DECODE') == '1':
        return 'decoding whole frames (CAPF_WHOLE_FRAME_DECODE=1)'
    return 'decoding whole frames'


def _read_bytes(path):
    try:
        return np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError('missing image: %s' % path) from None
    except OSError as e:
        raise DataError('cannot read image %s: %s' % (path, e.strerror)) from None


def _decode(data, path):
    _keep_image_buffers()
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if image is None or is_truncated_jpeg(data):
        raise DataError('corrupt or unreadable image: %s' % path)
    return image
