"""The phoxi_camera node with source 'bag': recorded clouds replayed over real DDS.

Bags (sqlite3 and MCAP) hold three simulated bin scenes on ``/camera/cloud`` (bag timestamps
1 s apart) and a ``std_msgs/String`` topic; the camera runs as its own process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import os
from pathlib import Path
import subprocess
import sys
import time

from builtin_interfaces.msg import Time
import numpy as np
from numpy.typing import NDArray
import pytest
import rclpy
from rclpy.client import Client
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from ros_helpers import spin_until, spin_while, start_process, stop_process, wait_for_server
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import String
from std_srvs.srv import Trigger

from gpr_msgs.msg import GraspArray
from gpr_ros.core.network.synthetic import synthetic_scene
from gpr_ros.ros.bags import BagWriter
from gpr_ros.ros.conversions import cloud_to_xyz, xyz_to_cloud

ROOT = Path(__file__).resolve().parents[2]
CAMERA = [sys.executable, '-m', 'gpr_ros.ros.nodes.phoxi_camera', '--ros-args',
          '-p', 'source:=bag', '-p', 'reconnect_period_s:=0.5']
RECORDED_FRAME = 'recorded_frame'
#: bag timestamp of cloud i: T0 + i seconds
T0 = 1000
NUM_CLOUDS = 3
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def _points() -> list[NDArray[np.float32]]:
    return [synthetic_scene(np.random.default_rng([7, i]), num_points=2048)['points']
            .astype(np.float32) for i in range(NUM_CLOUDS)]


def _recorded_stamp(i: int) -> Time:
    return Time(sec=T0 + i, nanosec=5)


def _write_bag(path: Path, storage: str, points: list[NDArray[np.float32]]) -> Path:
    with BagWriter(path, storage) as writer:
        for i, xyz in enumerate(points):
            t = (T0 + i) * 1_000_000_000
            writer.write('/note', String(data=f'cloud {i} follows'), t - 1)
            writer.write('/camera/cloud', xyz_to_cloud(xyz, frame_id=RECORDED_FRAME,
                                                       stamp=_recorded_stamp(i)), t)
    return path


@pytest.fixture(scope='module')
def points() -> list[NDArray[np.float32]]:
    """The recorded clouds' points, in bag order."""
    return _points()


@pytest.fixture(scope='module')
def bags(tmp_path_factory: pytest.TempPathFactory,
         points: list[NDArray[np.float32]]) -> dict[str, Path]:
    """The three-cloud bag in each storage."""
    root = tmp_path_factory.mktemp('bags')
    return {s: _write_bag(root / f'scenes_{s}', s, points) for s in ('mcap', 'sqlite3')}


def _index(msg: PointCloud2, points: list[NDArray[np.float32]]) -> int:
    """Which recorded cloud ``msg`` is (the test fails when it is none of them)."""
    xyz = cloud_to_xyz(msg)
    matches = [i for i, p in enumerate(points) if p.shape == xyz.shape and np.allclose(p, xyz)]
    assert len(matches) == 1, f'a published cloud of {xyz.shape} is none of the recorded ones'
    return matches[0]


def _trigger(node: Node, client: Client) -> Trigger.Response:
    reply = spin_until(node, client.call_async(Trigger.Request()), timeout=30)
    assert isinstance(reply, Trigger.Response)
    return reply


def _spin_up_to(node: Node, done: Callable[[], bool], seconds: float) -> bool:
    """Spin ``node`` until ``done()`` or for ``seconds``; returns ``done()``."""
    end = time.monotonic() + seconds
    while not done() and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    return done()


def _stamp_s(msg: PointCloud2) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


