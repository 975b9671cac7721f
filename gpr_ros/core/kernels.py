"""Numba kernels of the CPU hot spots: ball query, 3-NN and grasp NMS on a uniform grid, the
stage-2 crop (with PyTorch's CPU random numbers computed in the kernel: MT19937, the
numbers ``torch.rand`` draws), and the gripper collision tests of dataset generation (the
swept gripper against a scene, :func:`swept_collision_kernel`, and against its own object for
every approach about a closing axis, :func:`approach_collision_kernel`).

The collision kernels answer exactly as the numpy paths they replace (a test compares them,
with points on the boxes' faces): the same float64 and float32 operations in the same order,
each point tested on its own instead of through (grasps × points) temporaries, and a grasp
stops at its first point inside. On a 2-core AVX2 VM they took scene labelling from 6.9 to
0.2 s per scene and the per-object annotation's approach test from 2–6.5 s to 0.07–0.4 s,
and datasets generated with them are byte-identical to those made before (90 scenes and 30
annotations compared). The order of a 3-term dot product is part of "the same operations":
``np.einsum`` sums ``"cpk,ck->cp"`` as ``(x·x' + z·z') + y·y'`` but ``"kji,kj->ki"`` left to
right on the machine measured, and the kernels copy each (another CPU's numpy may order them
otherwise: a last-bit difference that flips a decision only for a point on a box face).

:func:`~gpr_ros.core.network.sampling.ball_query`, :func:`~gpr_ros.core.network.sampling.three_nn`
and :func:`~gpr_ros.core.grasp.distance.grasp_nms` call these kernels when :mod:`numba` imports
(:data:`NUMBA_AVAILABLE`), and their scipy cKDTree / numpy implementations otherwise. The
kernels return exactly what those implementations return (same indices, same order, same
distances): they evaluate every distance with the same float64 operations in the same order
((dx² + dy²) + dz², from float32 input converted to float64 as cKDTree does), and where the
other implementation could decide differently they say so and the caller redoes that part the
old way:

- cKDTree prunes its nodes with distances to bounding boxes that it updates incrementally, so
  its decision on a point whose squared distance is within a rounding error of the bound
  (r² of a ball, the current k-th distance of a k-NN query) is not the plain comparison. Such
  near-ties (squared distances within ``1e-12·(r² + s²)``, s the diagonal of the data's and
  queries' bounding box, far above the ~1e-14·s² of the tracking) are flagged, as are exact
  ties among the k nearest, whose order depends on cKDTree's heap.
- numpy's arctan2 may use vectorised (SVML) code whose last bit differs from the C library's
  atan2 used here, so a grasp distance D within ``1e-12`` (relative to its angle terms) of the
  NMS threshold is flagged too.

Both cases essentially never happen on real data (a squared distance would have to equal r² to
twelve digits), so the fallback costs nothing in practice; the tests force them with quantised
coordinates.

Spatial index: a uniform grid over the bounding box of the data, cells sorted by a counting
sort (stable, so each cell lists its points in ascending index order), the cell edge the query
radius or larger (at most ``8·N + 64`` cells). Cell indices are ``floor((x - lo) / cell)``, a
monotone function of x, so the cells whose index range covers ``[q - h, q + h]`` contain every
point within h of q, whatever the rounding.

Compilation: the kernels are ``numba.njit(cache=True, nogil=True)`` and compile on their
first call (about 4 s for all three, once per machine); the compiled code is cached in
``__pycache__`` next to this file, or, where that is read-only (an installed package), in
numba's per-user cache directory (``$XDG_CACHE_HOME/numba`` or ``~/.cache/numba``;
``NUMBA_CACHE_DIR`` overrides both), and then loads in ~0.2 s per process; with no writable
directory at all the kernels compile in every process. All helpers live in this one module
because numba only notices changes to the file of a cached function itself, not to the
functions it calls from other files.
"""

from __future__ import annotations

from collections.abc import Callable
import math
from typing import Any, TypeVar, cast

import numpy as np
from numpy.typing import NDArray

try:  # pragma: no cover - depends on the environment
    import numba as _numba
except ImportError:  # pragma: no cover
    _numba = None  # type: ignore[assignment]

__all__ = [
    "approach_collision_kernel",
    "NUMBA_AVAILABLE",
    "ball_query_kernel",
    "compile_kernels",
    "crop_kernel",
    "crop_mt_kernel",
    "grasp_nms_kernel",
    "mt19937_uniform_kernel",
    "swept_collision_kernel",
    "three_nn_kernel",
]

#: True when numba imports and the kernels are compiled; else the callers use cKDTree / numpy.
NUMBA_AVAILABLE = _numba is not None

#: Relative margin of the near-tie tests (see the module docstring).
TIE_TOLERANCE = 1e-12
#: Grid cells per known point of the 3-NN search (at most): on the surface-like clouds of a
#: scene most cells are empty, and 8 was fastest there (0.8 ms vs 1.6 ms with 1 for 4,096
#: queries into 1,024 points; about equal on a uniformly filled cube).
KNN_CELLS_PER_POINT = 8

_F = TypeVar("_F", bound=Callable[..., Any])


