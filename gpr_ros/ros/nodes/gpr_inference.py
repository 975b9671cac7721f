"""GPR inference node: grasps for the clouds on ``cloud`` and on request.

Topics and services (relative names; remap or namespace them):

- ``cloud`` (``sensor_msgs/PointCloud2``, depth ``qos_depth``): the latest cloud is kept for
  ``detect_grasps``; with ``detect_on_topic`` every cloud is also queued for detection.
  ``cloud_reliability='best_effort'`` (sensor-data QoS, the default) matches best-effort and
  reliable publishers, but a best-effort connection loses large clouds: over Fast DDS on
  localhost 16,384-point clouds (196 kB) all arrive, 61,504-point ones (738 kB) mostly do not.
  With a camera that publishes reliably (``phoxi_camera`` in software-trigger mode) set
  ``'reliable'``; it does not match best-effort publishers.
- ``grasps`` (``gpr_msgs/GraspArray``, reliable, depth ``grasps_qos_depth``): every detection
  result (topic clouds and service requests), best first, scoring at least ``min_score``,
  stamped with the cloud's stamp, in ``output_frame`` (or the cloud's frame). Clouds in another
  frame are transformed with the static ``camera_to_output`` or, when that is unset, with tf2
  at the cloud's stamp (``use_tf``; full ROS 2 installs, :mod:`gpr_ros.ros.tf`).
- ``grasp_markers`` (``visualization_msgs/MarkerArray``, reliable): gripper wireframes of the
  published grasps coloured by score, when ``publish_markers`` and somebody subscribes.
- ``detect_grasps`` (``gpr_msgs/srv/DetectGrasps``): detect in the request's cloud, or in the
  latest topic cloud when the request's cloud is empty (``NO_CLOUD`` when none was received).

Threads: detection runs in one worker thread that owns the model; everything else runs on
one executor thread (a ``SingleThreadedExecutor``: a multi-threaded one cost ~0.4 ms of thread
hand-offs per cloud and ~0.5 ms of GIL contention during detection, a quarter of the node's
end-to-end overhead). Topic clouds wait in a bounded queue of ``queue_size``; when it is full
the oldest pending cloud is dropped (with a throttled warning), so the subscription callback
never blocks. Service requests go first; each service callback is a coroutine that suspends
(the executor thread serves clouds and other requests meanwhile) until the worker wakes it
through a guard condition, or a timer at ``timeout_s`` makes it answer ``TIMEOUT``; it answers
``BUSY`` at once when ``queue_size`` requests are already pending. No callback ever waits.
The worker first warms the detector up (:meth:`GraspDetector.warm_up`: numba kernels
compiled or loaded, one detection on a synthetic cloud; ~0.3 s, ~4 s on a cold numba cache),
so the first real cloud is as fast as the others; clouds and requests arriving meanwhile wait
in the queue.

Every parameter is read once at start-up (they are read-only); invalid values and a model
that does not load are logged and the process exits with code 2. The detection itself is
:class:`gpr_ros.ros.detection.DetectionPipeline`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
import math
import sys
import threading
import time
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from gpr_msgs.msg import GraspArray
from gpr_msgs.srv import DetectGrasps
from gpr_ros.core.errors import ConfigError
from gpr_ros.core.network.config import DEFAULT_MIN_SCORE, DEFAULT_POSE_PASSES, MAX_POSE_PASSES
from gpr_ros.ros.detection import (
    MAX_GRASPS_LIMIT,
    DetectionConfig,
    DetectionError,
    DetectionPipeline,
    TransformLookup,
)
from gpr_ros.ros.runtime import NodeStartupError, Throttle, fail_response, run_node
from gpr_ros.ros.tf import TfLookup, TfUnavailableError

EXIT_INVALID_PARAMETERS = 2
#: Largest ``queue_size``.
MAX_QUEUE_SIZE = 16
RELIABILITIES = ('best_effort', 'reliable')
#: Seconds the worker thread gets to finish its current detection at shutdown.
SHUTDOWN_JOIN_S = 10.0
#: Largest ``malloc_retain_mb`` (glibc's trim threshold is an int of bytes).
MAX_MALLOC_RETAIN_MB = 2047



@dataclass(frozen=True)
class InferenceNodeConfig:
    """Validated node parameters; the detection's own settings are in ``detection``.

    :ivar detection: the pipeline configuration.
    :ivar queue_size: pending topic clouds, and pending service requests, 1 ..
        :data:`MAX_QUEUE_SIZE`.
    :ivar qos_depth: history depth of the cloud subscription.
    :ivar cloud_reliability: ``'best_effort'`` or ``'reliable'`` cloud subscription.
    :ivar grasps_qos_depth: history depth of the grasp and marker publishers.
    :ivar timeout_s: a service request waits at most this long for its detection, s.
    :ivar publish_markers: publish ``grasp_markers``.
    :ivar detect_on_topic: detect grasps in every cloud received on ``cloud``.
    :ivar malloc_retain_mb: freed memory the process keeps for the next detection, MB
        (:func:`gpr_ros.core.network.inference.retain_freed_memory`); 0 = the C library's
        defaults.
    :ivar use_tf: take the cloud-to-output transform from tf2 when ``camera_to_output`` is
        unset (full ROS 2 installs; :class:`gpr_ros.ros.tf.TfLookup`).
    :ivar tf_timeout_s: longest wait for a tf2 transform, s.
    :raises ConfigError: on an invalid value.
    """

    detection: DetectionConfig
    queue_size: int = 2
    qos_depth: int = 1
    cloud_reliability: str = 'best_effort'
    grasps_qos_depth: int = 10
    timeout_s: float = 10.0
    publish_markers: bool = True
    detect_on_topic: bool = True
    malloc_retain_mb: int = 256
    use_tf: bool = True
    tf_timeout_s: float = 0.2

    def __post_init__(self) -> None:
        """Check the node settings (the detection config checked itself)."""
        if not 1 <= self.queue_size <= MAX_QUEUE_SIZE:
            raise ConfigError(
                f'queue_size is {self.queue_size}; expected an integer in [1, {MAX_QUEUE_SIZE}]')
        if self.cloud_reliability not in RELIABILITIES:
            raise ConfigError(f'cloud_reliability is {self.cloud_reliability!r}; expected '
                              f'{" or ".join(map(repr, RELIABILITIES))}')
        for name in ('qos_depth', 'grasps_qos_depth'):
            if getattr(self, name) < 1:
                raise ConfigError(f'{name} is {getattr(self, name)}; expected >= 1')
        if not 0 <= self.malloc_retain_mb <= MAX_MALLOC_RETAIN_MB:
            raise ConfigError(f'malloc_retain_mb is {self.malloc_retain_mb}; expected an '
                              f'integer in [0, {MAX_MALLOC_RETAIN_MB}]')
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ConfigError(f'timeout_s is {self.timeout_s}; expected a finite value > 0')
        if not (math.isfinite(self.tf_timeout_s) and self.tf_timeout_s >= 0):
            raise ConfigError(f'tf_timeout_s is {self.tf_timeout_s}; expected a finite value '
                              '>= 0')


@dataclass(eq=False)
class DetectionJob:
    """One service request waiting for the worker.

    :ivar cloud: the cloud to detect in.
    :ivar max_grasps: requested maximum (0: the node's default).
    :ivar min_score: requested threshold (0: the node's default).
    """

    cloud: PointCloud2
    max_grasps: int = 0
    min_score: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)
    result: GraspArray | None = None
    error: DetectionError | None = None


class _Suspend:
    """Awaitable that suspends a coroutine callback once; the executor resumes it when it wakes.

    rclpy re-runs every pending task each time its executor wakes (guard condition, timer or any
    other ready entity), so a callback awaiting this in a loop re-checks its condition on every
    wake-up without holding the executor thread.
    """

    def __await__(self):  # type: ignore[no-untyped-def]
        yield


class WorkQueue:
    """Pending detections for one worker: service requests first, then topic clouds.

    Topic clouds: at most ``size`` pending, the oldest dropped when a new one arrives.
    Service requests: at most ``size`` pending or running; more are refused.
    """

    def __init__(self, size: int) -> None:
        """Create an empty queue.

        :param size: capacity of each lane, >= 1.
        """
        self.size = size
        self._cond = threading.Condition()
        self._clouds: deque[PointCloud2] = deque()
        self._jobs: deque[DetectionJob] = deque()
        self._jobs_open = 0  # queued or running
        self._closed = False

    def put_cloud(self, cloud: PointCloud2) -> PointCloud2 | None:
        """Queue a topic cloud.

        :param cloud: the cloud.
        :return: the oldest pending cloud when it was dropped to make room, else None.
        """
        with self._cond:
            dropped = self._clouds.popleft() if len(self._clouds) >= self.size else None
            self._clouds.append(cloud)
            self._cond.notify()
            return dropped

    def put_job(self, job: DetectionJob) -> bool:
        """Queue a service request.

        :param job: the request.
        :return: False (not queued) when ``size`` requests are pending or running, or the
            queue is closed.
        """
        with self._cond:
            if self._closed or self._jobs_open >= self.size:
                return False
            self._jobs.append(job)
            self._jobs_open += 1
            self._cond.notify()
            return True

    def get(self) -> DetectionJob | PointCloud2 | None:
        """Wait for the next item (requests first); None once the queue is closed."""
        with self._cond:
            while not self._closed and not self._jobs and not self._clouds:
                self._cond.wait()
            if self._closed:
                return None
            return self._jobs.popleft() if self._jobs else self._clouds.popleft()

    def finish(self, job: DetectionJob) -> None:
        """Mark a request taken by :meth:`get` as finished (frees its place)."""
        with self._cond:
            self._jobs_open -= 1

    def withdraw(self, job: DetectionJob) -> bool:
        """Remove a request that has not started (its caller gave up).

        :return: True when it was still queued; False when it is running or done.
        """
        with self._cond:
            try:
                self._jobs.remove(job)
            except ValueError:
                return False
            self._jobs_open -= 1
            return True

    def close(self) -> list[DetectionJob]:
        """Stop :meth:`get` and return the requests that never started."""
        with self._cond:
            self._closed = True
            pending = list(self._jobs)
            self._jobs_open -= len(pending)
            self._jobs.clear()
            self._clouds.clear()
            self._cond.notify_all()
            return pending

    @property
    def pending_clouds(self) -> int:
        """Topic clouds waiting."""
        with self._cond:
            return len(self._clouds)


def _no_op() -> None:
    """Callback of the wake-up guard condition and timers: waking the executor is the point."""


def _floats(lo: float, hi: float) -> dict[str, Any]:
    return {'floating_point_range': [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]}


def _ints(lo: int, hi: int) -> dict[str, Any]:
    return {'integer_range': [IntegerRange(from_value=lo, to_value=hi, step=1)]}


#: name -> (default, description, extra descriptor fields). Every parameter is read once, so
#: every one is read-only. ``Parameter.Type`` defaults are optional arrays (unset: empty).
PARAMETERS: dict[str, tuple[Any, str, dict[str, Any]]] = {
    'model_path': ('', "GPR checkpoint (.pt); '' = the shipped models/gpr_default.pt", {}),
    'device': ('cpu', "torch device: 'cpu', 'cuda' or 'cuda:N'", {}),
    'stage': (2, '2: refined grasps (GPR); 1: stage-1 proposals only', _ints(1, 2)),
    'max_grasps': (20, 'grasps returned per cloud (service requests may ask for another '
                   'number)', _ints(1, MAX_GRASPS_LIMIT)),
    'proposals': (0, 'stage-1 proposals kept after NMS and refined per cloud, the best '
                  "max_grasps returned; 0 = the model's proposals_test (100, the paper's); "
                  'fewer is faster but lets stage 2 rank fewer candidates',
                  _ints(0, MAX_GRASPS_LIMIT)),
    'pose_passes': (DEFAULT_POSE_PASSES, 'stage-2 passes over the pose: the refined poses are '
                    "refined again (width and score from the first pass); 1 = the paper's "
                    'single refinement', _ints(1, MAX_POSE_PASSES)),
    'min_score': (DEFAULT_MIN_SCORE, 'drop grasps scoring below this (requests may ask for '
                  "another threshold); 0.3 is the evaluation's: below it GPR grasps rarely hold",
                  _floats(0.0, 1.0)),
    'min_points': (100, 'clouds with fewer finite points are rejected (TOO_FEW_POINTS)',
                   _ints(1, 100_000_000)),
    'output_frame': ('', "frame of the published grasps; '' = the cloud's frame", {}),
    'camera_to_output': (Parameter.Type.DOUBLE_ARRAY, 'static pose [x, y, z, qx, qy, qz, qw] '
                         'of the cloud frame in output_frame (m, unit quaternion); unset or [] '
                         '= none: tf2 (use_tf) or clouds already in output_frame', {}),
    'cloud_frame': ('', "clouds in another frame are rejected (TRANSFORM_ERROR); '' = any",
                    {}),
    'use_tf': (True, 'full ROS 2 installs: when camera_to_output is unset, transform clouds to '
               'output_frame with tf2 (at the cloud stamp); without tf2_ros clouds must be in '
               'output_frame', {}),
    'tf_timeout_s': (0.2, 'wait at most this long for a tf2 transform, then TRANSFORM_ERROR '
                     '[s]', _floats(0.0, 10.0)),
    'max_width': (0.0, "drop grasps wider than this [m]; 0 = the model gripper's max opening",
                  _floats(0.0, 1.0)),
    'threads': (1, 'torch CPU threads', _ints(1, 256)),
    'seed': (0, 'detector seed (same cloud, same grasps)', _ints(0, 2**31 - 1)),
    'queue_size': (2, 'pending topic clouds (the oldest is dropped when full) and pending '
                   'service requests (more are answered BUSY)', _ints(1, MAX_QUEUE_SIZE)),
    'qos_depth': (1, 'history depth of the cloud subscription', _ints(1, 100)),
    'cloud_reliability': ('best_effort', "cloud subscription: 'best_effort' (sensor data; "
                          "matches every publisher, loses large clouds) or 'reliable' (only "
                          'reliable publishers)', {}),
    'grasps_qos_depth': (10, 'history depth of the reliable grasps and grasp_markers '
                         'publishers', _ints(1, 1000)),
    'timeout_s': (10.0, 'a detect_grasps request waits at most this long, then answers '
                  'TIMEOUT [s]', _floats(0.01, 3600.0)),
    'publish_markers': (True, 'publish gripper wireframes on grasp_markers', {}),
    'detect_on_topic': (True, 'detect grasps in every cloud received on cloud (false: only '
                        'on detect_grasps requests)', {}),
    'malloc_retain_mb': (256, 'freed memory the process keeps for the next detection instead '
                         'of returning it to the OS after every cloud (glibc mallopt: saves '
                         "1-3 ms of page faults per cloud) [MB]; 0 = the C library's defaults",
                         _ints(0, MAX_MALLOC_RETAIN_MB)),
}


class GprInferenceNode(Node):
    """Detects grasps in clouds from ``cloud`` and on ``detect_grasps`` requests."""

    def __init__(self, **kwargs: Any) -> None:
        """Read the parameters, load the model, start the worker.

        :param kwargs: passed to :class:`rclpy.node.Node` (e.g. ``parameter_overrides``).
        :raises NodeStartupError: on invalid parameters or a model that does not load.
        """
        super().__init__('gpr_inference', **kwargs)
        # rclpy destroys half-built nodes at shutdown: destroy_node needs these even then.
        self._queue: WorkQueue | None = None
        self._worker: threading.Thread | None = None
        try:
            self.config = self._read_parameters()
            self.pipeline = DetectionPipeline(self.config.detection, self._tf_lookup())
        except (ParameterException, ConfigError, DetectionError) as err:
            what = 'cannot load the model' if isinstance(err, DetectionError) \
                else 'invalid parameters'
            self.get_logger().error(f'{what}: {err}')
            raise NodeStartupError(str(err)) from None
        cfg = self.config
        suggested = self.pipeline.suggested_min_score
        if cfg.detection.min_score < suggested:
            self.get_logger().warning(
                f'min_score {cfg.detection.min_score:g} is below {suggested:g}, the threshold '
                'that suits this model\'s confidence (trained with the paper\'s proposal '
                'target): its weaker grasps rarely hold')
        # imported here (it imports torch, 2-3 s): invalid parameters exit before that
        from gpr_ros.core.network.inference import retain_freed_memory
        retain_freed_memory(cfg.malloc_retain_mb)
        self._latest: PointCloud2 | None = None
        self._latest_lock = threading.Lock()
        self._dropped = 0
        self._detected = 0
        self._info_throttle = Throttle(10.0)
        self._queue = WorkQueue(cfg.queue_size)
        # the worker triggers it when a request is done: wakes the executor to resume its
        # suspended service callback
        self._job_done = self.create_guard_condition(_no_op)
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.grasps_qos_depth,
                              reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.VOLATILE)
        self._grasp_pub = self.create_publisher(GraspArray, 'grasps', reliable)
        self._marker_pub = (self.create_publisher(MarkerArray, 'grasp_markers', reliable)
                            if cfg.publish_markers else None)
        sensor = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.qos_depth,
                            reliability=ReliabilityPolicy.RELIABLE
                            if cfg.cloud_reliability == 'reliable'
                            else ReliabilityPolicy.BEST_EFFORT,
                            durability=DurabilityPolicy.VOLATILE)
        self.create_subscription(PointCloud2, 'cloud', self._on_cloud, sensor,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        self.create_service(DetectGrasps, 'detect_grasps', self._on_detect,
                            callback_group=ReentrantCallbackGroup())
        self._worker = threading.Thread(target=self._work, name='gpr_inference_worker')
        self._worker.start()
        det = cfg.detection
        self.get_logger().info(
            f'model {self.pipeline.model_path} on {det.device} (stage {det.stage}, '
            f'{det.threads} thread(s)); grasps in '
            f"{det.output_frame or 'the cloud frame'}; detect_on_topic={cfg.detect_on_topic}")

    # --- parameters ---------------------------------------------------------------------------

    def _read_parameters(self) -> InferenceNodeConfig:
        values: dict[str, Any] = {}
        for name, (default, description, extra) in PARAMETERS.items():
            param = self.declare_parameter(
                name, default, ParameterDescriptor(name=name, description=description,
                                                   read_only=True, **extra))
            values[name] = param.value
        detection = DetectionConfig(
            model_path=values['model_path'], device=values['device'], stage=values['stage'],
            max_grasps=values['max_grasps'], proposals=values['proposals'],
            pose_passes=values['pose_passes'], min_score=float(values['min_score']),
            min_points=values['min_points'], output_frame=values['output_frame'],
            camera_to_output=tuple(values['camera_to_output'] or ()),
            max_width=float(values['max_width']), threads=values['threads'],
            seed=values['seed'], cloud_frame=values['cloud_frame'])
        return InferenceNodeConfig(
            detection=detection, queue_size=values['queue_size'],
            qos_depth=values['qos_depth'], cloud_reliability=values['cloud_reliability'],
            grasps_qos_depth=values['grasps_qos_depth'],
            timeout_s=float(values['timeout_s']),
            publish_markers=bool(values['publish_markers']),
            detect_on_topic=bool(values['detect_on_topic']),
            malloc_retain_mb=values['malloc_retain_mb'], use_tf=bool(values['use_tf']),
            tf_timeout_s=float(values['tf_timeout_s']))

    def _tf_lookup(self) -> TransformLookup | None:
        """tf2 for clouds in other frames than ``output_frame`` (full ROS 2 installs)."""
        cfg = self.config
        det = cfg.detection
        if not (cfg.use_tf and det.output_frame and det.extrinsics is None):
            return None
        try:
            lookup = TfLookup(self, cfg.tf_timeout_s)
        except TfUnavailableError as err:
            self.get_logger().warning(f'use_tf: {err}; clouds must come in '
                                      f'{det.output_frame!r}')
            return None
        self.get_logger().info(f'transforms to {det.output_frame!r} from tf2')
        return lookup

    # --- callbacks (never block) --------------------------------------------------------------

    def _on_cloud(self, msg: PointCloud2) -> None:
        with self._latest_lock:
            self._latest = msg
        if not self.config.detect_on_topic or self._queue is None:
            return
        dropped = self._queue.put_cloud(msg)
        if dropped is not None:
            self._dropped += 1
            stamp = dropped.header.stamp
            self.get_logger().warning(
                f'detection queue full ({self._queue.size}): dropped the oldest pending cloud '
                f'(stamp {stamp.sec}.{stamp.nanosec:09d}); {self._dropped} dropped so far',
                throttle_duration_sec=5.0)

    async def _on_detect(self, request: DetectGrasps.Request,
                         response: DetectGrasps.Response) -> DetectGrasps.Response:
        cloud = request.cloud
        if cloud.width * cloud.height == 0:
            with self._latest_lock:
                latest = self._latest
            if latest is None:
                return fail_response(response, DetectGrasps.Response.NO_CLOUD,
                             'the request has no cloud and none was received on '
                             f'{self.resolve_topic_name("cloud")} yet')
            cloud = latest
        job = DetectionJob(cloud, int(request.max_grasps), float(request.min_score))
        assert self._queue is not None
        if not self._queue.put_job(job):
            return fail_response(response, DetectGrasps.Response.BUSY,
                         f'{self._queue.size} detection request(s) already pending; try '
                         'again later')
        timeout = self.config.timeout_s
        deadline = time.monotonic() + timeout
        # wakes the executor at the deadline (and every timeout_s after, should a clock differ)
        timer = self.create_timer(timeout, _no_op)
        try:
            while not job.done.is_set() and time.monotonic() < deadline:
                await _Suspend()
        finally:
            self.destroy_timer(timer)
        if not job.done.is_set() and (self._queue.withdraw(job) or not job.done.is_set()):
            return fail_response(response, DetectGrasps.Response.TIMEOUT,
                         f'detection did not finish within timeout_s = {timeout:g} s')
        if job.error is not None:
            return fail_response(response, job.error.code, str(job.error))
        assert job.result is not None
        response.success = True
        response.error_code = DetectGrasps.Response.NONE
        response.message = ''
        response.grasps = job.result
        return response

    # --- the worker ---------------------------------------------------------------------------

    def _work(self) -> None:
        assert self._queue is not None
        try:  # first-call costs (numba compilation, torch allocations) before the first cloud
            seconds = self.pipeline.detector.warm_up()
            self.get_logger().info(f'warmed up in {seconds:.1f} s')
        except Exception as err:  # noqa: BLE001 - a failed warm-up only costs time later
            self.get_logger().warning(f'warm-up failed ({type(err).__name__}: {err}); the '
                                      f'first detection will be slower')
        while (item := self._queue.get()) is not None:
            if isinstance(item, DetectionJob):
                try:
                    item.result = self._detect(item.cloud, item.max_grasps, item.min_score)
                except DetectionError as err:
                    item.error = err
                except Exception as err:  # noqa: BLE001 - the worker must survive anything
                    item.error = DetectionError(DetectGrasps.Response.UNKNOWN,
                                                f'unexpected {type(err).__name__}: {err}')
                    self.get_logger().error(f'detection failed: {item.error}')
                finally:
                    self._queue.finish(item)
                    item.done.set()
                    self._wake_executor()
            else:
                try:
                    self._detect(item)
                except DetectionError as err:
                    self.get_logger().warning(
                        f'no grasps for the cloud on {self.resolve_topic_name("cloud")}: '
                        f'{err.name}: {err}', throttle_duration_sec=5.0)
                except Exception as err:  # noqa: BLE001 - the worker must survive anything
                    self.get_logger().error(
                        f'detection failed: unexpected {type(err).__name__}: {err}',
                        throttle_duration_sec=5.0)

    def _detect(self, cloud: PointCloud2, max_grasps: int = 0,
                min_score: float = 0.0) -> GraspArray:
        """Run the pipeline and publish its result (worker thread only)."""
        grasps = self.pipeline.detect(cloud, max_grasps, min_score)
        if not self.context.ok():  # shutting down: nobody is listening any more
            return grasps
        self._grasp_pub.publish(grasps)
        if self._marker_pub is not None and self._marker_pub.get_subscription_count() > 0:
            # built only for a listener (RViz): ~1 ms of Python per cloud otherwise wasted
            self._marker_pub.publish(self.pipeline.markers(grasps))
        self._detected += 1
        if self._info_throttle.due():
            timing = grasps.timing
            self.get_logger().info(
                f'{len(grasps.grasps)} grasps from {timing.num_input_points} points in '
                f'{timing.total * 1000:.0f} ms; {self._detected} clouds so far')
        return grasps

    def _wake_executor(self) -> None:
        """Resume suspended service callbacks (from the worker thread)."""
        try:
            self._job_done.trigger()
        except Exception:  # noqa: BLE001 - the node is being destroyed; nobody waits any more
            pass

    def destroy_node(self) -> None:
        """Stop the worker (letting a running detection finish) and destroy the node."""
        if self._queue is not None:
            for job in self._queue.close():
                job.error = DetectionError(DetectGrasps.Response.UNKNOWN,
                                           'the node is shutting down')
                job.done.set()
        if self._worker is not None:
            self._worker.join(timeout=SHUTDOWN_JOIN_S)
        super().destroy_node()



def main(args: Sequence[str] | None = None) -> int:
    """Run the inference node; exit code 2 on invalid parameters or an unloadable model."""
    try:
        return run_node(GprInferenceNode, args, num_threads=1)
    except NodeStartupError:
        return EXIT_INVALID_PARAMETERS


if __name__ == '__main__':
    sys.exit(main())
