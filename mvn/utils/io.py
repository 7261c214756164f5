"""Atomic file writes: a reader sees the old file or the complete new one, never a partial one."""
import contextlib
import os
import signal
import tempfile
import threading


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
