"""PhoXi (GenICam 3D) camera node: publishes ``sensor_msgs/PointCloud2`` on ``cloud``.

Topics and services (remap ``cloud`` to rename the topic):

- ``cloud`` (``sensor_msgs/PointCloud2``, volatile, depth ``qos_depth``): clouds in
  ``frame_id`` (REP 103 optical frame: x right, y down, z forward), stamped with the node clock.
  ``invalid='nan'`` gives organized clouds (``height x width``, NaN points, ``is_dense`` false),
  ``invalid='drop'`` gives unorganized valid points. ``qos_reliability='auto'`` publishes
  best effort (sensor-data QoS) in continuous mode and reliable in software-trigger mode: one
  lost sample there is a lost scan, and multi-megabyte best-effort samples do get lost (about
  half of the 2 MB viky clouds over Fast DDS on localhost). Best-effort subscribers match both.
- ``~/trigger`` (``std_srvs/Trigger``): capture and publish one frame now; answers success and a
  message. With ``trigger='software'`` this is the only way a cloud is published; with
  ``trigger='continuous'`` a timer also publishes at ``rate_hz``.

Every camera call runs in one mutually exclusive callback group and is bounded by ``timeout_s``,
so the other executor thread stays free. When the device disappears the node closes it and
retries every ``reconnect_period_s``, warning once per failure streak. Invalid parameters are
logged and the process exits with code 2.

Sources: ``source='genicam'`` (:class:`gpr_ros.core.camera.GenicamSource`), ``'sim'``
(:class:`SimWorldSource`) or ``'none'`` (no camera; the service answers failure). With
``'sim'`` each capture calls the simulated world's ``gpr_msgs/SimCaptureCloud`` service
``sim_capture_service`` with ``call_async`` from a callback group of its own, bounded by
``timeout_s``, and publishes the returned points re-stamped now in ``frame_id``, unorganized;
a missing world is handled like a disconnected camera (warned once, retried every
``reconnect_period_s`` and at each capture); the GenICam-only parameters do not apply. Other
sources implement :class:`gpr_ros.core.camera.FrameSource` and register a factory
``(node, config) -> FrameSource`` in :data:`SOURCES`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
import math
import sys
import threading
import time
from typing import Any

import numpy as np
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.client import Client
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger

from gpr_msgs.srv import SimCaptureCloud
from gpr_ros.core.camera import (
    AcquisitionTimeoutError,
    CameraConfigError,
    CameraDisconnectedError,
    CameraError,
    Frame,
    FrameSource,
    GenicamConfig,
    GenicamSource,
)
from gpr_ros.ros.conversions import cloud_to_xyz, xyz_to_cloud
from gpr_ros.ros.errors import CloudFormatError
from gpr_ros.ros.runtime import run_node

#: source name -> factory from the node and its config (None: no camera).
SOURCES: dict[str, Callable[[Node, CameraNodeConfig], FrameSource] | None] = {}
TRIGGERS = ('software', 'continuous')
RELIABILITIES = ('auto', 'best_effort', 'reliable')
#: consecutive timeouts after which the device is considered gone and reopened.
MAX_TIMEOUTS = 3
EXIT_INVALID_PARAMETERS = 2


class NodeStartupError(RuntimeError):
    """The node cannot start (already logged); :func:`main` exits non-zero."""


@dataclass(frozen=True)
class CameraNodeConfig:
    """Validated node parameters; the camera's own settings live in ``camera``.

    :raises CameraConfigError: on an invalid value.
    """

    source: str
    trigger: str
    rate_hz: float
    frame_id: str
    qos_depth: int
    qos_reliability: str
    reconnect_period_s: float
    timeout_s: float
    camera: GenicamConfig | None
    sim_capture_service: str = 'sim_world/capture'
    sim_noise: bool = True

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise CameraConfigError(
                f'source is {self.source!r}; expected one of {", ".join(map(repr, SOURCES))}')
        if self.trigger not in TRIGGERS:
            raise CameraConfigError(
                f'trigger is {self.trigger!r}; expected one of {", ".join(map(repr, TRIGGERS))}')
        if self.qos_reliability not in RELIABILITIES:
            raise CameraConfigError(
                f'qos_reliability is {self.qos_reliability!r}; expected one of '
                f'{", ".join(map(repr, RELIABILITIES))}')
        if not self.frame_id:
            raise CameraConfigError('frame_id is empty; every cloud must name its frame')
        for name in ('rate_hz', 'reconnect_period_s', 'timeout_s'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise CameraConfigError(f'{name} is {value}; expected a finite value > 0')
        if self.qos_depth < 1:
            raise CameraConfigError(f'qos_depth is {self.qos_depth}; expected >= 1')
        if self.source == 'sim' and not self.sim_capture_service:
            raise CameraConfigError("sim_capture_service is empty; source 'sim' needs the "
                                    "world's SimCaptureCloud service")


class SimWorldSource:
    """Frames from the simulated world's ``SimCaptureCloud`` service (``source='sim'``).

    A :class:`~gpr_ros.core.camera.FrameSource`: ``open`` succeeds once the service exists,
    ``capture`` calls it asynchronously from its own callback group (the answer is handled by
    another executor thread while the capturing thread waits, at most ``timeout``).

    :param node: the camera node.
    :param config: its configuration (``sim_capture_service``, ``sim_noise``, ``timeout_s``).
    """

    #: opening only looks up the service: a capture on a closed source tries it first.
    open_on_demand = True

    def __init__(self, node: Node, config: CameraNodeConfig) -> None:
        self._service = config.sim_capture_service
        self._noise = config.sim_noise
        self._default_timeout = config.timeout_s
        self._client: Client = node.create_client(
            SimCaptureCloud, config.sim_capture_service,
            callback_group=MutuallyExclusiveCallbackGroup())
        self._open = False
        self._sequence = 0

    @property
    def is_open(self) -> bool:
        """True while the world's service is known to be there."""
        return self._open

    def describe(self) -> str:
        """A line for the log."""
        return f'simulated world ({self._service!r}, noise {"on" if self._noise else "off"})'

    def open(self) -> None:
        """Check that the world is there.

        :raises CameraDisconnectedError: when its capture service is not available.
        """
        if not self._client.service_is_ready():
            raise CameraDisconnectedError(
                f'the simulated world capture service {self._service!r} is not available')
        self._open = True

    def close(self) -> None:
        """Forget the world (the next :meth:`open` looks for it again)."""
        self._open = False

    def capture(self, timeout: float | None = None) -> Frame:
        """Ask the world for one cloud.

        :param timeout: seconds to wait for the answer (default ``timeout_s``).
        :return: the frame, unorganized float32 points in metres.
        :raises CameraDisconnectedError: when the service is gone or the call failed.
        :raises AcquisitionTimeoutError: when no answer came in time.
        :raises CameraError: when the world refused (e.g. no scene yet) or sent a bad cloud.
        """
        if not self._open or not self._client.service_is_ready():
            raise CameraDisconnectedError(
                f'the simulated world capture service {self._service!r} is not available')
        wait = self._default_timeout if timeout is None else timeout
        future = self._client.call_async(SimCaptureCloud.Request(noise=self._noise))
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(wait):
            self._client.remove_pending_request(future)
            raise AcquisitionTimeoutError(f'the simulated world did not answer within {wait:g} s')
        reply = future.result()
        if reply is None:
            raise CameraDisconnectedError('the simulated world capture call failed')
        if not reply.success:
            raise CameraError(f'the simulated world refused the capture: {reply.message}')
        try:
            points = cloud_to_xyz(reply.cloud, dtype=np.float32)
        except CloudFormatError as err:
            raise CameraError(f'the simulated world sent an unreadable cloud: {err}') from None
        self._sequence += 1
        return Frame(points=points, intensity=None, timestamp_ns=time.time_ns(),
                     sequence=self._sequence)


