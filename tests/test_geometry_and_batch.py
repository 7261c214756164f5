"""The crop transform and batch preparation (normalisation, root-relative target, flips)."""
import cv2
import numpy as np
import pytest
import torch

from mvn.datasets import batch as batch_module
from mvn.datasets.batch import mirror_images, root_relative
from mvn.datasets.h36m_meta import JOINTS_LEFT, JOINTS_RIGHT, SKELETON
from mvn.models.backbones import input_normalization
from mvn.utils.img import crop_image, crop_transform, transform_points
from tests.helpers import h36m_preparer

# The Human3.6M flips and a backbone's normalisation, as batch preparation applies them.
PERM = SKELETON.flip_permutation()


def mirror_poses(joints):
    return batch_module.mirror_poses(joints, PERM)


def mirror_crop_keypoints(keypoints, crop_width):
    return batch_module.mirror_crop_keypoints(keypoints, crop_width, PERM)


def merge_flip_test(pred, pred_mirrored):
    return batch_module.merge_flip_test(pred, pred_mirrored, PERM)


def normalize_images(images, backbone):
    return input_normalization(backbone)(torch.flip(images, [-1]) / 255.0)


def test_crop_transform_maps_the_box_as_specified():
    center, scale = (512.3, 480.7), (2.4, 2.9)
    s = scale[0] * 200
    t = crop_transform(center, scale, (192, 256))
    # the centre goes to the crop centre; the point (s-1)/2 above it to (W-1)/2 above that
    assert np.allclose(transform_points([center], t)[0], [95.5, 127.5], atol=1e-3)
    assert np.allclose(transform_points([(center[0], center[1] - (s - 1) / 2)], t)[0], [95.5, 127.5 - 95.5], atol=1e-3)
    # no rotation or shear, the same scale in x and y: (W-1)/(s-1) crop pixels per frame pixel
    assert np.allclose(t[:, :2], np.eye(2) * 191 / (s - 1), atol=1e-6)
    inverse = crop_transform(center, scale, (192, 256), inverse=True)
    points = np.array([[10.0, 20.0], [600.0, 700.0]])
    assert np.allclose(transform_points(transform_points(points, t), inverse), points, atol=1e-3)


def test_transform_points_equals_a_per_point_matrix_product():
    t = crop_transform((400.0, 500.0), (2.2, 2.9))
    points = np.random.default_rng(0).uniform(0, 1000, size=(17, 2))
    by_hand = np.array([np.dot(t, [x, y, 1.0]) for x, y in points])
    assert np.array_equal(transform_points(points, t).astype(np.float32), by_hand.astype(np.float32))


def test_a_dot_lands_at_its_transformed_position_within_a_pixel():
    frame = np.zeros((1002, 1000, 3), np.uint8)
    center, scale = (530.0, 470.0), (2.3, 2.7)
    t = crop_transform(center, scale)
    for point in [(480.4, 300.6), (600.0, 620.2), (530.0, 470.0)]:
        frame[:] = 0
        cv2.circle(frame, (int(round(point[0])), int(round(point[1]))), 2, (255, 255, 255), -1)
        crop = crop_image(frame, center, scale)
        y, x = np.unravel_index(crop[..., 0].astype(float).argmax(), crop.shape[:2])
        expected = transform_points([np.round(point)], t)[0]
        assert abs(x - expected[0]) <= 1 and abs(y - expected[1]) <= 1


def batch_of(seed=0, b=3):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (b, 256, 192, 3), generator=g, dtype=torch.uint8)
    joints_3d = torch.randn(b, 1, 17, 3, generator=g, dtype=torch.float64)
    keypoints_2d = torch.rand(b, 17, 2, generator=g, dtype=torch.float64) * 2 - 1
    keypoints_crop = torch.rand(b, 17, 2, generator=g) * 190
    return images, joints_3d, keypoints_2d, keypoints_crop


