"""Tests of the vectorised grasp set (gpr_ros.core.grasp.grasps)."""

from __future__ import annotations

import dataclasses

from hypothesis import assume, given, settings
from hypothesis import strategies as st
import numpy as np
from numpy.typing import NDArray
import pytest
from scipy.spatial.transform import Rotation

from gpr_ros.core.errors import GeometryError
from gpr_ros.core.grasp import (
    STAGE_1,
    STAGE_2,
    STAGE_ANNOTATION,
    STAGE_UNKNOWN,
    Grasps,
)

SETTINGS = settings(max_examples=60, deadline=None)
coord = st.floats(-1.0, 1.0, allow_nan=False)
vec3 = st.tuples(coord, coord, coord).map(np.array)


@st.composite
def frames(draw: st.DrawFn) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A unit approach and a unit closing vector orthogonal to it."""
    n = draw(vec3)
    assume(np.linalg.norm(n) > 0.1)
    n = n / np.linalg.norm(n)
    r = draw(vec3)
    r = r - (r @ n) * n
    assume(np.linalg.norm(r) > 0.1)
    return n, r / np.linalg.norm(r)


@st.composite
def grasp_sets(draw: st.DrawFn, max_size: int = 6) -> Grasps:
    size = draw(st.integers(1, max_size))
    axes = [draw(frames()) for _ in range(size)]
    centers = np.array([draw(vec3) for _ in range(size)])
    widths = draw(st.lists(st.floats(0.0, 0.05), min_size=size, max_size=size))
    contacts = centers[:, None, :] + np.array([draw(vec3) for _ in range(size)])[:, None] * [
        [1.0],
        [-1.0],
    ]
    return Grasps(
        centers,
        np.array([a for a, _ in axes]),
        np.array([r for _, r in axes]),
        widths,
        score=np.arange(size, dtype=float),
        contacts=contacts,
    )


def random_rigid(seed: int) -> NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    transform = np.eye(4)
    transform[:3, :3] = Rotation.random(random_state=seed).as_matrix()
    transform[:3, 3] = rng.uniform(-2.0, 2.0, 3)
    return transform


def simple(n: int = 3) -> Grasps:
    return Grasps(
        center=np.arange(3 * n, dtype=float).reshape(n, 3),
        approach=np.tile([0.0, 0.0, 1.0], (n, 1)),
        closing=np.tile([1.0, 0.0, 0.0], (n, 1)),
        width=np.linspace(0.01, 0.03, n),
        score=np.arange(n, dtype=float),
        stage=np.full(n, STAGE_1),
    )


# ---------------------------------------------------------------------- construction


def test_construction_normalizes_and_orthogonalizes() -> None:
    g = Grasps([[0, 0, 0]], [[0, 0, 2.0]], [[1.0, 0.0, 5.0]], [0.02])
    np.testing.assert_allclose(g.approach, [[0, 0, 1]])
    np.testing.assert_allclose(g.closing, [[1, 0, 0]])
    assert g.center.dtype == np.float64
    assert g.stage.dtype == np.int8
    np.testing.assert_array_equal(g.score, [0.0])
    np.testing.assert_array_equal(g.stage, [STAGE_UNKNOWN])
    assert g.contacts is None


def test_scalar_width_score_and_stage_are_broadcast() -> None:
    g = Grasps(np.zeros((4, 3)), np.tile([1, 0, 0], (4, 1)), np.tile([0, 1, 0], (4, 1)),
               0.03, score=0.5, stage=STAGE_2)
    np.testing.assert_array_equal(g.width, np.full(4, 0.03))
    np.testing.assert_array_equal(g.score, np.full(4, 0.5))
    np.testing.assert_array_equal(g.stage, np.full(4, STAGE_2))


def test_inputs_are_copied_and_fields_are_immutable() -> None:
    center = np.zeros((1, 3))
    g = Grasps(center, [[1.0, 0, 0]], [[0, 1.0, 0]], [0.01])
    center[0, 0] = 5.0
    assert g.center[0, 0] == 0.0
    assert center.flags.writeable
    with pytest.raises(ValueError):
        g.center[0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.width = np.ones(1)  # type: ignore[misc]


def test_dataclasses_replace_revalidates() -> None:
    g = simple()
    h = dataclasses.replace(g, score=np.array([3.0, 2.0, 1.0]))
    np.testing.assert_array_equal(h.score, [3, 2, 1])
    np.testing.assert_array_equal(h.center, g.center)
    with pytest.raises(GeometryError):
        dataclasses.replace(g, score=np.array([np.nan, 0, 0]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"center": np.zeros((2, 2))}, "center must have shape"),
        ({"center": np.zeros(3)}, "center must have shape"),
        ({"approach": np.zeros((1, 3))}, "non-zero"),
        ({"approach": [[np.nan, 0, 1]]}, "finite"),
        ({"closing": [[0, 0, -3.0]]}, "parallel"),
        ({"closing": [[0, 0, 0.0]]}, "parallel"),
        ({"closing": [[1e-9, 0, 1.0]]}, "parallel"),
        ({"closing": np.zeros((2, 3))}, "closing must have shape"),
        ({"width": [-0.01]}, "width"),
        ({"width": [np.inf]}, "finite"),
        ({"width": [0.01, 0.02]}, "width must have shape"),
        ({"score": [np.nan]}, "finite"),
        ({"stage": [9]}, "stage"),
        ({"stage": [1.5]}, "stage"),
        ({"contacts": np.zeros((1, 3, 3))}, "contacts"),
        ({"center": "abc"}, "numeric"),
    ],
)
def test_invalid_inputs_raise_geometry_error(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "center": [[0.0, 0.0, 0.0]],
        "approach": [[0.0, 0.0, 1.0]],
        "closing": [[1.0, 0.0, 0.0]],
        "width": [0.02],
    }
    args.update(kwargs)
    with pytest.raises(GeometryError, match=match):
        Grasps(**args)  # type: ignore[arg-type]


def test_geometry_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Grasps([[0, 0, 0]], [[0, 0, 1.0]], [[0, 0, 1.0]], [0.01])


# ---------------------------------------------------------------------- container protocol


def test_indexing_variants() -> None:
    g = simple(5)
    assert len(g[2]) == 1 and g[2].score[0] == 2
    assert g[-1].score[0] == 4
    assert g[np.int64(3)].score[0] == 3
    np.testing.assert_array_equal(g[1:3].score, [1, 2])
    np.testing.assert_array_equal(g[g.score > 2].score, [3, 4])
    np.testing.assert_array_equal(g[[4, 0, 4]].score, [4, 0, 4])
    assert len(g[[]]) == 0
    assert g[np.zeros(5, dtype=bool)].center.shape == (0, 3)
    with pytest.raises(IndexError):
        g[5]
    with pytest.raises(IndexError):
        g[np.array([True, False])]
    with pytest.raises(IndexError):
        g[[7]]
    with pytest.raises(TypeError):
        g[True]


def test_empty_and_concat() -> None:
    e = Grasps.empty()
    assert len(e) == 0
    assert e.quaternions.shape == (0, 4)
    assert e.poses.shape == (0, 7)
    assert e.rotations.shape == (0, 3, 3)
    assert len(Grasps.concat([])) == 0
    g = simple(3)
    both = Grasps.concat([g, e, g[1:]])
    assert len(both) == 5
    np.testing.assert_array_equal(both.score, [0, 1, 2, 1, 2])
    assert both.stage.dtype == np.int8


def test_concat_contacts_must_match() -> None:
    g = simple(2)
    with_contacts = dataclasses.replace(g, contacts=np.zeros((2, 2, 3)))
    joined = Grasps.concat([with_contacts, Grasps.empty(), with_contacts])
    assert joined.contacts is not None and joined.contacts.shape == (4, 2, 3)
    assert Grasps.concat([g, g]).contacts is None
    with pytest.raises(GeometryError, match="contacts"):
        Grasps.concat([g, with_contacts])


def test_sorted_by_score_is_stable() -> None:
    g = dataclasses.replace(simple(5), score=np.array([0.5, 0.9, 0.5, 0.1, 0.9]))
    desc = g.sorted_by_score()
    np.testing.assert_array_equal(desc.score, [0.9, 0.9, 0.5, 0.5, 0.1])
    np.testing.assert_array_equal(desc.center[:, 0], g.center[[1, 4, 0, 2, 3], 0])
    asc = g.sorted_by_score(descending=False)
    np.testing.assert_array_equal(asc.center[:, 0], g.center[[3, 0, 2, 1, 4], 0])


# ---------------------------------------------------------------------- orientation


def test_known_rotation_and_quaternion() -> None:
    # Approach +Z, closing +Y: R has columns (0,0,1), (0,1,0), (-1,0,0) = Ry(-90 deg).
    g = Grasps([[0, 0, 0]], [[0, 0, 1.0]], [[0, 1.0, 0]], [0.02])
    np.testing.assert_allclose(g.rotations[0], [[0, 0, -1], [0, 1, 0], [1, 0, 0]], atol=1e-12)
    s = np.sqrt(0.5)
    np.testing.assert_allclose(g.quaternions[0], [0, -s, 0, s], atol=1e-12)
    ident = Grasps([[1, 2, 3]], [[1.0, 0, 0]], [[0, 1.0, 0]], [0.02])
    np.testing.assert_allclose(ident.poses[0], [1, 2, 3, 0, 0, 0, 1], atol=1e-12)


@SETTINGS
@given(grasp_sets())
def test_rotations_are_proper_with_columns_n_r_z(g: Grasps) -> None:
    rot = g.rotations
    np.testing.assert_allclose(np.einsum("nki,nkj->nij", rot, rot), np.broadcast_to(
        np.eye(3), rot.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-12)
    np.testing.assert_allclose(rot[:, :, 0], g.approach)
    np.testing.assert_allclose(rot[:, :, 1], g.closing)
    np.testing.assert_allclose(rot[:, :, 2], np.cross(g.approach, g.closing))


@SETTINGS
@given(grasp_sets())
def test_quaternion_rotation_pose_round_trips(g: Grasps) -> None:
    q = g.quaternions
    assert np.all(q[:, 3] >= 0.0)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(Rotation.from_quat(q).as_matrix(), g.rotations, atol=1e-12)

    from_q = Grasps.from_quaternions(g.center, q, g.width, g.score, g.stage, g.contacts)
    from_neg_q = Grasps.from_quaternions(g.center, -3.0 * q, g.width)
    from_r = Grasps.from_rotations(g.center, g.rotations, g.width)
    from_p = Grasps.from_poses(g.poses, g.width, g.score)
    for h in (from_q, from_neg_q, from_r, from_p):
        np.testing.assert_allclose(h.center, g.center, atol=1e-12)
        np.testing.assert_allclose(h.approach, g.approach, atol=1e-12)
        np.testing.assert_allclose(h.closing, g.closing, atol=1e-12)
        np.testing.assert_allclose(h.quaternions, q, atol=1e-12)
    np.testing.assert_array_equal(from_p.score, g.score)
    assert from_q.contacts is not None


def test_quaternion_canonical_sign_with_zero_w() -> None:
    # A half turn about -x: q = (-1, 0, 0, 0) ~ (1, 0, 0, 0).
    g = Grasps.from_quaternions([[0, 0, 0]], [[-1.0, 0, 0, 0]], [0.01])
    np.testing.assert_allclose(g.quaternions, [[1.0, 0, 0, 0]], atol=1e-12)


def test_invalid_orientation_inputs() -> None:
    with pytest.raises(GeometryError, match="non-zero"):
        Grasps.from_quaternions([[0, 0, 0]], [[0, 0, 0, 0.0]], [0.01])
    with pytest.raises(GeometryError, match="shape"):
        Grasps.from_quaternions([[0, 0, 0]], [[0, 0, 1.0]], [0.01])
    with pytest.raises(GeometryError, match="rotation"):
        Grasps.from_rotations([[0, 0, 0]], [np.diag([1.0, 1.0, 2.0])], [0.01])
    with pytest.raises(GeometryError, match="rotation"):
        Grasps.from_rotations([[0, 0, 0]], [np.diag([1.0, 1.0, -1.0])], [0.01])
    with pytest.raises(GeometryError, match="poses"):
        Grasps.from_poses(np.zeros((2, 6)), 0.01)


# ---------------------------------------------------------------------- geometry


@SETTINGS
@given(grasp_sets(), st.integers(0, 2**31 - 1))
def test_transformed_then_inverse_is_identity(g: Grasps, seed: int) -> None:
    transform = random_rigid(seed)
    moved = g.transformed(transform)
    rot, trans = transform[:3, :3], transform[:3, 3]
    np.testing.assert_allclose(moved.center, g.center @ rot.T + trans, atol=1e-12)
    np.testing.assert_allclose(moved.rotations, rot @ g.rotations, atol=1e-12)
    np.testing.assert_allclose(
        moved.fingertip_positions(), g.fingertip_positions() @ rot.T + trans, atol=1e-12
    )
    back = moved.transformed(np.linalg.inv(transform))
    np.testing.assert_allclose(back.center, g.center, atol=1e-9)
    np.testing.assert_allclose(back.approach, g.approach, atol=1e-9)
    np.testing.assert_allclose(back.closing, g.closing, atol=1e-9)
    assert back.contacts is not None and g.contacts is not None
    np.testing.assert_allclose(back.contacts, g.contacts, atol=1e-9)
    np.testing.assert_array_equal(back.width, g.width)
    np.testing.assert_array_equal(back.score, g.score)


@pytest.mark.parametrize(
    "transform",
    [
        np.diag([2.0, 1.0, 1.0, 1.0]),
        np.diag([1.0, 1.0, -1.0, 1.0]),
        np.array([[1, 0.1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]),
        np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1.0]]),
        np.eye(3),
        np.full((4, 4), np.nan),
    ],
)
def test_transformed_rejects_non_rigid(transform: NDArray[np.float64]) -> None:
    with pytest.raises(GeometryError):
        simple().transformed(transform)


def test_fingertips_and_canonical_origin() -> None:
    g = Grasps([[1.0, 2.0, 3.0]], [[0, 0, 1.0]], [[1.0, 0, 0]], [0.04])
    np.testing.assert_allclose(g.fingertip_positions(), [[[1.02, 2, 3], [0.98, 2, 3]]])
    np.testing.assert_allclose(g.canonical_origin(0.03), [[1.0, 2.0, 2.97]])


def test_stage_constants() -> None:
    assert (STAGE_UNKNOWN, STAGE_1, STAGE_2, STAGE_ANNOTATION) == (0, 1, 2, 3)
