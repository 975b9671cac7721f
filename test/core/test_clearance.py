"""The planner's bin check: floor back-off, wall refusal, the separating-axis box test."""

from __future__ import annotations

import numpy as np
import pytest

from gpr_ros.core.errors import ConfigError, GeometryError
from gpr_ros.core.grasp import Grasps, GripperModel
from gpr_ros.core.grasp.clearance import (
    BinObstacles,
    ClearanceConfig,
    boxes_overlap,
    plan_bin_approach,
)

GRIPPER = GripperModel()
BIN = BinObstacles.from_dimensions(0.3, 0.3, 0.1, 0.01)
DOWN = [[0.0, 0.0, -1.0]]
X = [[1.0, 0.0, 0.0]]


def lowest_z(grasp: Grasps, opening: float) -> float:
    boxes = GRIPPER.finger_boxes(grasp, width=[opening])
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    points = (boxes.centers[0][:, None, :]
              + np.einsum("ij,bkj->bki", boxes.rotations[0],
                          corners[None] * boxes.half_extents[0][:, None, :]))
    return float(points[..., 2].min())


def test_high_grasp_in_the_middle_is_feasible_and_unchanged() -> None:
    grasp = Grasps([[0.0, 0.0, 0.05]], DOWN, X, 0.03)
    plan = plan_bin_approach(grasp, GRIPPER, BIN, 0.04, 0.1)
    assert plan.feasible and plan.backoff == 0.0 and plan.reason == ""
    np.testing.assert_array_equal(plan.grasp.center, grasp.center)


def test_grasp_into_the_floor_is_backed_off_to_the_clearance() -> None:
    # Tilted 30 degrees from straight down: the finger corners reach lowest.
    tilt = np.radians(30.0)
    approach = [[np.sin(tilt), 0.0, -np.cos(tilt)]]
    closing = [[0.0, 1.0, 0.0]]
    grasp = Grasps([[0.0, 0.0, 0.004]], approach, closing, 0.02)
    assert lowest_z(grasp, 0.03) < 0.0
    config = ClearanceConfig(floor_clearance=0.002, max_backoff=0.02)
    plan = plan_bin_approach(grasp, GRIPPER, BIN, 0.03, 0.1, config)
    assert plan.feasible and 0.0 < plan.backoff <= 0.02
    # moved back along -approach, and its lowest point now sits exactly at the clearance
    np.testing.assert_allclose(plan.grasp.center[0],
                               grasp.center[0] - plan.backoff * np.asarray(approach[0]))
    assert lowest_z(plan.grasp, 0.03) == pytest.approx(0.002, abs=1e-9)
    np.testing.assert_array_equal(plan.grasp.rotations, grasp.rotations)
    assert plan.grasp.width[0] == grasp.width[0]


def test_back_off_longer_than_allowed_is_refused() -> None:
    grasp = Grasps([[0.0, 0.0, -0.03]], DOWN, X, 0.03)
    plan = plan_bin_approach(grasp, GRIPPER, BIN, 0.04, 0.1, ClearanceConfig(max_backoff=0.02))
    assert not plan.feasible and "floor" in plan.reason
    assert plan_bin_approach(grasp, GRIPPER, BIN, 0.04, 0.1,
                             ClearanceConfig(max_backoff=0.05)).feasible


def test_horizontal_approach_into_the_floor_cannot_back_off() -> None:
    grasp = Grasps([[0.0, 0.0, 0.001]], X, [[0.0, 1.0, 0.0]], 0.03)
    plan = plan_bin_approach(grasp, GRIPPER, BIN, 0.04, 0.1)
    assert not plan.feasible and "floor" in plan.reason


def test_fingers_in_the_wall_are_refused() -> None:
    # Straight down next to the +x wall (inner face at x = 0.15): the fingers, open to 40 mm
    # and closing along x, reach x = 0.125 + 0.020 + 0.008 > 0.15.
    grasp = Grasps([[0.125, 0.0, 0.05]], DOWN, X, 0.03)
    plan = plan_bin_approach(grasp, GRIPPER, BIN, 0.04, 0.1)
    assert not plan.feasible and "wall" in plan.reason
    # closing along y instead keeps fingers and palm (40 mm along x) clear
    along_y = Grasps([[0.125, 0.0, 0.05]], DOWN, [[0.0, 1.0, 0.0]], 0.03)
    assert plan_bin_approach(along_y, GRIPPER, BIN, 0.04, 0.1).feasible


