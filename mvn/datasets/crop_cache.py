"""The crop cache: every labelled frame's network input, cut once and stored in one file.

Training reads each frame's full 1000x1000 JPEG to use a 192x256 crop of it; the cache stores the
crops themselves. With the exact codec ``zstd`` (the default) a crop is kept as its raw bytes,
zstd-compressed on their own, so the cache gives the on-the-fly crop bit for bit at a fraction of
the cost (no JPEG decode, no warp). ``jpeg95`` (opt-in) keeps quality-95 JPEGs of the crops
instead: several times smaller, but lossy.

File layout (little-endian)::

    b'CAPFCROP', uint32 version, uint64 n, JSON (n bytes): {'fingerprint', 'frames', 'shape',
    'codec', ...}, then (frames + 1) uint64 offsets, then the blobs; blob j is
    data[offsets[j]:offsets[j + 1]].

The fingerprint is a hash of what decides the crops: the crop size, the frames' boxes and the
label columns that name their images (the whole label file, before any thinning). A cache made
for other labels or settings, or a damaged one, is refused with an error naming the file and
the command that rebuilds it.

Building (``build_crop_cache``) goes chunk by chunk (``<out>.parts/chunk_NNNNNN.bin``, each
written atomically), in parallel, with a progress bar; an interrupted build continues with the
missing chunks. The chunks are then joined into a temporary file renamed onto ``<out>``: no
reader ever sees a half-written cache.
"""
import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import struct
import sys
import warnings

import cv2
import numpy as np
from tqdm import tqdm

from mvn.datasets.images import DataError
from mvn.utils.io import atomic_open

MAGIC = b'CAPFCROP'
VERSION = 1
CODECS = ('zstd', 'jpeg95')         # exact, lossy
ZSTD_LEVEL = 3
JPEG_QUALITY = 95
CHUNK_FRAMES = 1000
SUFFIX = '.crops'                   # the cache of labels.pkl is labels.pkl.crops ('auto')


class CropCacheError(DataError):
    """A crop cache that cannot be used; the message names the file and how to rebuild it."""


def default_path(labels_path):
    return labels_path + SUFFIX


def parts_path(path):
    """The folder of chunks a build of the cache ``path`` works in until it is joined."""
    return path + '.parts'


def started(path):
    """True when ``path`` holds a cache or an interrupted build of one."""
    return os.path.exists(path) or os.path.isdir(parts_path(path))


def crop_fingerprint(dataset):
    """Hash (hex) of what decides ``dataset``'s crops: the dataset kind, the crop size, the
    number of frames, and the label columns ``center``, ``scale`` and the kind's own fields
    (those naming the image), of the whole label file."""
    digest = hashlib.sha256()
    digest.update(json.dumps([VERSION, type(dataset).__name__, list(dataset.image_shape), len(dataset.labels)])
                  .encode())
    for name in ['center', 'scale'] + sorted(dataset.label_fields):
        column = np.ascontiguousarray(dataset.labels[name])
        digest.update(json.dumps([name, str(column.dtype), list(column.shape)]).encode())
        digest.update(memoryview(column).cast('B'))
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# codecs

def _zstd():
    try:
        import zstandard
    except ImportError:
        raise CropCacheError("the crop cache needs the 'zstandard' package: pip install zstandard") from None
    return zstandard


