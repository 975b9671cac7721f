"""Clutter-removal supervisor: runs the paper's protocol (Sec. VI-C) over ROS and reports SR/CR.

Per attempt it triggers the camera (``camera_trigger_service``, ``std_srvs/Trigger``), takes
the cloud published on ``cloud`` after the trigger, asks the inference node for grasps
(``detect_service``, ``gpr_msgs/DetectGrasps``) and sends them best first to the executor
(``execute_action``, ``gpr_msgs/ExecuteGrasp``) until one is executed: a result with
``executed == false`` (refused before any motion: too wide, unreachable) makes it try the next
grasp, exactly as the in-process benchmark skips infeasible grasps. When none is executed it
captures and detects again, up to the protocol's ``max_looks`` views (3 in ``gpr``), before
the trial ends with 'no grasp'; the simulated world draws each view's noise from the number of
views since the start of the attempt (``world_begin_attempt_service``, called before each
attempt), as in-process, also when a restarted supervisor re-does an attempt. The protocol's
books (when
a trial ends, SR, CR) are :class:`gpr_ros.core.clutter.session.TrialBook`, the same code the
in-process benchmark uses, so the same seed gives the same totals.

Modes:

- ``sim``: each trial resets the simulated world (``world_reset_service``,
  ``gpr_msgs/SimResetScene`` with the run seed and the trial index) and follows the world's
  state on ``world_scene_topic``;
- ``real``: each trial waits for an operator to pour the objects and call ``~/start_trial``
  (``gpr_msgs/StartTrial``); the bin counts as empty once as many objects were removed as
  were poured.

Every attempt is appended to ``<results_dir>/attempts.jsonl`` as soon as it is known (the log
format of :mod:`gpr_ros.core.clutter.runner`); ``results.md/json/csv`` and a plot are written
after every trial. A restarted supervisor reads the log: finished trials are kept; an
unfinished trial continues where it stopped when the simulated world is still in the state the
log describes (real mode: always), otherwise it is re-run from its start in a new log segment
and the old lines are ignored, so no attempt is lost or counted twice.

Progress and results are published on ``~/progress`` (``gpr_msgs/ClutterRemovalProgress``,
reliable, transient local, the last 100 kept for late subscribers) after every attempt. With
``exit_when_done`` the node shuts down when the last trial has ended (exit code 0; 1 if the
run was aborted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
import math
from pathlib import Path
import sys
import threading
import time
from typing import Any

from action_msgs.msg import GoalStatus
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
import rclpy
from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.duration import Duration
from rclpy.exceptions import ParameterException
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger

from gpr_msgs.action import ExecuteGrasp
from gpr_msgs.msg import ClutterRemovalProgress, GraspArray, SimSceneState
from gpr_msgs.srv import DetectGrasps, SimResetScene, StartTrial
from gpr_ros.core.clutter.errors import ResultsLogError
from gpr_ros.core.clutter.metrics import rate
from gpr_ros.core.clutter.protocol import PROTOCOL_NAMES, ClutterConfig, ProtocolConfig
from gpr_ros.core.clutter.runner import AttemptLog, completed_trials, summarize, write_reports
from gpr_ros.core.clutter.session import TrialBook
from gpr_ros.core.errors import ConfigError, GprError
from gpr_ros.core.validation import describe_differences
from gpr_ros.ros.conversions import cloud_to_xyz, msgs_to_grasps
from gpr_ros.ros.runtime import spin_until_shutdown

MODES = ('sim', 'real')
EXIT_INVALID_PARAMETERS = 2
LOG_NAME = 'attempts.jsonl'
#: Seconds the node waits at exit for progress subscribers to acknowledge the last messages.
EXIT_FLUSH_TIMEOUT = 2.0

#: ExecuteGrasp result error code -> attempt outcome (the core's Outcome values).
_OUTCOMES = {
    ExecuteGrasp.Result.NONE: 'success',
    ExecuteGrasp.Result.COLLISION: 'collision',
    ExecuteGrasp.Result.SLIP: 'slip',
    ExecuteGrasp.Result.UNREACHABLE: 'unreachable',
    ExecuteGrasp.Result.WIDTH_EXCEEDED: 'width_exceeded',
}
#: Refusals that say the executor itself is unusable (not this grasp): the trial stops.
_FATAL_REFUSALS = (ExecuteGrasp.Result.BACKEND_ERROR, ExecuteGrasp.Result.TIMEOUT,
                   ExecuteGrasp.Result.CANCELED, ExecuteGrasp.Result.UNKNOWN)
_PROGRESS_OUTCOMES = {
    'success': ClutterRemovalProgress.OUTCOME_SUCCESS,
    'collision': ClutterRemovalProgress.OUTCOME_COLLISION,
    'slip': ClutterRemovalProgress.OUTCOME_SLIP,
    'no_grasp': ClutterRemovalProgress.OUTCOME_NO_GRASP,
    'unreachable': ClutterRemovalProgress.OUTCOME_UNREACHABLE,
}


class NodeStartupError(RuntimeError):
    """The node cannot start (already logged); :func:`main` exits non-zero."""


class SupervisorError(GprError):
    """A step of a trial failed (a service missing, a timeout, an error answer)."""


@dataclass(frozen=True)
class SupervisorConfig:
    """Validated parameters of the supervisor.

    :raises ConfigError: on an invalid value.
    """

    mode: str = 'sim'
    protocol: str = 'gpr'
    object_set: str = 'novel'
    policy: str = 'gpr'
    seed: int = 0
    num_trials: int = 1
    results_dir: str = ''
    max_grasps: int = 20
    min_points: int = 50
    pregrasp_offset: float = 0.0
    lift_height: float = 0.0
    place: bool = False
    exit_when_done: bool = False
    service_timeout_s: float = 60.0
    detect_timeout_s: float = 30.0
    execute_timeout_s: float = 120.0
    startup_timeout_s: float = 120.0
    camera_trigger_service: str = 'phoxi_camera/trigger'
    detect_service: str = 'detect_grasps'
    execute_action: str = 'execute_grasp'
    world_reset_service: str = 'sim_world/reset'
    world_begin_attempt_service: str = 'sim_world/begin_attempt'
    world_scene_topic: str = 'sim_world/scene'

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f'mode is {self.mode!r}; expected one of {MODES}')
        if self.protocol not in PROTOCOL_NAMES:
            raise ConfigError(f'protocol is {self.protocol!r}; expected one of {PROTOCOL_NAMES}')
        if not self.results_dir:
            raise ConfigError('results_dir is empty; give the folder for attempts.jsonl and the '
                              'result tables')
        if not self.policy:
            raise ConfigError('policy is empty; name the policy under test (for the results)')
        for name in ('num_trials', 'max_grasps'):
            if getattr(self, name) < 1:
                raise ConfigError(f'{name} is {getattr(self, name)}; expected >= 1')
        if self.seed < 0 or self.min_points < 0:
            raise ConfigError('seed and min_points must be >= 0')
        for name in ('pregrasp_offset', 'lift_height'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f'{name} is {value}; expected a finite value >= 0')
        for name in ('service_timeout_s', 'detect_timeout_s', 'execute_timeout_s',
                     'startup_timeout_s'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f'{name} is {value}; expected a finite value > 0')

    @property
    def protocol_config(self) -> ProtocolConfig:
        """The protocol's rules."""
        return ProtocolConfig.named(self.protocol)


