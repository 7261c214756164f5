"""The TensorBoard skeleton pictures: a legend, each row's P1, 2D keypoints that stand out."""
import numpy as np
import pytest
import torch

from mvn import evaluator
from mvn.datasets.h36m_meta import SKELETON
from mvn.datasets.human36m import Human36MSingleViewDataset
from mvn.utils.vis import GT_COLOR, INPUT_COLOR, LEGEND_HEIGHT, PRED_COLOR, pose_comparison

PARENTS, LEFT = SKELETON.parents, SKELETON.left


def stick_figure():
    """(17, 2) crop pixels and (17, 3) metres of a standing figure."""
    rng = np.random.default_rng(0)
    pose = rng.uniform(-0.3, 0.3, size=(17, 3))
    pose -= pose[0]
    return pose[:, :2] * 100 + [96, 128], pose


def near(picture, bgr, tolerance=40):
    """Pixels of ``picture`` (RGB) within ``tolerance`` of the BGR colour."""
    return (np.abs(picture.astype(int) - bgr[::-1]).max(axis=-1) <= tolerance)


def test_the_picture_has_a_legend_and_its_caption():
    keypoints, pose = stick_figure()
    crop = np.full((256, 192, 3), 90, np.uint8)
    picture = pose_comparison(crop, keypoints, pose + 0.05, pose, PARENTS, LEFT, caption='frame 3: P1 86.6 mm')
    assert picture.shape == (LEGEND_HEIGHT + 256, 192 + 256 + 256, 3) and picture.dtype == np.uint8
    legend = picture[:LEGEND_HEIGHT]
    # 'prediction' in red and 'truth' in green over the front view; '2D input' in the keypoints' colour
    assert near(legend[:, 192:282], PRED_COLOR).sum() > 20 and near(legend[:, 282:448], GT_COLOR).sum() > 20
    assert near(legend[:, :192], INPUT_COLOR).sum() > 20
    plain = pose_comparison(crop, keypoints, pose + 0.05, pose, PARENTS, LEFT)
    differs = np.argwhere((plain != picture).any(axis=-1))
    assert len(differs) and differs[:, 0].max() < LEGEND_HEIGHT and differs[:, 1].min() >= 448   # the caption


@pytest.mark.parametrize('background', [(0, 0, 0), (255, 255, 255), INPUT_COLOR, (128, 128, 128)])
def test_2d_keypoints_stand_out_on_any_image(background):
    keypoints, pose = stick_figure()
    crop = np.zeros((256, 192, 3), np.uint8) + np.array(background, np.uint8)
    drawn = pose_comparison(crop, keypoints, pose, pose, PARENTS, LEFT)[LEGEND_HEIGHT:, :192, ::-1]    # BGR
    contrast = np.abs(drawn.astype(int) - crop.astype(int)).max(axis=-1)
    for x, y in np.round(keypoints).astype(int):        # around every joint, a clearly different pixel
        assert contrast[y - 4:y + 5, x - 4:x + 5].max() > 100, (x, y)


def test_each_picture_is_captioned_with_its_frames_p1(processed_data, monkeypatch):
    dataset = Human36MSingleViewDataset(root=processed_data['root'], labels_path=processed_data['val'], progress=False)
    truth = torch.tensor(np.stack([dataset.frame(j)[1] for j in range(dataset.file_size)]))
    truth = truth - truth[:, :, :1]
    offsets = torch.arange(dataset.file_size, dtype=torch.float64)[:, None, None, None] * torch.tensor([0.0, 0.003, 0.004])
    captions = []
    monkeypatch.setattr(evaluator, 'pose_comparison', lambda *args, caption: captions.append(caption))
    evaluator.skeleton_pictures(dataset, (truth + offsets).float(), count=3)
    last = dataset.file_size - 1           # frames 0, the middle and the last: P1 = 5 mm per frame index
    middle = int(np.linspace(0, last, 3)[1])
    assert captions == ['frame 0: P1 0.0 mm', 'frame %d: P1 %.1f mm' % (middle, 5.0 * middle),
                        'frame %d: P1 %.1f mm' % (last, 5.0 * last)]
