"""Bin clearance of a grasp's approach: the planner's check against the known bin.

A robot cell knows where its bin is (MoveIt: a collision object of the planning scene; the
simulation: the same walls and floor). Before anything moves, the straight-line approach
from the pre-grasp pose (``pregrasp_offset`` back along −approach) to the grasp pose is
checked against the bin with the gripper model's body boxes (two fingers at the approach
opening and the palm; :meth:`~gpr_ros.core.grasp.gripper.GripperModel.finger_boxes`):

1. Floor. A grasp whose gripper would reach below ``floor_z + floor_clearance`` is moved back
   along −approach just far enough to clear it ("back-off"), when that is at most
   ``max_backoff``; otherwise the approach is refused. Grasps on low objects lying on the
   floor are the common case: a predicted centre a few millimetres too deep drives the
   fingertips into the floor, while the same grasp a little higher holds the object.
2. Walls. The gripper is placed every ``path_step`` along the (backed-off) approach path,
   pre-grasp included; if any body box overlaps a wall grown by ``wall_clearance`` (exact
   oriented-box test, separating axes), the approach is refused.

Objects are not checked here (their geometry is unknown to the planner); contacts with them
are judged by the executor. Frame: the bin's frame (z up, floor at ``floor_z``, inner box
centred on the origin), which is the simulated world frame and, on the robot, the frame the
bin is configured in. Pure geometry, no ROS, no MuJoCo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gpr_ros.core.errors import ConfigError, GeometryError
from gpr_ros.core.grasp.grasps import Grasps
from gpr_ros.core.grasp.gripper import GripperModel
from gpr_ros.core.validation import boolean, config_from_dict, config_to_dict
from gpr_ros.core.validation import real as _real

__all__ = [
    "ApproachPlan",
    "BinObstacles",
    "ClearanceConfig",
    "boxes_overlap",
    "plan_bin_approach",
]

#: |n_z| below this: the approach is horizontal, a back-off cannot raise the gripper.
_HORIZONTAL = 1e-6
#: Cross-product axes shorter than this (parallel box edges) are skipped by the SAT test.
_PARALLEL = 1e-9


@dataclass(frozen=True)
class BinObstacles:
    """The bin as obstacles: the floor plane and four wall boxes (axis aligned).

    :ivar floor_z: height of the floor plane, m.
    :ivar wall_centers: (4, 3) wall box centres, m.
    :ivar wall_half_extents: (4, 3) wall box half sizes, m.
    """

    floor_z: float
    wall_centers: NDArray[np.float64]
    wall_half_extents: NDArray[np.float64]

    @classmethod
    def from_dimensions(cls, inner_x: float, inner_y: float, wall_height: float,
                        wall_thickness: float, floor_z: float = 0.0,
                        center_xy: tuple[float, float] = (0.0, 0.0)) -> BinObstacles:
        """The bin of :func:`gpr_ros.core.sim.world.add_bin` (inner box centred on the origin),
        or one whose floor centre is at ``(center_xy, floor_z)``.

        :param inner_x: inner size along x, m.
        :param inner_y: inner size along y, m.
        :param wall_height: wall height above the floor, m.
        :param wall_thickness: wall thickness, m.
        :param floor_z: floor height, m.
        :param center_xy: x, y of the floor centre, m.
        :return: the obstacles.
        :raises ConfigError: on non-positive sizes.
        """
        values = {name: _real(v, name) for name, v in (
            ("inner_x", inner_x), ("inner_y", inner_y), ("wall_height", wall_height),
            ("wall_thickness", wall_thickness))}
        if any(v <= 0.0 for v in values.values()):
            raise ConfigError(f"bin dimensions must be > 0 m, got {values}")
        hx, hy = 0.5 * values["inner_x"], 0.5 * values["inner_y"]
        t, h = values["wall_thickness"], values["wall_height"]
        z0 = _real(floor_z, "floor_z")
        centers = np.array([[hx + 0.5 * t, 0.0, z0 + 0.5 * h], [-hx - 0.5 * t, 0.0, z0 + 0.5 * h],
                            [0.0, hy + 0.5 * t, z0 + 0.5 * h], [0.0, -hy - 0.5 * t, z0 + 0.5 * h]])
        half = np.array([[0.5 * t, hy + t, 0.5 * h], [0.5 * t, hy + t, 0.5 * h],
                         [hx, 0.5 * t, 0.5 * h], [hx, 0.5 * t, 0.5 * h]])
        centers[:, 0] += _real(center_xy[0], "center_xy[0]")
        centers[:, 1] += _real(center_xy[1], "center_xy[1]")
        return cls(floor_z=z0, wall_centers=centers, wall_half_extents=half)

    @classmethod
    def from_bin_config(cls, bin_config: Any, floor_z: float = 0.0) -> BinObstacles:
        """From anything with ``inner_x``, ``inner_y``, ``wall_height``, ``wall_thickness``
        (e.g. :class:`gpr_ros.core.sim.world.BinConfig`).

        :param bin_config: the bin dimensions.
        :param floor_z: floor height, m.
        :return: the obstacles.
        """
        return cls.from_dimensions(bin_config.inner_x, bin_config.inner_y,
                                   bin_config.wall_height, bin_config.wall_thickness, floor_z)


@dataclass(frozen=True)
class ClearanceConfig:
    """Settings of :func:`plan_bin_approach`.

    :ivar enabled: check the approach against the bin at all.
    :ivar floor_clearance: the gripper stays this far above the floor, m.
    :ivar wall_clearance: the walls are grown by this on every side, m.
    :ivar max_backoff: the grasp may be moved back along −approach by at most this to clear
        the floor, m (0: never; the approach is refused instead).
    :ivar path_step: spacing of the poses checked along the approach path, m.
    """

    enabled: bool = True
    floor_clearance: float = 0.002
    wall_clearance: float = 0.0
    max_backoff: float = 0.02
    path_step: float = 0.005

    def __post_init__(self) -> None:
        """Validate the values.

        :raises ConfigError: on a non-bool ``enabled``, negative margins or a non-positive
            ``path_step``.
        """
        object.__setattr__(self, "enabled", boolean(self.enabled, "ClearanceConfig.enabled"))
        for name in ("floor_clearance", "wall_clearance", "max_backoff"):
            value = _real(getattr(self, name), f"ClearanceConfig.{name}")
            if value < 0.0:
                raise ConfigError(f"ClearanceConfig.{name} must be >= 0 m, got {value}")
            object.__setattr__(self, name, value)
        step = _real(self.path_step, "ClearanceConfig.path_step")
        if step <= 0.0:
            raise ConfigError(f"ClearanceConfig.path_step must be > 0 m, got {step}")
        object.__setattr__(self, "path_step", step)

    def to_dict(self) -> dict[str, Any]:
        """Return ``{field: value}``."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClearanceConfig:
        """Build from a mapping; missing keys take their defaults.

        :raises ConfigError: on unknown keys or invalid values.
        """
        result: ClearanceConfig = config_from_dict(cls, data)
        return result


