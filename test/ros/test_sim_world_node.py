"""The sim_world node in its own process over real DDS, against the same core run in-process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
import os
import subprocess
import sys

import numpy as np
import pytest
from rclpy.client import Client
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import spin_until, spin_while, start_process, stop_process, wait_for_server
from scipy.spatial.transform import Rotation
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from gpr_msgs.msg import SimSceneState
from gpr_msgs.srv import SimCaptureCloud, SimExecuteGrasp, SimResetScene
from gpr_ros.core.clutter.protocol import ClutterConfig, ProtocolConfig, select_subset
from gpr_ros.core.clutter.session import TrialWorld, object_pool
from gpr_ros.core.grasp import Grasps
from gpr_ros.core.sim.camera import CameraConfig, camera_pose_xyzquat
from gpr_ros.core.sim.world import SceneObjectSpec
from gpr_ros.ros.conversions import cloud_to_xyz, grasps_to_msgs, msg_to_scene

NODE = ['-m', 'gpr_ros.ros.nodes.sim_world', '--ros-args']
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                     reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
TIMEOUT = 60.0


@dataclass
class World:
    """Clients of one running sim_world process and the scenes it published."""

    node: Node
    reset: Client
    capture: Client
    execute: Client
    begin_attempt: Client
    scenes: list[SimSceneState]

    def call(self, client: Client, request: object) -> object:
        return spin_until(self.node, client.call_async(request), timeout=TIMEOUT)


@pytest.fixture(scope='module')
def world(ros_node: Node) -> Iterator[World]:
    scenes: list[SimSceneState] = []
    sub = ros_node.create_subscription(SimSceneState, 'sim_world/scene', scenes.append, LATCHED)
    reset: Client = ros_node.create_client(SimResetScene, 'sim_world/reset')
    capture: Client = ros_node.create_client(SimCaptureCloud, 'sim_world/capture')
    execute: Client = ros_node.create_client(SimExecuteGrasp, 'sim_world/execute')
    begin: Client = ros_node.create_client(Trigger, 'sim_world/begin_attempt')
    clients = [reset, capture, execute, begin]
    proc = start_process([*NODE, '-p', 'protocol:=pile'])
    try:
        wait_for_server(ros_node, lambda: all(c.service_is_ready() for c in clients), timeout=60)
        yield World(ros_node, reset, capture, execute, begin, scenes)
    finally:
        stop_process(proc)
        for client in clients:
            ros_node.destroy_client(client)
        ros_node.destroy_subscription(sub)
    assert proc.returncode == 0


@pytest.fixture(scope='module')
def pool() -> list[SceneObjectSpec]:
    return object_pool('novel')


def _in_process(pool: list[SceneObjectSpec], protocol: ProtocolConfig, seed: int,
                trial: int) -> TrialWorld:
    tw = TrialWorld(ClutterConfig(protocol=protocol))
    tw.reset(select_subset(pool, protocol, seed), seed, trial)
    return tw


def _top_down(position: np.ndarray, width: float = 0.04) -> Grasps:
    """A grasp approaching straight down (world −z) at ``position``, closing along world x."""
    rotation = np.column_stack([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    quat = Rotation.from_matrix(rotation).as_quat()
    return Grasps.from_poses(np.array([[*position, *quat]]), width=np.array([width]))


def _execute(world: World, grasp: Grasps, frame: str = 'world') -> SimExecuteGrasp.Response:
    request = SimExecuteGrasp.Request(header=Header(frame_id=frame),
                                      grasp=grasps_to_msgs(grasp)[0])
    reply = world.call(world.execute, request)
    assert isinstance(reply, SimExecuteGrasp.Response)
    return reply


def _reset(world: World, **fields: object) -> SimResetScene.Response:
    reply = world.call(world.reset, SimResetScene.Request(**fields))
    assert isinstance(reply, SimResetScene.Response)
    return reply


def test_camera_pose_of_the_default_camera() -> None:
    assert camera_pose_xyzquat(CameraConfig()) == (0.0, 0.0, 1.3, 1.0, 0.0, 0.0, 0.0)


def test_no_scene_before_the_first_reset(world: World) -> None:
    reply = world.call(world.capture, SimCaptureCloud.Request(noise=True))
    assert isinstance(reply, SimCaptureCloud.Response)
    assert not reply.success and reply.error_code == SimCaptureCloud.Response.NO_SCENE
    done = _execute(world, _top_down(np.zeros(3)))
    assert not done.success and not done.executed
    assert done.error_code == SimExecuteGrasp.Response.NO_SCENE
    began = world.call(world.begin_attempt, Trigger.Request())
    assert not began.success and 'reset' in began.message  # type: ignore[attr-defined]


def test_reset_and_capture_match_the_in_process_world(world: World, pool: list) -> None:
    reply = _reset(world, seed=3, trial=1, protocol='gpr', object_set='novel')
    assert reply.success, reply.message
    scene = reply.scene
    assert (scene.seed, scene.trial, scene.protocol, scene.object_set) == (3, 1, 'gpr', 'novel')
    assert scene.header.frame_id == 'world' and scene.attempts == 0
    tw = _in_process(pool, ProtocolConfig.named('gpr'), 3, 1)
    assert scene.objects_total == tw.objects_total > 0
    state = tw.world.state()
    got = msg_to_scene(scene)
    assert got['names'] == list(state.names) and len(got['names']) == 10
    np.testing.assert_allclose(got['poses'][:, :3], state.positions, atol=1e-12)
    np.testing.assert_allclose(got['poses'][:, 3:], state.quaternions, atol=1e-12)
    assert (got['in_bin'] == tw.world.in_scene).all()
    # the latched topic carries the same scene
    spin_while(world.node, lambda: not world.scenes or world.scenes[-1].trial != 1, timeout=20)
    assert msg_to_scene(world.scenes[-1])['names'] == got['names']

    cap = world.call(world.capture, SimCaptureCloud.Request(noise=True))
    assert isinstance(cap, SimCaptureCloud.Response)
    assert cap.success, cap.message
    assert cap.cloud.header.frame_id == 'camera_optical_frame' and cap.cloud.header.stamp.sec > 0
    assert cap.cloud.height == 1 and [f.name for f in cap.cloud.fields] == ['x', 'y', 'z']
    points = cloud_to_xyz(cap.cloud)
    expected = tw.observe(noise=True).points  # same (seed, trial, attempt): same noise
    assert len(points) > 10_000
    np.testing.assert_array_equal(points, expected)
    # a second look at the same attempt: fresh noise, as in-process
    again = world.call(world.capture, SimCaptureCloud.Request(noise=True))
    second = cloud_to_xyz(again.cloud)  # type: ignore[attr-defined]
    assert not np.array_equal(second, points)
    np.testing.assert_array_equal(second, tw.observe(noise=True).points)
    # begin_attempt: the next capture is the attempt's first view again
    began = world.call(world.begin_attempt, Trigger.Request())
    assert began.success, began.message  # type: ignore[attr-defined]
    first = world.call(world.capture, SimCaptureCloud.Request(noise=True))
    np.testing.assert_array_equal(cloud_to_xyz(first.cloud), points)  # type: ignore[attr-defined]


def test_refused_grasps_do_not_count(world: World, pool: list) -> None:
    reply = _reset(world, seed=0, trial=0, num_objects=1)
    assert reply.success, reply.message
    position = msg_to_scene(reply.scene)['poses'][0, :3]
    too_wide = _execute(world, _top_down(position, width=0.08))
    assert not too_wide.success and not too_wide.executed
    assert too_wide.error_code == SimExecuteGrasp.Response.WIDTH_EXCEEDED
    assert too_wide.outcome == 'width_exceeded' and too_wide.scene.attempts == 0
    below = _top_down(position)
    below = Grasps.from_rotations(below.center, below.rotations @ np.diag([-1.0, 1.0, -1.0]),
                                  width=below.width)  # approach +z: from below
    from_below = _execute(world, below)
    assert not from_below.executed
    assert from_below.error_code == SimExecuteGrasp.Response.UNREACHABLE
    unknown = _execute(world, _top_down(position), frame='map')
    assert unknown.error_code == SimExecuteGrasp.Response.TRANSFORM_ERROR
    assert not unknown.executed
    spin_while(world.node, lambda: world.scenes[-1].objects_total != 1, timeout=20)
    assert world.scenes[-1].attempts == 0 and world.scenes[-1].objects[0].in_bin


@pytest.mark.parametrize('frame', ['world', 'camera_optical_frame'])
def test_a_known_good_grasp_lifts_the_object(world: World, pool: list, frame: str) -> None:
    protocol = replace(ProtocolConfig.named('pile'), objects_per_trial=1)
    tw = _in_process(pool, protocol, 0, 0)
    grasp = _top_down(tw.world.state().positions[0])
    expected = tw.execute(grasp)
    assert expected.success, expected.message  # the in-process core lifts it

    reply = _reset(world, seed=0, trial=0, protocol='pile', num_objects=1)
    assert reply.success and reply.scene.objects_total == 1
    sent = grasp if frame == 'world' else grasp.transformed(np.linalg.inv(
        CameraConfig().pose()))
    done = _execute(world, sent, frame=frame)
    assert done.success and done.executed, done.message
    assert done.error_code == SimExecuteGrasp.Response.NONE and done.outcome == 'success'
    assert list(done.lifted_ids) == list(expected.lifted) == [0] and done.object_id == 0
    assert done.finger_width == pytest.approx(expected.finger_width, abs=1e-3)
    assert done.scene.attempts == 1 and not done.scene.objects[0].in_bin
    spin_while(world.node, lambda: world.scenes[-1].attempts != 1, timeout=20)
    assert not world.scenes[-1].objects[0].in_bin


def test_reset_errors(world: World) -> None:
    bad_set = _reset(world, seed=0, trial=0, object_set='/nonexistent/meshes')
    assert not bad_set.success
    assert bad_set.error_code == SimResetScene.Response.INVALID_OBJECT_SET
    too_many = _reset(world, seed=0, trial=0, num_objects=500)
    assert too_many.error_code == SimResetScene.Response.INVALID_OBJECT_SET
    bad_protocol = _reset(world, seed=0, trial=0, protocol='heap')
    assert bad_protocol.error_code == SimResetScene.Response.UNKNOWN
    assert 'heap' in bad_protocol.message


def test_invalid_parameter_exits_with_an_error() -> None:
    done = subprocess.run([sys.executable, *NODE, '-p', 'protocol:=heap'],
                          env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "protocol is 'heap'" in done.stderr
    assert 'Traceback' not in done.stderr
