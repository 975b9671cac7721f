"""Tests of the bin + residual encoding (gpr_ros.core.grasp.bins, Eq. 3 and Eq. 4)."""

from __future__ import annotations

import json
import math

from hypothesis import assume, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from gpr_ros.core.errors import ConfigError, GeometryError
from gpr_ros.core.grasp import (
    BIN_KEYS,
    BinConfig,
    BinSpec,
    Grasps,
    grasp_angles,
)

SETTINGS = settings(max_examples=80, deadline=None)

specs = st.builds(
    BinSpec,
    start=st.floats(-10.0, 10.0),
    size=st.floats(1e-3, 2.0),
    count=st.integers(1, 40),
    periodic=st.booleans(),
)


# ---------------------------------------------------------------------- BinSpec


def test_hand_computed_encoding() -> None:
    spec = BinSpec(0.0, 0.01, 10)
    bins, res = spec.encode([0.023, 0.0, 0.0999, 0.005])
    np.testing.assert_array_equal(bins, [2, 0, 9, 0])
    np.testing.assert_allclose(res, [-0.2, -0.5, 0.49, 0.0], atol=1e-9)
    assert bins.dtype == np.int64 and res.dtype == np.float64
    np.testing.assert_allclose(spec.decode(bins, res), [0.023, 0.0, 0.0999, 0.005], atol=1e-15)
    assert spec.end == pytest.approx(0.1)
    assert spec.period == pytest.approx(0.1)


def test_scalar_encoding_keeps_shape() -> None:
    bins, res = BinSpec(-1.0, 0.5, 4).encode(0.3)
    assert bins.shape == res.shape == ()
    assert int(bins) == 2 and float(res) == pytest.approx(0.1)


@SETTINGS
@given(specs, st.floats(0.0, 1.0, exclude_max=True))
def test_in_range_round_trip_and_residual_range(spec: BinSpec, fraction: float) -> None:
    value = spec.start + fraction * spec.period
    assume(value < spec.end)
    bins, res = spec.encode(value)
    assert 0 <= int(bins) < spec.count
    assert -0.5 <= float(res) < 0.5
    error = float(spec.decode(bins, res)) - value
    if spec.periodic:  # a value a rounding error below `end` may come back as `start`
        error = math.remainder(error, spec.period)
    assert abs(error) <= 1e-9 * max(1.0, abs(value))


@pytest.mark.parametrize("periodic", [False, True])
def test_a_value_just_below_the_end_stays_in_range(periodic: bool) -> None:
    # (value - start) / size rounds up to exactly `count` here (hypothesis found it)
    spec = BinSpec(0.0, 1.505525764226788, 17, periodic)
    value = 0.9999999999999999 * spec.period
    assert value < spec.end and value / spec.size == 17.0
    bins, res = spec.encode(value)
    assert -0.5 <= float(res) < 0.5
    decoded = float(spec.decode(bins, res))
    if periodic:  # the same angle as `start`
        assert int(bins) == 0 and decoded == spec.start
    else:
        assert int(bins) == 16 and decoded == pytest.approx(value, abs=1e-12)


@SETTINGS
@given(specs, st.integers(0, 40))
def test_bin_edges_have_residual_in_range(spec: BinSpec, k: int) -> None:
    assume(k < spec.count)
    value = spec.start + k * spec.size
    bins, res = spec.encode(value)
    assert -0.5 <= float(res) < 0.5
    assert int(bins) in (k - 1, k) if k > 0 else int(bins) == 0


@SETTINGS
@given(specs.filter(lambda s: not s.periodic), st.floats(0.01, 100.0), st.booleans())
def test_out_of_range_values_are_clipped_and_lossless(spec: BinSpec, beyond: float,
                                                      above: bool) -> None:
    value = spec.end + beyond if above else spec.start - beyond
    bins, res = spec.encode(value)
    assert int(bins) == (spec.count - 1 if above else 0)
    assert float(res) >= 0.5 if above else float(res) < -0.5
    assert float(spec.decode(bins, res)) == pytest.approx(value, rel=1e-9, abs=1e-9)


@SETTINGS
@given(specs.filter(lambda s: s.periodic), st.floats(0.0, 1.0, exclude_max=True),
       st.integers(-3, 3))
def test_periodic_wrap(spec: BinSpec, fraction: float, turns: int) -> None:
    value = spec.start + fraction * spec.period
    assume(value < spec.end)
    bins, res = spec.encode(value)
    bins2, res2 = spec.encode(value + turns * spec.period)
    decoded = float(spec.decode(bins2, res2))
    assert spec.start <= decoded < spec.end
    # Same point on the circle (the bin may differ only at the wrap-around seam).
    phase = 2 * np.pi * (decoded - value) / spec.period
    assert abs(np.angle(np.exp(1j * phase))) < 1e-7
    if abs(float(res2) - float(res)) < 0.25:
        assert int(bins) == int(bins2)


