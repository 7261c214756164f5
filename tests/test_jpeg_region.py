"""The exact crop without a cache (#8 item 2): decoding only the rows and columns a crop reads gives,
pixel for pixel, the crop of OpenCV's whole-frame decode, on every JPEG layout it takes; every
other file goes through the whole-frame decode.

The reference is OpenCV's own decoder followed by cv2.warpAffine (``crop_image(read_image(...))``,
the official loader's arithmetic), not the code under test. Frames are photograph-like (dead-leaves
scenes with 1/f texture and sensor noise, ``mvn.datasets.synthetic_scene``) at Human3.6M's sizes.
"""
import cv2
import numpy as np
import pytest

from mvn.datasets import images
from mvn.datasets.images import DataError, read_crop, read_image, source_rectangle
from mvn.datasets.synthetic_scene import add_sensor_noise, natural_backdrop
from mvn.utils.img import crop_image, crop_transform

NOT_BUILT = ('mvn/datasets/_jpeg_region is not built: run `python setup.py build_ext --inplace` '
             '(needs libjpeg-turbo headers, e.g. apt install libjpeg62-turbo-dev)')


@pytest.fixture
def decoder():
    """The compiled partial decoder. Not a skip when it is missing: the exact crops would then
    test only the whole-frame fallback. CI builds it (.ci/run), as does the README's setup."""
    assert images._jpeg_region is not None, NOT_BUILT
    assert images.region_decoding_available()
    return images._jpeg_region


def frame(width, height, seed):
    return add_sensor_noise(natural_backdrop(width, height, seed), seed)


