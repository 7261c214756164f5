"""Pictures of an evaluation run.

    python -m mvn.tools.visualize RUN_DIR [--worst N] [--output DIR]

* ``per_group.png`` from ``RUN_DIR/eval_results.json`` (or the newest ``eval_epoch_NNN.json``):
  P1 and P2 in millimetres per action (per row of the dataset's report), as horizontal bars,
  with the averages last.
* ``worst_frames.png`` from ``RUN_DIR/predictions.npz`` (``train.py --eval --save-predictions``):
  the N frames with the largest P1, each as its crop with the 2D input, and front and side views
  of the predicted (red) and true (green) skeletons.

Pictures go to ``RUN_DIR/pictures/`` unless ``--output`` says otherwise. Drawn with OpenCV.
"""
import argparse
import glob
import json
import os
import sys

import cv2
import numpy as np

from mvn.predictions import FILE_NAME, load_predictions
from mvn.utils.io import atomic_open

SERIES = (('p1_mm', 'P1', (200, 120, 40)), ('p2_mm', 'P2', (60, 170, 240)))      # column, label, BGR
FONT = cv2.FONT_HERSHEY_SIMPLEX


class VisualizeError(ValueError):
    """A run directory without what a picture needs; the message names the file."""


def find_eval_json(run_dir):
    """eval_results.json, else the newest eval_epoch_NNN.json of ``run_dir``."""
    path = os.path.join(run_dir, 'eval_results.json')
    if os.path.isfile(path):
        return path
    epochs = sorted(glob.glob(os.path.join(glob.escape(run_dir), 'eval_epoch_*.json')))
    if not epochs:
        raise VisualizeError('no eval_results.json or eval_epoch_NNN.json in %s' % run_dir)
    return epochs[-1]


def report_rows(report, path):
    """(group name, {row: {column: value}}, summary) of an evaluation JSON."""
    groups = [k for k, v in report.items() if k != 'summary' and isinstance(v, dict) and v
              and all(isinstance(r, dict) for r in v.values())]
    if not groups or 'summary' not in report:
        raise VisualizeError('%s holds no per-group evaluation rows' % path)
    return groups[0], report[groups[0]], report['summary']


def _nice_step(top):
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000):
        if top / step <= 8:
            return step
    return 10 ** int(np.ceil(np.log10(top)))


