"""Ferrari–Canny ε quality metric (L1 grasp wrench space) with soft-finger contacts.

The paper labels every annotated grasp with the Ferrari–Canny metric [16]. For contacts c_i
with outward normals n_i the grasp wrench space (GWS) of the L1 model, where the sum of the
normal contact forces is bounded by 1, is the convex hull of the primitive wrenches of all
contacts. ε is the radius of the largest ball around the origin inside that hull (the
distance from the origin to the nearest hull facet), or 0 when the origin is not strictly
inside (no force closure).

Primitive wrenches of a contact (as in Dex-Net's soft-finger model):

- the m edges f_j of the linearised friction cone around −n_i (unit normal component; see
  :func:`~gpr_ros.core.quality.force_closure.friction_cone_edges`), each with torque
  (c_i − com) × f_j;
- two pure torsional wrenches (0, ±γ n_i): a soft finger pad transmits a moment about the
  contact normal of up to γ per unit normal force (``torsional_friction``, in metres).

Without the torsional wrenches two point contacts can never resist a torque about the line
joining them, and ε would always be 0 for a parallel-jaw grasp. Torques are divided by a
characteristic length L (``torque_scale``, by default the largest distance of a contact from
the centre of mass; annotators pass the object's radius about its COM) so that forces and
torques are comparable and ε is invariant to the unit of length.

The hull is computed with Qhull (``scipy.spatial.ConvexHull``) in 6-D with the ``QJ``
(joggle) option, which always yields a simplicial hull; degenerate wrench sets that Qhull
still rejects give ε = 0.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import ConvexHull, QhullError

from gpr_ros.core.errors import GeometryError
from gpr_ros.core.quality.force_closure import (
    _vectors,
    check_friction,
    friction_cone_edges,
    unit_vectors,
)
from gpr_ros.core.validation import positive_number as _check_positive

__all__ = [
    "DEFAULT_NUM_CONE_EDGES",
    "DEFAULT_TORSIONAL_FRICTION",
    "contact_wrenches",
    "ferrari_canny_batch",
    "ferrari_canny_epsilon",
]

#: Number of edges of the linearised friction cone.
DEFAULT_NUM_CONE_EDGES = 8
#: Torsional moment a soft finger transmits per unit normal force, m. Roughly (2/3)·μ·a for a
#: circular pad of radius a ≈ 5 mm and μ = 0.3 (uniform pressure); a placeholder to calibrate.
DEFAULT_TORSIONAL_FRICTION = 0.001
#: Facet distances below this fraction of the largest wrench norm are treated as 0 (the
#: joggle of ``QJ`` perturbs coordinates by about 1e-11 of their range).
_RELATIVE_TOLERANCE = 1e-9




def contact_wrenches(
    contacts: ArrayLike,
    normals: ArrayLike,
    center_of_mass: ArrayLike,
    mu: float = 0.3,
    num_cone_edges: int = DEFAULT_NUM_CONE_EDGES,
    torsional_friction: float = DEFAULT_TORSIONAL_FRICTION,
    torque_scale: float | None = None,
) -> NDArray[np.float64]:
    """Primitive soft-finger wrenches (force, torque / L) of every contact.

    :param contacts: (C, 3) contact points, m.
    :param normals: (C, 3) outward surface normals at the contacts (normalised here).
    :param center_of_mass: (3,) the object's centre of mass, m.
    :param mu: friction coefficient μ >= 0.
    :param num_cone_edges: edges m of each linearised friction cone, >= 3.
    :param torsional_friction: torsional moment per unit normal force γ, m, >= 0 (0 gives
        hard point contacts and no torsional wrenches).
    :param torque_scale: characteristic length L > 0 dividing the torques, m; default the
        largest distance of a contact from the centre of mass.
    :return: (C·(m + 2), 6) wrenches (C·m without torsion), rows (fx, fy, fz, τx, τy, τz).
    :raises ConfigError: on invalid μ, m, γ or L.
    :raises GeometryError: on wrong shapes, non-finite values or zero normals.
    """
    c = _vectors(contacts, "contacts")
    n = unit_vectors(normals, "normals")
    if len(c) != len(n) or len(c) == 0:
        raise GeometryError(
            f"contacts and normals must be (C, 3) arrays with the same C >= 1, "
            f"got {len(c)} and {len(n)}"
        )
    com = _vectors(center_of_mass, "center_of_mass")
    if len(com) != 1:
        raise GeometryError(f"center_of_mass must have shape (3,), got {np.shape(center_of_mass)}")
    gamma = _check_positive(torsional_friction, "torsional_friction", allow_zero=True)
    arm = c - com
    if torque_scale is None:
        scale = float(np.max(np.linalg.norm(arm, axis=1)))
        if scale <= 0.0:
            raise GeometryError(
                "torque_scale cannot default to the contacts' distance from the centre of "
                "mass: every contact coincides with it; pass torque_scale > 0"
            )
    else:
        scale = _check_positive(torque_scale, "torque_scale")
    forces = friction_cone_edges(n, mu, num_cone_edges)  # (C, m, 3)
    torques = np.cross(arm[:, None, :], forces) / scale
    parts = [np.concatenate([forces, torques], axis=2).reshape(-1, 6)]
    if gamma > 0.0:
        torsion = (gamma / scale) * n
        zeros = np.zeros_like(n)
        parts.append(np.concatenate([zeros, torsion], axis=1))
        parts.append(np.concatenate([zeros, -torsion], axis=1))
    return np.concatenate(parts, axis=0)


def _epsilon_of_wrenches(wrenches: NDArray[np.float64]) -> float:
    """Distance from the origin to the nearest facet of the wrenches' hull, or 0 outside."""
    try:
        hull = ConvexHull(wrenches, qhull_options="QJ")
    except (QhullError, ValueError):
        return 0.0
    # Facet planes a·x + b = 0 with unit a and a·x + b <= 0 inside: origin distance is −b.
    distances = -hull.equations[:, -1]
    eps = float(np.min(distances))
    tol = _RELATIVE_TOLERANCE * float(np.max(np.linalg.norm(wrenches, axis=1)))
    return eps if eps > tol else 0.0


