"""A vectorised set of 7-DoF parallel-jaw grasps.

Grasp frame (the project-wide convention, also used in the ROS message ``gpr_msgs/Grasp``):

- origin ``center`` o: the midpoint between the two fingertip contacts, the paper's
  o = (c1 + c2) / 2;
- X axis = approach direction n (unit, pointing from the gripper palm towards/into the object);
- Y axis = closing direction r (unit, the line along which the fingers close, perpendicular to
  n; r and -r describe the same grasp for the symmetric parallel-jaw gripper);
- Z = X x Y.

The rotation matrix is R = [n | r | n x r] (columns). Quaternions are in ROS order
(x, y, z, w), normalized, with w >= 0 as the canonical sign. A pose is
(x, y, z, qx, qy, qz, qw). Units: metres, radians.

The paper's canonical gripper frame (the stage-2 crop) has the same axes but its origin at the
gripper bottom centre, ``center - finger_depth * n`` (see :meth:`Grasps.canonical_origin` and
:mod:`gpr_ros.core.grasp.gripper`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

from gpr_ros.core.errors import ConfigError, GeometryError

__all__ = [
    "PARALLEL_TOLERANCE",
    "RIGID_TOLERANCE",
    "STAGE_1",
    "STAGE_2",
    "STAGE_ANNOTATION",
    "STAGE_BASELINE",
    "STAGE_PROPOSAL",
    "STAGE_REFINED",
    "STAGE_UNKNOWN",
    "Grasps",
    "check_rigid_transform",
]

#: Which component produced a grasp; the values match the ``STAGE_*`` constants of
#: ``gpr_msgs/Grasp``.
STAGE_UNKNOWN = 0
STAGE_1 = 1
STAGE_2 = 2
STAGE_ANNOTATION = 3
STAGE_BASELINE = 4
#: Aliases with the names used in the ROS message.
STAGE_PROPOSAL = STAGE_1
STAGE_REFINED = STAGE_2
_VALID_STAGES = (STAGE_UNKNOWN, STAGE_1, STAGE_2, STAGE_ANNOTATION, STAGE_BASELINE)

#: A closing vector whose component orthogonal to the approach is shorter than this fraction
#: of its length (the sine of the angle between them) is rejected as parallel to the approach.
PARALLEL_TOLERANCE = 1e-6
#: Absolute tolerance on R^T R = I (and on the last row of a homogeneous transform).
RIGID_TOLERANCE = 1e-6
#: Vectors shorter than this are treated as zero.
_ZERO_NORM = 1e-12


def _shape_text(shape: Sequence[int | None]) -> str:
    dims = ", ".join("N" if s is None else str(s) for s in shape)
    return f"({dims},)" if len(shape) == 1 else f"({dims})"


def _as_float_array(
    value: ArrayLike, name: str, shape: Sequence[int | None], *, copy: bool = False
) -> NDArray[np.float64]:
    """Convert ``value`` to a finite float64 array of the given shape.

    :param value: the input.
    :param name: the argument name used in error messages.
    :param shape: the expected shape; ``None`` matches any size.
    :param copy: always return a fresh array.
    :return: the float64 array.
    :raises GeometryError: if ``value`` is not numeric, has another shape or is not finite.
    """
    try:
        arr = np.array(value, dtype=np.float64, copy=True) if copy else np.asarray(
            value, dtype=np.float64
        )
    except (TypeError, ValueError):
        raise GeometryError(
            f"{name} must be a numeric array of shape {_shape_text(shape)}, "
            f"got {type(value).__name__}"
        ) from None
    if arr.ndim != len(shape) or any(
        s is not None and a != s for a, s in zip(arr.shape, shape, strict=True)
    ):
        raise GeometryError(
            f"{name} must have shape {_shape_text(shape)}, got {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise GeometryError(f"{name} must be finite, got {bad} NaN/inf value(s)")
    return arr


def _as_finite(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """Convert ``values`` (any shape) to a finite float64 array.

    :param values: the input.
    :param name: the argument name used in error messages.
    :return: the float64 array.
    :raises GeometryError: if ``values`` is not numeric or not finite.
    """
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise GeometryError(f"{name} must be numeric, got {type(values).__name__}") from None
    if not np.all(np.isfinite(arr)):
        raise GeometryError(f"{name} must be finite, got NaN/inf")
    return arr


def _per_grasp(value: ArrayLike, name: str, n: int) -> NDArray[np.float64]:
    """Return a fresh finite (n,) float64 array; a scalar is broadcast to all grasps."""
    arr = np.asarray(value, dtype=np.float64) if np.ndim(value) == 0 else None
    if arr is not None:
        if not np.isfinite(arr):
            raise GeometryError(f"{name} must be finite, got {float(arr)}")
        return np.full(n, float(arr))
    return _as_float_array(value, name, (n,), copy=True)


def _normalized(vectors: NDArray[np.float64], name: str) -> NDArray[np.float64]:
    norms = np.linalg.norm(vectors, axis=-1)
    if np.any(norms < _ZERO_NORM):
        bad = np.flatnonzero(norms.reshape(-1) < _ZERO_NORM)
        raise GeometryError(
            f"{name} must be non-zero vectors, got {bad.size} zero vector(s) "
            f"(first at index {int(bad[0])})"
        )
    result: NDArray[np.float64] = vectors / norms[..., None]
    return result


def _orthonormal_closing(
    approach: NDArray[np.float64], closing: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Gram-Schmidt: remove the approach component of ``closing`` and normalize it.

    :param approach: unit approach vectors, (N, 3).
    :param closing: closing vectors, (N, 3).
    :return: unit closing vectors orthogonal to ``approach``.
    :raises GeometryError: if a closing vector is zero or (nearly) parallel to its approach.
    """
    lengths = np.linalg.norm(closing, axis=1)
    perp = closing - np.sum(closing * approach, axis=1)[:, None] * approach
    perp_lengths = np.linalg.norm(perp, axis=1)
    bad = (perp_lengths <= PARALLEL_TOLERANCE * lengths) | (lengths < _ZERO_NORM)
    if np.any(bad):
        idx = np.flatnonzero(bad)
        raise GeometryError(
            f"closing must be a non-zero vector not parallel to approach; {idx.size} grasp(s) "
            f"violate this (first at index {int(idx[0])}); expected an angle of more than "
            f"{PARALLEL_TOLERANCE:g} rad between closing and approach"
        )
    result: NDArray[np.float64] = perp / perp_lengths[:, None]
    return result


