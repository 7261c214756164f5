"""mvn.utils.io: a checkpoint on disk is always a complete one, whatever happens to the writer;
file locks make processes take turns, and degrade to a warning where a file system has none."""
import errno
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from mvn.utils.checkpoint import atomic_save
from mvn.utils import io
from mvn.utils.io import atomic_open, file_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Rewrites one 8 MB checkpoint as fast as it can; every version is constant-filled with its number.
WRITER = '''
import itertools, sys, torch
from mvn.utils.checkpoint import atomic_save
for i in itertools.count():
    atomic_save({'version': i, 'weights': torch.full((2_000_000,), float(i))}, sys.argv[1])
'''


def test_an_error_while_writing_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / 'last.pth'
    atomic_save({'version': 1}, path)
    with pytest.raises(RuntimeError, match='disk gone'):
        with atomic_open(path) as f:
            f.write(b'half a checkpoint')
            raise RuntimeError('disk gone')
    assert torch.load(path, weights_only=True) == {'version': 1}
    assert os.listdir(tmp_path) == ['last.pth']
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask        # the permissions of a plain open()


def test_an_interrupt_during_a_write_takes_effect_once_the_file_is_complete(tmp_path):
    path = tmp_path / 'best_epoch.bin'
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(path) as f:
            f.write(b'first half, ')
            os.kill(os.getpid(), signal.SIGINT)
            f.write(b'second half')
    assert path.read_bytes() == b'first half, second half'


def test_killing_the_writer_at_any_moment_leaves_a_complete_checkpoint(tmp_path):
    rng = random.Random(0)
    versions = []
    for attempt in range(6):
        path = str(tmp_path / ('last%d.pth' % attempt))
        writer = subprocess.Popen([sys.executable, '-c', WRITER, path], cwd=REPO,
                                  env=dict(os.environ, PYTHONPATH=REPO))
        start = time.time()
        while not os.path.exists(path):
            assert writer.poll() is None and time.time() - start < 60, 'the writer did not start'
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))        # the first version is on disk; now interrupt a rewrite
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        state = torch.load(path, weights_only=True)
        assert state['weights'].shape == (2_000_000,) and bool((state['weights'] == state['version']).all())
        versions.append(state['version'])
        atomic_save({'version': -1}, path)    # the next save clears what the killed one left behind
        assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
        os.remove(path)
    assert max(versions) > 0                  # it was killed while rewriting, not only before the first


# Exit status 0 if the lock on argv[1] is free, 1 if another process holds it.
TRY_LOCK = '''
import fcntl, sys
with open(sys.argv[1], 'a') as f:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(1)
'''


def test_a_file_lock_keeps_other_processes_out_until_the_block_ends(tmp_path):
    lock = str(tmp_path / 'data.lock')
    try_lock = [sys.executable, '-c', TRY_LOCK, lock]
    with file_lock(lock):
        assert subprocess.run(try_lock).returncode == 1
    assert subprocess.run(try_lock).returncode == 0


def test_a_file_system_without_locks_gives_a_warning_and_runs_the_block_unlocked(tmp_path, monkeypatch):
    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, 'No locks available')
    monkeypatch.setattr(io.fcntl, 'flock', no_locks)
    ran = []
    with pytest.warns(UserWarning, match=r'the file system of .*data\.lock has no file locks \(No locks available\)'):
        with file_lock(str(tmp_path / 'data.lock')):
            ran.append(True)
    assert ran == [True]

    def broken(handle, operation):
        raise OSError(errno.EBADF, 'Bad file descriptor')
    monkeypatch.setattr(io.fcntl, 'flock', broken)
    with pytest.raises(OSError, match='Bad file descriptor'):       # other failures are not hidden
        with file_lock(str(tmp_path / 'data.lock')):
            ran.append(False)
    assert ran == [True]