def test_theta_periodic_examples() -> None:
    cfg = BinConfig()
    bins, res = cfg.theta1.encode([-0.1, 2 * np.pi + 0.1, 2 * np.pi])
    np.testing.assert_array_equal(bins, [11, 0, 0])
    np.testing.assert_allclose(cfg.theta1.decode(bins, res), [2 * np.pi - 0.1, 0.1, 0.0],
                               atol=1e-12)
    bins, res = cfg.theta3.encode([np.pi / 2, -np.pi / 2 - 0.01, np.pi / 2 - 0.01])
    np.testing.assert_array_equal(bins, [0, 11, 11])
    np.testing.assert_allclose(
        cfg.theta3.decode(bins, res), [-np.pi / 2, np.pi / 2 - 0.01, np.pi / 2 - 0.01],
        atol=1e-12,
    )
    # A residual past the last bin wraps to the start on decode.
    assert float(cfg.theta1.decode(11, 0.75)) == pytest.approx(np.pi / 24)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start": 0.0, "size": 0.0, "count": 3},
        {"start": 0.0, "size": -1.0, "count": 3},
        {"start": 0.0, "size": 1.0, "count": 0},
        {"start": 0.0, "size": 1.0, "count": 2.5},
        {"start": 0.0, "size": 1.0, "count": True},
        {"start": math.nan, "size": 1.0, "count": 3},
        {"start": "0", "size": 1.0, "count": 3},
        {"start": 0.0, "size": math.inf, "count": 3},
        {"start": 0.0, "size": 1.0, "count": 3, "periodic": "yes"},
    ],
)
def test_invalid_bin_spec_raises_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        BinSpec(**kwargs)  # type: ignore[arg-type]


def test_bin_spec_coerces_numeric_types() -> None:
    spec = BinSpec(np.float32(1.0), 1, np.int64(3))
    assert isinstance(spec.start, float) and isinstance(spec.count, int)
    assert BinSpec(0, 1.0, 3.0).count == 3  # type: ignore[arg-type]


def test_decode_rejects_bad_bins_and_residuals() -> None:
    spec = BinSpec(0.0, 1.0, 3)
    with pytest.raises(GeometryError, match="bins"):
        spec.decode([3], [0.0])
    with pytest.raises(GeometryError, match="bins"):
        spec.decode([-1], [0.0])
    with pytest.raises(GeometryError, match="integers"):
        spec.decode([1.0], [0.0])
    with pytest.raises(GeometryError, match="finite"):
        spec.decode([1], [np.nan])
    with pytest.raises(GeometryError, match="finite"):
        spec.encode([np.inf])


# ---------------------------------------------------------------------- BinConfig


def test_default_config_matches_the_paper_setup() -> None:
    cfg = BinConfig()
    for spec in (cfg.x, cfg.y, cfg.z):
        assert (spec.start, spec.size, spec.count, spec.periodic) == (-0.05, 0.01, 10, False)
    assert (cfg.width.start, cfg.width.size, cfg.width.count) == (0.0, 0.005, 10)
    assert cfg.width.end == pytest.approx(0.05)
    assert cfg.theta1.count == 12 and cfg.theta1.periodic
    assert cfg.theta1.size == pytest.approx(np.deg2rad(30))
    assert cfg.theta2.count == 6 and not cfg.theta2.periodic
    assert cfg.theta2.end == pytest.approx(np.pi / 2)
    assert cfg.theta3.start == pytest.approx(-np.pi / 2) and cfg.theta3.count == 12
    assert cfg.theta3.period == pytest.approx(np.pi) and cfg.theta3.periodic


def test_config_dict_round_trip_is_json_safe() -> None:
    cfg = BinConfig(width=BinSpec(0.0, 0.004, 20))
    data = json.loads(json.dumps(cfg.to_dict()))
    assert set(data) == set(BIN_KEYS)
    assert BinConfig.from_dict(data) == cfg
    assert BinConfig.from_dict({}) == BinConfig()
    assert BinConfig.from_dict({"x": {"start": -0.1, "size": 0.02, "count": 10}}).x.count == 10


