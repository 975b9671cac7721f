"""Grouping of the PointNet++ backbone: FPS, ball query, 3-NN, precomputation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
import torch

from gpr_ros.core.kernels import NUMBA_AVAILABLE, ball_query_kernel, three_nn_kernel
from gpr_ros.core.network import sampling
from gpr_ros.core.network.config import NetworkConfig
from gpr_ros.core.network.errors import NetworkError
from gpr_ros.core.network.sampling import (
    ball_query,
    farthest_point_sample,
    group_keys,
    kdtree_ball_query,
    kdtree_three_nn,
    numpy_fps,
    precompute_groups,
    reference_ball_query,
    reference_fps,
    reference_three_nn,
    three_nn,
)

needs_numba = pytest.mark.skipif(not NUMBA_AVAILABLE, reason="numba is not installed")


def _cloud(n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.uniform(-0.1, 0.1, (n, 3)) * [1, 1, 0.3] + [0, 0, 0.6]).astype(np.float32)


def _coverage(points: np.ndarray, idx: np.ndarray) -> float:
    dist, _ = cKDTree(points[idx]).query(points)
    return float(dist.max())


@pytest.mark.parametrize("fps", [farthest_point_sample, numpy_fps])
def test_fps_unique_and_covers_the_cloud(fps) -> None:
    pts = _cloud()
    idx = fps(pts, 256)
    assert idx.shape == (256,) and len(np.unique(idx)) == 256
    assert idx.min() >= 0 and idx.max() < len(pts)
    random_idx = np.random.default_rng(1).choice(len(pts), 256, replace=False)
    # FPS covers the cloud much better than a random subset of the same size.
    assert _coverage(pts, idx) < 0.75 * _coverage(pts, random_idx)
    ref = reference_fps(torch.from_numpy(pts), 256).numpy()
    assert _coverage(pts, idx) < 1.3 * _coverage(pts, ref)
    np.testing.assert_array_equal(idx, fps(pts, 256))  # deterministic


def test_numpy_fps_equals_reference_exactly() -> None:
    pts = _cloud(500)
    np.testing.assert_array_equal(numpy_fps(pts, 64), reference_fps(torch.from_numpy(pts), 64))


def test_fps_rejects_bad_input() -> None:
    with pytest.raises(NetworkError):
        farthest_point_sample(np.zeros((10, 2)), 3)
    with pytest.raises(NetworkError):
        farthest_point_sample(_cloud(10), 11)


def test_ball_query_within_radius_padded_by_repetition() -> None:
    pts = _cloud()
    centers_idx = farthest_point_sample(pts, 128)
    radius, nsample = 0.03, 16
    idx = ball_query(pts, pts[centers_idx], radius, nsample)
    assert idx.shape == (128, nsample) and idx.dtype == np.int64
    dist = np.linalg.norm(pts[idx] - pts[centers_idx][:, None, :], axis=2)
    assert np.all(dist <= radius + 1e-6)
    tree = cKDTree(pts)
    counts = np.array([len(x) for x in tree.query_ball_point(pts[centers_idx], radius)])
    assert np.any(counts < nsample) and np.any(counts > nsample)
    for row, count in zip(idx, counts, strict=True):
        k = min(count, nsample)
        assert len(np.unique(row[:k])) == k
        assert np.all(np.diff(row[:k]) > 0)  # the first neighbours in index order
        assert np.all(row[k:] == row[0])  # padding repeats the first neighbour
    ref = reference_ball_query(torch.from_numpy(pts).double(),
                               torch.from_numpy(pts[centers_idx]).double(),
                               radius, nsample)
    np.testing.assert_array_equal(idx, ref.numpy())


def test_three_nn_matches_reference() -> None:
    pts = _cloud(300)
    known = _cloud(40, seed=5)
    idx, weight = three_nn(pts, known)
    ref_idx, ref_w = reference_three_nn(torch.from_numpy(pts).double(),
                                        torch.from_numpy(known).double())
    np.testing.assert_array_equal(np.sort(idx, 1), np.sort(ref_idx.numpy(), 1))
    np.testing.assert_allclose(weight.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.sort(weight, 1), np.sort(ref_w.numpy(), 1), rtol=1e-3)


def test_precompute_groups_shapes() -> None:
    cfg = NetworkConfig.tiny()
    pts = _cloud(cfg.num_points)
    groups = precompute_groups(pts, cfg)
    assert list(groups) == group_keys(cfg)
    sizes = [cfg.num_points] + [lv.npoint for lv in cfg.sa_levels]
    for i, level in enumerate(cfg.sa_levels, start=1):
        assert groups[f"sa{i}_centers"].shape == (level.npoint,)
        for j, ns in enumerate(level.nsamples):
            g = groups[f"sa{i}_group{j}"]
            assert g.shape == (level.npoint, ns) and g.max() < sizes[i - 1]
        assert groups[f"fp{i}_index"].shape == (sizes[i - 1], 3)
        assert groups[f"fp{i}_index"].max() < sizes[i]
        assert groups[f"fp{i}_weight"].dtype == np.float32
    with pytest.raises(NetworkError, match="expected 512 points"):
        precompute_groups(pts[:100], cfg)


# ------------------------------------------- numba kernels: identical to the cKDTree versions


def _quantised(n: int, seed: int, step: float = 1 / 64) -> np.ndarray:
    """Points on a grid of ``step`` (exact binary fractions): many equal distances and
    duplicates, so the kernels' near-tie fallback runs."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-6, 7, (n, 3)) * step).astype(np.float32)


