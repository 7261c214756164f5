"""mvn.inference: heatmap decoding, COCO -> Human3.6M, crops and inputs as the labels make them,
the 3D pass as the evaluation runs it, boxes, the heatmap person locator, smoothing, weights."""
import json
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from mvn import engine
from mvn.datasets.human36m import Human36MSingleViewDataset
from mvn.datasets.images import read_image as read_dataset_image
from mvn.inference import Pose3DEstimator
from mvn.inference import estimator as estimator_module
from mvn.inference.boxes import (BoxError, box_from_keypoints, crop_from_box, load_boxes_file, parse_box,
                                 whole_frame_crop)
from mvn.inference.keypoints import coco_flip_permutation, coco_to_h36m, decode_heatmaps, merge_flipped_heatmaps
from mvn.inference.locator import HeatmapPersonLocator
from mvn.inference.model import config_from_state
from mvn.inference.smoothing import OneEuroFilter, Tracks
from mvn.models.pose_hrnet import PoseHighResolutionNet
from mvn.models.weights import WeightsError
from mvn.utils.img import crop_image, crop_transform, transform_points
from tests.helpers import h36m_preparer
from tests.inference_helpers import write_weights


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    return write_weights(tmp_path_factory.mktemp('weights'))


@pytest.fixture(scope='module')
def estimator(weights):
    checkpoint, coco, _ = weights
    return Pose3DEstimator(checkpoint, coco_weights=coco, device='cpu')


def frame(seed=0, h=240, w=320):
    return (np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8)


# -- heatmaps ---------------------------------------------------------------------------------
def test_heatmap_decoding_peaks_and_quarter_shifts():
    hm = np.zeros((1, 5, 64, 48))
    hm[0, 0, 20, 10] = 1.0                                   # peak at x=10, y=20
    hm[0, 0, 20, 11], hm[0, 0, 20, 9] = 0.5, 0.2             # right higher: x + 0.25
    hm[0, 0, 21, 10], hm[0, 0, 19, 10] = 0.1, 0.3            # above higher: y - 0.25
    hm[0, 1, 30, 1], hm[0, 1, 30, 2] = 1.0, 0.9              # x = 1: outside HRNet's 1 < x bound, no shift
    hm[0, 2] = -np.arange(64 * 48).reshape(64, 48) - 1.0     # nothing above 0: placed at (0, 0)
    hm[0, 3, 63, 47] = 2.0                                   # corner: no shift
    hm[0, 4, 40, 30] = 1.0
    hm[0, 4, 40, 29] = hm[0, 4, 40, 31] = 0.4                # equal neighbours: no shift in x
    hm[0, 4, 41, 30] = 0.3
    coords, scores = decode_heatmaps(hm)
    assert coords[0].tolist() == [[10.25, 19.75], [1.0, 30.0], [0.0, 0.0], [47.0, 63.0], [30.0, 40.25]]
    assert scores[0].tolist() == [1.0, 1.0, -1.0, 2.0, 1.0]


def test_heatmap_flip_test_mirrors_swaps_shifts_and_averages():
    plain = np.zeros((1, 17, 64, 48))
    mirrored = np.zeros((1, 17, 64, 48))
    mirrored[0, 9, 10, 5] = 1.0          # left wrist at x=5 in the mirrored crop
    merged = merge_flipped_heatmaps(plain, mirrored, coco_flip_permutation())
    # -> right wrist (10), x = 47 - 5 = 42, shifted one cell right: 43; averaged with 0: 0.5
    assert merged[0, 10, 10, 43] == 0.5 and np.count_nonzero(merged) == 1
    torch_merged = merge_flipped_heatmaps(torch.from_numpy(plain), torch.from_numpy(mirrored), coco_flip_permutation())
    assert np.array_equal(torch_merged.numpy(), merged)
    coords, scores = decode_heatmaps(merged)
    assert coords[0, 10].tolist() == [43.0, 10.0] and scores[0, 10] == 0.5


