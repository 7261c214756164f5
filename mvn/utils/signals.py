"""Stopping a run by a signal: Ctrl-C (SIGINT) and SIGTERM (scancel, docker stop, a launcher
ending the job) unwind the main process, so the run's files are closed and its log says why;
forked DataLoader workers end quietly.

A signal to the whole process group reaches the loader workers too. A worker killed by SIGTERM
makes PyTorch's SIGCHLD handler raise "DataLoader worker (pid N) is killed by signal" in the main
process, in the middle of its own unwinding (a traceback, and exit 1 instead of 143). So once the
main process is stopping, that check is switched off; and should it come first (the worker's
death noticed before the main process's own signal), ``stop_code`` still reads it as the stop.
"""
import os
import re
import signal

# Exit codes of a run stopped by a signal, as a shell reports a process killed by it (128 + signal).
EXIT_CODES = {'interrupted': 128 + signal.SIGINT, 'terminated': 128 + signal.SIGTERM}

_WORKER_STOPPED = re.compile(r'DataLoader worker \(pid \d+\) is killed by signal: (Terminated|Interrupt)')


class Terminated(BaseException):
    """SIGTERM: unwinds like Ctrl-C (KeyboardInterrupt), so the run's files are closed."""


def _stopping(exception, main_pid):
    """The handler of a stopping signal: ``exception`` in the main process."""
    def handler(received, frame):
        if os.getpid() != main_pid:          # a forked loader worker before its own handlers: end quietly
            os._exit(0)
        _worker_checks_off()
        raise exception()
    return handler


_stopped = []          # set once the process is on its way out


def _worker_checks_off():
    """No "worker killed" error from PyTorch's SIGCHLD handler while the process unwinds (and
    exits: the loader iterators shut their workers down as they are collected)."""
    signal.signal(signal.SIGCHLD, _ignore)    # not SIG_DFL: a SIGCHLD already pending would print an error
    _stopped.append(True)


def _ignore(signum, frame):
    pass


def install():
    """SIGINT raises KeyboardInterrupt and SIGTERM Terminated in the main process (call it from
    the main thread). A signal the process was started with ignored (``nohup cmd &`` ignores
    SIGINT) stays ignored. Returns the handlers it replaced, for ``restore``."""
    main_pid = os.getpid()
    return {signum: signal.signal(signum, handler) for signum, handler in (
        (signal.SIGINT, _stopping(KeyboardInterrupt, main_pid)),
        (signal.SIGTERM, _stopping(Terminated, main_pid))) if signal.getsignal(signum) != signal.SIG_IGN}


def restore(previous):
    """Puts back the handlers ``install`` returned, for a caller that goes on running (a test),
    unless a signal stopped the process: it is on its way out, and keeps ignoring signals."""
    if _stopped:
        return
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _worker_stopped(error):
    """'Terminated' or 'Interrupt' if ``error`` says, or was raised from an error that says, that
    a loader worker was killed by that signal (PyTorch re-raises it as "exited unexpectedly")."""
    while isinstance(error, RuntimeError):
        found = _WORKER_STOPPED.search(str(error))
        if found:
            return found.group(1)
        error = error.__cause__
    return None


def stop_code(error):
    """('interrupted' or 'terminated', its exit code) if ``error`` is a stop by a signal (including
    a loader worker killed by the group's SIGTERM or SIGINT), else None. Further signals are then
    ignored: the process is on its way out."""
    if isinstance(error, KeyboardInterrupt):
        said = 'interrupted'
    elif isinstance(error, Terminated):
        said = 'terminated'
    else:
        killed = _worker_stopped(error)
        if killed is None:
            return None
        said = 'terminated' if killed == 'Terminated' else 'interrupted'
    _worker_checks_off()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    return said, EXIT_CODES[said]