@pytest.mark.parametrize("n", [1, 2, 37, 500, 3000])
@pytest.mark.parametrize("radius", [1e-4, 0.01, 0.03, 5.0])
@pytest.mark.parametrize("nsample", [1, 8, 64])
def test_ball_query_equals_kdtree(n: int, radius: float, nsample: int) -> None:
    pts = _cloud(n, seed=n)
    rng = np.random.default_rng(7)
    centers = pts[rng.choice(n, min(n, 200), replace=False)]
    # 1e-4: most balls hold only the centre; 5.0: every ball holds the whole cloud;
    # nsample 64 exceeds most balls (padding).
    got = ball_query(pts, centers, radius, nsample)
    want = kdtree_ball_query(pts, centers, radius, nsample)
    assert got.dtype == want.dtype == np.int64 and got.shape == (len(centers), nsample)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(4))
def test_ball_query_equals_kdtree_off_cloud_centres(seed: int) -> None:
    pts = _cloud(800, seed=seed)
    rng = np.random.default_rng(seed)
    # Centres that are not points of the cloud, some far outside it: empty balls get the
    # nearest point. float64 points are used as float32 (as cKDTree got them so far).
    centers = np.concatenate([rng.uniform(-0.15, 0.15, (150, 3)) + [0, 0, 0.6],
                              rng.uniform(-5.0, 5.0, (50, 3))])
    for radius, nsample in ((0.005, 4), (0.02, 16), (0.1, 200)):
        got = ball_query(pts.astype(np.float64), centers, radius, nsample)
        np.testing.assert_array_equal(got, kdtree_ball_query(pts, centers, radius, nsample))


@pytest.mark.parametrize("seed", range(4))
def test_ball_query_equals_kdtree_on_exact_ties(seed: int) -> None:
    pts = _quantised(400, seed)
    centers = np.concatenate([pts[:100], _quantised(50, seed + 100) + np.float32(1 / 128)])
    for radius in (0.0, 1 / 64, 1 / 32, 3 / 64, 0.1):
        for nsample in (1, 5, 32):
            np.testing.assert_array_equal(ball_query(pts, centers, radius, nsample),
                                          kdtree_ball_query(pts, centers, radius, nsample))


