"""MoveIt 2 backend of the YuMi executor (``backend: moveit``), through ``moveit_py``.

Needs a full ROS 2 install with MoveIt 2 (``moveit_py``), ``moveit_msgs``, ``shape_msgs`` and a
YuMi MoveIt configuration whose parameters (robot description, SRDF, kinematics, planning
pipelines, controllers) reach the ``MoveItPy`` node, e.g. through the executor's
``--params-file``. None of it is imported before :class:`MoveItBackend` is built, so the
executor runs the ``sim`` backend on a pip-only install; there, building this backend raises
:class:`BackendUnavailableError` and the executor exits with code 2.

One goal (see :meth:`MoveItBackend.execute`), all poses of the tool link ``tool_link``:

1. planning: the goal's grasp pose is brought into ``planning_frame`` (a frame the planning
   scene knows, else TRANSFORM_ERROR), moved ``grasp_depth`` deeper along its approach and
   checked against the bin as in the simulation (:func:`grasp_target`: moved back to clear
   the floor by up to ``max_backoff``, refused as UNREACHABLE when the approach would hit a
   wall); the tool poses are derived (:func:`tool_waypoints`):
   the tool is aligned from the grasp frame by the static ``tool_transform`` (pose of the tool
   link in the grasp frame, ``gpr_msgs/msg/Grasp.msg`` convention: +X approach, +Y closing);
   the pre-grasp pose is ``pregrasp_offset`` back along −approach, the lift pose
   ``lift_height`` above the grasp along the planning frame's +z. The free-space plan to the
   pre-grasp pose is made before anything moves: when it fails the goal is refused
   (``executed`` false, UNREACHABLE or COLLISION);
2. pregrasp: the gripper opens to the grasp width + ``open_clearance``, the arm moves;
3. approach: a straight line (``linear_pipeline`` / ``linear_planner_id``, Pilz LIN by
   default) to the grasp pose;
4. closing: the gripper closes (force-limited by the controller); a measured opening below
   ``min_held_width`` is SLIP;
5. lifting: a straight line up; the opening is measured again (SLIP when the object fell);
6. placing (goal ``place``): free-space motion to ``dropoff_pose``, the gripper opens;
7. retreat: straight up by ``retreat_height``.

Plan failures map to UNREACHABLE (COLLISION when MoveIt reports a collision, TRANSFORM_ERROR
for an unknown frame), failed executions to EXECUTION_FAILED (COLLISION during the approach,
where a controller abort means contact). A cancel is honoured between stages. The bin is
added to the planning scene once at start as five boxes (floor and walls, from ``bin_center``,
``bin_size`` and ``bin_wall_thickness``).

Not exercised on the development machine (``moveit_py`` is not installable there); the
ROS-free geometry (:func:`pose_matrix`, :func:`tool_waypoints`, :func:`bin_boxes`) is tested.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
import math
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial.transform import Rotation

from gpr_msgs.action import ExecuteGrasp
from gpr_ros.core.errors import ConfigError, GprError
from gpr_ros.core.grasp.clearance import BinObstacles, ClearanceConfig, plan_bin_approach
from gpr_ros.core.grasp.grasps import Grasps
from gpr_ros.core.grasp.gripper import GripperModel

if TYPE_CHECKING:
    from gpr_ros.ros.nodes.yumi_executor import GraspJob

__all__ = [
    'GRIPPER_MODES',
    'BackendUnavailableError',
    'MoveItBackend',
    'MoveItSettings',
    'bin_boxes',
    'grasp_target',
    'matrix_to_xyzquat',
    'pose_matrix',
    'tool_waypoints',
]

GRIPPER_MODES = ('group', 'action')
_R = ExecuteGrasp.Result
#: feedback(stage, stage_name, progress) and canceled() callbacks of the executor.
Feedback = Callable[[int, str, float], None]
CancelCheck = Callable[[], bool]


class BackendUnavailableError(GprError):
    """The backend cannot run here (``moveit_py`` missing, no MoveIt configuration, ...)."""


# ---------------------------------------------------------------------- ROS-free geometry


def pose_matrix(xyzquat: ArrayLike) -> NDArray[np.float64]:
    """A 4x4 transform from ``[x, y, z, qx, qy, qz, qw]``.

    :param xyzquat: translation (m) and quaternion (any non-zero norm; normalised).
    :return: the transform.
    :raises ConfigError: on a wrong length, non-finite values or a zero quaternion.
    """
    v = np.asarray(xyzquat, dtype=np.float64).reshape(-1)
    if v.shape != (7,) or not np.isfinite(v).all():
        raise ConfigError(f'a pose is [x, y, z, qx, qy, qz, qw] (7 finite numbers), got '
                          f'{v.tolist()}')
    norm = float(np.linalg.norm(v[3:]))
    if norm < 1e-9:
        raise ConfigError(f'the quaternion of pose {v.tolist()} is zero')
    transform = np.eye(4)
    transform[:3, :3] = Rotation.from_quat(v[3:] / norm).as_matrix()
    transform[:3, 3] = v[:3]
    return transform


def matrix_to_xyzquat(transform: ArrayLike) -> tuple[float, ...]:
    """``[x, y, z, qx, qy, qz, qw]`` (w >= 0) of a 4x4 rigid transform.

    :param transform: the transform.
    :return: seven floats.
    """
    t = np.asarray(transform, dtype=np.float64)
    quat = Rotation.from_matrix(t[:3, :3]).as_quat()
    if quat[3] < 0.0:
        quat = -quat
    return tuple(float(v) for v in (*t[:3, 3], *quat))


def tool_waypoints(T_planning_grasp: ArrayLike, T_grasp_tool: ArrayLike,  # noqa: N803
                   pregrasp_offset: float, lift_height: float) -> dict[str, NDArray[np.float64]]:
    """Tool-link poses of one grasp in the planning frame.

    :param T_planning_grasp: 4x4 grasp frame (``gpr_msgs/Grasp``: +X approach) in the
        planning frame.
    :param T_grasp_tool: 4x4 pose of the tool link in the grasp frame.
    :param pregrasp_offset: distance of the pre-grasp pose back along −approach, m.
    :param lift_height: lift along the planning frame's +z, m.
    :return: ``{'pregrasp', 'grasp', 'lift'}`` 4x4 tool poses.
    """
    grasp = np.asarray(T_planning_grasp, dtype=np.float64)
    tool = np.asarray(T_grasp_tool, dtype=np.float64)
    approach = grasp[:3, 0]
    pre = grasp.copy()
    pre[:3, 3] -= pregrasp_offset * approach
    lift = grasp.copy()
    lift[2, 3] += lift_height
    return {'pregrasp': pre @ tool, 'grasp': grasp @ tool, 'lift': lift @ tool}


def bin_boxes(center: Sequence[float], inner_size: Sequence[float],
              wall_thickness: float) -> list[tuple[str, tuple[float, float, float],
                                                   tuple[float, float, float]]]:
    """Floor and four walls of an open bin as axis-aligned boxes.

    :param center: centre of the bin floor's top face (x, y, z), m.
    :param inner_size: inner length x, inner width y and wall height z, m.
    :param wall_thickness: thickness of the floor and walls, m.
    :return: ``(name, (sx, sy, sz), (cx, cy, cz))`` per box.
    """
    cx, cy, cz = (float(v) for v in center)
    ix, iy, h = (float(v) for v in inner_size)
    t = float(wall_thickness)
    ox, oy = ix + 2 * t, iy + 2 * t
    zc = cz + 0.5 * h
    return [
        ('floor', (ox, oy, t), (cx, cy, cz - 0.5 * t)),
        ('wall_x_pos', (t, oy, h), (cx + 0.5 * (ix + t), cy, zc)),
        ('wall_x_neg', (t, oy, h), (cx - 0.5 * (ix + t), cy, zc)),
        ('wall_y_pos', (ix, t, h), (cx, cy + 0.5 * (iy + t), zc)),
        ('wall_y_neg', (ix, t, h), (cx, cy - 0.5 * (iy + t), zc)),
    ]


def grasp_target(grasp_pose: ArrayLike, width: float, settings: MoveItSettings,
                 pregrasp_offset: float, max_width: float
                 ) -> tuple[NDArray[np.float64] | None, float, str]:
    """Where the tool goes for a grasp: ``grasp_depth`` deeper, then the bin check.

    The same planning step as the simulated executor
    (:func:`gpr_ros.core.sim.gripper.plan_approach`): the grasp pose moves ``grasp_depth``
    along its approach (+X), then :func:`~gpr_ros.core.grasp.clearance.plan_bin_approach`
    checks the approach against the configured bin (skipped when ``bin_size`` is all 0).

    :param grasp_pose: 4x4 grasp pose in the planning frame.
    :param width: grasp width, m.
    :param settings: the MoveIt settings (bin, depth, clearances, open clearance).
    :param pregrasp_offset: length of the approach, m.
    :param max_width: the gripper's max opening, m.
    :return: ``(pose, backoff, reason)``: the 4x4 grasp pose to plan for (``None`` when the
        approach is refused, with the reason), and how far it was moved back from the floor.
    """
    pose = np.array(grasp_pose, dtype=np.float64)
    if min(settings.bin_size) <= 0.0:  # no bin to check against: the depth alone
        pose[:3, 3] += settings.grasp_depth * pose[:3, 0]
        return pose, 0.0, ''
    ix, iy, h = settings.bin_size
    cx, cy, cz = settings.bin_center
    obstacles = BinObstacles.from_dimensions(ix, iy, h, settings.bin_wall_thickness, cz,
                                             (cx, cy))
    grasp = Grasps(pose[None, :3, 3], pose[None, :3, 0], pose[None, :3, 1], [width])
    opening = min(width + settings.open_clearance, max_width)
    plan = plan_bin_approach(grasp, GripperModel(max_width=max_width), obstacles, opening,
                             pregrasp_offset, ClearanceConfig(
                                 floor_clearance=settings.floor_clearance,
                                 max_backoff=settings.max_backoff), settings.grasp_depth)
    if not plan.feasible:
        return None, 0.0, plan.reason
    pose[:3, 3] = plan.grasp.center[0]
    return pose, plan.backoff, ''


# ---------------------------------------------------------------------- settings


@dataclass(frozen=True)
class MoveItSettings:
    """The executor's MoveIt parameters (see ``config/yumi_executor.yaml``).

    :raises ConfigError: on an invalid value.
    """

    planning_frame: str = 'yumi_base_link'
    arm_group: str = 'right_arm'
    gripper_group: str = 'right_gripper'
    tool_link: str = 'gripper_r_tcp'
    tool_transform: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, math.sqrt(0.5), 0.0,
                                         math.sqrt(0.5))
    gripper_mode: str = 'group'
    gripper_action: str = 'gripper_controller/gripper_cmd'
    gripper_joint_scale: float = 0.5
    gripper_max_effort: float = 20.0
    open_clearance: float = 0.01
    min_held_width: float = 0.002
    bin_center: tuple[float, ...] = (0.4, 0.0, 0.0)
    bin_size: tuple[float, ...] = (0.30, 0.30, 0.10)
    bin_wall_thickness: float = 0.01
    grasp_depth: float = 0.015
    floor_clearance: float = 0.002
    max_backoff: float = 0.02
    dropoff_pose: tuple[float, ...] = (0.3, -0.3, 0.25, 0.0, 1.0, 0.0, 0.0)
    retreat_height: float = 0.10
    planning_pipeline: str = 'ompl'
    planner_id: str = 'RRTConnectkConfigDefault'
    linear_pipeline: str = 'pilz_industrial_motion_planner'
    linear_planner_id: str = 'LIN'
    planning_time: float = 5.0
    velocity_scaling: float = 0.2
    acceleration_scaling: float = 0.2
    moveit_node_name: str = 'yumi_executor_moveit'
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ('planning_frame', 'arm_group', 'gripper_group', 'tool_link',
                     'planning_pipeline', 'linear_pipeline', 'moveit_node_name'):
            if not getattr(self, name):
                raise ConfigError(f'{name} is empty')
        if self.gripper_mode not in GRIPPER_MODES:
            raise ConfigError(f'gripper_mode is {self.gripper_mode!r}; expected one of '
                              f'{", ".join(map(repr, GRIPPER_MODES))}')
        if self.gripper_mode == 'action' and not self.gripper_action:
            raise ConfigError("gripper_action is empty but gripper_mode is 'action'")
        for name in ('tool_transform', 'dropoff_pose'):
            try:
                pose_matrix(getattr(self, name))
            except ConfigError as err:
                raise ConfigError(f'{name}: {err}') from None
        for name, size in (('bin_center', 3), ('bin_size', 3)):
            value = getattr(self, name)
            if len(value) != size or not all(math.isfinite(v) for v in value):
                raise ConfigError(f'{name} is {list(value)}; expected {size} finite numbers')
        if min(self.bin_size) < 0.0:
            raise ConfigError(f'bin_size is {list(self.bin_size)}; expected sizes >= 0 '
                              '(all 0: no bin in the planning scene)')
        for name in ('gripper_joint_scale', 'gripper_max_effort', 'planning_time',
                     'velocity_scaling', 'acceleration_scaling', 'timeout_s',
                     'bin_wall_thickness'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f'{name} is {value}; expected a finite value > 0')
        for name in ('velocity_scaling', 'acceleration_scaling'):
            if getattr(self, name) > 1.0:
                raise ConfigError(f'{name} is {getattr(self, name)}; expected a value <= 1')
        for name in ('open_clearance', 'min_held_width', 'retreat_height', 'grasp_depth',
                     'floor_clearance', 'max_backoff'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f'{name} is {value}; expected a finite value >= 0')


# ---------------------------------------------------------------------- the backend


class _StageFailed(Exception):  # noqa: N818 - control flow inside one goal
    def __init__(self, code: int, message: str, executed: bool) -> None:
        super().__init__(message)
        self.code, self.message, self.executed = code, message, executed


class MoveItBackend:
    """Executes ``ExecuteGrasp`` goals with MoveIt 2 through ``moveit_py`` (module docstring).

    :param node: the executor node (for the gripper action client and logging).
    :param settings: the MoveIt parameters.
    :param max_width: the gripper's maximum opening, m.
    :raises BackendUnavailableError: when ``moveit_py`` or the MoveIt configuration is missing.
    """

    def __init__(self, node: Any, settings: MoveItSettings, max_width: float) -> None:
        self._node = node
        self._cfg = settings
        self._max_width = max_width
        try:  # lazily: only a full ROS 2 install with MoveIt 2 has these
            from moveit.core.robot_state import RobotState
            from moveit.planning import MoveItPy, PlanRequestParameters
            from moveit_msgs.msg import CollisionObject, MoveItErrorCodes
            from shape_msgs.msg import SolidPrimitive
        except ImportError as err:
            raise BackendUnavailableError(
                f"backend 'moveit' needs moveit_py, moveit_msgs and shape_msgs (a ROS 2 install "
                f"with MoveIt 2 and a YuMi MoveIt configuration): {err}") from None
        self._RobotState = RobotState
        self._PlanRequestParameters = PlanRequestParameters
        self._codes = MoveItErrorCodes
        self._gripper_client: Any = None
        try:
            self._moveit = MoveItPy(node_name=settings.moveit_node_name)
            self._arm = self._moveit.get_planning_component(settings.arm_group)
            self._gripper = (self._moveit.get_planning_component(settings.gripper_group)
                             if settings.gripper_mode == 'group' else None)
            self._scene_monitor = self._moveit.get_planning_scene_monitor()
        except Exception as err:  # noqa: BLE001 - moveit_py raises plain RuntimeErrors
            raise BackendUnavailableError(f'MoveIt could not start: {err}') from None
        if settings.gripper_mode == 'action':
            self._gripper_client = self._make_gripper_client()
        if min(settings.bin_size) > 0.0:
            self._add_bin(CollisionObject, SolidPrimitive)

    # --- setup --------------------------------------------------------------------------------

    def _make_gripper_client(self) -> Any:
        try:
            from control_msgs.action import GripperCommand
            from rclpy.action import ActionClient
            from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
        except ImportError as err:
            raise BackendUnavailableError(
                f"gripper_mode 'action' needs control_msgs: {err}") from None
        self._GripperCommand = GripperCommand
        return ActionClient(self._node, GripperCommand, self._cfg.gripper_action,
                            callback_group=MutuallyExclusiveCallbackGroup())

    def _add_bin(self, collision_object: Any, solid_primitive: Any) -> None:
        from geometry_msgs.msg import Pose

        cfg = self._cfg
        obj = collision_object()
        obj.id = 'gpr_bin'
        obj.header.frame_id = cfg.planning_frame
        for _name, size, center in bin_boxes(cfg.bin_center, cfg.bin_size,
                                             cfg.bin_wall_thickness):
            box = solid_primitive(type=solid_primitive.BOX, dimensions=list(size))
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = center
            pose.orientation.w = 1.0
            obj.primitives.append(box)
            obj.primitive_poses.append(pose)
        obj.operation = collision_object.ADD
        with self._scene_monitor.read_write() as scene:
            scene.apply_collision_object(obj)
            scene.current_state.update()
        self._node.get_logger().info(
            f'bin added to the planning scene in {cfg.planning_frame!r}: inner size '
            f'{list(cfg.bin_size)} m at {list(cfg.bin_center)}')

    # --- motion primitives --------------------------------------------------------------------

    def _params(self, pipeline: str, planner_id: str) -> Any:
        try:
            params = self._PlanRequestParameters(self._moveit)
        except TypeError:  # releases whose constructor takes a parameter namespace
            params = self._PlanRequestParameters(self._moveit, '')
        params.planning_pipeline = pipeline
        params.planner_id = planner_id
        params.planning_time = self._cfg.planning_time
        params.planning_attempts = 1
        params.max_velocity_scaling_factor = self._cfg.velocity_scaling
        params.max_acceleration_scaling_factor = self._cfg.acceleration_scaling
        return params

    def _plan_pose(self, pose: NDArray[np.float64], linear: bool, executed: bool) -> Any:
        from geometry_msgs.msg import PoseStamped

        cfg = self._cfg
        msg = PoseStamped()
        msg.header.frame_id = cfg.planning_frame
        x, y, z, qx, qy, qz, qw = matrix_to_xyzquat(pose)
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = x, y, z
        o = msg.pose.orientation
        o.x, o.y, o.z, o.w = qx, qy, qz, qw
        self._arm.set_start_state_to_current_state()
        self._arm.set_goal_state(pose_stamped_msg=msg, pose_link=cfg.tool_link)
        params = (self._params(cfg.linear_pipeline, cfg.linear_planner_id) if linear
                  else self._params(cfg.planning_pipeline, cfg.planner_id))
        plan = self._arm.plan(params)
        if not plan:
            self._raise_plan_failure(plan, executed)
        return plan.trajectory

    def _raise_plan_failure(self, plan: Any, executed: bool) -> None:
        codes = self._codes
        value = int(getattr(getattr(plan, 'error_code', None), 'val', codes.PLANNING_FAILED))
        collision = {codes.START_STATE_IN_COLLISION, codes.GOAL_IN_COLLISION,
                     codes.INVALID_MOTION_PLAN,
                     codes.MOTION_PLAN_INVALIDATED_BY_ENVIRONMENT_CHANGE}
        if value in collision:
            raise _StageFailed(_R.COLLISION, f'planning failed: collision (MoveIt code {value})',
                               executed)
        if value == codes.FRAME_TRANSFORM_FAILURE:
            raise _StageFailed(_R.TRANSFORM_ERROR, 'planning failed: frame transform failure',
                               executed)
        raise _StageFailed(_R.UNREACHABLE, f'no plan found (MoveIt code {value})', executed)

    def _run(self, trajectory: Any, group: str, code: int, what: str) -> None:
        try:
            status = self._moveit.execute(trajectory, controllers=[])
        except TypeError:  # releases with execute(group_name, trajectory, blocking)
            status = self._moveit.execute(group, trajectory, blocking=True)
        if status is not None and not bool(status):
            raise _StageFailed(code, f'{what}: execution failed '
                               f'({getattr(status, "status", status)})', True)

    def _gripper_to(self, width: float, code_on_failure: int | None) -> float:
        """Command the gripper to an opening; return the measured opening, m."""
        cfg = self._cfg
        target = float(np.clip(width, 0.0, self._max_width))
        if cfg.gripper_mode == 'action':
            return self._gripper_action(target, code_on_failure)
        assert self._gripper is not None
        state = self._RobotState(self._moveit.get_robot_model())
        joints = len(state.get_joint_group_positions(cfg.gripper_group))
        state.set_joint_group_positions(cfg.gripper_group,
                                        [cfg.gripper_joint_scale * target] * joints)
        self._gripper.set_start_state_to_current_state()
        self._gripper.set_goal_state(robot_state=state)
        plan = self._gripper.plan()
        if not plan:
            raise _StageFailed(_R.EXECUTION_FAILED, 'the gripper motion could not be planned',
                               True)
        try:
            self._run(plan.trajectory, cfg.gripper_group, code_on_failure or _R.EXECUTION_FAILED,
                      'gripper')
        except _StageFailed:
            if code_on_failure is not None:
                raise
            # closing on an object stops the fingers short of the target: not a failure
        return self._measured_width()

    def _gripper_action(self, width: float, code_on_failure: int | None) -> float:
        cfg = self._cfg
        client = self._gripper_client
        if not client.wait_for_server(timeout_sec=cfg.timeout_s):
            raise _StageFailed(_R.BACKEND_ERROR, f'gripper action {cfg.gripper_action!r} is not '
                               'available', True)
        goal = self._GripperCommand.Goal()
        goal.command.position = cfg.gripper_joint_scale * width
        goal.command.max_effort = cfg.gripper_max_effort
        handle = _wait(client.send_goal_async(goal), cfg.timeout_s)
        if handle is None or not handle.accepted:
            raise _StageFailed(_R.EXECUTION_FAILED, 'the gripper rejected the command', True)
        reply = _wait(handle.get_result_async(), cfg.timeout_s)
        if reply is None:
            raise _StageFailed(_R.TIMEOUT, 'the gripper did not answer in time', True)
        result = reply.result
        if code_on_failure is not None and not (result.reached_goal or result.stalled):
            raise _StageFailed(code_on_failure, 'the gripper did not reach its target', True)
        return float(result.position) / cfg.gripper_joint_scale

    def _measured_width(self) -> float:
        cfg = self._cfg
        with self._scene_monitor.read_only() as scene:
            positions = list(scene.current_state.get_joint_group_positions(cfg.gripper_group))
        if not positions:
            return 0.0
        return float(np.mean(positions)) / cfg.gripper_joint_scale

    def _grasp_in_planning_frame(self, frame: str, grasp_pose: NDArray[np.float64]
                                 ) -> NDArray[np.float64]:
        cfg = self._cfg
        if frame == cfg.planning_frame:
            return grasp_pose
        with self._scene_monitor.read_only() as scene:
            if not scene.knows_frame_transform(frame):
                raise _StageFailed(_R.TRANSFORM_ERROR, f'the planning scene knows no frame '
                                   f'{frame!r} (planning frame {cfg.planning_frame!r})', False)
            transform = np.asarray(scene.get_frame_transform(frame), dtype=np.float64)
        return transform @ grasp_pose

    # --- one goal -----------------------------------------------------------------------------

    def execute(self, job: GraspJob, feedback: Feedback,
                canceled: CancelCheck) -> tuple[ExecuteGrasp.Result, bool]:
        """Run one grasp (module docstring).

        :param job: the validated goal.
        :param feedback: called with (``ExecuteGrasp.Feedback`` stage, name, progress).
        :param canceled: whether a cancel was requested.
        :return: the result and whether the goal ended canceled.
        """
        cfg = self._cfg
        fb = ExecuteGrasp.Feedback
        result = ExecuteGrasp.Result(object_id=-1)
        try:
            feedback(fb.STAGE_PLANNING, 'planning', 0.0)
            target, _, reason = grasp_target(self._grasp_in_planning_frame(job.frame, job.pose),
                                             job.width, cfg, job.pregrasp_offset,
                                             self._max_width)
            if target is None:
                raise _StageFailed(_R.UNREACHABLE, reason, False)
            poses = tool_waypoints(target, pose_matrix(cfg.tool_transform), job.pregrasp_offset,
                                   job.lift_height)
            to_pregrasp = self._plan_pose(poses['pregrasp'], linear=False, executed=False)
            stages = [(fb.STAGE_PREGRASP, 'pregrasp', 0.1), (fb.STAGE_APPROACH, 'approach', 0.3),
                      (fb.STAGE_CLOSING, 'closing', 0.5), (fb.STAGE_LIFTING, 'lifting', 0.6)]
            if job.place:
                stages += [(fb.STAGE_PLACING, 'placing', 0.75), (fb.STAGE_RETREAT, 'retreat', 0.9)]
            for stage, name, progress in stages:
                if canceled():
                    result.error_code = _R.CANCELED
                    result.message = f'canceled before {name}'
                    return result, True
                feedback(stage, name, progress)
                if name == 'pregrasp':
                    self._gripper_to(job.width + cfg.open_clearance, _R.EXECUTION_FAILED)
                    result.executed = True
                    self._run(to_pregrasp, cfg.arm_group, _R.EXECUTION_FAILED, name)
                elif name == 'approach':
                    self._run(self._plan_pose(poses['grasp'], True, True), cfg.arm_group,
                              _R.COLLISION, name)
                elif name == 'closing':
                    result.finger_width = self._gripper_to(0.0, None)
                    if result.finger_width < cfg.min_held_width:
                        raise _StageFailed(_R.SLIP, 'the fingers closed fully: nothing between '
                                           'them', True)
                elif name == 'lifting':
                    self._run(self._plan_pose(poses['lift'], True, True), cfg.arm_group,
                              _R.EXECUTION_FAILED, name)
                    result.finger_width = self._measured_width()
                    if result.finger_width < cfg.min_held_width:
                        raise _StageFailed(_R.SLIP, 'the object slipped out while lifting', True)
                elif name == 'placing':
                    self._run(self._plan_pose(pose_matrix(cfg.dropoff_pose), False, True),
                              cfg.arm_group, _R.EXECUTION_FAILED, name)
                    self._gripper_to(self._max_width, _R.EXECUTION_FAILED)
                else:  # retreat: straight up from the drop-off pose
                    up = pose_matrix(cfg.dropoff_pose)
                    up[2, 3] += cfg.retreat_height
                    self._run(self._plan_pose(up, True, True), cfg.arm_group,
                              _R.EXECUTION_FAILED, name)
            result.success = True
            result.error_code = _R.NONE
            result.message = 'grasped and lifted' + (', placed' if job.place else '')
        except _StageFailed as failure:
            result.error_code = failure.code
            result.message = failure.message
            result.executed = bool(result.executed or failure.executed)
        except Exception as err:  # noqa: BLE001 - moveit_py raises plain RuntimeErrors
            result.error_code = _R.BACKEND_ERROR
            result.message = f'MoveIt failed: {err}'
        return result, False


def _wait(future: Any, timeout: float) -> Any:
    """Wait for a future completed by another executor thread; ``None`` on timeout."""
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    if not done.wait(timeout):
        future.cancel()
        return None
    return future.result()
