"""Tests of the grasp distance D (Eq. 1) and grasp NMS (gpr_ros.core.grasp.distance)."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from gpr_ros.core.errors import ConfigError, GeometryError
from gpr_ros.core.grasp import (
    DEFAULT_BETA,
    DEFAULT_NMS_THRESHOLD,
    Grasps,
    grasp_distance,
    grasp_nms,
    pairwise_grasp_distance,
)
from gpr_ros.core.grasp.distance import numpy_grasp_nms
from gpr_ros.core.kernels import NUMBA_AVAILABLE, grasp_nms_kernel

SETTINGS = settings(max_examples=60, deadline=None)
needs_numba = pytest.mark.skipif(not NUMBA_AVAILABLE, reason="numba is not installed")


def one(center: list[float], approach: list[float], closing: list[float]) -> Grasps:
    return Grasps([center], [approach], [closing], [0.02])


def random_grasps(rng: np.random.Generator, n: int, spread: float = 0.1) -> Grasps:
    approach = rng.normal(size=(n, 3))
    closing = rng.normal(size=(n, 3))
    return Grasps(rng.uniform(-spread, spread, (n, 3)), approach, closing,
                  rng.uniform(0.0, 0.05, n), score=rng.random(n))


def reference_nms(grasps: Grasps, threshold: float, beta: tuple[float, float, float]
                  ) -> list[int]:
    """Textbook greedy NMS on the full distance matrix."""
    dist = pairwise_grasp_distance(grasps, grasps, beta)
    order = sorted(range(len(grasps)), key=lambda i: (-grasps.score[i], i))
    keep: list[int] = []
    for i in order:
        if all(dist[i, k] >= threshold for k in keep):
            keep.append(i)
    return keep


# ---------------------------------------------------------------------- distance


def test_hand_computed_distances() -> None:
    base = one([0, 0, 0], [1, 0, 0], [0, 1, 0])
    shifted = one([0.01, 0, 0], [1, 0, 0], [0, 1, 0])
    assert grasp_distance(base, shifted)[0] == pytest.approx(0.01)
    # Approach 90° apart (closing shared): 0.03 * (π/2) / π.
    tilted = one([0, 0, 0], [0, 0, 1], [0, 1, 0])
    assert grasp_distance(base, tilted)[0] == pytest.approx(0.03 * 0.5)
    # Closing 90° apart (approach shared).
    rolled = one([0, 0, 0], [1, 0, 0], [0, 0, 1])
    assert grasp_distance(base, rolled)[0] == pytest.approx(0.03 * 0.5)
    # Closing flipped: the same grasp.
    flipped = one([0, 0, 0], [1, 0, 0], [0, -1, 0])
    assert grasp_distance(base, flipped)[0] == pytest.approx(0.0, abs=1e-12)
    # Opposite approach, closing flipped too: 0.03.
    opposite = one([0, 0, 0], [-1, 0, 0], [0, -1, 0])
    assert grasp_distance(base, opposite)[0] == pytest.approx(0.03)
    # All three terms, custom weights.
    mixed = one([0, 0.02, 0], [0, 0, 1], [0, 1, 0])
    assert grasp_distance(base, mixed, beta=(2.0, 0.1, 0.2))[0] == pytest.approx(
        2.0 * 0.02 + 0.2 * 0.5
    )


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.integers(1, 8))
def test_distance_properties(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    a, b, c = (random_grasps(rng, n) for _ in range(3))
    d_ab = grasp_distance(a, b)
    assert d_ab.shape == (n,)
    assert np.all(d_ab >= 0.0)
    np.testing.assert_allclose(d_ab, grasp_distance(b, a), atol=1e-15)
    np.testing.assert_array_equal(grasp_distance(a, a), 0.0)
    flipped = Grasps(b.center, b.approach, -b.closing, b.width)
    np.testing.assert_allclose(grasp_distance(a, flipped), d_ab, atol=1e-12)
    # Upper bound: centre term + β2/2 + β3.
    bound = np.linalg.norm(a.center - b.center, axis=1) + 0.03 / 2 + 0.03
    assert np.all(d_ab <= bound + 1e-12)
    # The centre-only distance is a metric: triangle inequality.
    centre_only = (1.0, 0.0, 0.0)
    assert np.all(
        grasp_distance(a, c, centre_only)
        <= grasp_distance(a, b, centre_only) + grasp_distance(b, c, centre_only) + 1e-12
    )
    np.testing.assert_allclose(pairwise_grasp_distance(a, b).diagonal(), d_ab, atol=1e-12)


def test_broadcasting_and_pairwise_shapes() -> None:
    rng = np.random.default_rng(1)
    a, b = random_grasps(rng, 5), random_grasps(rng, 3)
    np.testing.assert_allclose(grasp_distance(a[2], a), pairwise_grasp_distance(a[2], a)[0],
                               atol=1e-12)
    np.testing.assert_allclose(grasp_distance(a, b[0]), pairwise_grasp_distance(a, b)[:, 0],
                               atol=1e-12)
    assert pairwise_grasp_distance(a, b).shape == (5, 3)
    assert pairwise_grasp_distance(a, Grasps.empty()).shape == (5, 0)
    with pytest.raises(GeometryError, match="length"):
        grasp_distance(a, b)


@pytest.mark.parametrize("beta", [(1.0, 0.03), (1.0, -0.1, 0.0), (np.nan, 0.0, 0.0)])
def test_invalid_beta(beta: tuple[float, ...]) -> None:
    g = one([0, 0, 0], [1, 0, 0], [0, 1, 0])
    with pytest.raises(ConfigError):
        grasp_distance(g, g, beta)
    with pytest.raises(ConfigError):
        grasp_nms(g, beta=beta)


# ---------------------------------------------------------------------- NMS


def test_nms_empty_and_limits() -> None:
    kept = grasp_nms(Grasps.empty())
    assert kept.dtype == np.int64 and kept.shape == (0,)
    rng = np.random.default_rng(2)
    g = random_grasps(rng, 50, spread=1.0)
    all_kept = grasp_nms(g)
    assert len(grasp_nms(g, max_keep=0)) == 0
    np.testing.assert_array_equal(grasp_nms(g, max_keep=3), all_kept[:3])
    # Threshold 0 suppresses nothing: every grasp, by descending score.
    np.testing.assert_array_equal(grasp_nms(g, threshold=0.0), np.argsort(-g.score))
    with pytest.raises(ConfigError):
        grasp_nms(g, threshold=-1.0)
    with pytest.raises(ConfigError):
        grasp_nms(g, max_keep=-1)
    assert DEFAULT_NMS_THRESHOLD == 0.02 and DEFAULT_BETA == (1.0, 0.03, 0.03)


def test_nms_ties_keep_the_lower_index() -> None:
    g = Grasps(np.zeros((3, 3)), np.tile([0, 0, 1.0], (3, 1)), np.tile([1.0, 0, 0], (3, 1)),
               0.02, score=[0.5, 0.9, 0.9])
    np.testing.assert_array_equal(grasp_nms(g), [1])


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.integers(1, 40),
       st.sampled_from([DEFAULT_BETA, (0.0, 0.03, 0.03), (2.0, 0.1, 0.0)]),
       st.floats(0.0, 0.05))
def test_nms_matches_reference(seed: int, n: int, beta: tuple[float, float, float],
                               threshold: float) -> None:
    rng = np.random.default_rng(seed)
    g = random_grasps(rng, n, spread=0.03)
    # Coarse scores create ties.
    g = Grasps(g.center, g.approach, g.closing, g.width, score=np.round(g.score, 1))
    np.testing.assert_array_equal(grasp_nms(g, threshold, beta),
                                  reference_nms(g, threshold, beta))


@st.composite
def clustered_scenes(draw: st.DrawFn) -> Grasps:
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n_cluster = draw(st.integers(1, 30))
    n_far = draw(st.integers(0, 10))
    seed_center = rng.uniform(-0.1, 0.1, 3)
    seed_approach = rng.normal(size=3)
    seed_closing = rng.normal(size=3)
    jitter = draw(st.floats(0.0, 0.01))
    centers = seed_center + rng.normal(scale=jitter, size=(n_cluster, 3))
    approach = seed_approach + rng.normal(scale=jitter * 10, size=(n_cluster, 3))
    closing = seed_closing + rng.normal(scale=jitter * 10, size=(n_cluster, 3))
    far = rng.uniform(1.0, 2.0, (n_far, 3)) * rng.choice([-1.0, 1.0], (n_far, 3))
    assume(np.all(np.linalg.norm(approach, axis=1) > 0.1))
    return Grasps(
        np.concatenate([centers, far]),
        np.concatenate([approach, rng.normal(size=(n_far, 3))]),
        np.concatenate([closing, rng.normal(size=(n_far, 3))]),
        0.03,
        score=rng.random(n_cluster + n_far),
    )


@SETTINGS
@given(clustered_scenes(), st.floats(0.005, 0.05))
def test_nms_properties(g: Grasps, threshold: float) -> None:
    kept = grasp_nms(g, threshold)
    assert kept[0] == int(np.argmax(g.score))
    assert len(set(kept.tolist())) == len(kept)
    np.testing.assert_array_equal(g.score[kept], np.sort(g.score[kept])[::-1])
    dist = pairwise_grasp_distance(g, g)
    kept_dist = dist[np.ix_(kept, kept)]
    off_diagonal = ~np.eye(len(kept), dtype=bool)
    assert np.all(kept_dist[off_diagonal] >= threshold)
    suppressed = np.setdiff1d(np.arange(len(g)), kept)
    for i in suppressed:
        close = kept[dist[i, kept] < threshold]
        assert close.size > 0
        assert np.any(g.score[close] >= g.score[i])


def test_nms_cluster_collapses_to_one() -> None:
    rng = np.random.default_rng(3)
    n = 200
    centers = rng.normal(scale=0.001, size=(n, 3))
    approach = np.array([0.0, 0.0, 1.0]) + rng.normal(scale=0.01, size=(n, 3))
    closing = np.array([1.0, 0.0, 0.0]) + rng.normal(scale=0.01, size=(n, 3))
    g = Grasps(centers, approach, closing, 0.03, score=rng.random(n))
    np.testing.assert_array_equal(grasp_nms(g), [int(np.argmax(g.score))])


def test_far_apart_grasps_are_all_kept() -> None:
    grid = np.stack(np.meshgrid(*[np.arange(4) * 0.1] * 3), axis=-1).reshape(-1, 3)
    g = Grasps(grid, np.tile([0, 0, 1.0], (64, 1)), np.tile([1.0, 0, 0], (64, 1)), 0.02,
               score=np.linspace(0, 1, 64))
    np.testing.assert_array_equal(grasp_nms(g), np.arange(64)[::-1])


# --------------------------------------- numba kernel: identical to the KD-tree/numpy version


def _nms_set(rng: np.random.Generator, n: int, spread: float) -> Grasps:
    """Random grasps with exact duplicates, near-duplicates and coarse (tied) scores."""
    g = random_grasps(rng, n, spread)
    dup = rng.choice(n, n // 5, replace=False)
    src = rng.choice(n, n // 5)
    center, approach, closing = g.center.copy(), g.approach.copy(), g.closing.copy()
    center[dup], approach[dup], closing[dup] = center[src], approach[src], closing[src]
    near = rng.choice(n, n // 5, replace=False)
    center[near] += rng.normal(scale=1e-3, size=(len(near), 3))
    return Grasps(center, approach, closing, g.width, score=np.round(rng.random(n), 1))


@pytest.mark.parametrize("beta", [DEFAULT_BETA, (0.0, 0.03, 0.03), (2.0, 0.1, 0.0),
                                  (1.0, 0.0, 0.0), (1e-300, 0.03, 0.03)])
@pytest.mark.parametrize("max_keep", [None, 0, 1, 7])
def test_nms_equals_numpy_version(beta: tuple[float, float, float], max_keep: int | None
                                  ) -> None:
    rng = np.random.default_rng(11)
    for n, spread in ((1, 0.1), (2, 0.001), (60, 0.02), (600, 0.1), (1000, 0.3)):
        g = _nms_set(rng, n, spread)
        for threshold in (0.0, 0.005, 0.02, 0.1, 10.0):
            got = grasp_nms(g, threshold, beta, max_keep)
            want = numpy_grasp_nms(g, threshold, beta, max_keep)
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, want)


@needs_numba
def test_nms_kernel_decides_random_sets_itself() -> None:
    rng = np.random.default_rng(5)
    g = _nms_set(rng, 800, 0.1)
    data = np.concatenate([g.center, g.approach, g.closing], axis=1)
    order = np.argsort(-g.score, kind="stable")
    keep, decided = grasp_nms_kernel(data, order, 800, 0.02, 1.0, 0.03 / np.pi, 0.03 / np.pi)
    assert decided  # no fallback: the kernel alone matches the numpy version
    np.testing.assert_array_equal(keep, numpy_grasp_nms(g, 0.02))


def test_nms_borderline_pairs_equal_numpy_version() -> None:
    # Centres 0.25 m apart, same orientation: D = 0.25 = threshold exactly (not suppressed),
    # and the squared centre distance equals (threshold / β1)²: the kernel hands such calls
    # to the numpy version.
    center = np.array([[0.0, 0.0, 0.0], [0.25, 0.0, 0.0], [0.0, 0.125, 0.0]])
    g = Grasps(center, np.tile([0, 0, 1.0], (3, 1)), np.tile([1.0, 0, 0], (3, 1)), 0.02,
               score=[0.9, 0.8, 0.7])
    for threshold in (0.125, 0.25, 0.26):
        np.testing.assert_array_equal(grasp_nms(g, threshold, (1.0, 0.03, 0.03)),
                                      numpy_grasp_nms(g, threshold, (1.0, 0.03, 0.03)))
    if NUMBA_AVAILABLE:
        data = np.concatenate([g.center, g.approach, g.closing], axis=1)
        _, decided = grasp_nms_kernel(data, np.arange(3), 3, 0.25, 1.0, 0.0, 0.0)
        assert not decided


def test_numpy_nms_validates_like_grasp_nms() -> None:
    g = one([0, 0, 0], [1, 0, 0], [0, 1, 0])
    for kwargs in ({"threshold": -1.0}, {"max_keep": -1}, {"beta": (1.0, 0.03)}):
        with pytest.raises(ConfigError):
            numpy_grasp_nms(g, **kwargs)
