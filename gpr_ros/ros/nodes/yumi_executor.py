"""YuMi grasp executor node: the ``execute_grasp`` action (``gpr_msgs/ExecuteGrasp``).

Each goal is checked first; a goal that fails a check ends ABORTED with ``executed`` false
(nothing moved) and:

- ``INVALID_GOAL``: empty ``header.frame_id``, a non-finite pose or width, a quaternion whose
  norm is off 1 by more than :data:`QUATERNION_TOLERANCE`, a negative width, a negative or
  non-finite ``pregrasp_offset`` / ``lift_height``, or a malformed contact list;
- ``WIDTH_EXCEEDED``: a width above ``max_width`` (+ :data:`WIDTH_TOLERANCE`) or below
  ``min_width``, as the simulated gripper's own checks.

Then the ``backend`` runs it, publishing feedback as each stage starts:

- ``sim``: forwards the grasp (in its goal frame) to the simulated world's
  ``gpr_msgs/SimExecuteGrasp`` service ``world_service``, called with ``call_async`` from a
  callback group of its own. Feedback: ``planning`` (waiting for the world), then
  ``pregrasp`` when the request is sent: the world runs pre-grasp, approach, closing and lift
  in one call, with its own execution settings (the goal's ``pregrasp_offset``,
  ``lift_height`` and ``place`` do not apply there). A world that is not there within
  ``timeout_s`` gives ``BACKEND_ERROR`` (``executed`` false); one that does not answer within
  ``timeout_s`` gives ``TIMEOUT`` with ``executed`` true (it may have moved). The world's
  answer maps to the result: ``executed``, ``finger_width``, ``lifted_ids``, ``object_id``,
  error codes by :data:`SIM_TO_RESULT` (``NO_SCENE`` becomes ``BACKEND_ERROR``).
- ``moveit``: :class:`gpr_ros.ros.moveit_backend.MoveItBackend` (``moveit_py``, imported only
  when selected). Where ``moveit_py`` or the MoveIt configuration is missing, the node logs
  why and exits with code 2 at start instead of answering every goal with an error: a
  clutter-removal supervisor would read an error per goal as "try the next grasp".

One goal at a time: a goal that arrives while another runs is **rejected** (not queued): a
queued grasp would run on a scene that the running one changes, and the supervisor sends
one goal at a time anyway. Cancel: a goal canceled before the backend starts (e.g. while it
waits for the world) ends CANCELED with ``executed`` false; during a simulated execution the
world's call cannot be interrupted, so the cancel is honoured when it returns: CANCELED, with
``executed``, ``lifted_ids`` ... as the world reported them. The MoveIt backend honours a
cancel between stages.

Invalid parameters are logged and the process exits with code 2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
import math
import sys
import threading
import time
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.client import Client
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from std_msgs.msg import Header

from gpr_msgs.action import ExecuteGrasp
from gpr_msgs.msg import Grasp
from gpr_msgs.srv import SimExecuteGrasp
from gpr_ros.core.errors import ConfigError
from gpr_ros.ros.conversions import msgs_to_grasps
from gpr_ros.ros.errors import GraspMessageError
from gpr_ros.ros.moveit_backend import MoveItSettings
from gpr_ros.ros.runtime import NodeStartupError, run_node

BACKENDS = ('sim', 'moveit')
EXIT_STARTUP_FAILED = 2
#: largest accepted deviation of the goal quaternion's norm from 1.
QUATERNION_TOLERANCE = 1e-3
#: widths up to max_width + this are accepted, m (the simulated gripper's own tolerance).
WIDTH_TOLERANCE = 1e-6
_R = ExecuteGrasp.Result
_S = SimExecuteGrasp.Response
#: SimExecuteGrasp error code -> ExecuteGrasp result error code.
SIM_TO_RESULT: dict[int, int] = {
    _S.NONE: _R.NONE, _S.UNKNOWN: _R.UNKNOWN, _S.WIDTH_EXCEEDED: _R.WIDTH_EXCEEDED,
    _S.COLLISION: _R.COLLISION, _S.SLIP: _R.SLIP, _S.UNREACHABLE: _R.UNREACHABLE,
    _S.NO_SCENE: _R.BACKEND_ERROR, _S.TRANSFORM_ERROR: _R.TRANSFORM_ERROR,
}
Feedback = Callable[[int, str, float], None]
CancelCheck = Callable[[], bool]



class GoalError(ValueError):
    """A goal that fails the checks; ``code`` is an ``ExecuteGrasp.Result`` error code."""

    def __init__(self, code: int, message: str) -> None:
        """Keep the code with the message."""
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class GraspJob:
    """A checked goal, ready for a backend.

    :ivar frame: frame of the grasp pose (the goal's ``header.frame_id``).
    :ivar pose: 4x4 grasp frame (``gpr_msgs/Grasp`` convention) in ``frame``.
    :ivar width: grasp width, m.
    :ivar pregrasp_offset: m (the goal's, or the node default when the goal says 0).
    :ivar lift_height: m (likewise).
    :ivar place: place the object at the drop-off pose.
    :ivar grasp: the goal's grasp message (forwarded unchanged by the sim backend).
    :ivar stamp: the goal header's stamp.
    """

    frame: str
    pose: NDArray[np.float64]
    width: float
    pregrasp_offset: float
    lift_height: float
    place: bool
    grasp: Grasp
    stamp: Any


class Backend(Protocol):
    """What the executor needs of a backend."""

    def execute(self, job: GraspJob, feedback: Feedback,
                canceled: CancelCheck) -> tuple[ExecuteGrasp.Result, bool]:
        """Run one checked goal; return the result and whether it ended canceled."""


@dataclass(frozen=True)
class ExecutorConfig:
    """Validated parameters of the executor (see :data:`PARAMETERS`).

    :raises ConfigError: on an invalid value.
    """

    backend: str = 'sim'
    max_width: float = 0.05
    min_width: float = 0.005
    pregrasp_offset: float = 0.10
    lift_height: float = 0.15
    timeout_s: float = 30.0
    world_service: str = 'sim_world/execute'
    moveit: MoveItSettings | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f'backend is {self.backend!r}; expected one of '
                              f'{", ".join(map(repr, BACKENDS))}')
        for name in ('max_width', 'pregrasp_offset', 'lift_height', 'timeout_s'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f'{name} is {value}; expected a finite value > 0')
        if not (math.isfinite(self.min_width) and 0.0 <= self.min_width < self.max_width):
            raise ConfigError(f'min_width is {self.min_width}; expected a finite value in '
                              f'[0, max_width = {self.max_width})')
        if self.backend == 'sim' and not self.world_service:
            raise ConfigError("world_service is empty; the 'sim' backend needs the world's "
                              'SimExecuteGrasp service')
        if self.backend == 'moveit' and self.moveit is None:
            raise ConfigError("backend 'moveit' needs its MoveIt settings")


def _floats(lo: float, hi: float) -> dict[str, Any]:
    return {'floating_point_range': [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]}


_MOVEIT = MoveItSettings()
#: name -> (default, description, extra descriptor fields).
PARAMETERS: dict[str, tuple[Any, str, dict[str, Any]]] = {
    'backend': ('sim', "'sim' (the simulated world's execute service) or 'moveit' (moveit_py, a "
                'full ROS 2 install with a YuMi MoveIt configuration)', {}),
    'max_width': (0.05, 'maximum opening of the gripper [m]; wider goals are refused',
                  _floats(0.001, 1.0)),
    'min_width': (0.005, 'narrower goals are refused with WIDTH_EXCEEDED [m]: fingers closed on '
                  'something thinner cannot be told from empty ones (0: accept all)',
                  _floats(0.0, 1.0)),
    'pregrasp_offset': (0.10, 'moveit: pre-grasp distance along -approach when the goal says 0 '
                        '[m]', _floats(0.001, 1.0)),
    'lift_height': (0.15, 'moveit: lift after closing when the goal says 0 [m]',
                    _floats(0.001, 2.0)),
    'timeout_s': (30.0, 'sim: wait this long for the world service to appear and again for its '
                  'answer; moveit: for the gripper action [s]', _floats(0.1, 3600.0)),
    'world_service': ('sim_world/execute', "sim: the world's gpr_msgs/SimExecuteGrasp service",
                      {}),
    'planning_frame': (_MOVEIT.planning_frame, 'moveit: planning frame (goal frames must be '
                       'known to the planning scene)', {}),
    'arm_group': (_MOVEIT.arm_group, 'moveit: planning group of the arm', {}),
    'gripper_group': (_MOVEIT.gripper_group, "moveit: planning group of the gripper "
                      "(gripper_mode 'group'; also read for the measured opening)", {}),
    'tool_link': (_MOVEIT.tool_link, 'moveit: link whose pose is planned (the TCP)', {}),
    'tool_transform': (list(_MOVEIT.tool_transform), 'moveit: pose of tool_link in the grasp '
                       'frame (+X approach, +Y closing), [x, y, z, qx, qy, qz, qw]; the default '
                       'puts the tool z axis along the approach and y along the closing line',
                       {}),
    'gripper_mode': (_MOVEIT.gripper_mode, "moveit: 'group' (plan the gripper planning group) "
                     "or 'action' (control_msgs/GripperCommand on gripper_action)", {}),
    'gripper_action': (_MOVEIT.gripper_action, "moveit: GripperCommand action of gripper_mode "
                       "'action'", {}),
    'gripper_joint_scale': (_MOVEIT.gripper_joint_scale, 'moveit: gripper joint value (or '
                            'GripperCommand position) per metre of opening',
                            _floats(1e-6, 1000.0)),
    'gripper_max_effort': (_MOVEIT.gripper_max_effort, "moveit: GripperCommand max effort [N] "
                           "(gripper_mode 'action')", _floats(0.001, 1000.0)),
    'open_clearance': (_MOVEIT.open_clearance, 'moveit: the gripper opens to the grasp width + '
                       'this before the approach [m]', _floats(0.0, 0.1)),
    'min_held_width': (_MOVEIT.min_held_width, 'moveit: a measured opening below this after '
                       'closing or lifting is SLIP (nothing held) [m]', _floats(0.0, 0.1)),
    'bin_center': (list(_MOVEIT.bin_center), 'moveit: centre of the bin floor top face in the '
                   'planning frame [x, y, z] (m)', {}),
    'bin_size': (list(_MOVEIT.bin_size), 'moveit: bin inner length, width and wall height [m]; '
                 'all 0: no bin in the planning scene', {}),
    'bin_wall_thickness': (_MOVEIT.bin_wall_thickness, 'moveit: bin wall and floor thickness '
                           '[m]', _floats(0.0001, 0.5)),
    'grasp_depth': (_MOVEIT.grasp_depth, 'moveit: the fingertips go this far past the grasp '
                    'centre along the approach, so the contacts lie on the finger pads [m]',
                    _floats(0.0, 0.1)),
    'floor_clearance': (_MOVEIT.floor_clearance, 'moveit: the gripper stays this far above the '
                        'bin floor; deeper grasps are moved back along -approach [m]',
                        _floats(0.0, 0.1)),
    'max_backoff': (_MOVEIT.max_backoff, 'moveit: a grasp is moved back by at most this to '
                    'clear the floor, else refused as UNREACHABLE [m]', _floats(0.0, 0.2)),
    'dropoff_pose': (list(_MOVEIT.dropoff_pose), 'moveit: tool_link pose for placing, in the '
                     'planning frame [x, y, z, qx, qy, qz, qw]', {}),
    'retreat_height': (_MOVEIT.retreat_height, 'moveit: retreat straight up after placing [m]',
                       _floats(0.0, 1.0)),
    'planning_pipeline': (_MOVEIT.planning_pipeline, 'moveit: pipeline of free-space motions',
                          {}),
    'planner_id': (_MOVEIT.planner_id, 'moveit: planner of free-space motions', {}),
    'linear_pipeline': (_MOVEIT.linear_pipeline, 'moveit: pipeline of straight-line motions '
                        '(approach, lift, retreat)', {}),
    'linear_planner_id': (_MOVEIT.linear_planner_id, 'moveit: planner of straight-line motions',
                          {}),
    'planning_time': (_MOVEIT.planning_time, 'moveit: planning time per motion [s]',
                      _floats(0.01, 600.0)),
    'velocity_scaling': (_MOVEIT.velocity_scaling, 'moveit: max velocity scaling factor',
                         _floats(0.001, 1.0)),
    'acceleration_scaling': (_MOVEIT.acceleration_scaling, 'moveit: max acceleration scaling '
                             'factor', _floats(0.001, 1.0)),
    'moveit_node_name': (_MOVEIT.moveit_node_name, 'moveit: name of the MoveItPy node (its '
                         'parameters come from the same --params-file)', {}),
}


def check_goal(goal: ExecuteGrasp.Goal, config: ExecutorConfig) -> GraspJob:
    """The executor's checks of a goal (module docstring).

    :param goal: the goal.
    :param config: the executor's parameters (max width, default offsets).
    :return: the job.
    :raises GoalError: with ``INVALID_GOAL`` or ``WIDTH_EXCEEDED``.
    """
    grasp = goal.grasp
    if not goal.header.frame_id:
        raise GoalError(_R.INVALID_GOAL, 'header.frame_id is empty: the grasp pose has no frame')
    p, o = grasp.pose.position, grasp.pose.orientation
    values = (p.x, p.y, p.z, o.x, o.y, o.z, o.w, grasp.width)
    if not all(math.isfinite(v) for v in values):
        raise GoalError(_R.INVALID_GOAL, 'the grasp pose or width is not finite')
    norm = math.sqrt(o.x * o.x + o.y * o.y + o.z * o.z + o.w * o.w)
    if abs(norm - 1.0) > QUATERNION_TOLERANCE:
        raise GoalError(_R.INVALID_GOAL, f'the grasp quaternion has norm {norm:.4g}; expected a '
                        f'unit quaternion (within {QUATERNION_TOLERANCE:g})')
    for name in ('pregrasp_offset', 'lift_height'):
        value = getattr(goal, name)
        if not (math.isfinite(value) and value >= 0):
            raise GoalError(_R.INVALID_GOAL, f'{name} is {value}; expected >= 0 (0: default)')
    try:
        grasps = msgs_to_grasps([grasp])
    except GraspMessageError as err:
        raise GoalError(_R.INVALID_GOAL, str(err)) from None
    width = float(grasps.width[0])
    if width > config.max_width + WIDTH_TOLERANCE:
        raise GoalError(_R.WIDTH_EXCEEDED, f'grasp width {width * 1000:.1f} mm exceeds the max '
                        f'opening {config.max_width * 1000:.1f} mm')
    if width < config.min_width:
        raise GoalError(_R.WIDTH_EXCEEDED, f'grasp width {width * 1000:.1f} mm is below the min '
                        f'width {config.min_width * 1000:.1f} mm')
    pose = np.eye(4)
    pose[:3, :3] = grasps.rotations[0]
    pose[:3, 3] = grasps.center[0]
    return GraspJob(frame=goal.header.frame_id, pose=pose, width=width,
                    pregrasp_offset=goal.pregrasp_offset or config.pregrasp_offset,
                    lift_height=goal.lift_height or config.lift_height, place=bool(goal.place),
                    grasp=grasp, stamp=goal.header.stamp)


class SimBackend:
    """Forwards goals to the simulated world's ``SimExecuteGrasp`` service (module docstring).

    :param node: the executor node.
    :param config: its parameters.
    """

    def __init__(self, node: Node, config: ExecutorConfig) -> None:
        self._config = config
        # Its own group: the answer is handled by another executor thread while the goal waits.
        self._client: Client = node.create_client(
            SimExecuteGrasp, config.world_service,
            callback_group=MutuallyExclusiveCallbackGroup())

    def execute(self, job: GraspJob, feedback: Feedback,
                canceled: CancelCheck) -> tuple[ExecuteGrasp.Result, bool]:
        """Run one goal in the simulated world.

        :param job: the checked goal.
        :param feedback: stage feedback.
        :param canceled: whether a cancel was requested.
        :return: the result and whether it ended canceled.
        """
        fb = ExecuteGrasp.Feedback
        timeout = self._config.timeout_s
        result = ExecuteGrasp.Result(object_id=-1)
        feedback(fb.STAGE_PLANNING, 'planning', 0.0)
        deadline = time.monotonic() + timeout
        while not self._client.service_is_ready():
            if canceled():
                return _set(result, _R.CANCELED, 'canceled before the world was reached'), True
            if time.monotonic() > deadline:
                return _set(result, _R.BACKEND_ERROR,
                            f'the world service {self._config.world_service!r} is not available '
                            f'after {timeout:g} s'), False
            time.sleep(0.05)
        if canceled():
            return _set(result, _R.CANCELED, 'canceled before the execution started'), True
        feedback(fb.STAGE_PREGRASP, 'pregrasp', 0.2)
        request = SimExecuteGrasp.Request(header=Header(stamp=job.stamp, frame_id=job.frame),
                                          grasp=job.grasp)
        future = self._client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            self._client.remove_pending_request(future)
            result.executed = True  # the world may have moved
            return _set(result, _R.TIMEOUT,
                        f'the world did not answer within {timeout:g} s'), False
        reply: SimExecuteGrasp.Response | None = future.result()
        if reply is None:
            return _set(result, _R.BACKEND_ERROR, 'the world service call failed'), False
        result.success = bool(reply.success)
        result.error_code = SIM_TO_RESULT.get(int(reply.error_code), _R.UNKNOWN)
        result.message = f'{reply.outcome}: {reply.message}' if reply.outcome else reply.message
        result.executed = bool(reply.executed)
        result.finger_width = float(reply.finger_width)
        result.lifted_ids = [int(i) for i in reply.lifted_ids]
        result.object_id = int(reply.object_id)
        if canceled():
            result.success = False
            result.error_code = _R.CANCELED
            result.message = f'canceled during the simulated execution; the world reported ' \
                             f'{result.message}'
            return result, True
        return result, False


def _set(result: ExecuteGrasp.Result, code: int, message: str) -> ExecuteGrasp.Result:
    result.success = code == _R.NONE
    result.error_code = code
    result.message = message
    return result


class YumiExecutorNode(Node):
    """The ``execute_grasp`` action over the sim or MoveIt backend (module docstring)."""

    def __init__(self) -> None:
        super().__init__('yumi_executor')
        self._busy = False
        self._busy_lock = threading.Lock()
        try:
            self.config = self._read_parameters()
        except (ParameterException, ConfigError) as err:
            self.get_logger().error(f'invalid parameters: {err}')
            raise NodeStartupError(str(err)) from None
        cfg = self.config
        self._backend: Backend
        if cfg.backend == 'sim':
            self._backend = SimBackend(self, cfg)
        else:
            from gpr_ros.ros.moveit_backend import BackendUnavailableError, MoveItBackend

            assert cfg.moveit is not None
            try:
                self._backend = MoveItBackend(self, cfg.moveit, cfg.max_width)
            except BackendUnavailableError as err:
                self.get_logger().error(f'cannot start the moveit backend: {err}')
                raise NodeStartupError(str(err)) from None
        self._action = ActionServer(
            self, ExecuteGrasp, 'execute_grasp', execute_callback=self._on_execute,
            goal_callback=self._on_goal, cancel_callback=self._on_cancel,
            callback_group=ReentrantCallbackGroup())
        target = (f'world service {cfg.world_service!r}' if cfg.backend == 'sim'
                  else f'MoveIt group {cfg.moveit.arm_group!r}' if cfg.moveit else '')
        self.get_logger().info(f'execute_grasp ready: backend {cfg.backend!r} ({target}), max '
                               f'width {cfg.max_width * 1000:.1f} mm')

    # --- parameters ---------------------------------------------------------------------------

    def _read_parameters(self) -> ExecutorConfig:
        values: dict[str, Any] = {}
        for name, (default, description, extra) in PARAMETERS.items():
            param = self.declare_parameter(name, default, ParameterDescriptor(
                name=name, description=description, read_only=True, **extra))
            values[name] = param.value
        moveit = None
        if values['backend'] == 'moveit':
            fields = {k: v for k, v in values.items() if k in MoveItSettings.__dataclass_fields__}
            for name in ('tool_transform', 'bin_center', 'bin_size', 'dropoff_pose'):
                fields[name] = tuple(float(v) for v in fields[name])
            moveit = MoveItSettings(**fields)
        return ExecutorConfig(backend=values['backend'], max_width=float(values['max_width']),
                              min_width=float(values['min_width']),
                              pregrasp_offset=float(values['pregrasp_offset']),
                              lift_height=float(values['lift_height']),
                              timeout_s=float(values['timeout_s']),
                              world_service=values['world_service'], moveit=moveit)

    # --- action callbacks ---------------------------------------------------------------------

    def _on_goal(self, _goal: ExecuteGrasp.Goal) -> GoalResponse:
        with self._busy_lock:
            if self._busy:
                self.get_logger().warning('goal rejected: another grasp is being executed')
                return GoalResponse.REJECT
            self._busy = True
        return GoalResponse.ACCEPT

    def _on_cancel(self, _handle: ServerGoalHandle) -> CancelResponse:
        return CancelResponse.ACCEPT

    def _on_execute(self, handle: ServerGoalHandle) -> ExecuteGrasp.Result:
        try:
            return self._execute(handle)
        finally:
            with self._busy_lock:
                self._busy = False

    def _execute(self, handle: ServerGoalHandle) -> ExecuteGrasp.Result:
        goal: ExecuteGrasp.Goal = handle.request
        if handle.is_cancel_requested:
            handle.canceled()
            return _set(ExecuteGrasp.Result(object_id=-1), _R.CANCELED, 'canceled before start')
        try:
            job = check_goal(goal, self.config)
        except GoalError as err:
            handle.abort()
            self.get_logger().warning(f'goal refused: {err}')
            return _set(ExecuteGrasp.Result(object_id=-1), err.code, str(err))

        def feedback(stage: int, name: str, progress: float) -> None:
            handle.publish_feedback(ExecuteGrasp.Feedback(stage=stage, stage_name=name,
                                                          progress=float(progress)))

        result, canceled = self._backend.execute(job, feedback,
                                                 lambda: handle.is_cancel_requested)
        if canceled:
            handle.canceled()
        elif result.success:
            handle.succeed()
        else:
            handle.abort()
        self.get_logger().info(f'goal ended: {"success" if result.success else "failure"} '
                               f'(code {result.error_code}, executed {result.executed}): '
                               f'{result.message}')
        return result


def main(args: Sequence[str] | None = None) -> int:
    """Run the executor; exit code 2 when the parameters or the backend cannot work."""
    try:
        return run_node(YumiExecutorNode, args, num_threads=4)
    except NodeStartupError:
        return EXIT_STARTUP_FAILED


if __name__ == '__main__':
    sys.exit(main())
