"""The paper's angle parameterisation of grasp orientations (GPR, Sec. V-A, Fig. 5).

Angles are measured in the frame the grasps are expressed in (for GPR: the camera frame, whose
+Z is the optical axis pointing into the scene). With the approach n = (n_x, n_y, n_z) and the
closing direction r (see :mod:`gpr_ros.core.grasp.grasps` for the grasp frame):

- θ1 = atan2(n_y, n_x) wrapped into [0, 2π): azimuth of the approach vector;
- θ2 = arccos(n_z) in [0, π/2]: angle between n and +Z (computed as
  atan2(sqrt(n_x² + n_y²), n_z) for accuracy near 0);
- θ3 = atan2(r_y, r_x) folded into [-π/2, π/2) using the r ~ -r symmetry: azimuth of the
  closing direction projected onto the XY plane.

The inverse maps are n = (sin θ2 cos θ1, sin θ2 sin θ1, cos θ2) and, with
d = (cos θ3, sin θ3, 0), r ∝ d - (d·n / n_z) ẑ: the unit vector perpendicular to n whose
XY projection has azimuth θ3. It is evaluated as r = (n_z d - (d·n) ẑ) / sqrt(n_z² + (d·n)²),
the same direction for n_z > 0 and finite at n_z = 0 (see :func:`theta3_to_closing`).

The paper writes θ1 ∈ [0, 2π], θ2 ∈ [0, π/2], θ3 ∈ [-π/2, π/2]; here the periodic angles use
half-open ranges so that every orientation has exactly one representation. Grasps whose
approach points away from +Z (n_z < 0) have θ2 > π/2 and cannot be represented:
:func:`approach_to_angles` raises :class:`~gpr_ros.core.errors.GeometryError` for them unless
``clip=True``, which clips n_z to 0 (θ2 = π/2, θ1 = azimuth of the XY part).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gpr_ros.core.errors import GeometryError
from gpr_ros.core.grasp.grasps import Grasps, _as_finite, _as_float_array

__all__ = [
    "APPROACH_Z_TOLERANCE",
    "angles_to_approach",
    "approach_to_angles",
    "closing_to_theta3",
    "grasp_angles",
    "grasps_from_angles",
    "theta3_to_closing",
]

#: Approach vectors with -APPROACH_Z_TOLERANCE <= n_z < 0 are treated as n_z = 0 (rounding
#: noise); below that :func:`approach_to_angles` raises unless ``clip=True``.
APPROACH_Z_TOLERANCE = 1e-9
_ZERO_NORM = 1e-12
#: θ3 this close below +π/2 is the fold's other side, -π/2 (rad).
_FOLD_TOLERANCE = 1e-12
_TWO_PI = 2.0 * np.pi


def _unit_vectors(vectors: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = _as_finite(vectors, name)
    if arr.ndim < 1 or arr.shape[-1] != 3:
        raise GeometryError(f"{name} must have shape (..., 3), got {arr.shape}")
    norms = np.linalg.norm(arr, axis=-1)
    if np.any(norms < _ZERO_NORM):
        raise GeometryError(f"{name} must be non-zero vectors, got a zero vector")
    result: NDArray[np.float64] = arr / norms[..., None]
    return result


def _wrap(values: NDArray[np.float64], start: float, period: float) -> NDArray[np.float64]:
    """Wrap values into the half-open interval [start, start + period)."""
    wrapped = np.mod(values - start, period)
    # np.mod of a tiny negative number rounds up to exactly `period`.
    wrapped = np.where(wrapped >= period, 0.0, wrapped)
    result: NDArray[np.float64] = wrapped + start
    # Adding `start` back can round up to `start + period`, the same point as `start`.
    result = np.where(result >= start + period, start, result)
    return result


def approach_to_angles(
    approach: ArrayLike, clip: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Convert approach vectors to (θ1, θ2).

    θ1 = atan2(n_y, n_x) in [0, 2π) and θ2 = arccos(n_z) in [0, π/2]. At θ2 = 0 the azimuth
    is undefined and θ1 = 0 is returned.

    :param approach: (..., 3) approach vectors (normalized here).
    :param clip: if true, n_z < 0 is clipped to 0: the vector is replaced by its normalized XY
        projection (θ2 = π/2, θ1 = its azimuth; θ1 = 0 for n = -ẑ). If false such vectors
        raise.
    :return: (θ1, θ2), each of shape (...).
    :raises GeometryError: on a wrong shape, non-finite values, zero vectors, or (unless
        ``clip``) an approach with n_z < -:data:`APPROACH_Z_TOLERANCE`.
    """
    n = _unit_vectors(approach, "approach")
    nz = n[..., 2]
    if not clip and np.any(nz < -APPROACH_Z_TOLERANCE):
        count = int(np.count_nonzero(nz < -APPROACH_Z_TOLERANCE))
        raise GeometryError(
            f"approach must have n_z >= 0 (theta2 in [0, pi/2]) to be represented by angles; "
            f"{count} vector(s) point away from +Z (minimum n_z {float(nz.min()):.3g}); "
            "pass clip=True to clip n_z to 0"
        )
    theta1 = _wrap(np.arctan2(n[..., 1], n[..., 0]), 0.0, _TWO_PI)
    # n = -z (only reachable with clip) has no XY part: atan2(0, 0) would give 0, not π/2.
    theta2 = np.where(
        nz < 0.0, 0.5 * np.pi, np.arctan2(np.hypot(n[..., 0], n[..., 1]), np.maximum(nz, 0.0))
    )
    return theta1, theta2


