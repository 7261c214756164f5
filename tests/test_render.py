"""mvn.utils.render: the virtual camera's projection (hand-computed), what gets drawn where."""
import math

import numpy as np

from mvn.utils.render import (BACKGROUND, LEFT_COLOR, RIGHT_COLOR, SkeletonView, draw_skeleton_2d,
                              edges_from_parents)

EDGES = [(1, 0), (2, 0)]            # a root with a left (1) and a right (2) limb


def test_projection_of_the_virtual_camera():
    view = SkeletonView(EDGES, left=[1], right=[2], size=(400, 300), yaw=0, elevation=0, distance=4.0,
                        field_of_view=90.0)
    focal = 0.5 * 300 / math.tan(math.radians(45))               # 150 px
    uv, depth = view.project(np.array([[0, 0, 0], [1, 0, 0], [0, 0.5, 1.0]]))
    np.testing.assert_allclose(uv, [[200, 150], [200 + focal / 4, 150], [200, 150 + focal * 0.5 / 5]])
    np.testing.assert_allclose(depth, [4, 4, 5])
    turned = SkeletonView(EDGES, size=(400, 300), yaw=90, elevation=0, distance=4.0, field_of_view=90.0)
    uv, depth = turned.project(np.array([[1.0, 0, 0]]))          # x turns into -z: straight ahead, nearer
    np.testing.assert_allclose(uv, [[200, 150]], atol=1e-9)
    np.testing.assert_allclose(depth, [3.0])
    tilted = SkeletonView(EDGES, size=(400, 300), yaw=0, elevation=90, distance=4.0, field_of_view=90.0)
    _, depth = tilted.project(np.array([[0, -1.0, 0]]))          # looking down: up (-y) comes nearer
    np.testing.assert_allclose(depth, [3.0])


def test_render_draws_limbs_in_their_side_colours():
    view = SkeletonView(EDGES, left=[1], right=[2], size=(200, 200), yaw=0, elevation=0, distance=4.0)
    pose = np.array([[0, 0, 0], [0.5, 0, 0], [-0.5, 0, 0]])
    picture = view.render(pose)
    assert picture.shape == (200, 200, 3)
    uv, _ = view.project(pose)
    left_mid = np.round((uv[0] + uv[1]) / 2 + [10, 0]).astype(int)     # on the left limb, off the root dot
    right_mid = np.round((uv[0] + uv[2]) / 2 - [10, 0]).astype(int)
    assert picture[left_mid[1], left_mid[0]].tolist() == list(LEFT_COLOR)
    assert picture[right_mid[1], right_mid[0]].tolist() == list(RIGHT_COLOR)
    assert picture[5, 5].tolist() == [BACKGROUND] * 3
    empty = view.render([])
    assert (empty == BACKGROUND).mean() > 0.9                          # the floor grid only


def test_2d_skeleton_leaves_out_unsure_joints():
    canvas = np.zeros((100, 100, 3), np.uint8)
    points = np.array([[50, 50], [90, 50], [10, 50]], float)
    draw_skeleton_2d(canvas, points, EDGES, left=[1], right=[2], scores=[1, 1, 0], threshold=0.5, thickness=3)
    assert canvas[50, 70].tolist() == list(LEFT_COLOR)
    assert canvas[50, 30].tolist() == [0, 0, 0]                        # the unsure right limb is not drawn
    assert edges_from_parents([-1, 0, 0, 2]) == [(1, 0), (2, 0), (3, 2)]
