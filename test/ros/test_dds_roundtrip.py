"""Real rclpy over DDS between processes: topics, the DetectGrasps service, the action."""

from __future__ import annotations

from collections.abc import Iterator
import importlib.util
import math

import numpy as np
import pytest
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from ros_helpers import (
    HELPERS,
    spin_until,
    spin_while,
    start_process,
    stop_process,
    wait_for_server,
)
from sensor_msgs.msg import PointCloud2

from gpr_msgs.action import ExecuteGrasp
from gpr_msgs.msg import GraspArray
from gpr_msgs.srv import DetectGrasps
from gpr_ros.core.fixtures import Box, box_scene_cloud
from gpr_ros.core.grasp import Grasps
from gpr_ros.core.grasp.gripper import GripperModel
from gpr_ros.ros.conversions import grasps_to_msgs, msgs_to_grasps, xyz_to_cloud

SEED = 7


def _load_known_grasps():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location('publish_grasps', HELPERS / 'publish_grasps.py')
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.known_grasps


def test_grasp_array_crosses_processes(ros_node: Node) -> None:
    received: list[GraspArray] = []
    sub = ros_node.create_subscription(GraspArray, 'test_grasps', received.append, 10)
    proc = start_process([str(HELPERS / 'publish_grasps.py'), str(SEED)])
    try:
        spin_while(ros_node, lambda: not received, timeout=30)
    finally:
        stop_process(proc)
        ros_node.destroy_subscription(sub)
    msg = received[0]
    expected = _load_known_grasps()(SEED)
    got = msgs_to_grasps(msg.grasps)
    assert msg.header.frame_id == 'base_link' and msg.timing.model == f'seed-{SEED}'
    assert len(got) == len(expected) == 25
    np.testing.assert_allclose(got.center, expected.center, atol=1e-12)
    np.testing.assert_allclose(got.rotations, expected.rotations, atol=1e-9)
    np.testing.assert_allclose(got.width, expected.width)


@pytest.fixture(scope='module')
def smoke_server(ros_node: Node) -> Iterator[None]:
    proc = start_process(['-m', 'gpr_ros.ros.smoke', '--ros-args', '-p', 'stage_delay:=0.3'])
    client = ros_node.create_client(DetectGrasps, 'detect_grasps')
    action = ActionClient(ros_node, ExecuteGrasp, 'execute_grasp')
    try:
        wait_for_server(ros_node, lambda: client.service_is_ready()
                        and action.server_is_ready(), timeout=30)
        yield
    finally:
        stop_process(proc)
        assert proc.returncode == 0, 'the server did not shut down cleanly on SIGINT'


def _detect(node: Node, request: DetectGrasps.Request) -> DetectGrasps.Response:
    client = node.create_client(DetectGrasps, 'detect_grasps')
    wait_for_server(node, client.service_is_ready)
    reply = spin_until(node, client.call_async(request))
    node.destroy_client(client)
    assert isinstance(reply, DetectGrasps.Response)
    return reply


def _scene_cloud():  # type: ignore[no-untyped-def]
    points = box_scene_cloud([Box((0.0, 0.0), (0.03, 0.08, 0.05)),
                              Box((0.07, 0.05), (0.06, 0.02, 0.04))],
                             rng=np.random.default_rng(0))
    return xyz_to_cloud(points, frame_id='camera_optical_frame')


def test_detect_grasps_no_cloud_yet(ros_node: Node, smoke_server: None) -> None:
    reply = _detect(ros_node, DetectGrasps.Request())
    assert not reply.success and reply.error_code == DetectGrasps.Response.NO_CLOUD
    assert 'no cloud' in reply.message


def test_detect_grasps_on_a_cloud(ros_node: Node, smoke_server: None) -> None:
    reply = _detect(ros_node, DetectGrasps.Request(cloud=_scene_cloud(), max_grasps=4))
    assert reply.success and reply.error_code == DetectGrasps.Response.NONE
    grasps = msgs_to_grasps(reply.grasps.grasps)
    assert 1 <= len(grasps) <= 4
    assert reply.grasps.header.frame_id == 'camera_optical_frame'
    assert (grasps.width <= GripperModel().max_width).all()
    assert (np.diff(grasps.score) <= 0).all(), 'grasps must be sorted best first'
    # The narrow 3 cm side of the tallest box is the best grasp.
    assert grasps.width[0] == pytest.approx(0.03 + 0.004, abs=0.004)
    assert reply.grasps.timing.num_used_points > 1000


