"""Weight-independent point grouping of PointNet++, precomputed on the CPU.

FPS, ball query and the 3-NN interpolation of the feature-propagation layers depend only on
the coordinates, not on the weights, so they are computed once per scene with fast CPU
libraries (a DataLoader worker does it during training) and the network itself only gathers
and runs MLPs. This is the same on CPU and CUDA, and needs no custom CUDA op.

- Farthest point sampling: :mod:`fpsample` (QuickFPS, bucket KD-tree) when it imports, else a
  vectorised numpy FPS. The start point is given explicitly, so results are deterministic.
- Ball query: like PointNet++ the first ``nsample`` neighbours in index order are kept (the
  points with squared distance <= radius², as :meth:`scipy.spatial.cKDTree.query_ball_point`
  decides) and missing slots repeat the first neighbour. Because the input points are shuffled
  (see :mod:`.data`) and FPS output is spread over the cloud, "first in index order" is a
  random subset of the ball, not the nearest points, which keeps the multi-scale radii
  meaningful. Each centre is itself a point of the cloud, so every ball holds at least one
  point (a centre whose ball is empty would get its nearest point). With :mod:`numba`
  (:data:`~gpr_ros.core.kernels.NUMBA_AVAILABLE`) a compiled kernel
  (:func:`~gpr_ros.core.kernels.ball_query_kernel`) sorts the points into a uniform grid of
  cells of edge ``radius``, scans the cells around each centre and keeps the ``nsample``
  smallest in-ball indices (0.3-0.6 ms instead of 2.5-4.7 ms for 1,024 centres in 4,096
  points); without numba, :func:`kdtree_ball_query` (cKDTree, parallel ``workers``; building
  the Python lists of neighbours is what costs). Both return the same indices: the kernel
  computes the squared distances with cKDTree's float64 operations (float32 points converted
  to float64), and leaves the rare rows it cannot decide the same way (a point within
  rounding error of the sphere, an empty ball) to :func:`kdtree_ball_query`.
- 3-NN interpolation: the three nearest points, weights normalised inverse distances
  1 / (d + 1e-8) (PointNet++ Eq. 2 with p = 1). With numba a grid kernel
  (:func:`~gpr_ros.core.kernels.three_nn_kernel`, ring search) finds them, else
  :meth:`cKDTree.query` with ``k=3`` (:func:`kdtree_three_nn`; 0.8 ms instead of 1.6-2 ms
  for 4,096 points onto 1,024). Rows with tied distances, whose order only cKDTree's
  traversal defines, are answered by cKDTree in both cases, so the results are identical.
  With numba no KD-tree is built at all (``precompute_groups`` of a 4,096-point cloud with
  the ``cpu`` preset: ~5 ms instead of ~14 ms; FPS is now the largest part, ~2 ms).

:func:`precompute_groups` returns, for SA level ``i`` (1-based) and scale ``j``:

- ``sa{i}_centers``: (npoint_i,) indices into level i-1's points (level 0 = the input);
- ``sa{i}_group{j}``: (npoint_i, nsample_ij) indices into level i-1's points;
- ``fp{i}_index``, ``fp{i}_weight``: (n_{i-1}, 3) indices into level i's points and weights,
  to interpolate level i's features onto level i-1's points.

The ``reference_*`` functions are straightforward pure-PyTorch versions (a Python loop for
FPS, dense distance matrices) kept as the baseline of the speed benchmark and as a check.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree
import torch

from gpr_ros.core.kernels import NUMBA_AVAILABLE, ball_query_kernel, three_nn_kernel
from gpr_ros.core.network.config import NetworkConfig
from gpr_ros.core.network.errors import NetworkError

try:  # pragma: no cover - depends on the environment
    import fpsample as _fpsample
except ImportError:  # pragma: no cover
    _fpsample = None

__all__ = [
    "ball_query",
    "farthest_point_sample",
    "group_keys",
    "kdtree_ball_query",
    "kdtree_three_nn",
    "precompute_groups",
    "reference_ball_query",
    "reference_fps",
    "reference_groups",
    "reference_three_nn",
    "three_nn",
]

#: cKDTree worker threads used by the ball query and 3-NN (the machine has 2 cores).
DEFAULT_WORKERS = 2


def _check_points(points: NDArray[Any]) -> NDArray[np.float32]:
    pts = np.ascontiguousarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise NetworkError(f"points must have shape (N, 3) with N >= 1, got {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise NetworkError("points must be finite, got NaN/inf")
    return pts


def numpy_fps(points: NDArray[Any], npoint: int, start: int = 0) -> NDArray[np.int64]:
    """Farthest point sampling, vectorised numpy (O(N·npoint)); the fallback of fpsample.

    :param points: (N, 3) points.
    :param npoint: samples, <= N.
    :param start: index of the first sample.
    :return: (npoint,) int64 indices in selection order.
    """
    pts = np.asarray(points, dtype=np.float32)
    out = np.empty(npoint, dtype=np.int64)
    dist = np.full(len(pts), np.inf, dtype=np.float32)
    current = int(start)
    for i in range(npoint):
        out[i] = current
        diff = pts - pts[current]
        np.minimum(dist, np.einsum("ij,ij->i", diff, diff), out=dist)
        current = int(np.argmax(dist))
    return out


def farthest_point_sample(points: NDArray[Any], npoint: int, start: int = 0) -> NDArray[np.int64]:
    """Farthest point sampling (fpsample's QuickFPS, or :func:`numpy_fps` without it).

    :param points: (N, 3) points.
    :param npoint: number of samples, 1 <= npoint <= N.
    :param start: index of the first sample (deterministic output).
    :return: (npoint,) unique int64 indices.
    :raises NetworkError: on bad shapes or ``npoint`` out of range.
    """
    pts = _check_points(points)
    if not 1 <= npoint <= len(pts):
        raise NetworkError(f"npoint must be in [1, {len(pts)}], got {npoint}")
    if npoint == len(pts):
        return np.arange(npoint, dtype=np.int64)
    if _fpsample is not None:
        # Bucket height 7 is the library's recommendation for medium workloads; small clouds
        # need fewer levels (2**h points per bucket).
        h = int(min(7, max(1, np.log2(max(len(pts), 2)) - 3)))
        idx = _fpsample.bucket_fps_kdline_sampling(pts, npoint, h=h, start_idx=int(start))
        return np.asarray(idx, dtype=np.int64)
    return numpy_fps(pts, npoint, start)


def ball_query(
    points: NDArray[Any],
    centers: NDArray[Any],
    radius: float,
    nsample: int,
    tree: cKDTree | None = None,
    workers: int = DEFAULT_WORKERS,
) -> NDArray[np.int64]:
    """PointNet++ ball query: the first ``nsample`` points within ``radius`` of each centre.

    Uses the numba kernel when numba imports, else :func:`kdtree_ball_query`; the result is
    the same (see the module docstring).

    :param points: (N, 3) points (used as float32, as cKDTree got them so far).
    :param centers: (M, 3) query centres (used as float64).
    :param radius: ball radius, m; a point is inside when its squared distance is <= radius².
    :param nsample: neighbours per centre.
    :param tree: a prebuilt :class:`cKDTree` of ``points``; only the cKDTree path uses it
        (the numba path builds one only for the rare rows it leaves to cKDTree).
    :param workers: threads of the KD-tree query.
    :return: (M, nsample) int64 indices in ascending order, padded by repeating the first
        neighbour; a centre with no neighbour gets its nearest point.
    """
    pts = np.asarray(points, dtype=np.float32)
    ctr = np.asarray(centers, dtype=np.float64)
    r = float(radius)
    if (
        not NUMBA_AVAILABLE
        or pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0
        or ctr.ndim != 2 or ctr.shape[1] != 3
        or int(nsample) != nsample or nsample < 1
        or not 0.0 <= r < np.inf
    ):
        return kdtree_ball_query(pts, centers, radius, nsample, tree, workers)
    idx, status = ball_query_kernel(
        np.ascontiguousarray(pts, dtype=np.float64), np.ascontiguousarray(ctr), r, int(nsample)
    )
    redo = np.flatnonzero(status)
    if len(redo):
        if np.any(status == 3):  # non-finite input: left entirely to cKDTree
            return kdtree_ball_query(pts, centers, radius, nsample, tree, workers)
        idx[redo] = kdtree_ball_query(pts, ctr[redo], radius, nsample, tree, workers)
    return idx


def kdtree_ball_query(
    points: NDArray[Any],
    centers: NDArray[Any],
    radius: float,
    nsample: int,
    tree: cKDTree | None = None,
    workers: int = DEFAULT_WORKERS,
) -> NDArray[np.int64]:
    """:func:`ball_query` with :meth:`cKDTree.query_ball_point` (the fallback without numba).

    :param points: (N, 3) points (converted to float32).
    :param centers: (M, 3) query centres.
    :param radius: ball radius, m.
    :param nsample: neighbours per centre.
    :param tree: a prebuilt :class:`cKDTree` of ``points``.
    :param workers: threads of the KD-tree query.
    :return: the same as :func:`ball_query`.
    """
    pts = np.asarray(points, dtype=np.float32)
    tree = cKDTree(pts) if tree is None else tree
    found = tree.query_ball_point(centers, r=radius, workers=workers, return_sorted=True)
    lengths = np.fromiter((len(f) for f in found), dtype=np.int64, count=len(found))
    total = int(lengths.sum())
    flat = np.fromiter(itertools.chain.from_iterable(found), dtype=np.int64, count=total)
    empty = lengths == 0
    if np.any(empty):
        # Only possible when a centre is not itself one of the points (not in this module).
        _, nearest = tree.query(np.asarray(centers)[empty], k=1)
        lengths = lengths.copy()
        lengths[empty] = 1
        parts, pos = [], 0
        fill = iter(np.atleast_1d(nearest).astype(np.int64))
        for n, e in zip(found, empty, strict=True):
            parts.append(np.array([next(fill)]) if e else flat[pos : pos + len(n)])
            pos += len(n)
        flat = np.concatenate(parts)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    slot = np.arange(nsample)[None, :]
    take = np.where(slot < lengths[:, None], slot, 0)
    return flat[offsets[:, None] + take]


def three_nn(
    points: NDArray[Any], known: NDArray[Any], tree: cKDTree | None = None,
    workers: int = DEFAULT_WORKERS,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Three nearest known points of every point and inverse-distance weights.

    Uses the numba kernel when numba imports and there are at least 4 known points, else
    :func:`kdtree_three_nn`; the result is the same (see the module docstring).

    :param points: (N, 3) points to interpolate onto (used as float64).
    :param known: (M, 3) points carrying features (M >= 1; with M < 3 indices repeat; used
        as float32, as cKDTree got them so far).
    :param tree: a prebuilt :class:`cKDTree` of ``known``; only the cKDTree path uses it.
    :param workers: threads of the query.
    :return: ``(index (N, 3) int64, weight (N, 3) float32)``, weights summing to 1.
    """
    kn = np.asarray(known, dtype=np.float32)
    qp = np.asarray(points, dtype=np.float64)
    if (
        not NUMBA_AVAILABLE
        or kn.ndim != 2 or kn.shape[1] != 3 or len(kn) < 4
        or qp.ndim != 2 or qp.shape[1] != 3
    ):
        return kdtree_three_nn(points, kn, tree, workers)
    idx, dist, status = three_nn_kernel(
        np.ascontiguousarray(qp), np.ascontiguousarray(kn, dtype=np.float64)
    )
    redo = np.flatnonzero(status)
    if len(redo):
        if np.any(status == 3):  # non-finite input: left entirely to cKDTree
            return kdtree_three_nn(points, kn, tree, workers)
        dist[redo], idx[redo] = _kdtree_knn(qp[redo], kn, tree, workers)
    return idx, _inverse_distance_weights(dist)


def kdtree_three_nn(
    points: NDArray[Any], known: NDArray[Any], tree: cKDTree | None = None,
    workers: int = DEFAULT_WORKERS,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """:func:`three_nn` with :meth:`cKDTree.query` (the fallback without numba).

    :param points: (N, 3) points to interpolate onto.
    :param known: (M, 3) points carrying features (M >= 1, converted to float32).
    :param tree: a prebuilt :class:`cKDTree` of ``known``.
    :param workers: threads of the query.
    :return: the same as :func:`three_nn`.
    """
    dist, idx = _kdtree_knn(points, known, tree, workers)
    return idx, _inverse_distance_weights(dist)


def _kdtree_knn(
    points: NDArray[Any], known: NDArray[Any], tree: cKDTree | None, workers: int
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """(N, 3) distances and indices of the 3 nearest known points (repeated when M < 3)."""
    tree = cKDTree(np.asarray(known, dtype=np.float32)) if tree is None else tree
    k = min(3, tree.n)
    dist, idx = tree.query(points, k=k, workers=workers)
    dist = np.asarray(dist, dtype=np.float64).reshape(len(points), k)
    idx = np.asarray(idx, dtype=np.int64).reshape(len(points), k)
    if k < 3:
        idx = np.concatenate([idx, np.repeat(idx[:, :1], 3 - k, axis=1)], axis=1)
        dist = np.concatenate([dist, np.repeat(dist[:, :1], 3 - k, axis=1)], axis=1)
    return dist, idx


def _inverse_distance_weights(dist: NDArray[np.float64]) -> NDArray[np.float32]:
    """Normalised inverse distances 1 / (d + 1e-8) of (N, 3) distances."""
    inv = 1.0 / (dist + 1e-8)
    weight = inv / inv.sum(axis=1, keepdims=True)
    return weight.astype(np.float32)


def group_keys(config: NetworkConfig) -> list[str]:
    """Keys of the dict returned by :func:`precompute_groups`, in a fixed order.

    :param config: the architecture.
    :return: the keys.
    """
    keys: list[str] = []
    for i, level in enumerate(config.sa_levels, start=1):
        keys.append(f"sa{i}_centers")
        keys.extend(f"sa{i}_group{j}" for j in range(len(level.radii)))
    for i in range(1, len(config.sa_levels) + 1):
        keys.extend((f"fp{i}_index", f"fp{i}_weight"))
    return keys


def precompute_groups(
    points: NDArray[Any], config: NetworkConfig, workers: int = DEFAULT_WORKERS
) -> dict[str, NDArray[Any]]:
    """Every index array the backbone needs for one cloud (see the module docstring).

    :param points: (num_points, 3) network input points.
    :param config: the architecture.
    :param workers: KD-tree threads (cKDTree path only).
    :return: ``{key: array}`` with the keys of :func:`group_keys`.
    :raises NetworkError: if the cloud does not have ``config.num_points`` points.
    """
    pts = _check_points(points)
    if len(pts) != config.num_points:
        raise NetworkError(
            f"expected {config.num_points} points (config.num_points), got {len(pts)}"
        )
    out: dict[str, NDArray[Any]] = {}
    level_points = [pts]
    use_trees = not NUMBA_AVAILABLE  # the numba kernels need no KD-tree
    trees: list[cKDTree | None] = [cKDTree(pts) if use_trees else None]
    for i, level in enumerate(config.sa_levels, start=1):
        prev = level_points[-1]
        centers_idx = farthest_point_sample(prev, level.npoint, start=0)
        centers = prev[centers_idx]
        out[f"sa{i}_centers"] = centers_idx
        for j, (radius, nsample) in enumerate(zip(level.radii, level.nsamples, strict=True)):
            out[f"sa{i}_group{j}"] = ball_query(prev, centers, radius, nsample, trees[-1],
                                                workers)
        level_points.append(centers)
        trees.append(cKDTree(centers) if use_trees else None)
    for i in range(1, len(config.sa_levels) + 1):
        idx, weight = three_nn(level_points[i - 1], level_points[i], trees[i], workers)
        out[f"fp{i}_index"] = idx
        out[f"fp{i}_weight"] = weight
    return out


# --------------------------------------------------------------------- pure-PyTorch reference


def reference_fps(points: torch.Tensor, npoint: int, start: int = 0) -> torch.Tensor:
    """Farthest point sampling with a Python loop over the samples (reference).

    :param points: (N, 3) tensor.
    :param npoint: samples.
    :param start: first index.
    :return: (npoint,) int64 indices.
    """
    n = points.shape[0]
    out = torch.empty(npoint, dtype=torch.long, device=points.device)
    dist = torch.full((n,), float("inf"), device=points.device)
    current = start
    for i in range(npoint):
        out[i] = current
        d = ((points - points[current]) ** 2).sum(dim=1)
        dist = torch.minimum(dist, d)
        current = int(torch.argmax(dist))
    return out


def reference_ball_query(
    points: torch.Tensor, centers: torch.Tensor, radius: float, nsample: int
) -> torch.Tensor:
    """Ball query from a dense (M, N) distance matrix (reference).

    :param points: (N, 3).
    :param centers: (M, 3).
    :param radius: m.
    :param nsample: neighbours.
    :return: (M, nsample) int64 indices, same semantics as :func:`ball_query`.
    """
    n = points.shape[0]
    d2 = torch.cdist(centers, points).pow(2)
    idx = torch.arange(n, device=points.device).expand(centers.shape[0], n).clone()
    idx[d2 > radius * radius] = n
    idx = idx.sort(dim=1).values[:, :nsample]
    first = idx[:, :1].expand_as(idx)
    return torch.where(idx == n, first, idx)


def reference_three_nn(
    points: torch.Tensor, known: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """3-NN and inverse-distance weights from a dense distance matrix (reference).

    :param points: (N, 3).
    :param known: (M, 3).
    :return: ``(index (N, 3), weight (N, 3))``.
    """
    d = torch.cdist(points, known)
    k = min(3, known.shape[0])
    dist, idx = d.topk(k, dim=1, largest=False)
    if k < 3:
        idx = torch.cat([idx, idx[:, :1].expand(-1, 3 - k)], dim=1)
        dist = torch.cat([dist, dist[:, :1].expand(-1, 3 - k)], dim=1)
    inv = 1.0 / (dist + 1e-8)
    return idx, inv / inv.sum(dim=1, keepdim=True)


def reference_groups(points: torch.Tensor, config: NetworkConfig) -> dict[str, torch.Tensor]:
    """:func:`precompute_groups` computed with the pure-PyTorch reference functions.

    :param points: (num_points, 3) tensor.
    :param config: the architecture.
    :return: the same keys as :func:`precompute_groups`, as tensors.
    """
    out: dict[str, torch.Tensor] = {}
    level_points = [points]
    for i, level in enumerate(config.sa_levels, start=1):
        prev = level_points[-1]
        centers_idx = reference_fps(prev, level.npoint)
        centers = prev[centers_idx]
        out[f"sa{i}_centers"] = centers_idx
        for j, (radius, nsample) in enumerate(zip(level.radii, level.nsamples, strict=True)):
            out[f"sa{i}_group{j}"] = reference_ball_query(prev, centers, radius, nsample)
        level_points.append(centers)
    for i in range(1, len(config.sa_levels) + 1):
        idx, weight = reference_three_nn(level_points[i - 1], level_points[i])
        out[f"fp{i}_index"] = idx
        out[f"fp{i}_weight"] = weight
    return out
