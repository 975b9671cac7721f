"""Tests of the gripper model (gpr_ros.core.grasp.gripper)."""

from __future__ import annotations

import json

from hypothesis import assume, given, settings
from hypothesis import strategies as st
import numpy as np
from numpy.typing import NDArray
import pytest

from gpr_ros.core.errors import ConfigError, GeometryError
from gpr_ros.core.grasp import (
    BOX_FINGER_NEGATIVE,
    BOX_FINGER_POSITIVE,
    BOX_PALM,
    SURFACE_TOLERANCE,
    Grasps,
    GripperBoxes,
    GripperModel,
)
import gpr_ros.core.grasp.gripper as gripper_module

SETTINGS = settings(max_examples=50, deadline=None)
GRIPPER = GripperModel()


def tilted_grasp(width: float = 0.03) -> Grasps:
    """A grasp at (0.1, -0.2, 0.5) approaching along (1, 0, 1)/√2, closing along +Y."""
    return Grasps([[0.1, -0.2, 0.5]], [[1.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]], [width])


def random_grasps(rng: np.random.Generator, n: int) -> Grasps:
    return Grasps(rng.uniform(-0.05, 0.05, (n, 3)), rng.normal(size=(n, 3)),
                  rng.normal(size=(n, 3)), rng.uniform(0.0, 0.05, n))


def in_boxes(points: NDArray[np.float64], boxes: GripperBoxes) -> NDArray[np.bool_]:
    """Independent oriented-box test, (N, P): strictly inside boxes shrunk by the tolerance."""
    local = np.einsum("nji,nbpj->nbpi", boxes.rotations,
                      points[None, None, :, :] - boxes.centers[:, :, None, :])
    half = boxes.half_extents[:, :, None, :] - SURFACE_TOLERANCE
    inside = np.all(np.abs(local) < half, axis=-1)
    result: NDArray[np.bool_] = inside.any(axis=1)
    return result


# ---------------------------------------------------------------------- config


def test_defaults_and_dict_round_trip() -> None:
    assert GRIPPER.max_width == 0.05 and GRIPPER.finger_depth == 0.03
    data = json.loads(json.dumps(GRIPPER.to_dict()))
    assert GripperModel.from_dict(data) == GRIPPER
    assert GripperModel.from_dict({"max_width": 0.08}).max_width == 0.08
    assert isinstance(GripperModel(max_width=1).max_width, float)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_width": 0.0},
        {"finger_depth": -0.01},
        {"finger_thickness": float("nan")},
        {"finger_height": float("inf")},
        {"palm_depth": "0.03"},
        {"palm_height": True},
        {"palm_height": None},
    ],
)
def test_invalid_config_raises(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        GripperModel(**kwargs)  # type: ignore[arg-type]


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="unknown"):
        GripperModel.from_dict({"max_width": 0.05, "colour": "red"})
    with pytest.raises(ConfigError):
        GripperModel.from_dict([("max_width", 0.05)])  # type: ignore[arg-type]


def test_clip_width() -> None:
    np.testing.assert_allclose(GRIPPER.clip_width([-0.01, 0.02, 0.09]), [0.0, 0.02, 0.05])
    with pytest.raises(GeometryError):
        GRIPPER.clip_width([np.nan])


# ---------------------------------------------------------------------- canonical frame


def test_closing_region_bounds() -> None:
    lo, hi = GRIPPER.closing_region(0.04)
    np.testing.assert_allclose(lo, [0.0, -0.02, -0.009])
    np.testing.assert_allclose(hi, [0.03, 0.02, 0.009])
    lo, hi = GRIPPER.closing_region([0.02, 0.04], enlarge=0.01)
    assert lo.shape == hi.shape == (2, 3)
    np.testing.assert_allclose(lo[0], [-0.01, -0.02, -0.019])
    np.testing.assert_allclose(hi[1], [0.04, 0.03, 0.019])
    with pytest.raises(ConfigError):
        GRIPPER.closing_region(0.02, enlarge=-0.001)
    with pytest.raises(GeometryError):
        GRIPPER.closing_region(-0.02)


