"""A simulated structured-light depth camera (PhoXi-like) built on MuJoCo ray casting.

The paper (Sec. IV-B, VI-C) observes the bin from a camera about 1.3 m above it (a PhoXi
industrial structured-light scanner on the real robot) and crops the point cloud to the bin.
Here depth is computed headless with :func:`mujoco.mj_multiRay`: one ray from the camera
centre through the centre of each pixel, no OpenGL.

Frames and conventions

- Camera optical frame (REP 103, ``*_optical_frame``): origin at the camera centre, +Z forward
  into the scene along the optical axis, +X to the right of the image, +Y down the image.
- ``T_world_camera`` (4x4) maps optical-frame coordinates to world coordinates:
  ``p_world = R p_cam + t`` with ``t = CameraConfig.position`` and the columns of
  ``R = CameraConfig.rotation()`` the optical X, Y, Z axes expressed in the world.
- The camera pose is a look-at: Z points from ``position`` to ``target`` and the top of the
  image (−Y) points as close as possible to the world direction ``up``. The default camera
  looks straight down from (0, 0, 1.3) m with optical X = world +X, optical Y = world −Y.
- Pixels: column u (0 … width − 1, rightwards), row v (0 … height − 1, downwards); the centre
  of pixel (u, v) sits at image coordinates (u, v) (OpenCV convention), so the pinhole model
  is ``u = fx·x/z + cx``, ``v = fy·y/z + cy``. A flat pixel index is ``v·width + u``.
- Depth is the distance along the optical axis (the z coordinate in the optical frame), in
  metres; NaN marks pixels without a valid measurement.

Noise (:class:`NoiseConfig`, :func:`apply_noise`) imitates a structured-light sensor: depth
noise growing with z², random dropouts, dropouts at grazing incidence and at depth
discontinuities, and projector shadows (surfaces that the camera sees but the projector, offset
by a baseline, does not light; :func:`projector_shadow_mask`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import math
from typing import Any

import mujoco
import numpy as np
from numpy.typing import ArrayLike, NDArray

from gpr_ros.core.errors import ConfigError, GeometryError
from gpr_ros.core.sim.errors import SimulationError
from gpr_ros.core.validation import (
    boolean as _boolean,
)
from gpr_ros.core.validation import (
    config_from_dict as _config_from_dict,
)
from gpr_ros.core.validation import (
    config_to_dict as _config_to_dict,
)
from gpr_ros.core.validation import (
    integer as _integer,
)
from gpr_ros.core.validation import (
    non_negative as _non_negative,
)
from gpr_ros.core.validation import (
    positive as _positive,
)
from gpr_ros.core.validation import (
    probability as _probability,
)
from gpr_ros.core.validation import (
    real as _real,
)
from gpr_ros.core.validation import (
    vector3 as _vector3,
)

__all__ = [
    "SHADOW_TOLERANCE",
    "CameraConfig",
    "DepthImage",
    "NoiseConfig",
    "Observation",
    "PixelWindow",
    "RoiBox",
    "apply_noise",
    "camera_pose_xyzquat",
    "capture",
    "crop_to_roi",
    "depth_to_points",
    "image_window",
    "projector_shadow_mask",
    "render_depth",
]

#: A projector ray that hits something this much closer than the camera's hit point marks
#: that point as shadowed, m (absorbs round-off of the two ray casts).
SHADOW_TOLERANCE = 5e-4


# ---------------------------------------------------------------------- validation helpers


def _normalized(vector: NDArray[np.float64]) -> NDArray[np.float64] | None:
    norm = float(np.linalg.norm(vector))
    if norm < 1e-9:
        return None
    return vector / norm


# ---------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class CameraConfig:
    """Intrinsics, pose and working range of a pinhole depth camera.

    The defaults approximate a Photoneo PhoXi 3D Scanner L in its standard 1032 x 772 mode:
    fx = fy = 1100 px is an estimate from the published scan area (about 1.2 m wide at the
    1.24 m sweet spot), not a calibration; the depth range is the L model's 0.87–2.16 m
    scanning range. At 1.3 m one pixel spans about 1.2 mm, so a 0.30 m bin covers about
    250 x 250 pixels.

    :ivar width: image width, pixels.
    :ivar height: image height, pixels.
    :ivar fx: focal length along u, pixels.
    :ivar fy: focal length along v, pixels.
    :ivar cx: principal point u; ``None`` means the image centre ``(width − 1) / 2``.
    :ivar cy: principal point v; ``None`` means the image centre ``(height − 1) / 2``.
    :ivar position: camera centre in the world, m (default 1.3 m above the bin floor centre).
    :ivar target: world point on the optical axis (look-at), m.
    :ivar up: world direction that the top of the image (optical −Y) points towards as closely
        as possible; must not be parallel to the optical axis.
    :ivar min_depth: nearest measurable depth, m.
    :ivar max_depth: farthest measurable depth, m.
    """

    width: int = 1032
    height: int = 772
    fx: float = 1100.0
    fy: float = 1100.0
    cx: float | None = None
    cy: float | None = None
    position: tuple[float, float, float] = (0.0, 0.0, 1.3)
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    min_depth: float = 0.87
    max_depth: float = 2.16

    def __post_init__(self) -> None:
        """Validate and normalise the values.

        :raises ConfigError: on a non-positive size or focal length, a degenerate pose or an
            empty depth range.
        """
        setter = object.__setattr__
        setter(self, "width", _integer(self.width, "CameraConfig.width", 1))
        setter(self, "height", _integer(self.height, "CameraConfig.height", 1))
        setter(self, "fx", _positive(self.fx, "CameraConfig.fx"))
        setter(self, "fy", _positive(self.fy, "CameraConfig.fy"))
        cx = 0.5 * (self.width - 1) if self.cx is None else _real(self.cx, "CameraConfig.cx")
        cy = 0.5 * (self.height - 1) if self.cy is None else _real(self.cy, "CameraConfig.cy")
        setter(self, "cx", cx)
        setter(self, "cy", cy)
        for name in ("position", "target", "up"):
            setter(self, name, _vector3(getattr(self, name), f"CameraConfig.{name}"))
        setter(self, "min_depth", _positive(self.min_depth, "CameraConfig.min_depth"))
        setter(self, "max_depth", _positive(self.max_depth, "CameraConfig.max_depth"))
        if self.max_depth <= self.min_depth:
            raise ConfigError(
                f"CameraConfig.max_depth ({self.max_depth}) must exceed min_depth "
                f"({self.min_depth})"
            )
        self.rotation()  # raises on a degenerate look-at

    def rotation(self) -> NDArray[np.float64]:
        """Return R_world_camera, the optical axes as columns in world coordinates.

        :return: (3, 3) rotation matrix.
        :raises ConfigError: if ``target`` equals ``position`` or ``up`` is parallel to the
            optical axis.
        """
        z = _normalized(np.subtract(self.target, self.position, dtype=np.float64))
        if z is None:
            raise ConfigError("CameraConfig.target must differ from CameraConfig.position")
        up = np.asarray(self.up, dtype=np.float64)
        down = _normalized(-(up - float(np.dot(up, z)) * z))
        if down is None:
            raise ConfigError(
                f"CameraConfig.up {self.up} must not be zero or parallel to the optical axis"
            )
        x = np.cross(down, z)
        return np.column_stack([x, down, z])

    def pose(self) -> NDArray[np.float64]:
        """Return T_world_camera (optical frame to world).

        :return: (4, 4) homogeneous transform.
        """
        transform = np.eye(4)
        transform[:3, :3] = self.rotation()
        transform[:3, 3] = self.position
        return transform

    @property
    def principal_point(self) -> tuple[float, float]:
        """The resolved principal point (cx, cy), pixels."""
        assert self.cx is not None and self.cy is not None  # resolved in __post_init__
        return (self.cx, self.cy)

    def intrinsics(self) -> NDArray[np.float64]:
        """Return the 3x3 pinhole matrix K.

        :return: ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
        """
        cx, cy = self.principal_point
        return np.array([[self.fx, 0.0, cx], [0.0, self.fy, cy], [0.0, 0.0, 1.0]])

    def project(self, points_world: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Project world points to continuous pixel coordinates.

        :param points_world: (..., 3) points in the world, m.
        :return: ``(uv, depth)``: (..., 2) pixel coordinates (u, v) and (...) depth along
            the optical axis; points behind the camera have depth <= 0 and meaningless uv.
        :raises GeometryError: on a wrong shape or non-finite coordinates.
        """
        points = np.asarray(points_world, dtype=np.float64)
        if points.ndim < 1 or points.shape[-1] != 3 or not np.all(np.isfinite(points)):
            raise GeometryError(f"points_world must be finite (..., 3), got {points.shape}")
        cam = (points - np.asarray(self.position)) @ self.rotation()
        z = cam[..., 2]
        k = self.intrinsics()
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.fx * cam[..., 0] / z + k[0, 2]
            v = self.fy * cam[..., 1] / z + k[1, 2]
        return np.stack([u, v], axis=-1), z

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain Python values (tuples become lists).

        :return: ``{field: value}``.
        """
        return _config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CameraConfig:
        """Build from a mapping; missing keys take their defaults.

        :param data: ``{field: value}``.
        :return: the configuration.
        :raises ConfigError: on unknown keys or invalid values.
        """
        result: CameraConfig = _config_from_dict(cls, data)
        return result


def camera_pose_xyzquat(config: CameraConfig) -> tuple[float, float, float, float, float,
                                                       float, float]:
    """Return the camera extrinsics T_world_camera as ``[x, y, z, qx, qy, qz, qw]``.

    These are the numbers a node that turns camera-frame grasps into world-frame grasps needs
    (a static camera-to-world transform), e.g. the inference node's ``camera_to_output``
    parameter in the simulated graph.

    :param config: the camera.
    :return: the optical-frame origin in the world, m, and the unit quaternion (x, y, z, w) of
        the optical frame's orientation in the world, with w >= 0.
    """
    wxyz = np.empty(4)
    mujoco.mju_mat2Quat(wxyz, np.ascontiguousarray(config.rotation()).reshape(-1))
    quat = np.array([wxyz[1], wxyz[2], wxyz[3], wxyz[0]])
    quat /= np.linalg.norm(quat)
    if quat[3] < 0.0:
        quat = -quat
    x, y, z = (float(v) + 0.0 for v in config.position)  # + 0.0 turns -0.0 into 0.0
    qx, qy, qz, qw = (float(v) + 0.0 for v in quat)
    return (x, y, z, qx, qy, qz, qw)


@dataclass(frozen=True)
class NoiseConfig:
    """Structured-light-like corruption of a clean depth image.

    Every effect can be switched off on its own; ``enabled=False`` returns clean data.

    :ivar enabled: apply any noise at all.
    :ivar sigma_constant: a in σ(z) = a + b·z², m.
    :ivar sigma_quadratic: b in σ(z) = a + b·z², 1/m. The defaults give σ(1.3 m) ≈ 1.0 mm.
    :ivar dropout_probability: probability that any valid pixel is dropped at random.
    :ivar grazing_dropout: drop pixels seen at grazing incidence.
    :ivar max_incidence_angle: incidence angle (between the viewing ray and the surface
        normal estimated from neighbouring depth pixels) above which a pixel is dropped, rad.
    :ivar projector_shadows: drop pixels that the projector cannot light.
    :ivar projector_baseline: projector offset from the camera centre along optical +X, m
        (negative values put it on the −X side).
    :ivar edge_threshold: a pixel whose depth differs from a 4-neighbour's by more than this
        lies on a depth discontinuity, m.
    :ivar edge_dropout_probability: probability that a discontinuity pixel is dropped.
    """

    enabled: bool = True
    sigma_constant: float = 0.0002
    sigma_quadratic: float = 0.0005
    dropout_probability: float = 0.01
    grazing_dropout: bool = True
    max_incidence_angle: float = math.radians(75.0)
    projector_shadows: bool = True
    projector_baseline: float = 0.2
    edge_threshold: float = 0.005
    edge_dropout_probability: float = 0.5

    def __post_init__(self) -> None:
        """Validate the values.

        :raises ConfigError: on negative noise, probabilities outside [0, 1], an incidence
            angle outside (0, π/2] or a non-positive edge threshold.
        """
        setter = object.__setattr__
        for name in ("enabled", "grazing_dropout", "projector_shadows"):
            setter(self, name, _boolean(getattr(self, name), f"NoiseConfig.{name}"))
        for name in ("sigma_constant", "sigma_quadratic"):
            setter(self, name, _non_negative(getattr(self, name), f"NoiseConfig.{name}"))
        for name in ("dropout_probability", "edge_dropout_probability"):
            setter(self, name, _probability(getattr(self, name), f"NoiseConfig.{name}"))
        angle = _positive(self.max_incidence_angle, "NoiseConfig.max_incidence_angle")
        if angle > 0.5 * math.pi:
            raise ConfigError(
                f"NoiseConfig.max_incidence_angle must be in (0, pi/2] rad, got {angle}"
            )
        setter(self, "max_incidence_angle", angle)
        setter(
            self,
            "projector_baseline",
            _real(self.projector_baseline, "NoiseConfig.projector_baseline"),
        )
        threshold = _positive(self.edge_threshold, "NoiseConfig.edge_threshold")
        setter(self, "edge_threshold", threshold)

    def sigma(self, depth: ArrayLike) -> NDArray[np.float64]:
        """Return the depth noise standard deviation σ(z) = a + b·z².

        :param depth: depths z, m, any shape.
        :return: σ of the same shape, m.
        """
        z = np.asarray(depth, dtype=np.float64)
        return self.sigma_constant + self.sigma_quadratic * z * z

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain Python values.

        :return: ``{field: value}``.
        """
        return _config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NoiseConfig:
        """Build from a mapping; missing keys take their defaults.

        :param data: ``{field: value}``.
        :return: the configuration.
        :raises ConfigError: on unknown keys or invalid values.
        """
        result: NoiseConfig = _config_from_dict(cls, data)
        return result