def test_coco_to_h36m_against_hand_computed_points():
    coco = np.array([[50, 10], [48, 8], [52, 6], [46, 9], [54, 9], [60, 30], [40, 32], [64, 45], [36, 45],
                     [66, 60], [34, 60], [56, 70], [44, 72], [57, 90], [43, 90], [58, 110], [42, 110]], float)
    expected = [[50, 71], [44, 72], [43, 90], [42, 110], [56, 70], [57, 90], [58, 110],
                [50, 51], [50, 31], [50, 10], [50, 7], [60, 30], [64, 45], [66, 60], [40, 32], [36, 45], [34, 60]]
    scores = np.arange(17) / 10.0
    points, out_scores = coco_to_h36m(coco, scores)
    assert points.tolist() == expected
    assert out_scores[0] == pytest.approx(1.15) and out_scores[8] == pytest.approx(0.55)
    assert out_scores[7] == pytest.approx(0.85) and out_scores[10] == pytest.approx(0.15)
    assert out_scores[3] == pytest.approx(1.6) and out_scores[9] == 0.0


# -- crops and the 3D pass, against the dataset and the evaluation ----------------------------
def test_inputs_and_3d_equal_the_dataset_and_the_evaluation_for_a_labels_box(weights, estimator, processed_data):
    _, _, model = weights
    dataset = Human36MSingleViewDataset(root=processed_data['root'], labels_path=processed_data['val'], progress=False)
    picks = [0, 7]
    results = []
    for j in picks:
        image = read_dataset_image(dataset.image_path(j))
        h, w = image.shape[:2]
        labels = dataset.labels
        normalised = np.asarray(labels['joints_2d_cpn'][j], np.float64)
        pixels = (normalised + [1.0, h / w]) * w / 2
        center, scale = labels['center'][j], labels['scale'][j]
        crop, _, item_2d, item_crop = dataset.frame(j)
        assert np.array_equal(crop_image(image, center, scale), crop)
        screen, crop_keypoints = estimator.model_inputs(image.shape, pixels, center, scale)
        np.testing.assert_allclose(screen, item_2d, atol=1e-9)
        np.testing.assert_allclose(crop_keypoints, item_crop, atol=1e-4)
        people = estimator(image, keypoints=[{'keypoints_2d': pixels, 'crop': (center, scale)}])
        results.append(people[0]['keypoints_3d'])
    loader = DataLoader(Subset(dataset, picks), batch_size=len(picks), shuffle=False)
    pred, _ = engine.predict(model, loader, h36m_preparer('hrnet_tiny', 'cpu', flip_test=True), flip_test=True)
    expected = (pred[:, 0] - pred[:, 0, :1]).numpy()
    np.testing.assert_allclose(np.stack(results), expected, atol=1e-5)


