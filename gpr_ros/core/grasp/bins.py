"""Bin + residual encoding of grasp parameters (GPR, Sec. V-A, Eq. 3 and Eq. 4).

A :class:`BinSpec` splits ``[start, start + count * size)`` into ``count`` bins of width
``size``. A value v is encoded as

- bin = floor((v - start) / size), clipped to [0, count - 1];
- res = (v - start - bin·size - size/2) / size, the residual relative to the bin centre,
  normalized by the bin size: in [-0.5, 0.5) for values inside the range.

For a periodic spec (period = count·size) v is first wrapped into [start, start + period).
For a non-periodic spec a value outside the range falls into the first or last bin and its
residual lies outside [-0.5, 0.5), so the encoding stays lossless. Decoding is
v = start + (bin + 0.5 + res)·size (wrapped for periodic specs).

:class:`BinConfig` holds one spec per grasp parameter (paper-style defaults):

- x, y, z: the offset of the grasp centre from the point that predicts it, centre - point,
  search range S = 0.05 m: start -S, bins of 0.01 m, 10 bins;
- width ω: start 0, bins of 0.005 m, 10 bins (0-50 mm);
- θ1: start 0, 12 bins of 30°, periodic (2π);
- θ2: start 0, 6 bins of 15° (0-90°);
- θ3: start -π/2, 12 bins of 15°, periodic (π).

Angles are those of :mod:`gpr_ros.core.grasp.angles`. The paper's Eq. 4 writes the offset as
point - centre + S; here the offset is centre - point with start -S, which spans the same
symmetric range and is the direction the decoder adds to the point.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gpr_ros.core.errors import ConfigError, GeometryError
from gpr_ros.core.grasp.angles import grasp_angles, grasps_from_angles
from gpr_ros.core.grasp.grasps import Grasps, _as_finite, _as_float_array
from gpr_ros.core.validation import real as _real

__all__ = [
    "BIN_KEYS",
    "DEFAULT_OFFSET_BIN_SIZE",
    "DEFAULT_SEARCH_RANGE",
    "BinConfig",
    "BinSpec",
    "Encoded",
]

#: The keys of :meth:`BinConfig.encode_grasps`, in order.
BIN_KEYS = ("x", "y", "z", "width", "theta1", "theta2", "theta3")
#: Default search range S of the centre offsets, m.
DEFAULT_SEARCH_RANGE = 0.05
#: Default bin size of the centre offsets, m.
DEFAULT_OFFSET_BIN_SIZE = 0.01

#: One encoded parameter: (bin indices int64, normalized residuals float64).
Encoded = tuple[NDArray[np.int64], NDArray[np.float64]]


def _integer(value: Any, name: str) -> int:
    number = _real(value, name)
    if number != int(number):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    return int(number)


def _check_keys(data: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown {what} key(s) {unknown}; expected a subset of {allowed}")


@dataclass(frozen=True)
class BinSpec:
    """Uniform bins over ``[start, start + count * size)``; see the module docstring.

    :ivar start: lower edge of the first bin.
    :ivar size: bin width, > 0.
    :ivar count: number of bins, >= 1.
    :ivar periodic: wrap values with period ``count * size``.
    """

    start: float
    size: float
    count: int
    periodic: bool = False

    def __post_init__(self) -> None:
        """Validate and normalize the field types.

        :raises ConfigError: if ``start``/``size`` are not finite, ``size <= 0``,
            ``count < 1`` or not an integer, or ``periodic`` is not a bool.
        """
        start = _real(self.start, "BinSpec.start")
        size = _real(self.size, "BinSpec.size")
        count = _integer(self.count, "BinSpec.count")
        if size <= 0.0:
            raise ConfigError(f"BinSpec.size must be > 0, got {size}")
        if count < 1:
            raise ConfigError(f"BinSpec.count must be >= 1, got {count}")
        if not isinstance(self.periodic, (bool, np.bool_)):
            raise ConfigError(f"BinSpec.periodic must be a bool, got {self.periodic!r}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "periodic", bool(self.periodic))

    @property
    def end(self) -> float:
        """Upper edge of the last bin, ``start + count * size``."""
        return self.start + self.count * self.size

    @property
    def period(self) -> float:
        """The span ``count * size`` (the period of a periodic spec)."""
        return self.count * self.size

    def encode(self, values: ArrayLike) -> Encoded:
        """Encode values as (bin, residual) (Eq. 3 / Eq. 4).

        :param values: values of any shape.
        :return: ``(bin, res)`` of the same shape: int64 bins in [0, count - 1] and residuals,
            in [-0.5, 0.5) for values inside the range.
        :raises GeometryError: on non-finite values.
        """
        v = _as_finite(values, "values")
        t = (v - self.start) / self.size
        if self.periodic:
            t = np.mod(t, self.count)
            # np.mod of a tiny negative number rounds up to exactly `count`.
            t = np.where(t >= self.count, 0.0, t)
        else:
            # (v - start) / size can round up to exactly `count` for a value just below `end`
            # (found by the property test): keep it in the last bin, residual below 0.5.
            t = np.where((t >= self.count) & (v < self.end), np.nextafter(self.count, 0.0), t)
        bins = np.clip(np.floor(t), 0, self.count - 1).astype(np.int64)
        # (t - bin) is exact in floating point, so in-range residuals stay in [-0.5, 0.5).
        res = (t - bins) - 0.5
        return bins, np.asarray(res, dtype=np.float64)

    def decode(self, bins: ArrayLike, res: ArrayLike) -> NDArray[np.float64]:
        """Decode (bin, residual) to values: start + (bin + 0.5 + res) * size.

        :param bins: integer bins in [0, count - 1]; broadcast against ``res``.
        :param res: normalized residuals (any finite value).
        :return: the values (wrapped into [start, end) for periodic specs).
        :raises GeometryError: on non-integer or out-of-range bins or non-finite residuals.
        """
        b = np.asarray(bins)
        if b.size and b.dtype.kind not in "iu":
            raise GeometryError(f"bins must be integers, got dtype {b.dtype}")
        if b.size and (b.min() < 0 or b.max() >= self.count):
            raise GeometryError(
                f"bins must be in [0, {self.count - 1}], got range [{b.min()}, {b.max()}]"
            )
        r = _as_finite(res, "res")
        values = self.start + (b + 0.5 + r) * self.size
        if self.periodic:
            wrapped = np.mod(values - self.start, self.period)
            values = np.where(wrapped >= self.period, 0.0, wrapped) + self.start
            # Adding `start` back can round up to `end`, the same point as `start`.
            values = np.where(values >= self.end, self.start, values)
        return np.asarray(values, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """Return a plain dict (JSON/checkpoint friendly).

        :return: ``{"start", "size", "count", "periodic"}``.
        """
        return {
            "start": self.start,
            "size": self.size,
            "count": self.count,
            "periodic": self.periodic,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BinSpec:
        """Build from :meth:`to_dict` output.

        :param data: mapping with ``start``, ``size``, ``count`` and optional ``periodic``.
        :return: the spec.
        :raises ConfigError: on missing, unknown or invalid keys.
        """
        _check_keys(data, ("start", "size", "count", "periodic"), "BinSpec")
        missing = [k for k in ("start", "size", "count") if k not in data]
        if missing:
            raise ConfigError(f"BinSpec is missing key(s) {missing}")
        return cls(data["start"], data["size"], data["count"], data.get("periodic", False))


_DEFAULT_OFFSET_SPEC = BinSpec(
    -DEFAULT_SEARCH_RANGE,
    DEFAULT_OFFSET_BIN_SIZE,
    round(2 * DEFAULT_SEARCH_RANGE / DEFAULT_OFFSET_BIN_SIZE),
)


@dataclass(frozen=True)
class BinConfig:
    """Bin specifications of the 7-DoF grasp parameters (defaults: see the module docstring).

    :ivar x: centre offset x (centre - point), m.
    :ivar y: centre offset y, m.
    :ivar z: centre offset z, m.
    :ivar width: opening width, m.
    :ivar theta1: approach azimuth, rad; if periodic its period must be 2π.
    :ivar theta2: approach angle from +Z, rad; must not be periodic.
    :ivar theta3: closing azimuth, rad; if periodic its period must be π.
    """

    x: BinSpec = _DEFAULT_OFFSET_SPEC
    y: BinSpec = _DEFAULT_OFFSET_SPEC
    z: BinSpec = _DEFAULT_OFFSET_SPEC
    width: BinSpec = BinSpec(0.0, 0.005, 10)
    theta1: BinSpec = BinSpec(0.0, math.pi / 6.0, 12, periodic=True)
    theta2: BinSpec = BinSpec(0.0, math.pi / 12.0, 6)
    theta3: BinSpec = BinSpec(-math.pi / 2.0, math.pi / 12.0, 12, periodic=True)

    def __post_init__(self) -> None:
        """Check the field types and the periods of the angle specs.

        :raises ConfigError: if a field is not a :class:`BinSpec` or an angle period is wrong.
        """
        for f in fields(self):
            if not isinstance(getattr(self, f.name), BinSpec):
                raise ConfigError(
                    f"BinConfig.{f.name} must be a BinSpec, got {type(getattr(self, f.name))}"
                )
        for name, period in (("theta1", 2.0 * math.pi), ("theta3", math.pi)):
            spec: BinSpec = getattr(self, name)
            if spec.periodic and not math.isclose(spec.period, period, rel_tol=1e-9):
                raise ConfigError(
                    f"BinConfig.{name} is periodic, so count * size must be {period:.9g}, "
                    f"got {spec.period:.9g}"
                )
        if self.theta2.periodic:
            raise ConfigError("BinConfig.theta2 must not be periodic (theta2 is in [0, pi/2])")

    def spec(self, key: str) -> BinSpec:
        """Return the spec of one of :data:`BIN_KEYS`.

        :param key: the parameter name.
        :return: its spec.
        :raises KeyError: for an unknown key.
        """
        if key not in BIN_KEYS:
            raise KeyError(f"unknown bin key {key!r}; expected one of {BIN_KEYS}")
        result: BinSpec = getattr(self, key)
        return result

    def encode_grasps(
        self, points: ArrayLike, grasps: Grasps, clip: bool = False
    ) -> dict[str, Encoded]:
        """Encode one grasp per point as bin classification and residual targets.

        :param points: (N, 3) points, expressed in the same frame as ``grasps`` (the angle
            frame: +Z is the camera's optical axis).
        :param grasps: N grasps; grasp i is encoded relative to point i.
        :param clip: passed to :func:`~gpr_ros.core.grasp.angles.approach_to_angles`.
        :return: ``{key: (bin, res)}`` for every key of :data:`BIN_KEYS`, each array (N,).
        :raises GeometryError: on shape mismatches or grasps that the angles cannot represent.
        """
        pts = _as_float_array(points, "points", (len(grasps), 3))
        offsets = grasps.center - pts
        angles = grasp_angles(grasps, clip=clip)
        values = {
            "x": offsets[:, 0],
            "y": offsets[:, 1],
            "z": offsets[:, 2],
            "width": grasps.width,
            "theta1": angles[:, 0],
            "theta2": angles[:, 1],
            "theta3": angles[:, 2],
        }
        return {key: self.spec(key).encode(values[key]) for key in BIN_KEYS}

    def decode_grasps(
        self,
        points: ArrayLike,
        encoded: Mapping[str, tuple[ArrayLike, ArrayLike]],
        score: ArrayLike | None = None,
        stage: ArrayLike | None = None,
    ) -> Grasps:
        """Decode grasps from per-point bins and residuals (inverse of :meth:`encode_grasps`).

        Decoded widths below 0 are clipped to 0. A θ2 decoded beyond π/2 (a residual past the
        last bin) gives an approach with n_z < 0, which is kept.

        :param points: (N, 3) points.
        :param encoded: ``{key: (bin, res)}`` for every key of :data:`BIN_KEYS`, arrays (N,).
        :param score: optional (N,) scores of the decoded grasps.
        :param stage: optional ``STAGE_*`` values.
        :return: N grasps (without contacts).
        :raises GeometryError: on missing keys, shape mismatches or invalid bins.
        """
        missing = [k for k in BIN_KEYS if k not in encoded]
        if missing:
            raise GeometryError(f"encoded grasps are missing key(s) {missing}")
        pts = _as_float_array(points, "points", (None, 3))
        n = len(pts)
        values = {}
        for key in BIN_KEYS:
            bins, res = encoded[key]
            decoded = self.spec(key).decode(bins, res)
            if decoded.shape != (n,):
                raise GeometryError(
                    f"encoded {key!r} must decode to shape ({n},), got {decoded.shape}"
                )
            values[key] = decoded
        center = pts + np.stack([values["x"], values["y"], values["z"]], axis=1)
        angles = np.stack([values["theta1"], values["theta2"], values["theta3"]], axis=1)
        width = np.maximum(values["width"], 0.0)
        return grasps_from_angles(center, angles, width, score=score, stage=stage)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Return a plain nested dict (JSON/checkpoint friendly).

        :return: ``{key: BinSpec.to_dict()}`` for every key of :data:`BIN_KEYS`.
        """
        return {key: self.spec(key).to_dict() for key in BIN_KEYS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> BinConfig:
        """Build from :meth:`to_dict` output; missing keys take their defaults.

        :param data: ``{key: {"start", "size", "count", "periodic"}}``.
        :return: the config.
        :raises ConfigError: on unknown keys or invalid specs.
        """
        _check_keys(data, BIN_KEYS, "BinConfig")
        return cls(**{key: BinSpec.from_dict(value) for key, value in data.items()})