@dataclass(frozen=True)
class ApproachPlan:
    """Result of :func:`plan_bin_approach`.

    :ivar feasible: the approach clears the bin.
    :ivar grasp: the grasp to execute: the input moved back by ``backoff`` along −approach.
    :ivar backoff: how far the grasp was moved back, m (0 when not needed).
    :ivar reason: why the approach was refused ('' when feasible).
    """

    feasible: bool
    grasp: Grasps
    backoff: float = 0.0
    reason: str = ""


def boxes_overlap(centers_a: NDArray[np.float64], rot_a: NDArray[np.float64],
                  half_a: NDArray[np.float64], centers_b: NDArray[np.float64],
                  half_b: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Separating-axis test of oriented boxes A against axis-aligned boxes B.

    Arrays broadcast against each other over their leading dimensions.

    :param centers_a: (..., 3) centres of A.
    :param rot_a: (..., 3, 3) axes of A as columns.
    :param half_a: (..., 3) half sizes of A along its axes.
    :param centers_b: (..., 3) centres of B (axes = the frame's).
    :param half_b: (..., 3) half sizes of B.
    :return: (...) True where A and B overlap (touching counts as overlapping).
    """
    axes_a = np.swapaxes(rot_a, -1, -2)  # (..., 3 axes, xyz)
    eye = np.broadcast_to(np.eye(3), axes_a.shape)
    cross = np.cross(axes_a[..., :, None, :], eye[..., None, :, :])  # (..., 3, 3, xyz)
    cross = cross.reshape(*cross.shape[:-3], 9, 3)
    axes = np.concatenate([axes_a, eye, cross], axis=-2)  # (..., 15, 3)
    norms = np.linalg.norm(axes, axis=-1)
    usable = norms > _PARALLEL
    axes = axes / np.where(usable, norms, 1.0)[..., None]
    delta = centers_b - centers_a
    dist = np.abs(np.einsum("...kj,...j->...k", axes, delta))
    # projection radii: sum_i h_i |L . axis_i|
    r_a = np.einsum("...ki,...i->...k", np.abs(np.einsum("...kj,...ij->...ki", axes, axes_a)),
                    half_a)
    r_b = np.einsum("...kj,...j->...k", np.abs(axes), half_b)
    separated = usable & (dist > r_a + r_b)
    result: NDArray[np.bool_] = ~np.any(separated, axis=-1)
    return result


def _shifted(grasp: Grasps, distance: float) -> Grasps:
    """The grasp moved ``distance`` along its approach (negative: back); no contacts."""
    return Grasps(grasp.center + distance * grasp.approach, grasp.approach, grasp.closing,
                  grasp.width, grasp.score, grasp.stage)


def plan_bin_approach(grasp: Grasps, gripper: GripperModel, obstacles: BinObstacles,
                      opening: float, pregrasp_offset: float,
                      config: ClearanceConfig | None = None,
                      depth: float = 0.0) -> ApproachPlan:
    """Check (and, near the floor, adjust) one grasp's approach; see the module docstring.

    :param grasp: one grasp in the bin's frame.
    :param gripper: the gripper's dimensions.
    :param obstacles: the bin.
    :param opening: finger opening during the approach, m.
    :param pregrasp_offset: length of the approach path, m (>= 0).
    :param config: settings (default :class:`ClearanceConfig`).
    :param depth: the gripper goes this far past the grasp centre along the approach first
        (the executor's grasp depth), m; the back-off starts from there.
    :return: the plan; ``feasible`` is False with a reason when the approach is refused.
    :raises GeometryError: if ``grasp`` does not hold exactly one grasp.
    """
    cfg = config if config is not None else ClearanceConfig()
    if not isinstance(grasp, Grasps) or len(grasp) != 1:
        raise GeometryError("plan_bin_approach needs exactly one grasp")
    if depth != 0.0:
        grasp = _shifted(grasp, float(depth))
    if not cfg.enabled:
        return ApproachPlan(True, grasp)
    approach = grasp.approach[0]
    boxes = gripper.finger_boxes(grasp, width=[max(float(opening), 0.0)])
    rot = boxes.rotations[0]
    reach = np.abs(rot[2, :]) @ boxes.half_extents[0].T  # (3 boxes,) vertical half extent
    lowest = float(np.min(boxes.centers[0, :, 2] - reach))
    need = obstacles.floor_z + cfg.floor_clearance - lowest
    backoff = 0.0
    if need > 0.0:
        rise = -float(approach[2])  # height gained per metre moved back along -approach
        if rise < _HORIZONTAL or need / rise > cfg.max_backoff + 1e-12:
            return ApproachPlan(
                False, grasp, 0.0,
                f"the gripper would reach {need * 1000:.1f} mm too deep into the bin floor "
                f"(max back-off {cfg.max_backoff * 1000:.0f} mm)")
        backoff = need / rise
    moved = _shifted(grasp, -backoff) if backoff > 0.0 else grasp
    offset = max(float(pregrasp_offset), 0.0)
    steps = np.linspace(0.0, offset, max(2, int(math.ceil(offset / cfg.path_step)) + 1))
    shifts = -(backoff + steps)[:, None] * approach[None, :]  # (S, 3) from the input pose
    centers = boxes.centers[0][None, :, :] + shifts[:, None, :]  # (S, 3 boxes, 3)
    grow = cfg.wall_clearance
    hit = boxes_overlap(centers[:, :, None, :], rot, boxes.half_extents[0][None, :, None, :],
                        obstacles.wall_centers[None, None, :, :],
                        obstacles.wall_half_extents[None, None, :, :] + grow)
    if np.any(hit):
        first = int(np.flatnonzero(hit.any(axis=(1, 2)))[0])
        return ApproachPlan(
            False, moved, backoff,
            f"the approach would hit the bin wall {steps[first] * 1000:.0f} mm before the "
            f"grasp pose")
    return ApproachPlan(True, moved, backoff)