def ferrari_canny_epsilon(
    contacts: ArrayLike,
    normals: ArrayLike,
    center_of_mass: ArrayLike,
    mu: float = 0.3,
    num_cone_edges: int = DEFAULT_NUM_CONE_EDGES,
    torsional_friction: float = DEFAULT_TORSIONAL_FRICTION,
    torque_scale: float | None = None,
) -> float:
    """Ferrari–Canny ε of one grasp with any number of soft-finger contacts.

    :param contacts: (C, 3) contact points, m.
    :param normals: (C, 3) outward surface normals at the contacts.
    :param center_of_mass: (3,) the object's centre of mass, m.
    :param mu: friction coefficient μ >= 0.
    :param num_cone_edges: edges of each linearised friction cone, >= 3.
    :param torsional_friction: torsional moment per unit normal force γ, m, >= 0.
    :param torque_scale: characteristic length L dividing the torques, m; default the largest
        distance of a contact from the centre of mass.
    :return: ε >= 0 (0 when the grasp is not in force closure).
    :raises ConfigError: on invalid μ, m, γ or L.
    :raises GeometryError: on wrong shapes, non-finite values or zero normals.
    """
    wrenches = contact_wrenches(
        contacts, normals, center_of_mass, mu, num_cone_edges, torsional_friction, torque_scale
    )
    return _epsilon_of_wrenches(wrenches)


