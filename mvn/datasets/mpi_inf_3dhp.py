"""MPI-INF-3DHP over the label files of MPI-INF-3DHP-Toolbox (or of its reader of the official
npz files), through the label cache. Frames are stored as crops already."""
import os

import numpy as np

from mvn.datasets import evaluation_3dhp, mpi_meta
from mvn.datasets.base import PoseDataset
from mvn.datasets.images import DataError, read_image
from mvn.datasets.report import EvaluationReport
from mvn.datasets.synthetic_3dhp import generate_processed

COLUMNS = (('frames', 'frames'), ('mpjpe_mm', 'mpjpe_mm'), ('pck_pct', 'pck'), ('auc_pct', 'auc'))


class SequenceReport(EvaluationReport):
    """The official 3DHP protocol's report (``evaluation_3dhp``): a row per test sequence and per
    scene (frames, mpjpe_mm, pck_pct, auc_pct), the pooled 'All' figures as the summary, and the
    best-checkpoint score of the official code: the overall MPJPE, unrounded."""

    group_name = 'sequences'
    score_name = 'MPJPE'
    score_unit = 'mm'
    epoch_columns = ('mpjpe_mm', 'pck_pct', 'auc_pct')

    def __init__(self, report):
        def row(scored):
            return {column: scored[key] for column, key in COLUMNS}
        rows = {name: row(s) for name, s in list(report['sequences'].items()) + list(report['scenes'].items())}
        summary = row(report['overall'])
        super().__init__(rows, summary, score=summary['mpjpe_mm'])
        self.report = report

    def table_lines(self):
        return evaluation_3dhp.format_table(self.report)

    def to_json(self):
        return dict(super().to_json(), details=self.report)


class MPIINF3DHPDataset(PoseDataset):
    """Crops of a 3DHP label file (``mpi_inf_3dhp_train.pkl``, ``mpi_inf_3dhp_test.pkl``); items,
    sharding and keywords as ``PoseDataset`` (2D input: ``dataset.keypoints_2d: gt``).
    Evaluation: PCK, AUC and MPJPE per test sequence and pooled, over the valid frames."""

    skeleton = mpi_meta.SKELETON
    label_fields = {'image': (), 'subject': (), 'sequence': (), 'valid': (), 'activity': ()}
    integer_label_fields = ('subject', 'sequence', 'valid', 'activity')
    make_synthetic = staticmethod(generate_processed)

    def image_path(self, j):
        """Frame ``j``'s crop: <root>/<the label's image>."""
        return os.path.join(self.root, str(self.labels['image'][j]))

    def crop_source(self):
        return 'the stored crops under %s' % self.root

    def crop(self, j):
        """The stored crop itself (the preparation cut it with the label's box)."""
        image = read_image(self.image_path(j))
        if image.shape[1::-1] != self.image_shape:
            raise DataError('%s is %dx%d, but model.image_shape is %s (3DHP frames are stored as crops)'
                            % (self.image_path(j), image.shape[1], image.shape[0], list(self.image_shape)))
        return image

    def evaluation_report(self, joints_gt, joints_pred):
        t = self.labels
        test_sequence = np.where(np.asarray(t['subject']) == 0, np.asarray(t['sequence']), 0)
        report = evaluation_3dhp.evaluate_3dhp(1000.0 * _numpy(joints_pred), 1000.0 * _numpy(joints_gt), test_sequence,
                                               valid=np.asarray(t['valid']), activity=np.asarray(t['activity']))
        return SequenceReport(report)


def _numpy(x):
    return x.detach().cpu().double().numpy() if hasattr(x, 'detach') else np.asarray(x, dtype=np.float64)