@dataclass(frozen=True)
class RoiBox:
    """An axis-aligned box in the world (the volume inside the bin), m.

    :ivar lower: (x, y, z) minimum corner.
    :ivar upper: (x, y, z) maximum corner; every component > the lower one.
    """

    lower: tuple[float, float, float]
    upper: tuple[float, float, float]

    def __post_init__(self) -> None:
        """Validate the corners.

        :raises ConfigError: on non-finite corners or an empty box.
        """
        object.__setattr__(self, "lower", _vector3(self.lower, "RoiBox.lower"))
        object.__setattr__(self, "upper", _vector3(self.upper, "RoiBox.upper"))
        if any(u <= lo for lo, u in zip(self.lower, self.upper, strict=True)):
            raise ConfigError(f"RoiBox.upper {self.upper} must exceed lower {self.lower}")

    def contains(self, points: ArrayLike) -> NDArray[np.bool_]:
        """Test points for lying inside the box (bounds inclusive; NaN is outside).

        :param points: (..., 3) world points, m.
        :return: (...) boolean mask.
        :raises GeometryError: if the last axis is not 3.
        """
        p = np.asarray(points, dtype=np.float64)
        if p.ndim < 1 or p.shape[-1] != 3:
            raise GeometryError(f"points must have shape (..., 3), got {p.shape}")
        inside: NDArray[np.bool_] = np.all(
            (p >= np.asarray(self.lower)) & (p <= np.asarray(self.upper)), axis=-1
        )
        return inside

    def corners(self) -> NDArray[np.float64]:
        """Return the 8 corners of the box.

        :return: (8, 3) corners.
        """
        lo, up = np.asarray(self.lower), np.asarray(self.upper)
        idx = np.array([[i >> k & 1 for k in range(3)] for i in range(8)], dtype=bool)
        return np.where(idx, up, lo)


