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
(:class:`SimWorldSource`), ``'bag'`` (:class:`BagSource`) or ``'none'`` (no camera; the service
answers failure). Other sources implement :class:`gpr_ros.core.camera.FrameSource` and register
a factory ``(node, config) -> FrameSource`` in :data:`SOURCES`.

``'sim'``: each capture calls the simulated world's ``gpr_msgs/SimCaptureCloud`` service
``sim_capture_service`` with ``call_async`` from a callback group of its own, bounded by
``timeout_s``, and publishes the returned points re-stamped now in ``frame_id``, unorganized;
a missing world is handled like a disconnected camera (warned once, retried every
``reconnect_period_s`` and at each capture); the GenICam-only parameters do not apply.

``'bag'``: plays the ``sensor_msgs/PointCloud2`` messages of ``bag_topic`` of the rosbag2 bag
``bag_path`` (sqlite3 or MCAP; ``bag_topic=''``: the bag's only PointCloud2 topic) through
:class:`gpr_ros.ros.bag_source.BagFrameSource`; the GenICam-only parameters do not apply.

- Clouds keep their recorded layout (organized grids with their NaN, unorganized ones as
  their finite points) and intensity field.
- Header: ``frame_id`` as for every source, or each cloud's recorded frame when ``frame_id``
  is ``''`` (allowed for this source only); stamped with the node clock at publication, or
  with the recorded header stamp when ``bag_use_recorded_stamps`` is true.
- Timing: cloud *i* is published no earlier than ``first + (t_i - t_0) / bag_rate`` (bag
  timestamps), never skipped. ``trigger='continuous'`` with ``bag_rate > 0`` follows that
  timing alone (checked every :data:`BAG_POLL_PERIOD_S`; ``rate_hz`` does not apply), with
  ``bag_rate=0`` it publishes one cloud per ``1 / rate_hz``. ``trigger='software'``: each
  ``~/trigger`` publishes the next cloud, waiting for it to be due up to ``timeout_s``; a
  cloud due later answers failure (``due in ...``) and stays next. Waiting for a cloud is
  never counted as a camera timeout: the bag is not reopened.
- End of the bag (``bag_loop`` false): logged once at info, nothing more is published, the
  continuous timer stops and ``~/trigger`` answers failure ``end of bag ...``. With
  ``bag_loop`` the bag starts over (its timing too).
- A bag that cannot be played (missing, damaged, no such topic, not PointCloud2, no or several
  PointCloud2 topics with ``bag_topic=''``) is logged and the process exits with code 2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
import enum
import math
from pathlib import Path
import sys
import threading
import time
from typing import Any

from builtin_interfaces.msg import Time
import numpy as np
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.client import Client
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.timer import Timer
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
from gpr_ros.ros.bag_source import BagFrameSource, EndOfBagError
from gpr_ros.ros.bags import POINTCLOUD2, BagError, BagReader
from gpr_ros.ros.conversions import cloud_to_xyz, xyz_to_cloud
from gpr_ros.ros.errors import CloudFormatError
from gpr_ros.ros.runtime import NodeStartupError, Throttle, run_node

#: source name -> factory from the node and its config (None: no camera).
SOURCES: dict[str, Callable[[Node, CameraNodeConfig], FrameSource] | None] = {}
TRIGGERS = ('software', 'continuous')
RELIABILITIES = ('auto', 'best_effort', 'reliable')
#: consecutive timeouts after which the device is considered gone and reopened (never for
#: a source whose ``timeout_means_lost`` is false, such as a bag waiting for its next cloud).
MAX_TIMEOUTS = 3
#: source 'bag', trigger 'continuous', bag_rate > 0: how often the next cloud is checked for
#: being due [s] (the publication lags its due time by at most about this much).
BAG_POLL_PERIOD_S = 0.01
EXIT_INVALID_PARAMETERS = 2
NANOSECONDS = 1_000_000_000



class CaptureStatus(enum.Enum):
    """What one capture attempt came to."""

    PUBLISHED = 'published'
    #: the source's next frame is not due yet (a bag keeping its recorded timing).
    WAITING = 'waiting'
    #: the source has no more frames (end of a bag); nothing more will be published.
    ENDED = 'ended'
    FAILED = 'failed'


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
    bag_path: str = ''
    bag_topic: str = ''
    bag_rate: float = 1.0
    bag_loop: bool = False
    bag_use_recorded_stamps: bool = False

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
        if not self.frame_id and self.source != 'bag':
            raise CameraConfigError("frame_id is empty; every cloud must name its frame (only "
                                    "source 'bag' accepts '': keep the recorded frames)")
        for name in ('rate_hz', 'reconnect_period_s', 'timeout_s'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise CameraConfigError(f'{name} is {value}; expected a finite value > 0')
        if self.qos_depth < 1:
            raise CameraConfigError(f'qos_depth is {self.qos_depth}; expected >= 1')
        if self.source == 'sim' and not self.sim_capture_service:
            raise CameraConfigError("sim_capture_service is empty; source 'sim' needs the "
                                    "world's SimCaptureCloud service")
        if self.source == 'bag' and not self.bag_path:
            raise CameraConfigError("bag_path is empty; source 'bag' needs a rosbag2 folder or "
                                    'a .db3/.mcap file to play')
        if not (math.isfinite(self.bag_rate) and self.bag_rate >= 0):
            raise CameraConfigError(f'bag_rate is {self.bag_rate}; expected a finite factor >= 0 '
                                    '(1: recorded rate, 0: as fast as asked)')


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


def only_cloud_topic(path: str | Path) -> str:
    """The one ``sensor_msgs/msg/PointCloud2`` topic of a bag.

    :param path: bag folder or ``.db3``/``.mcap`` file.
    :return: the topic name.
    :raises CameraConfigError: when the bag cannot be read or has no or several such topics
        (the message lists the bag's topics).
    """
    try:
        with BagReader(path) as reader:
            topics = reader.topics_of_type(POINTCLOUD2)
            listing = reader.describe_topics()
    except BagError as err:
        raise CameraConfigError(f'bag source: {err}') from None
    if len(topics) != 1:
        what = 'no' if not topics else f'{len(topics)}'
        raise CameraConfigError(
            f'bag source: bag {path} has {what} {POINTCLOUD2} topics; expected exactly one '
            f'when bag_topic is empty (set bag_topic to choose); it has: {listing}')
    return topics[0]


class BagSource:
    """Frames from the clouds of a recorded bag (``source='bag'``).

    A :class:`~gpr_ros.core.camera.FrameSource` around
    :class:`~gpr_ros.ros.bag_source.BagFrameSource` that finds the cloud topic when
    ``bag_topic`` is empty. Its capture timeouts mean the next cloud is not due yet, so they
    never make the node reopen it (:attr:`timeout_means_lost`); at the end of the bag
    captures raise :class:`~gpr_ros.ros.bag_source.EndOfBagError`.

    :param node: the camera node (unused: a bag needs no ROS entity).
    :param config: its configuration (``bag_path``, ``bag_topic``, ``bag_rate``, ``bag_loop``).
    """

    open_on_demand = False
    #: a capture timeout is the recorded timing, not a device that went away.
    timeout_means_lost = False

    def __init__(self, node: Node, config: CameraNodeConfig) -> None:
        del node
        self._path = Path(config.bag_path)
        self._topic = config.bag_topic
        self._rate = config.bag_rate
        self._loop = config.bag_loop
        self._player: BagFrameSource | None = None

    @property
    def is_open(self) -> bool:
        """True while the bag is open."""
        return self._player is not None and self._player.is_open

    @property
    def recorded_frame_id(self) -> str:
        """``header.frame_id`` of the last cloud captured ('' before the first)."""
        return self._player.frame_id if self._player is not None else ''

    def describe(self) -> str:
        """A line for the log."""
        info = self._player.device if self._player is not None else None
        return info.describe() if info is not None else f'bag {self._path}'

    def open(self) -> None:
        """Open the bag; playback starts from its first cloud.

        :raises CameraConfigError: when the bag is missing or damaged, or its cloud topic is
            missing, not a PointCloud2 topic, empty, or (``bag_topic=''``) not the only one.
        """
        if self.is_open:
            return
        topic = self._topic or only_cloud_topic(self._path)
        player = BagFrameSource(self._path, topic, rate=self._rate, loop=self._loop)
        player.open()
        self._player = player

    def close(self) -> None:
        """Close the bag (never raises); :meth:`open` starts from the beginning again."""
        player, self._player = self._player, None
        if player is not None:
            player.close()

    def capture(self, timeout: float | None = None) -> Frame:
        """The next cloud of the bag, when it is due.

        :param timeout: seconds to wait at most for it to be due (None: no limit).
        :return: the frame; ``timestamp_ns`` is the recorded header stamp.
        :raises CameraDisconnectedError: when the bag is not open.
        :raises AcquisitionTimeoutError: when the next cloud is due after ``timeout``.
        :raises EndOfBagError: at the end of the bag (without ``bag_loop``).
        :raises CameraError: when the bag turns out damaged or a cloud cannot be read.
        """
        if self._player is None:
            raise CameraDisconnectedError(f'bag {self._path} is not open')
        return self._player.capture(timeout)


SOURCES['genicam'] = lambda _node, cfg: GenicamSource(cfg.camera)  # type: ignore[arg-type]
SOURCES['sim'] = SimWorldSource
SOURCES['bag'] = BagSource
SOURCES['none'] = None


def _floats(lo: float, hi: float) -> list[FloatingPointRange]:
    return [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]


#: name -> (default, description, extra descriptor fields). ``Parameter.Type`` defaults are
#: optional arrays (unset means empty: ROS cannot type an empty list).
PARAMETERS: dict[str, tuple[Any, str, dict[str, Any]]] = {
    'source': ('genicam', "frame source: 'genicam' (GenTL producer), 'sim' (the simulated "
               "world's capture service), 'bag' (the clouds of a recorded bag) or 'none' (no "
               'camera)', {}),
    'cti_path': ('', 'GenTL producer (.cti) file; empty: the genicam wheel simulator viky.cti',
                 {'read_only': True}),
    'device_id': ('', 'device serial, id, user name or index; empty: the first device',
                  {'read_only': True}),
    'trigger': ('software', "'software': publish only on ~/trigger; 'continuous': publish at "
                'rate_hz', {'read_only': True}),
    'rate_hz': (5.0, "publishing rate in continuous mode [Hz] (source 'bag': only with "
                'bag_rate 0)',
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
    'frame_id': ('camera_optical_frame', "frame of the published clouds; source 'bag' only: "
                 "'' keeps each cloud's recorded frame_id", {'read_only': True}),
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
    'bag_path': ('', "source 'bag': the rosbag2 folder or .db3/.mcap file to play",
                 {'read_only': True}),
    'bag_topic': ('', "source 'bag': its sensor_msgs/PointCloud2 topic; '' = the bag's only "
                  'PointCloud2 topic', {'read_only': True}),
    'bag_rate': (1.0, "source 'bag': factor on the recorded timing (1: as recorded, 2: twice as "
                 'fast); 0: as fast as triggers (software) or rate_hz (continuous) ask',
                 {'floating_point_range': _floats(0.0, 1000.0), 'read_only': True}),
    'bag_loop': (False, "source 'bag': start over at the end of the bag; false: stop "
                 'publishing there', {'read_only': True}),
    'bag_use_recorded_stamps': (False, "source 'bag': keep the recorded header stamps; false: "
                                'stamp each cloud with the node clock when it is published',
                                {'read_only': True}),
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
        self._info_throttle = Throttle(10.0)
        #: why the source has no more frames (end of a bag), once it has none.
        self._end_message: str | None = None
        self._tick_timer: Timer | None = None
        # a bag keeping its recorded timing is polled without waiting: its clouds set the pace
        paced = isinstance(self._source, BagSource) and cfg.bag_rate > 0
        self._tick_period = BAG_POLL_PERIOD_S if paced else 1.0 / cfg.rate_hz
        self._tick_timeout = 0.0 if paced else cfg.timeout_s
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
            self._tick_timer = self.create_timer(self._tick_period, self._on_tick,
                                                 callback_group=self._group)

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
            sim_capture_service=values['sim_capture_service'], sim_noise=bool(values['sim_noise']),
            bag_path=values['bag_path'], bag_topic=values['bag_topic'],
            bag_rate=float(values['bag_rate']), bag_loop=bool(values['bag_loop']),
            bag_use_recorded_stamps=bool(values['bag_use_recorded_stamps']))

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
        """Capture one frame and publish it (waiting at most ``timeout_s``).

        :return: success and a message for the caller (the Trigger response or a log).
        """
        status, message = self._capture_and_publish(self.config.timeout_s)
        return status is CaptureStatus.PUBLISHED, message

    def _capture_and_publish(self, timeout: float) -> tuple[CaptureStatus, str]:
        """Capture one frame, waiting at most ``timeout``, and publish it.

        :param timeout: seconds the source may take (0: only a frame that is ready now).
        :return: what happened and a message for the caller.
        """
        with self._lock:
            if self._source is None:
                return CaptureStatus.FAILED, "source is 'none': no camera configured"
            if self._end_message is not None:
                return CaptureStatus.ENDED, self._end_message
            if not self._source.is_open and getattr(self._source, 'open_on_demand', False):
                self._connect()  # cheap for such sources: no need to wait for the timer
            if not self._source.is_open:
                return CaptureStatus.FAILED, 'camera not connected; reconnecting'
            try:
                frame = self._source.capture(timeout)
            except AcquisitionTimeoutError as err:
                if not getattr(self._source, 'timeout_means_lost', True):
                    return CaptureStatus.WAITING, str(err)
                self._timeouts += 1
                if self._timeouts >= MAX_TIMEOUTS:
                    self._lose(f'{self._timeouts} timeouts in a row')
                return CaptureStatus.FAILED, str(err)
            except EndOfBagError as err:
                self._end(str(err))
                return CaptureStatus.ENDED, str(err)
            except CameraDisconnectedError as err:
                self._lose(str(err))
                return CaptureStatus.FAILED, str(err)
            except CameraError as err:
                return CaptureStatus.FAILED, str(err)
            self._timeouts = 0
            cfg = self.config
            frame_id = cfg.frame_id or getattr(self._source, 'recorded_frame_id', '')
            if not frame_id:
                return CaptureStatus.FAILED, (
                    f'frame {frame.sequence} was recorded without a frame_id and the frame_id '
                    'parameter is empty; set frame_id to name the frame of these clouds '
                    '(frame skipped)')
            if cfg.source == 'bag' and cfg.bag_use_recorded_stamps:
                stamp = Time(sec=frame.timestamp_ns // NANOSECONDS,
                             nanosec=frame.timestamp_ns % NANOSECONDS)
            else:
                stamp = self.get_clock().now().to_msg()
            msg = xyz_to_cloud(frame.points, frame_id=frame_id, stamp=stamp,
                               intensity=frame.intensity)
            self._pub.publish(msg)
            self._published += 1
        text = (f'published frame {frame.sequence}: {frame.num_valid} valid of '
                f'{msg.width * msg.height} points ({msg.height} x {msg.width})')
        if self._info_throttle.due():
            self.get_logger().info(f'{text}; {self._published} clouds so far')
        return CaptureStatus.PUBLISHED, text

    def _end(self, reason: str) -> None:
        """The source has no more frames: stop the continuous timer, log once."""
        self._end_message = reason
        if self._tick_timer is not None:
            self._tick_timer.cancel()
        self.get_logger().info(f'{reason}; {self._published} clouds published, nothing more '
                               'will be (set bag_loop to play the bag again and again)')

    def _on_tick(self) -> None:
        status, message = self._capture_and_publish(self._tick_timeout)
        if (status is CaptureStatus.FAILED and self._source is not None
                and self._source.is_open):
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