def _floats(lo: float, hi: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]


def _ints(lo: int, hi: int) -> list[IntegerRange]:
    return [IntegerRange(from_value=lo, to_value=hi, step=1)]


#: name -> (description, extra descriptor fields); defaults come from SupervisorConfig.
PARAMETERS: dict[str, tuple[str, dict[str, Any]]] = {
    'mode': ("'sim' (reset the simulated world per trial) or 'real' (wait for ~/start_trial)",
             {}),
    'protocol': ("'gpr' (10 of 20 objects, at most 15 attempts) or 'pile' (5 objects, two "
                 'consecutive failures end a trial)', {}),
    'object_set': ("'similar', 'novel' or a folder of meshes (sim: sent to the world; "
                   'real: recorded)', {}),
    'policy': ('name of the grasp policy under test, as written in the results', {}),
    'seed': ('run seed: same seed, same scenes (sim)', {'integer_range': _ints(0, 2**31 - 1)}),
    'num_trials': ('trials to run', {'integer_range': _ints(1, 100000)}),
    'results_dir': ('folder of attempts.jsonl (appended as attempts happen) and the result '
                    'tables (required); a restart resumes from it', {}),
    'max_grasps': ('grasps requested per detection (tried best first)',
                   {'integer_range': _ints(1, 1000)}),
    'min_points': ('clouds with fewer finite points count as an empty view (no grasp)',
                   {'integer_range': _ints(0, 10_000_000)}),
    'pregrasp_offset': ('pre-grasp distance along -approach sent with each goal [m]; 0: the '
                        "executor's default", {'floating_point_range': _floats(0.0, 1.0)}),
    'lift_height': ("lift after closing [m]; 0: the executor's default",
                    {'floating_point_range': _floats(0.0, 1.0)}),
    'place': ('ask the executor to place each object at its drop-off pose', {}),
    'exit_when_done': ('shut the node down when the last trial has ended', {}),
    'service_timeout_s': ('wait for a service answer or a cloud at most this long [s]',
                          {'floating_point_range': _floats(0.1, 3600.0)}),
    'detect_timeout_s': ('wait for a detection at most this long [s]',
                         {'floating_point_range': _floats(0.1, 3600.0)}),
    'execute_timeout_s': ('wait for a grasp execution at most this long [s]',
                          {'floating_point_range': _floats(0.1, 3600.0)}),
    'startup_timeout_s': ('wait for the other nodes at start-up at most this long [s]',
                          {'floating_point_range': _floats(0.1, 3600.0)}),
    'camera_trigger_service': ('std_srvs/Trigger service of the camera', {}),
    'detect_service': ('gpr_msgs/DetectGrasps service of the inference node', {}),
    'execute_action': ('gpr_msgs/ExecuteGrasp action of the executor', {}),
    'world_reset_service': ('sim mode: gpr_msgs/SimResetScene service of the world', {}),
    'world_begin_attempt_service': ('sim mode: std_srvs/Trigger service of the world that '
                                    "makes the next capture an attempt's first view", {}),
    'world_scene_topic': ('sim mode: gpr_msgs/SimSceneState topic of the world', {}),
}


