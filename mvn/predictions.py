"""Saved predictions of an evaluation (``train.py --eval --save-predictions``): one NPZ file in
the run directory, frames in the order of the label file, for looking at results afterwards
(``python -m mvn.tools.visualize RUN_DIR``).

``predictions.npz`` holds
    predictions   (N, J, 3) float32  the evaluated 3D poses, metres, root-relative (camera frame)
    targets       (N, J, 3) float32  the labels' joints_3d relative to the root
    per_frame_p1_mm (N,) float32     mean per-joint error of each frame, millimetres
    labels_path   ()        str      the label file; frame i of these arrays is its entry i
    joint_names   (J,)      str      the dataset's skeleton
and the dataset's integer label fields (Human3.6M: subject, action, subaction, camera_id, image_id).
"""
import numpy as np

from mvn.utils.io import atomic_open

FILE_NAME = 'predictions.npz'


def prediction_arrays(dataset, predictions):
    """The arrays of predictions.npz for ``predictions`` (N, 1, J, 3) metres over the whole label
    file of ``dataset`` (as the evaluation has them on rank 0)."""
    pred = np.asarray(predictions, dtype=np.float32)[:, 0]
    root = dataset.skeleton.root
    joints = np.asarray(dataset.labels['joints_3d'][:], dtype=np.float64)
    targets = joints - joints[:, root:root + 1]
    if len(pred) != len(targets):
        raise ValueError('%d predictions for the %d frames of %s' % (len(pred), len(targets), dataset.labels_path))
    errors = 1000 * np.linalg.norm(pred.astype(np.float64) - targets, axis=-1).mean(axis=-1)
    arrays = {'predictions': pred, 'targets': targets.astype(np.float32), 'per_frame_p1_mm': errors.astype(np.float32),
              'labels_path': np.array(str(dataset.labels_path)), 'joint_names': np.array(dataset.skeleton.joint_names)}
    for name in dataset.integer_label_fields:
        arrays[name] = np.asarray(dataset.labels[name][:])
    return arrays


def save_predictions(monitor, evaluator):
    """Writes the last evaluation's predictions as predictions.npz in the run directory (rank 0;
    other ranks do nothing). Returns the path or None."""
    path = monitor.path(FILE_NAME)
    if path is None or getattr(evaluator, 'last_predictions', None) is None:
        return None
    with atomic_open(path) as f:
        np.savez(f, **prediction_arrays(evaluator.dataset, evaluator.last_predictions))
    monitor.info('predictions saved: %s' % path)
    return path


def load_predictions(path):
    """predictions.npz -> {name: array} (strings as str)."""
    with np.load(path, allow_pickle=False) as data:
        out = {k: data[k] for k in data.files}
    out['labels_path'] = str(out['labels_path'])
    return out