@dataclass(frozen=True)
class PixelWindow:
    """A rectangle of image pixels: columns u0 … u0 + width − 1, rows v0 … v0 + height − 1.

    :ivar u0: first column.
    :ivar v0: first row.
    :ivar width: number of columns (may be 0).
    :ivar height: number of rows (may be 0).
    """

    u0: int
    v0: int
    width: int
    height: int

    @property
    def size(self) -> int:
        """Number of pixels in the window."""
        return self.width * self.height

    def pixel_grid(self) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Return the (height, width) column and row indices of the window's pixels.

        :return: ``(u, v)`` integer grids.
        """
        u = np.arange(self.u0, self.u0 + self.width, dtype=np.int64)
        v = np.arange(self.v0, self.v0 + self.height, dtype=np.int64)
        uu, vv = np.meshgrid(u, v)
        return uu, vv

    def flat_index(self, image_width: int) -> NDArray[np.int64]:
        """Return the (height, width) flat pixel indices ``v·image_width + u``.

        :param image_width: width of the full image, pixels.
        :return: integer grid.
        """
        uu, vv = self.pixel_grid()
        index: NDArray[np.int64] = vv * image_width + uu
        return index


@dataclass(frozen=True, eq=False)
class DepthImage:
    """A clean depth rendering of a window of the image.

    :ivar depth: (h, w) depth along the optical axis, m; NaN where nothing valid was hit.
    :ivar geom_id: (h, w) int32 MuJoCo geom id hit by each pixel's ray, −1 where none.
    :ivar points_world: (h, w, 3) hit points in the world, m; NaN where nothing was hit.
    :ivar window: the rendered pixels within the full image.
    :ivar camera: the camera that rendered it.
    """

    depth: NDArray[np.float64]
    geom_id: NDArray[np.int32]
    points_world: NDArray[np.float64]
    window: PixelWindow
    camera: CameraConfig

    @property
    def pixel_index(self) -> NDArray[np.int64]:
        """(h, w) flat pixel indices ``v·camera.width + u`` of the window."""
        return self.window.flat_index(self.camera.width)


@dataclass(frozen=True, eq=False)
class Observation:
    """A (possibly noisy) point cloud of the scene, cropped to the region of interest.

    :ivar points: (N, 3) float32 points in the camera optical frame, m (valid pixels only).
    :ivar pixel_index: (N,) int64 flat pixel index ``v·camera.width + u`` of each point.
    :ivar geom_id: (N,) int32 MuJoCo geom id each point lies on.
    :ivar object_index: (N,) int32 index of the scene object each point lies on, −1 for
        everything else (bin, floor, other bodies).
    :ivar T_world_camera: (4, 4) camera optical frame to world.
    :ivar camera: the camera configuration.
    """

    points: NDArray[np.float32]
    pixel_index: NDArray[np.int64]
    geom_id: NDArray[np.int32]
    object_index: NDArray[np.int32]
    T_world_camera: NDArray[np.float64]
    camera: CameraConfig

    def __len__(self) -> int:
        """Number of points."""
        return int(self.points.shape[0])

    def points_world(self) -> NDArray[np.float64]:
        """Return the points in the world frame.

        :return: (N, 3) float64 points, m.
        """
        points = self.points.astype(np.float64)
        result: NDArray[np.float64] = (
            points @ self.T_world_camera[:3, :3].T + self.T_world_camera[:3, 3]
        )
        return result


# ---------------------------------------------------------------------- geometry


def image_window(camera: CameraConfig, roi: RoiBox | None = None) -> PixelWindow:
    """Return the pixel rectangle whose rays can hit ``roi`` (the whole image without one).

    The rectangle bounds the projections of the box corners; if a corner lies behind or on
    the camera plane the whole image is returned.

    :param camera: the camera.
    :param roi: optional world box.
    :return: the window, clipped to the image (possibly empty).
    """
    full = PixelWindow(0, 0, camera.width, camera.height)
    if roi is None:
        return full
    uv, z = camera.project(roi.corners())
    if np.any(z <= 1e-9):
        return full
    u0 = max(0, math.floor(float(uv[:, 0].min())))
    v0 = max(0, math.floor(float(uv[:, 1].min())))
    u1 = min(camera.width - 1, math.ceil(float(uv[:, 0].max())))
    v1 = min(camera.height - 1, math.ceil(float(uv[:, 1].max())))
    if u1 < u0 or v1 < v0:
        return PixelWindow(0, 0, 0, 0)
    return PixelWindow(u0, v0, u1 - u0 + 1, v1 - v0 + 1)


def _camera_rays(camera: CameraConfig, window: PixelWindow) -> NDArray[np.float64]:
    """(h, w, 3) ray directions in the optical frame with z = 1 (so depth scales them)."""
    uu, vv = window.pixel_grid()
    rays = np.empty((window.height, window.width, 3))
    k = camera.intrinsics()
    rays[..., 0] = (uu - k[0, 2]) / camera.fx
    rays[..., 1] = (vv - k[1, 2]) / camera.fy
    rays[..., 2] = 1.0
    return rays


def depth_to_points(
    depth: ArrayLike, camera: CameraConfig, window: PixelWindow | None = None
) -> NDArray[np.float64]:
    """Back-project a depth image to points in the camera optical frame.

    :param depth: (h, w) depth along the optical axis, m (NaN stays NaN).
    :param camera: the camera.
    :param window: the pixels ``depth`` covers; ``None`` means the full image.
    :return: (h, w, 3) points ``depth · ((u − cx)/fx, (v − cy)/fy, 1)``, m.
    :raises GeometryError: if the depth shape does not match the window.
    """
    z = np.asarray(depth, dtype=np.float64)
    if window is None:
        window = PixelWindow(0, 0, camera.width, camera.height)
    if z.shape != (window.height, window.width):
        raise GeometryError(
            f"depth must have shape {(window.height, window.width)}, got {z.shape}"
        )
    return _camera_rays(camera, window) * z[..., None]


def crop_to_roi(points_world: ArrayLike, roi: RoiBox) -> NDArray[np.float64]:
    """Keep the points inside a world box.

    :param points_world: (..., 3) points in the world, m; NaN points are dropped.
    :param roi: the box.
    :return: (M, 3) points inside the box, in input order.
    :raises GeometryError: if the last axis is not 3.
    """
    points = np.asarray(points_world, dtype=np.float64)
    mask = roi.contains(points)
    return points[mask]


def _geomgroup_array(geomgroup: Sequence[int] | NDArray[Any] | None) -> NDArray[np.uint8] | None:
    if geomgroup is None:
        return None
    groups = np.asarray(geomgroup, dtype=np.uint8).reshape(-1)
    if groups.shape != (mujoco.mjNGROUP,):
        raise SimulationError(
            f"geomgroup must have {mujoco.mjNGROUP} flags (one per geom group), got {groups.shape}"
        )
    return groups


def _cast(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    origin: NDArray[np.float64],
    unit_dirs: NDArray[np.float64],
    cutoff: float,
    geomgroup: NDArray[np.uint8] | None,
    exclude_body: int,
) -> tuple[NDArray[np.float64], NDArray[np.int32]]:
    """Cast (n, 3) unit rays from one origin; distance −1 / geom −1 where nothing is hit."""
    n = unit_dirs.shape[0]
    dist = np.empty(n, dtype=np.float64)
    geom = np.empty(n, dtype=np.int32)
    if n == 0:
        return dist, geom
    mujoco.mj_multiRay(
        model,
        data,
        np.ascontiguousarray(origin, dtype=np.float64),
        np.ascontiguousarray(unit_dirs, dtype=np.float64).reshape(-1),
        geomgroup,
        1,
        int(exclude_body),
        geom,
        dist,
        None,
        n,
        float(cutoff),
    )
    return dist, geom


def render_depth(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    camera: CameraConfig,
    roi: RoiBox | None = None,
    geomgroup: Sequence[int] | NDArray[Any] | None = None,
    exclude_body: int = -1,
) -> DepthImage:
    """Render a clean depth image by casting one ray per pixel with :func:`mujoco.mj_multiRay`.

    Uses the geom poses in ``data`` as they are (call :func:`mujoco.mj_forward` or
    :func:`mujoco.mj_kinematics` after changing ``qpos``). Static geoms are included.

    :param model: the MuJoCo model.
    :param data: its data.
    :param camera: the camera.
    :param roi: if given, only the pixels of :func:`image_window` are rendered (the points are
        not cropped; see :func:`crop_to_roi`).
    :param geomgroup: optional 6 flags: geoms of groups flagged 0 are invisible to the rays.
    :param exclude_body: a body id whose geoms the rays ignore (−1: none).
    :return: the depth image of the window (NaN / −1 where nothing within
        [min_depth, max_depth] is hit).
    :raises SimulationError: on a malformed ``geomgroup`` or an out-of-range ``exclude_body``.
    """
    groups = _geomgroup_array(geomgroup)
    if not -1 <= int(exclude_body) < model.nbody:
        raise SimulationError(f"exclude_body must be -1 or a body id < {model.nbody}")
    window = image_window(camera, roi)
    rays = _camera_rays(camera, window).reshape(-1, 3)
    rotation = camera.rotation()
    lengths = np.sqrt(np.einsum("ij,ij->i", rays, rays))
    unit_world = (rays / lengths[:, None]) @ rotation.T
    cutoff = camera.max_depth * (float(lengths.max()) if lengths.size else 1.0) + 1e-6
    origin = np.asarray(camera.position, dtype=np.float64)
    dist, geom = _cast(model, data, origin, unit_world, cutoff, groups, exclude_body)
    depth = dist / lengths
    valid = (dist >= 0.0) & (depth >= camera.min_depth) & (depth <= camera.max_depth)
    depth[~valid] = np.nan
    geom[~valid] = -1
    points = origin + unit_world * np.where(valid, dist, np.nan)[:, None]
    shape = (window.height, window.width)
    return DepthImage(
        depth=depth.reshape(shape),
        geom_id=geom.reshape(shape),
        points_world=points.reshape(shape + (3,)),
        window=window,
        camera=camera,
    )


def projector_shadow_mask(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    image: DepthImage,
    baseline: float,
    geomgroup: Sequence[int] | NDArray[Any] | None = None,
    exclude_body: int = -1,
) -> NDArray[np.bool_]:
    """Find the pixels the camera sees but a projector offset by ``baseline`` cannot light.

    A second ray goes from the projector (camera centre + baseline · optical X) to each hit
    point; if it hits anything clearly before the point, the point lies in the projector's
    shadow and a structured-light sensor returns no depth there.

    :param model: the MuJoCo model.
    :param data: its data (same state as for the rendering).
    :param image: a clean rendering from :func:`render_depth`.
    :param baseline: projector offset along the optical X axis, m.
    :param geomgroup: as for :func:`render_depth`.
    :param exclude_body: as for :func:`render_depth`.
    :return: (h, w) mask, True for shadowed pixels (always False where depth is NaN).
    """
    groups = _geomgroup_array(geomgroup)
    camera = image.camera
    projector = np.asarray(camera.position) + baseline * camera.rotation()[:, 0]
    valid = np.isfinite(image.depth)
    targets = image.points_world[valid]
    offsets = targets - projector
    lengths = np.sqrt(np.einsum("ij,ij->i", offsets, offsets))
    shadow = np.zeros(image.depth.shape, dtype=bool)
    if lengths.size == 0:
        return shadow
    lengths = np.maximum(lengths, 1e-12)
    cutoff = float(lengths.max()) + 1e-3
    dist, _ = _cast(
        model, data, projector, offsets / lengths[:, None], cutoff, groups, exclude_body
    )
    shadow[valid] = (dist >= 0.0) & (dist < lengths - SHADOW_TOLERANCE)
    return shadow


def _grazing_mask(points: NDArray[np.float64], max_incidence_angle: float) -> NDArray[np.bool_]:
    """Pixels whose estimated surface normal makes a too large angle with the viewing ray."""
    h, w = points.shape[:2]
    du = np.full((h, w, 3), np.nan)
    dv = np.full((h, w, 3), np.nan)
    if w >= 3:
        du[:, 1:-1] = points[:, 2:] - points[:, :-2]
    if h >= 3:
        dv[1:-1] = points[2:] - points[:-2]
    normal = np.cross(du, dv)
    norm_n = np.linalg.norm(normal, axis=-1)
    norm_p = np.linalg.norm(points, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos_incidence = np.abs(np.einsum("ijk,ijk->ij", normal, points)) / (norm_n * norm_p)
    # NaN (a neighbour without depth, or the window border) compares False: not dropped.
    grazing: NDArray[np.bool_] = cos_incidence < math.cos(max_incidence_angle)
    return grazing


def _edge_mask(depth: NDArray[np.float64], threshold: float) -> NDArray[np.bool_]:
    """Pixels whose depth jumps by more than ``threshold`` to a valid 4-neighbour."""
    edge = np.zeros(depth.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        jump_u = np.abs(depth[:, 1:] - depth[:, :-1]) > threshold
        jump_v = np.abs(depth[1:] - depth[:-1]) > threshold
    edge[:, 1:] |= jump_u
    edge[:, :-1] |= jump_u
    edge[1:] |= jump_v
    edge[:-1] |= jump_v
    return edge


def apply_noise(
    depth: ArrayLike,
    camera: CameraConfig,
    config: NoiseConfig,
    rng: np.random.Generator,
    window: PixelWindow | None = None,
    shadow: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Corrupt a clean depth image like a structured-light sensor.

    Dropouts (random, grazing incidence, depth discontinuities, ``shadow``) are decided on the
    clean depth; then Gaussian noise σ(z) = a + b·z² is added along the viewing rays (the
    back-projected point moves along its ray), and depths leaving the camera's range are
    dropped. The random draws happen in a fixed order, so the same ``rng`` state gives the
    same output.

    :param depth: (h, w) clean depth, m, NaN where invalid.
    :param camera: the camera (for the back-projection used by the normal estimate).
    :param config: the noise model; ``enabled=False`` returns a copy of ``depth``.
    :param rng: the random generator.
    :param window: the pixels ``depth`` covers; ``None`` means the full image.
    :param shadow: optional (h, w) mask of projector-shadowed pixels
        (:func:`projector_shadow_mask`), dropped when ``config.projector_shadows``.
    :return: (h, w) noisy depth with NaN at dropped pixels.
    :raises GeometryError: on shape mismatches.
    """
    clean = np.array(depth, dtype=np.float64)
    if clean.ndim != 2:
        raise GeometryError(f"depth must be a 2-D image, got shape {clean.shape}")
    if not config.enabled:
        return clean
    valid = np.isfinite(clean)
    drop = np.zeros(clean.shape, dtype=bool)
    if config.dropout_probability > 0.0:
        drop |= rng.random(clean.shape) < config.dropout_probability
    if config.grazing_dropout:
        points = depth_to_points(clean, camera, window)
        drop |= _grazing_mask(points, config.max_incidence_angle)
    if config.edge_dropout_probability > 0.0:
        edge = _edge_mask(clean, config.edge_threshold)
        drop |= edge & (rng.random(clean.shape) < config.edge_dropout_probability)
    if config.projector_shadows and shadow is not None:
        shadow_mask = np.asarray(shadow, dtype=bool)
        if shadow_mask.shape != clean.shape:
            raise GeometryError(
                f"shadow must have the depth's shape {clean.shape}, got {shadow_mask.shape}"
            )
        drop |= shadow_mask
    sigma = config.sigma(np.where(valid, clean, 0.0))
    noisy = clean + sigma * rng.standard_normal(clean.shape)
    with np.errstate(invalid="ignore"):
        out_of_range = (noisy < camera.min_depth) | (noisy > camera.max_depth)
    noisy[drop | ~valid | out_of_range] = np.nan
    return noisy


