"""The yumi_executor node over real DDS: sim backend against a running sim_world process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
import math
import os
import subprocess
import sys
import time

from action_msgs.msg import GoalStatus
import numpy as np
import pytest
from rclpy.action import ActionClient
from rclpy.client import Client
from rclpy.node import Node
from ros_helpers import spin_until, spin_while, start_process, stop_process, wait_for_server
from scipy.spatial.transform import Rotation
from std_msgs.msg import Header

from gpr_msgs.action import ExecuteGrasp
from gpr_msgs.srv import SimResetScene
from gpr_ros.core.grasp import Grasps
from gpr_ros.ros.conversions import grasps_to_msgs, msg_to_scene
from gpr_ros.ros.moveit_backend import (
    MoveItSettings,
    bin_boxes,
    grasp_target,
    matrix_to_xyzquat,
    pose_matrix,
    tool_waypoints,
)

WORLD = ['-m', 'gpr_ros.ros.nodes.sim_world', '--ros-args']
EXECUTOR = ['-m', 'gpr_ros.ros.nodes.yumi_executor', '--ros-args']
TIMEOUT = 60.0
_R = ExecuteGrasp.Result


@dataclass
class Graph:
    """A running sim_world and two executors: one on the world, one on a missing world."""

    node: Node
    reset: Client
    action: ActionClient
    orphan: ActionClient


@pytest.fixture(scope='module')
def graph(ros_node: Node) -> Iterator[Graph]:
    reset: Client = ros_node.create_client(SimResetScene, 'sim_world/reset')
    action: ActionClient = ActionClient(ros_node, ExecuteGrasp, 'execute_grasp')
    orphan: ActionClient = ActionClient(ros_node, ExecuteGrasp, 'execute_grasp_orphan')
    procs = [
        start_process([*WORLD, '-p', 'protocol:=pile']),
        start_process([*EXECUTOR, '-p', 'timeout_s:=20.0']),
        start_process([*EXECUTOR, '-r', '__node:=yumi_executor_orphan',
                       '-r', 'execute_grasp:=execute_grasp_orphan',
                       '-p', 'world_service:=no_world/execute', '-p', 'timeout_s:=4.0']),
    ]
    try:
        wait_for_server(ros_node, lambda: reset.service_is_ready() and action.server_is_ready()
                        and orphan.server_is_ready(), timeout=60)
        yield Graph(ros_node, reset, action, orphan)
    finally:
        for proc in procs:
            stop_process(proc)
        action.destroy()
        orphan.destroy()
        ros_node.destroy_client(reset)
    assert [p.returncode for p in procs] == [0, 0, 0]


def _goal(position: np.ndarray, width: float = 0.04, frame: str = 'world') -> ExecuteGrasp.Goal:
    """A top-down grasp (approach world −z) at ``position``."""
    rotation = np.column_stack([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    quat = Rotation.from_matrix(rotation).as_quat()
    grasp = Grasps.from_poses(np.array([[*position, *quat]]), width=np.array([width]))
    return ExecuteGrasp.Goal(header=Header(frame_id=frame), grasp=grasps_to_msgs(grasp)[0])


def _one_object(graph: Graph) -> np.ndarray:
    """Reset a one-object pile scene; return the object's position."""
    reply = spin_until(graph.node, graph.reset.call_async(SimResetScene.Request(
        seed=0, trial=0, protocol='pile', num_objects=1)), timeout=TIMEOUT)
    assert isinstance(reply, SimResetScene.Response) and reply.success, reply
    position: np.ndarray = msg_to_scene(reply.scene)['poses'][0, :3]
    return position


def _send(graph: Graph, goal: ExecuteGrasp.Goal, client: ActionClient | None = None,
          feedback: list[str] | None = None) -> object:
    client = client or graph.action
    handle = spin_until(graph.node, client.send_goal_async(
        goal, feedback_callback=(lambda fb: feedback.append(fb.feedback.stage_name))
        if feedback is not None else None), timeout=TIMEOUT)
    assert handle.accepted  # type: ignore[attr-defined]
    return handle


def _result(graph: Graph, handle: object) -> tuple[int, ExecuteGrasp.Result]:
    response = spin_until(graph.node, handle.get_result_async(),  # type: ignore[attr-defined]
                          timeout=TIMEOUT)
    return response.status, response.result  # type: ignore[attr-defined]


# --- the ROS-free geometry of the MoveIt backend -------------------------------------------------

