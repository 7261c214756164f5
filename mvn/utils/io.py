"""Atomic file writes (a reader sees the old file or the complete new one, never a partial one)
and file locks (processes that prepare the same files take turns)."""
import contextlib
import errno
import fcntl
import os
import signal
import tempfile
import threading
import warnings


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
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
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
