"""A free-floating parallel-jaw gripper in the MuJoCo bin world, and grasp execution.

The gripper is added to a :class:`~gpr_ros.core.sim.world.BinWorld` through a spec hook
(:meth:`SimGripper.spec_hook`) and has the dimensions of a
:class:`~gpr_ros.core.grasp.gripper.GripperModel`:

- a mocap body ``gripper_target`` (no geoms) that the controller moves along the motion
  path, and a free body ``gripper_palm`` welded to it (a soft weld: the palm has real
  velocities, so friction carries a held object along, which a purely kinematic mocap palm
  would not do);
- the palm frame *is* the grasp frame (origin at the grasp centre o, X = approach n,
  Y = closing r, Z = n x r): the palm box spans x ∈ [−finger_depth − palm_depth,
  −finger_depth], the fingers x ∈ [−finger_depth, 0], so the fingertips reach the grasp centre
  as in :mod:`gpr_ros.core.grasp.gripper`;
- two fingers ``gripper_finger_pos`` / ``gripper_finger_neg`` on prismatic joints, each with
  a 0 … max_width/2 stroke (0: fully open, inner faces at y = ±max_width/2), driven by
  force-limited position servos: a finger presses with at most ``grip_force`` N, and the
  finger pads have sliding friction ``friction`` (MuJoCo combines a contact's two geoms by the
  larger coefficient), so a poor grasp can slip;
- every gripper geom is in geom group :data:`GROUP_GRIPPER` (3), which
  :meth:`SimGripper.camera_geomgroup` hides from the camera; between attempts the gripper is
  parked far above the camera.

:func:`execute_grasp` runs one attempt: checks, pre-grasp, approach, close, lift, hold, and
reports an :class:`AttemptResult` whose outcome names mirror ``gpr_msgs``
(``ClutterRemovalProgress.OUTCOME_*`` and ``ExecuteGrasp`` error codes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import enum
import math
import time
from typing import Any

import mujoco
import numpy as np
from numpy.typing import NDArray

from gpr_ros.core.errors import ConfigError
from gpr_ros.core.grasp.clearance import (
    ApproachPlan,
    BinObstacles,
    ClearanceConfig,
    plan_bin_approach,
)
from gpr_ros.core.grasp.grasps import Grasps
from gpr_ros.core.grasp.gripper import GripperModel
from gpr_ros.core.sim.errors import SimulationError
from gpr_ros.core.sim.world import BinWorld
from gpr_ros.core.validation import (
    config_from_dict as _config_from_dict,
)
from gpr_ros.core.validation import (
    config_to_dict as _config_to_dict,
)
from gpr_ros.core.validation import (
    non_negative as _non_negative,
)
from gpr_ros.core.validation import (
    positive as _positive,
)

__all__ = [
    "GROUP_GRIPPER",
    "AttemptResult",
    "ExecutionConfig",
    "GripperSimConfig",
    "Outcome",
    "SimGripper",
    "execute_grasp",
]

#: Geom group of the gripper (hidden from the camera).
GROUP_GRIPPER = 3
#: Body and joint names added by the spec hook.
BODY_TARGET = "gripper_target"
BODY_PALM = "gripper_palm"
BODY_FINGERS = ("gripper_finger_pos", "gripper_finger_neg")
JOINT_FINGERS = ("gripper_finger_pos_joint", "gripper_finger_neg_joint")
#: Where the gripper waits between attempts (above the camera, out of its view), m.
PARK_POSITION = (0.0, 0.0, 3.0)


class Outcome(str, enum.Enum):
    """Outcome of one attempt (names as in ``gpr_msgs/ClutterRemovalProgress``)."""

    SUCCESS = "success"
    COLLISION = "collision"
    SLIP = "slip"
    NO_GRASP = "no_grasp"
    UNREACHABLE = "unreachable"
    WIDTH_EXCEEDED = "width_exceeded"
    ERROR = "error"

    @property
    def progress_code(self) -> int:
        """The ``ClutterRemovalProgress.OUTCOME_*`` value (width exceeded maps to ERROR)."""
        return _PROGRESS_CODES[self]

    @property
    def error_code(self) -> int:
        """The ``ExecuteGrasp`` result ``error_code`` (NO_GRASP maps to NONE: nothing ran)."""
        return _ERROR_CODES[self]


_PROGRESS_CODES = {
    Outcome.SUCCESS: 1, Outcome.COLLISION: 2, Outcome.SLIP: 3, Outcome.NO_GRASP: 4,
    Outcome.UNREACHABLE: 5, Outcome.WIDTH_EXCEEDED: 6, Outcome.ERROR: 6,
}
_ERROR_CODES = {
    Outcome.SUCCESS: 0, Outcome.COLLISION: 6, Outcome.SLIP: 8, Outcome.NO_GRASP: 0,
    Outcome.UNREACHABLE: 5, Outcome.WIDTH_EXCEEDED: 3, Outcome.ERROR: 1,
}


# ---------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class GripperSimConfig:
    """The simulated gripper's physics.

    :ivar gripper: dimensions (``max_width`` is the full opening, each finger strokes half).
    :ivar grip_force: force limit of each finger servo, N.
    :ivar friction: sliding friction of the finger pads (and palm).
    :ivar finger_kp: finger servo stiffness, N/m (high, so a few mm of squeeze saturate the
        force limit).
    :ivar finger_kv: finger servo damping, N·s/m.
    :ivar finger_mass: mass of each finger, kg.
    :ivar palm_mass: mass of the palm, kg.
    :ivar weld_timeconst: time constant of the palm-to-target weld, s (stiffness of the arm).
    """

    gripper: GripperModel = field(default_factory=GripperModel)
    grip_force: float = 20.0
    friction: float = 0.8
    finger_kp: float = 5000.0
    finger_kv: float = 50.0
    finger_mass: float = 0.05
    palm_mass: float = 0.5
    weld_timeconst: float = 0.01

    def __post_init__(self) -> None:
        """Validate the values.

        :raises ConfigError: on non-positive forces, gains, masses or time constants.
        """
        if isinstance(self.gripper, Mapping):
            object.__setattr__(self, "gripper", GripperModel.from_dict(self.gripper))
        if not isinstance(self.gripper, GripperModel):
            raise ConfigError(f"GripperSimConfig.gripper must be a GripperModel, got "
                              f"{type(self.gripper).__name__}")
        for name in ("grip_force", "finger_kp", "finger_mass", "palm_mass", "weld_timeconst"):
            value = _positive(getattr(self, name), f"GripperSimConfig.{name}")
            object.__setattr__(self, name, value)
        for name in ("friction", "finger_kv"):
            value = _non_negative(getattr(self, name), f"GripperSimConfig.{name}")
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain Python values.

        :return: ``{field: value}`` (the gripper as a nested dict).
        """
        return _config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GripperSimConfig:
        """Build from a mapping; missing keys take their defaults.

        :param data: ``{field: value}``.
        :return: the configuration.
        :raises ConfigError: on unknown keys or invalid values.
        """
        result: GripperSimConfig = _config_from_dict(cls, data)
        return result