def test_pose_round_trip_and_tool_waypoints() -> None:
    pose = (0.1, -0.2, 0.3, *Rotation.from_euler('xyz', [0.3, -0.5, 1.2]).as_quat())
    np.testing.assert_allclose(matrix_to_xyzquat(pose_matrix(pose)), pose, atol=1e-12)
    grasp = pose_matrix(pose)
    tool = pose_matrix(MoveItSettings().tool_transform)
    poses = tool_waypoints(grasp, tool, pregrasp_offset=0.1, lift_height=0.15)
    approach = grasp[:3, 0]
    np.testing.assert_allclose(poses['grasp'][:3, 2], approach, atol=1e-12)  # tool z = approach
    np.testing.assert_allclose(poses['grasp'][:3, 1], grasp[:3, 1], atol=1e-12)  # y = closing
    np.testing.assert_allclose(poses['pregrasp'][:3, 3], grasp[:3, 3] - 0.1 * approach,
                               atol=1e-12)
    np.testing.assert_allclose(poses['lift'][:3, 3], grasp[:3, 3] + [0.0, 0.0, 0.15],
                               atol=1e-12)


def test_bin_boxes_bound_the_inner_volume() -> None:
    boxes = {name: (np.array(size), np.array(center)) for name, size, center in
             bin_boxes((0.4, 0.0, 0.0), (0.3, 0.2, 0.1), 0.01)}
    size, center = boxes['wall_x_pos']
    assert center[0] - size[0] / 2 == pytest.approx(0.4 + 0.15)
    size, center = boxes['wall_y_neg']
    assert center[1] + size[1] / 2 == pytest.approx(-0.1)
    size, center = boxes['floor']
    assert center[2] + size[2] / 2 == pytest.approx(0.0)
    assert all(c[2] - s[2] / 2 == pytest.approx(0.0) for n, (s, c) in boxes.items()
               if n.startswith('wall'))