def _njit(func: _F) -> _F:
    """``numba.njit(cache=True, nogil=True)``, or the plain function without numba.

    ``nogil``: the kernels touch no Python object, so they release the GIL as cKDTree's
    queries did (other threads of a node keep running).

    Without numba the kernels stay plain Python (correct but slow); callers only use them
    when :data:`NUMBA_AVAILABLE` is true. Where numba finds no writable cache directory (it
    raises at decoration time) the kernel is compiled without a cache, in every process.

    :param func: the kernel.
    :return: the compiled kernel (or ``func``).
    """
    if _numba is None:  # pragma: no cover
        return func
    try:
        compiled = _numba.njit(cache=True, nogil=True)(func)
    except RuntimeError:  # no writable cache directory anywhere: compile in every process
        compiled = _numba.njit(nogil=True)(func)
    return cast(_F, compiled)


# --------------------------------------------------------------------------- uniform grid


@_njit
def _bounds(points: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64], bool]:
    """Per-axis minimum and maximum of (N, 3) points (N >= 1), and whether all are finite."""
    lo = points[0].copy()
    hi = points[0].copy()
    finite = True
    for i in range(points.shape[0]):
        for a in range(3):
            v = points[i, a]
            if not math.isfinite(v):
                finite = False
            if v < lo[a]:
                lo[a] = v
            if v > hi[a]:
                hi[a] = v
    return lo, hi, finite


@_njit
def _joint_bounds(
    grid: NDArray[np.float64], queries: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64],
           NDArray[np.float64], bool]:
    """Bounds of a gridded point set and of its queries, and whether both are finite.

    :return: ``(lo, hi, qlo, qhi, finite)``; without queries their bounds are the grid's.
    """
    lo, hi, finite = _bounds(grid)
    if queries.shape[0] == 0:
        return lo, hi, lo, hi, finite
    qlo, qhi, qfinite = _bounds(queries)
    return lo, hi, qlo, qhi, finite and qfinite


@_njit
def _squared_span(
    lo1: NDArray[np.float64], hi1: NDArray[np.float64],
    lo2: NDArray[np.float64], hi2: NDArray[np.float64],
) -> float:
    """Squared diagonal of the union of two bounding boxes."""
    s = 0.0
    for a in range(3):
        e = max(hi1[a], hi2[a]) - min(lo1[a], lo2[a])
        s += e * e
    return s


@_njit
def _grid_shape(
    lo: NDArray[np.float64], hi: NDArray[np.float64], cell: float, max_cells: int
) -> tuple[float, int, int, int]:
    """Cell edge (>= ``cell``) and cell counts so that the grid has at most ``max_cells``."""
    ext = hi - lo
    big = max(ext[0], max(ext[1], ext[2]))
    cell = max(cell, big / max_cells, 1e-300)
    while (ext[0] / cell + 1.0) * (ext[1] / cell + 1.0) * (ext[2] / cell + 1.0) > max_cells:
        cell *= 1.2
    return cell, int(ext[0] / cell) + 1, int(ext[1] / cell) + 1, int(ext[2] / cell) + 1


@_njit
def _cell_of(v: float, lo: float, cell: float, dim: int) -> int:
    """Cell index of a coordinate of a grid point (``lo <= v <= hi``)."""
    c = int((v - lo) / cell)
    return min(max(c, 0), dim - 1)


@_njit
def _cell_range(q: float, h: float, lo: float, cell: float, dim: int) -> tuple[int, int]:
    """Cells ``[first, last]`` holding every grid point with coordinate in [q - h, q + h].

    ``last < first`` when the interval misses the grid.
    """
    a = (q - h - lo) / cell
    b = (q + h - lo) / cell
    if not b >= 0.0 or not a < dim:
        return 0, -1
    first = 0 if a < 0.0 else int(a)
    last = dim - 1 if b >= dim else int(b)
    return first, last