def angles_to_approach(theta1: ArrayLike, theta2: ArrayLike) -> NDArray[np.float64]:
    """Convert (θ1, θ2) to unit approach vectors.

    n = (sin θ2 cos θ1, sin θ2 sin θ1, cos θ2). Any finite angles are accepted.

    :param theta1: azimuth, rad; broadcast against ``theta2``.
    :param theta2: angle from +Z, rad.
    :return: (..., 3) unit vectors.
    :raises GeometryError: on non-finite angles.
    """
    t1 = _as_finite(theta1, "theta1")
    t2 = _as_finite(theta2, "theta2")
    t1, t2 = np.broadcast_arrays(t1, t2)
    sin2 = np.sin(t2)
    return np.stack([sin2 * np.cos(t1), sin2 * np.sin(t1), np.cos(t2)], axis=-1)


def closing_to_theta3(closing: ArrayLike) -> NDArray[np.float64]:
    """Convert closing directions to θ3.

    θ3 = atan2(r_y, r_x) folded into [-π/2, π/2) (r and -r give the same θ3).

    :param closing: (..., 3) closing vectors (any non-zero length).
    :return: θ3, shape (...).
    :raises GeometryError: on a wrong shape, non-finite values, or a closing direction with no
        XY component (r = ±ẑ, possible only for a horizontal approach).
    """
    r = _unit_vectors(closing, "closing")
    if np.any(np.hypot(r[..., 0], r[..., 1]) < _ZERO_NORM):
        raise GeometryError(
            "closing must have a non-zero XY projection to define theta3, got r parallel to Z"
        )
    theta3 = _wrap(np.arctan2(r[..., 1], r[..., 0]), -0.5 * np.pi, np.pi)
    # r with r_x within rounding of 0 lies on the fold: r and -r give +π/2 - ε and -π/2;
    # snap the first to -π/2 so both have the one representation the range promises.
    result: NDArray[np.float64] = np.where(theta3 >= 0.5 * np.pi - _FOLD_TOLERANCE,
                                           -0.5 * np.pi, theta3)
    return result


