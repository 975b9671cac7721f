"""BagFrameSource: a camera FrameSource that plays the clouds of a rosbag2 bag (no ROS context)."""

from __future__ import annotations

from pathlib import Path

from builtin_interfaces.msg import Time
import numpy as np
import pytest
from std_msgs.msg import String

from gpr_ros.core.camera import (
    AcquisitionTimeoutError,
    CameraConfigError,
    CameraDisconnectedError,
    CameraError,
    FrameSource,
)
from gpr_ros.ros.bag_source import BagFrameSource, EndOfBagError
from gpr_ros.ros.bags import BagWriter
from gpr_ros.ros.conversions import xyz_to_cloud

#: bag timestamps of the three clouds, s (uneven on purpose)
TIMES = (100.0, 101.0, 103.0)


class FakeClock:
    """A monotonic clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 50.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _organized(i: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(i)
    points = rng.uniform(-0.1, 0.1, (4, 5, 3)).astype(np.float32)
    points[1, 2] = np.nan
    return points, rng.uniform(0, 1, (4, 5)).astype(np.float32)


@pytest.fixture(scope='module', params=['mcap', 'sqlite3'])
def bag(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three organized clouds with intensity on /cloud, stamped 1, 2, 3 s; a String topic."""
    path = tmp_path_factory.mktemp('bag') / f'clouds_{request.param}'
    with BagWriter(path, request.param) as writer:
        for i, t in enumerate(TIMES):
            points, intensity = _organized(i)
            cloud = xyz_to_cloud(points, frame_id='camera_optical_frame',
                                 stamp=Time(sec=i + 1), intensity=intensity)
            writer.write('/cloud', cloud, int(t * 1e9))
            writer.write('/note', String(data=f'note {i}'), int(t * 1e9) + 1)
    return path


def test_frames_follow_the_bag_and_keep_organized_clouds(bag: Path) -> None:
    source: FrameSource = BagFrameSource(bag, 'cloud', rate=0.0)
    assert not source.is_open
    source.open()
    try:
        assert source.is_open
        for i in range(len(TIMES)):
            frame = source.capture(timeout=1.0)
            points, intensity = _organized(i)
            assert frame.points.shape == (4, 5, 3) and frame.organized
            np.testing.assert_array_equal(frame.points, points)  # NaN kept in place
            assert frame.intensity is not None
            np.testing.assert_array_equal(frame.intensity, intensity)
            assert frame.timestamp_ns == (i + 1) * 1_000_000_000  # the header stamp
            assert frame.sequence == i
            assert frame.num_valid == 19
        with pytest.raises(EndOfBagError, match='end of bag'):
            source.capture()
        with pytest.raises(EndOfBagError):  # stays at the end
            source.capture()
        assert isinstance(EndOfBagError('x'), CameraError)
    finally:
        source.close()
    assert not source.is_open
    with pytest.raises(CameraDisconnectedError, match='not open'):
        source.capture()


def test_unorganized_clouds_keep_only_finite_points(tmp_path: Path) -> None:
    points = np.random.default_rng(0).uniform(-1, 1, (50, 3))
    points[[3, 7]] = np.nan
    with BagWriter(tmp_path / 'flat.mcap') as writer:
        # header stamp zero: the frame takes the bag timestamp
        writer.write('scan', xyz_to_cloud(points, frame_id='cam'), 123_000_000_007)
    source = BagFrameSource(tmp_path / 'flat', '/scan')
    source.open()
    frame = source.capture()
    source.close()
    assert frame.points.shape == (48, 3) and not frame.organized and frame.intensity is None
    np.testing.assert_allclose(frame.points, np.delete(points, [3, 7], axis=0).astype(np.float32))
    assert frame.timestamp_ns == 123_000_000_007
    assert source.frame_id == 'cam'


def test_recorded_timing_scaled_by_rate(bag: Path) -> None:
    clock = FakeClock()
    source = BagFrameSource(bag, 'cloud', rate=2.0, clock=clock, sleep=clock.sleep)
    source.open()
    source.capture()  # the first cloud comes at once
    assert clock.sleeps == []
    source.capture()  # 1 s later in the bag, at rate 2: 0.5 s
    assert clock.sleeps == pytest.approx([0.5])
    clock.now += 0.25  # the caller was busy: only the rest is waited
    source.capture()  # 3 s after the first: due 1.5 s after it
    assert clock.sleeps == pytest.approx([0.5, 0.75])
    source.close()