_OPEN_MODES = ("width", "full")
_CLOSE_MODES = ("full", "width")


@dataclass(frozen=True)
class ExecutionConfig:
    """How a grasp is executed and judged.

    :ivar pregrasp_offset: the pre-grasp pose is the grasp pose moved back by this along
        −approach, m.
    :ivar open_mode: ``'width'`` opens to the grasp width + ``open_clearance`` (capped at the
        max opening), ``'full'`` opens fully.
    :ivar open_clearance: added to the grasp width in ``'width'`` mode, m.
    :ivar close_mode: ``'full'`` commands the fingers fully closed, ``'width'`` to the grasp
        width − ``squeeze_margin``; either way the servo force limit caps the grip.
    :ivar squeeze_margin: see ``close_mode``, m.
    :ivar approach_speed: palm speed along the approach, m/s.
    :ivar finger_speed: speed of each finger's commanded position while closing, m/s.
    :ivar close_time: time limit of the closing phase (after the command ramp), s.
    :ivar lift_height: lift along world +z after closing, m.
    :ivar lift_speed: lift speed, m/s.
    :ivar hold_time: the object must stay held this long after the lift, s.
    :ivar settle_time: time limit for the scene to settle after the gripper is parked, s.
    :ivar min_held_opening: fingers closer than this are "fully closed": nothing held, m.
    :ivar collision_tolerance: contacts with the bin (walls, floor) during the approach count
        as collisions when deeper than this, m (absorbs grazing contacts).
    :ivar max_approach_angle: grasps whose approach deviates more than this from straight
        down (world −z) are unreachable, rad (default 90°: no approach from below).
    :ivar workspace_margin: grasp centres must lie within the bin's inner walls grown by
        this in x and y, and between −workspace_margin and wall height + workspace_top above
        the floor; otherwise unreachable, m.
    :ivar workspace_top: see ``workspace_margin``, m.
    :ivar width_tolerance: widths up to max_width + this are accepted (and capped), m.
    :ivar min_width: narrower grasps are refused before anything moves (``width_exceeded``:
        outside the gripper's usable range), m. Closed on something thinner, the fingers
        cannot be told apart from empty ones (``min_held_opening``), and features that thin
        (cup rims, can lips, chain links) are what a real pad's compliance and the
        simulator's convex collision parts both lose (default 5 mm); 0 accepts every width.
    :ivar grasp_depth: the fingertips go this far past the grasp centre along the approach,
        so the contacts (whose midpoint is the grasp centre) lie on the finger pads instead
        of at their very tips, m (less than the finger length); the bin check may then move
        the grasp back again near the floor.
    :ivar bin_clearance: the planner's check of the approach against the known bin
        (:mod:`gpr_ros.core.grasp.clearance`): a grasp whose gripper would reach into the
        floor is moved back along −approach (up to ``max_backoff``), one whose approach would
        hit a wall or needs a longer back-off is refused as unreachable before anything moves.
    """

    pregrasp_offset: float = 0.10
    open_mode: str = "width"
    open_clearance: float = 0.01
    close_mode: str = "full"
    squeeze_margin: float = 0.01
    approach_speed: float = 0.2
    finger_speed: float = 0.1
    close_time: float = 0.4
    lift_height: float = 0.15
    lift_speed: float = 0.2
    hold_time: float = 0.3
    settle_time: float = 1.0
    min_held_opening: float = 0.002
    collision_tolerance: float = 0.0001
    max_approach_angle: float = math.pi / 2
    workspace_margin: float = 0.02
    workspace_top: float = 0.2
    width_tolerance: float = 1e-6
    min_width: float = 0.005
    grasp_depth: float = 0.015
    bin_clearance: ClearanceConfig = field(default_factory=ClearanceConfig)

    def __post_init__(self) -> None:
        """Validate the values.

        :raises ConfigError: on an unknown mode, non-positive speeds or heights, negative
            margins or an angle outside [0, π].
        """
        if self.open_mode not in _OPEN_MODES:
            raise ConfigError(f"ExecutionConfig.open_mode must be one of {_OPEN_MODES}, "
                              f"got {self.open_mode!r}")
        if self.close_mode not in _CLOSE_MODES:
            raise ConfigError(f"ExecutionConfig.close_mode must be one of {_CLOSE_MODES}, "
                              f"got {self.close_mode!r}")
        for name in ("pregrasp_offset", "approach_speed", "finger_speed", "close_time",
                     "lift_height", "lift_speed"):
            object.__setattr__(self, name, _positive(getattr(self, name),
                                                     f"ExecutionConfig.{name}"))
        for name in ("open_clearance", "squeeze_margin", "hold_time", "settle_time",
                     "min_held_opening", "collision_tolerance", "workspace_margin",
                     "workspace_top", "width_tolerance", "grasp_depth", "min_width"):
            object.__setattr__(self, name, _non_negative(getattr(self, name),
                                                         f"ExecutionConfig.{name}"))
        angle = _non_negative(self.max_approach_angle, "ExecutionConfig.max_approach_angle")
        if angle > math.pi:
            raise ConfigError(f"ExecutionConfig.max_approach_angle must be <= pi, got {angle}")
        object.__setattr__(self, "max_approach_angle", angle)
        clearance = self.bin_clearance
        if isinstance(clearance, Mapping):
            clearance = ClearanceConfig.from_dict(clearance)
        if not isinstance(clearance, ClearanceConfig):
            raise ConfigError(f"ExecutionConfig.bin_clearance must be a ClearanceConfig, got "
                              f"{type(clearance).__name__}")
        object.__setattr__(self, "bin_clearance", clearance)

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain Python values.

        :return: ``{field: value}``.
        """
        return _config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExecutionConfig:
        """Build from a mapping; missing keys take their defaults.

        :param data: ``{field: value}``.
        :return: the configuration.
        :raises ConfigError: on unknown keys or invalid values.
        """
        result: ExecutionConfig = _config_from_dict(cls, data)
        return result


@dataclass(frozen=True)
class AttemptResult:
    """What happened in one grasp attempt.

    :ivar outcome: the outcome.
    :ivar message: a human-readable explanation.
    :ivar object_index: index of the lifted object (the one with most gripper contacts);
        −1 when none.
    :ivar lifted: indices of every object lifted out (and removed) by this attempt.
    :ivar fell_out: objects that ended outside the bin after the attempt (removed, but not
        lifted by the gripper).
    :ivar pushed: objects the gripper touched during the approach.
    :ivar stage: the phase the attempt ended in: ``check``, ``pregrasp``, ``approach``,
        ``close``, ``lift`` or ``hold``.
    :ivar finger_width: opening between the fingers at the end of the hold (or when the
        attempt ended), m.
    :ivar sim_time: simulated time of the attempt including the settle afterwards, s.
    :ivar wall_time: wall-clock time of the attempt, s.
    """

    outcome: Outcome
    message: str
    object_index: int = -1
    lifted: tuple[int, ...] = ()
    fell_out: tuple[int, ...] = ()
    pushed: tuple[int, ...] = ()
    stage: str = "check"
    finger_width: float = 0.0
    sim_time: float = 0.0
    wall_time: float = 0.0

    @property
    def success(self) -> bool:
        """Whether the attempt lifted an object."""
        return self.outcome is Outcome.SUCCESS

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON-ready values.

        :return: ``{field: value}`` with the outcome as its string value.
        """
        return {
            "outcome": self.outcome.value, "message": self.message,
            "object_index": self.object_index, "lifted": list(self.lifted),
            "fell_out": list(self.fell_out), "pushed": list(self.pushed), "stage": self.stage,
            "finger_width": self.finger_width, "sim_time": self.sim_time,
            "wall_time": self.wall_time,
        }