def capture(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    camera: CameraConfig,
    roi: RoiBox,
    noise: NoiseConfig | None = None,
    rng: np.random.Generator | None = None,
    geom_object_index: ArrayLike | None = None,
    geomgroup: Sequence[int] | NDArray[Any] | None = None,
    exclude_body: int = -1,
) -> Observation:
    """Render, corrupt, back-project and crop: the point cloud a dataset sample needs.

    :param model: the MuJoCo model.
    :param data: its data (kinematics up to date).
    :param camera: the camera.
    :param roi: world box the cloud is cropped to (after noise).
    :param noise: the noise model; ``None`` or disabled gives clean data.
    :param rng: random generator; required when noise is enabled.
    :param geom_object_index: optional (ngeom,) map from geom id to scene-object index
        (−1 for non-objects); without it every point gets −1.
    :param geomgroup: as for :func:`render_depth`.
    :param exclude_body: as for :func:`render_depth`.
    :return: the observation.
    :raises SimulationError: if noise is enabled without an ``rng``, or on a malformed
        ``geom_object_index``.
    """
    image = render_depth(model, data, camera, roi, geomgroup, exclude_body)
    depth = image.depth
    if noise is not None and noise.enabled:
        if rng is None:
            raise SimulationError("capture needs an rng when noise is enabled")
        shadow = None
        if noise.projector_shadows:
            shadow = projector_shadow_mask(
                model, data, image, noise.projector_baseline, geomgroup, exclude_body
            )
        depth = apply_noise(depth, camera, noise, rng, image.window, shadow)
    points_cam = depth_to_points(depth, camera, image.window)
    transform = camera.pose()
    points_world = points_cam @ transform[:3, :3].T + transform[:3, 3]
    keep = roi.contains(points_world)
    geom = image.geom_id[keep]
    if geom_object_index is None:
        labels = np.full(geom.shape, -1, dtype=np.int32)
    else:
        table = np.asarray(geom_object_index, dtype=np.int32)
        if table.shape != (model.ngeom,):
            raise SimulationError(
                f"geom_object_index must have shape ({model.ngeom},), got {table.shape}"
            )
        labels = table[geom]
    return Observation(
        points=points_cam[keep].astype(np.float32),
        pixel_index=image.pixel_index[keep],
        geom_id=geom.astype(np.int32),
        object_index=labels,
        T_world_camera=transform,
        camera=camera,
    )
