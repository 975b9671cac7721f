"""Grasp distance D (GPR, Eq. 1) and greedy grasp non-maximum suppression.

D(g1, g2) = β1·||o1 - o2|| + β2·arccos(|r1·r2|)/π + β3·arccos(n1·n2)/π

with o the grasp centre (the contact midpoint (c1 + c2)/2), r the closing direction and n the
approach direction (see :mod:`gpr_ros.core.grasp.grasps`). The paper's Eq. 1 writes γ for the
closing direction; it means r. The absolute value makes D invariant to r → -r. The angles are
evaluated as atan2(|a x b|, a·b), which equals arccos(a·b) for unit vectors (so no clipping of
the dot products is needed) and stays accurate near 0 and π. The paper uses
β = (1, 0.03, 0.03): one centimetre of centre offset weighs as much as 0.01/0.03·180° = 60°
of rotation about either axis.

D is used both for pruning annotations (Sec. IV-A) and for NMS of stage-1 proposals
(Sec. V-B), and as the pose accuracy measure of Table II.

:func:`grasp_nms` runs a compiled kernel (:func:`~gpr_ros.core.kernels.grasp_nms_kernel`: a
uniform grid of the centres with cells of edge threshold / β1, D evaluated pair by pair with
the float64 operations of :func:`_distance`) when :mod:`numba` imports, and
:func:`numpy_grasp_nms` (a KD-tree and a Python loop over the kept grasps) otherwise. They keep
the same grasps: a pair whose D (or squared centre distance, against (threshold / β1)²) is
within rounding error of the threshold, where numpy's vectorised arctan2 could round the other
way, makes the kernel hand the whole call to :func:`numpy_grasp_nms`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from gpr_ros.core.errors import ConfigError, GeometryError
from gpr_ros.core.grasp.grasps import Grasps
from gpr_ros.core.kernels import NUMBA_AVAILABLE, grasp_nms_kernel

__all__ = [
    "DEFAULT_BETA",
    "DEFAULT_NMS_THRESHOLD",
    "grasp_distance",
    "grasp_nms",
    "numpy_grasp_nms",
    "pairwise_grasp_distance",
]

#: The paper's weights (β1 per metre, β2, β3).
DEFAULT_BETA = (1.0, 0.03, 0.03)
#: Default NMS threshold on D; a tunable, not a value from the paper (with the default β it
#: corresponds to 2 cm of centre offset, or 120° of rotation, or a mix).
DEFAULT_NMS_THRESHOLD = 0.02


def _check_beta(beta: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(b) for b in beta)
    if len(values) != 3 or not all(np.isfinite(v) and v >= 0.0 for v in values):
        raise ConfigError(
            f"beta must be three finite weights >= 0 (beta1, beta2, beta3), got {tuple(beta)}"
        )
    return values[0], values[1], values[2]


def _angle_terms(
    n1: NDArray[np.float64],
    r1: NDArray[np.float64],
    n2: NDArray[np.float64],
    r2: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Angles arccos(|r1·r2|) and arccos(n1·n2) of broadcast unit vectors (last axis xyz).

    Evaluated as atan2(|a x b|, a·b): equal to arccos(a·b) for unit vectors, but accurate
    near 0 and π, where arccos loses half the digits (so D(g, g) is exactly 0).
    """
    closing = np.arctan2(_cross_norm(r1, r2), np.abs(np.sum(r1 * r2, axis=-1)))
    approach = np.arctan2(_cross_norm(n1, n2), np.sum(n1 * n2, axis=-1))
    return closing, approach