# ---------------------------------------------------------------------- the gripper


@dataclass
class _Bound:
    """Ids of the gripper in one compiled model."""

    model: mujoco.MjModel
    target_mocap: int
    palm_body: int
    palm_qpos: int
    palm_dof: int
    finger_qpos: NDArray[np.int64]
    finger_dof: NDArray[np.int64]
    actuators: NDArray[np.int64]
    gripper_geom: NDArray[np.bool_]
    finger_geoms: tuple[NDArray[np.int64], NDArray[np.int64]]
    static_geom: NDArray[np.bool_]


def _mat_to_quat(rotation: NDArray[np.float64]) -> NDArray[np.float64]:
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rotation, dtype=np.float64).reshape(-1))
    return quat


class SimGripper:
    """The free-floating parallel-jaw gripper of a :class:`BinWorld`.

    Create it first, pass :meth:`spec_hook` to the world, then use its methods with that
    world (ids are looked up again whenever the world rebuilds its model)::

        gripper = SimGripper()
        world = BinWorld(spec_hooks=[gripper.spec_hook])

    :param config: the gripper's physics.
    """

    def __init__(self, config: GripperSimConfig | None = None) -> None:
        """Create the gripper (see the class docstring)."""
        self.config = config if config is not None else GripperSimConfig()
        self._bound: _Bound | None = None

    @property
    def max_width(self) -> float:
        """The full opening, m."""
        return float(self.config.gripper.max_width)

    @staticmethod
    def camera_geomgroup() -> tuple[int, ...]:
        """Geom-group flags for :meth:`BinWorld.observe` that hide the gripper.

        :return: six 0/1 flags, all visible but :data:`GROUP_GRIPPER`.
        """
        return tuple(0 if g == GROUP_GRIPPER else 1 for g in range(6))

    # -------------------------------------------------------------- model

    def spec_hook(self, spec: mujoco.MjSpec) -> None:
        """Add the gripper bodies, weld and finger servos to ``spec`` (a BinWorld spec hook).

        :param spec: the spec being built.
        """
        cfg, g = self.config, self.config.gripper
        half_open, t = 0.5 * g.max_width, g.finger_thickness
        park = list(PARK_POSITION)
        spec.worldbody.add_body(name=BODY_TARGET, pos=park, mocap=True)
        palm = spec.worldbody.add_body(name=BODY_PALM, pos=park)
        palm.gravcomp = 1.0
        palm.add_freejoint(name="gripper_palm_joint")
        friction = [cfg.friction, 0.005, 0.0001]
        palm.add_geom(
            name="gripper_palm_box", type=mujoco.mjtGeom.mjGEOM_BOX,
            pos=[-g.finger_depth - 0.5 * g.palm_depth, 0.0, 0.0],
            size=[0.5 * g.palm_depth, half_open + t, 0.5 * g.palm_height],
            mass=cfg.palm_mass, friction=friction, group=GROUP_GRIPPER,
            rgba=[0.2, 0.2, 0.2, 1.0],
        )
        for k, (body_name, joint_name) in enumerate(zip(BODY_FINGERS, JOINT_FINGERS,
                                                        strict=True)):
            sign = 1.0 if k == 0 else -1.0
            finger = palm.add_body(name=body_name)
            finger.gravcomp = 1.0
            finger.add_joint(
                name=joint_name, type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[0.0, -sign, 0.0],
                range=[0.0, half_open], limited=mujoco.mjtLimited.mjLIMITED_TRUE,
            )
            finger.add_geom(
                name=f"{body_name}_box", type=mujoco.mjtGeom.mjGEOM_BOX,
                pos=[-0.5 * g.finger_depth, sign * (half_open + 0.5 * t), 0.0],
                size=[0.5 * g.finger_depth, 0.5 * t, 0.5 * g.finger_height],
                mass=cfg.finger_mass, friction=friction, condim=4, group=GROUP_GRIPPER,
                rgba=[0.9, 0.9, 0.9, 1.0],
            )
            act = spec.add_actuator(name=f"{body_name}_servo", target=joint_name,
                                    trntype=mujoco.mjtTrn.mjTRN_JOINT)
            act.set_to_position(kp=cfg.finger_kp, kv=cfg.finger_kv)
            act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
            act.forcerange = [-cfg.grip_force, cfg.grip_force]
            act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
            act.ctrlrange = [0.0, half_open]
        spec.add_exclude(bodyname1=BODY_FINGERS[0], bodyname2=BODY_FINGERS[1])
        weld = spec.add_equality(
            type=mujoco.mjtEq.mjEQ_WELD, name1=BODY_TARGET, name2=BODY_PALM,
            objtype=mujoco.mjtObj.mjOBJ_BODY, solref=[cfg.weld_timeconst, 1.0],
        )
        # anchor (3), relative pose (position 3, quaternion 4), torque scale: the palm sits
        # exactly on the target (MjSpec's defaults are not the identity).
        data = np.zeros(len(weld.data))
        data[6] = 1.0
        data[10] = 1.0
        weld.data = data

    def _bind(self, world: BinWorld) -> _Bound:
        model = world.model
        if self._bound is not None and self._bound.model is model:
            return self._bound

        def ident(kind: mujoco.mjtObj, name: str) -> int:
            i = int(mujoco.mj_name2id(model, kind, name))
            if i < 0:
                raise SimulationError(
                    f"the world has no {name!r}: build it with spec_hooks=[gripper.spec_hook]")
            return i

        body = mujoco.mjtObj.mjOBJ_BODY
        target = ident(body, BODY_TARGET)
        palm = ident(body, BODY_PALM)
        fingers = [ident(body, name) for name in BODY_FINGERS]
        joints = [ident(mujoco.mjtObj.mjOBJ_JOINT, name) for name in JOINT_FINGERS]
        acts = [ident(mujoco.mjtObj.mjOBJ_ACTUATOR, f"{name}_servo") for name in BODY_FINGERS]
        palm_joint = int(model.body_jntadr[palm])
        gripper_bodies = [palm, *fingers]
        gripper_geom = np.isin(model.geom_bodyid, gripper_bodies)
        self._bound = _Bound(
            model=model,
            target_mocap=int(model.body_mocapid[target]),
            palm_body=palm,
            palm_qpos=int(model.jnt_qposadr[palm_joint]),
            palm_dof=int(model.jnt_dofadr[palm_joint]),
            finger_qpos=np.asarray(model.jnt_qposadr[joints], dtype=np.int64),
            finger_dof=np.asarray(model.jnt_dofadr[joints], dtype=np.int64),
            actuators=np.asarray(acts, dtype=np.int64),
            gripper_geom=gripper_geom,
            finger_geoms=(np.flatnonzero(model.geom_bodyid == fingers[0]),
                          np.flatnonzero(model.geom_bodyid == fingers[1])),
            static_geom=model.geom_bodyid == 0,
        )
        return self._bound

    # -------------------------------------------------------------- state

    def teleport(self, world: BinWorld, pose: NDArray[np.float64], opening: float) -> None:
        """Put the palm (and its target) at ``pose`` at rest with the fingers at ``opening``.

        :param world: the world.
        :param pose: 4x4 palm (= grasp) frame in the world.
        :param opening: finger opening, m (clipped to [0, max_width]).
        """
        b = self._bind(world)
        data = world.data
        quat = _mat_to_quat(pose[:3, :3])
        data.mocap_pos[b.target_mocap] = pose[:3, 3]
        data.mocap_quat[b.target_mocap] = quat
        data.qpos[b.palm_qpos:b.palm_qpos + 3] = pose[:3, 3]
        data.qpos[b.palm_qpos + 3:b.palm_qpos + 7] = quat
        data.qvel[b.palm_dof:b.palm_dof + 6] = 0.0
        q = 0.5 * (self.max_width - float(np.clip(opening, 0.0, self.max_width)))
        data.qpos[b.finger_qpos] = q
        data.qvel[b.finger_dof] = 0.0
        data.ctrl[b.actuators] = q
        mujoco.mj_forward(world.model, data)

    def park(self, world: BinWorld) -> None:
        """Move the gripper, fully open, to its parking spot out of the camera's view.

        :param world: the world.
        """
        pose = np.eye(4)
        pose[:3, 3] = PARK_POSITION
        self.teleport(world, pose, self.max_width)

    def set_target(self, world: BinWorld, position: NDArray[np.float64]) -> None:
        """Move the palm's mocap target (the palm follows through the weld).

        :param world: the world.
        :param position: target position, m (orientation unchanged).
        """
        world.data.mocap_pos[self._bind(world).target_mocap] = position

    def command_fingers(self, world: BinWorld, opening: float) -> None:
        """Command the finger servos to an opening, m (clipped to [0, max_width]).

        :param world: the world.
        :param opening: commanded opening between the fingers.
        """
        b = self._bind(world)
        world.data.ctrl[b.actuators] = 0.5 * (self.max_width - float(
            np.clip(opening, 0.0, self.max_width)))

    def finger_command(self, world: BinWorld) -> float:
        """Return the opening the servos are commanded to, m."""
        b = self._bind(world)
        return float(self.max_width - world.data.ctrl[b.actuators].sum())

    def opening(self, world: BinWorld) -> float:
        """Return the current opening between the finger inner faces, m."""
        b = self._bind(world)
        return float(self.max_width - world.data.qpos[b.finger_qpos].sum())

    def finger_speed(self, world: BinWorld) -> float:
        """Return the larger finger joint speed, m/s."""
        b = self._bind(world)
        return float(np.abs(world.data.qvel[b.finger_dof]).max())

    def palm_position(self, world: BinWorld) -> NDArray[np.float64]:
        """Return the palm (grasp-frame origin) position, m."""
        b = self._bind(world)
        return np.array(world.data.xpos[b.palm_body])

    def contacts(self, world: BinWorld) -> dict[str, Any]:
        """Classify the current contacts of the gripper.

        :param world: the world.
        :return: ``{'static_depth': deepest penetration into the bin (0 if none), m,
            'objects': object indices touching any gripper geom, 'finger_objects': (objects
            touching the + finger, objects touching the − finger)}``.
        """
        b = self._bind(world)
        data = world.data
        ncon = int(data.ncon)
        result: dict[str, Any] = {"static_depth": 0.0, "objects": set(),
                                  "finger_objects": (set(), set())}
        if ncon == 0:
            return result
        g1 = np.asarray(data.contact.geom1[:ncon])
        g2 = np.asarray(data.contact.geom2[:ncon])
        dist = np.asarray(data.contact.dist[:ncon])
        grip1, grip2 = b.gripper_geom[g1], b.gripper_geom[g2]
        mine = grip1 | grip2
        if not np.any(mine):
            return result
        other = np.where(grip1, g2, g1)
        own = np.where(grip1, g1, g2)
        static = mine & b.static_geom[other]
        if np.any(static):
            result["static_depth"] = float(max(0.0, -dist[static].min()))
        obj_index = world.geom_object_index
        objs = obj_index[other]
        touching = mine & (objs >= 0)
        result["objects"] = {int(i) for i in objs[touching]}
        for k in range(2):
            on_finger = touching & np.isin(own, b.finger_geoms[k])
            result["finger_objects"][k].update(int(i) for i in objs[on_finger])
        return result