SOURCES['genicam'] = lambda _node, cfg: GenicamSource(cfg.camera)  # type: ignore[arg-type]
SOURCES['sim'] = SimWorldSource
SOURCES['none'] = None


def _floats(lo: float, hi: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]


#: name -> (default, description, extra descriptor fields). ``Parameter.Type`` defaults are
#: optional arrays (unset means empty: ROS cannot type an empty list).
PARAMETERS: dict[str, tuple[Any, str, dict[str, Any]]] = {
    'source': ('genicam', "frame source: 'genicam' (GenTL producer), 'sim' (the simulated "
               "world's capture service) or 'none' (no camera)", {}),
    'cti_path': ('', 'GenTL producer (.cti) file; empty: the genicam wheel simulator viky.cti',
                 {'read_only': True}),
    'device_id': ('', 'device serial, id, user name or index; empty: the first device',
                  {'read_only': True}),
    'trigger': ('software', "'software': publish only on ~/trigger; 'continuous': publish at "
                'rate_hz', {'read_only': True}),
    'rate_hz': (5.0, 'publishing rate in continuous mode [Hz]',
                {'floating_point_range': _floats(0.01, 100.0)}),
    'component': ('coord3d', "'coord3d' (Coord3D ABC point map) or 'range' (depth + "
                  'intrinsics)', {'read_only': True}),
    'intensity': (False, 'add an intensity field from the texture/intensity component',
                  {'read_only': True}),
    'unit_scale': (0.0, 'metres per device distance unit (0.001 for mm); 0: from '
                   'Scan3dDistanceUnit', {'floating_point_range': _floats(0.0, 1000.0),
                                          'read_only': True}),
    # dynamic: YAML and `-p invalid:=nan` read an unquoted nan as a double NaN; accepted too.
    'invalid': ('nan', "'nan': organized cloud with NaN for invalid points; 'drop': "
                'unorganized cloud of valid points', {'read_only': True, 'dynamic_typing': True}),
    'roi': (Parameter.Type.DOUBLE_ARRAY, 'crop box [x_min, y_min, z_min, x_max, y_max, z_max] '
            'in metres in frame_id; unset or [] keeps every point', {'read_only': True}),
    'intrinsics': (Parameter.Type.DOUBLE_ARRAY, "[fx, fy, cx, cy] in pixels for component "
                   "'range'; unset: from the device", {'read_only': True}),
    'frame_id': ('camera_optical_frame', 'frame of the published clouds', {'read_only': True}),
    'qos_depth': (1, 'history depth of the cloud publisher',
                  {'integer_range': [IntegerRange(from_value=1, to_value=100, step=1)],
                   'read_only': True}),
    'qos_reliability': ('auto', "cloud publisher reliability: 'best_effort', 'reliable' or "
                        "'auto' (reliable with trigger='software', best effort otherwise)",
                        {'read_only': True}),
    'reconnect_period_s': (2.0, 'seconds between attempts to reopen a lost device',
                           {'floating_point_range': _floats(0.1, 3600.0), 'read_only': True}),
    'timeout_s': (2.0, "acquisition timeout of one frame [s] (source 'sim': the world's answer)",
                  {'floating_point_range': _floats(0.01, 60.0), 'read_only': True}),
    'sim_capture_service': ('sim_world/capture', "source 'sim': the world's "
                            'gpr_msgs/SimCaptureCloud service', {'read_only': True}),
    'sim_noise': (True, "source 'sim': ask the world for noisy clouds (it applies noise only "
                  'when its own noise parameter is on too)', {'read_only': True}),
}


