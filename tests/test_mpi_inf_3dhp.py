"""The MPI-INF-3DHP dataset kind: flips with its pairs, items, its protocol, and train.py end to
end on synthetic 3DHP with one process and two (gloo)."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

from mvn.datasets import mpi_meta
from mvn.datasets.batch import BatchPreparer
from mvn.datasets.images import DataError
from mvn.datasets.mpi_inf_3dhp import MPIINF3DHPDataset
from mvn.datasets.synthetic_3dhp import generate_processed
from mvn.utils.cfg import load_config
from tests.helpers import write_config
from tests.test_train import evaluate, run_dirs, train


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp('synthetic3dhp')
    paths = {'root': str(base / 'images'), 'train': str(base / 'train.pkl'), 'val': str(base / 'test.pkl')}
    generate_processed(paths['root'], paths['train'], paths['val'], subjects=(1,), sequences=(1,), cameras=(0, 4),
                       frames=3, test_sequences=(1, 5), test_frames=4, progress=False)
    return paths


def test_flips_exchange_the_3dhp_pairs():
    # Joint j holds (j, 10 j, 100 j); pelvis (14) at (14, 140, 1400).
    joints = torch.tensor([[float(j), 10.0 * j, 100.0 * j] for j in range(17)], dtype=torch.float64)
    keypoints = joints[:, :2] / 100
    batch = (torch.zeros(1, 256, 192, 3, dtype=torch.uint8), joints[None, None], keypoints[None], keypoints[None] * 10)
    preparer = BatchPreparer('cpu', normalize=lambda x: x, skeleton=mpi_meta.SKELETON, crop_width=192, flip_test=True)
    _, target, keypoints_2d, crop = preparer(batch)
    # Root-relative to the pelvis: joint j minus joint 14, the pelvis itself zero.
    expected_target = joints - joints[14]
    assert torch.allclose(target[0, 0].double(), expected_target)
    # Mirrored: right <-> left (2-4 <-> 5-7, 8-10 <-> 11-13), head, neck, pelvis, spine stay.
    source = [0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 14, 15, 16]
    mirrored = keypoints[source].clone()
    mirrored[:, 0] *= -1
    assert torch.allclose(keypoints_2d[0, 1].double(), mirrored)
    mirrored_crop = (keypoints * 10)[source].clone()
    mirrored_crop[:, 0] = 192 - mirrored_crop[:, 0] - 1
    assert torch.allclose(crop[0, 1].double(), mirrored_crop)


def test_items_are_the_stored_crops_with_ground_truth_2d(data):
    dataset = MPIINF3DHPDataset(data['root'], data['val'], keypoints_2d='gt', progress=False)
    assert len(dataset) == 4            # TS1 and TS5, frames 1 and 3 (2 and 4 are invalid)
    crop, joints_3d, keypoints_2d, keypoints_crop = dataset[1]
    assert crop.shape == (256, 192, 3)
    assert np.array_equal(crop, cv2.imread(os.path.join(data['root'], 'TS1', 'TS1_000003.jpg')))
    assert joints_3d.shape == (1, 17, 3) and keypoints_2d.shape == keypoints_crop.shape == (17, 2)
    assert dataset.labels['joints_2d_gt_crop'][1].tolist() == keypoints_crop.tolist()


def test_stored_crops_of_another_size_are_an_error(data):
    dataset = MPIINF3DHPDataset(data['root'], data['val'], image_shape=(96, 128), keypoints_2d='gt', progress=False)
    with pytest.raises(DataError, match=r'TS1_000001.jpg is 192x256, but model.image_shape is \[96, 128\]'):
        dataset[0]


def test_protocol_report_of_exact_predictions(data):
    dataset = MPIINF3DHPDataset(data['root'], data['val'], keypoints_2d='gt', progress=False)
    gt = torch.from_numpy(np.array(dataset.labels['joints_3d']))[:, None]
    gt = gt - gt[:, :, 14:15]
    report = dataset.evaluate(gt, gt.clone())
    assert report.summary == pytest.approx({'frames': 4, 'mpjpe_mm': 0.0, 'pck_pct': 100.0, 'auc_pct': 100 * 30 / 31})
    assert list(report.rows) == ['TS1', 'TS5', 'GS', 'Outdoor'] and report.score == 0.0
    assert report.table_lines()[-1].split() == ['All', '4', '100.00', '96.77', '0.00']
    assert 'val_sequences/pck_TS5' in report.scalars()
    # The best-checkpoint score is the overall MPJPE unrounded (the official code compares it so):
    # one joint 0.0019 m off in every frame -> 1.9 / 17 = 0.1118 mm.
    pred = gt.clone()
    pred[:, 0, 3, 0] += 0.0019
    assert dataset.evaluate(gt, pred).score == pytest.approx(1.9 / 17, rel=1e-9)


def test_config_selects_the_dataset_and_its_2d_source(tmp_path):
    path = tmp_path / 'k.yaml'
    path.write_text('dataset: {kind: mpi_inf_3dhp}\n')
    cfg = load_config(str(path))
    assert (cfg.dataset.keypoints_2d, cfg.dataset.val_labels_path) == ('gt', 'data/mpi_inf_3dhp_test.pkl')


def tiny_config(path, data, **overrides):
    return write_config(path, data, **{
        'dataset.kind': 'mpi_inf_3dhp', 'dataset.keypoints_2d': 'gt', 'model.poseformer.context_blocks': False,
        'model.poseformer.output_unit': 'mm', 'model.backbone.train_batchnorm': True, 'train.n_epochs': 1,
        'train.batch_size': 4, 'val.batch_size': 3, **overrides})


def test_train_and_evaluate_with_one_process_and_two(data, tmp_path):
    config = tiny_config(tmp_path / 'tiny3dhp.yaml', data)
    result = train('--config', config, '--logdir', str(tmp_path / 'logs'))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'val-mpjpe:' in result.stdout and 'val-pck:' in result.stdout
    (run_dir,) = run_dirs(tmp_path / 'logs')
    with open(os.path.join(run_dir, 'eval_epoch_001.json')) as f:
        epoch = json.load(f)
    assert sorted(epoch['sequences']) == ['GS', 'Outdoor', 'TS1', 'TS5'] and epoch['summary']['frames'] == 4
    checkpoint = os.path.join(run_dir, 'checkpoints', 'best_epoch.bin')
    # The same checkpoint evaluated by two processes (two shards of 2 frames): the same figures.
    double, stdout = evaluate(config, checkpoint, tmp_path / 'eval2', nproc=2)
    assert 'gloo' in stdout and stdout.count('TS5 ') == 1
    for column in ('mpjpe_mm', 'pck_pct', 'auc_pct'):
        assert double['summary'][column] == pytest.approx(epoch['summary'][column], rel=1e-6)
    # And a training epoch with two processes.
    result = train('--config', config, '--logdir', str(tmp_path / 'logs2'), nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path / 'logs2')
    assert os.path.isfile(os.path.join(run_dir, 'checkpoints', 'best_epoch.bin'))