def _as_stage(value: ArrayLike | None, n: int) -> NDArray[np.int8]:
    if value is None:
        return np.zeros(n, dtype=np.int8)
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.shape != (n,) or (arr.size and arr.dtype.kind not in "iu"):
        raise GeometryError(
            f"stage must be an integer scalar or an integer array of shape ({n},), "
            f"got dtype {arr.dtype} and shape {arr.shape}"
        )
    if arr.size and not np.all(np.isin(arr, _VALID_STAGES)):
        bad = sorted({int(v) for v in arr[~np.isin(arr, _VALID_STAGES)]})
        raise GeometryError(f"stage values must be in {_VALID_STAGES}, got {bad}")
    return arr.astype(np.int8)


def check_rigid_transform(transform: ArrayLike) -> NDArray[np.float64]:
    """Validate a 4x4 homogeneous rigid transform.

    :param transform: a 4x4 matrix [[R, t], [0, 0, 0, 1]] with R a proper rotation.
    :return: the transform as a float64 (4, 4) array.
    :raises GeometryError: if the shape is wrong, a value is not finite, the last row is not
        (0, 0, 0, 1), or R is not orthonormal with determinant +1 (within
        :data:`RIGID_TOLERANCE`).
    """
    mat = _as_float_array(transform, "transform", (4, 4))
    if not np.allclose(mat[3], (0.0, 0.0, 0.0, 1.0), rtol=0.0, atol=RIGID_TOLERANCE):
        raise GeometryError(
            f"transform must have last row (0, 0, 0, 1), got {tuple(float(v) for v in mat[3])}"
        )
    _check_rotations(mat[None, :3, :3], "transform rotation block")
    return mat