def test_2d_keypoints_from_the_coco_heatmap_layer_on_the_crop(weights, tmp_path):
    checkpoint, _, model = weights
    _, other_coco, _ = write_weights(tmp_path, seed=1, same_backbone=False)
    est = Pose3DEstimator(checkpoint, coco_weights=other_coco, device='cpu', flip_test=False)
    assert not est.shared_backbone
    image, box = frame(1), [60, 30, 200, 230]
    center, scale = crop_from_box(box)
    # The detector by hand: the COCO file's backbone and final_layer on the normalised RGB crop.
    state = torch.load(other_coco)
    hrnet = PoseHighResolutionNet(width=8, stem_channels=16, stem_blocks=1, stage_modules=(1, 1, 1),
                                  blocks_per_branch=1)
    hrnet.load_state_dict({k: v for k, v in state.items() if not k.startswith('final_layer')})
    crop = crop_image(image, center, scale)
    rgb = torch.from_numpy(crop[..., ::-1].copy()).float() / 255
    normalised = (rgb - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    with torch.no_grad():
        heatmaps = torch.nn.functional.conv2d(hrnet.eval()(normalised.permute(2, 0, 1)[None])[0],
                                              state['final_layer.weight'], state['final_layer.bias'])
    cells, scores = decode_heatmaps(heatmaps.numpy())
    expected = transform_points(cells[0] * 4, crop_transform(center, scale, inverse=True))
    person = est(image, boxes=[box])[0]
    np.testing.assert_allclose(person['keypoints_2d_coco'], expected, atol=1e-3)
    np.testing.assert_allclose(person['scores_2d_coco'], scores[0], atol=1e-5)
    np.testing.assert_allclose(person['keypoints_2d'], coco_to_h36m(expected), atol=1e-3)


def test_api_on_a_frame_and_a_batch(estimator):
    frames = [frame(2), frame(3, 120, 90)]
    boxes = [[[20, 20, 150, 220], [150, 40, 300, 230]], [[5, 5, 80, 110]]]
    batch = estimator(frames, boxes=boxes)
    assert [len(people) for people in batch] == [2, 1]
    for people, image, frame_boxes in zip(batch, frames, boxes):
        single = estimator(image, boxes=frame_boxes)
        for a, b in zip(people, single):
            np.testing.assert_allclose(a['keypoints_3d'], b['keypoints_3d'], atol=1e-5)
            assert a['keypoints_3d'].shape == (17, 3) and np.all(a['keypoints_3d'][0] == 0)
            assert a['keypoints_2d_coco'].shape == a['keypoints_2d'].shape == (17, 2)
            assert a['scores_2d_coco'].shape == (17,) and np.isfinite(a['score'])


def test_boxes_from_a_file_are_used_as_given(estimator, tmp_path, monkeypatch):
    path = tmp_path / 'boxes.json'
    path.write_text(json.dumps({'frames': [{'frame': 0, 'boxes': [[10, 20, 110, 220]]}, {'frame': 1, 'boxes': []}]}))
    boxes = load_boxes_file(str(path))
    seen = []
    real = estimator_module.crop_image
    monkeypatch.setattr(estimator_module, 'crop_image', lambda img, c, s, size: seen.append((c, s)) or real(img, c, s, size))
    results = list(estimator.run([frame(4), frame(5)], boxes=boxes))
    assert results[1] == [] and len(results[0]) == 1
    assert results[0][0]['box'].tolist() == [10, 20, 110, 220]
    center, scale = crop_from_box([10, 20, 110, 220])
    assert len(seen) == 1 and np.array_equal(seen[0][0], center) and np.array_equal(seen[0][1], scale)
    # side = 200 px * 2000/1750 around the box centre (60, 120)
    assert center.tolist() == [60, 120] and scale[0] == pytest.approx(200 * 2000 / 1750 / 200)


@pytest.mark.parametrize('content, message', [
    ('[[[1, 2, 3]]]', 'four numbers'), ('[[[5, 5, 1, 1]]]', 'x1 > x0'), ('{"x": 1}', 'list of frames'),
    ('not json', 'cannot read boxes file')])
def test_bad_boxes_files_are_named(tmp_path, content, message):
    path = tmp_path / 'b.json'
    path.write_text(content)
    with pytest.raises(BoxError, match=message):
        load_boxes_file(str(path))
    with pytest.raises(BoxError, match='--box'):
        parse_box('1,2,3')


# -- the person locator (heatmaps of the whole frame, then the crop) --------------------------
def test_locator_looks_at_the_whole_frame_then_refines_on_the_crop():
    person = np.array([[300 + 10 * (k % 3), 100 + 15 * k] for k in range(17)], float)   # x 300-320, y 100-340
    calls = []

    def keypoints_fn(frames, centers, scales, flip=False):
        calls.append((centers[0], scales[0]))
        return person[None], np.full((1, 17), 0.9)

    locator = HeatmapPersonLocator(keypoints_fn)
    found = locator(np.zeros((480, 640, 3), np.uint8), threshold=0.2)
    # Call 1: the whole frame in one crop; every frame corner lands inside the 192x256 crop.
    corners = transform_points([[0, 0], [639, 0], [0, 479], [639, 479]], crop_transform(*calls[0]))
    assert corners.min() >= -1e-6 and corners[:, 0].max() <= 191 + 1e-6 and corners[:, 1].max() <= 255 + 1e-6
    # Call 2: the crop of the box around the keypoints: extent 240 px, margins 12% up, 5% down, 8% aside.
    box = [300 - 19.2, 100 - 28.8, 320 + 19.2, 340 + 12]
    assert len(calls) == 2 and np.allclose(calls[1][0], crop_from_box(box)[0])
    assert len(found) == 1 and np.allclose(found[0][0], box) and found[0][1] == pytest.approx(0.9)
    calls.clear()
    assert len(locator(np.zeros((480, 640, 3), np.uint8), previous_box=box)) == 1 and len(calls) == 1
    assert np.allclose(calls[0][0], crop_from_box(box)[0])          # tracking: the last box's crop only
    unsure = HeatmapPersonLocator(lambda *a, **k: (person[None], np.full((1, 17), 0.1)))
    assert unsure(np.zeros((480, 640, 3), np.uint8), threshold=0.2) == []


def test_box_helpers():
    assert box_from_keypoints(np.zeros((17, 2)), np.zeros(17), 0.5) is None
    center, scale = whole_frame_crop(640, 480)
    assert center.tolist() == [319.5, 239.5] and scale[0] == pytest.approx(3.2)      # 640 px across
    assert whole_frame_crop(480, 640)[1][0] == pytest.approx(2.4)                   # 640 * 191 / 255 < 480


# -- smoothing --------------------------------------------------------------------------------
def test_one_euro_filter_against_hand_computed_steps():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0, d_cutoff=1.0)
    assert f(np.array([0.0]), 0.1) == 0.0                       # the first sample passes
    a = 1 / (1 + 1 / (2 * math.pi * 1.0 * 0.1))                 # 0.3858...
    assert f(np.array([1.0]), 0.1)[0] == pytest.approx(a)
    assert f(np.array([1.0]), 0.1)[0] == pytest.approx(a + (1 - a) * a)
    fast = OneEuroFilter(min_cutoff=1.0, beta=1.0)
    fast(np.array([0.0]), 0.1)
    assert fast(np.array([1.0]), 0.1)[0] > a                    # a fast move raises the cut-off