def encoder(codec):
    """f(crop uint8 (H, W, 3)) -> bytes."""
    if codec == 'zstd':
        compressor = _zstd().ZstdCompressor(level=ZSTD_LEVEL)
        return lambda crop: compressor.compress(np.ascontiguousarray(crop).tobytes())
    if codec == 'jpeg95':
        return lambda crop: cv2.imencode('.jpg', crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()
    raise ValueError("unknown crop cache codec '%s'; choose one of: %s" % (codec, ', '.join(CODECS)))


def decoder(codec, shape):
    """f(bytes) -> crop uint8 ``shape`` (writable), or ValueError for a damaged blob."""
    if codec == 'zstd':
        zstandard = _zstd()
        decompressor = zstandard.ZstdDecompressor()
        size = int(np.prod(shape))

        def decode(blob):
            try:
                raw = decompressor.decompress(blob, max_output_size=size)
            except zstandard.ZstdError as e:
                raise ValueError(str(e)) from None
            if len(raw) != size:
                raise ValueError('%d bytes instead of %d' % (len(raw), size))
            return np.frombuffer(raw, np.uint8).reshape(shape).copy()
        return decode
    if codec == 'jpeg95':
        def decode(blob):
            crop = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
            if crop is None or crop.shape != tuple(shape):
                raise ValueError('not a %dx%d JPEG' % (shape[1], shape[0]))
            return crop
        return decode
    raise ValueError("unknown crop cache codec '%s'" % codec)


# ---------------------------------------------------------------------------------------------
# reading

def read_header(path):
    """(meta dict, offsets of the blobs (memory-mapped), where the blobs start); CropCacheError
    for a file that is not a complete crop cache."""
    try:
        with open(path, 'rb') as f:
            head = f.read(len(MAGIC) + 12)
            if len(head) < len(MAGIC) + 12 or head[:len(MAGIC)] != MAGIC:
                raise ValueError('not a crop cache')
            version, meta_size = struct.unpack('<IQ', head[len(MAGIC):])
            if version != VERSION:
                raise ValueError('format version %d, this code reads %d' % (version, VERSION))
            meta = json.loads(f.read(meta_size).decode())
        index_start = len(MAGIC) + 12 + meta_size
        frames = int(meta['frames'])
        offsets = np.memmap(path, dtype='<u8', mode='r', offset=index_start, shape=(frames + 1,))
        data_start = index_start + 8 * (frames + 1)
        if os.path.getsize(path) != data_start + int(offsets[-1]):
            raise ValueError('truncated or damaged')
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CropCacheError('crop cache %s: %s' % (path, e.strerror if isinstance(e, OSError) else e)) from None
    return meta, offsets, data_start


class CropCache:
    """Read access to a crop cache file: ``cache.read(j)`` is frame j's crop, uint8 (H, W, 3) BGR.

    ``fingerprint``: the one the labels and settings in use give (``crop_fingerprint``); a cache
    made for others is refused. ``rebuild``: the command that rebuilds it, for error messages.
    Pickles as its path (loader workers reopen the file).
    """

    def __init__(self, path, fingerprint=None, rebuild=''):
        self.path, self.rebuild = path, rebuild
        hint = '; rebuild it with: %s' % rebuild if rebuild else ''
        try:
            self.meta, self.offsets, self.data_start = read_header(path)
        except CropCacheError as e:
            raise CropCacheError(str(e) + hint) from None
        if fingerprint is not None and self.meta.get('fingerprint') != fingerprint:
            raise CropCacheError('crop cache %s was made for other labels or crop settings (%s)%s'
                                 % (path, self.meta.get('labels', '?'), hint))
        self.codec = self.meta['codec']
        self.shape = tuple(self.meta['shape'])
        self.lossy = self.codec != 'zstd'
        self._fd = self._pid = self._decode = None

    def __len__(self):
        return len(self.offsets) - 1

    def __getstate__(self):
        return {'path': self.path, 'meta': self.meta, 'data_start': self.data_start, 'rebuild': self.rebuild,
                'codec': self.codec, 'shape': self.shape, 'lossy': self.lossy}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.offsets = np.memmap(self.path, dtype='<u8', mode='r', offset=self.data_start - 8 * (self.meta['frames'] + 1),
                                 shape=(self.meta['frames'] + 1,))
        self._fd = self._pid = self._decode = None

    def _file(self):
        if self._pid != os.getpid():         # a forked worker opens its own descriptor
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
            self._decode = decoder(self.codec, self.shape)
        return self._fd

    def read(self, j):
        start, end = int(self.offsets[j]), int(self.offsets[j + 1])
        blob = os.pread(self._file(), end - start, self.data_start + start)
        try:
            return self._decode(blob)
        except ValueError as e:
            raise CropCacheError('crop cache %s: frame %d is damaged (%s)%s'
                                 % (self.path, j, e, '; rebuild it with: %s' % self.rebuild if self.rebuild else ''))

    def __del__(self):
        if getattr(self, '_fd', None) is not None and self._pid == os.getpid():
            os.close(self._fd)


def open_for_dataset(path, dataset):
    """The CropCache at ``path`` for ``dataset`` (a PoseDataset over its whole label file),
    checked against its fingerprint. A missing file, an interrupted build, a cache of other
    crops or a damaged one is a CropCacheError naming the command that (re)builds it; a lossy
    cache is used with a warning."""
    build = dataset.crop_cache_command(path)
    if not os.path.isfile(path):
        if os.path.isdir(parts_path(path)):
            raise CropCacheError('crop cache %s is incomplete (its build was interrupted); finish it with: %s'
                                 % (path, build))
        raise CropCacheError('crop cache not found: %s; build it with: %s' % (path, build))
    cache = CropCache(path, crop_fingerprint(dataset), dataset.crop_cache_command(path, force=True))
    if cache.lossy:
        warnings.warn('crop cache %s holds lossy %s crops: results differ slightly from those of the frames'
                      % (path, cache.codec))
    return cache


# ---------------------------------------------------------------------------------------------
# building

_WORKER = {}


def _init_worker(dataset, codec):
    _WORKER.update(dataset=dataset, encode=encoder(codec))


def _chunk_path(parts, k):
    return os.path.join(parts, 'chunk_%06d.bin' % k)


def _make_chunk(args):
    """Writes chunk k (frames start .. end-1) of the cache atomically; returns its frame count."""
    parts, k, start, end = args
    dataset, encode = _WORKER['dataset'], _WORKER['encode']
    blobs = [encode(dataset.crop(j)) for j in range(start, end)]
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype('<u8')
    with atomic_open(_chunk_path(parts, k)) as f:
        f.write(struct.pack('<Q', end - start))
        f.write(offsets.tobytes())
        for blob in blobs:
            f.write(blob)
    return end - start


def _chunk_offsets(path, frames):
    """The blob offsets (frames + 1) of a finished chunk file of ``frames`` frames, or None if
    the file is not one (absent, or not of the size its header gives)."""
    head_size = 8 * (frames + 2)
    try:
        with open(path, 'rb') as f:
            head = f.read(head_size)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return None
    if len(head) != head_size or struct.unpack('<Q', head[:8])[0] != frames:
        return None
    offsets = np.frombuffer(head[8:], '<u8')
    return offsets if size == head_size + int(offsets[-1]) else None


def build_crop_cache(dataset, out, *, codec='zstd', workers=1, chunk_frames=CHUNK_FRAMES, force=False,
                     progress=True, log=print):
    """Writes the crop of every frame of ``dataset`` (a PoseDataset over a whole label file, its
    on-the-fly ``crop``) to the cache file ``out``. Returns 'built', or 'current' when ``out``
    already holds this cache. An ``out`` that holds anything else is kept unless ``force``."""
    encoder(codec)                                      # an unknown codec fails before any work
    fingerprint = crop_fingerprint(dataset)
    if os.path.exists(out):
        try:
            current = CropCache(out, fingerprint).codec == codec
        except CropCacheError:
            current = False
        if current:
            return 'current'
        if not force:
            raise CropCacheError('%s exists and holds other crops (other labels, settings or codec, or a damaged '
                                 'file); pass --force to replace it' % out)
    frames = len(dataset.labels)
    meta = {'fingerprint': fingerprint, 'frames': frames, 'shape': [dataset.image_shape[1], dataset.image_shape[0], 3],
            'codec': codec, 'labels': os.path.abspath(dataset.labels_path), 'chunk_frames': chunk_frames,
            'opencv': cv2.__version__}
    parts = parts_path(out)
    _start_parts(parts, meta, log)
    chunks = [(parts, k, start, min(start + chunk_frames, frames)) for k, start in
              enumerate(range(0, frames, chunk_frames))]
    todo = [c for c in chunks if _chunk_offsets(_chunk_path(parts, c[1]), c[3] - c[2]) is None]
    done_frames = frames - sum(c[3] - c[2] for c in todo)
    if done_frames:
        log('continuing the interrupted build of %s: %d of %d frames done' % (out, done_frames, frames))
    with tqdm(total=frames, initial=done_frames, desc='crop cache', unit='frame', disable=not progress,
              dynamic_ncols=True, mininterval=1.0) as bar:
        if workers <= 1:
            _init_worker(dataset, codec)
            for chunk in todo:
                bar.update(_make_chunk(chunk))
        else:
            context = multiprocessing.get_context('fork' if 'fork' in multiprocessing.get_all_start_methods()
                                                  else 'spawn')
            with context.Pool(workers, _init_worker, (dataset, codec)) as pool:
                for count in pool.imap_unordered(_make_chunk, todo):
                    bar.update(count)
    _join(parts, out, meta, chunks)
    shutil.rmtree(parts, ignore_errors=True)
    return 'built'


def _start_parts(parts, meta, log):
    """The chunk folder of this build: an earlier one for the same cache is continued, one for
    another (other labels, settings, codec or chunk size) is started afresh."""
    manifest = os.path.join(parts, 'build.json')
    try:
        with open(manifest) as f:
            if json.load(f) == meta:
                return
        log('%s belongs to a build of other crops: starting afresh' % parts)
    except (OSError, ValueError):
        pass
    shutil.rmtree(parts, ignore_errors=True)
    os.makedirs(parts)
    with atomic_open(manifest, 'w') as f:
        json.dump(meta, f, indent=1)


def _join(parts, out, meta, chunks):
    """Joins the chunk files into ``out`` (through a temporary file and a rename)."""
    header = json.dumps(meta, sort_keys=True).encode()
    sizes = []
    for _, k, start, end in chunks:
        found = _chunk_offsets(_chunk_path(parts, k), end - start)
        if found is None:
            raise CropCacheError('crop cache chunk %s is missing or damaged; run the build again'
                                 % _chunk_path(parts, k))
        sizes.append(np.diff(found))
    offsets = np.concatenate([[0], np.cumsum(np.concatenate(sizes))]).astype('<u8')
    with atomic_open(out) as f:
        f.write(MAGIC + struct.pack('<IQ', VERSION, len(header)) + header)
        f.write(offsets.tobytes())
        for _, k, start, end in chunks:
            with open(_chunk_path(parts, k), 'rb') as chunk:
                chunk.seek(8 * (end - start + 2))
                shutil.copyfileobj(chunk, f, 16 << 20)


# ---------------------------------------------------------------------------------------------
# the command

def rebuild_command(script, labels, images, out, image_shape=(192, 256), codec='zstd', force=False):
    """The command line that (re)builds a cache, for messages (``script``: what follows 'python')."""
    parts = ['python', script, '--labels', labels, '--images', images, '--out', out]
    if tuple(image_shape) != (192, 256):
        parts += ['--image-shape', str(image_shape[0]), str(image_shape[1])]
    if codec != 'zstd':
        parts += ['--codec', codec]
    if force:
        parts.append('--force')
    return ' '.join(parts)


def parse_args(argv=None, description=__doc__, kind=None):
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if kind is None:
        parser.add_argument('--kind', required=True, help='dataset kind (mvn/registry.py)')
    parser.add_argument('--labels', required=True, help='label file (pickle) whose frames to crop')
    parser.add_argument('--images', required=True, help='folder of the frames (the config\'s dataset.root)')
    parser.add_argument('--out', help='cache file (default: beside the labels, <labels>%s)' % SUFFIX)
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1, help='processes (default: every core)')
    parser.add_argument('--image-shape', type=int, nargs=2, default=[192, 256], metavar=('W', 'H'),
                        help="crop size, the config's model.image_shape (default 192 256)")
    parser.add_argument('--codec', default='zstd', choices=CODECS,
                        help='zstd: exact crops (default); jpeg95: quality-95 JPEG crops, smaller but lossy')
    parser.add_argument('--force', action='store_true', help='replace an --out file that holds other crops')
    args = parser.parse_args(argv)
    if kind is not None:
        args.kind = kind
    args.out = args.out or default_path(args.labels)
    return args


def main(argv=None, description=__doc__, kind=None):
    """make_crop_cache: one-line errors, exit code 1 on bad input, 130 on Ctrl-C (rerun to continue)."""
    from mvn import registry
    from mvn.datasets.label_cache import LabelError
    args = parse_args(argv, description, kind)
    try:
        entry = registry.entry(registry.DATASETS, args.kind, 'dataset kind')
        dataset = registry.resolve(entry)(root=args.images, labels_path=args.labels, image_shape=args.image_shape,
                                          keypoints_2d=entry.preset.get('dataset.keypoints_2d', 'cpn'))
        state = build_crop_cache(dataset, args.out, codec=args.codec, workers=args.workers, force=args.force)
    except (DataError, LabelError, ValueError, OSError) as e:
        print('error: %s' % str(e).strip().splitlines()[-1], file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('interrupted; run the same command again to continue', file=sys.stderr)
        return 130
    print('%s is %s (%d frames, %s)' % (args.out, 'up to date' if state == 'current' else 'ready', len(dataset.labels),
                                         args.codec))
    return 0


if __name__ == '__main__':
    sys.exit(main())