class PhoxiCameraNode(Node):
    """Publishes clouds from a 3D camera on ``cloud``; ``~/trigger`` captures one on demand."""

    def __init__(self) -> None:
        super().__init__('phoxi_camera')
        # rclpy destroys half-built nodes at shutdown: destroy_node needs these even then.
        self._source: FrameSource | None = None
        self._lock = threading.Lock()
        try:
            self.config = self._read_parameters()
        except (ParameterException, CameraConfigError) as err:
            self.get_logger().error(f'invalid parameters: {err}')
            raise NodeStartupError(str(err)) from None
        cfg = self.config
        factory = SOURCES[cfg.source]
        self._source = factory(self, cfg) if factory is not None else None
        self._lost_since_warning = False
        self._timeouts = 0
        self._published = 0
        self._group = MutuallyExclusiveCallbackGroup()
        reliable = cfg.qos_reliability == 'reliable' or (
            cfg.qos_reliability == 'auto' and cfg.trigger == 'software')
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.qos_depth,
                         reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.VOLATILE)
        self._pub = self.create_publisher(PointCloud2, 'cloud', qos)
        self.create_service(Trigger, '~/trigger', self._on_trigger, callback_group=self._group)
        if self._source is None:
            self.get_logger().warning("source is 'none': no camera, nothing will be published")
            return
        try:
            self._connect()
        except CameraConfigError as err:
            self.get_logger().error(f'camera configuration rejected: {err}')
            raise NodeStartupError(str(err)) from None
        self.create_timer(cfg.reconnect_period_s, self._on_reconnect, callback_group=self._group)
        if cfg.trigger == 'continuous':
            self.create_timer(1.0 / cfg.rate_hz, self._on_tick, callback_group=self._group)

    # --- parameters ---------------------------------------------------------------------------

    def _read_parameters(self) -> CameraNodeConfig:
        values: dict[str, Any] = {}
        for name, (default, description, extra) in PARAMETERS.items():
            param = self.declare_parameter(
                name, default, ParameterDescriptor(name=name, description=description, **extra))
            values[name] = param.value
        if isinstance(values['invalid'], float) and math.isnan(values['invalid']):
            values['invalid'] = 'nan'
        source = str(values['source'])
        camera = None
        if source == 'genicam':
            camera = GenicamConfig(
                cti_path=values['cti_path'], device_id=values['device_id'],
                trigger=values['trigger'], component=values['component'],
                intensity=bool(values['intensity']), unit_scale=float(values['unit_scale']),
                invalid=values['invalid'], roi=tuple(values['roi'] or ()),
                intrinsics=tuple(values['intrinsics'] or ()), timeout_s=values['timeout_s'])
        return CameraNodeConfig(
            source=source, trigger=values['trigger'], rate_hz=float(values['rate_hz']),
            frame_id=values['frame_id'], qos_depth=int(values['qos_depth']),
            qos_reliability=values['qos_reliability'],
            reconnect_period_s=float(values['reconnect_period_s']),
            timeout_s=float(values['timeout_s']), camera=camera,
            sim_capture_service=values['sim_capture_service'], sim_noise=bool(values['sim_noise']))

    # --- connection ---------------------------------------------------------------------------

    def _connect(self) -> bool:
        """Open the source; returns False (and warns once per streak) when it is not there.

        :raises CameraConfigError: when the configuration cannot work with this device.
        """
        assert self._source is not None
        try:
            self._source.open()
        except CameraDisconnectedError as err:
            if not self._lost_since_warning:
                self.get_logger().warning(
                    f'camera not available, retrying every {self.config.reconnect_period_s:g} s:'
                    f' {err}')
                self._lost_since_warning = True
            return False
        device = getattr(self._source, 'device', None)
        if device is None and hasattr(self._source, 'describe'):
            device = self._source
        self.get_logger().info(
            f'camera open: {device.describe() if device is not None else self.config.source}, '
            f'trigger={self.config.trigger}')
        self._lost_since_warning = False
        self._timeouts = 0
        return True

    def _lose(self, reason: str) -> None:
        assert self._source is not None
        self._source.close()
        self.get_logger().warning(
            f'camera lost ({reason}); reopening every {self.config.reconnect_period_s:g} s')
        self._lost_since_warning = True

    def _on_reconnect(self) -> None:
        with self._lock:
            if self._source is None or self._source.is_open:
                return
            try:
                self._connect()
            except CameraConfigError as err:
                if not self._lost_since_warning:
                    self.get_logger().error(f'cannot reopen the camera: {err}')
                    self._lost_since_warning = True

    # --- acquisition --------------------------------------------------------------------------

    def capture_and_publish(self) -> tuple[bool, str]:
        """Capture one frame and publish it.

        :return: success and a message for the caller (the Trigger response or a log).
        """
        with self._lock:
            if self._source is None:
                return False, "source is 'none': no camera configured"
            if not self._source.is_open and getattr(self._source, 'open_on_demand', False):
                self._connect()  # cheap for such sources: no need to wait for the timer
            if not self._source.is_open:
                return False, 'camera not connected; reconnecting'
            try:
                frame = self._source.capture(self.config.timeout_s)
            except AcquisitionTimeoutError as err:
                self._timeouts += 1
                if self._timeouts >= MAX_TIMEOUTS:
                    self._lose(f'{self._timeouts} timeouts in a row')
                return False, str(err)
            except CameraDisconnectedError as err:
                self._lose(str(err))
                return False, str(err)
            except CameraError as err:
                return False, str(err)
            self._timeouts = 0
            msg = xyz_to_cloud(frame.points, frame_id=self.config.frame_id,
                               stamp=self.get_clock().now().to_msg(), intensity=frame.intensity)
            self._pub.publish(msg)
            self._published += 1
        text = (f'published frame {frame.sequence}: {frame.num_valid} valid of '
                f'{msg.width * msg.height} points ({msg.height} x {msg.width})')
        self.get_logger().info(f'{text}; {self._published} clouds so far',
                               throttle_duration_sec=10.0)
        return True, text

    def _on_tick(self) -> None:
        ok, message = self.capture_and_publish()
        if not ok and self._source is not None and self._source.is_open:
            self.get_logger().warning(message, throttle_duration_sec=5.0)

    def _on_trigger(self, _request: Trigger.Request,
                    response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.capture_and_publish()
        return response

    def destroy_node(self) -> None:
        """Close the camera (waiting for a running grab) and destroy the node."""
        if self._source is not None:
            locked = self._lock.acquire(timeout=self.config.timeout_s + 1.0)  # a grab may run
            try:
                self._source.close()
            finally:
                if locked:
                    self._lock.release()
        super().destroy_node()


def main(args: Sequence[str] | None = None) -> int:
    """Run the camera node; exit code 2 on invalid parameters."""
    try:
        return run_node(PhoxiCameraNode, args)
    except NodeStartupError:
        return EXIT_INVALID_PARAMETERS


if __name__ == '__main__':
    sys.exit(main())