# ---------------------------------------------------------------------- execution


def _result(outcome: Outcome, message: str, stage: str, start: float, sim_start: float,
            world: BinWorld, **kwargs: Any) -> AttemptResult:
    return AttemptResult(outcome=outcome, message=message, stage=stage,
                         sim_time=float(world.data.time - sim_start),
                         wall_time=time.perf_counter() - start, **kwargs)


def precheck_grasp(grasp: Grasps, world: BinWorld, gripper: SimGripper,
                   config: ExecutionConfig) -> tuple[Outcome, str] | None:
    """The checks made before anything moves: width, approach side, workspace, and the
    planner's bin check (:func:`plan_approach`).

    :return: ``(outcome, message)`` when the grasp is refused, else ``None``.
    """
    return _checked_plan(grasp, world, gripper, config)[0]


def _checked_plan(grasp: Grasps, world: BinWorld, gripper: SimGripper, config: ExecutionConfig
                  ) -> tuple[tuple[Outcome, str] | None, ApproachPlan | None]:
    """:func:`precheck_grasp`'s refusal, or ``None`` and the plan to execute."""
    width = float(grasp.width[0])
    if width > gripper.max_width + config.width_tolerance:
        return (Outcome.WIDTH_EXCEEDED,
                f"grasp width {width * 1000:.1f} mm exceeds the max opening "
                f"{gripper.max_width * 1000:.1f} mm"), None
    if width < config.min_width:
        return (Outcome.WIDTH_EXCEEDED,
                f"grasp width {width * 1000:.1f} mm is below the min width "
                f"{config.min_width * 1000:.1f} mm"), None
    approach = grasp.approach[0]
    angle = math.acos(float(np.clip(-approach[2], -1.0, 1.0)))
    if angle > config.max_approach_angle + 1e-9:
        return (Outcome.UNREACHABLE,
                f"approach {math.degrees(angle):.0f} deg from straight down exceeds "
                f"{math.degrees(config.max_approach_angle):.0f} deg"), None
    bin_config = world.bin_config
    center = grasp.center[0]
    m = config.workspace_margin
    inside = (abs(center[0]) <= 0.5 * bin_config.inner_x + m
              and abs(center[1]) <= 0.5 * bin_config.inner_y + m
              and -m <= center[2] <= bin_config.wall_height + config.workspace_top)
    if not inside:
        return (Outcome.UNREACHABLE,
                f"grasp centre {np.round(center, 3).tolist()} is outside the workspace"), None
    pre = center - config.pregrasp_offset * approach
    if pre[2] < 0.0:
        return (Outcome.UNREACHABLE, "the pre-grasp pose is below the floor"), None
    plan = plan_approach(grasp, world, gripper, config)
    if not plan.feasible:
        return (Outcome.UNREACHABLE, plan.reason), None
    return None, plan


