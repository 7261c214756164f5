"""A columnar, memory-mapped cache of a label pickle.

The official label files are pickled lists of one dict per frame (1.5 M for training). Loading
them costs minutes and gigabytes in every process. Here a pickle is converted once into one
``.npy`` file per field that training and evaluation use (the dataset class names them), in
``<labels>.cache/`` beside it; later runs memory-map those files, so every rank and loader worker
shares one copy in the page cache.

The cache is rebuilt when the pickle changes (size, mtime or a content fingerprint), when any
cache file is damaged, or when a field it lacks is asked for (it then keeps the fields it had). It is written into a temporary folder and renamed into place, under a
file lock, so an interrupted conversion never leaves a cache that would be used.
"""
import hashlib
import json
import logging
import os
import pickle
import shutil
import tempfile
import warnings

import numpy as np

from mvn.utils.io import disk_full_error, file_lock, is_disk_full

CACHE_VERSION = 1
logger = logging.getLogger(__name__)


class LabelError(ValueError):
    """A label file that cannot be used; the message names the file (and entry and key)."""


def _fingerprint(path):
    """Size, mtime and a hash of the first and last MiB: cheap, and catches a replaced file."""
    stat = os.stat(path)
    digest = hashlib.sha1()
    with open(path, 'rb') as f:
        digest.update(f.read(1 << 20))
        if stat.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            digest.update(f.read(1 << 20))
    return {'size': stat.st_size, 'mtime_ns': stat.st_mtime_ns, 'sha1_ends': digest.hexdigest()}


def read_label_pickle(path):
    if not os.path.isfile(path):
        raise LabelError('label file not found: %s' % path)
    try:
        with open(path, 'rb') as f:
            labels = pickle.load(f)
    except Exception as e:
        raise LabelError('cannot read label file %s: %s' % (path, e)) from None
    if not isinstance(labels, (list, tuple)):
        raise LabelError('label file %s holds a %s, expected a list of per-frame dicts'
                         % (path, type(labels).__name__))
    if not labels:
        raise LabelError('label file %s is empty' % path)
    return labels


def columns_from_labels(labels, source, fields, integer_fields=()):
    """``fields`` ({name: per-frame shape}) of a list of label dicts as arrays {name: (N, *shape)},
    values bit for bit (a field whose entries differ in dtype gets their common type, which holds
    them exactly); ``integer_fields`` are stored as int32, checked to fit. NaN or inf is a
    LabelError naming the first entry and key that hold one (checked here, once per cache build)."""
    for i, entry in enumerate(labels):
        if not isinstance(entry, dict):
            raise LabelError('%s: entry %d is a %s, expected a dict' % (source, i, type(entry).__name__))
    columns = {}
    for name, shape in fields.items():
        shape = tuple(shape)
        try:
            values = [entry[name] for entry in labels]
        except KeyError:
            i = next(i for i, entry in enumerate(labels) if name not in entry)
            if i == 0:
                raise LabelError("label file %s has no key '%s'" % (source, name)) from None
            raise LabelError("%s: entry %d has no key '%s'" % (source, i, name)) from None
        try:
            column = np.array(values)
        except ValueError:                      # ragged: some entry has another shape
            column = None
        if column is None or column.dtype == object or column.shape[1:] != shape:
            i = next(i for i, v in enumerate(values) if np.shape(v) != shape)
            raise LabelError("%s: entry %d key '%s' has shape %s, expected %s"
                             % (source, i, name, np.shape(values[i]), shape))
        _check_finite(column, source, name)
        if name in integer_fields:
            as_int32 = column.astype(np.int32)
            if not np.array_equal(as_int32, column):
                raise LabelError("%s: key '%s' holds values that are not 32-bit integers" % (source, name))
            column = as_int32
        columns[name] = column
    return columns


def _check_finite(column, source, name):
    """NaN or inf in a label would surface much later (say an SVD that does not converge after a
    whole training epoch, or a crop around a NaN centre): name the first such entry now."""
    if column.dtype.kind not in 'fc':
        return
    bad = ~np.isfinite(column.reshape(len(column), -1)).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        value = np.asarray(column[i]).ravel()
        value = value[~np.isfinite(value)][0]
        raise LabelError("%s: entry %d key '%s' holds %s (%d entries hold NaN or inf); labels must be finite"
                         % (source, i, name, value, int(bad.sum())))


class LabelTable:
    """Read-only columns of a label file: ``table['joints_3d']`` is an (N, 17, 3) array.

    Arrays are memory-mapped from the cache; pickling a table (to a spawned loader worker) sends
    only the paths, and the worker maps the same files again.
    """

    def __init__(self, labels_path, cache_dir, fields, columns=None):
        self.labels_path = labels_path
        self.cache_dir = cache_dir
        self.fields = tuple(fields)
        self._columns = columns

    @property
    def columns(self):
        if self._columns is None:
            self._columns = {name: np.load(os.path.join(self.cache_dir, name + '.npy'), mmap_mode='r')
                             for name in self.fields}
        return self._columns

    def __getitem__(self, name):
        return self.columns[name]

    def __len__(self):
        return len(self.columns[self.fields[0]])

    def __getstate__(self):
        state = dict(self.__dict__)
        if self.cache_dir is not None:
            state['_columns'] = None
        return state