def test_image_normalisation_by_hand():
    pixel = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8)       # B, G, R
    hrnet = normalize_images(pixel, 'hrnet_32')[0, 0, 0]
    expected = [(1.0 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (0.0 - 0.406) / 0.225]   # R, G, B
    assert hrnet.dtype == torch.float32 and torch.allclose(hrnet, torch.tensor(expected), atol=1e-6)
    cpn = normalize_images(pixel, 'cpn')[0, 0, 0]
    assert torch.allclose(cpn, torch.tensor([1 - 122.7717 / 255, 128 / 255 - 115.9465 / 255, -102.9801 / 255]),
                          atol=1e-6)


def test_root_relative_target():
    joints = torch.arange(51, dtype=torch.float64).reshape(1, 1, 17, 3)
    out = root_relative(joints)
    assert torch.equal(out[0, 0, 0], torch.zeros(3, dtype=torch.float64))
    assert torch.equal(out[0, 0, 5], joints[0, 0, 5] - joints[0, 0, 0])
    assert torch.equal(joints, torch.arange(51, dtype=torch.float64).reshape(1, 1, 17, 3))   # input kept


def test_root_and_flips_follow_the_dataset_skeleton():
    from mvn.datasets.skeleton import Skeleton
    skeleton = Skeleton(('a', 'b', 'c', 'd', 'e'), root=2, left=(0, 3), right=(4, 1), parents=(2, 2, -1, 2, 2))
    assert skeleton.flip_permutation() == [4, 3, 2, 1, 0]
    joints = torch.arange(15, dtype=torch.float64).reshape(1, 1, 5, 3)
    by_hand = torch.tensor([[-6.0, -6, -6], [-3, -3, -3], [0, 0, 0], [3, 3, 3], [6, 6, 6]])
    assert torch.equal(root_relative(joints, skeleton.root)[0, 0], by_hand.double())
    mirrored = batch_module.mirror_poses(joints, skeleton.flip_permutation())[0, 0]
    assert mirrored.tolist() == [[-12, 13, 14], [-9, 10, 11], [-6, 7, 8], [-3, 4, 5], [0, 1, 2]]
    for bad in (dict(left=(0,), right=(0,)), dict(root=1), dict(parents=(2, 2, -1, 2))):
        with pytest.raises(ValueError, match='skeleton'):
            Skeleton(**dict(dict(joint_names='abcde', root=2, left=(0,), right=(4,), parents=(2, 2, -1, 2, 2)), **bad))


def test_flips_are_involutions_and_keep_left_right_meaning():
    images, joints_3d, keypoints_2d, keypoints_crop = batch_of()
    assert torch.equal(mirror_poses(mirror_poses(joints_3d)), joints_3d)
    assert torch.equal(mirror_poses(mirror_poses(keypoints_2d)), keypoints_2d)
    assert torch.allclose(mirror_crop_keypoints(mirror_crop_keypoints(keypoints_crop, 192), 192), keypoints_crop)
    assert torch.equal(mirror_images(mirror_images(images)), images)
    mirrored = mirror_poses(joints_3d)
    for left, right in zip(JOINTS_LEFT, JOINTS_RIGHT):
        # the new left joint is the old right joint seen in a mirror (and vice versa)
        assert torch.equal(mirrored[..., left, 0], -joints_3d[..., right, 0])
        assert torch.equal(mirrored[..., right, 1:], joints_3d[..., left, 1:])
    crop = mirror_crop_keypoints(keypoints_crop, 192)
    assert torch.allclose(crop[:, 4, 0], 191 - keypoints_crop[:, 1, 0])


def test_mirrored_crop_keypoint_follows_the_mirrored_image():
    image = torch.zeros(1, 256, 192, 3, dtype=torch.uint8)
    image[0, 40, 30] = 255
    keypoints = torch.zeros(1, 17, 2)
    keypoints[0, 1] = torch.tensor([30.0, 40.0])            # right hip sits on the dot
    flipped_image = mirror_images(image)[0, ..., 0]
    flipped = mirror_crop_keypoints(keypoints, 192)[0, 4]   # it becomes the left hip
    y, x = np.unravel_index(flipped_image.numpy().argmax(), flipped_image.shape)
    assert (x, y) == (int(flipped[0]), int(flipped[1]))


def test_training_flip_is_seeded_and_whole_batch():
    batch = batch_of()
    decisions = []
    for _ in range(2):
        preparer = h36m_preparer('hrnet_32', 'cpu', train=True, seed=5)
        decisions.append([torch.equal(preparer(batch)[3], batch[3]) for _ in range(12)])
    assert decisions[0] == decisions[1] and 0 < sum(decisions[0]) < 12
    preparer = h36m_preparer('hrnet_32', 'cpu', train=True, seed=5)
    for kept in decisions[0]:
        images, joints_3d, keypoints_2d, keypoints_crop = preparer(batch)
        plain = normalize_images(batch[0], 'hrnet_32')
        expected = plain if kept else mirror_images(plain)
        assert torch.equal(images, expected)
        target = root_relative(batch[1])
        assert torch.equal(joints_3d, (target if kept else mirror_poses(target)).float())


def test_flip_test_stacks_and_merges_back():
    images, joints_3d, keypoints_2d, keypoints_crop = h36m_preparer('cpn', 'cpu', flip_test=True)(batch_of())
    assert images.shape == (3, 2, 256, 192, 3) and keypoints_crop.shape == (3, 2, 17, 2)
    assert torch.equal(images[:, 1], mirror_images(images[:, 0]))
    assert joints_3d.shape == (3, 1, 17, 3)
    # A model that answers the mirrored question with the mirrored answer: merging gives its answer.
    pred = torch.randn(3, 1, 17, 3)
    assert torch.allclose(merge_flip_test(pred, mirror_poses(pred)), pred)
    other = torch.randn(3, 1, 17, 3)
    assert torch.allclose(merge_flip_test(pred, other), (pred + mirror_poses(other)) / 2)

