"""The run directory and what goes into it: log, resolved config, results, TensorBoard.

``<logdir>/<name>@<timestamp>/`` holds ``config.yaml``, ``log.txt``, ``tb/``, ``checkpoints/`` and
evaluation results. Only rank 0 writes and prints; other ranks get a Monitor that stays silent.
Messages go through the ``mvn`` logger, so what library modules log (``logging.getLogger(__name__)``)
and Python warnings reach the console and ``log.txt`` too.
"""
import datetime
import glob
import json
import logging
import os
import re
import sys
import warnings

import numpy as np

from mvn.utils.io import atomic_open

LOGGER = 'mvn'


def error_line(error):
    """One line for an error: its last message line, without the traceback a DataLoader worker
    wraps around it or a leading 'SomeError: '."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return re.sub(r'^[\w.]+(Error|Exception): ', '', lines[-1].strip())


def new_run_dir(logdir, name):
    """Creates ``<logdir>/<name>@<timestamp>`` (never reusing an existing folder)."""
    stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
    base = os.path.join(logdir, '%s@%s' % (name, stamp))
    path, n = base, 1
    while True:
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            n += 1
            path = '%s-%d' % (base, n)


def latest_run_dir(logdir, name):
    """The newest ``<logdir>/<name>@*`` run directory (by its log's or its own mtime), or None."""
    runs = [p for p in glob.glob(os.path.join(glob.escape(logdir), glob.escape(name) + '@*')) if os.path.isdir(p)]

    def touched(run):
        log = os.path.join(run, 'log.txt')
        return os.path.getmtime(log if os.path.exists(log) else run)
    return max(runs, key=touched) if runs else None


class _Held(logging.Handler):
    """Keeps records until the run directory exists, to write them to its log.txt then."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


class Monitor:
    """Logging, TensorBoard and files of one run. Messages are printed at once; the run
    directory is only made by ``open(run_dir)`` (a run that fails before leaves nothing behind),
    and log.txt then starts with everything said so far. As a context manager it closes
    everything on the way out, and a run stopped by an error or Ctrl-C records why in log.txt."""

    def __init__(self, run_dir=None, main=True):
        self.main = main
        self.run_dir = self.writer = self.log_file = None
        self.logger = logging.getLogger(LOGGER)
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO if main else logging.ERROR)
        self._handlers = [logging.StreamHandler(sys.stdout), _Held()]
        self._handlers[0].setFormatter(logging.Formatter('%(message)s'))
        for handler in self._handlers:
            self.logger.addHandler(handler)
        self._showwarning = warnings.showwarning
        warnings.showwarning = self._show_warning
        if run_dir is not None:
            self.open(run_dir)

    def _show_warning(self, message, category, filename, lineno, file=None, line=None):
        self.warning(str(message))

    def open(self, run_dir):
        """Starts writing into ``run_dir`` (made if needed; rank 0 only): log.txt (appended to)
        with the messages so far, and TensorBoard."""
        if not self.main:
            return
        self.run_dir = run_dir
        os.makedirs(run_dir, exist_ok=True)
        self.log_file = logging.FileHandler(os.path.join(run_dir, 'log.txt'))
        self.log_file.setFormatter(logging.Formatter('%(asctime)s %(message)s'))
        held = self._handlers.pop()
        self.logger.removeHandler(held)
        for record in held.records:
            self.log_file.handle(record)
        self._handlers.append(self.log_file)
        self.logger.addHandler(self.log_file)
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(os.path.join(run_dir, 'tb'))

    def path(self, *parts):
        return os.path.join(self.run_dir, *parts) if self.run_dir else None

    def info(self, message):
        self.logger.info(message)

    def warning(self, message):
        self.logger.warning('warning: %s' % message)

    def save_text(self, name, text):
        if self.run_dir:
            with atomic_open(self.path(name), 'w') as f:
                f.write(text)

    def save_json(self, name, obj):
        self.save_text(name, json.dumps(obj, indent=1, default=float) + '\n')

    def scalars(self, values, step):
        if self.writer:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def text(self, tag, text):
        if self.writer:
            self.writer.add_text(tag, text, 0)

    def images(self, tag, images, step):
        """images: list of (H, W, 3) uint8 RGB pictures, stacked vertically into one."""
        if self.writer and images:
            self.writer.add_image(tag, np.concatenate(images, axis=0), step, dataformats='HWC')

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is not None and self.log_file is not None:   # the console gets it from the caller
            self.log_file.handle(self.logger.makeRecord(self.logger.name, logging.ERROR, __file__, 0,
                                                        'stopped: %s' % error_line(error), None, None))
        self.close()

    def close(self):
        warnings.showwarning = self._showwarning
        if self.writer:
            self.writer.close()
        for handler in self._handlers:
            handler.close()
            self.logger.removeHandler(handler)
        self._handlers = []
