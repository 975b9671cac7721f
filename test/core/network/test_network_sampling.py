"""Grouping of the PointNet++ backbone: FPS, ball query, 3-NN, precomputation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
import torch

from gpr_ros.core.network.config import NetworkConfig
from gpr_ros.core.network.errors import NetworkError
from gpr_ros.core.network.sampling import (
    ball_query,
    farthest_point_sample,
    group_keys,
    numpy_fps,
    precompute_groups,
    reference_ball_query,
    reference_fps,
    reference_three_nn,
    three_nn,
)


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