class _Camera:
    """A camera process with its stderr in a file (to check what it logged)."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._file = log.open('wb')
        self.proc = subprocess.Popen([*CAMERA, *args], env=dict(os.environ),
                                     stderr=self._file)

    def text(self) -> str:
        return self.log.read_text(errors='replace')

    def stop(self) -> int:
        stop_process(self.proc)
        self._file.close()
        return self.proc.returncode


@pytest.fixture
def camera() -> Iterator[list[_Camera]]:
    """Started cameras, stopped after the test."""
    started: list[_Camera] = []
    yield started
    for cam in started:
        cam.stop()


# --- software trigger --------------------------------------------------------------------------

@pytest.mark.parametrize(('storage', 'header'), [('mcap', 'recorded'), ('sqlite3', 'live')])
def test_each_trigger_publishes_the_next_recorded_cloud_until_the_end_of_the_bag(
        ros_node: Node, bags: dict[str, Path], points: list[NDArray[np.float32]],
        storage: str, header: str) -> None:
    topic = f'bag_cloud_{storage}'
    received: list[PointCloud2] = []
    sub = ros_node.create_subscription(PointCloud2, topic, received.append, RELIABLE)
    client: Client = ros_node.create_client(Trigger, 'phoxi_camera/trigger')
    # 'recorded': the recorded header kept, topic named; 'live': frame_id and node clock,
    # the bag's only PointCloud2 topic found by itself
    args = (['-p', "frame_id:=''", '-p', 'bag_use_recorded_stamps:=true',
             '-p', 'bag_topic:=camera/cloud'] if header == 'recorded' else [])
    before = time.time()
    proc = start_process([*CAMERA[1:], '-p', f'bag_path:={bags[storage]}', '-p', 'bag_rate:=0.0',
                          *args, '-r', f'cloud:={topic}'])
    try:
        wait_for_server(ros_node, client.service_is_ready, timeout=30)
        spin_while(ros_node, lambda: sub.get_publisher_count() == 0, timeout=30)
        replies = [_trigger(ros_node, client) for _ in range(NUM_CLOUDS)]
        assert all(r.success for r in replies), [r.message for r in replies]
        spin_while(ros_node, lambda: len(received) < NUM_CLOUDS, timeout=20)
        end = _trigger(ros_node, client)
        assert not end.success and end.message.startswith('end of bag'), end.message
        again = _trigger(ros_node, client)  # the bag is not reopened: still at its end
        assert not again.success and again.message.startswith('end of bag'), again.message
        _spin_up_to(ros_node, lambda: False, 0.5)  # no late extra cloud
    finally:
        stop_process(proc)
        ros_node.destroy_client(client)
        ros_node.destroy_subscription(sub)
    assert proc.returncode == 0
    assert len(received) == NUM_CLOUDS
    for i, msg in enumerate(received):
        np.testing.assert_allclose(cloud_to_xyz(msg), points[i])
        assert (msg.height, msg.width) == (1, len(points[i]))
        if header == 'recorded':
            assert msg.header.frame_id == RECORDED_FRAME
            assert msg.header.stamp == _recorded_stamp(i)
        else:
            assert msg.header.frame_id == 'camera_optical_frame'
            assert before - 1 <= _stamp_s(msg) <= time.time() + 1  # the node clock


def test_a_cloud_not_due_yet_fails_the_trigger_without_reopening_the_bag(
        ros_node: Node, bags: dict[str, Path], points: list[NDArray[np.float32]]) -> None:
    # bag_rate 0.01: the second cloud is due 100 s after the first
    received: list[PointCloud2] = []
    sub = ros_node.create_subscription(PointCloud2, 'bag_cloud_slow', received.append, RELIABLE)
    client: Client = ros_node.create_client(Trigger, 'phoxi_camera/trigger')
    proc = start_process([*CAMERA[1:], '-p', f'bag_path:={bags["mcap"]}', '-p', 'bag_rate:=0.01',
                          '-p', 'timeout_s:=0.2', '-r', 'cloud:=bag_cloud_slow'])
    try:
        wait_for_server(ros_node, client.service_is_ready, timeout=30)
        spin_while(ros_node, lambda: sub.get_publisher_count() == 0, timeout=30)
        first = _trigger(ros_node, client)
        assert first.success, first.message
        # more than MAX_TIMEOUTS waits, each after the reconnect period: a node that took them
        # for a lost camera would reopen the bag and publish its first cloud again
        waits = []
        for _ in range(4):
            waits.append(_trigger(ros_node, client))
            _spin_up_to(ros_node, lambda: False, 0.6)
    finally:
        stop_process(proc)
        ros_node.destroy_client(client)
        ros_node.destroy_subscription(sub)
    assert proc.returncode == 0
    for reply in waits:
        assert not reply.success and 'due in' in reply.message, reply.message
    assert len(received) == 1
    np.testing.assert_allclose(cloud_to_xyz(received[0]), points[0])


# --- continuous --------------------------------------------------------------------------------

@pytest.mark.parametrize(('bag_rate', 'rate_hz'), [(5.0, 100.0), (0.0, 20.0)],
                         ids=['bag-timing', 'rate_hz'])
def test_continuous_mode_publishes_the_clouds_in_order(
        ros_node: Node, bags: dict[str, Path], points: list[NDArray[np.float32]],
        bag_rate: float, rate_hz: float) -> None:
    # looping: the first clouds are published before this subscription is matched
    topic = f'bag_cloud_continuous_{int(bag_rate)}'
    received: list[PointCloud2] = []
    sub = ros_node.create_subscription(PointCloud2, topic, received.append,
                                       qos_profile_sensor_data)
    proc = start_process([*CAMERA[1:], '-p', f'bag_path:={bags["sqlite3"]}',
                          '-p', 'trigger:=continuous', '-p', f'bag_rate:={bag_rate}',
                          '-p', f'rate_hz:={rate_hz}', '-p', 'bag_loop:=true',
                          '-r', f'cloud:={topic}'])
    try:
        spin_while(ros_node, lambda: len(received) < 3 * NUM_CLOUDS, timeout=30)
    finally:
        stop_process(proc)
        ros_node.destroy_subscription(sub)
    assert proc.returncode == 0
    order = [_index(msg, points) for msg in received]
    assert all((b - a) % NUM_CLOUDS == 1 for a, b in zip(order, order[1:], strict=False)), order
    if bag_rate > 0:
        # recorded 1 s apart, played 5x: cloud k of a pass is published no earlier than
        # 0.2 k s after that pass's first cloud (rate_hz 100 would publish every 10 ms)
        passes = [i for i, k in enumerate(order) if k == 0]
        checked = 0
        for start in passes:
            for k in range(1, NUM_CLOUDS):
                if start + k < len(order):
                    gap = _stamp_s(received[start + k]) - _stamp_s(received[start])
                    assert gap >= k / bag_rate - 0.02, (k, gap)
                    checked += 1
        assert checked >= 2


def test_continuous_mode_stops_at_the_end_of_the_bag(
        ros_node: Node, bags: dict[str, Path], camera: list[_Camera], tmp_path: Path) -> None:
    received: list[PointCloud2] = []
    sub = ros_node.create_subscription(PointCloud2, 'bag_cloud_end', received.append,
                                       qos_profile_sensor_data)
    client: Client = ros_node.create_client(Trigger, 'phoxi_camera/trigger')
    cam = _Camera(['-p', f'bag_path:={bags["mcap"]}', '-p', 'trigger:=continuous',
                   '-p', 'bag_rate:=0.0', '-p', 'rate_hz:=20.0', '-r', 'cloud:=bag_cloud_end'],
                  tmp_path / 'camera.log')
    camera.append(cam)
    try:
        spin_while(ros_node, lambda: 'end of bag' not in cam.text(), timeout=30)
        count = len(received)
        wait_for_server(ros_node, client.service_is_ready, timeout=30)
        reply = _trigger(ros_node, client)
        _spin_up_to(ros_node, lambda: False, 1.5)  # 30 ticks at 20 Hz
        assert cam.proc.poll() is None  # still running, only quiet
    finally:
        ros_node.destroy_client(client)
        ros_node.destroy_subscription(sub)
    assert cam.stop() == 0
    assert not reply.success and reply.message.startswith('end of bag'), reply.message
    assert len(received) == count  # nothing after the end (no reopened bag)
    log = cam.text()
    assert log.count('end of bag') == 1, log  # logged once, at info
    assert '[INFO]' in next(line for line in log.splitlines() if 'end of bag' in line)
    assert 'WARN' not in log and 'Traceback' not in log, log


# --- bad bags ----------------------------------------------------------------------------------

def test_a_bag_that_cannot_be_played_exits_with_code_2(bags: dict[str, Path],
                                                        tmp_path: Path) -> None:
    with BagWriter(tmp_path / 'two', 'mcap') as writer:  # two cloud topics: which one?
        for topic in ('/left/cloud', '/right/cloud'):
            writer.write(topic, xyz_to_cloud(np.zeros((5, 3)), frame_id='f'), 1)
    cases = {
        'no bag at': ['-p', f'bag_path:={tmp_path / "missing.mcap"}'],
        "has no topic 'nope'; it has: /camera/cloud": [
            '-p', f'bag_path:={bags["mcap"]}', '-p', 'bag_topic:=nope'],
        'carries std_msgs/msg/String; expected sensor_msgs/msg/PointCloud2': [
            '-p', f'bag_path:={bags["sqlite3"]}', '-p', 'bag_topic:=/note'],
        'has 2 sensor_msgs/msg/PointCloud2 topics; expected exactly one': [
            '-p', f'bag_path:={tmp_path / "two"}'],
        "bag_path is empty; source 'bag' needs": [],
    }
    procs = {what: subprocess.Popen([*CAMERA, *args], env=dict(os.environ), text=True,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for what, args in cases.items()}
    for what, proc in procs.items():
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (what, err)
        assert what in err and '[ERROR]' in err, err
        assert 'Traceback' not in err, err


# --- with gpr_inference ------------------------------------------------------------------------

def test_gpr_inference_answers_a_replayed_cloud_with_its_stamp(
        ros_node: Node, bags: dict[str, Path]) -> None:
    clouds: list[PointCloud2] = []
    grasps: list[GraspArray] = []
    subs = [ros_node.create_subscription(PointCloud2, 'bag_gpr_cloud', clouds.append, RELIABLE),
            ros_node.create_subscription(GraspArray, 'bag_gpr_grasps', grasps.append, RELIABLE)]
    client: Client = ros_node.create_client(Trigger, 'phoxi_camera/trigger')
    inference = start_process([
        '-m', 'gpr_ros.ros.nodes.gpr_inference', '--ros-args',
        '--params-file', str(ROOT / 'config' / 'gpr_inference.yaml'),
        '-p', 'cloud_reliability:=reliable', '-p', 'publish_markers:=false',
        '-r', 'cloud:=bag_gpr_cloud', '-r', 'grasps:=bag_gpr_grasps'])
    cam = start_process([*CAMERA[1:], '-p', f'bag_path:={bags["mcap"]}', '-p', 'bag_rate:=0.0',
                         '-r', 'cloud:=bag_gpr_cloud'])
    try:
        wait_for_server(ros_node, lambda: client.service_is_ready()
                        and ros_node.count_subscribers('/bag_gpr_cloud') >= 2
                        and ros_node.count_publishers('/bag_gpr_grasps') >= 1, timeout=60)
        # the camera may see the detector a little after this node does: a cloud published
        # before that reaches only this node, so trigger the next one until one is answered
        answered: list[GraspArray] = []
        for _ in range(NUM_CLOUDS):
            reply = _trigger(ros_node, client)
            assert reply.success, reply.message
            spin_while(ros_node, lambda: len(clouds) == 0, timeout=20)
            stamps = {(c.header.stamp.sec, c.header.stamp.nanosec) for c in clouds}
            _spin_up_to(ros_node, lambda: bool(grasps), 20)
            answered = [g for g in grasps
                        if (g.header.stamp.sec, g.header.stamp.nanosec) in stamps]
            if answered:
                break
    finally:
        stop_process(cam)
        stop_process(inference)
        ros_node.destroy_client(client)
        for sub in subs:
            ros_node.destroy_subscription(sub)
    assert cam.returncode == 0 and inference.returncode == 0
    assert answered, f'no GraspArray with the stamp of a replayed cloud; got {len(grasps)}'
    cloud = next(c for c in clouds if c.header.stamp == answered[0].header.stamp)
    assert answered[0].header.frame_id == cloud.header.frame_id == 'camera_optical_frame'
    assert len(answered[0].grasps) > 0
