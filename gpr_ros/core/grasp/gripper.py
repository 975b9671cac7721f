"""Parallel-jaw gripper model: closing region, canonical transform and body boxes.

Canonical gripper frame (the paper's stage-2 crop, Sec. V-B): the axes of the grasp frame
(X = approach n, Y = closing r, Z = n x r; see :mod:`gpr_ros.core.grasp.grasps`) with the
origin at the gripper bottom centre, ``center - finger_depth * n`` (the palm face between the
finger bases). A point p has canonical coordinates R^T (p - (o - finger_depth·n)) with
R = [n | r | n x r]; the grasp centre o maps to (finger_depth, 0, 0).

Boxes in canonical coordinates, for a grasp of width w:

- closing region: x ∈ [0, finger_depth], y ∈ [-w/2, w/2],
  z ∈ [-finger_height/2, finger_height/2] (bounds inclusive);
- finger +: x ∈ [0, finger_depth], y ∈ [w/2, w/2 + finger_thickness], same z;
- finger -: the mirror image, y ∈ [-w/2 - finger_thickness, -w/2];
- palm: x ∈ [-palm_depth, 0], |y| <= max(w, max_width)/2 + finger_thickness,
  z ∈ [-palm_height/2, palm_height/2].

The paper enlarges the closing region "by a scalar ε" to capture context; here ε is read as
a margin in metres added on every side of the closing-region box (``enlarge``).

Point tests absorb rounding with :data:`SURFACE_TOLERANCE` (1e-9 m): the closing region is
inclusive and grown by it, the body boxes (:meth:`GripperModel.points_in_gripper_body`) are
open and shrunk by it, so contact points lying on a finger's inner face (up to rounding) are
inside the closing region and are not collisions.

Memory: the (N grasps) x (P points) methods return N·P-element arrays and work on chunks of
grasps so that their float temporaries stay below about 50 MB.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gpr_ros.core.errors import ConfigError, GeometryError
from gpr_ros.core.grasp.grasps import Grasps, _as_float_array, _per_grasp

__all__ = [
    "BOX_FINGER_NEGATIVE",
    "BOX_FINGER_POSITIVE",
    "BOX_PALM",
    "SURFACE_TOLERANCE",
    "GripperBoxes",
    "GripperModel",
]

#: Box order in :class:`GripperBoxes`: the finger on the +r side, on the -r side, the palm.
BOX_FINGER_POSITIVE = 0
BOX_FINGER_NEGATIVE = 1
BOX_PALM = 2
#: Points within this distance (m) of a box face count as on the face: inside the closing
#: region, outside the gripper body.
SURFACE_TOLERANCE = 1e-9

#: Number of (grasp, point) pairs processed at once (3 float64 each: ~48 MB).
_CHUNK_ELEMENTS = 2_000_000


@dataclass(frozen=True, eq=False)
class GripperBoxes:
    """Oriented boxes of the gripper body for N grasps.

    :ivar centers: (N, 3, 3) box centres in the grasps' frame, indexed
        [grasp, box (``BOX_*``), xyz], m.
    :ivar half_extents: (N, 3, 3) half sizes along the box axes, m.
    :ivar rotations: (N, 3, 3) box axes as columns (the grasp rotation, shared by all boxes
        of a grasp).
    """

    centers: NDArray[np.float64]
    half_extents: NDArray[np.float64]
    rotations: NDArray[np.float64]


@dataclass(frozen=True)
class GripperModel:
    """Dimensions of a parallel-jaw gripper, m.

    Defaults approximate the ABB YuMi smart gripper used in the paper. They are rough values,
    not taken from the paper or a datasheet: calibrate them for a real gripper.

    :ivar max_width: maximum opening between the fingertips.
    :ivar finger_depth: finger length along the approach.
    :ivar finger_thickness: finger size along the closing direction.
    :ivar finger_height: finger size along Z.
    :ivar palm_depth: size of the body behind the finger bases, along -approach.
    :ivar palm_height: palm size along Z.
    """

    max_width: float = 0.050
    finger_depth: float = 0.030
    finger_thickness: float = 0.008
    finger_height: float = 0.018
    palm_depth: float = 0.030
    palm_height: float = 0.040

    def __post_init__(self) -> None:
        """Validate the dimensions.

        :raises ConfigError: if a dimension is not a finite number > 0.
        """
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (bool, str, bytes)):
                raise ConfigError(f"GripperModel.{f.name} must be a number, got {value!r}")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"GripperModel.{f.name} must be a number, got {value!r}"
                ) from None
            if not math.isfinite(number) or number <= 0.0:
                raise ConfigError(
                    f"GripperModel.{f.name} must be a finite length > 0 m, got {value!r}"
                )
            object.__setattr__(self, f.name, number)

    def to_dict(self) -> dict[str, float]:
        """Return the dimensions as a plain dict.

        :return: ``{field: value}``.
        """
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GripperModel:
        """Build from a mapping; missing keys take their defaults.

        :param data: ``{field: value}``.
        :return: the model.
        :raises ConfigError: on unknown keys or invalid values.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"GripperModel config must be a mapping, got {type(data).__name__}")
        names = tuple(f.name for f in fields(cls))
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(
                f"unknown GripperModel key(s) {unknown}; expected a subset of {names}"
            )
        return cls(**data)

    # ------------------------------------------------------------------ widths and boxes

    def clip_width(self, width: ArrayLike) -> NDArray[np.float64]:
        """Clip widths to [0, max_width].

        :param width: widths of any shape, m.
        :return: the clipped widths.
        :raises GeometryError: on non-finite widths.
        """
        w = np.asarray(width, dtype=np.float64)
        if not np.all(np.isfinite(w)):
            raise GeometryError("width must be finite, got NaN/inf")
        return np.clip(w, 0.0, self.max_width)

    def closing_region(
        self, width: ArrayLike, enlarge: float = 0.0
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Bounds of the (enlarged) closing region in the canonical frame.

        :param width: opening width(s), m, any shape (...).
        :param enlarge: margin added on every side, m, >= 0.
        :return: ``(lower, upper)`` corners, each (..., 3): x ∈ [-e, finger_depth + e],
            y ∈ [-w/2 - e, w/2 + e], z ∈ [-finger_height/2 - e, finger_height/2 + e].
        :raises GeometryError: on non-finite or negative widths.
        :raises ConfigError: on a negative or non-finite ``enlarge``.
        """
        e = _check_enlarge(enlarge)
        w = np.asarray(width, dtype=np.float64)
        if not np.all(np.isfinite(w)) or np.any(w < 0.0):
            raise GeometryError("width must be finite and >= 0 m")
        half = np.stack(
            np.broadcast_arrays(
                0.5 * self.finger_depth, 0.5 * w, 0.5 * self.finger_height
            ),
            axis=-1,
        )
        centre = np.zeros_like(half)
        centre[..., 0] = 0.5 * self.finger_depth
        return centre - half - e, centre + half + e

    def _grasp_widths(self, grasps: Grasps, width: ArrayLike | None) -> NDArray[np.float64]:
        if width is None:
            return np.asarray(grasps.width, dtype=np.float64)
        w = _per_grasp(width, "width", len(grasps))
        if np.any(w < 0.0):
            raise GeometryError(f"width must be >= 0 m, got minimum {float(w.min())}")
        return w

    def _canonical_boxes(
        self, width: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Centres and half extents (N, 3 boxes, 3) of the body boxes in canonical frames."""
        n = len(width)
        t = self.finger_thickness
        centres = np.zeros((n, 3, 3))
        half = np.empty((n, 3, 3))
        centres[:, :2, 0] = 0.5 * self.finger_depth
        centres[:, BOX_FINGER_POSITIVE, 1] = 0.5 * width + 0.5 * t
        centres[:, BOX_FINGER_NEGATIVE, 1] = -(0.5 * width + 0.5 * t)
        half[:, :2, :] = (0.5 * self.finger_depth, 0.5 * t, 0.5 * self.finger_height)
        centres[:, BOX_PALM, 0] = -0.5 * self.palm_depth
        half[:, BOX_PALM, 0] = 0.5 * self.palm_depth
        half[:, BOX_PALM, 1] = 0.5 * np.maximum(width, self.max_width) + t
        half[:, BOX_PALM, 2] = 0.5 * self.palm_height
        return centres, half

    def finger_boxes(self, grasps: Grasps, width: ArrayLike | None = None) -> GripperBoxes:
        """Oriented boxes of the two fingers and the palm (see the module docstring).

        The fingers' inner faces lie at y = ±w/2, just outside the opening.

        :param grasps: N grasps.
        :param width: opening width(s) to place the fingers at (scalar or (N,)); default the
            grasps' widths. Widths are not clipped to ``max_width``.
        :return: the boxes in the grasps' frame.
        :raises GeometryError: on invalid widths.
        """
        w = self._grasp_widths(grasps, width)
        centres, half = self._canonical_boxes(w)
        rot = grasps.rotations
        origin = grasps.canonical_origin(self.finger_depth)
        world = origin[:, None, :] + np.einsum("nij,nbj->nbi", rot, centres)
        return GripperBoxes(centers=world, half_extents=half, rotations=rot)

    # ------------------------------------------------------------------ point tests

    def to_canonical(self, points: ArrayLike, grasps: Grasps) -> NDArray[np.float64]:
        """Return the canonical coordinates R^T (p - (o - finger_depth·n)) for every grasp.

        Memory: returns an N·P·3 float64 array (24·N·P bytes).

        :param points: (P, 3) points in the grasps' frame.
        :param grasps: N grasps.
        :return: (N, P, 3) canonical coordinates.
        :raises GeometryError: on a wrong shape or non-finite points.
        """
        pts = _as_float_array(points, "points", (None, 3))
        return self._to_canonical(pts, grasps)

    def _to_canonical(self, pts: NDArray[np.float64], grasps: Grasps) -> NDArray[np.float64]:
        rot = grasps.rotations
        origin = grasps.canonical_origin(self.finger_depth)
        shift = np.einsum("nk,nkj->nj", origin, rot)
        result: NDArray[np.float64] = np.matmul(pts[None, :, :], rot) - shift[:, None, :]
        return result

    def _chunks(self, n_grasps: int, n_points: int) -> Iterator[slice]:
        step = max(1, _CHUNK_ELEMENTS // max(n_points, 1))
        for start in range(0, n_grasps, step):
            yield slice(start, min(start + step, n_grasps))

    def points_in_closing_region(
        self, points: ArrayLike, grasps: Grasps, enlarge: float = 0.0
    ) -> NDArray[np.bool_]:
        """Which points lie in each grasp's (enlarged) closing region.

        Bounds are inclusive, grown by :data:`SURFACE_TOLERANCE`.

        :param points: (P, 3) points in the grasps' frame.
        :param grasps: N grasps (each uses its own width).
        :param enlarge: margin ε added on every side of the region, m, >= 0.
        :return: (N, P) boolean mask.
        :raises GeometryError: on a wrong shape or non-finite points.
        :raises ConfigError: on a negative ``enlarge``.
        """
        pts = _as_float_array(points, "points", (None, 3))
        e = _check_enlarge(enlarge) + SURFACE_TOLERANCE
        mask = np.zeros((len(grasps), len(pts)), dtype=bool)
        for chunk in self._chunks(len(grasps), len(pts)):
            sub = grasps[chunk]
            canon = self._to_canonical(pts, sub)
            half_w = (0.5 * sub.width + e)[:, None]
            mask[chunk] = (
                (canon[..., 0] >= -e)
                & (canon[..., 0] <= self.finger_depth + e)
                & (np.abs(canon[..., 1]) <= half_w)
                & (np.abs(canon[..., 2]) <= 0.5 * self.finger_height + e)
            )
        return mask

    def crop_indices(
        self, points: ArrayLike, grasps: Grasps, index: int = 0, enlarge: float = 0.0
    ) -> NDArray[np.int64]:
        """Return the indices of the points in the enlarged closing region of one grasp.

        Use them to gather per-point features for the stage-2 crop.

        :param points: (P, 3) points.
        :param grasps: the grasps.
        :param index: which grasp.
        :param enlarge: margin ε, m.
        :return: (K,) int64 indices into ``points``, ascending.
        :raises IndexError: if ``index`` is out of range.
        """
        mask = self.points_in_closing_region(points, grasps[index], enlarge)[0]
        return np.flatnonzero(mask).astype(np.int64)

    def crop_canonical(
        self, points: ArrayLike, grasps: Grasps, index: int = 0, enlarge: float = 0.0
    ) -> NDArray[np.float64]:
        """Return canonical coordinates of the points in the enlarged closing region of a grasp.

        :param points: (P, 3) points.
        :param grasps: the grasps.
        :param index: which grasp.
        :param enlarge: margin ε, m.
        :return: (K, 3) canonical coordinates, in the order of ``crop_indices``.
        :raises IndexError: if ``index`` is out of range.
        """
        pts = _as_float_array(points, "points", (None, 3))
        grasp = grasps[index]
        idx = self.crop_indices(pts, grasp, 0, enlarge)
        return self._to_canonical(pts[idx], grasp)[0]

    def points_in_gripper_body(
        self, points: ArrayLike, grasps: Grasps, width: ArrayLike | None = None
    ) -> NDArray[np.bool_]:
        """Which points lie strictly inside a finger or the palm of each grasp.

        The boxes are open and shrunk by :data:`SURFACE_TOLERANCE`, so points on a face are
        not inside.

        :param points: (P, 3) points in the grasps' frame.
        :param grasps: N grasps.
        :param width: finger placement width(s) (scalar or (N,)); default the grasps' widths.
        :return: (N, P) boolean mask.
        :raises GeometryError: on invalid points or widths.
        """
        pts = _as_float_array(points, "points", (None, 3))
        w = self._grasp_widths(grasps, width)
        # Same boxes as _canonical_boxes, tested axis by axis to avoid (N, P, 3) temporaries.
        tol = SURFACE_TOLERANCE
        inner = 0.5 * w + tol
        outer = 0.5 * w + self.finger_thickness - tol
        palm_y = 0.5 * np.maximum(w, self.max_width) + self.finger_thickness - tol
        mask = np.zeros((len(grasps), len(pts)), dtype=bool)
        for chunk in self._chunks(len(grasps), len(pts)):
            canon = self._to_canonical(pts, grasps[chunk])
            x, abs_y, abs_z = canon[..., 0], np.abs(canon[..., 1]), np.abs(canon[..., 2])
            fingers = (
                (x > tol)
                & (x < self.finger_depth - tol)
                & (abs_y > inner[chunk, None])
                & (abs_y < outer[chunk, None])
                & (abs_z < 0.5 * self.finger_height - tol)
            )
            palm = (
                (x > -self.palm_depth + tol)
                & (x < -tol)
                & (abs_y < palm_y[chunk, None])
                & (abs_z < 0.5 * self.palm_height - tol)
            )
            mask[chunk] = fingers | palm
        return mask


def _check_enlarge(enlarge: float) -> float:
    e = float(enlarge)
    if not math.isfinite(e) or e < 0.0:
        raise ConfigError(f"enlarge must be a finite margin >= 0 m, got {enlarge}")
    return e


def in_swept_body(
    x: NDArray[np.float64],
    abs_y: NDArray[np.float64],
    abs_z: NDArray[np.float64],
    half_open: NDArray[np.float64],
    gripper: GripperModel,
    sweep: float,
) -> NDArray[np.bool_]:
    """Whether points lie inside the gripper body swept back along −n by ``sweep``.

    Coordinates are in the grasp frame with the origin at the grasp centre o (x along the
    approach, so the fingertips are at x = 0 and the palm face at x = −finger_depth). The
    boxes are those of :class:`GripperModel` (open boxes) for an opening of 2·``half_open``,
    each elongated by ``sweep`` towards −x.
    """
    t = gripper.finger_thickness
    finger_band = (abs_y > half_open) & (abs_y < half_open + t)
    palm_band = abs_y < np.maximum(half_open, 0.5 * gripper.max_width) + t
    return in_swept_body_banded(x, abs_z, finger_band, palm_band, gripper, sweep)


def in_swept_body_banded(
    x: NDArray[np.floating[Any]],
    abs_z: NDArray[np.floating[Any]],
    finger_band: NDArray[np.bool_],
    palm_band: NDArray[np.bool_],
    gripper: GripperModel,
    sweep: float,
) -> NDArray[np.bool_]:
    """:func:`in_swept_body` with the approach-independent |y| tests precomputed."""
    fd = gripper.finger_depth
    fingers = finger_band & (x < 0.0) & (x > -fd - sweep) & (abs_z < 0.5 * gripper.finger_height)
    palm = (
        palm_band
        & (x < -fd)
        & (x > -fd - gripper.palm_depth - sweep)
        & (abs_z < 0.5 * gripper.palm_height)
    )
    result: NDArray[np.bool_] = fingers | palm
    return result
