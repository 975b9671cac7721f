"""Tests of the paper's angle parameterisation (gpr_ros.core.grasp.angles)."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st
import numpy as np
from numpy.typing import NDArray
import pytest

from gpr_ros.core.errors import GeometryError
from gpr_ros.core.grasp import (
    Grasps,
    angles_to_approach,
    approach_to_angles,
    closing_to_theta3,
    grasp_angles,
    grasps_from_angles,
    theta3_to_closing,
)

SETTINGS = settings(max_examples=80, deadline=None)
MAX_THETA2 = np.deg2rad(85.0)
coord = st.floats(-1.0, 1.0, allow_nan=False)
vec3 = st.tuples(coord, coord, coord).map(np.array)


@st.composite
def hemisphere_frames(draw: st.DrawFn) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A unit approach with θ2 <= 85° and a unit closing vector orthogonal to it."""
    n = draw(vec3)
    n[2] = abs(n[2])
    assume(np.linalg.norm(n) > 0.1)
    n = n / np.linalg.norm(n)
    assume(n[2] >= np.cos(MAX_THETA2))
    r = draw(vec3)
    r = r - (r @ n) * n
    assume(np.linalg.norm(r) > 0.1)
    return n, r / np.linalg.norm(r)


@st.composite
def hemisphere_frames_from_angles(
    draw: st.DrawFn,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A unit approach with θ2 <= 85° and a unit closing vector orthogonal to it.

    Drawn from angles rather than filtered from random vectors, so lists of frames do not trip
    Hypothesis' filter health check.
    """
    t1 = draw(st.floats(0.0, 2 * np.pi, exclude_max=True))
    t2 = draw(st.floats(0.0, float(MAX_THETA2)))
    phi = draw(st.floats(0.0, 2 * np.pi))
    n = np.array([np.sin(t2) * np.cos(t1), np.sin(t2) * np.sin(t1), np.cos(t2)])
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(n, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    return n, np.cos(phi) * e1 + np.sin(phi) * e2


def assert_same_line(a: NDArray[np.float64], b: NDArray[np.float64], atol: float) -> None:
    """Unit vectors a and b are equal up to sign."""
    np.testing.assert_allclose(np.abs(np.sum(a * b, axis=-1)), 1.0, atol=atol)


# ---------------------------------------------------------------------- hand examples


@pytest.mark.parametrize(
    "approach, theta1, theta2",
    [
        ([0.0, 0.0, 1.0], 0.0, 0.0),
        ([1.0, 0.0, 1.0], 0.0, np.pi / 4),
        ([0.0, 1.0, 1.0], np.pi / 2, np.pi / 4),
        ([-1.0, 0.0, 1.0], np.pi, np.pi / 4),
        ([0.0, -1.0, 1.0], 3 * np.pi / 2, np.pi / 4),
        ([1.0, 1.0, 0.0], np.pi / 4, np.pi / 2),
        ([0.5, -np.sqrt(3) / 2, 0.0], 5 * np.pi / 3, np.pi / 2),
    ],
)
def test_approach_angles_examples(approach: list[float], theta1: float, theta2: float) -> None:
    t1, t2 = approach_to_angles(approach)
    assert t1 == pytest.approx(theta1, abs=1e-12)
    assert t2 == pytest.approx(theta2, abs=1e-12)
    n = np.asarray(approach) / np.linalg.norm(approach)
    np.testing.assert_allclose(angles_to_approach(theta1, theta2), n, atol=1e-12)


@pytest.mark.parametrize(
    "closing, theta3",
    [
        ([1.0, 0.0, 0.0], 0.0),
        ([-1.0, 0.0, 0.3], 0.0),
        ([1.0, 1.0, 0.0], np.pi / 4),
        ([-1.0, -1.0, 0.0], np.pi / 4),
        ([1.0, -1.0, 5.0], -np.pi / 4),
        ([0.0, 1.0, 0.0], -np.pi / 2),
        ([0.0, -1.0, 0.0], -np.pi / 2),
    ],
)
def test_theta3_examples(closing: list[float], theta3: float) -> None:
    assert closing_to_theta3(closing) == pytest.approx(theta3, abs=1e-12)


def test_theta1_never_reaches_two_pi() -> None:
    t1, _ = approach_to_angles([1.0, -1e-18, 1.0])
    assert 0.0 <= float(t1) < 2 * np.pi


def test_theta3_to_closing_example() -> None:
    # n tilted towards +x: r with azimuth 0 must tilt down in z to stay orthogonal.
    n = np.array([1.0, 0.0, 1.0]) / np.sqrt(2)
    r = theta3_to_closing(0.0, n)
    np.testing.assert_allclose(r, [1 / np.sqrt(2), 0.0, -1 / np.sqrt(2)], atol=1e-12)
    r = theta3_to_closing(np.pi / 2 - 1e-300, n)
    np.testing.assert_allclose(r, [0.0, 1.0, 0.0], atol=1e-12)


# ---------------------------------------------------------------------- ranges and round trips


@SETTINGS
@given(hemisphere_frames())
def test_vectors_to_angles_to_vectors(frame: tuple[NDArray[np.float64], NDArray[np.float64]]
                                      ) -> None:
    n, r = frame
    t1, t2 = approach_to_angles(n)
    t3 = closing_to_theta3(r)
    assert 0.0 <= t1 < 2 * np.pi
    assert 0.0 <= t2 <= MAX_THETA2 + 1e-12
    assert -np.pi / 2 <= t3 < np.pi / 2
    assert closing_to_theta3(-r) == pytest.approx(float(t3), abs=1e-12)
    n2 = angles_to_approach(t1, t2)
    np.testing.assert_allclose(n2, n, atol=1e-12)
    r2 = theta3_to_closing(t3, n2)
    np.testing.assert_allclose(np.linalg.norm(r2), 1.0, atol=1e-12)
    assert abs(r2 @ n2) < 1e-12
    assert_same_line(r2, r, atol=1e-9)


@SETTINGS
@given(
    st.floats(0.0, 2 * np.pi, exclude_max=True),
    st.floats(np.deg2rad(1.0), MAX_THETA2),
    st.floats(-np.pi / 2, np.pi / 2, exclude_max=True),
)
def test_angles_to_vectors_to_angles(t1: float, t2: float, t3: float) -> None:
    n = angles_to_approach(t1, t2)
    r = theta3_to_closing(t3, n)
    b1, b2 = approach_to_angles(n)
    # Compare θ1 on the circle: 2π - tiny wraps to ~0.
    assert abs(np.angle(np.exp(1j * (float(b1) - t1)))) < 1e-9
    assert float(b2) == pytest.approx(t2, abs=1e-9)
    b3 = float(closing_to_theta3(r))
    assert abs(np.angle(np.exp(2j * (b3 - t3)))) < 1e-9


@SETTINGS
@given(st.lists(hemisphere_frames_from_angles(), min_size=1, max_size=5))
def test_angles_quaternions_rotations_chain(
    frames: list[tuple[NDArray[np.float64], NDArray[np.float64]]]
) -> None:
    n = np.array([f[0] for f in frames])
    r = np.array([f[1] for f in frames])
    center = np.arange(3 * len(n), dtype=float).reshape(-1, 3)
    g = Grasps(center, n, r, 0.02)
    angles = grasp_angles(g)
    g_angles = grasps_from_angles(center, angles, 0.02)
    g_quat = Grasps.from_quaternions(center, g_angles.quaternions, 0.02)
    g_rot = Grasps.from_rotations(center, g_quat.rotations, 0.02)
    np.testing.assert_allclose(g_rot.approach, n, atol=1e-9)
    assert_same_line(g_rot.closing, r, atol=1e-9)
    again = grasp_angles(g_rot)
    # θ1 is undefined at θ2 = 0: compare the XY part of n, sin θ2 · exp(iθ1).
    np.testing.assert_allclose(
        np.sin(again[:, 1]) * np.exp(1j * again[:, 0]),
        np.sin(angles[:, 1]) * np.exp(1j * angles[:, 0]),
        atol=1e-9,
    )
    np.testing.assert_allclose(again[:, 1], angles[:, 1], atol=1e-9)
    np.testing.assert_allclose(np.exp(2j * again[:, 2]), np.exp(2j * angles[:, 2]), atol=1e-9)


@SETTINGS
@given(st.floats(-10.0, 10.0), vec3)
def test_theta3_to_closing_is_unit_and_orthogonal_everywhere(t3: float, n: NDArray[np.float64]
                                                             ) -> None:
    assume(np.linalg.norm(n) > 0.1)
    n = n / np.linalg.norm(n)
    r = theta3_to_closing(t3, n)
    assert np.all(np.isfinite(r))
    assert np.linalg.norm(r) == pytest.approx(1.0, abs=1e-9)
    assert abs(r @ n) < 1e-9


def test_vectorised_shapes() -> None:
    n = np.tile([0.0, 0.0, 1.0], (4, 2, 1))
    t1, t2 = approach_to_angles(n)
    assert t1.shape == t2.shape == (4, 2)
    assert angles_to_approach(np.zeros(4), 0.3).shape == (4, 3)
    assert theta3_to_closing(np.zeros((4, 2)), n).shape == (4, 2, 3)
    assert grasp_angles(Grasps.empty()).shape == (0, 3)


# ---------------------------------------------------------------------- invalid and singular


def test_negative_nz_raises_unless_clipped() -> None:
    n = [1.0, 0.0, -1.0]
    with pytest.raises(GeometryError, match="n_z"):
        approach_to_angles(n)
    t1, t2 = approach_to_angles(n, clip=True)
    assert (float(t1), float(t2)) == pytest.approx((0.0, np.pi / 2))
    t1, t2 = approach_to_angles([0.0, 0.0, -1.0], clip=True)
    assert (float(t1), float(t2)) == pytest.approx((0.0, np.pi / 2))
    _, t2 = approach_to_angles([1.0, 0.0, -1e-12])
    assert float(t2) == pytest.approx(np.pi / 2)
    g = Grasps([[0, 0, 0]], [n], [[0, 1.0, 0]], 0.01)
    with pytest.raises(GeometryError):
        grasp_angles(g)
    assert grasp_angles(g, clip=True)[0, 1] == pytest.approx(np.pi / 2)


def test_singular_horizontal_approach_fallback() -> None:
    n = np.array([1.0, 0.0, 0.0])
    # d = (0, 1, 0) is orthogonal to n: r = d.
    np.testing.assert_allclose(theta3_to_closing(np.pi / 2, n), [0, 1, 0], atol=1e-12)
    # d·n != 0 at n_z = 0: the limit r = -sign(d·n) z.
    np.testing.assert_allclose(theta3_to_closing(0.3, n), [0, 0, -1], atol=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda: approach_to_angles([0.0, 0.0, 0.0]),
        lambda: approach_to_angles([0.0, 1.0]),
        lambda: approach_to_angles([np.nan, 0.0, 1.0]),
        lambda: angles_to_approach(np.inf, 0.0),
        lambda: closing_to_theta3([0.0, 0.0, 1.0]),
        lambda: closing_to_theta3([0.0, 0.0, 0.0]),
        lambda: theta3_to_closing(np.nan, [0.0, 0.0, 1.0]),
        lambda: theta3_to_closing(np.zeros(3), np.tile([0.0, 0.0, 1.0], (2, 1))),
        lambda: grasps_from_angles(np.zeros((1, 3)), np.zeros((1, 2)), 0.01),
    ],
)
def test_invalid_inputs_raise(call: object) -> None:
    with pytest.raises(GeometryError):
        call()  # type: ignore[operator]
