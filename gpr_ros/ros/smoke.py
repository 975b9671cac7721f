"""ROS smoke test of the whole interface: a DetectGrasps + ExecuteGrasp server and a client.

The server (``gpr_smoke_server``) answers ``DetectGrasps`` with the analytic top-down baseline
(:mod:`gpr_ros.core.baselines.topdown`) and runs ``ExecuteGrasp`` goals as a dry run that checks
the goal (width, pose) and walks through the execution stages with feedback, honouring cancel.
It exercises messages, conversions, services, actions and DDS between two processes; the GPR
inference node and the real executors replace it in the node suite.

:func:`run_smoke_demo` is what ``gpr-ros demo`` runs until the simulated clutter-removal demo
exists: it starts the server as its own process, sends it a synthetic bin cloud, a malformed
cloud and the best grasp, and prints what came back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import rclpy
from rclpy.action import ActionClient, ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from gpr_msgs.action import ExecuteGrasp
from gpr_msgs.msg import GraspArray, InferenceTiming
from gpr_msgs.srv import DetectGrasps
from gpr_ros.core.baselines.topdown import detect_topdown
from gpr_ros.core.fixtures import Box, box_scene_cloud
from gpr_ros.core.grasp.gripper import GripperModel
from gpr_ros.ros.conversions import (
    cloud_to_xyz,
    grasps_to_array_msg,
    grasps_to_msgs,
    msgs_to_grasps,
    xyz_to_cloud,
)
from gpr_ros.ros.errors import CloudFormatError, GraspMessageError
from gpr_ros.ros.runtime import fail_response, run_node

MIN_POINTS = 10
_STAGES = [(ExecuteGrasp.Feedback.STAGE_PLANNING, 'planning'),
           (ExecuteGrasp.Feedback.STAGE_PREGRASP, 'pregrasp'),
           (ExecuteGrasp.Feedback.STAGE_APPROACH, 'approach'),
           (ExecuteGrasp.Feedback.STAGE_CLOSING, 'closing'),
           (ExecuteGrasp.Feedback.STAGE_LIFTING, 'lifting')]


class SmokeServer(Node):
    """DetectGrasps service and ExecuteGrasp dry-run action over the top-down baseline."""

    def __init__(self) -> None:
        super().__init__('gpr_smoke_server')
        self.gripper = GripperModel()
        self.stage_delay = float(self.declare_parameter('stage_delay', 0.05).value)
        group = ReentrantCallbackGroup()
        self._latest: PointCloud2 | None = None
        self.create_subscription(PointCloud2, 'cloud', self._on_cloud, qos_profile_sensor_data,
                                 callback_group=group)
        self.grasp_pub = self.create_publisher(GraspArray, 'grasps', 10)
        self.create_service(DetectGrasps, 'detect_grasps', self._on_detect, callback_group=group)
        self._action = ActionServer(
            self, ExecuteGrasp, 'execute_grasp', execute_callback=self._on_execute,
            goal_callback=lambda _goal: GoalResponse.ACCEPT,
            cancel_callback=lambda _handle: CancelResponse.ACCEPT, callback_group=group)

    def _on_cloud(self, msg: PointCloud2) -> None:
        self._latest = msg

    def _on_detect(self, request: DetectGrasps.Request,
                   response: DetectGrasps.Response) -> DetectGrasps.Response:
        start = time.perf_counter()
        cloud = request.cloud
        if cloud.width * cloud.height == 0:
            if self._latest is None:
                return fail_response(response, DetectGrasps.Response.NO_CLOUD,
                             'the request has no cloud and none was received on the topic')
            cloud = self._latest
        try:
            points = cloud_to_xyz(cloud)
        except CloudFormatError as err:
            return fail_response(response, DetectGrasps.Response.INVALID_CLOUD, str(err))
        if len(points) < MIN_POINTS:
            return fail_response(response, DetectGrasps.Response.TOO_FEW_POINTS,
                         f'{len(points)} valid points; need at least {MIN_POINTS}')
        grasps = detect_topdown(points, max_grasps=request.max_grasps or 10,
                                gripper=self.gripper)
        grasps = grasps[grasps.score >= request.min_score]
        timing = InferenceTiming(total=float(time.perf_counter() - start),
                                 num_input_points=cloud.width * cloud.height,
                                 num_used_points=len(points), device='cpu',
                                 model='topdown-baseline')
        header = Header(stamp=cloud.header.stamp, frame_id=cloud.header.frame_id)
        response.grasps = grasps_to_array_msg(grasps, header, timing)
        response.success = True
        response.error_code = DetectGrasps.Response.NONE
        self.grasp_pub.publish(response.grasps)
        return response

    def _on_execute(self, handle: ServerGoalHandle) -> ExecuteGrasp.Result:
        goal: ExecuteGrasp.Goal = handle.request
        result = ExecuteGrasp.Result(object_id=-1)
        try:
            grasp = msgs_to_grasps([goal.grasp])
        except GraspMessageError as err:
            return _abort(handle, result, ExecuteGrasp.Result.INVALID_GOAL, str(err))
        if grasp.width[0] > self.gripper.max_width:
            return _abort(handle, result, ExecuteGrasp.Result.WIDTH_EXCEEDED,
                          f'width {grasp.width[0] * 1000:.1f} mm exceeds the max opening '
                          f'{self.gripper.max_width * 1000:.1f} mm')
        for i, (stage, name) in enumerate(_STAGES):
            if handle.is_cancel_requested:
                handle.canceled()
                result.error_code = ExecuteGrasp.Result.CANCELED
                result.message = f'canceled during {name}'
                return result
            handle.publish_feedback(ExecuteGrasp.Feedback(
                stage=stage, stage_name=name, progress=float(i) / len(_STAGES)))
            time.sleep(self.stage_delay)
        handle.succeed()
        result.success = True
        result.finger_width = float(grasp.width[0])
        result.message = 'dry run: goal valid, all stages passed'
        return result



def _abort(handle: ServerGoalHandle, result: ExecuteGrasp.Result, code: int,
           message: str) -> ExecuteGrasp.Result:
    handle.abort()
    result.success = False
    result.error_code = code
    result.message = message
    return result


def main(args: list[str] | None = None) -> int:
    """Run the smoke server node."""
    return run_node(SmokeServer, args)


# --- the demo client ---------------------------------------------------------------------------

class SmokeDemoError(RuntimeError):
    """The smoke demo could not complete (server died, timed out or answered wrongly)."""


def _wait(node: Node, future: rclpy.task.Future, timeout: float, what: str,
          server: subprocess.Popen[bytes]) -> object:
    deadline = time.monotonic() + timeout
    while not future.done():
        if server.poll() is not None:
            raise SmokeDemoError(f'the server process exited with code {server.returncode} '
                                 f'while waiting for {what}')
        if time.monotonic() > deadline:
            raise SmokeDemoError(f'timed out after {timeout:.0f} s waiting for {what}')
        rclpy.spin_until_future_complete(node, future, timeout_sec=0.1)
    return future.result()


def run_smoke_demo(seed: int = 0, timeout: float = 30.0, out=sys.stdout) -> int:
    """Start the smoke server in its own process and exercise it over DDS.

    :param seed: seed of the synthetic scene.
    :param timeout: seconds to wait for each answer.
    :param out: text stream for the report.
    :return: 0 on success.
    :raises SmokeDemoError: when any step fails.
    """
    env = dict(os.environ)
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    server = subprocess.Popen([sys.executable, '-m', 'gpr_ros.ros.smoke'], env=env)
    rclpy.init()
    node = rclpy.create_node('gpr_smoke_demo')
    try:
        client = node.create_client(DetectGrasps, 'detect_grasps')
        action = ActionClient(node, ExecuteGrasp, 'execute_grasp')
        t0 = time.monotonic()
        while not (client.service_is_ready() and action.server_is_ready()):
            if server.poll() is not None:
                raise SmokeDemoError(f'server exited with code {server.returncode}')
            if time.monotonic() - t0 > timeout:
                raise SmokeDemoError('server did not come up')
            rclpy.spin_once(node, timeout_sec=0.1)
        print(f'server up after {time.monotonic() - t0:.1f} s (DDS discovery on localhost)',
              file=out)

        rng = np.random.default_rng(seed)
        boxes = [Box((-0.06, 0.02), (0.03, 0.08, 0.05)), Box((0.05, -0.04), (0.10, 0.04, 0.03)),
                 Box((0.04, 0.07), (0.06, 0.02, 0.08))]
        points = box_scene_cloud(boxes, rng=rng)
        request = DetectGrasps.Request(
            cloud=xyz_to_cloud(points, frame_id='camera_optical_frame'), max_grasps=5)
        reply = _wait(node, client.call_async(request), timeout, 'DetectGrasps', server)
        assert isinstance(reply, DetectGrasps.Response)
        if not reply.success:
            raise SmokeDemoError(f'DetectGrasps failed: {reply.message}')
        grasps = msgs_to_grasps(reply.grasps.grasps)
        print(f'DetectGrasps: {len(points)} points -> {len(grasps)} grasps in '
              f'{reply.grasps.timing.total * 1000:.1f} ms ({reply.grasps.timing.model})', file=out)
        print('  #   x [m]   y [m]   z [m]  width [mm]  score', file=out)
        for i in range(len(grasps)):
            c = grasps.center[i]
            print(f'  {i}  {c[0]:6.3f}  {c[1]:6.3f}  {c[2]:6.3f}  {grasps.width[i] * 1000:9.1f}'
                  f'  {grasps.score[i]:5.2f}', file=out)
        if len(grasps) == 0:
            raise SmokeDemoError('no grasp found on the synthetic scene')

        bad = xyz_to_cloud(points[:100], frame_id='camera_optical_frame')
        bad.row_step += 4
        reply = _wait(node, client.call_async(DetectGrasps.Request(cloud=bad)), timeout,
                      'DetectGrasps (malformed cloud)', server)
        assert isinstance(reply, DetectGrasps.Response)
        if reply.success or reply.error_code != DetectGrasps.Response.INVALID_CLOUD:
            raise SmokeDemoError('a malformed cloud was not rejected with INVALID_CLOUD')
        print(f'malformed cloud -> error INVALID_CLOUD: {reply.message}', file=out)

        goal = ExecuteGrasp.Goal(header=reply.grasps.header, grasp=grasps_to_msgs(grasps[:1])[0])
        stages: list[str] = []
        send = action.send_goal_async(goal, feedback_callback=lambda fb: stages.append(
            fb.feedback.stage_name))
        handle = _wait(node, send, timeout, 'ExecuteGrasp acceptance', server)
        result = _wait(node, handle.get_result_async(), timeout, 'ExecuteGrasp result', server)
        res = result.result
        print(f'ExecuteGrasp (dry run): success={res.success} stages={"->".join(stages)} '
              f'finger width {res.finger_width * 1000:.1f} mm', file=out)
        if not res.success:
            raise SmokeDemoError(f'ExecuteGrasp failed: {res.message}')
        print('smoke demo OK', file=out)
        return 0
    finally:
        node.destroy_node()
        rclpy.shutdown()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == '__main__':
    sys.exit(main())