def approach_opening(width: float, gripper: SimGripper, config: ExecutionConfig) -> float:
    """The finger opening during the pre-grasp and the approach, m."""
    width = min(width, gripper.max_width)
    return (gripper.max_width if config.open_mode == "full"
            else min(width + config.open_clearance, gripper.max_width))


def plan_approach(grasp: Grasps, world: BinWorld, gripper: SimGripper,
                  config: ExecutionConfig) -> ApproachPlan:
    """Where the gripper goes for one grasp: ``grasp_depth`` deeper, then the planner's bin
    check (``config.bin_clearance``), world frame.

    :return: the plan: the grasp to execute (possibly moved back) or why it is refused.
    """
    return plan_bin_approach(
        grasp, gripper.config.gripper, BinObstacles.from_bin_config(world.bin_config),
        approach_opening(float(grasp.width[0]), gripper, config), config.pregrasp_offset,
        config.bin_clearance, config.grasp_depth)


def _settle_and_cleanup(world: BinWorld, gripper: SimGripper,
                        config: ExecutionConfig) -> tuple[int, ...]:
    """Park the gripper, let the scene settle, remove objects that ended outside the bin."""
    gripper.park(world)
    if config.settle_time > 0.0:
        world.settle(config.settle_time)
    fell: list[int] = []
    state = world.state()
    for i in np.flatnonzero(world.in_scene & ~state.in_bin):
        world.remove_object(int(i))
        fell.append(int(i))
    positions = world.object_poses()[:, :3, 3]
    for i in np.flatnonzero(world.in_scene):
        if positions[i, 2] < -0.05:
            world.remove_object(int(i))
            fell.append(int(i))
    return tuple(fell)