@pytest.mark.parametrize(
    "data",
    [
        {"alpha": {"start": 0.0, "size": 1.0, "count": 1}},
        {"x": {"start": 0.0, "size": 1.0}},
        {"x": {"start": 0.0, "size": 1.0, "count": 2, "bogus": 1}},
        {"x": [0.0, 1.0, 2]},
        {"theta1": {"start": 0.0, "size": 0.5, "count": 12, "periodic": True}},
        {"theta3": {"start": 0.0, "size": 1.0, "count": 12, "periodic": True}},
        {"theta2": {"start": 0.0, "size": 0.5, "count": 12, "periodic": True}},
    ],
)
def test_invalid_config_dicts_raise(data: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        BinConfig.from_dict(data)  # type: ignore[arg-type]


def test_config_rejects_non_spec_fields() -> None:
    with pytest.raises(ConfigError):
        BinConfig(x=(0.0, 1.0, 3))  # type: ignore[arg-type]


@st.composite
def grasps_near_points(draw: st.DrawFn) -> tuple[np.ndarray, Grasps]:
    size = draw(st.integers(1, 6))
    unit = st.floats(-1.0, 1.0)
    points = np.array([[draw(unit) for _ in range(3)] for _ in range(size)])
    offsets = np.array([[draw(st.floats(-0.0499, 0.0499)) for _ in range(3)]
                        for _ in range(size)])
    t1 = np.array([draw(st.floats(0.0, 2 * np.pi)) for _ in range(size)])
    t2 = np.array([draw(st.floats(np.deg2rad(1.0), np.deg2rad(85.0))) for _ in range(size)])
    n = np.stack([np.sin(t2) * np.cos(t1), np.sin(t2) * np.sin(t1), np.cos(t2)], axis=1)
    r = np.array([[draw(unit) for _ in range(3)] for _ in range(size)])
    r = r - np.sum(r * n, axis=1)[:, None] * n
    assume(np.all(np.linalg.norm(r, axis=1) > 0.1))
    width = np.array([draw(st.floats(0.0, 0.0499)) for _ in range(size)])
    return points, Grasps(points + offsets, n, r, width)


@SETTINGS
@given(grasps_near_points())
def test_encode_decode_grasps_round_trip(case: tuple[np.ndarray, Grasps]) -> None:
    points, grasps = case
    cfg = BinConfig()
    encoded = cfg.encode_grasps(points, grasps)
    assert set(encoded) == set(BIN_KEYS)
    for key, (bins, res) in encoded.items():
        spec = cfg.spec(key)
        assert bins.shape == res.shape == (len(grasps),)
        assert np.all((bins >= 0) & (bins < spec.count))
        assert np.all((res >= -0.5) & (res < 0.5)), key
    decoded = cfg.decode_grasps(points, encoded)
    np.testing.assert_allclose(decoded.center, grasps.center, atol=1e-9)
    np.testing.assert_allclose(decoded.width, grasps.width, atol=1e-12)
    np.testing.assert_allclose(decoded.approach, grasps.approach, atol=1e-9)
    np.testing.assert_allclose(
        np.abs(np.sum(decoded.closing * grasps.closing, axis=1)), 1.0, atol=1e-9
    )
    a, b = grasp_angles(decoded), grasp_angles(grasps)
    np.testing.assert_allclose(np.exp(1j * a[:, 0]), np.exp(1j * b[:, 0]), atol=1e-9)
    np.testing.assert_allclose(a[:, 1], b[:, 1], atol=1e-9)
    np.testing.assert_allclose(np.exp(2j * a[:, 2]), np.exp(2j * b[:, 2]), atol=1e-9)


def test_encode_offset_is_centre_minus_point() -> None:
    cfg = BinConfig()
    grasps = Grasps([[0.013, 0.0, 0.0]], [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]], [0.021])
    encoded = cfg.encode_grasps(np.zeros((1, 3)), grasps)
    # 0.013 - (-0.05) = 0.063 -> bin 6, residual (0.063 - 0.06 - 0.005) / 0.01 = -0.2
    assert int(encoded["x"][0][0]) == 6
    assert float(encoded["x"][1][0]) == pytest.approx(-0.2)
    assert int(encoded["width"][0][0]) == 4
    assert float(encoded["width"][1][0]) == pytest.approx(-0.3)


def test_decode_grasps_clips_negative_width_and_checks_input() -> None:
    cfg = BinConfig()
    points = np.zeros((1, 3))
    grasps = Grasps([[0.0, 0.0, 0.0]], [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]], [0.001])
    encoded = cfg.encode_grasps(points, grasps)
    encoded["width"] = (encoded["width"][0], np.array([-3.0]))
    assert cfg.decode_grasps(points, encoded).width[0] == 0.0
    with pytest.raises(GeometryError, match="missing"):
        cfg.decode_grasps(points, {k: v for k, v in encoded.items() if k != "theta3"})
    with pytest.raises(GeometryError, match="shape"):
        cfg.decode_grasps(np.zeros((2, 3)), encoded)
    with pytest.raises(GeometryError, match="points"):
        cfg.encode_grasps(np.zeros((2, 3)), grasps)
