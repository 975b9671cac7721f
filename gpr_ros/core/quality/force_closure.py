"""Friction cones and the antipodal force-closure test for two point contacts.

Conventions: ``n`` is the *outward* unit surface normal at a contact; a finger pushes along
−n. With Coulomb friction coefficient μ, a contact force is admissible when its angle to −n
is at most atan(μ) (the friction cone). Two contacts c1, c2 are in force closure (antipodal
test of Nguyen, which holds for two soft-finger contacts) when the segment between them lies
inside both friction cones: angle(c2 − c1, −n1) <= atan(μ) and angle(c1 − c2, −n2) <= atan(μ).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gpr_ros.core.errors import ConfigError, GeometryError

__all__ = [
    "antipodal_force_closure",
    "check_friction",
    "friction_cone_edges",
    "tangent_basis",
    "unit_vectors",
]

#: Vectors shorter than this are treated as zero.
_ZERO_NORM = 1e-12


def check_friction(mu: float) -> float:
    """Validate a Coulomb friction coefficient.

    :param mu: the coefficient.
    :return: ``mu`` as a float.
    :raises ConfigError: if ``mu`` is not a finite number >= 0.
    """
    try:
        value = float(mu)
    except (TypeError, ValueError):
        raise ConfigError(f"friction coefficient must be a number >= 0, got {mu!r}") from None
    if not math.isfinite(value) or value < 0.0:
        raise ConfigError(f"friction coefficient must be a finite number >= 0, got {mu!r}")
    return value


def _vectors(value: ArrayLike, name: str) -> NDArray[np.float64]:
    """Return ``value`` as a finite (N, 3) float64 array (a single (3,) vector gives N = 1)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise GeometryError(f"{name} must be a numeric (N, 3) or (3,) array") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise GeometryError(f"{name} must have shape (N, 3) or (3,), got {np.shape(value)}")
    if not np.all(np.isfinite(arr)):
        raise GeometryError(f"{name} must be finite, got NaN/inf values")
    return arr


def unit_vectors(value: ArrayLike, name: str = "vectors") -> NDArray[np.float64]:
    """Normalise (N, 3) or (3,) vectors to unit length.

    :param value: the vectors.
    :param name: the argument name used in error messages.
    :return: (N, 3) unit vectors (a single vector gives N = 1).
    :raises GeometryError: on a wrong shape, non-finite values or a zero vector.
    """
    arr = _vectors(value, name)
    norms = np.linalg.norm(arr, axis=1)
    if np.any(norms < _ZERO_NORM):
        zero = int(np.sum(norms < _ZERO_NORM))
        raise GeometryError(f"{name} must be non-zero vectors, got {zero} zero vector(s)")
    result: NDArray[np.float64] = arr / norms[:, None]
    return result


def tangent_basis(
    normals: ArrayLike,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Two unit tangents (t1, t2) per unit normal n with (t1, t2, n) right-handed.

    :param normals: (N, 3) or (3,) non-zero vectors (normalised here).
    :return: ``(t1, t2)``, each (N, 3), orthogonal to n and to each other.
    :raises GeometryError: on a wrong shape, non-finite values or a zero vector.
    """
    n = unit_vectors(normals, "normals")
    helper = np.zeros_like(n)
    use_y = np.abs(n[:, 0]) > 0.9
    helper[~use_y, 0] = 1.0
    helper[use_y, 1] = 1.0
    t1 = np.cross(helper, n)
    t1 /= np.linalg.norm(t1, axis=1)[:, None]
    t2 = np.cross(n, t1)
    return t1, t2


def friction_cone_edges(normal: ArrayLike, mu: float, m: int = 8) -> NDArray[np.float64]:
    """Edges of the m-sided linearised friction cone of an inward contact force.

    Edge j is f_j = −n + μ (cos θ_j t1 + sin θ_j t2), θ_j = 2πj/m: a force with unit normal
    component on the boundary of the (inscribed) polyhedral cone. Ferrari–Canny's L1 wrench
    space bounds the sum of normal forces by 1, which these edges realise.

    :param normal: (N, 3) or (3,) outward contact normals (normalised here).
    :param mu: friction coefficient μ >= 0.
    :param m: number of edges, >= 3.
    :return: (N, m, 3) edge forces (N = 1 for a single normal).
    :raises ConfigError: on an invalid μ or m.
    :raises GeometryError: on invalid normals.
    """
    mu_value = check_friction(mu)
    if int(m) != m or m < 3:
        raise ConfigError(f"the friction cone needs an integer number of edges >= 3, got {m!r}")
    n = unit_vectors(normal, "normal")
    t1, t2 = tangent_basis(n)
    theta = 2.0 * np.pi * np.arange(int(m)) / int(m)
    cos_t, sin_t = np.cos(theta)[None, :, None], np.sin(theta)[None, :, None]
    tangential = cos_t * t1[:, None, :] + sin_t * t2[:, None, :]
    result: NDArray[np.float64] = -n[:, None, :] + mu_value * tangential
    return result


def antipodal_force_closure(
    c1: ArrayLike, n1: ArrayLike, c2: ArrayLike, n2: ArrayLike, mu: float
) -> NDArray[np.bool_]:
    """Antipodal force-closure test of N two-contact grasps.

    A grasp passes when the segment c1–c2 lies inside both friction cones (half-angle
    atan(μ), around −n1 at c1 and −n2 at c2). Coincident contacts fail.

    :param c1: (N, 3) or (3,) first contacts.
    :param n1: (N, 3) or (3,) outward normals at ``c1`` (normalised here).
    :param c2: (N, 3) or (3,) second contacts.
    :param n2: (N, 3) or (3,) outward normals at ``c2``.
    :param mu: friction coefficient μ >= 0.
    :return: (N,) boolean array.
    :raises ConfigError: on an invalid μ.
    :raises GeometryError: on wrong shapes, non-finite values, zero normals or mismatched N.
    """
    mu_value = check_friction(mu)
    p1, p2 = _vectors(c1, "c1"), _vectors(c2, "c2")
    u1, u2 = unit_vectors(n1, "n1"), unit_vectors(n2, "n2")
    sizes = {len(p1), len(p2), len(u1), len(u2)}
    if len(sizes) != 1:
        raise GeometryError(f"c1, n1, c2, n2 must have the same length N, got {sorted(sizes)}")
    line = p2 - p1
    length = np.linalg.norm(line, axis=1)
    ok = length > _ZERO_NORM
    d = line / np.where(ok, length, 1.0)[:, None]
    # angle <= atan(mu)  <=>  cos(angle) >= cos(atan(mu)) = 1 / sqrt(1 + mu^2)
    cos_limit = 1.0 / math.sqrt(1.0 + mu_value * mu_value)
    slack = 1e-12
    ok &= np.sum(d * -u1, axis=1) >= cos_limit - slack
    ok &= np.sum(-d * -u2, axis=1) >= cos_limit - slack
    result: NDArray[np.bool_] = ok
    return result