def test_tilted_approach_from_over_the_wall_is_refused() -> None:
    # The grasp pose is clear, but the path back to the pre-grasp (10 cm along -approach)
    # crosses the +x wall.
    tilt = np.radians(60.0)
    grasp = Grasps([[0.07, 0.0, 0.03]], [[-np.sin(tilt), 0.0, -np.cos(tilt)]],
                   [[0.0, 1.0, 0.0]], 0.02)
    plan = plan_bin_approach(grasp, GRIPPER, BIN, 0.03, 0.1)
    assert not plan.feasible and "wall" in plan.reason
    short = plan_bin_approach(grasp, GRIPPER, BIN, 0.03, 0.0)
    assert short.feasible


def test_wall_clearance_grows_the_walls() -> None:
    grasp = Grasps([[0.12, 0.0, 0.05]], DOWN, [[0.0, 1.0, 0.0]], 0.03)
    assert plan_bin_approach(grasp, GRIPPER, BIN, 0.04, 0.1).feasible
    grown = plan_bin_approach(grasp, GRIPPER, BIN, 0.04, 0.1,
                              ClearanceConfig(wall_clearance=0.03))
    assert not grown.feasible


def test_disabled_check_accepts_everything() -> None:
    grasp = Grasps([[0.0, 0.0, -0.05]], DOWN, X, 0.03)
    plan = plan_bin_approach(grasp, GRIPPER, BIN, 0.04, 0.1, ClearanceConfig(enabled=False))
    assert plan.feasible and plan.grasp is grasp


def test_bad_input_is_a_typed_error() -> None:
    with pytest.raises(GeometryError):
        plan_bin_approach(Grasps.empty(), GRIPPER, BIN, 0.04, 0.1)
    with pytest.raises(ConfigError):
        ClearanceConfig(max_backoff=-0.01)
    with pytest.raises(ConfigError):
        ClearanceConfig(path_step=0.0)
    with pytest.raises(ConfigError):
        ClearanceConfig.from_dict({"floor_gap": 0.01})
    with pytest.raises(ConfigError):
        BinObstacles.from_dimensions(0.3, 0.0, 0.1, 0.01)
    assert ClearanceConfig.from_dict(ClearanceConfig(max_backoff=0.01).to_dict()) == \
        ClearanceConfig(max_backoff=0.01)


def _box_points(center: np.ndarray, rot: np.ndarray, half: np.ndarray, n: int) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.linspace(-1.0, 1.0, n)] * 3, indexing="ij"), -1)
    return center + (grid.reshape(-1, 3) * half) @ rot.T


def test_separating_axes_agree_with_sampled_points() -> None:
    rng = np.random.default_rng(0)
    from scipy.spatial.transform import Rotation

    agree = 0
    for _ in range(300):
        rot = Rotation.random(random_state=rng).as_matrix()
        ca, ha = rng.uniform(-0.05, 0.05, 3), rng.uniform(0.005, 0.03, 3)
        cb, hb = rng.uniform(-0.05, 0.05, 3), rng.uniform(0.005, 0.03, 3)
        overlap = bool(boxes_overlap(ca, rot, ha, cb, hb))
        pts = _box_points(ca, rot, ha, 9)
        inside = np.all(np.abs(pts - cb) <= hb, axis=1).any()
        if inside:  # a sampled point of A inside B: they overlap
            assert overlap
        if not overlap:
            assert not inside
        # exact for axis-aligned A
        if not overlap:
            agree += 1
    assert 0 < agree < 300
    # axis-aligned: overlap iff the intervals overlap on every axis
    for _ in range(200):
        ca, ha = rng.uniform(-0.05, 0.05, 3), rng.uniform(0.005, 0.03, 3)
        cb, hb = rng.uniform(-0.05, 0.05, 3), rng.uniform(0.005, 0.03, 3)
        expected = bool(np.all(np.abs(ca - cb) <= ha + hb))
        assert bool(boxes_overlap(ca, np.eye(3), ha, cb, hb)) == expected


def test_edge_to_edge_separation_needs_a_cross_axis() -> None:
    # A box turned 45 degrees about x and about z, placed so that only an edge-edge axis
    # separates it from the unit box: SAT without the cross axes would report an overlap.
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_euler("xz", [45.0, 45.0], degrees=True).as_matrix()
    half = np.array([1.0, 1.0, 1.0])
    found = False
    for d in np.linspace(2.0, 3.5, 61):
        center = np.array([d, d, 0.0]) / np.sqrt(2.0) + np.array([0.0, 0.0, 0.0])
        pts = _box_points(center, rot, half, 41)
        inside = np.all(np.abs(pts) <= half, axis=1).any()
        overlap = bool(boxes_overlap(center, rot, half, np.zeros(3), half))
        if inside:
            assert overlap
        found |= (not inside) and (not overlap)
    assert found
