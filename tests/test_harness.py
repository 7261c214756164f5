"""The test harness itself: processes started together (two "nodes") never wait on each other's
unread output."""
import os
import sys

import pytest

from tests.helpers import run_together


def test_processes_run_together_never_block_on_an_unread_pipe(tmp_path):
    # The first waits for a file the second writes after 300 kB of stderr: more than a pipe holds
    # (64 kB), so unless both pipes are read at once the second stops and the first waits forever.
    flag = str(tmp_path / 'written')
    first = [sys.executable, '-c', 'import os, time\nwhile not os.path.exists(%r): time.sleep(0.02)\nprint("done")' % flag]
    second = [sys.executable, '-c', 'import sys\nsys.stderr.write("x" * 300000)\nsys.stderr.flush()\n'
                                    'open(%r, "w").close()' % flag]
    results = run_together([first, second], [str(tmp_path)] * 2, dict(os.environ), timeout=30)
    assert [r.returncode for r in results] == [0, 0]
    assert results[0].stdout == 'done\n' and len(results[1].stderr) == 300000


def test_a_hang_fails_with_what_each_process_printed(tmp_path):
    waits = [sys.executable, '-c', 'import time\nprint("node 0 is waiting", flush=True)\ntime.sleep(60)']
    done = [sys.executable, '-c', 'print("node 1 finished")']
    with pytest.raises(AssertionError) as failure:
        run_together([waits, done], [str(tmp_path)] * 2, dict(os.environ), timeout=3)
    message = str(failure.value)
    assert message.startswith('timed out after 3 s') and 'node 0 is waiting' in message and 'node 1 finished' in message
