"""Scene labels (paper Sec. IV-B) on tiny scenes with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from gpr_ros.core.dataset.labels import (
    POINT_BACKGROUND,
    POINT_NEGATIVE_COLLISION,
    POINT_POSITIVE,
    POINT_UNSUITABLE,
    LabelConfig,
    ObjectLabelSource,
    broadcast,
    label_scene,
    swept_gripper_collisions,
)
from gpr_ros.core.errors import ConfigError
from gpr_ros.core.grasp import Grasps, GripperModel


def test_broadcast_radius_and_highest_score_wins() -> None:
    # Points every 2 mm on the x axis; R = 3 mm.
    points = np.column_stack([np.arange(0, 0.0201, 0.002), np.zeros(11), np.zeros(11)])
    objects = np.zeros(11, dtype=int)
    sources = np.array([[0.003, 0, 0], [0.007, 0, 0]])
    pid, sid = broadcast(points, objects, sources, np.zeros(2, int), np.array([0.5, 0.9]),
                         radius=0.003, same_object_only=True)
    got = dict(zip(pid.tolist(), sid.tolist(), strict=True))
    # Source 0 (x = 3 mm) reaches x = 0, 2, 4, 6 mm; source 1 (x = 7 mm) reaches 4, 6, 8, 10 mm.
    # Points 4 and 6 mm are reached by both: the higher score (source 1) wins.
    assert got == {0: 0, 1: 0, 2: 1, 3: 1, 4: 1, 5: 1}


def test_broadcast_ties_go_to_lower_index_and_objects_are_respected() -> None:
    points = np.array([[0.0, 0, 0], [0.001, 0, 0]])
    sources = np.array([[0.0005, 0, 0], [0.0005, 0, 0]])
    pid, sid = broadcast(points, np.array([0, 1]), sources, np.array([0, 0]),
                         np.array([0.7, 0.7]), radius=0.002, same_object_only=True)
    assert pid.tolist() == [0] and sid.tolist() == [0]
    pid, _ = broadcast(points, np.array([0, 1]), sources, np.array([0, 0]),
                       np.array([0.7, 0.7]), radius=0.002, same_object_only=False)
    assert pid.tolist() == [0, 1]


def _top_down_grasp(width: float = 0.03, score: float = 0.8) -> Grasps:
    # Approach along -Z of the world (down), closing along X, contacts at x = +-width/2.
    g = Grasps(center=[[0.0, 0.0, 0.05]], approach=[[0.0, 0.0, -1.0]], closing=[[1.0, 0, 0]],
               width=[width], score=[score])
    return Grasps(center=g.center, approach=g.approach, closing=g.closing, width=g.width,
                  score=g.score, contacts=g.fingertip_positions())


def test_swept_gripper_collisions_cover_the_approach_path() -> None:
    gripper = GripperModel()
    g = _top_down_grasp()
    width = np.array([0.034])
    # Between the fingers: no collision.
    assert not swept_gripper_collisions(np.array([[0.0, 0.0, 0.05]]), g, gripper, width, 0.05)[0]
    # Where the +r finger sits (just outside the opening, 1 cm above the contacts): collision.
    finger = np.array([[0.017 + 0.004, 0.0, 0.06]])
    assert swept_gripper_collisions(finger, g, gripper, width, 0.05)[0]
    # 5 cm above the palm: on the approach path with a 10 cm pre-grasp, not with 1 cm.
    above = np.array([[0.0, 0.0, 0.05 + 0.03 + 0.03 + 0.05]])
    assert swept_gripper_collisions(above, g, gripper, width, 0.10)[0]
    assert not swept_gripper_collisions(above, g, gripper, width, 0.01)[0]


def _camera_looking_down(height: float = 1.0) -> np.ndarray:
    # Optical frame: +Z (view axis) = world -Z, +X = world +X, +Y = world -Y.
    t = np.eye(4)
    t[:3, :3] = np.diag([1.0, -1.0, -1.0])
    t[:3, 3] = [0.0, 0.0, height]
    return t


def _scene(obstacle: np.ndarray | None):  # type: ignore[no-untyped-def]
    g = _top_down_grasp()
    contacts_world = g.contacts.reshape(-1, 3)
    unsuitable = np.array([[0.0, 0.03, 0.05]])
    objects = [ObjectLabelSource(index=0, pose=np.eye(4), grasps=g,
                                 unsuitable_points=unsuitable, surface_points=np.zeros((0, 3)))]
    if obstacle is not None:
        objects.append(ObjectLabelSource(index=1, pose=np.eye(4), grasps=Grasps.empty(),
                                         unsuitable_points=np.zeros((0, 3)),
                                         surface_points=obstacle))
    t_wc = _camera_looking_down()
    t_cw = np.linalg.inv(t_wc)
    # Observed points: one on each contact, one 2 mm from the unsuitable point, one far away.
    world = np.vstack([contacts_world, unsuitable + [0.002, 0, 0], [[0.1, 0.1, 0.0]]])
    cam = world @ t_cw[:3, :3].T + t_cw[:3, 3]
    point_object = np.array([0, 0, 0, -1])
    return cam, point_object, t_wc, objects


def test_label_scene_positive_and_unsuitable() -> None:
    cam, point_object, t_wc, objects = _scene(obstacle=None)
    labels = label_scene(cam, point_object, t_wc, objects, np.zeros((0, 3)), GripperModel(),
                         LabelConfig(radius=0.003))
    assert labels.point_class.tolist() == [POINT_POSITIVE, POINT_POSITIVE, POINT_UNSUITABLE,
                                           POINT_BACKGROUND]
    assert labels.point_grasp.tolist() == [0, 0, -1, -1]
    np.testing.assert_allclose(labels.point_score, [0.8, 0.8, 0, 0], atol=1e-6)
    assert labels.mask.tolist() == [1, 1, 0, 0]
    assert len(labels.grasps) == 1 and labels.num_colliding == 0
    # The scene grasp is expressed in the camera frame: approach = +Z (into the scene).
    np.testing.assert_allclose(labels.grasps.approach[0], [0, 0, 1], atol=1e-12)


def test_label_scene_collision_with_another_object_makes_negatives() -> None:
    finger_blocker = np.array([[0.021, 0.0, 0.06]])
    cam, point_object, t_wc, objects = _scene(obstacle=finger_blocker)
    labels = label_scene(cam, point_object, t_wc, objects, np.zeros((0, 3)), GripperModel(),
                         LabelConfig(radius=0.003))
    assert len(labels.grasps) == 0 and labels.num_colliding == 1
    assert labels.point_class.tolist()[:2] == [POINT_NEGATIVE_COLLISION] * 2
    assert labels.mask.sum() == 0


def test_label_scene_bin_points_and_approach_angle() -> None:
    cam, point_object, t_wc, objects = _scene(obstacle=None)
    bin_wall = np.array([[0.0, 0.0, 0.05 + 0.08]])  # right on the approach path
    labels = label_scene(cam, point_object, t_wc, objects, bin_wall, GripperModel(),
                         LabelConfig(radius=0.003))
    assert labels.num_colliding == 1
    # Grasps must come from the camera side: a 0-degree limit leaves only exactly top-down.
    labels = label_scene(cam, point_object, t_wc, objects, np.zeros((0, 3)), GripperModel(),
                         LabelConfig(radius=0.003, max_approach_angle=1.0))
    assert len(labels.grasps) == 1


def test_label_config_validation() -> None:
    with pytest.raises(ConfigError, match='radius'):
        LabelConfig(radius=0.0)
    with pytest.raises(ConfigError, match='max_approach_angle'):
        LabelConfig(max_approach_angle=200)


@pytest.mark.parametrize('quantised', [False, True])
def test_swept_collision_kernel_answers_as_the_numpy_path(quantised: bool) -> None:
    """The numba kernel (grid, first hit ends a grasp) and the KD-tree + einsum path agree,
    also with points on the faces of the swept boxes (axis-aligned grasps on a 1 cm grid)."""
    from gpr_ros.core.kernels import NUMBA_AVAILABLE
    if not NUMBA_AVAILABLE:
        pytest.skip('numba is not installed')
    rng = np.random.default_rng(7)
    gripper = GripperModel()
    n = 400
    if quantised:
        points = np.round(rng.uniform(-0.12, 0.12, (40, 3)), 2)
        centers = np.round(rng.uniform(-0.06, 0.06, (n, 3)), 2)
        axes = np.eye(3)[rng.permutation(3)] * rng.choice([-1.0, 1.0], 3)[:, None]
        approach = np.tile(axes[0], (n, 1))
        closing = np.tile(axes[1], (n, 1))
        width = np.round(rng.uniform(0.0, 0.05, n), 3)
    else:
        points = rng.uniform(-0.12, 0.12, (40, 3))
        centers = rng.uniform(-0.06, 0.06, (n, 3))
        approach = rng.normal(size=(n, 3))
        closing = rng.normal(size=(n, 3))
        width = rng.uniform(0.0, 0.05, n)
    grasps = Grasps(center=centers, approach=approach, closing=closing, width=width)
    fast = swept_gripper_collisions(points, grasps, gripper, width, 0.05)
    slow = swept_gripper_collisions(points, grasps, gripper, width, 0.05, use_kernel=False)
    np.testing.assert_array_equal(fast, slow)
    assert 0.05 < fast.mean() < 0.95