@pytest.mark.parametrize('mutate, code', [
    ('row_step', DetectGrasps.Response.INVALID_CLOUD),
    ('datatype', DetectGrasps.Response.INVALID_CLOUD),
    ('few_points', DetectGrasps.Response.TOO_FEW_POINTS),
])
def test_detect_grasps_error_codes(ros_node: Node, smoke_server: None, mutate: str,
                                   code: int) -> None:
    cloud = _scene_cloud()
    if mutate == 'row_step':
        cloud.row_step += 1
    elif mutate == 'datatype':
        cloud.fields[0].datatype = 99
    else:
        cloud = xyz_to_cloud(np.full((20, 3), np.nan), frame_id='camera_optical_frame')
    reply = _detect(ros_node, DetectGrasps.Request(cloud=cloud))
    assert not reply.success and reply.error_code == code and reply.message
    assert len(reply.grasps.grasps) == 0


def test_detect_grasps_uses_latest_topic_cloud(ros_node: Node, smoke_server: None) -> None:
    pub = ros_node.create_publisher(PointCloud2, 'cloud', qos_profile_sensor_data)
    spin_while(ros_node, lambda: pub.get_subscription_count() == 0)
    cloud = _scene_cloud()
    reply = None
    for _ in range(50):  # best-effort topic: publish until the server has one
        pub.publish(cloud)
        reply = _detect(ros_node, DetectGrasps.Request())
        if reply.error_code != DetectGrasps.Response.NO_CLOUD:
            break
    ros_node.destroy_publisher(pub)
    assert reply is not None and reply.success and len(reply.grasps.grasps) > 0


def _goal(width: float) -> ExecuteGrasp.Goal:
    g = Grasps(center=np.zeros((1, 3)), approach=[[0, 0, 1.0]], closing=[[1.0, 0, 0]],
               width=[width])
    goal = ExecuteGrasp.Goal(grasp=grasps_to_msgs(g)[0])
    goal.header.frame_id = 'base_link'
    return goal


def _execute(node: Node, goal: ExecuteGrasp.Goal, cancel_after_feedback: bool = False):  # type: ignore[no-untyped-def]
    action = ActionClient(node, ExecuteGrasp, 'execute_grasp')
    spin_while(node, lambda: not action.server_is_ready())
    feedback: list[ExecuteGrasp.Feedback] = []
    handle = spin_until(node, action.send_goal_async(
        goal, feedback_callback=lambda fb: feedback.append(fb.feedback)))
    assert handle.accepted
    if cancel_after_feedback:
        spin_while(node, lambda: not feedback)
        spin_until(node, handle.cancel_goal_async())
    result = spin_until(node, handle.get_result_async())
    action.destroy()
    return result, feedback


def test_execute_grasp_succeeds_with_feedback(ros_node: Node, smoke_server: None) -> None:
    result, feedback = _execute(ros_node, _goal(0.03))
    assert result.result.success and result.result.error_code == ExecuteGrasp.Result.NONE
    assert result.result.finger_width == pytest.approx(0.03)
    assert [f.stage_name for f in feedback] == ['planning', 'pregrasp', 'approach', 'closing',
                                                'lifting']
    assert all(0 <= f.progress < 1 for f in feedback)


def test_execute_grasp_refuses_too_wide(ros_node: Node, smoke_server: None) -> None:
    result, feedback = _execute(ros_node, _goal(0.06))
    assert not result.result.success and not feedback
    assert result.result.error_code == ExecuteGrasp.Result.WIDTH_EXCEEDED
    assert '60.0 mm' in result.result.message


def test_execute_grasp_invalid_goal(ros_node: Node, smoke_server: None) -> None:
    goal = _goal(0.02)
    goal.grasp.pose.position.x = math.nan
    result, _ = _execute(ros_node, goal)
    assert result.result.error_code == ExecuteGrasp.Result.INVALID_GOAL


def test_execute_grasp_cancel(ros_node: Node, smoke_server: None) -> None:
    result, feedback = _execute(ros_node, _goal(0.02), cancel_after_feedback=True)
    assert not result.result.success
    assert result.result.error_code == ExecuteGrasp.Result.CANCELED
    assert 0 < len(feedback) < 5


def test_a_context_shut_down_under_the_executor_is_a_clean_stop() -> None:
    # as a SIGINT does: the executor may see ExternalShutdownException or, when the shutdown
    # lands while it builds a wait set, an RCLError; both are a clean stop (exit 0). The busy
    # timers make the second case possible; it is timing-dependent, not forced.
    for _ in range(3):
        proc = start_process([str(HELPERS / 'shutdown_under_executor.py')])
        try:
            proc.wait(timeout=30)
        finally:
            stop_process(proc)
        assert proc.returncode == 0