def execute_grasp(world: BinWorld, gripper: SimGripper, grasp_world: Grasps,
                  config: ExecutionConfig | None = None,
                  rng: np.random.Generator | None = None) -> AttemptResult:
    """Execute one grasp in the world: check, pre-grasp, approach, close, lift, hold.

    Phases and outcomes:

    1. checks (nothing moves): width > max opening → WIDTH_EXCEEDED; approach from below,
       centre outside the workspace or pre-grasp below the floor → UNREACHABLE; then the
       planner's step (:func:`plan_approach`): the gripper will go ``grasp_depth`` deeper than
       the grasp centre, moved back to clear the floor when needed, and an approach that would
       hit a wall (or need more than ``max_backoff``) → UNREACHABLE;
    2. the gripper appears at the pre-grasp pose (``pregrasp_offset`` back along −approach)
       opened per ``open_mode``; any contact there → COLLISION;
    3. it moves along the approach to the grasp pose; a contact with the bin (walls, floor)
       deeper than ``collision_tolerance`` → COLLISION; pushing objects is allowed and
       recorded in :attr:`AttemptResult.pushed`;
    4. the fingers close (``close_mode``, force-limited); fully closed → SLIP (empty);
    5. it lifts ``lift_height`` along world +z and holds for ``hold_time``; an object whose
       centre of mass is above the rim while it touches the gripper, with the fingers not fully
       closed, is held → SUCCESS (all such objects are removed from the world); otherwise SLIP
       (dropped).

    Afterwards the gripper is parked, the scene settles for up to ``settle_time`` and objects
    outside the bin are removed (:attr:`AttemptResult.fell_out`, not counted as lifted).

    :param world: a world built with ``spec_hooks=[gripper.spec_hook]``, objects dropped.
    :param gripper: the gripper.
    :param grasp_world: one grasp in the world frame.
    :param config: execution settings (default :class:`ExecutionConfig`).
    :param rng: reserved for stochastic execution (unused: execution is deterministic).
    :return: the result; a diverging simulation gives outcome ERROR.
    :raises SimulationError: if ``grasp_world`` does not hold exactly one grasp or the world
        has no gripper.
    """
    del rng
    cfg = config if config is not None else ExecutionConfig()
    if not isinstance(grasp_world, Grasps) or len(grasp_world) != 1:
        raise SimulationError("execute_grasp needs exactly one grasp (a Grasps of length 1)")
    start, sim_start = time.perf_counter(), float(world.data.time)
    gripper._bind(world)
    refused, plan = _checked_plan(grasp_world, world, gripper, cfg)
    if plan is None:
        assert refused is not None
        return _result(refused[0], refused[1], "check", start, sim_start, world)
    try:
        return _execute(world, gripper, plan, cfg, start, sim_start)
    except SimulationError as err:
        try:
            gripper.park(world)
        except SimulationError:
            pass
        return _result(Outcome.ERROR, f"simulation failed: {err}", "error", start, sim_start,
                       world)