# (name, cv2.imencode parameters): the layouts Human3.6M's frames and common cameras use.
LAYOUTS = [
    ('420', [cv2.IMWRITE_JPEG_QUALITY, 90]),
    ('444', [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]),
    ('422', [cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]),
    ('420-progressive', [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
    ('444-progressive', [cv2.IMWRITE_JPEG_QUALITY, 85, cv2.IMWRITE_JPEG_PROGRESSIVE, 1,
                         cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]),
    ('420-restarts-optimized', [cv2.IMWRITE_JPEG_QUALITY, 75, cv2.IMWRITE_JPEG_RST_INTERVAL, 3,
                                cv2.IMWRITE_JPEG_OPTIMIZE, 1]),
]


def boxes(width, height, rng, n=12):
    """(center, scale) pairs as the labels hold them (float32): a typical person box, boxes cut by
    each edge and corner of the frame, one wholly outside, a tiny one and one wider than the frame."""
    fixed = [((width / 2, height / 2), 2.4), ((-40.0, height / 2), 2.0), ((width + 30.0, height / 3), 2.2),
             ((width / 2, -60.0), 1.8), ((width / 3, height + 45.0), 2.6), ((5.0, 7.0), 1.5),
             ((width - 3.0, height - 2.0), 3.0), ((-500.0, -500.0), 1.0), ((333.3, 401.7), 0.07),
             ((width / 2, height / 2), 7.5)]
    random = [((rng.uniform(-100, width + 100), rng.uniform(-100, height + 100)), rng.uniform(0.3, 4.0))
              for _ in range(n)]
    return [(np.array(c, np.float32), np.array([s, s], np.float32)) for c, s in fixed + random]


def write(path, image, params):
    ok, data = cv2.imencode('.jpg', image, params)
    assert ok
    data.tofile(str(path))
    return str(path)


@pytest.mark.parametrize('size', [(1000, 1000), (1000, 1002)])
@pytest.mark.parametrize('name,params', LAYOUTS, ids=[name for name, _ in LAYOUTS])
def test_crops_are_those_of_the_whole_decoded_frame(decoder, tmp_path, name, params, size, monkeypatch):
    width, height = size
    path = write(tmp_path / ('%s.jpg' % name), frame(width, height, seed=width + height), params)
    declined = []
    decode_into = decoder.decode_into

    def recording(*args):
        ok = decode_into(*args)
        if not ok:
            declined.append(args[4:])
        return ok
    monkeypatch.setattr(decoder, 'decode_into', recording)
    whole = read_image(path)
    for center, scale in boxes(width, height, np.random.default_rng(len(name))):
        assert np.array_equal(read_crop(path, center, scale), crop_image(whole, center, scale)), (center, scale)
    assert declined == []           # every crop came from a partial decode


@pytest.mark.parametrize('name,params', LAYOUTS, ids=[name for name, _ in LAYOUTS])
def test_only_the_rectangle_is_decoded_and_it_matches_opencv(decoder, name, params):
    width, height = 1000, 1002
    data = cv2.imencode('.jpg', frame(width, height, seed=5), params)[1]
    whole = cv2.imdecode(data, cv2.IMREAD_COLOR)
    canvas = np.zeros_like(whole)
    x0, y0, x1, y1 = 301, 417, 699, 803
    assert decoder.supported_size(data) == (width, height)
    assert decoder.decode_into(data, canvas, width, height, x0, y0, x1, y1)
    # Rows outside [y0, y1) are never decoded: the canvas stays zero there.
    assert not canvas[:y0].any() and not canvas[y1:].any()
    # Columns are widened to whole iMCUs (8 or 16 px) only.
    decoded_columns = np.flatnonzero(canvas[y0:y1].any(axis=(0, 2)))
    assert x0 - 16 < decoded_columns[0] <= x0 and x1 <= decoded_columns[-1] + 1 < x1 + 16
    # Away from the left and right edge of the cropped rows (fancy chroma upsampling may treat them
    # as the frame's edges), every pixel is OpenCV's.
    inner = slice(x0 + 2, x1 - 2)
    assert np.array_equal(canvas[y0:y1, inner], whole[y0:y1, inner])


def test_the_rectangle_covers_every_pixel_the_warp_reads():
    # A frame whose pixels are all 255 and a rectangle-limited copy of it: if the warp read any
    # pixel outside the rectangle, its crop would differ (that pixel is 0 in the copy).
    width, height = 1000, 1002
    full = np.full((height, width, 3), 255, np.uint8)
    for center, scale in boxes(width, height, np.random.default_rng(1), n=40):
        transform = crop_transform(center, scale)
        limited = np.zeros_like(full)
        rectangle = source_rectangle(transform, (192, 256), width, height, margin=0)
        if rectangle is not None:
            x0, y0, x1, y1 = rectangle
            limited[y0:y1, x0:x1] = 255
        assert np.array_equal(crop_image(limited, center, scale), crop_image(full, center, scale)), (center, scale)


def test_a_margin_of_zero_is_not_enough_without_rectangle_padding():
    # The guard above can fail: a rectangle one pixel too small on its right changes the crop.
    width, height = 1000, 1002
    full = np.full((height, width, 3), 255, np.uint8)
    center, scale = np.array([500.0, 500.0], np.float32), np.array([2.4, 2.4], np.float32)
    x0, y0, x1, y1 = source_rectangle(crop_transform(center, scale), (192, 256), width, height, margin=0)
    limited = np.zeros_like(full)
    limited[y0:y1, x0:x1 - 2] = 255
    assert not np.array_equal(crop_image(limited, center, scale), crop_image(full, center, scale))


def other_files(tmp_path):
    """Files the partial decoder declines, each with what reads them whole."""
    picture = frame(320, 240, seed=3)
    from PIL import Image
    grey = write(tmp_path / 'grey.jpg', cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY), [cv2.IMWRITE_JPEG_QUALITY, 90])
    cmyk = tmp_path / 'cmyk.jpg'
    Image.fromarray(picture[:, :, ::-1]).convert('CMYK').save(cmyk, quality=90)
    png = tmp_path / 'frame.png'
    cv2.imwrite(str(png), picture)
    return [grey, str(cmyk), str(png)]


def test_files_the_decoder_declines_are_read_whole(tmp_path):
    for path in other_files(tmp_path):
        whole = read_image(path)
        for center, scale in boxes(320, 240, np.random.default_rng(2), n=4):
            assert np.array_equal(read_crop(path, center, scale), crop_image(whole, center, scale)), path


def test_a_corrupt_file_gives_the_whole_frame_path_s_errors(tmp_path):
    data = cv2.imencode('.jpg', frame(400, 300, seed=4), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    center, scale = np.array([200, 150], np.float32), np.array([1.0, 1.0], np.float32)
    truncated = tmp_path / 'truncated.jpg'
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match='corrupt or unreadable image: %s' % truncated):
        read_crop(str(truncated), center, scale)
    with pytest.raises(DataError, match='missing image: %s' % (tmp_path / 'gone.jpg')):
        read_crop(str(tmp_path / 'gone.jpg'), center, scale)
    # Damaged entropy-coded data (the end marker intact): OpenCV decodes it with a warning, and
    # the crop is OpenCV's, whatever it holds.
    damaged = bytearray(data)
    damaged[len(data) // 2:len(data) // 2 + 40] = bytes(40)
    path = tmp_path / 'damaged.jpg'
    path.write_bytes(bytes(damaged))
    assert np.array_equal(read_crop(str(path), center, scale), crop_image(read_image(str(path)), center, scale))