def ferrari_canny_batch(
    c1: ArrayLike,
    n1: ArrayLike,
    c2: ArrayLike,
    n2: ArrayLike,
    center_of_mass: ArrayLike,
    mu: float = 0.3,
    num_cone_edges: int = DEFAULT_NUM_CONE_EDGES,
    torsional_friction: float = DEFAULT_TORSIONAL_FRICTION,
    torque_scale: float | None = None,
) -> NDArray[np.float64]:
    """Ferrari–Canny ε of N two-contact (parallel-jaw) grasps.

    Equal to calling :func:`ferrari_canny_epsilon` per grasp: the primitive wrenches of all
    grasps are built in one vectorised pass, then each grasp runs one 6-D Qhull (about
    0.4 ms). No grasp is skipped by the antipodal test: with torsion decoupled from the
    friction budget (Dex-Net's soft-finger model), a grasp slightly outside a friction cone
    can still have a small ε > 0.

    :param c1: (N, 3) first contacts, m.
    :param n1: (N, 3) outward normals at ``c1``.
    :param c2: (N, 3) second contacts, m.
    :param n2: (N, 3) outward normals at ``c2``.
    :param center_of_mass: (3,) the object's centre of mass, m.
    :param mu: friction coefficient μ >= 0.
    :param num_cone_edges: edges of each linearised friction cone, >= 3.
    :param torsional_friction: torsional moment per unit normal force γ, m, >= 0.
    :param torque_scale: characteristic length L dividing the torques, m; default per grasp,
        the larger distance of its two contacts from the centre of mass (pass the object's
        radius so that the ε of different grasps are comparable).
    :return: (N,) ε values >= 0.
    :raises ConfigError: on invalid μ, m, γ or L.
    :raises GeometryError: on wrong shapes, non-finite values, zero normals or mismatched N.
    """
    check_friction(mu)
    gamma = _check_positive(torsional_friction, "torsional_friction", allow_zero=True)
    p1, p2 = _vectors(c1, "c1"), _vectors(c2, "c2")
    u1, u2 = unit_vectors(n1, "n1"), unit_vectors(n2, "n2")
    com = _vectors(center_of_mass, "center_of_mass")
    if len(com) != 1:
        raise GeometryError(f"center_of_mass must have shape (3,), got {np.shape(center_of_mass)}")
    if not len(p1) == len(p2) == len(u1) == len(u2):
        raise GeometryError(
            f"c1, n1, c2, n2 must have the same length N, got "
            f"{sorted({len(p1), len(p2), len(u1), len(u2)})}"
        )
    closed = np.arange(len(p1))
    eps = np.zeros(len(p1))
    if closed.size == 0:
        return eps
    # All primitive wrenches at once (as contact_wrenches does per grasp), then one hull each.
    contacts = np.stack([p1[closed], p2[closed]], axis=1)  # (K, 2, 3)
    normals = np.stack([u1[closed], u2[closed]], axis=1)
    arm = contacts - com
    if torque_scale is None:
        scale = np.max(np.linalg.norm(arm, axis=2), axis=1)
        if np.any(scale <= 0.0):
            raise GeometryError(
                "torque_scale cannot default to the contacts' distance from the centre of "
                "mass where both contacts coincide with it; pass torque_scale > 0"
            )
    else:
        scale = np.full(len(closed), _check_positive(torque_scale, "torque_scale"))
    forces = friction_cone_edges(normals.reshape(-1, 3), mu, num_cone_edges)
    forces = forces.reshape(len(closed), 2, -1, 3)  # (K, 2, m, 3)
    torques = np.cross(arm[:, :, None, :], forces) / scale[:, None, None, None]
    parts = [np.concatenate([forces, torques], axis=3).reshape(len(closed), -1, 6)]
    if gamma > 0.0:
        torsion = (gamma / scale)[:, None, None] * normals
        zeros = np.zeros_like(normals)
        parts.append(np.concatenate([zeros, torsion], axis=2))
        parts.append(np.concatenate([zeros, -torsion], axis=2))
    wrenches = np.concatenate(parts, axis=1)
    for row, i in enumerate(closed):
        eps[i] = _epsilon_of_wrenches(wrenches[row])
    return eps