def bar_chart(rows, summary, title='', bar_width=520):
    """BGR picture: a line per row (and 'average' from ``summary``) with a bar per SERIES column it
    has, values written at the bar ends, a millimetre axis on top."""
    series = [s for s in SERIES if any(s[0] in r for r in rows.values())]
    if not series:
        raise VisualizeError('the evaluation rows have none of the columns %s' % ', '.join(s[0] for s in SERIES))
    names = list(rows) + ['average']
    values = [rows[n] for n in rows] + [summary]
    top = max(float(v.get(c, 0.0)) for v in values for c, _, _ in series) or 1.0
    step = _nice_step(top)
    axis_max = step * np.ceil(top / step)
    label_w = max(cv2.getTextSize(n, FONT, 0.45, 1)[0][0] for n in names) + 16
    bar_h, gap = 9, 8
    row_h = bar_h * len(series) + gap
    head = 58
    width, height = label_w + bar_width + 60, head + row_h * len(names) + 10
    canvas = np.full((height, width, 3), 255, np.uint8)
    x0 = label_w
    cv2.putText(canvas, title, (8, 18), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for k, (_, label, color) in enumerate(series):
        cv2.rectangle(canvas, (x0 + 90 * k, 26), (x0 + 90 * k + 14, 36), color, -1)
        cv2.putText(canvas, label + ' (mm)', (x0 + 90 * k + 18, 36), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for tick in np.arange(0, axis_max + 1e-9, step):
        x = int(round(x0 + tick / axis_max * bar_width))
        cv2.line(canvas, (x, head - 6), (x, height - 6), (225, 225, 225), 1)
        cv2.putText(canvas, '%g' % tick, (x - 8, head - 9), FONT, 0.35, (90, 90, 90), 1, cv2.LINE_AA)
    for i, (name, row) in enumerate(zip(names, values)):
        y = head + i * row_h
        if name == 'average':
            cv2.line(canvas, (4, y - 3), (width - 4, y - 3), (150, 150, 150), 1)
        cv2.putText(canvas, name, (6, y + row_h // 2 + 2), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for k, (column, _, color) in enumerate(series):
            if column not in row:
                continue
            value = float(row[column])
            top_y = y + k * bar_h
            x1 = int(round(x0 + value / axis_max * bar_width))
            cv2.rectangle(canvas, (x0, top_y), (max(x0 + 1, x1), top_y + bar_h - 2), color, -1)
            cv2.putText(canvas, '%.1f' % value, (x1 + 4, top_y + bar_h - 2), FONT, 0.33, (60, 60, 60), 1, cv2.LINE_AA)
    return canvas


def worst_frames(run_dir, count):
    """BGR picture of the ``count`` frames with the largest P1 (see the module docstring)."""
    from mvn.datasets.build import dataset_class
    from mvn.utils.cfg import load_config
    from mvn.utils.vis import pose_comparison
    saved = load_predictions(os.path.join(run_dir, FILE_NAME))
    config = os.path.join(run_dir, 'config.yaml')
    if not os.path.isfile(config):
        raise VisualizeError('no config.yaml in %s (it says where the frames are)' % run_dir)
    cfg = load_config(config)
    dataset = dataset_class(cfg.dataset.kind)(root=cfg.dataset.root, labels_path=saved['labels_path'],
                                              image_shape=cfg.model.image_shape,
                                              keypoints_2d=cfg.dataset.keypoints_2d, progress=False)
    skeleton = dataset.skeleton
    errors = saved['per_frame_p1_mm']
    pictures = []
    for j in np.argsort(-errors, kind='stable')[:count]:
        crop, _, _, keypoints_crop = dataset.frame(int(j))
        rgb = pose_comparison(crop, keypoints_crop, saved['predictions'][j], saved['targets'][j], skeleton.parents,
                              skeleton.left, caption='frame %d: P1 %.1f mm' % (j, errors[j]))
        pictures.append(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return np.concatenate(pictures, axis=0)


def write_png(path, image):
    ok, data = cv2.imencode('.png', image)
    if not ok:
        raise VisualizeError('cannot encode %s' % path)
    with atomic_open(path) as f:
        f.write(data.tobytes())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('run_dir', help='a run directory of train.py')
    parser.add_argument('--worst', type=int, default=4, help='how many of the worst frames to draw (default 4)')
    parser.add_argument('--output', help='folder for the pictures (default RUN_DIR/pictures)')
    args = parser.parse_args(argv)
    output = args.output or os.path.join(args.run_dir, 'pictures')
    written = []
    from mvn.datasets.images import DataError
    from mvn.datasets.label_cache import LabelError
    from mvn.utils.cfg import ConfigError
    try:
        if not os.path.isdir(args.run_dir):
            raise VisualizeError('run directory not found: %s' % args.run_dir)
        path = find_eval_json(args.run_dir)
        try:
            with open(path) as f:
                report = json.load(f)
        except ValueError as e:
            raise VisualizeError('cannot read %s: %s' % (path, e)) from None
        group, rows, summary = report_rows(report, path)
        title = 'P1 / P2 per %s: %s' % (group.rstrip('s'), os.path.basename(path))
        os.makedirs(output, exist_ok=True)
        target = os.path.join(output, 'per_%s.png' % group.rstrip('s'))
        write_png(target, bar_chart(rows, summary, title))
        written.append(target)
        if os.path.isfile(os.path.join(args.run_dir, FILE_NAME)) and args.worst > 0:
            target = os.path.join(output, 'worst_frames.png')
            write_png(target, worst_frames(args.run_dir, args.worst))
            written.append(target)
        else:
            print('no %s in %s (train.py --eval --save-predictions writes it): no worst frames'
                  % (FILE_NAME, args.run_dir))
    except (VisualizeError, DataError, LabelError, ConfigError, OSError) as e:
        print('error: %s' % str(e).strip().splitlines()[-1], file=sys.stderr)
        sys.exit(1)
    for path in written:
        print('wrote %s' % path)


if __name__ == '__main__':
    main()
