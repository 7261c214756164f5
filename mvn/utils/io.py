"""Atomic file writes (a reader sees the old file or the complete new one, never a partial one),
a clear error when the disk is full, and file locks (processes that prepare the same files take
turns)."""
import contextlib
import errno
import fcntl
import os
import shutil
import signal
import tempfile
import threading
import warnings


class DiskFullError(OSError):
    """A write that found no space left (ENOSPC, or EDQUOT: a quota); the message names the file
    and the space left."""


def is_disk_full(error):
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def _megabytes(n):
    return '%.1f MB' % (n / 1e6)


def disk_full_error(path):
    """The DiskFullError of a failed write of ``path``, with the space left on its file system."""
    try:
        free = _megabytes(shutil.disk_usage(os.path.dirname(os.path.abspath(path)) or '.').free)
    except OSError:
        free = 'unknown'
    error = DiskFullError('no space left on the device writing %s (free there: %s); an earlier version of the file is unchanged'
                          % (path, free))
    error.errno = errno.ENOSPC
    return error


class _WriteErrors:
    """A file that remembers the OSError of a failed write: torch.save's zip writer swallows it
    and raises an unrelated RuntimeError ('unexpected pos ...') instead."""

    def __init__(self, file):
        self._file = file
        self.error = None

    def write(self, data):
        try:
            return self._file.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name):
        return getattr(self._file, name)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _interrupts_deferred():
    """SIGINT and SIGTERM received inside the block are delivered when it ends. An interrupt
    inside torch.save's zip writer would otherwise surface as an unrelated RuntimeError. Python
    runs signal handlers in the main thread only, so elsewhere there is nothing to defer."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if received:
            signal.raise_signal(received[0])


@contextlib.contextmanager
def atomic_open(path, mode='wb'):
    """Yields a file object on a temporary file beside ``path``; on success it is flushed,
    fsynced, given the usual permissions and renamed onto ``path``; on error it is removed.
    Ctrl-C and SIGTERM take effect once the write is complete."""
    with _interrupts_deferred():
        with _atomic_open(path, mode) as f:
            yield f


@contextlib.contextmanager
def _atomic_open(path, mode):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
    except OSError as e:
        if is_disk_full(e):
            raise disk_full_error(path) from None
        raise
    f = None
    try:
        with os.fdopen(fd, mode) as raw:
            f = _WriteErrors(raw)
            yield f
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if is_disk_full(e) or is_disk_full(getattr(f, 'error', None)):
            raise disk_full_error(path) from None
        raise


@contextlib.contextmanager
def file_lock(path):
    """Holds an exclusive lock on the file ``path`` (created if absent) during the block: the
    processes of a machine, or of machines that share the folder, take turns. Some network file
    systems (Lustre or NFS mounted without locks) refuse locks; then a warning, and the block runs
    unlocked, so what it writes must also survive two writers at once (atomic renames do)."""
    with open(path, 'a') as handle:        # closing the file releases the lock
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            warnings.warn('the file system of %s has no file locks (%s); going on without one' % (path, e.strerror))
        yield