def test_moveit_grasp_target_deepens_and_checks_against_the_configured_bin() -> None:
    settings = MoveItSettings(bin_center=(0.4, 0.1, 0.05), bin_size=(0.3, 0.3, 0.1))
    down = np.eye(4)
    down[:3, :3] = np.column_stack([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # high in the bin: 15 mm deeper along the approach, nothing else
    down[:3, 3] = (0.4, 0.1, 0.05 + 0.05)
    pose, backoff, reason = grasp_target(down, 0.03, settings, 0.1, 0.05)
    assert pose is not None and backoff == 0.0 and reason == ''
    np.testing.assert_allclose(pose[:3, 3], (0.4, 0.1, 0.085))
    np.testing.assert_array_equal(pose[:3, :3], down[:3, :3])
    # just above the floor (z = 0.05 in the planning frame): moved back to the clearance
    down[:3, 3] = (0.4, 0.1, 0.05 + 0.01)
    pose, backoff, _ = grasp_target(down, 0.03, settings, 0.1, 0.05)
    assert pose is not None and pose[2, 3] == pytest.approx(0.05 + 0.002)
    assert backoff == pytest.approx(0.007)
    # next to the bin's +x wall (inner face at x = 0.55), closing along x: refused
    down[:3, 3] = (0.53, 0.1, 0.12)
    pose, _, reason = grasp_target(down, 0.03, settings, 0.1, 0.05)
    assert pose is None and 'wall' in reason
    # without a bin in the planning scene only the depth applies
    pose, _, _ = grasp_target(down, 0.03, MoveItSettings(bin_size=(0.0, 0.0, 0.0)), 0.1, 0.05)
    assert pose is not None and pose[2, 3] == pytest.approx(0.105)


# --- the node ------------------------------------------------------------------------------------

def test_success_with_feedback(graph: Graph) -> None:
    position = _one_object(graph)
    stages: list[str] = []
    status, result = _result(graph, _send(graph, _goal(position), feedback=stages))
    assert status == GoalStatus.STATUS_SUCCEEDED
    assert result.success and result.executed and result.error_code == _R.NONE, result.message
    assert list(result.lifted_ids) == [0] and result.object_id == 0
    assert 0.0 < result.finger_width <= 0.05
    spin_while(graph.node, lambda: len(stages) < 2, timeout=5)  # feedback may trail the result
    assert stages[:2] == ['planning', 'pregrasp']


def test_goals_failing_the_checks_are_refused(graph: Graph) -> None:
    position = _one_object(graph)
    nan_goal = _goal(position)
    nan_goal.grasp.pose.position.x = math.nan
    scaled = _goal(position)
    scaled.grasp.pose.orientation.x *= 2.0  # norm 2: not a unit quaternion
    no_frame = _goal(position, frame='')
    for goal, code in ((nan_goal, _R.INVALID_GOAL), (scaled, _R.INVALID_GOAL),
                       (no_frame, _R.INVALID_GOAL), (_goal(position, 0.08), _R.WIDTH_EXCEEDED),
                       (_goal(position, 0.003), _R.WIDTH_EXCEEDED)):
        status, result = _result(graph, _send(graph, goal))
        assert status == GoalStatus.STATUS_ABORTED
        assert (result.error_code, result.executed, result.success) == (code, False, False), \
            result.message
    assert 'below the min width 5.0 mm' in result.message  # the 3 mm goal
    # refused by the world's own checks: unknown frame, approach from below
    status, result = _result(graph, _send(graph, _goal(position, frame='map')))
    assert (result.error_code, result.executed) == (_R.TRANSFORM_ERROR, False)
    below = _goal(position)
    o = below.grasp.pose.orientation
    flipped = Rotation.from_quat([o.x, o.y, o.z, o.w]) * Rotation.from_euler('y', math.pi)
    o.x, o.y, o.z, o.w = flipped.as_quat()
    status, result = _result(graph, _send(graph, below))
    assert status == GoalStatus.STATUS_ABORTED
    assert (result.error_code, result.executed) == (_R.UNREACHABLE, False), result.message


def test_cancel_during_a_simulated_execution(graph: Graph) -> None:
    position = _one_object(graph)
    # a 20-object pour keeps the world busy for about a second: the grasp waits behind it
    pour = graph.reset.call_async(SimResetScene.Request(seed=0, trial=0, protocol='gpr',
                                                        num_objects=20))
    until = time.monotonic() + 0.3
    spin_while(graph.node, lambda: time.monotonic() < until, timeout=5)
    stages: list[str] = []
    handle = _send(graph, _goal(position), feedback=stages)
    spin_while(graph.node, lambda: 'pregrasp' not in stages, timeout=20)
    spin_until(graph.node, handle.cancel_goal_async(), timeout=TIMEOUT)  # type: ignore[attr-defined]
    status, result = _result(graph, handle)
    assert status == GoalStatus.STATUS_CANCELED
    assert result.error_code == _R.CANCELED and not result.success
    assert 'world reported' in result.message  # honoured after the world's step
    poured = spin_until(graph.node, pour, timeout=TIMEOUT)
    assert isinstance(poured, SimResetScene.Response) and poured.scene.objects_total == 20


def test_cancel_before_the_backend_starts_and_one_goal_at_a_time(graph: Graph) -> None:
    stages: list[str] = []
    first = _send(graph, _goal(np.zeros(3)), client=graph.orphan, feedback=stages)
    spin_while(graph.node, lambda: not stages, timeout=20)  # waiting for the missing world
    second = spin_until(graph.node, graph.orphan.send_goal_async(_goal(np.zeros(3))),
                        timeout=TIMEOUT)
    assert not second.accepted  # type: ignore[attr-defined]
    spin_until(graph.node, first.cancel_goal_async(), timeout=TIMEOUT)  # type: ignore[attr-defined]
    status, result = _result(graph, first)
    assert status == GoalStatus.STATUS_CANCELED
    assert (result.error_code, result.executed) == (_R.CANCELED, False)


def test_missing_world_is_a_backend_error_within_the_timeout(graph: Graph) -> None:
    t0 = time.monotonic()
    status, result = _result(graph, _send(graph, _goal(np.zeros(3)), client=graph.orphan))
    elapsed = time.monotonic() - t0
    assert status == GoalStatus.STATUS_ABORTED
    assert (result.error_code, result.executed) == (_R.BACKEND_ERROR, False)
    assert 'no_world/execute' in result.message
    assert 3.5 < elapsed < 15.0  # timeout_s is 4


@pytest.mark.parametrize(('args', 'text'), [
    (['-p', 'backend:=moveit'], 'moveit_py'),
    (['-p', 'backend:=robot'], "backend is 'robot'"),
    (['-p', 'backend:=moveit', '-p', 'gripper_mode:=magic'], "gripper_mode is 'magic'"),
])
def test_unusable_configurations_exit_with_code_2(args: list[str], text: str) -> None:
    done = subprocess.run([sys.executable, *EXECUTOR, *args], env=dict(os.environ),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert text in done.stderr
    assert 'Traceback' not in done.stderr


def test_min_width_must_lie_below_the_max_width() -> None:
    from gpr_ros.core.errors import ConfigError
    from gpr_ros.ros.nodes.yumi_executor import ExecutorConfig

    with pytest.raises(ConfigError, match='min_width is 0.005; expected a finite value in'):
        ExecutorConfig(max_width=0.001)  # the 5 mm default above a 1 mm gripper
    with pytest.raises(ConfigError, match='min_width'):
        ExecutorConfig(min_width=-0.001)
    assert ExecutorConfig(max_width=0.001, min_width=0.0).min_width == 0.0