def test_ball_query_degenerate_inputs() -> None:
    pts = _cloud(50)
    for centers in (pts[:0], pts[:1]):
        np.testing.assert_array_equal(ball_query(pts, centers, 0.02, 4),
                                      kdtree_ball_query(pts, centers, 0.02, 4))
    same = np.zeros((20, 3), np.float32)  # every point identical: a zero-size grid
    np.testing.assert_array_equal(ball_query(same, same[:3], 0.01, 4),
                                  kdtree_ball_query(same, same[:3], 0.01, 4))
    nan = pts.copy()
    nan[3] = np.nan  # non-finite input goes to cKDTree as a whole, which rejects it
    for query in (ball_query, kdtree_ball_query):
        with pytest.raises(ValueError, match="finite"):
            query(nan, pts[:5], 0.02, 4)


@needs_numba
def test_ball_query_kernel_decides_random_clouds_itself() -> None:
    pts = _cloud(2000).astype(np.float64)
    idx, status = ball_query_kernel(pts, pts[:300], 0.02, 16)
    assert not np.any(status)  # no fallback: the kernel alone matches cKDTree
    np.testing.assert_array_equal(idx, kdtree_ball_query(pts, pts[:300], 0.02, 16))
    # On a grid of exact binary fractions some distances equal the radius: flagged (1);
    # a centre far from the cloud has an empty ball (2).
    q = _quantised(300, 0).astype(np.float64)
    centers = np.concatenate([q[:50], [[10.0, 10.0, 10.0]]])
    _, status = ball_query_kernel(q, centers, 1 / 32, 8)
    assert np.any(status[:50] == 1) and status[50] == 2


@pytest.mark.parametrize("n, m", [(1, 4), (300, 4), (300, 5), (2000, 50), (3000, 1000),
                                  (50, 3), (50, 1)])
def test_three_nn_equals_kdtree(n: int, m: int) -> None:
    pts = _cloud(n, seed=n)
    known = _cloud(m, seed=m + 1)
    got_idx, got_w = three_nn(pts, known)
    want_idx, want_w = kdtree_three_nn(pts, known)
    assert got_idx.dtype == np.int64 and got_w.dtype == np.float32
    np.testing.assert_array_equal(got_idx, want_idx)
    np.testing.assert_array_equal(got_w, want_w)


@pytest.mark.parametrize("seed", range(4))
def test_three_nn_equals_kdtree_with_ties_and_far_points(seed: int) -> None:
    known = _quantised(200, seed)  # duplicates and equal distances: cKDTree decides those
    pts = np.concatenate([_quantised(300, seed + 1), known,
                          np.random.default_rng(seed).uniform(-3, 3, (100, 3))])
    got = three_nn(pts, known)
    want = kdtree_three_nn(pts, known)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@needs_numba
def test_three_nn_kernel_flags_ties_only() -> None:
    known = _cloud(500, seed=3).astype(np.float64)
    pts = _cloud(2000, seed=4).astype(np.float64)
    idx, dist, status = three_nn_kernel(pts, known)
    assert not np.any(status)
    want_d, want_i = cKDTree(known).query(pts, k=3)
    np.testing.assert_array_equal(idx, want_i)
    np.testing.assert_array_equal(dist, want_d)
    dup = np.concatenate([known, known[:1]])  # point 0 twice: a tie for its own position
    _, _, status = three_nn_kernel(known[:1], dup)
    assert status[0] == 1


@pytest.mark.parametrize("seed", range(3))
def test_precompute_groups_equals_kdtree_path(seed: int, monkeypatch) -> None:
    cfg = NetworkConfig.tiny()
    pts = _cloud(cfg.num_points, seed=seed)
    got = precompute_groups(pts, cfg)
    monkeypatch.setattr(sampling, "NUMBA_AVAILABLE", False)
    want = precompute_groups(pts, cfg)
    assert list(got) == list(want)
    for key in want:
        assert got[key].dtype == want[key].dtype, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