def theta3_to_closing(theta3: ArrayLike, approach: ArrayLike) -> NDArray[np.float64]:
    """Recover the closing direction from θ3 and the approach.

    With d = (cos θ3, sin θ3, 0), r ∝ d - (d·n / n_z) ẑ, evaluated as
    r = (n_z d - (d·n) ẑ) / sqrt(n_z² + (d·n)²), which is exactly perpendicular to n.

    For n_z > 0 the XY projection of r has azimuth θ3, so for t in [-π/2, π/2)
    ``closing_to_theta3(theta3_to_closing(t, n))`` gives t back (up to rounding) and
    ``theta3_to_closing(closing_to_theta3(r), n)`` gives r back up to sign.
    Singular case: as n_z → 0 the XY projections of all r ⟂ n collapse onto one line, so θ3
    no longer determines r and the conditioning degrades like 1/n_z. Documented fallback: at
    n_z = 0 the formula's limit is used (r = ∓ẑ when d·n ≠ 0); when both n_z and d·n vanish
    (|(n_z, d·n)| < 1e-12) r = d, which is then perpendicular to n. For n_z < 0 the same
    formula gives an r ⟂ n whose XY azimuth is θ3 + π (same line). No error is raised.

    :param theta3: closing azimuth, rad; broadcast against ``approach[..., 0]``.
    :param approach: (..., 3) approach vectors (normalized here).
    :return: (..., 3) unit closing vectors perpendicular to the approach.
    :raises GeometryError: on non-finite values, wrong shapes or zero approach vectors.
    """
    t3 = _as_finite(theta3, "theta3")
    n = _unit_vectors(approach, "approach")
    try:
        shape = np.broadcast_shapes(t3.shape, n.shape[:-1])
    except ValueError:
        raise GeometryError(
            f"theta3 of shape {t3.shape} does not broadcast against approach of shape "
            f"{n.shape}"
        ) from None
    t3 = np.broadcast_to(t3, shape)
    n = np.broadcast_to(n, (*shape, 3))
    d = np.stack([np.cos(t3), np.sin(t3), np.zeros(shape)], axis=-1)
    dn = np.sum(d * n, axis=-1)
    nz = n[..., 2]
    r = nz[..., None] * d
    r[..., 2] -= dn
    norm = np.hypot(nz, dn)
    singular = norm < _ZERO_NORM
    safe = np.where(singular, 1.0, norm)
    result: NDArray[np.float64] = np.where(singular[..., None], d, r / safe[..., None])
    return result


def grasp_angles(grasps: Grasps, clip: bool = False) -> NDArray[np.float64]:
    """Return (θ1, θ2, θ3) of every grasp.

    :param grasps: the grasps, expressed in the reference frame of the angles.
    :param clip: passed to :func:`approach_to_angles`.
    :return: (N, 3) angles, rad.
    :raises GeometryError: if an approach has n_z < 0 (unless ``clip``) or a closing direction
        is parallel to Z.
    """
    if len(grasps) == 0:
        return np.zeros((0, 3))
    theta1, theta2 = approach_to_angles(grasps.approach, clip=clip)
    theta3 = closing_to_theta3(grasps.closing)
    return np.stack([theta1, theta2, theta3], axis=1)


def grasps_from_angles(
    center: ArrayLike,
    angles: ArrayLike,
    width: ArrayLike,
    score: ArrayLike | None = None,
    stage: ArrayLike | None = None,
    contacts: ArrayLike | None = None,
) -> Grasps:
    """Build grasps from centres and (θ1, θ2, θ3).

    :param center: (N, 3) grasp centres, m.
    :param angles: (N, 3) angles (θ1, θ2, θ3), rad.
    :param width: (N,) or scalar widths, m.
    :param score: optional scores.
    :param stage: optional ``STAGE_*`` values.
    :param contacts: optional (N, 2, 3) contacts.
    :return: the grasps; the closing direction is the one of :func:`theta3_to_closing`.
    :raises GeometryError: on wrong shapes or non-finite values.
    """
    ang = _as_float_array(angles, "angles", (None, 3))
    approach = angles_to_approach(ang[:, 0], ang[:, 1])
    closing = theta3_to_closing(ang[:, 2], approach)
    return Grasps(center, approach, closing, width, score, stage, contacts)