def _cross_norm(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Return |a x b| over the last axis (np.cross is slow per call, and NMS calls often)."""
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    result: NDArray[np.float64] = np.sqrt(
        (ay * bz - az * by) ** 2 + (az * bx - ax * bz) ** 2 + (ax * by - ay * bx) ** 2
    )
    return result


def _distance(
    c1: NDArray[np.float64],
    n1: NDArray[np.float64],
    r1: NDArray[np.float64],
    c2: NDArray[np.float64],
    n2: NDArray[np.float64],
    r2: NDArray[np.float64],
    beta: tuple[float, float, float],
) -> NDArray[np.float64]:
    """Evaluate D on broadcast arrays of centres and directions (last axis = xyz)."""
    centre = np.linalg.norm(c1 - c2, axis=-1)
    closing, approach = _angle_terms(n1, r1, n2, r2)
    result: NDArray[np.float64] = (
        beta[0] * centre + (beta[1] / np.pi) * closing + (beta[2] / np.pi) * approach
    )
    return result


def grasp_distance(
    g1: Grasps, g2: Grasps, beta: Sequence[float] = DEFAULT_BETA
) -> NDArray[np.float64]:
    """Elementwise grasp distance D(g1[i], g2[i]) (Eq. 1).

    :param g1: N grasps (or 1, broadcast against ``g2``).
    :param g2: N grasps (or 1, broadcast against ``g1``).
    :param beta: weights (β1 per metre, β2, β3).
    :return: (N,) distances, >= 0.
    :raises GeometryError: if the lengths differ and neither is 1.
    :raises ConfigError: on invalid weights.
    """
    b = _check_beta(beta)
    if len(g1) != len(g2) and 1 not in (len(g1), len(g2)):
        raise GeometryError(
            f"grasp_distance needs grasp sets of equal length or of length 1, "
            f"got {len(g1)} and {len(g2)}"
        )
    return _distance(
        g1.center, g1.approach, g1.closing, g2.center, g2.approach, g2.closing, b
    )


def pairwise_grasp_distance(
    a: Grasps, b: Grasps, beta: Sequence[float] = DEFAULT_BETA
) -> NDArray[np.float64]:
    """All-pairs grasp distance D(a[i], b[j]).

    Memory: a few N·M·3 float64 temporaries.

    :param a: N grasps.
    :param b: M grasps.
    :param beta: weights (β1 per metre, β2, β3).
    :return: (N, M) distances.
    :raises ConfigError: on invalid weights.
    """
    w = _check_beta(beta)
    return _distance(
        a.center[:, None, :],
        a.approach[:, None, :],
        a.closing[:, None, :],
        b.center[None, :, :],
        b.approach[None, :, :],
        b.closing[None, :, :],
        w,
    )


def _nms_arguments(
    grasps: Grasps, threshold: float, beta: Sequence[float], max_keep: int | None
) -> tuple[tuple[float, float, float], float, int]:
    """Validated ``(beta, threshold, limit)`` of :func:`grasp_nms`."""
    b = _check_beta(beta)
    thr = float(threshold)
    if not np.isfinite(thr) or thr < 0.0:
        raise ConfigError(f"threshold must be a finite value >= 0, got {threshold}")
    if max_keep is not None and (int(max_keep) != max_keep or max_keep < 0):
        raise ConfigError(f"max_keep must be None or an integer >= 0, got {max_keep}")
    limit = len(grasps) if max_keep is None else min(int(max_keep), len(grasps))
    return b, thr, limit


def grasp_nms(
    grasps: Grasps,
    threshold: float = DEFAULT_NMS_THRESHOLD,
    beta: Sequence[float] = DEFAULT_BETA,
    max_keep: int | None = None,
) -> NDArray[np.int64]:
    """Greedy non-maximum suppression with the grasp distance D.

    Grasps are visited by descending score (ties: lower index first). A visited grasp that is
    not suppressed is kept, and every grasp with D < ``threshold`` to it is suppressed.

    Since D >= β1·||o1 - o2||, only grasps with centres within ``threshold / β1`` can be
    suppressed; with β1 > 0 they are found on a grid (numba) or with a KD-tree
    (:func:`numpy_grasp_nms`), so the cost is about (kept grasps) x (neighbours within that
    radius). With β1 = 0 each kept grasp is compared with every remaining candidate
    (O(kept · N)). Both implementations return the same indices.

    :param grasps: the candidates.
    :param threshold: suppression threshold on D (see :data:`DEFAULT_NMS_THRESHOLD`).
    :param beta: weights (β1 per metre, β2, β3).
    :param max_keep: stop after keeping this many grasps (``None``: no limit).
    :return: int64 indices into ``grasps`` of the kept grasps, best first.
    :raises ConfigError: on a negative or non-finite threshold, invalid weights or a negative
        ``max_keep``.
    """
    b, thr, limit = _nms_arguments(grasps, threshold, beta, max_keep)
    if limit == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-grasps.score, kind="stable")
    if NUMBA_AVAILABLE:
        g = np.concatenate([grasps.center, grasps.approach, grasps.closing], axis=1)
        keep, decided = grasp_nms_kernel(
            g, order.astype(np.int64, copy=False), limit, thr, b[0], b[1] / np.pi, b[2] / np.pi
        )
        if decided:
            return keep
    return _numpy_nms(grasps, order, thr, b, limit)


def numpy_grasp_nms(
    grasps: Grasps,
    threshold: float = DEFAULT_NMS_THRESHOLD,
    beta: Sequence[float] = DEFAULT_BETA,
    max_keep: int | None = None,
) -> NDArray[np.int64]:
    """:func:`grasp_nms` with a KD-tree and numpy (the fallback without numba).

    :param grasps: the candidates.
    :param threshold: suppression threshold on D.
    :param beta: weights (β1 per metre, β2, β3).
    :param max_keep: stop after keeping this many grasps (``None``: no limit).
    :return: the same as :func:`grasp_nms`.
    :raises ConfigError: as :func:`grasp_nms`.
    """
    b, thr, limit = _nms_arguments(grasps, threshold, beta, max_keep)
    if limit == 0:
        return np.zeros(0, dtype=np.int64)
    return _numpy_nms(grasps, np.argsort(-grasps.score, kind="stable"), thr, b, limit)


def _numpy_nms(
    grasps: Grasps,
    order: NDArray[np.intp],
    thr: float,
    b: tuple[float, float, float],
    limit: int,
) -> NDArray[np.int64]:
    """Greedy NMS loop of :func:`numpy_grasp_nms` on validated arguments (``limit`` >= 1)."""
    centers, approach, closing = grasps.center, grasps.approach, grasps.closing
    suppressed = np.zeros(len(grasps), dtype=bool)
    tree = cKDTree(centers) if b[0] > 0.0 else None
    radius = thr / b[0] if b[0] > 0.0 else np.inf
    keep: list[int] = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        if len(keep) >= limit:
            break
        if tree is not None:
            candidates = np.asarray(
                tree.query_ball_point(centers[i], r=radius, return_sorted=False), dtype=np.intp
            )
        else:
            candidates = np.arange(len(grasps))
        candidates = candidates[~suppressed[candidates]]
        if len(candidates) <= 1:  # only grasp i itself
            continue
        dist = _distance(
            centers[i],
            approach[i],
            closing[i],
            centers[candidates],
            approach[candidates],
            closing[candidates],
            b,
        )
        suppressed[candidates[dist < thr]] = True
    return np.asarray(keep, dtype=np.int64)
