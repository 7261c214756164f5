"""The run directory and what goes into it: log, resolved config, results, TensorBoard.

``<logdir>/<name>@<timestamp>/`` holds ``config.yaml``, ``log.txt``, ``tb/``, ``checkpoints/`` and
evaluation results. Only rank 0 writes and prints; other ranks get a Monitor that stays silent.
"""
import datetime
import json
import logging
import os
import re
import sys

import numpy as np

from mvn.utils.io import atomic_open


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


class Monitor:
    """Logging, TensorBoard and files of one run. As a context manager it closes everything on
    the way out, and a run stopped by an error or Ctrl-C records why at the end of log.txt."""

    def __init__(self, run_dir=None, main=True):
        self.run_dir = run_dir if main else None
        self.logger = logging.getLogger('capf.%d' % id(self))
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO if main else logging.ERROR)
        stream = logging.StreamHandler(sys.stdout)
        stream.setFormatter(logging.Formatter('%(message)s'))
        self.logger.addHandler(stream)
        self.writer = self.log_file = None
        if self.run_dir:
            os.makedirs(os.path.join(self.run_dir, 'checkpoints'), exist_ok=True)
            self.log_file = logging.FileHandler(os.path.join(self.run_dir, 'log.txt'))
            self.log_file.setFormatter(logging.Formatter('%(asctime)s %(message)s'))
            self.logger.addHandler(self.log_file)
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(os.path.join(self.run_dir, 'tb'))

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
        if self.writer:
            self.writer.close()
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)