def test_canonical_coordinates_of_the_grasp_centre() -> None:
    g = tilted_grasp()
    canon = GRIPPER.to_canonical(g.center, g)
    assert canon.shape == (1, 1, 3)
    np.testing.assert_allclose(canon[0, 0], [GRIPPER.finger_depth, 0.0, 0.0], atol=1e-12)
    origin = g.canonical_origin(GRIPPER.finger_depth)
    np.testing.assert_allclose(GRIPPER.to_canonical(origin, g)[0, 0], 0.0, atol=1e-12)


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.floats(-0.1, 0.1), st.floats(-0.1, 0.1),
       st.floats(-0.1, 0.1))
def test_canonical_coordinates_follow_the_grasp_axes(seed: int, a: float, b: float,
                                                     c: float) -> None:
    g = random_grasps(np.random.default_rng(seed), 3)
    z = np.cross(g.approach, g.closing)
    points = g.center + a * g.approach + b * g.closing + c * z
    canon = GRIPPER.to_canonical(points, g)
    expected = np.array([GRIPPER.finger_depth + a, b, c])
    np.testing.assert_allclose(canon[np.arange(3), np.arange(3)], np.tile(expected, (3, 1)),
                               atol=1e-12)


# ---------------------------------------------------------------------- closing region


def test_points_in_closing_region() -> None:
    g = tilted_grasp(width=0.03)
    n, r = g.approach[0], g.closing[0]
    z = np.cross(n, r)
    c = g.center[0]
    points = np.array([
        c,                                  # 0 centre: inside
        c - 0.02 * n,                       # 1 between the fingers: inside
        c + 0.005 * n,                      # 2 beyond the fingertips: outside
        c + 0.017 * r,                      # 3 outside the opening: outside
        c - 0.031 * n,                      # 4 1 mm behind the palm face: outside
        c + 0.010 * z,                      # 5 above the finger height: outside
        c + 0.015 * r - 0.03 * n + 0.009 * z,  # 6 on a corner: inside (inclusive)
        c - 0.04 * n,                       # 7 10 mm behind the palm face: outside
    ])
    mask = GRIPPER.points_in_closing_region(points, g)
    np.testing.assert_array_equal(mask, [[True, True, False, False, False, False, True, False]])
    enlarged = GRIPPER.points_in_closing_region(points, g, enlarge=0.006)
    np.testing.assert_array_equal(enlarged, [[True, True, True, True, True, True, True, False]])
    assert GRIPPER.points_in_closing_region(points, g, enlarge=0.002)[0, 3]


def test_crop_canonical_and_indices() -> None:
    rng = np.random.default_rng(4)
    g = Grasps.concat([random_grasps(rng, 2), tilted_grasp()])
    points = np.concatenate([g.center[2] + rng.uniform(-0.04, 0.04, (2000, 3)),
                             rng.uniform(-0.1, 0.1, (500, 3))])
    idx = GRIPPER.crop_indices(points, g, index=2, enlarge=0.005)
    mask = GRIPPER.points_in_closing_region(points, g, enlarge=0.005)[2]
    np.testing.assert_array_equal(idx, np.flatnonzero(mask))
    assert 0 < len(idx) < len(points)
    crop = GRIPPER.crop_canonical(points, g, index=2, enlarge=0.005)
    np.testing.assert_allclose(crop, GRIPPER.to_canonical(points, g)[2, idx], atol=1e-12)
    lo, hi = GRIPPER.closing_region(g.width[2], enlarge=0.005)
    assert np.all((crop >= lo - 1e-12) & (crop <= hi + 1e-12))
    assert GRIPPER.crop_canonical(points, g[2]).shape[1] == 3
    with pytest.raises(IndexError):
        GRIPPER.crop_canonical(points, g, index=3)


def test_chunked_masks_match_direct_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    g = random_grasps(rng, 13)
    points = rng.uniform(-0.08, 0.08, (400, 3))
    canon = GRIPPER.to_canonical(points, g)
    lo, hi = GRIPPER.closing_region(g.width, enlarge=0.004)
    direct = np.all((canon >= lo[:, None, :]) & (canon <= hi[:, None, :]), axis=-1)
    body = GRIPPER.points_in_gripper_body(points, g)
    monkeypatch.setattr(gripper_module, "_CHUNK_ELEMENTS", 1000)
    np.testing.assert_array_equal(
        GRIPPER.points_in_closing_region(points, g, enlarge=0.004), direct
    )
    np.testing.assert_array_equal(GRIPPER.points_in_gripper_body(points, g), body)
    assert direct.any() and body.any()


# ---------------------------------------------------------------------- body boxes