def _execute(world: BinWorld, gripper: SimGripper, plan: ApproachPlan, cfg: ExecutionConfig,
             start: float, sim_start: float) -> AttemptResult:
    dt = float(world.model.opt.timestep)
    grasp = plan.grasp
    note = (f" (approach {plan.backoff * 1000:.1f} mm shorter to clear the floor)"
            if plan.backoff > 0.0 else "")
    pose = np.eye(4)
    pose[:3, :3] = grasp.rotations[0]
    pose[:3, 3] = grasp.center[0]
    approach = grasp.approach[0]
    width = min(float(grasp.width[0]), gripper.max_width)
    opening = approach_opening(width, gripper, cfg)
    pre = pose.copy()
    pre[:3, 3] = pose[:3, 3] - cfg.pregrasp_offset * approach

    def finish(outcome: Outcome, message: str, stage: str, **kwargs: Any) -> AttemptResult:
        width_now = gripper.opening(world)
        fell = _settle_and_cleanup(world, gripper, cfg)
        return _result(outcome, message + note, stage, start, sim_start, world,
                       finger_width=width_now, fell_out=fell, **kwargs)

    # pre-grasp
    gripper.teleport(world, pre, opening)
    touching = gripper.contacts(world)
    if touching["static_depth"] > 0.0 or touching["objects"]:
        what = "the bin" if touching["static_depth"] > 0.0 else (
            f"object(s) {sorted(touching['objects'])}")
        gripper.park(world)
        return _result(Outcome.COLLISION, f"the gripper intersects {what} at the pre-grasp "
                       "pose", "pregrasp", start, sim_start, world)

    # approach
    pushed: set[int] = set()
    steps = max(1, math.ceil(cfg.pregrasp_offset / (cfg.approach_speed * dt)))
    for k in range(1, steps + 1):
        gripper.set_target(world, pre[:3, 3] + (k / steps) * (pose[:3, 3] - pre[:3, 3]))
        world.step(1)
        touching = gripper.contacts(world)
        pushed |= touching["objects"]
        if touching["static_depth"] > cfg.collision_tolerance:
            return finish(Outcome.COLLISION,
                          f"the gripper hit the bin during the approach "
                          f"({touching['static_depth'] * 1000:.1f} mm deep)", "approach",
                          pushed=tuple(sorted(pushed)))
    world.step(max(1, round(0.05 / dt)))  # let the palm catch up with its target

    # close
    target = (0.0 if cfg.close_mode == "full" else max(width - cfg.squeeze_margin, 0.0))
    current = gripper.opening(world)
    ramp = max(1, math.ceil(abs(current - target) / (2.0 * cfg.finger_speed * dt)))
    for k in range(1, ramp + 1):
        gripper.command_fingers(world, current + (k / ramp) * (target - current))
        world.step(1)
    check = max(1, round(0.02 / dt))
    waited = 0.0
    while waited < cfg.close_time:
        world.step(check)
        waited += check * dt
        if gripper.finger_speed(world) < 1e-3:
            break
    after_close = gripper.contacts(world)
    between = after_close["finger_objects"][0] | after_close["finger_objects"][1]
    if gripper.opening(world) < cfg.min_held_opening:
        return finish(Outcome.SLIP, "the fingers closed fully: nothing between them", "close",
                      pushed=tuple(sorted(pushed)))

    # lift and hold
    lift_from = gripper.palm_position(world)
    target_pos = world.data.mocap_pos[gripper._bind(world).target_mocap].copy()
    steps = max(1, math.ceil(cfg.lift_height / (cfg.lift_speed * dt)))
    for k in range(1, steps + 1):
        world.step(1)
        gripper.set_target(world, target_pos + np.array([0.0, 0.0, k / steps * cfg.lift_height]))
    world.step(max(1, round(cfg.hold_time / dt)))
    risen = float(gripper.palm_position(world)[2] - lift_from[2])
    held = gripper.contacts(world)
    finger_width = gripper.opening(world)
    positions = world.object_poses()[:, :3, 3]
    rim = world.bin_config.wall_height
    lifted = sorted(i for i in held["objects"] if world.in_scene[i] and positions[i, 2] > rim)
    if lifted and finger_width >= cfg.min_held_opening:
        both = held["finger_objects"][0] | held["finger_objects"][1]
        primary = next((i for i in lifted if i in both), lifted[0])
        for i in lifted:
            world.remove_object(int(i))
        fell = _settle_and_cleanup(world, gripper, cfg)
        names = [world.objects[i].name for i in lifted]
        return _result(Outcome.SUCCESS, f"lifted {', '.join(names)} by {risen * 100:.0f} cm",
                       "hold", start, sim_start, world, object_index=int(primary),
                       lifted=tuple(int(i) for i in lifted), fell_out=fell,
                       pushed=tuple(sorted(pushed)), finger_width=finger_width)
    reason = ("the object slipped out while lifting" if between
              else "nothing was held after lifting")
    return finish(Outcome.SLIP, reason, "lift", pushed=tuple(sorted(pushed)))