@_njit
def _grid_sort(
    points: NDArray[np.float64], lo: NDArray[np.float64], cell: float, nx: int, ny: int, nz: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Counting sort of the points by cell ``(ix·ny + iy)·nz + iz``.

    :return: ``(start, order, sorted_points)``: cell c holds ``order[start[c]:start[c + 1]]``
        in ascending index order; ``sorted_points[k] = points[order[k]]``.
    """
    n = points.shape[0]
    key = np.empty(n, np.int64)
    start = np.zeros(nx * ny * nz + 1, np.int64)
    for i in range(n):
        ix = _cell_of(points[i, 0], lo[0], cell, nx)
        iy = _cell_of(points[i, 1], lo[1], cell, ny)
        iz = _cell_of(points[i, 2], lo[2], cell, nz)
        k = (ix * ny + iy) * nz + iz
        key[i] = k
        start[k + 1] += 1
    for c in range(nx * ny * nz):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    order = np.empty(n, np.int64)
    sorted_points = np.empty((n, 3), np.float64)
    for i in range(n):
        p = fill[key[i]]
        fill[key[i]] += 1
        order[p] = i
        sorted_points[p, 0] = points[i, 0]
        sorted_points[p, 1] = points[i, 1]
        sorted_points[p, 2] = points[i, 2]
    return start, order, sorted_points


# --------------------------------------------------------------------------- ball query


@_njit
def ball_query_kernel(
    points: NDArray[np.float64], centers: NDArray[np.float64], radius: float, nsample: int
) -> tuple[NDArray[np.int64], NDArray[np.int8]]:
    """PointNet++ ball query: the ``nsample`` smallest indices with d² <= radius².

    d² = ((px - cx)² + (py - cy)²) + (pz - cz)² in float64, compared with ``radius * radius``
    as cKDTree does.

    :param points: (N, 3) float64 points, N >= 1.
    :param centers: (M, 3) float64 centres.
    :param radius: ball radius, finite and >= 0.
    :param nsample: neighbours per centre, >= 1.
    :return: ``(index (M, nsample), status (M,))``. Rows with status 0 hold the indices in
        ascending order padded by repeating the first; status 1 (a point within the near-tie
        margin of the sphere), 2 (no point in the ball) or 3 (non-finite input: every row) is
        left to the caller.
    """
    n = points.shape[0]
    m = centers.shape[0]
    out = np.zeros((m, nsample), np.int64)
    status = np.zeros(m, np.int8)
    lo, hi, clo, chi, finite = _joint_bounds(points, centers)
    if not finite:
        status[:] = 3
        return out, status
    r2 = radius * radius
    tol = TIE_TOLERANCE * (r2 + _squared_span(lo, hi, clo, chi))
    h = math.sqrt(r2 + tol) * (1.0 + 1e-6)
    cell, nx, ny, nz = _grid_shape(lo, hi, radius, 8 * n + 64)
    start, order, spts = _grid_sort(points, lo, cell, nx, ny, nz)
    row = np.empty(nsample, np.int64)
    for c in range(m):
        cx, cy, cz = centers[c, 0], centers[c, 1], centers[c, 2]
        x0, x1 = _cell_range(cx, h, lo[0], cell, nx)
        y0, y1 = _cell_range(cy, h, lo[1], cell, ny)
        z0, z1 = _cell_range(cz, h, lo[2], cell, nz)
        count = 0
        near_tie = False
        if z0 <= z1:
            for ix in range(x0, x1 + 1):
                for iy in range(y0, y1 + 1):
                    base = (ix * ny + iy) * nz
                    for k in range(start[base + z0], start[base + z1 + 1]):
                        j = order[k]
                        if count == nsample and j > row[nsample - 1]:
                            continue  # cannot be among the nsample smallest indices
                        dx = spts[k, 0] - cx
                        dy = spts[k, 1] - cy
                        dz = spts[k, 2] - cz
                        d2 = dx * dx + dy * dy + dz * dz
                        if abs(d2 - r2) <= tol:
                            near_tie = True
                        if d2 <= r2:
                            pos = count
                            if count < nsample:
                                count += 1
                            else:
                                pos = nsample - 1
                            while pos > 0 and row[pos - 1] > j:
                                row[pos] = row[pos - 1]
                                pos -= 1
                            row[pos] = j
        if count == 0:
            status[c] = 2
            continue
        if near_tie:
            status[c] = 1
        for s in range(nsample):
            out[c, s] = row[s] if s < count else row[0]
    return out, status


# --------------------------------------------------------------------------- 3-NN


@_njit
def _knn_scan(
    spts: NDArray[np.float64], order: NDArray[np.int64], first: int, last: int,
    px: float, py: float, pz: float,
    best_d: NDArray[np.float64], best_i: NDArray[np.int64], count: int,
) -> int:
    """Insert grid points ``first:last`` into the sorted 4 nearest; return their count."""
    for k in range(first, last):
        dx = spts[k, 0] - px
        dy = spts[k, 1] - py
        dz = spts[k, 2] - pz
        d2 = dx * dx + dy * dy + dz * dz
        if count == 4 and not d2 < best_d[3]:
            continue
        pos = count
        if count < 4:
            count += 1
        else:
            pos = 3
        while pos > 0 and best_d[pos - 1] > d2:
            best_d[pos] = best_d[pos - 1]
            best_i[pos] = best_i[pos - 1]
            pos -= 1
        best_d[pos] = d2
        best_i[pos] = order[k]
    return count


@_njit
def _side_gap(p: float, lo: float, cell: float, c: int, s: int, dim: int) -> float:
    """Distance along one axis from p to the cells beyond ``[c - s, c + s]`` (inf: none)."""
    gap = np.inf
    if c - s > 0:
        gap = p - (lo + (c - s) * cell)
    if c + s < dim - 1:
        gap = min(gap, (lo + (c + s + 1) * cell) - p)
    return gap


@_njit
def three_nn_kernel(
    points: NDArray[np.float64], known: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int8]]:
    """Three nearest known points of every point, sorted by distance.

    :param points: (N, 3) float64 query points.
    :param known: (M, 3) float64 points, M >= 4 (the fourth nearest decides near-ties).
    :return: ``(index (N, 3), distance (N, 3), status (N,))``; distances are
        sqrt(((dx² + dy²) + dz²)). Status 1 (exact tie among the three nearest, or third and
        fourth within the near-tie margin) or 3 (non-finite input: every row) is left to the
        caller.
    """
    nq = points.shape[0]
    m = known.shape[0]
    idx = np.zeros((nq, 3), np.int64)
    dist = np.zeros((nq, 3), np.float64)
    status = np.zeros(nq, np.int8)
    lo, hi, qlo, qhi, finite = _joint_bounds(known, points)
    if not finite:
        status[:] = 3
        return idx, dist, status
    span2 = _squared_span(lo, hi, qlo, qhi)
    margin = 1e-9 * math.sqrt(span2)
    cell, nx, ny, nz = _grid_shape(lo, hi, 0.0, KNN_CELLS_PER_POINT * m)
    margin += 1e-9 * cell
    start, order, spts = _grid_sort(known, lo, cell, nx, ny, nz)
    best_d = np.empty(4, np.float64)
    best_i = np.empty(4, np.int64)
    for q in range(nq):
        px, py, pz = points[q, 0], points[q, 1], points[q, 2]
        cx = int(min(max(math.floor((px - lo[0]) / cell), 0.0), nx - 1.0))
        cy = int(min(max(math.floor((py - lo[1]) / cell), 0.0), ny - 1.0))
        cz = int(min(max(math.floor((pz - lo[2]) / cell), 0.0), nz - 1.0))
        count = 0
        s = 1
        while True:
            # s = 1: the 3 x 3 x 3 block around cell c (contiguous runs along z); s > 1: the
            # cells at Chebyshev distance s from c
            z0 = max(cz - s, 0)
            z1 = min(cz + s, nz - 1)
            for ix in range(max(cx - s, 0), min(cx + s, nx - 1) + 1):
                edge_x = s == 1 or ix == cx - s or ix == cx + s
                for iy in range(max(cy - s, 0), min(cy + s, ny - 1) + 1):
                    base = (ix * ny + iy) * nz
                    if edge_x or iy == cy - s or iy == cy + s:
                        count = _knn_scan(spts, order, start[base + z0], start[base + z1 + 1],
                                          px, py, pz, best_d, best_i, count)
                    else:
                        if cz - s >= 0:
                            count = _knn_scan(spts, order, start[base + cz - s],
                                              start[base + cz - s + 1], px, py, pz,
                                              best_d, best_i, count)
                        if cz + s < nz:
                            count = _knn_scan(spts, order, start[base + cz + s],
                                              start[base + cz + s + 1], px, py, pz,
                                              best_d, best_i, count)
            # distance from the query to the cells not visited yet
            gap = min(_side_gap(px, lo[0], cell, cx, s, nx),
                      _side_gap(py, lo[1], cell, cy, s, ny),
                      _side_gap(pz, lo[2], cell, cz, s, nz))
            if gap == np.inf:
                break  # the whole grid is visited
            gap -= margin
            if count == 4 and gap > 0.0 and best_d[3] < gap * gap:
                break
            s += 1
        tol = TIE_TOLERANCE * (span2 + best_d[3])
        if best_d[0] == best_d[1] or best_d[1] == best_d[2] or best_d[3] - best_d[2] <= tol:
            status[q] = 1
        for t in range(3):
            idx[q, t] = best_i[t]
            dist[q, t] = math.sqrt(best_d[t])
    return idx, dist, status


# --------------------------------------------------------------------------- swept gripper


@_njit
def swept_collision_kernel(
    points: NDArray[np.float64],
    centers: NDArray[np.float64],
    rotations: NDArray[np.float64],
    half_open: NDArray[np.float64],
    dims: NDArray[np.float64],
) -> tuple[NDArray[np.bool_], bool]:
    """Whether any point lies inside each grasp's gripper body swept back along its approach.

    The test of each point is :func:`~gpr_ros.core.grasp.gripper.in_swept_body` on the
    point's grasp-frame coordinates ``local_i = (R[0, i]·d0 + R[1, i]·d1) + R[2, i]·d2``,
    d = p − c: the same float64 operations in the same order as the numpy path of
    :func:`~gpr_ros.core.dataset.labels.swept_gripper_collisions` (``np.einsum`` over a KD-tree's
    candidates), so the answers are the same. Candidates come from the grid cells overlapping
    the axis-aligned box around the swept body (a superset of the points that can be inside:
    1e-6 m of margin), and a grasp stops at its first point inside.

    :param points: (P, 3) obstacle points, P >= 1.
    :param centers: (N, 3) grasp centres.
    :param rotations: (N, 3, 3) grasp rotations (columns: approach, closing, their cross).
    :param half_open: (N,) half the finger opening, m.
    :param dims: ``[finger_depth, palm_depth, finger_thickness, max_width, finger_height,
        palm_height, sweep]``, m.
    :return: ``(hit (N,), finite)``; with non-finite input nothing is tested (``finite``
        false) and the caller decides.
    """
    n = centers.shape[0]
    hit = np.zeros(n, np.bool_)
    lo, hi, qlo, qhi, finite = _joint_bounds(points, centers)
    if not finite:
        return hit, False
    for i in range(n):
        if not math.isfinite(half_open[i]):
            finite = False
        for a in range(3):
            for b in range(3):
                if not math.isfinite(rotations[i, a, b]):
                    finite = False
    if not finite:
        return hit, False
    fd, pd, t, max_width, fh, ph, sweep = (
        dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6])
    finger_x_min = -fd - sweep
    palm_x_min = -fd - pd - sweep
    finger_z = 0.5 * fh
    palm_z = 0.5 * ph
    # the swept body's bounding box in the grasp frame
    box_hx = 0.5 * (fd + pd + sweep)
    box_cx = -box_hx
    box_hy = 0.5 * max_width + t
    box_hz = 0.5 * max(fh, ph)
    cell, nx, ny, nz = _grid_shape(lo, hi, 0.01, 8 * points.shape[0] + 64)
    start, order, spts = _grid_sort(points, lo, cell, nx, ny, nz)
    for g in range(n):
        half = half_open[g]
        finger_y_max = half + t
        palm_y = max(half, 0.5 * max_width) + t
        r = rotations[g]
        ranges = np.empty((3, 2), np.int64)
        empty = False
        for a in range(3):
            q = centers[g, a] + r[a, 0] * box_cx
            h = abs(r[a, 0]) * box_hx + abs(r[a, 1]) * box_hy + abs(r[a, 2]) * box_hz + 1e-6
            dim = nx if a == 0 else (ny if a == 1 else nz)
            first, last = _cell_range(q, h, lo[a], cell, dim)
            if last < first:
                empty = True
            ranges[a, 0] = first
            ranges[a, 1] = last
        if empty:
            continue
        cx, cy, cz = centers[g, 0], centers[g, 1], centers[g, 2]
        found = False
        for ix in range(ranges[0, 0], ranges[0, 1] + 1):
            for iy in range(ranges[1, 0], ranges[1, 1] + 1):
                base = (ix * ny + iy) * nz
                for k in range(start[base + ranges[2, 0]], start[base + ranges[2, 1] + 1]):
                    d0 = spts[k, 0] - cx
                    d1 = spts[k, 1] - cy
                    d2 = spts[k, 2] - cz
                    x = (r[0, 0] * d0 + r[1, 0] * d1) + r[2, 0] * d2
                    if not (x < 0.0 and x > palm_x_min):
                        continue
                    abs_y = abs((r[0, 1] * d0 + r[1, 1] * d1) + r[2, 1] * d2)
                    abs_z = abs((r[0, 2] * d0 + r[1, 2] * d1) + r[2, 2] * d2)
                    fingers = (abs_y > half and abs_y < finger_y_max and x > finger_x_min
                               and abs_z < finger_z)
                    palm = abs_y < palm_y and x < -fd and abs_z < palm_z
                    if fingers or palm:
                        found = True
                        break
                if found:
                    break
            if found:
                break
        hit[g] = found
    return hit, True


@_njit
def approach_collision_kernel(
    points: NDArray[np.float64],
    centers: NDArray[np.float64],
    closing: NDArray[np.float64],
    u: NDArray[np.float64],
    v: NDArray[np.float64],
    half_open: NDArray[np.float64],
    y_max: NDArray[np.float64],
    radius_sq: float,
    cos_phase: NDArray[np.float32],
    sin_phase: NDArray[np.float32],
    consts: NDArray[np.float32],
) -> NDArray[np.bool_]:
    """Collisions of C grasp candidates × A approaches about their closing axes (annotation).

    The numba form of the numpy path of
    :func:`~gpr_ros.core.dataset.annotation._approach_collisions`, with its operations: the
    float64 dot products of p − c with r, u and v summed as ``(x·x' + z·z') + y·y'`` (the
    order ``np.einsum("cpk,ck->cp")`` uses on the development machines), the near-point test
    in float64, then the per-approach tests in float32 with the float32 constants numpy
    compares with (NEP 50). Each point is tested against every approach not yet found in
    collision, without (c, P) temporaries.

    :param points: (P, 3) obstacle points in the object frame.
    :param centers: (C, 3) candidate centres.
    :param closing: (C, 3) closing axes r; ``u``, ``v``: (C, 3) their tangent bases.
    :param half_open: (C,) half the finger opening.
    :param y_max: (C,) the near test's bound on |y|.
    :param radius_sq: the near test's bound on a² + b².
    :param cos_phase: (C, A) float32 cos φ; ``sin_phase`` the same for sin φ.
    :param consts: float32 ``[t, max_width / 2, −fd − sweep, −fd, −fd − pd − sweep,
        finger_height / 2, palm_height / 2]``.
    :return: (C, A) true where the swept gripper holds a point.
    """
    n_cand = centers.shape[0]
    n_app = cos_phase.shape[1]
    collides = np.zeros((n_cand, n_app), np.bool_)
    t = consts[0]
    half_mw = consts[1]
    finger_x_min = consts[2]
    palm_x_max = consts[3]
    palm_x_min = consts[4]
    finger_z = consts[5]
    palm_z = consts[6]
    zero = np.float32(0.0)
    for c in range(n_cand):
        cx, cy, cz = centers[c, 0], centers[c, 1], centers[c, 2]
        r0, r1, r2 = closing[c, 0], closing[c, 1], closing[c, 2]
        u0, u1, u2 = u[c, 0], u[c, 1], u[c, 2]
        v0, v1, v2 = v[c, 0], v[c, 1], v[c, 2]
        ym = y_max[c]
        half_k = np.float32(half_open[c])
        finger_y = half_k + t
        palm_y = max(half_k, half_mw) + t
        left = n_app
        for p in range(points.shape[0]):
            dx = points[p, 0] - cx
            dy = points[p, 1] - cy
            dz = points[p, 2] - cz
            y = (dx * r0 + dz * r2) + dy * r1
            if not abs(y) < ym:
                continue
            a = (dx * u0 + dz * u2) + dy * u1
            b = (dx * v0 + dz * v2) + dy * v1
            if not a * a + b * b < radius_sq:
                continue
            a_k = np.float32(a)
            b_k = np.float32(b)
            abs_y = np.float32(abs(y))
            finger_band = abs_y > half_k and abs_y < finger_y
            palm_band = abs_y < palm_y
            if not (finger_band or palm_band):
                continue
            for j in range(n_app):
                if collides[c, j]:
                    continue
                cos_p = cos_phase[c, j]
                sin_p = sin_phase[c, j]
                x = a_k * cos_p + b_k * sin_p
                abs_z = abs(b_k * cos_p - a_k * sin_p)
                if ((finger_band and x < zero and x > finger_x_min and abs_z < finger_z)
                        or (palm_band and x < palm_x_max and x > palm_x_min
                            and abs_z < palm_z)):
                    collides[c, j] = True
                    left -= 1
            if left == 0:
                break
    return collides


# --------------------------------------------------------------------------- grasp NMS


@_njit
def _grasp_pair_distance(
    g: NDArray[np.float64], i: int, j: int, d2: float, b0: float, w1: float, w2: float
) -> tuple[float, float]:
    """Grasp distance D of rows i (kept) and j, and its angle terms' sum.

    Same float64 operations as :func:`gpr_ros.core.grasp.distance._distance` with grasp i as
    the first argument; columns of ``g``: centre 0-2, approach n 3-5, closing r 6-8.
    """
    # closing: atan2(|r_i x r_j|, |r_i . r_j|)
    ax, ay, az = g[i, 6], g[i, 7], g[i, 8]
    bx, by, bz = g[j, 6], g[j, 7], g[j, 8]
    t1 = ay * bz - az * by
    t2 = az * bx - ax * bz
    t3 = ax * by - ay * bx
    closing = math.atan2(math.sqrt(t1 * t1 + t2 * t2 + t3 * t3), abs(ax * bx + ay * by + az * bz))
    # approach: atan2(|n_i x n_j|, n_i . n_j)
    ax, ay, az = g[i, 3], g[i, 4], g[i, 5]
    bx, by, bz = g[j, 3], g[j, 4], g[j, 5]
    t1 = ay * bz - az * by
    t2 = az * bx - ax * bz
    t3 = ax * by - ay * bx
    approach = math.atan2(math.sqrt(t1 * t1 + t2 * t2 + t3 * t3), ax * bx + ay * by + az * bz)
    a1 = w1 * closing
    a2 = w2 * approach
    return b0 * math.sqrt(d2) + a1 + a2, a1 + a2


@_njit
def grasp_nms_kernel(
    g: NDArray[np.float64], order: NDArray[np.int64], limit: int, threshold: float,
    b0: float, w1: float, w2: float,
) -> tuple[NDArray[np.int64], bool]:
    """Greedy NMS with the grasp distance D (see :func:`~gpr_ros.core.grasp.grasp_nms`).

    Visits ``order``; keeps a grasp not suppressed yet, stops at ``limit`` kept grasps, and
    suppresses every not-yet-suppressed grasp with D < ``threshold``. With b0 > 0 only grasps
    whose squared centre distance is <= (threshold / b0)² are compared, as the KD-tree query
    of the numpy version does.

    :param g: (N, 9) float64: centre, approach n, closing r.
    :param order: (N,) visiting order (descending score).
    :param limit: maximum number of kept grasps, >= 1.
    :param threshold: D threshold, finite and >= 0.
    :param b0: β1.
    :param w1: β2 / π.
    :param w2: β3 / π.
    :return: ``(kept indices, ok)``; ``ok`` is false when a decision was within the near-tie
        margin (the caller then runs the numpy version).
    """
    n = g.shape[0]
    keep = np.empty(min(limit, n), np.int64)
    suppressed = np.zeros(n, np.bool_)
    count = 0
    radius = threshold / b0 if b0 > 0.0 else np.inf
    r2 = radius * radius
    use_grid = math.isfinite(r2) and threshold > 0.0 and n > 0
    if use_grid:
        centers = np.ascontiguousarray(g[:, :3])
        lo, hi, _ = _bounds(centers)
        tol2 = TIE_TOLERANCE * (r2 + _squared_span(lo, hi, lo, hi))
        h = math.sqrt(r2 + tol2) * (1.0 + 1e-6)
        cell, nx, ny, nz = _grid_shape(lo, hi, radius, 8 * n + 64)
        start, grid_order, _ = _grid_sort(centers, lo, cell, nx, ny, nz)
    else:
        lo = np.zeros(3)
        tol2 = 0.0
        h = 0.0
        cell, nx, ny, nz = 1.0, 1, 1, 1
        start = np.zeros(2, np.int64)
        grid_order = np.zeros(0, np.int64)
    for oi in range(n):
        i = order[oi]
        if suppressed[i]:
            continue
        keep[count] = i
        count += 1
        if count >= limit:
            break
        if threshold == 0.0:
            continue  # D >= 0 is never < 0
        if use_grid:
            x0, x1 = _cell_range(g[i, 0], h, lo[0], cell, nx)
            y0, y1 = _cell_range(g[i, 1], h, lo[1], cell, ny)
            z0, z1 = _cell_range(g[i, 2], h, lo[2], cell, nz)
            for ix in range(x0, x1 + 1):
                for iy in range(y0, y1 + 1):
                    base = (ix * ny + iy) * nz
                    for k in range(start[base + z0], start[base + z1 + 1]):
                        j = grid_order[k]
                        if suppressed[j]:
                            continue
                        dx = g[j, 0] - g[i, 0]
                        dy = g[j, 1] - g[i, 1]
                        dz = g[j, 2] - g[i, 2]
                        d2 = dx * dx + dy * dy + dz * dz
                        if abs(d2 - r2) <= tol2:
                            return keep[:count], False
                        if d2 > r2:
                            continue
                        d, angles = _grasp_pair_distance(g, i, j, d2, b0, w1, w2)
                        if abs(d - threshold) <= TIE_TOLERANCE * (angles + d):
                            return keep[:count], False
                        if d < threshold:
                            suppressed[j] = True
        else:
            for j in range(n):
                if suppressed[j]:
                    continue
                dx = g[i, 0] - g[j, 0]
                dy = g[i, 1] - g[j, 1]
                dz = g[i, 2] - g[j, 2]
                d2 = dx * dx + dy * dy + dz * dz
                d, angles = _grasp_pair_distance(g, i, j, d2, b0, w1, w2)
                if abs(d - threshold) <= TIE_TOLERANCE * (angles + d):
                    return keep[:count], False
                if d < threshold:
                    suppressed[j] = True
    return keep[:count], True


@_njit
def _crop_row(
    xyz: NDArray[np.float64],
    origin: NDArray[np.float64],
    rot: NDArray[np.float64],
    noise: NDArray[np.float32],
    bounds: NDArray[np.float64],
    idx: NDArray[np.int64],
    inside: NDArray[np.int64],
    keys: NDArray[np.float32],
) -> int:
    """One proposal's crop (:func:`crop_kernel`): origin (3,), rot (3, 3), noise (N,), idx
    (K,) written; ``inside`` and ``keys`` are (N,) scratch; returns the count."""
    n = xyz.shape[0]
    k = idx.shape[0]
    m = 0
    ox, oy, oz = origin[0], origin[1], origin[2]
    r00, r10, r20 = rot[0, 0], rot[1, 0], rot[2, 0]
    r01, r11, r21 = rot[0, 1], rot[1, 1], rot[2, 1]
    r02, r12, r22 = rot[0, 2], rot[1, 2], rot[2, 2]
    for j in range(n):  # branch-free test, then a conditional append
        dx = xyz[j, 0] - ox
        dy = xyz[j, 1] - oy
        dz = xyz[j, 2] - oz
        cx = dx * r00 + dy * r10 + dz * r20
        cy = dx * r01 + dy * r11 + dz * r21
        cz = dx * r02 + dy * r12 + dz * r22
        ok = (cx >= bounds[0]) & (cx <= bounds[1]) & (abs(cy) <= bounds[2]) & (
            abs(cz) <= bounds[3])
        inside[m] = j
        keys[m] = np.float32(1.0) + noise[j]
        m += ok
    if m == 0:
        for s in range(k):
            idx[s] = 0
        return 0
    order = np.argsort(-keys[:m], kind="mergesort")
    for s in range(k):
        idx[s] = inside[order[s % m]]
    return m


@_njit
def crop_kernel(
    xyz: NDArray[np.float64],
    origin: NDArray[np.float64],
    rot: NDArray[np.float64],
    noise: NDArray[np.float32],
    bounds: NDArray[np.float64],
    idx: NDArray[np.int64],
    count: NDArray[np.int64],
) -> None:
    """The stage-2 crop of :meth:`~gpr_ros.core.network.model.GPRNet.crop` for one scene.

    For every proposal p the points whose canonical coordinates
    ``(xyz - origin[p]) @ rot[p]`` lie in the box ``bounds`` = (x_lo, x_hi, |y| max, |z| max)
    are collected; they are sorted by descending key ``1 + noise[p, j]`` and written
    cyclically into ``idx[p]``'s K slots (the first K when more are inside). ``count[p]``
    receives how many were inside; an empty region's slots are set to 0. This is the
    selection ``topk`` makes over the keys ``inside * (1 + noise)`` (ties aside: the keys are
    random floats).

    :param xyz: (N, 3) points.
    :param origin: (P, 3) gripper-bottom origins of the proposals.
    :param rot: (P, 3, 3) proposal rotations (columns: approach, closing, their cross).
    :param noise: (P, N) uniform random numbers in [0, 1).
    :param bounds: (4,) box bounds in the canonical frame, m.
    :param idx: (P, K) output indices into N.
    :param count: (P,) output counts.
    """
    n = xyz.shape[0]
    inside = np.empty(n, dtype=np.int64)
    keys = np.empty(n, dtype=np.float32)
    for p in range(origin.shape[0]):
        count[p] = _crop_row(xyz, origin[p], rot[p], noise[p], bounds, idx[p], inside, keys)


# --------------------------------------------------------------------------- torch's CPU RNG

_MT_N = 624
_MT_M = 397
_MT_MATRIX_A = np.uint32(0x9908B0DF)
_MT_UPPER = np.uint32(0x80000000)
_MT_LOWER = np.uint32(0x7FFFFFFF)


@_njit
def _mt_twist(state: NDArray[np.uint32]) -> None:
    one = np.uint32(1)
    zero = np.uint32(0)
    for i in range(_MT_N - _MT_M):
        y = (state[i] & _MT_UPPER) | (state[i + 1] & _MT_LOWER)
        state[i] = state[i + _MT_M] ^ (y >> one) ^ (_MT_MATRIX_A if state[i + 1] & one else zero)
    for i in range(_MT_N - _MT_M, _MT_N - 1):
        y = (state[i] & _MT_UPPER) | (state[i + 1] & _MT_LOWER)
        state[i] = (state[i + _MT_M - _MT_N] ^ (y >> one)
                    ^ (_MT_MATRIX_A if state[i + 1] & one else zero))
    y = (state[_MT_N - 1] & _MT_UPPER) | (state[0] & _MT_LOWER)
    state[_MT_N - 1] = (state[_MT_M - 1] ^ (y >> one)
                        ^ (_MT_MATRIX_A if state[0] & one else zero))


@_njit
def mt19937_uniform_kernel(state: NDArray[np.uint32], left: int, position: int,
                           out: NDArray[np.float32]) -> tuple[int, int]:
    """Fill ``out`` with the floats ``torch.rand`` draws from a CPU generator in this state.

    PyTorch's CPU generator is an MT19937 (ATen's ``mt19937_engine``): a draw decrements
    ``left``, regenerates the 624 words when it reaches 0 (``left`` = 624, ``position`` = 0),
    and tempers the word at ``position``; a float32 is the draw's low 24 bits times 2^-24.

    :param state: (624,) words, updated in place.
    :param left: the engine's ``left`` counter.
    :param position: the engine's ``next`` index.
    :param out: (M,) filled.
    :return: the new ``(left, position)``.
    """
    mask = np.uint32(0xFFFFFF)
    scale = np.float32(1.0 / 16777216.0)
    for i in range(out.shape[0]):
        left -= 1
        if left == 0:
            _mt_twist(state)
            left = _MT_N
            position = 0
        y = state[position]
        position += 1
        y ^= y >> np.uint32(11)
        y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
        y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
        y ^= y >> np.uint32(18)
        out[i] = np.float32(y & mask) * scale
    return left, position


@_njit
def _mt_skip(state: NDArray[np.uint32], left: int, position: int, draws: int) -> tuple[int, int]:
    """Advance the engine by ``draws`` draws without computing them."""
    while draws > 0:
        if draws <= left - 1:
            return left - draws, position + draws
        draws -= left  # up to left == 1, then the draw that regenerates
        _mt_twist(state)
        left = _MT_N
        position = 1
    return left, position


@_njit
def crop_mt_kernel(
    xyz: NDArray[np.float64],
    origin: NDArray[np.float64],
    rot: NDArray[np.float64],
    rows: NDArray[np.int64],
    drawn: int,
    state: NDArray[np.uint32],
    left: int,
    position: int,
    bounds: NDArray[np.float64],
    idx: NDArray[np.int64],
    count: NDArray[np.int64],
) -> tuple[int, int]:
    """:func:`crop_kernel` with the noise ``torch.rand((drawn, N))`` would draw from a CPU
    generator in this MT19937 state (:func:`mt19937_uniform_kernel`), row ``rows[q]`` for
    proposal q; the other rows are skipped, not computed.

    :param xyz: (N, 3) points.
    :param origin: (Q, 3) origins.
    :param rot: (Q, 3, 3) rotations.
    :param rows: (Q,) ascending rows of the draw, in [0, drawn).
    :param drawn: rows drawn.
    :param state: (624,) engine words, updated in place.
    :param left: engine counter.
    :param position: engine index.
    :param bounds: (4,) box bounds.
    :param idx: (Q, K) output indices.
    :param count: (Q,) output counts.
    :return: the engine's new ``(left, position)``.
    """
    n = xyz.shape[0]
    inside = np.empty(n, dtype=np.int64)
    keys = np.empty(n, dtype=np.float32)
    noise = np.empty(n, dtype=np.float32)
    q = 0
    for r in range(drawn):
        if q < rows.shape[0] and rows[q] == r:
            left, position = mt19937_uniform_kernel(state, left, position, noise)
            count[q] = _crop_row(xyz, origin[q], rot[q], noise, bounds, idx[q], inside, keys)
            q += 1
        else:
            left, position = _mt_skip(state, left, position, n)
    return left, position


def compile_kernels() -> float:
    """Compile (or load from the cache) every kernel now, by calling each on tiny inputs.

    A node calls this at start-up so that its first detection does not pay the compilation
    (about 4 s on a cold cache, 0.2 s warm). Nothing is changed by the calls.

    :return: seconds taken (0 without numba).
    """
    if not NUMBA_AVAILABLE:
        return 0.0
    import time

    start = time.perf_counter()
    rng = np.random.default_rng(0)
    pts = rng.uniform(-0.05, 0.05, (32, 3))
    ball_query_kernel(pts, pts[:4], 0.02, 4)
    three_nn_kernel(pts, pts[:8])
    g = np.concatenate([pts[:6], np.tile([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]], (6, 1))], axis=1)
    grasp_nms_kernel(g, np.arange(6, dtype=np.int64), 6, 0.02, 1.0, 0.03 / math.pi,
                     0.03 / math.pi)
    crop_kernel(pts, pts[:2], np.tile(np.eye(3), (2, 1, 1)),
                rng.random((2, 32), dtype=np.float32), np.array([-0.001, 0.031, 0.026, 0.01]),
                np.zeros((2, 4), np.int64), np.zeros(2, np.int64))
    crop_mt_kernel(pts, pts[:1], np.tile(np.eye(3), (1, 1, 1)), np.array([1]), 2,
                   np.arange(_MT_N, dtype=np.uint32), 1, 0,
                   np.array([-0.001, 0.031, 0.026, 0.01]), np.zeros((1, 4), np.int64),
                   np.zeros(1, np.int64))
    swept_collision_kernel(pts, pts[:2], np.tile(np.eye(3), (2, 1, 1)), np.full(2, 0.01),
                           np.array([0.03, 0.03, 0.008, 0.05, 0.018, 0.04, 0.05]))
    one = np.ones((1, 1), np.float32)
    approach_collision_kernel(pts, pts[:1], np.array([[0.0, 1.0, 0.0]]),
                              np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 0.0, 1.0]]),
                              np.full(1, 0.01), np.full(1, 0.04), 0.01, one, one,
                              np.zeros(7, np.float32))
    return time.perf_counter() - start
