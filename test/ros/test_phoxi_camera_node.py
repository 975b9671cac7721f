"""The phoxi_camera node in its own process over real DDS, on the viky.cti GenTL simulator."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import time

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from ros_helpers import spin_until, spin_while, start_process, stop_process, wait_for_server
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger

from gpr_ros.core.camera.genicam_source import default_cti_path
from gpr_ros.ros.conversions import cloud_to_xyz

pytestmark = pytest.mark.skipif(default_cti_path() is None,
                                reason='the genicam wheel simulator viky.cti is not installed')

NODE = ['-m', 'gpr_ros.ros.nodes.phoxi_camera', '--ros-args']
PARAMS = Path(__file__).resolve().parents[2] / 'config' / 'phoxi_camera.yaml'


def _check_cloud(msg: PointCloud2, frame_id: str) -> None:
    assert [f.name for f in msg.fields][:3] == ['x', 'y', 'z']
    assert msg.header.frame_id == frame_id
    assert msg.header.stamp.sec > 0
    assert len(cloud_to_xyz(msg)) > 1000  # finite points


def test_continuous_mode_publishes_unorganized_clouds(ros_node: Node) -> None:
    received: list[PointCloud2] = []
    sub = ros_node.create_subscription(PointCloud2, 'test_cloud_continuous', received.append,
                                       qos_profile_sensor_data)
    proc = start_process([*NODE, '-p', 'trigger:=continuous', '-p', 'rate_hz:=10.0',
                          '-p', 'invalid:=drop', '-p', 'frame_id:=test_camera',
                          '-p', 'roi:=[0.0, 0.0, -0.01, 0.2, 0.2, 0.2]',
                          '-r', 'cloud:=test_cloud_continuous'])
    try:
        spin_while(ros_node, lambda: len(received) < 3, timeout=30)
    finally:
        stop_process(proc)
        ros_node.destroy_subscription(sub)
    assert proc.returncode == 0
    msg = received[-1]
    _check_cloud(msg, 'test_camera')
    assert msg.height == 1 and msg.is_dense
    xyz = cloud_to_xyz(msg)
    assert len(xyz) == msg.width == 200 * 200 - 1 and (xyz.max(axis=0) <= 0.2 + 1e-6).all()


def test_software_mode_publishes_only_on_trigger(ros_node: Node) -> None:
    received: list[PointCloud2] = []
    # reliable: the node publishes triggered clouds reliably (qos_reliability 'auto')
    sub = ros_node.create_subscription(PointCloud2, 'test_cloud_software', received.append, 1)
    client = ros_node.create_client(Trigger, 'phoxi_camera/trigger')
    proc = start_process([*NODE, '--params-file', str(PARAMS), '-p', 'trigger:=software',
                          '-r', 'cloud:=test_cloud_software'])
    try:
        wait_for_server(ros_node, client.service_is_ready, timeout=30)
        quiet_until = time.monotonic() + 1.0
        spin_while(ros_node, lambda: time.monotonic() < quiet_until, timeout=5)
        assert received == []  # no trigger, no cloud
        reply = spin_until(ros_node, client.call_async(Trigger.Request()), timeout=20)
        assert isinstance(reply, Trigger.Response)
        assert reply.success, reply.message
        spin_while(ros_node, lambda: not received, timeout=10)
    finally:
        stop_process(proc)
        ros_node.destroy_client(client)
        ros_node.destroy_subscription(sub)
    assert proc.returncode == 0
    assert len(received) == 1
    msg = received[0]
    _check_cloud(msg, 'camera_optical_frame')
    assert (msg.height, msg.width) == (400, 400) and not msg.is_dense  # organized, NaN kept
    grid = cloud_to_xyz(msg, remove_nans=False)
    assert grid.shape == (400, 400, 3) and np.isnan(grid[0, 0]).all()


def test_invalid_parameter_exits_with_an_error() -> None:
    done = subprocess.run([sys.executable, *NODE, '-p', 'trigger:=sometimes'],
                          env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "trigger is 'sometimes'" in done.stderr
    assert 'Traceback' not in done.stderr
