"""Reading frames: BGR uint8 as the official loader reads them, with one-line errors."""
import ctypes
import functools

import cv2
import numpy as np

from mvn.utils.img import is_truncated_jpeg


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
    _keep_image_buffers()
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError('missing image: %s' % path) from None
    except OSError as e:
        raise DataError('cannot read image %s: %s' % (path, e.strerror)) from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    truncated = is_truncated_jpeg(data)
    if image is None or truncated:
        raise DataError('corrupt or unreadable image: %s' % path)
    return image