def _check_rotations(rotations: NDArray[np.float64], name: str) -> None:
    gram = np.einsum("nki,nkj->nij", rotations, rotations)
    err = np.abs(gram - np.eye(3)).reshape(len(rotations), -1).max(axis=1, initial=0.0)
    det = np.linalg.det(rotations) if len(rotations) else np.zeros(0)
    bad = (err > RIGID_TOLERANCE) | (det <= 0.0)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise GeometryError(
            f"{name} must be proper rotation matrices (R^T R = I within {RIGID_TOLERANCE:g}, "
            f"det R = +1); {int(np.count_nonzero(bad))} violate this, first at index {i} "
            f"with max |R^T R - I| = {err[i]:.3g} and det = {det[i]:.6g}"
        )


def _canonical_quaternions(quats: NDArray[np.float64]) -> NDArray[np.float64]:
    """Flip quaternion signs so that w >= 0 (ties at w == 0: first non-zero of x, y, z > 0)."""
    flip = quats[:, 3] < 0.0
    zero_w = quats[:, 3] == 0.0
    if np.any(zero_w):
        xyz = quats[zero_w, :3]
        first = np.argmax(xyz != 0.0, axis=1)
        flip[zero_w] = xyz[np.arange(len(xyz)), first] < 0.0
    result: NDArray[np.float64] = np.where(flip[:, None], -quats, quats)
    return result