#: ``~/progress`` messages kept for subscribers that join late (transient local).
PROGRESS_HISTORY = 100


class _StopRequested(Exception):  # noqa: N818 - a signal, not an error
    """The node is shutting down."""


class ClutterRemovalSupervisor(Node):
    """Runs clutter-removal trials over ROS (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__('clutter_removal_supervisor')
        self.exit_code = 0
        self._stop = threading.Event()
        try:
            self.config = self._read_parameters()
            self.protocol = self.config.protocol_config
        except (ParameterException, ConfigError) as err:
            self.get_logger().error(f'invalid parameters: {err}')
            raise NodeStartupError(str(err)) from None
        cfg = self.config
        self.results_dir = Path(cfg.results_dir).expanduser()
        self.log = AttemptLog(self.results_dir / LOG_NAME)
        group = ReentrantCallbackGroup()
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        # the last PROGRESS_HISTORY messages stay for late subscribers: a monitor that joins
        # after the first attempts (discovery under load) still gets the trial's story; one
        # with depth 1 gets the latest, as from a depth-1 latched topic
        history = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=PROGRESS_HISTORY,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._progress_pub = self.create_publisher(ClutterRemovalProgress, '~/progress',
                                                   history)
        # Triggered clouds come reliably (the camera node publishes triggered clouds reliably).
        self.create_subscription(PointCloud2, 'cloud', self._on_cloud, 1, callback_group=group)
        self._cloud_lock = threading.Condition()
        self._cloud: PointCloud2 | None = None
        self._trigger = self.create_client(Trigger, cfg.camera_trigger_service,
                                           callback_group=group)
        self._detect = self.create_client(DetectGrasps, cfg.detect_service, callback_group=group)
        self._execute = ActionClient(self, ExecuteGrasp, cfg.execute_action,
                                     callback_group=group)
        self._scene_lock = threading.Condition()
        self._scene: SimSceneState | None = None
        self._start_lock = threading.Condition()
        self._start_requests: list[StartTrial.Request] = []
        self._running = False
        self._next_trial = 0
        self._book: TrialBook | None = None  # the last trial run by this process
        #: whether ``_totals`` already holds ``_book``'s counts (after its trial_end)
        self._book_in_totals = False
        if cfg.mode == 'sim':
            self._reset = self.create_client(SimResetScene, cfg.world_reset_service,
                                             callback_group=group)
            self._begin_attempt = self.create_client(
                Trigger, cfg.world_begin_attempt_service, callback_group=group)
            self.create_subscription(SimSceneState, cfg.world_scene_topic, self._on_scene,
                                     latched, callback_group=group)
        else:
            self.create_service(StartTrial, '~/start_trial', self._on_start_trial,
                                callback_group=group)
        self._state = ClutterRemovalProgress.STATE_IDLE
        self._totals = {'attempts': 0, 'successes': 0, 'removed': 0, 'objects_total': 0}
        self._thread = threading.Thread(target=self._run, name='clutter_removal', daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ parameters

    def _read_parameters(self) -> SupervisorConfig:
        defaults = asdict(SupervisorConfig(results_dir='-'))
        defaults['results_dir'] = ''  # required: SupervisorConfig rejects an unset folder
        values: dict[str, Any] = {}
        for name, (description, extra) in PARAMETERS.items():
            default = defaults[name]
            self.declare_parameter(name, default, ParameterDescriptor(
                description=description, read_only=True, **extra))
            value = self.get_parameter(name).value
            if isinstance(default, float) and isinstance(value, int):
                value = float(value)
            values[name] = value
        return SupervisorConfig(**values)

    # ------------------------------------------------------------------ callbacks

    def _on_cloud(self, msg: PointCloud2) -> None:
        with self._cloud_lock:
            self._cloud = msg
            self._cloud_lock.notify_all()

    def _on_scene(self, msg: SimSceneState) -> None:
        with self._scene_lock:
            self._scene = msg
            self._scene_lock.notify_all()

    def _on_start_trial(self, request: StartTrial.Request,
                        response: StartTrial.Response) -> StartTrial.Response:
        with self._start_lock:
            if self._running or self._start_requests:
                response.error_code = StartTrial.Response.ALREADY_RUNNING
                response.message = 'a trial is running or about to start'
                return response
            if self._state != ClutterRemovalProgress.STATE_WAITING_FOR_OBJECTS:
                response.error_code = StartTrial.Response.INVALID_REQUEST
                response.message = 'the supervisor is not waiting for objects (run finished?)'
                return response
            self._start_requests.append(request)
            self._start_lock.notify_all()
        response.success = True
        response.trial = self._next_trial
        response.message = f'trial {self._next_trial} started'
        return response

    # ------------------------------------------------------------------ waiting helpers

    def _wait_future(self, future: Future, timeout: float, what: str) -> Any:
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        deadline = time.monotonic() + timeout
        while not done.wait(0.1):
            if self._stop.is_set() or not rclpy.ok(context=self.context):
                raise _StopRequested()
            if time.monotonic() > deadline:
                future.cancel()
                raise SupervisorError(f'{what}: no answer within {timeout:.0f} s')
        result = future.result()
        if result is None:
            raise SupervisorError(f'{what}: the call failed')
        return result

    def _wait_ready(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self._stop.is_set():
                raise _StopRequested()
            if time.monotonic() > deadline:
                raise SupervisorError(f'{what} is not available after {timeout:.0f} s')
            time.sleep(0.1)

    def _wait_scene(self, check: Callable[[SimSceneState], bool], timeout: float,
                    what: str) -> SimSceneState:
        deadline = time.monotonic() + timeout
        with self._scene_lock:
            while self._scene is None or not check(self._scene):
                if self._stop.is_set():
                    raise _StopRequested()
                if time.monotonic() > deadline:
                    raise SupervisorError(f'{what}: no matching world state within '
                                          f'{timeout:.0f} s')
                self._scene_lock.wait(0.1)
            return self._scene

    # ------------------------------------------------------------------ the run

    def _header(self) -> dict[str, Any]:
        cfg = self.config
        header = {'type': 'header', 'source': 'ros', 'mode': cfg.mode, 'protocol': cfg.protocol,
                  'seed': cfg.seed, 'object_set': cfg.object_set, 'policy': cfg.policy,
                  # the protocol's rules (attempts, looks): results of other rules must not be
                  # resumed either
                  'rules': self.protocol.to_dict()}
        if cfg.mode == 'sim':
            # The simulated world's physics and executor settings (the package's defaults,
            # which sim_world uses): results of other physics must not be resumed.
            sim = ClutterConfig().to_dict()
            header['simulation'] = {k: sim[k] for k in ('bin', 'scene', 'gripper', 'execution')}
        return header

    def _open_log(self) -> list[dict[str, Any]]:
        self.results_dir.mkdir(parents=True, exist_ok=True)
        header = self._header()
        old = next((r for r in self.log.read() if r.get('type') == 'header'), None)
        if old is not None:
            # Checked before repair(): the log of another configuration must stay untouched.
            for key in ('mode', 'protocol', 'seed', 'object_set', 'policy', 'rules',
                        'simulation'):
                saved, now = old.get(key), header.get(key)
                if saved == now:
                    continue
                if isinstance(saved, dict) and isinstance(now, dict):
                    what = f'other {key} settings ({describe_differences(saved, now)})'
                elif key in ('rules', 'simulation') and saved is None:
                    what = f'no record of its {key} settings (made by an older version)'
                else:
                    what = f'{key}={saved!r}, not {now!r}'
                raise ResultsLogError(
                    f'{self.log.path} holds results with {what}; use another results_dir')
        self.log.repair()
        records = self.log.read()
        if not any(r.get('type') == 'header' for r in records):
            self.log.append(header)
            return []
        return records

    def _run(self) -> None:
        try:
            self._run_trials()
        except _StopRequested:
            return
        except GprError as err:
            self.get_logger().error(f'clutter removal aborted: {err}')
            self._state = ClutterRemovalProgress.STATE_ABORTED
            self._publish(None, None, message=str(err))
            self.exit_code = 1
        except Exception as err:  # noqa: BLE001 - a bug must still end the run visibly
            self.get_logger().error(f'clutter removal aborted by an unexpected error: {err!r}')
            self._state = ClutterRemovalProgress.STATE_ABORTED
            self.exit_code = 1
        if self.config.exit_when_done and not self._stop.is_set():
            self.get_logger().info('run finished; shutting down (exit_when_done)')
            # The last progress messages must reach reliable subscribers before the process
            # ends: a latched topic's history dies with its publisher.
            if not self._progress_pub.wait_for_all_acked(Duration(seconds=EXIT_FLUSH_TIMEOUT)):
                self.get_logger().warning('progress subscribers did not acknowledge the last '
                                          f'messages within {EXIT_FLUSH_TIMEOUT:g} s')
            self.context.try_shutdown()

    def _run_trials(self) -> None:
        cfg = self.config
        records = self._open_log()
        done = completed_trials(records)
        for key, end in done.items():
            if key[0] == cfg.policy:
                self._add_totals(end)
        self._wait_for_graph()
        for trial in range(cfg.num_trials):
            self._next_trial = trial
            if (cfg.policy, trial) in done:
                continue
            self._run_trial(trial, records)
            records = self.log.read()
        self._state = ClutterRemovalProgress.STATE_FINISHED
        summary = summarize(self.log.read())
        write_reports(self.results_dir, summary)
        self._publish(self._book, None, message='run finished')
        pol = summary['policies'].get(cfg.policy, {})
        self.get_logger().info(
            f"finished {cfg.num_trials} trial(s): SR {pol.get('successes', 0)}/"
            f"{pol.get('attempts', 0)}, CR {pol.get('removed', 0)}/"
            f"{pol.get('objects_total', 0)}; results in {self.results_dir}")

    def _wait_for_graph(self) -> None:
        cfg = self.config
        t = cfg.startup_timeout_s
        self._wait_ready(self._trigger.service_is_ready, t,
                         f'camera trigger service {cfg.camera_trigger_service!r}')
        self._wait_ready(self._detect.service_is_ready, t,
                         f'detection service {cfg.detect_service!r}')
        self._wait_ready(self._execute.server_is_ready, t,
                         f'execution action {cfg.execute_action!r}')
        if cfg.mode == 'sim':
            self._wait_ready(self._reset.service_is_ready, t,
                             f'world reset service {cfg.world_reset_service!r}')
            self._wait_ready(self._begin_attempt.service_is_ready, t,
                             f'world begin-attempt service {cfg.world_begin_attempt_service!r}')

    def _open_segment(self, trial: int, records: Sequence[dict[str, Any]]
                      ) -> tuple[str, list[dict[str, Any]], dict[str, Any] | None]:
        """The latest unfinished segment of ``trial``: (segment, its attempts, its start)."""
        policy = self.config.policy
        starts = [r for r in records if r.get('type') == 'trial_start'
                  and r.get('policy') == policy and int(r.get('trial', -1)) == trial]
        if not starts:
            return f'{policy}#{trial}#0', [], None
        start = starts[-1]
        attempts = [r for r in records if r.get('type') == 'attempt'
                    and r.get('segment') == start['segment']]
        return str(start['segment']), attempts, start

    def _run_trial(self, trial: int, records: Sequence[dict[str, Any]]) -> None:
        cfg = self.config
        segment, logged, start = self._open_segment(trial, records)
        base = {'policy': cfg.policy, 'trial': trial}
        resumed = False
        if start is not None and self._can_continue(trial, start, logged):
            book = TrialBook(self.protocol, trial, int(start['objects_total']))
            book.replay(logged)
            resumed = True
            self.get_logger().info(f'trial {trial}: continuing after {book.attempts} logged '
                                   'attempt(s)')
        else:
            if start is not None:
                count = sum(1 for r in records if r.get('type') == 'trial_start'
                            and r.get('policy') == cfg.policy and int(r['trial']) == trial)
                segment = f'{cfg.policy}#{trial}#{count}'
                self.get_logger().info(f'trial {trial}: re-running it from its start '
                                       f'(segment {segment}); the unfinished lines are ignored')
            info = self._start_trial(trial)
            book = TrialBook(self.protocol, trial, int(info['objects_total']))
            self.log.append({'type': 'trial_start', **base, 'segment': segment, **info})
        base['segment'] = segment
        self._running = True
        self._state = ClutterRemovalProgress.STATE_RUNNING
        self._book = book
        self._book_in_totals = False
        t_start = time.perf_counter()
        self._publish(book, None, message='trial resumed' if resumed else 'trial started')
        try:
            while (reason := book.end_reason(self._bin_empty(book))) is None:
                rec = self._attempt(book)
                self.log.append({'type': 'attempt', **base, **rec})
                self._publish(book, rec)
        except SupervisorError as err:
            self.get_logger().error(f'trial {trial}: {err}')
            reason = 'error'
            book.finish(reason)
            self._publish(book, None, message=str(err))
        finally:
            self._running = False
        book.finish(reason)
        end = {'type': 'trial_end', **base, 'attempts': book.attempts,
               'successes': book.successes, 'removed': book.removed,
               'objects_total': book.objects_total, 'ended_by': reason,
               'wall_time': time.perf_counter() - t_start}
        self.log.append(end)
        self._add_totals(end)
        self._book_in_totals = True
        write_reports(self.results_dir, summarize(self.log.read()))
        # ClutterRemovalProgress: a trial's last message has state FINISHED or ABORTED.
        self._state = (ClutterRemovalProgress.STATE_ABORTED if reason == 'error'
                       else ClutterRemovalProgress.STATE_FINISHED)
        self._publish(book, None, message=f'trial {trial + 1}/{cfg.num_trials} ended: {reason}')
        self.get_logger().info(
            f'trial {trial} ended ({reason}): {book.successes}/{book.attempts} successes, '
            f'{book.removed}/{book.objects_total} objects removed')

    def _can_continue(self, trial: int, start: dict[str, Any],
                      logged: Sequence[dict[str, Any]]) -> bool:
        if any(r.get('outcome') == 'no_grasp' for r in logged):
            return False  # the trial had ended; only its trial_end line was lost
        if self.config.mode == 'real':
            return True
        cfg = self.config
        counted = sum(1 for r in logged if r.get('counted'))
        try:
            scene = self._wait_scene(lambda s: True, 5.0, 'world state')
        except SupervisorError:
            return False
        return (scene.seed == cfg.seed and scene.trial == trial
                and scene.protocol == cfg.protocol and scene.object_set == cfg.object_set
                and scene.attempts == counted
                and scene.objects_total == int(start.get('objects_total', -1)))

    def _start_trial(self, trial: int) -> dict[str, Any]:
        cfg = self.config
        if cfg.mode == 'real':
            self._state = ClutterRemovalProgress.STATE_WAITING_FOR_OBJECTS
            self._publish(None, None, message=f'waiting for the objects of trial {trial}: '
                          'pour them and call ~/start_trial')
            self.get_logger().info(f'trial {trial}: pour the objects into the bin, then call '
                                   f'{self.get_name()}/start_trial')
            with self._start_lock:
                while not self._start_requests:
                    if self._stop.is_set():
                        raise _StopRequested()
                    self._start_lock.wait(0.2)
                request = self._start_requests.pop(0)
                self._running = True  # a second ~/start_trial from now on: ALREADY_RUNNING
            total = int(request.objects_total) or self.protocol.objects_per_trial
            return {'objects': [], 'poured': total, 'objects_total': total,
                    'note': request.note}
        request = SimResetScene.Request(seed=cfg.seed, trial=trial, protocol=cfg.protocol,
                                        object_set=cfg.object_set)
        reply = self._wait_future(self._reset.call_async(request), cfg.service_timeout_s,
                                  'world reset')
        if not reply.success:
            raise SupervisorError(f'world reset failed: {reply.message}')
        scene = reply.scene
        self._wait_scene(lambda s: s.trial == trial and s.seed == cfg.seed and s.attempts == 0
                         and s.objects_total == scene.objects_total,
                         cfg.service_timeout_s, 'world state after reset')
        return {'objects': [o.name for o in scene.objects], 'poured': len(scene.objects),
                'objects_total': int(scene.objects_total)}

    def _bin_empty(self, book: TrialBook) -> bool:
        if self.config.mode == 'real':
            return book.removed >= book.objects_total
        scene = self._wait_scene(lambda s: s.attempts == book.attempts,
                                 self.config.service_timeout_s, 'world state')
        return not any(o.in_bin for o in scene.objects)

    def _capture(self) -> PointCloud2:
        cfg = self.config
        with self._cloud_lock:
            self._cloud = None
        reply = self._wait_future(self._trigger.call_async(Trigger.Request()),
                                  cfg.service_timeout_s, 'camera trigger')
        if not reply.success:
            raise SupervisorError(f'camera trigger failed: {reply.message}')
        deadline = time.monotonic() + cfg.service_timeout_s
        with self._cloud_lock:
            while self._cloud is None:
                if self._stop.is_set():
                    raise _StopRequested()
                if time.monotonic() > deadline:
                    raise SupervisorError('no cloud arrived on the cloud topic after the '
                                          'camera trigger')
                self._cloud_lock.wait(0.1)
            return self._cloud

    def _attempt(self, book: TrialBook) -> dict[str, Any]:
        """One attempt: up to ``max_looks`` views (capture, detect, try the grasps best first)
        until the executor executes a grasp; none: 'no grasp' (as the in-process runner)."""
        cfg = self.config
        if cfg.mode == 'sim':  # the views' noise as in-process, also right after a restart
            reply = self._wait_future(self._begin_attempt.call_async(Trigger.Request()),
                                      cfg.service_timeout_s, 'world begin-attempt')
            if not reply.success:
                raise SupervisorError(f'world begin-attempt failed: {reply.message}')
        observe_time = policy_time = 0.0
        for look in range(1, self.protocol.max_looks + 1):
            t0 = time.perf_counter()
            cloud = self._capture()
            num_points = len(cloud_to_xyz(cloud))
            t1 = time.perf_counter()
            grasp_array = self._detect_grasps(cloud, num_points)
            observe_time += t1 - t0
            policy_time += time.perf_counter() - t1
            record: dict[str, Any] = {
                'attempt': book.attempts, 'num_points': num_points,
                'num_grasps': len(grasp_array.grasps), 'grasp_rank': -1, 'looks': look,
                'observe_time': observe_time, 'policy_time': policy_time,
            }
            done = self._execute_best(grasp_array, record)
            if done is not None:
                return book.attempt(record, *done)
        return book.no_grasp(record, len(grasp_array.grasps))

    def _detect_grasps(self, cloud: PointCloud2, num_points: int) -> GraspArray:
        """The inference node's grasps for one view (none for a view of too few points)."""
        cfg = self.config
        if num_points < cfg.min_points:
            return GraspArray()
        request = DetectGrasps.Request(cloud=cloud, max_grasps=cfg.max_grasps)
        reply = self._wait_future(self._detect.call_async(request), cfg.detect_timeout_s,
                                  'grasp detection')
        if reply.success:
            return reply.grasps
        if reply.error_code != DetectGrasps.Response.TOO_FEW_POINTS:
            raise SupervisorError(f'grasp detection failed: {reply.message}')
        return GraspArray()

    def _execute_best(self, grasp_array: GraspArray,
                      record: dict[str, Any]) -> tuple[str, int] | None:
        """Send the grasps best first until the executor executes one; fill ``record`` with it.

        :return: ``(outcome, objects lifted)``, or None when every grasp was refused before
            any motion.
        """
        cfg = self.config
        for rank, grasp in enumerate(grasp_array.grasps):
            goal = ExecuteGrasp.Goal(header=grasp_array.header, grasp=grasp,
                                     pregrasp_offset=cfg.pregrasp_offset,
                                     lift_height=cfg.lift_height, place=cfg.place)
            t_exec = time.perf_counter()
            result = self._execute_goal(goal)
            if not result.executed:
                if result.error_code in _FATAL_REFUSALS:
                    raise SupervisorError(f'the executor cannot execute grasps: '
                                          f'{result.message}')
                continue  # refused before any motion: try the next grasp
            outcome = _OUTCOMES.get(result.error_code, 'error') if not result.success \
                else 'success'
            g = msgs_to_grasps([grasp])
            record.update(
                grasp_rank=rank, outcome=outcome, message=result.message,
                error_code=int(result.error_code), object=int(result.object_id),
                object_name=self._object_name(int(result.object_id)),
                lifted=[int(i) for i in result.lifted_ids],
                finger_width=float(result.finger_width),
                wall_time=time.perf_counter() - t_exec,
                grasp=dict(center=g.center[0].tolist(), approach=g.approach[0].tolist(),
                           closing=g.closing[0].tolist(), width=float(g.width[0]),
                           score=float(g.score[0])))
            return outcome, len(result.lifted_ids)
        return None

    def _execute_goal(self, goal: ExecuteGrasp.Goal) -> ExecuteGrasp.Result:
        cfg = self.config
        handle = self._wait_future(self._execute.send_goal_async(goal), cfg.service_timeout_s,
                                   'grasp execution goal')
        if not handle.accepted:
            raise SupervisorError('the executor rejected the grasp goal')
        response = self._wait_future(handle.get_result_async(), cfg.execute_timeout_s,
                                     'grasp execution')
        if response.status not in (GoalStatus.STATUS_SUCCEEDED, GoalStatus.STATUS_ABORTED):
            raise SupervisorError(f'grasp execution ended with status {response.status}: '
                                  f'{response.result.message}')
        result: ExecuteGrasp.Result = response.result
        return result

    def _object_name(self, index: int) -> str | None:
        with self._scene_lock:
            scene = self._scene
        if index < 0 or scene is None:
            return None
        names = {o.id: o.name for o in scene.objects}
        return names.get(index)

    # ------------------------------------------------------------------ progress

    def _add_totals(self, end: dict[str, Any]) -> None:
        self._totals['attempts'] += int(end['attempts'])
        self._totals['successes'] += int(end['successes'])
        self._totals['removed'] += int(end['removed'])
        self._totals['objects_total'] += int(end['objects_total'])

    def _publish(self, book: TrialBook | None, record: dict[str, Any] | None,
                 message: str = '') -> None:
        cfg = self.config
        msg = ClutterRemovalProgress()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.protocol, msg.policy, msg.object_set = cfg.protocol, cfg.policy, cfg.object_set
        msg.state = self._state
        msg.num_trials = cfg.num_trials
        tot = dict(self._totals)
        if book is not None:
            msg.trial = book.trial
            msg.attempts, msg.successes = book.attempts, book.successes
            msg.objects_removed, msg.objects_total = book.removed, book.objects_total
            msg.success_rate = rate(book.successes, book.attempts)
            msg.completion_rate = rate(book.removed, book.objects_total)
            # the current trial counts into the totals until its trial_end is added to them
            # (a trial ended by "no grasp" or an error still publishes before that)
            if book is self._book and not self._book_in_totals:
                for key, value in (('attempts', book.attempts), ('successes', book.successes),
                                   ('removed', book.removed),
                                   ('objects_total', book.objects_total)):
                    tot[key] += value
        else:
            msg.success_rate = msg.completion_rate = math.nan
        if record is not None:
            outcome = str(record.get('outcome', ''))
            msg.last_outcome = _PROGRESS_OUTCOMES.get(outcome,
                                                      ClutterRemovalProgress.OUTCOME_ERROR)
            msg.last_error_code = int(record.get('error_code', 0))
            msg.last_message = str(record.get('message', ''))
        else:
            msg.last_message = message
        msg.total_attempts, msg.total_successes = tot['attempts'], tot['successes']
        msg.total_objects_removed, msg.total_objects_total = tot['removed'], tot['objects_total']
        msg.total_success_rate = rate(tot['successes'], tot['attempts'])
        msg.total_completion_rate = rate(tot['removed'], tot['objects_total'])
        self._progress_pub.publish(msg)

    def destroy_node(self) -> None:
        """Stop the trial thread, then destroy the node."""
        self._stop.set()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout=5.0)
        super().destroy_node()


def main(args: Sequence[str] | None = None) -> int:
    """Run the supervisor; exit 2 on invalid parameters, 1 if the run was aborted."""
    rclpy.init(args=list(args) if args is not None else sys.argv)
    node: ClutterRemovalSupervisor | None = None
    code = 0
    try:
        node = ClutterRemovalSupervisor()
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        spin_until_shutdown(executor)
    except NodeStartupError:
        code = EXIT_INVALID_PARAMETERS
    except KeyboardInterrupt:  # Ctrl-C while the node was being built
        pass
    finally:
        if node is not None:
            code = code or node.exit_code
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