def test_tracks_follow_overlapping_boxes():
    tracks = Tracks()
    assert tracks.assign([[0, 0, 10, 10], [50, 50, 60, 60]]) == [0, 1]
    assert tracks.assign([[51, 50, 61, 60], [1, 0, 11, 10]]) == [1, 0]
    assert tracks.assign([[200, 200, 210, 210]]) == [2]


def test_video_run_smooths_and_gives_every_frame(estimator):
    frames = [frame(6)] * 3
    smooth = list(estimator.run(frames, boxes={i: [[20 + 4 * i, 20, 150, 220]] for i in range(3)}, smooth=True,
                                fps=25))
    raw = list(estimator.run(frames, boxes={i: [[20 + 4 * i, 20, 150, 220]] for i in range(3)}))
    assert [len(p) for p in smooth] == [1, 1, 1]
    assert np.allclose(smooth[0][0]['box'], raw[0][0]['box'])                  # first frame unchanged
    assert 20 < smooth[2][0]['box'][0] < 28                                    # lags the moving box


# -- weights ----------------------------------------------------------------------------------
def test_missing_weights_say_which_file_goes_where(weights, tmp_path):
    checkpoint, coco, _ = weights
    with pytest.raises(WeightsError, match='CA-PF checkpoint file not found: .*nowhere.bin .*best_epoch_hrnet_32'):
        Pose3DEstimator(str(tmp_path / 'nowhere.bin'), coco_weights=coco, device='cpu')
    with pytest.raises(WeightsError, match='COCO HRNet weights file not found: .*none.pth .*data/pretrained/coco'):
        Pose3DEstimator(checkpoint, coco_weights=str(tmp_path / 'none.pth'), device='cpu')
    state = torch.load(coco)
    del state['final_layer.weight']
    torch.save(state, tmp_path / 'headless.pth')
    with pytest.raises(WeightsError, match='headless.pth has no final_layer.weight'):
        Pose3DEstimator(checkpoint, coco_weights=str(tmp_path / 'headless.pth'), device='cpu')


def test_architecture_is_read_from_the_checkpoint(weights):
    _, _, model = weights
    cfg = config_from_state(model.state_dict(), 'x')
    assert cfg.model.backbone.type == 'hrnet_tiny' and cfg.model.poseformer.embed_dim_ratio == 16
    assert cfg.model.poseformer.depth == 2 and cfg.model.poseformer.mlp_ratio == 2.0
    no_context = {k: v for k, v in model.state_dict().items() if 'context_blocks' not in k}
    with pytest.raises(WeightsError, match='without context blocks'):
        config_from_state(no_context, 'x')
