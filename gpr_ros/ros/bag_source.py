"""A camera :class:`~gpr_ros.core.camera.FrameSource` that plays the clouds of a rosbag2 bag.

:class:`BagFrameSource` reads the ``sensor_msgs/msg/PointCloud2`` messages of one topic of a
bag (sqlite3 or MCAP, see :mod:`gpr_ros.ros.bags`) and hands them out as
:class:`~gpr_ros.core.camera.Frame` objects, so the camera node can publish recorded data and
the whole graph can run on it. It needs no running ROS context (messages are decoded with
rclpy's serialisation library only).

Timing: the first cloud is returned at once; cloud ``i`` is not returned before
``t_first_capture + (t_i - t_0) / rate``, where ``t_i`` are the bag's (recording) timestamps,
so the recorded rhythm is kept, scaled by ``rate`` (``rate=0``: as fast as asked). Clouds are
never skipped: a caller that asks late gets the next cloud at once. When the next cloud is
due later than the capture timeout, :class:`~gpr_ros.core.camera.AcquisitionTimeoutError` is
raised after waiting the timeout, and the same cloud is returned by a later capture.

At the end of the bag :class:`EndOfBagError` is raised (every capture after that raises it
too), or with ``loop=True`` the bag starts over (timing restarts with the first cloud).
:meth:`BagFrameSource.open` after :meth:`~BagFrameSource.close` starts from the beginning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
import math
from pathlib import Path
import threading
import time

import numpy as np
from sensor_msgs.msg import PointCloud2

from gpr_ros.core.camera import (
    AcquisitionTimeoutError,
    CameraConfigError,
    CameraDisconnectedError,
    CameraError,
    Frame,
)
from gpr_ros.ros.bags import POINTCLOUD2, BagError, BagReader, RawMessage
from gpr_ros.ros.conversions import cloud_to_arrays
from gpr_ros.ros.errors import CloudFormatError

__all__ = ['BagFrameSource', 'BagSourceInfo', 'EndOfBagError', 'cloud_to_frame']


class EndOfBagError(CameraError, EOFError):
    """The bag has no more clouds (and the source does not loop)."""


@dataclass(frozen=True)
class BagSourceInfo:
    """What a :class:`BagFrameSource` plays (for logs; the camera node logs ``describe()``).

    :ivar path: the bag.
    :ivar topic: the cloud topic.
    :ivar count: clouds on it.
    :ivar rate: playback rate factor (0: as fast as asked).
    :ivar loop: whether the bag starts over at its end.
    """

    path: Path
    topic: str
    count: int
    rate: float
    loop: bool

    def describe(self) -> str:
        """One line for the log."""
        pace = 'as fast as asked' if self.rate == 0 else f'at {self.rate:g}x recorded rate'
        return (f'bag {self.path} topic {self.topic} ({self.count} clouds, {pace}'
                f'{", looping" if self.loop else ""})')


def cloud_to_frame(cloud: PointCloud2, timestamp_ns: int, sequence: int) -> Frame:
    """Turn a cloud into a camera frame.

    :param cloud: the cloud; organized (``height > 1``) clouds keep their grid with NaN,
        unorganized ones keep only their finite points.
    :param timestamp_ns: the frame's timestamp.
    :param sequence: the frame counter.
    :return: ``(H, W, 3)`` or ``(N, 3)`` float32 points, intensity when the cloud has it.
    :raises CloudFormatError: when the cloud cannot be read.
    """
    organized = cloud.height > 1
    arrays = cloud_to_arrays(cloud, remove_nans=not organized)
    points = arrays['xyz'].astype(np.float32, copy=False)
    intensity = arrays.get('intensity')
    if organized:
        points = points.reshape(cloud.height, cloud.width, 3)
        if intensity is not None:
            intensity = intensity.reshape(cloud.height, cloud.width)
    return Frame(points=np.ascontiguousarray(points),
                 intensity=None if intensity is None else intensity.astype(np.float32),
                 timestamp_ns=int(timestamp_ns), sequence=int(sequence))


class BagFrameSource:
    """Plays the point clouds of one bag topic as camera frames (a ``FrameSource``)."""

    def __init__(self, path: str | Path, topic: str, rate: float = 1.0, loop: bool = False, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """Configure the source (the bag is opened by :meth:`open`).

        :param path: bag folder or ``.db3``/``.mcap`` file.
        :param topic: a ``sensor_msgs/msg/PointCloud2`` topic of the bag.
        :param rate: recorded-rate factor (2: twice as fast; 0: as fast as asked).
        :param loop: start over at the end of the bag instead of raising
            :class:`EndOfBagError`.
        :param clock: monotonic clock in seconds (injectable for tests).
        :param sleep: sleep function (injectable for tests).
        :raises CameraConfigError: on an empty topic or a rate that is negative or not finite.
        """
        if not topic:
            raise CameraConfigError('topic is empty; expected the PointCloud2 topic of the bag')
        if not (math.isfinite(rate) and rate >= 0.0):
            raise CameraConfigError(
                f'rate is {rate}; expected a finite factor >= 0 (1: recorded rate, 0: as fast '
                'as asked)')
        self.path = Path(path)
        self.topic = topic
        self.rate = float(rate)
        self.loop = bool(loop)
        self._clock, self._sleep = clock, sleep
        self._lock = threading.RLock()
        self._reader: BagReader | None = None
        self._stream: Iterator[tuple[RawMessage, PointCloud2]] | None = None
        self._pending: tuple[RawMessage, PointCloud2] | None = None
        self._anchor: tuple[float, int] | None = None
        self._sequence = 0
        self._ended = False
        #: what is being played (set by :meth:`open`).
        self.device: BagSourceInfo | None = None
        #: ``header.frame_id`` of the last cloud returned ('' before the first).
        self.frame_id = ''
        #: how many times the bag started over.
        self.loops = 0

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self._reader is not None

    def open(self) -> None:
        """Open the bag and check the topic; playback starts from the first cloud.

        :raises CameraConfigError: when the bag is missing or damaged, or the topic is missing
            (the message lists the bag's topics), is not a PointCloud2 topic or is empty.
        """
        with self._lock:
            if self._reader is not None:
                return
            try:
                reader = BagReader(self.path).open()
            except BagError as err:
                raise CameraConfigError(f'bag source: {err}') from None
            try:
                info = reader.topic(self.topic, POINTCLOUD2)
            except BagError as err:
                reader.close()
                raise CameraConfigError(f'bag source: {err}') from None
            if info.count == 0:
                reader.close()
                raise CameraConfigError(f'bag source: topic {info.name} of {self.path} has no '
                                        'messages; expected at least one cloud')
            self._reader = reader
            self.topic = info.name
            self.device = BagSourceInfo(self.path, info.name, info.count, self.rate, self.loop)
            self._sequence = 0
            self._restart()

    def _restart(self) -> None:
        assert self._reader is not None
        self._stream = self._reader.clouds(self.topic)
        self._pending = None
        self._anchor = None
        self._ended = False

    def close(self) -> None:
        """Close the bag (never raises)."""
        with self._lock:
            reader, self._reader = self._reader, None
            self._stream = self._pending = None
            if reader is not None:
                reader.close()

    def _next(self) -> tuple[RawMessage, PointCloud2]:
        assert self._stream is not None
        if self._ended:
            raise EndOfBagError(f'end of bag {self.path}: all clouds of {self.topic} were played')
        try:
            return next(self._stream)
        except StopIteration:
            pass
        except BagError as err:  # damaged storage: what came before was played
            self._ended = not self.loop
            if self.loop:
                self._restart()
            raise CameraError(f'bag source: {err}') from None
        if not self.loop:
            self._ended = True
            raise EndOfBagError(f'end of bag {self.path}: all clouds of {self.topic} were played')
        self.loops += 1
        self._restart()
        return next(self._stream)

    def capture(self, timeout: float | None = None) -> Frame:
        """Return the next cloud of the bag, when it is due.

        :param timeout: seconds to wait at most for the cloud to be due (None: no limit).
        :return: the frame; ``timestamp_ns`` is the cloud's header stamp (the bag's timestamp
            when the header has none), ``sequence`` counts the frames returned since
            :meth:`open`.
        :raises CameraDisconnectedError: when the source is not open.
        :raises AcquisitionTimeoutError: when the cloud is due later than ``timeout``.
        :raises EndOfBagError: at the end of the bag (without ``loop``).
        :raises CameraError: when the bag turns out damaged or a cloud cannot be read.
        """
        with self._lock:
            if self._reader is None:
                raise CameraDisconnectedError(f'bag source {self.path} is not open; call open()')
            if self._pending is None:
                self._pending = self._next()
            raw, cloud = self._pending
            if self.rate > 0.0:
                if self._anchor is None:
                    self._anchor = (self._clock(), raw.timestamp_ns)
                due = self._anchor[0] + (raw.timestamp_ns - self._anchor[1]) * 1e-9 / self.rate
                wait = due - self._clock()
                if wait > 0.0:
                    if timeout is not None and wait > timeout:
                        self._sleep(max(timeout, 0.0))
                        raise AcquisitionTimeoutError(
                            f'the next cloud of {self.path} is due in {wait:.3f} s at rate '
                            f'{self.rate:g}, after the capture timeout of {timeout:g} s')
                    self._sleep(wait)
            self._pending = None
            stamp = cloud.header.stamp
            stamp_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
            try:
                frame = cloud_to_frame(cloud, stamp_ns or raw.timestamp_ns, self._sequence)
            except CloudFormatError as err:
                raise CameraError(f'bag source: cloud at {raw.timestamp_ns} ns on {self.topic} '
                                  f'cannot be read: {err}') from None
            self._sequence += 1
            self.frame_id = cloud.header.frame_id
            return frame
