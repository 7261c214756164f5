"""The evaluation step and what it leaves behind: predictions over the (sharded) evaluation set,
the dataset protocol's report on rank 0, and its traces: a JSON file, TensorBoard scalars and
skeleton pictures."""
import numpy as np

from mvn import engine
from mvn.utils.vis import pose_comparison


class Evaluator:
    """Evaluates a model on ``dataset`` (this rank's shard) through ``loader`` and ``preparer``
    and reports to ``monitor``; ``n_pictures`` skeleton pictures per evaluation."""

    def __init__(self, dataset, loader, preparer, monitor, *, flip_test, amp, n_pictures):
        self.dataset = dataset
        self.loader = loader
        self.preparer = preparer
        self.monitor = monitor
        self.flip_test = flip_test
        self.amp = amp
        self.n_pictures = n_pictures

    def __call__(self, model, epoch, json_name, scalar_prefix='val', **record):
        """The EvaluationReport of ``model`` after ``epoch`` epochs on rank 0 (None elsewhere),
        once plotted at step ``epoch`` (tags '<scalar_prefix>/...'; skeleton pictures under
        'val/poses' for the prefix 'val' only), and saved as ``json_name`` ({'epoch', 'labels',
        'frames', 'retain_every_n_frames', **record, **report.to_json()})."""
        report, predictions = engine.evaluate(model, self.loader, self.preparer, self.dataset,
                                              flip_test=self.flip_test, amp=self.amp)
        if report is None:
            return None
        self.monitor.scalars(report.scalars(scalar_prefix), epoch)
        if self.monitor.writer and self.n_pictures > 0 and scalar_prefix == 'val':
            self.monitor.images('val/poses', skeleton_pictures(self.dataset, predictions, self.n_pictures), epoch)
        # Last: once the JSON file is there, the evaluation is recorded everywhere.
        self.monitor.save_json(json_name, {'epoch': epoch, 'labels': self.dataset.labels_path,
                                           'frames': self.dataset.file_size,
                                           'retain_every_n_frames': self.dataset.retain_every_n_frames,
                                           **record, **report.to_json()})
        return report


def skeleton_pictures(dataset, predictions, count):
    """Pictures of ``count`` frames spread evenly over the whole file: the crop with its 2D
    keypoints, the predicted and true 3D poses (root-relative) and the frame's P1 in mm.
    ``predictions``: (N, 1, J, 3) metres for every frame of the file, as the evaluation has them
    on rank 0."""
    skeleton = dataset.skeleton
    picks = np.linspace(0, dataset.file_size - 1, min(count, dataset.file_size)).astype(int)
    pictures = []
    for j in picks:
        crop, joints_3d, _, keypoints_crop = dataset.frame(j)
        target = joints_3d[0] - joints_3d[0][skeleton.root]
        pred = predictions[j, 0].numpy()
        p1_mm = 1000 * np.linalg.norm(pred.astype(np.float64) - target, axis=-1).mean()
        pictures.append(pose_comparison(crop, keypoints_crop, pred, target, skeleton.parents, skeleton.left,
                                        caption='frame %d: P1 %.1f mm' % (j, p1_mm)))
    return pictures