def _readonly(arr: NDArray[Any]) -> NDArray[Any]:
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False, init=False, repr=False)
class Grasps:
    """N parallel-jaw grasps stored as arrays (see the module docstring for the frame).

    The instance is immutable: its fields cannot be reassigned and its arrays are read-only.
    Use :func:`dataclasses.replace` to derive a modified copy (it validates again).

    :ivar center: (N, 3) grasp centres o, m.
    :ivar approach: (N, 3) unit approach directions n (grasp X axis).
    :ivar closing: (N, 3) unit closing directions r, orthogonal to ``approach`` (grasp Y axis).
    :ivar width: (N,) opening between the fingertips, m.
    :ivar score: (N,) quality or confidence, higher is better.
    :ivar stage: (N,) int8, one of the ``STAGE_*`` constants.
    :ivar contacts: (N, 2, 3) contact points c1, c2, or ``None``.
    """

    center: NDArray[np.float64]
    approach: NDArray[np.float64]
    closing: NDArray[np.float64]
    width: NDArray[np.float64]
    score: NDArray[np.float64]
    stage: NDArray[np.int8]
    contacts: NDArray[np.float64] | None

    def __init__(
        self,
        center: ArrayLike,
        approach: ArrayLike,
        closing: ArrayLike,
        width: ArrayLike,
        score: ArrayLike | None = None,
        stage: ArrayLike | None = None,
        contacts: ArrayLike | None = None,
    ) -> None:
        """Validate and store a grasp set.

        ``approach`` is normalized; ``closing`` is made orthogonal to ``approach`` and
        normalized (Gram-Schmidt). ``width``, ``score`` and ``stage`` may be scalars, which are
        broadcast to all grasps. Input arrays are copied.

        :param center: (N, 3) grasp centres, m.
        :param approach: (N, 3) approach directions (any non-zero length).
        :param closing: (N, 3) closing directions, not parallel to the approach.
        :param width: (N,) or scalar opening widths, m, >= 0.
        :param score: (N,) or scalar scores; default zeros.
        :param stage: (N,) or scalar ``STAGE_*`` values; default :data:`STAGE_UNKNOWN`.
        :param contacts: optional (N, 2, 3) contact points.
        :raises GeometryError: on wrong shapes, non-finite values, zero vectors, a closing
            direction parallel to the approach, negative widths or unknown stages.
        """
        c = _as_float_array(center, "center", (None, 3), copy=True)
        n = c.shape[0]
        a = _normalized(_as_float_array(approach, "approach", (n, 3)), "approach")
        r = _orthonormal_closing(a, _as_float_array(closing, "closing", (n, 3)))
        w = _per_grasp(width, "width", n)
        if np.any(w < 0.0):
            raise GeometryError(f"width must be >= 0 m, got minimum {float(w.min())}")
        s = np.zeros(n) if score is None else _per_grasp(score, "score", n)
        st = _as_stage(stage, n)
        cts = None if contacts is None else _as_float_array(
            contacts, "contacts", (n, 2, 3), copy=True
        )
        self._set_fields(c, a, r, w, s, st, cts)

    def _set_fields(
        self,
        center: NDArray[np.float64],
        approach: NDArray[np.float64],
        closing: NDArray[np.float64],
        width: NDArray[np.float64],
        score: NDArray[np.float64],
        stage: NDArray[np.int8],
        contacts: NDArray[np.float64] | None,
    ) -> None:
        object.__setattr__(self, "center", _readonly(center))
        object.__setattr__(self, "approach", _readonly(approach))
        object.__setattr__(self, "closing", _readonly(closing))
        object.__setattr__(self, "width", _readonly(width))
        object.__setattr__(self, "score", _readonly(score))
        object.__setattr__(self, "stage", _readonly(stage))
        object.__setattr__(self, "contacts", None if contacts is None else _readonly(contacts))

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore from a pickle, keeping the arrays read-only."""
        for name, value in state.items():
            object.__setattr__(self, name, value if value is None else _readonly(value))

    @classmethod
    def _from_valid(
        cls,
        center: NDArray[np.float64],
        approach: NDArray[np.float64],
        closing: NDArray[np.float64],
        width: NDArray[np.float64],
        score: NDArray[np.float64],
        stage: NDArray[np.int8],
        contacts: NDArray[np.float64] | None,
    ) -> Grasps:
        """Build from arrays that already satisfy every invariant (no validation, no copy)."""
        obj = object.__new__(cls)
        obj._set_fields(center, approach, closing, width, score, stage, contacts)
        return obj

    # ------------------------------------------------------------------ container protocol

    def __len__(self) -> int:
        """Return the number of grasps."""
        return int(self.center.shape[0])

    def __repr__(self) -> str:
        """Return a short summary (the arrays themselves are not printed)."""
        return f"Grasps(n={len(self)}, contacts={self.contacts is not None})"

    def __getitem__(self, key: int | slice | ArrayLike) -> Grasps:
        """Select grasps; the result is always a :class:`Grasps`.

        :param key: an int (gives one grasp), a slice, a boolean mask of shape (N,) or a 1-D
            integer index array.
        :return: the selected grasps.
        :raises IndexError: for out-of-range indices or a mask of the wrong length.
        :raises TypeError: for unsupported keys.
        """
        index: slice | NDArray[Any]
        if isinstance(key, bool):
            raise TypeError("a bool is not a valid grasp index; use a boolean mask array")
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if not -len(self) <= i < len(self):
                raise IndexError(f"grasp index {i} out of range for {len(self)} grasps")
            index = np.array([i], dtype=np.intp)
        elif isinstance(key, slice):
            index = key
        else:
            index = np.asarray(key)
            if index.ndim != 1:
                raise IndexError(f"grasp index arrays must be 1-D, got shape {index.shape}")
            if index.size == 0 and index.dtype.kind not in "biu":
                index = index.astype(np.intp)
            if index.dtype.kind == "b":
                if index.shape != (len(self),):
                    raise IndexError(
                        f"boolean mask must have shape ({len(self)},), got {index.shape}"
                    )
            elif index.dtype.kind not in "iu":
                raise TypeError(f"grasp index arrays must be integer or bool, got {index.dtype}")
        return Grasps._from_valid(
            self.center[index],
            self.approach[index],
            self.closing[index],
            self.width[index],
            self.score[index],
            self.stage[index],
            None if self.contacts is None else self.contacts[index],
        )

    @classmethod
    def empty(cls) -> Grasps:
        """Return a grasp set with no grasps (and no contacts).

        :return: an empty :class:`Grasps`.
        """
        return cls._from_valid(
            np.zeros((0, 3)),
            np.zeros((0, 3)),
            np.zeros((0, 3)),
            np.zeros(0),
            np.zeros(0),
            np.zeros(0, dtype=np.int8),
            None,
        )

    @classmethod
    def concat(cls, parts: Sequence[Grasps]) -> Grasps:
        """Concatenate grasp sets in order.

        Contacts are kept when every non-empty part has them and dropped (``None``) when none
        has them.

        :param parts: the grasp sets.
        :return: one grasp set with ``sum(len(p) for p in parts)`` grasps.
        :raises GeometryError: if some non-empty parts have contacts and others do not.
        """
        if not parts:
            return cls.empty()
        non_empty = [p for p in parts if len(p)]
        with_contacts = [p.contacts is not None for p in non_empty]
        if any(with_contacts) and not all(with_contacts):
            raise GeometryError(
                "cannot concatenate grasp sets with and without contacts; expected all "
                "non-empty parts to have contacts, or none"
            )
        contacts = None
        if non_empty and all(with_contacts):
            contacts = np.concatenate([p.contacts for p in non_empty if p.contacts is not None])
        return cls._from_valid(
            np.concatenate([p.center for p in parts]),
            np.concatenate([p.approach for p in parts]),
            np.concatenate([p.closing for p in parts]),
            np.concatenate([p.width for p in parts]),
            np.concatenate([p.score for p in parts]),
            np.concatenate([p.stage for p in parts]),
            contacts,
        )

    # ------------------------------------------------------------------ orientation views

    @property
    def rotations(self) -> NDArray[np.float64]:
        """Rotation matrices R = [n | r | n x r] (columns), shape (N, 3, 3)."""
        return np.stack(
            [self.approach, self.closing, np.cross(self.approach, self.closing)], axis=-1
        )

    @property
    def quaternions(self) -> NDArray[np.float64]:
        """Unit quaternions (x, y, z, w) of :attr:`rotations`, with w >= 0, shape (N, 4)."""
        if len(self) == 0:
            return np.zeros((0, 4))
        quats = Rotation.from_matrix(self.rotations).as_quat()
        return _canonical_quaternions(np.asarray(quats, dtype=np.float64).reshape(-1, 4))

    @property
    def poses(self) -> NDArray[np.float64]:
        """Poses (x, y, z, qx, qy, qz, qw), shape (N, 7)."""
        return np.concatenate([self.center, self.quaternions], axis=1)

    @classmethod
    def from_rotations(
        cls,
        center: ArrayLike,
        rotations: ArrayLike,
        width: ArrayLike,
        score: ArrayLike | None = None,
        stage: ArrayLike | None = None,
        contacts: ArrayLike | None = None,
    ) -> Grasps:
        """Build grasps from rotation matrices R = [n | r | n x r].

        :param center: (N, 3) grasp centres, m.
        :param rotations: (N, 3, 3) proper rotation matrices (columns: approach, closing, Z).
        :param width: (N,) or scalar widths, m.
        :param score: optional scores.
        :param stage: optional ``STAGE_*`` values.
        :param contacts: optional (N, 2, 3) contacts.
        :return: the grasps.
        :raises GeometryError: on wrong shapes, non-finite values or matrices that are not
            rotations.
        """
        rot = _as_float_array(rotations, "rotations", (None, 3, 3))
        _check_rotations(rot, "rotations")
        return cls(center, rot[:, :, 0], rot[:, :, 1], width, score, stage, contacts)

    @classmethod
    def from_quaternions(
        cls,
        center: ArrayLike,
        quaternions: ArrayLike,
        width: ArrayLike,
        score: ArrayLike | None = None,
        stage: ArrayLike | None = None,
        contacts: ArrayLike | None = None,
    ) -> Grasps:
        """Build grasps from quaternions (x, y, z, w) of R = [n | r | n x r].

        Quaternions of any non-zero length are normalized; q and -q give the same grasp.

        :param center: (N, 3) grasp centres, m.
        :param quaternions: (N, 4) quaternions in ROS order (x, y, z, w).
        :param width: (N,) or scalar widths, m.
        :param score: optional scores.
        :param stage: optional ``STAGE_*`` values.
        :param contacts: optional (N, 2, 3) contacts.
        :return: the grasps.
        :raises GeometryError: on wrong shapes, non-finite values or zero quaternions.
        """
        quats = _normalized(_as_float_array(quaternions, "quaternions", (None, 4)), "quaternions")
        if len(quats) == 0:
            rot = np.zeros((0, 3, 3))
        else:
            rot = np.asarray(Rotation.from_quat(quats).as_matrix(), dtype=np.float64)
            rot = rot.reshape(-1, 3, 3)
        return cls(center, rot[:, :, 0], rot[:, :, 1], width, score, stage, contacts)

    @classmethod
    def from_poses(
        cls,
        poses: ArrayLike,
        width: ArrayLike,
        score: ArrayLike | None = None,
        stage: ArrayLike | None = None,
        contacts: ArrayLike | None = None,
    ) -> Grasps:
        """Build grasps from poses (x, y, z, qx, qy, qz, qw).

        :param poses: (N, 7) poses.
        :param width: (N,) or scalar widths, m.
        :param score: optional scores.
        :param stage: optional ``STAGE_*`` values.
        :param contacts: optional (N, 2, 3) contacts.
        :return: the grasps.
        :raises GeometryError: on wrong shapes, non-finite values or zero quaternions.
        """
        arr = _as_float_array(poses, "poses", (None, 7))
        return cls.from_quaternions(arr[:, :3], arr[:, 3:], width, score, stage, contacts)

    def as_received(self) -> Grasps:
        """The grasps as a receiver of their poses rebuilds them.

        ``gpr_msgs/Grasp`` carries a position and a unit quaternion (and a float32 score);
        :func:`gpr_ros.ros.conversions.msgs_to_grasps` normalizes the quaternion and rebuilds
        the frame from it, which changes the last bits of the directions. The in-process
        clutter benchmark executes ``as_received()`` grasps, so a simulation driven over ROS
        executes bit-identical grasps and reproduces it exactly.

        :return: the grasps after a pose round trip (contacts and stage unchanged).
        """
        if len(self) == 0:
            return self
        poses = self.poses
        poses[:, 3:] /= np.linalg.norm(poses[:, 3:], axis=1)[:, None]
        return Grasps.from_poses(poses, width=self.width,
                                 score=self.score.astype(np.float32).astype(np.float64),
                                 stage=self.stage, contacts=self.contacts)

    # ------------------------------------------------------------------ geometry

    def transformed(self, transform: ArrayLike) -> Grasps:
        """Apply a rigid transform to centres, directions and contacts.

        :param transform: 4x4 homogeneous transform T = [[R, t], [0, 1]] mapping coordinates
            in the grasps' current frame to the target frame (p' = R p + t).
        :return: the transformed grasps (width, score and stage unchanged).
        :raises GeometryError: if ``transform`` is not a rigid transform.
        """
        mat = check_rigid_transform(transform)
        rot, trans = mat[:3, :3], mat[:3, 3]
        contacts = None if self.contacts is None else self.contacts @ rot.T + trans
        return Grasps(
            self.center @ rot.T + trans,
            self.approach @ rot.T,
            self.closing @ rot.T,
            self.width,
            self.score,
            self.stage,
            contacts,
        )

    def sorted_by_score(self, descending: bool = True) -> Grasps:
        """Return the grasps sorted by score (stable: ties keep their original order).

        :param descending: best first when true.
        :return: the sorted grasps.
        """
        key = -self.score if descending else self.score
        return self[np.argsort(key, kind="stable")]

    def fingertip_positions(self) -> NDArray[np.float64]:
        """Fingertip positions o + w/2 r (index 0) and o - w/2 r (index 1).

        :return: (N, 2, 3) positions, m.
        """
        half = (0.5 * self.width)[:, None] * self.closing
        return np.stack([self.center + half, self.center - half], axis=1)

    def canonical_origin(self, finger_depth: float) -> NDArray[np.float64]:
        """Origin of the paper's canonical gripper frame: o - finger_depth * n.

        :param finger_depth: finger length along the approach, m.
        :return: (N, 3) gripper bottom centres, m.
        :raises ConfigError: if ``finger_depth`` is negative or not finite.
        """
        depth = float(finger_depth)
        if not np.isfinite(depth) or depth < 0.0:
            raise ConfigError(f"finger_depth must be a finite value >= 0 m, got {finger_depth}")
        result: NDArray[np.float64] = self.center - depth * self.approach
        return result
