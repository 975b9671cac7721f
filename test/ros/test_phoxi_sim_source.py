"""The phoxi_camera node with source 'sim': clouds from a sim_world process, over real DDS."""

from __future__ import annotations

import numpy as np
from rclpy.client import Client
from rclpy.node import Node
from ros_helpers import (
    call_service,
    spin_until,
    spin_while,
    start_process,
    stop_process,
    wait_for_server,
)
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger

from gpr_msgs.srv import SimCaptureCloud, SimResetScene
from gpr_ros.ros.conversions import cloud_to_xyz

CAMERA = ['-m', 'gpr_ros.ros.nodes.phoxi_camera', '--ros-args', '-p', 'source:=sim',
          '-p', 'frame_id:=sim_camera', '-p', 'reconnect_period_s:=0.5', '-p', 'timeout_s:=5.0',
          '-r', 'cloud:=sim_cloud']
WORLD = ['-m', 'gpr_ros.ros.nodes.sim_world', '--ros-args', '-p', 'protocol:=pile']


def _trigger(node: Node, client: Client) -> Trigger.Response:
    reply = call_service(node, client, Trigger.Request(), timeout=30)
    assert isinstance(reply, Trigger.Response)
    return reply


def test_sim_source_publishes_the_world_cloud_and_survives_a_missing_world(
        ros_node: Node) -> None:
    received: list[PointCloud2] = []
    sub = ros_node.create_subscription(PointCloud2, 'sim_cloud', received.append, 1)
    trigger: Client = ros_node.create_client(Trigger, 'phoxi_camera/trigger')
    reset: Client = ros_node.create_client(SimResetScene, 'sim_world/reset')
    capture: Client = ros_node.create_client(SimCaptureCloud, 'sim_world/capture')
    begin: Client = ros_node.create_client(Trigger, 'sim_world/begin_attempt')
    camera = start_process(CAMERA)
    world = None
    try:
        wait_for_server(ros_node, trigger.service_is_ready, timeout=30)
        reply = _trigger(ros_node, trigger)
        assert not reply.success and 'not connected' in reply.message  # no world yet

        world = start_process(WORLD)
        wait_for_server(ros_node, lambda: reset.service_is_ready()
                        and capture.service_is_ready(), timeout=60)
        # the camera finds the world by itself; before a reset the world has no scene
        spin_while(ros_node, lambda: 'no scene' not in _trigger(ros_node, trigger).message,
                   timeout=30)
        assert received == []

        done = spin_until(ros_node, reset.call_async(SimResetScene.Request(
            seed=1, trial=0, num_objects=2)), timeout=60)
        assert isinstance(done, SimResetScene.Response) and done.success, done
        reply = _trigger(ros_node, trigger)
        assert reply.success, reply.message
        spin_while(ros_node, lambda: not received, timeout=20)
        # a second capture of the same attempt would be its second view (fresh noise)
        began = _trigger(ros_node, begin)
        assert began.success, began.message
        direct = spin_until(ros_node, capture.call_async(SimCaptureCloud.Request(noise=True)),
                            timeout=30)
        assert isinstance(direct, SimCaptureCloud.Response) and direct.success

        stop_process(world)
        assert world.returncode == 0
        spin_while(ros_node, lambda: capture.service_is_ready(), timeout=20)
        lost = _trigger(ros_node, trigger)
        assert not lost.success
    finally:
        if world is not None:
            stop_process(world)
        stop_process(camera)
        for client in (trigger, reset, capture, begin):
            ros_node.destroy_client(client)
        ros_node.destroy_subscription(sub)
    assert camera.returncode == 0
    assert len(received) == 1
    msg = received[0]
    assert msg.header.frame_id == 'sim_camera'  # re-stamped in the camera's frame
    assert msg.header.stamp.sec >= direct.cloud.header.stamp.sec - 5 and msg.header.stamp.sec > 0
    assert msg.height == 1 and msg.is_dense
    # the same capture of the same (seed, trial, attempt): identical noisy points
    np.testing.assert_array_equal(cloud_to_xyz(msg), cloud_to_xyz(direct.cloud))
    assert len(cloud_to_xyz(msg)) > 10_000