def test_finger_boxes_geometry() -> None:
    g = tilted_grasp(width=0.03)
    boxes = GRIPPER.finger_boxes(g)
    assert boxes.centers.shape == boxes.half_extents.shape == boxes.rotations.shape == (1, 3, 3)
    n, r, c = g.approach[0], g.closing[0], g.center[0]
    t = GRIPPER.finger_thickness
    np.testing.assert_allclose(boxes.centers[0, BOX_FINGER_POSITIVE],
                               c - 0.015 * n + (0.015 + t / 2) * r, atol=1e-12)
    np.testing.assert_allclose(boxes.centers[0, BOX_FINGER_NEGATIVE],
                               c - 0.015 * n - (0.015 + t / 2) * r, atol=1e-12)
    np.testing.assert_allclose(boxes.centers[0, BOX_PALM], c - 0.045 * n, atol=1e-12)
    np.testing.assert_allclose(boxes.half_extents[0, BOX_FINGER_POSITIVE], [0.015, t / 2, 0.009])
    np.testing.assert_allclose(boxes.half_extents[0, BOX_PALM], [0.015, 0.025 + t, 0.02])
    np.testing.assert_allclose(boxes.rotations, g.rotations)
    wide = GRIPPER.finger_boxes(g, width=0.05)
    np.testing.assert_allclose(wide.centers[0, BOX_FINGER_POSITIVE],
                               c - 0.015 * n + (0.025 + t / 2) * r, atol=1e-12)


def test_points_in_gripper_body() -> None:
    g = tilted_grasp(width=0.03)
    n, r, c = g.approach[0], g.closing[0], g.center[0]
    points = np.array([
        c,                                # 0 centre: free
        c - 0.005 * n + 0.0155 * r,       # 1 just outside +w/2: in finger +
        c - 0.005 * n - 0.0155 * r,       # 2 just outside -w/2: in finger -
        c - 0.005 * n + 0.015 * r,        # 3 on the inner face: touching, not inside
        c - 0.005 * n + 0.0235 * r,       # 4 beyond the finger thickness: free
        c - 0.04 * n,                     # 5 inside the palm
        c + 0.001 * n + 0.0155 * r,       # 6 beyond the fingertip: free
        c - 0.005 * n + 0.014 * r,        # 7 inside the opening: free
    ])
    mask = GRIPPER.points_in_gripper_body(points, g)
    expected = [[False, True, True, False, False, True, False, False]]
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(in_boxes(points, GRIPPER.finger_boxes(g)), expected)
    # At full opening the fingers move out of the way of point 1.
    assert not GRIPPER.points_in_gripper_body(points, g, width=GRIPPER.max_width)[0, 1]
    with pytest.raises(GeometryError):
        GRIPPER.points_in_gripper_body(points, g, width=-0.01)
    with pytest.raises(GeometryError):
        GRIPPER.points_in_gripper_body(points, g, width=[0.01, 0.02])


@SETTINGS
@given(st.integers(0, 2**31 - 1))
def test_body_mask_matches_oriented_boxes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    g = random_grasps(rng, 4)
    points = rng.uniform(-0.12, 0.12, (600, 3))
    mask = GRIPPER.points_in_gripper_body(points, g)
    expected = in_boxes(points, GRIPPER.finger_boxes(g))
    # Points within 1e-12 of a face may legitimately differ between the two formulations.
    assume(not np.any(mask != expected))
    np.testing.assert_array_equal(mask, expected)
    # The body never overlaps the (open) closing region interior.
    canon = GRIPPER.to_canonical(points, g)
    lo, hi = GRIPPER.closing_region(g.width)
    strictly_inside = np.all((canon > lo[:, None, :]) & (canon < hi[:, None, :]), axis=-1)
    assert not np.any(mask & strictly_inside)


def test_invalid_points_raise() -> None:
    g = tilted_grasp()
    with pytest.raises(GeometryError):
        GRIPPER.points_in_closing_region(np.zeros((4, 2)), g)
    with pytest.raises(GeometryError):
        GRIPPER.to_canonical([[np.nan, 0.0, 0.0]], g)
    with pytest.raises(ConfigError):
        GRIPPER.points_in_closing_region(np.zeros((4, 3)), g, enlarge=np.nan)
    assert GRIPPER.points_in_closing_region(np.zeros((0, 3)), g).shape == (1, 0)
    assert GRIPPER.points_in_gripper_body(np.zeros((5, 3)), Grasps.empty()).shape == (0, 5)
