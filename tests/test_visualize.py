"""train.py --eval --save-predictions (predictions in label order) and python -m mvn.tools.visualize
(the per-action bar chart and the worst frames)."""
import glob
import json
import os

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

import train
from mvn import engine
from mvn.datasets.human36m import Human36MSingleViewDataset
from mvn.models.conpose import CA_PF
from mvn.predictions import load_predictions
from mvn.tools import visualize
from mvn.utils.cfg import load_config
from tests.helpers import h36m_preparer, write_config


@pytest.fixture(scope='module')
def evaluated(tmp_path_factory, processed_data):
    base = tmp_path_factory.mktemp('eval')
    config = write_config(base / 'tiny.yaml', processed_data)
    torch.manual_seed(3)
    model = CA_PF(load_config(config)).eval()
    torch.save({'epoch': 1, 'model': model.state_dict()}, base / 'best.bin')
    train.main(train.parse_args(['--config', config, '--eval', '--checkpoint', str(base / 'best.bin'),
                                 '--save-predictions', '--logdir', str(base / 'logs'), '--device', 'cpu']))
    (run_dir,) = glob.glob(str(base / 'logs' / '*@*'))
    return run_dir, model


def test_predictions_are_saved_in_label_order(evaluated, processed_data):
    run_dir, model = evaluated
    saved = load_predictions(os.path.join(run_dir, 'predictions.npz'))
    dataset = Human36MSingleViewDataset(root=processed_data['root'], labels_path=processed_data['val'], progress=False)
    n = dataset.file_size
    assert saved['predictions'].shape == saved['targets'].shape == (n, 17, 3)
    assert saved['labels_path'] == processed_data['val'] and list(saved['image_id']) == list(dataset.labels['image_id'])
    joints = np.asarray(dataset.labels['joints_3d'][:], np.float64)
    np.testing.assert_allclose(saved['targets'], joints - joints[:, :1], atol=1e-6)
    picks = [n - 1, 0]                   # frames predicted on their own, compared by label index
    loader = DataLoader(Subset(dataset, picks), batch_size=2)
    pred, _ = engine.predict(model, loader, h36m_preparer('hrnet_tiny', 'cpu', flip_test=True))
    np.testing.assert_allclose(saved['predictions'][picks], pred[:, 0].numpy(), atol=1e-5)
    errors = 1000 * np.linalg.norm(saved['predictions'] - saved['targets'], axis=-1).mean(-1)
    np.testing.assert_allclose(saved['per_frame_p1_mm'], errors, rtol=1e-4)


def test_save_predictions_needs_eval(processed_data, tmp_path):
    with pytest.raises(SystemExit):
        train.parse_args(['--config', 'x.yaml', '--save-predictions'])


def test_visualize_draws_the_chart_and_the_worst_frames(evaluated, capsys):
    run_dir, _ = evaluated
    visualize.main([run_dir, '--worst', '3'])
    chart = cv2.imread(os.path.join(run_dir, 'pictures', 'per_action.png'))
    report = json.load(open(os.path.join(run_dir, 'eval_results.json')))
    assert chart is not None and chart.shape[0] > 20 * (len(report['actions']) + 1)
    worst = cv2.imread(os.path.join(run_dir, 'pictures', 'worst_frames.png'))
    assert worst.shape == (3 * (22 + 256), 192 + 2 * 256, 3)     # legend over crop, front, side; 3 rows


def test_bar_lengths_follow_the_values():
    chart = visualize.bar_chart({'Walking': {'p1_mm': 40.0, 'p2_mm': 20.0}}, {'p1_mm': 40.0, 'p2_mm': 20.0},
                                bar_width=400)
    # axis 0..40 mm over 400 px: P1 (first bar) 400 px long, P2 200 px; the label column comes first.
    p1_color, p2_color = visualize.SERIES[0][2], visualize.SERIES[1][2]
    rows = [y for y in range(chart.shape[0]) if (chart[y] == p1_color).all(-1).sum() > 300]
    assert rows, 'no P1 bar'
    p1_pixels = (chart[rows[0]] == p1_color).all(-1)
    x0 = int(np.argmax(p1_pixels))
    assert p1_pixels.sum() == pytest.approx(401, abs=2)
    p2_rows = [y for y in range(chart.shape[0]) if (chart[y] == p2_color).all(-1).sum() > 150]
    assert (chart[p2_rows[0]] == p2_color).all(-1).sum() == pytest.approx(201, abs=2)
    assert int(np.argmax((chart[p2_rows[0]] == p2_color).all(-1))) == x0


def test_visualize_errors_name_the_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        visualize.main([str(tmp_path)])
    assert 'no eval_results.json' in capsys.readouterr().err