def _cached_fields(cache_dir, fingerprint):
    """{name: (per-frame shape, dtype)} of a complete cache of this pickle version, else None."""
    try:
        with open(os.path.join(cache_dir, 'manifest.json')) as f:
            manifest = json.load(f)
        if manifest.get('version') != CACHE_VERSION or manifest.get('source') != fingerprint:
            return None
        cached = {}
        for name, spec in manifest['fields'].items():
            array = np.load(os.path.join(cache_dir, name + '.npy'), mmap_mode='r')
            if list(array.shape) != spec['shape'] or str(array.dtype) != spec['dtype']:
                return None
            cached[name] = (tuple(spec['shape'][1:]), spec['dtype'])
        return cached
    except (OSError, ValueError, KeyError, TypeError, EOFError, AttributeError):
        return None


def _cache_is_valid(cache_dir, fingerprint, fields=None):
    """True if the cache is complete for this pickle and holds ``fields`` ({name: shape}; None: any)."""
    cached = _cached_fields(cache_dir, fingerprint)
    return cached is not None and all(name in cached and cached[name][0] == tuple(shape)
                                      for name, shape in (fields or {}).items())


def _write_cache(cache_dir, columns, fingerprint):
    parent = os.path.dirname(os.path.abspath(cache_dir))
    tmp = tempfile.mkdtemp(prefix=os.path.basename(cache_dir) + '.tmp-', dir=parent)
    try:
        for name, array in columns.items():
            with open(os.path.join(tmp, name + '.npy'), 'wb') as f:
                np.save(f, array)
                f.flush()
                os.fsync(f.fileno())
        manifest = {'version': CACHE_VERSION, 'source': fingerprint,
                    'fields': {n: {'dtype': str(a.dtype), 'shape': list(a.shape)} for n, a in columns.items()}}
        with open(os.path.join(tmp, 'manifest.json'), 'w') as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(cache_dir):
            stale = tempfile.mkdtemp(prefix=os.path.basename(cache_dir) + '.stale-', dir=parent)
            os.replace(cache_dir, os.path.join(stale, 'cache'))
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, cache_dir)
        except OSError:
            # Where the file system has no locks, another process may have put its cache there.
            if not _cache_is_valid(cache_dir, fingerprint):
                raise
    except OSError as e:
        if is_disk_full(e):
            shutil.rmtree(tmp, ignore_errors=True)      # first, so that the message counts its space as free
            raise disk_full_error(cache_dir) from None
        raise
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def cache_dir_for(labels_path):
    return labels_path + '.cache'


def load_labels(labels_path, fields, integer_fields=(), progress=True):
    """A LabelTable of ``fields`` ({name: per-frame shape}) of ``labels_path``, building or
    rebuilding its cache when needed; ``integer_fields`` are stored as int32.

    Where the folder is not writable, the columns are built in memory instead (with a warning).
    """
    if not os.path.isfile(labels_path):
        raise LabelError('label file not found: %s' % labels_path)
    fields = {name: tuple(shape) for name, shape in fields.items()}
    cache_dir = cache_dir_for(labels_path)
    fingerprint = _fingerprint(labels_path)
    if _cache_is_valid(cache_dir, fingerprint, fields):
        return LabelTable(labels_path, cache_dir, fields)
    if not os.access(os.path.dirname(os.path.abspath(labels_path)), os.W_OK):
        warnings.warn('cannot write a label cache beside %s; reading the pickle into memory' % labels_path)
        columns = columns_from_labels(read_label_pickle(labels_path), labels_path, fields, integer_fields)
        return LabelTable(labels_path, None, fields, columns)
    with file_lock(cache_dir + '.lock'):
        # Another process may have built it while this one waited for the lock.
        if not _cache_is_valid(cache_dir, fingerprint, fields):
            # Fields an earlier run cached for this pickle are kept (say another 2D source).
            kept = _cached_fields(cache_dir, fingerprint) or {}
            wanted = dict({name: shape for name, (shape, _) in kept.items()}, **fields)
            integers = set(integer_fields) | {name for name, (_, dtype) in kept.items() if dtype == 'int32'}
            if progress:
                logger.info('converting %s into a label cache (once) ...' % labels_path)
            _write_cache(cache_dir, columns_from_labels(read_label_pickle(labels_path), labels_path, wanted, integers),
                         fingerprint)
    return LabelTable(labels_path, cache_dir, fields)
