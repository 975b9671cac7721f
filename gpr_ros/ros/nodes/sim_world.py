"""Simulated bin world node: one MuJoCo clutter-removal world behind three services.

The node wraps one :class:`gpr_ros.core.clutter.session.TrialWorld`, the same class the
in-process benchmark (``gpr-ros bench clutter``) uses, with the benchmark's default
:class:`~gpr_ros.core.clutter.protocol.ClutterConfig` (camera, bin, gripper, execution), so
the same ``(seed, trial, protocol, object_set)`` pours the same objects to the same poses,
and the k-th capture before attempt a of a trial draws the same sensor noise, as in the
benchmark.

Services (created as ``~/NAME``: ``sim_world/reset`` etc. for the default node name):

- ``~/reset`` (``gpr_msgs/SimResetScene``): pour trial ``trial`` of run ``seed``: the object
  set is loaded once per set and cached, the run's subset is drawn with
  :func:`~gpr_ros.core.clutter.protocol.select_subset` and the trial's objects are poured.
  Empty ``protocol`` / ``object_set`` take the node's parameters; ``num_objects > 0`` pours
  that many objects instead of the protocol's count (the protocol's subset grows to hold
  them when needed). Errors: ``INVALID_OBJECT_SET`` (unknown set, unreadable folder, or a set
  smaller than the objects asked for), ``SIMULATION_ERROR`` (the world cannot be built or the
  pour diverges; the node then has no scene), ``UNKNOWN`` (unknown protocol).
- ``~/capture`` (``gpr_msgs/SimCaptureCloud``): render the bin from the simulated camera
  (gripper hidden) and answer an unorganized float32 xyz ``PointCloud2`` in ``camera_frame``,
  stamped with the node clock. Noise is applied when both the ``noise`` parameter and the
  request's ``noise`` are true; its random stream depends on ``(seed, trial, attempts)`` and
  the number of captures since the attempt began only
  (:meth:`~gpr_ros.core.clutter.session.TrialWorld.observe`). ``NO_SCENE`` before the first
  reset.
- ``~/begin_attempt`` (``std_srvs/Trigger``): the next capture is the first view of the next
  attempt (the supervisor calls it before each attempt; an executed grasp does it too).
  Fails before the first reset.
- ``~/execute`` (``gpr_msgs/SimExecuteGrasp``): execute one grasp with the simulated gripper.
  The pose is read in ``header.frame_id``, which must be ``world_frame`` or ``camera_frame``
  (the camera's fixed extrinsics, the ``T_world_camera`` of every capture, map it to the world),
  else ``TRANSFORM_ERROR``. ``executed`` is false for grasps refused by the checks before
  anything moved (too wide, approach from below, outside the workspace, an approach the
  planner's bin check refuses: :func:`gpr_ros.core.sim.gripper.plan_approach`); only
  executed grasps advance the scene's ``attempts``. ``NO_SCENE`` before the first reset; a
  malformed grasp (non-finite pose, zero quaternion, negative width) answers ``UNKNOWN``
  with the reason.

Topic: ``~/scene`` (``gpr_msgs/SimSceneState``, reliable, transient local, depth
``qos_depth``), published after every reset and every execution: seed, trial, protocol,
object set, ``objects_total``, ``attempts`` and every object's world pose and ``in_bin``
(false once removed from the scene: lifted out, or fallen out of the bin).

All world access runs in one mutually exclusive callback group on a multi-threaded executor:
a long pour delays a capture or an execution (callers bound their wait with a timeout), while
parameter and graph services stay responsive. The camera extrinsics (``T_world_camera``) are
logged at start as ``[x, y, z, qx, qy, qz, qw]``
(:func:`gpr_ros.core.sim.camera.camera_pose_xyzquat`): the inference node's static
``camera_to_output`` transform in the simulated graph. Invalid parameters are logged and the
process exits with code 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
import sys
import time
from typing import Any

from rcl_interfaces.msg import IntegerRange, ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.timer import Timer
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from gpr_msgs.msg import SimSceneState
from gpr_msgs.srv import SimCaptureCloud, SimExecuteGrasp, SimResetScene
from gpr_ros.core.clutter.protocol import (
    PROTOCOL_NAMES,
    ClutterConfig,
    ProtocolConfig,
    select_subset,
)
from gpr_ros.core.clutter.session import TrialWorld, executed, object_pool
from gpr_ros.core.errors import ConfigError, GprError
from gpr_ros.core.sim.camera import NoiseConfig, camera_pose_xyzquat
from gpr_ros.core.sim.errors import SimulationError
from gpr_ros.core.sim.world import SceneObjectSpec
from gpr_ros.ros.conversions import (
    attempt_to_sim_response,
    msgs_to_grasps,
    scene_to_msg,
    xyz_to_cloud,
)
from gpr_ros.ros.errors import GraspMessageError
from gpr_ros.ros.runtime import NodeStartupError, fail_response, run_node

EXIT_INVALID_PARAMETERS = 2
UNITS = ('m', 'cm', 'mm')



@dataclass(frozen=True)
class SimWorldNodeConfig:
    """Validated parameters of the world node (see :data:`PARAMETERS`).

    :raises ConfigError: on an invalid value.
    """

    object_set: str = 'novel'
    protocol: str = 'gpr'
    noise: bool = True
    world_frame: str = 'world'
    camera_frame: str = 'camera_optical_frame'
    cache_dir: str = ''
    units: str = 'm'
    qos_depth: int = 1
    preload: bool = True

    def __post_init__(self) -> None:
        if not self.object_set:
            raise ConfigError("object_set is empty; expected 'similar', 'novel' or a folder")
        if self.protocol not in PROTOCOL_NAMES:
            raise ConfigError(f'protocol is {self.protocol!r}; expected one of '
                              f'{", ".join(map(repr, PROTOCOL_NAMES))}')
        if self.units not in UNITS:
            raise ConfigError(f'units is {self.units!r}; expected one of '
                              f'{", ".join(map(repr, UNITS))}')
        for name in ('world_frame', 'camera_frame'):
            if not getattr(self, name):
                raise ConfigError(f'{name} is empty; every pose and cloud must name its frame')
        if self.world_frame == self.camera_frame:
            raise ConfigError(f'world_frame and camera_frame are both {self.world_frame!r}; '
                              'the camera is not at the world origin')
        if self.qos_depth < 1:
            raise ConfigError(f'qos_depth is {self.qos_depth}; expected >= 1')

    def clutter_config(self) -> ClutterConfig:
        """The benchmark's defaults with this node's noise switch."""
        return ClutterConfig(noise=NoiseConfig(enabled=self.noise))


#: name -> (description, extra descriptor fields); defaults come from SimWorldNodeConfig.
PARAMETERS: dict[str, tuple[str, dict[str, Any]]] = {
    'object_set': ("objects poured when a reset names none: 'similar', 'novel' or a folder of "
                   'meshes', {}),
    'protocol': ("protocol when a reset names none: 'gpr' (subset of 20, 10 objects per trial) "
                 "or 'pile' (5 objects per trial)", {}),
    'noise': ('apply the structured-light noise model to captures (false: clean clouds, as '
              '`gpr-ros bench clutter --clean`)', {}),
    'world_frame': ('frame of the world (bin floor centre, +z up): scene poses and grasps', {}),
    'camera_frame': ('optical frame of the simulated camera (REP 103): frame of the clouds; '
                     'execute also accepts grasps in it', {}),
    'cache_dir': ("object cache folder; '' = $GPR_ROS_CACHE or ~/.cache/gpr_ros", {}),
    'units': ("units of the meshes of a folder object set: 'm', 'cm' or 'mm'", {}),
    'qos_depth': ('history depth of the latched ~/scene publisher',
                  {'integer_range': [IntegerRange(from_value=1, to_value=100, step=1)]}),
    'preload': ('load the default object set at start, so the first reset is fast', {}),
}


def _with_count(protocol: ProtocolConfig, count: int) -> ProtocolConfig:
    """The protocol pouring ``count`` objects per trial (its subset grown to hold them)."""
    subset = protocol.subset_size
    if subset is not None and subset < count:
        subset = count
    return replace(protocol, objects_per_trial=count, subset_size=subset)


class SimWorldNode(Node):
    """Owns the simulated bin world; ``~/reset``, ``~/capture``, ``~/execute``, ``~/scene``."""

    def __init__(self) -> None:
        super().__init__('sim_world')
        try:
            self.config = self._read_parameters()
        except (ParameterException, ConfigError) as err:
            self.get_logger().error(f'invalid parameters: {err}')
            raise NodeStartupError(str(err)) from None
        cfg = self.config
        self._clutter = cfg.clutter_config()
        self._T_world_camera = self._clutter.camera.pose()
        self._pools: dict[str, list[SceneObjectSpec]] = {}
        self._world: TrialWorld | None = None
        self._protocol_name = ''
        self._object_set = ''
        self._group = MutuallyExclusiveCallbackGroup()
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.qos_depth,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._scene_pub = self.create_publisher(SimSceneState, '~/scene', latched)
        self.create_service(SimResetScene, '~/reset', self._on_reset, callback_group=self._group)
        self.create_service(Trigger, '~/begin_attempt', self._on_begin_attempt,
                            callback_group=self._group)
        self.create_service(SimCaptureCloud, '~/capture', self._on_capture,
                            callback_group=self._group)
        self.create_service(SimExecuteGrasp, '~/execute', self._on_execute,
                            callback_group=self._group)
        pose = ', '.join(f'{v:.6g}' for v in camera_pose_xyzquat(self._clutter.camera))
        self.get_logger().info(
            f'camera extrinsics T_{cfg.world_frame}_{cfg.camera_frame} as [x, y, z, qx, qy, qz, '
            f'qw]: [{pose}]; noise {"on" if cfg.noise else "off"}; default protocol '
            f'{cfg.protocol!r}, object set {cfg.object_set!r}')
        self._preload_timer: Timer | None = None
        if cfg.preload:
            self._preload_timer = self.create_timer(0.0, self._on_preload,
                                                    callback_group=self._group)

    # --- parameters ---------------------------------------------------------------------------

    def _read_parameters(self) -> SimWorldNodeConfig:
        defaults = SimWorldNodeConfig()
        values: dict[str, Any] = {}
        for name, (description, extra) in PARAMETERS.items():
            default = getattr(defaults, name)
            param = self.declare_parameter(name, default, ParameterDescriptor(
                name=name, description=description, read_only=True, **extra))
            values[name] = param.value
        return SimWorldNodeConfig(**values)

    # --- helpers ------------------------------------------------------------------------------

    def _pool(self, object_set: str) -> list[SceneObjectSpec]:
        """The objects of a set, loaded once per set.

        :raises GprError: when the set cannot be resolved.
        """
        if object_set not in self._pools:
            t0 = time.perf_counter()
            cache = self.config.cache_dir or None
            self._pools[object_set] = object_pool(object_set, cache, units=self.config.units)
            self.get_logger().info(
                f'object set {object_set!r}: {len(self._pools[object_set])} objects loaded in '
                f'{time.perf_counter() - t0:.1f} s')
        return self._pools[object_set]

    def _on_preload(self) -> None:
        if self._preload_timer is not None:  # once
            self._preload_timer.cancel()
        try:
            self._pool(self.config.object_set)
        except (GprError, OSError) as err:
            self.get_logger().error(
                f'cannot load the default object set {self.config.object_set!r}: {err}; '
                'resets that name no other set will fail')

    def _header(self) -> Header:
        return Header(stamp=self.get_clock().now().to_msg(), frame_id=self.config.world_frame)

    def _scene(self, world: TrialWorld) -> SimSceneState:
        """The world's state as a message, also published on ``~/scene``."""
        msg = scene_to_msg(world.world.state(), world.world.in_scene, header=self._header(),
                           seed=world.seed, trial=world.trial, protocol=self._protocol_name,
                           object_set=self._object_set, objects_total=world.objects_total,
                           attempts=world.attempts)
        self._scene_pub.publish(msg)
        return msg

    # --- services -----------------------------------------------------------------------------

    def _on_reset(self, request: SimResetScene.Request,
                  response: SimResetScene.Response) -> SimResetScene.Response:
        codes = SimResetScene.Response
        protocol_name = request.protocol or self.config.protocol
        object_set = request.object_set or self.config.object_set
        try:
            protocol = ProtocolConfig.named(protocol_name)
        except ConfigError as err:
            return fail_response(response, codes.UNKNOWN, str(err))
        if request.num_objects > 0:
            protocol = _with_count(protocol, int(request.num_objects))
        try:
            pool = self._pool(object_set)
            subset = select_subset(pool, protocol, int(request.seed))
        except (GprError, OSError) as err:
            return fail_response(response, codes.INVALID_OBJECT_SET,
                         f'object set {object_set!r}: {err}')
        world = TrialWorld(replace(self._clutter, protocol=protocol))
        t0 = time.perf_counter()
        try:
            info = world.reset(subset, int(request.seed), int(request.trial))
        except SimulationError as err:
            self._world = None
            message = (f'pouring trial {request.trial} of seed {request.seed} failed: {err}; '
                       'no scene until the next successful reset')
            self.get_logger().error(message)
            return fail_response(response, codes.SIMULATION_ERROR, message)
        self._world = world
        self._protocol_name, self._object_set = protocol_name, object_set
        response.scene = self._scene(world)
        response.success = True
        response.error_code = codes.NONE
        response.message = (f'poured {info["poured"]} objects ({info["objects_total"]} in the '
                            f'bin) for seed {request.seed}, trial {request.trial}, protocol '
                            f'{protocol_name!r}, set {object_set!r} in '
                            f'{time.perf_counter() - t0:.1f} s')
        self.get_logger().info(response.message)
        return response

    def _on_begin_attempt(self, request: Trigger.Request,
                          response: Trigger.Response) -> Trigger.Response:
        world = self._world
        if world is None:
            response.success = False
            response.message = 'no scene yet: call reset first'
            return response
        world.begin_attempt()
        response.success = True
        response.message = f'attempt {world.attempts} of trial {world.trial}: first view next'
        return response

    def _on_capture(self, request: SimCaptureCloud.Request,
                    response: SimCaptureCloud.Response) -> SimCaptureCloud.Response:
        codes = SimCaptureCloud.Response
        world = self._world
        if world is None:
            return fail_response(response, codes.NO_SCENE, 'no scene yet: call reset first')
        try:
            obs = world.observe(noise=bool(request.noise))
        except SimulationError as err:
            return fail_response(response, codes.UNKNOWN, f'rendering failed: {err}')
        response.cloud = xyz_to_cloud(obs.points, frame_id=self.config.camera_frame,
                                      stamp=self.get_clock().now().to_msg())
        response.success = True
        response.error_code = codes.NONE
        response.message = (f'{len(obs)} points (trial {world.trial}, after '
                            f'{world.attempts} attempts)')
        return response

    def _on_execute(self, request: SimExecuteGrasp.Request,
                    response: SimExecuteGrasp.Response) -> SimExecuteGrasp.Response:
        codes = SimExecuteGrasp.Response
        response.object_id = -1
        world = self._world
        if world is None:
            return fail_response(response, codes.NO_SCENE, 'no scene yet: call reset first')
        frame = request.header.frame_id
        if frame not in (self.config.world_frame, self.config.camera_frame):
            return fail_response(response, codes.TRANSFORM_ERROR,
                         f'grasp frame {frame!r} is unknown; expected '
                         f'{self.config.world_frame!r} or {self.config.camera_frame!r}')
        try:
            grasp = msgs_to_grasps([request.grasp])
        except GraspMessageError as err:
            return fail_response(response, codes.UNKNOWN, f'invalid grasp: {err}')
        if frame == self.config.camera_frame:
            grasp = grasp.transformed(self._T_world_camera)
        try:
            result = world.execute(grasp)
        except SimulationError as err:
            return fail_response(response, codes.UNKNOWN, f'simulation failed: {err}')
        scene = self._scene(world)
        reply: SimExecuteGrasp.Response = attempt_to_sim_response(
            result, executed=executed(result), scene=scene)
        self.get_logger().info(
            f'attempt {world.attempts} of trial {world.trial}: {result.outcome.value} '
            f'({result.message})' if reply.executed else f'refused: {result.message}')
        return reply



def main(args: Sequence[str] | None = None) -> int:
    """Run the simulated world node; exit code 2 on invalid parameters."""
    try:
        return run_node(SimWorldNode, args)
    except NodeStartupError:
        return EXIT_INVALID_PARAMETERS


if __name__ == '__main__':
    sys.exit(main())