def test_cloud_due_after_the_timeout_times_out_and_comes_later(bag: Path) -> None:
    clock = FakeClock()
    source = BagFrameSource(bag, 'cloud', rate=1.0, clock=clock, sleep=clock.sleep)
    source.open()
    assert source.capture(timeout=0.1).sequence == 0
    with pytest.raises(AcquisitionTimeoutError, match='due in 1.000 s'):
        source.capture(timeout=0.4)
    assert clock.sleeps == pytest.approx([0.4])  # the timeout was waited
    frame = source.capture(timeout=0.7)  # 0.6 s left now
    assert frame.sequence == 1 and frame.timestamp_ns == 2_000_000_000
    assert clock.sleeps == pytest.approx([0.4, 0.6])
    source.close()


def test_loop_starts_over_and_reopen_restarts(bag: Path) -> None:
    clock = FakeClock()
    source = BagFrameSource(bag, 'cloud', rate=1.0, loop=True, clock=clock, sleep=clock.sleep)
    source.open()
    stamps = [source.capture().timestamp_ns // 1_000_000_000 for _ in range(7)]
    assert stamps == [1, 2, 3, 1, 2, 3, 1]
    assert source.loops == 2
    # timing restarts with each loop: 1 s, 2 s, then the first cloud of the next loop at once
    assert clock.sleeps == pytest.approx([1.0, 2.0, 1.0, 2.0])
    source.close()
    source.open()
    frame = source.capture()
    assert frame.timestamp_ns == 1_000_000_000 and frame.sequence == 0
    source.close()


def test_real_clock_keeps_the_recorded_rhythm(bag: Path) -> None:
    import time
    source = BagFrameSource(bag, 'cloud', rate=20.0)  # 1 s and 2 s gaps -> 0.05 s and 0.1 s
    source.open()
    start = time.monotonic()
    for _ in TIMES:
        source.capture(timeout=5.0)
    assert time.monotonic() - start >= 0.15 - 1e-3
    source.close()


def test_bad_configuration_is_reported_on_open(bag: Path, tmp_path: Path) -> None:
    with pytest.raises(CameraConfigError, match='no topic .*it has: /cloud .*/note'):
        BagFrameSource(bag, 'depth').open()
    with pytest.raises(CameraConfigError, match='carries std_msgs/msg/String; expected '
                                                'sensor_msgs/msg/PointCloud2'):
        BagFrameSource(bag, 'note').open()
    with pytest.raises(CameraConfigError, match='no bag at'):
        BagFrameSource(tmp_path / 'missing', 'cloud').open()
    with pytest.raises(CameraConfigError, match='rate is -1'):
        BagFrameSource(bag, 'cloud', rate=-1.0)
    with pytest.raises(CameraConfigError, match='rate is nan'):
        BagFrameSource(bag, 'cloud', rate=float('nan'))
    empty = tmp_path / 'empty'
    with BagWriter(empty, 'mcap') as writer:
        writer.add_topic('cloud', 'sensor_msgs/msg/PointCloud2')
    with pytest.raises(CameraConfigError, match='has no messages'):
        BagFrameSource(empty, 'cloud').open()


def test_damaged_bag_is_a_config_error(bag: Path, tmp_path: Path) -> None:
    import shutil
    copy = tmp_path / 'copy'
    shutil.copytree(bag, copy)
    storage = next(p for p in copy.iterdir() if p.suffix in ('.mcap', '.db3'))
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    source = BagFrameSource(copy, 'cloud')
    with pytest.raises(CameraConfigError, match='cannot open bag'):
        source.open()
    assert not source.is_open


def test_describes_what_it_plays(bag: Path) -> None:
    source = BagFrameSource(bag, 'cloud', rate=0.5, loop=True)
    source.open()
    assert source.device is not None
    text = source.device.describe()
    source.close()
    assert str(bag) in text and '/cloud (3 clouds, at 0.5x recorded rate, looping)' in text
