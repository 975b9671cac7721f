"""Publish a known GraspArray on /test_grasps until killed (run as a separate process)."""

import sys

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from std_msgs.msg import Header

from gpr_msgs.msg import GraspArray, InferenceTiming
from gpr_ros.core.grasp import Grasps
from gpr_ros.ros.conversions import grasps_to_array_msg


def known_grasps(seed: int) -> Grasps:
    """The grasps both processes agree on."""
    rng = np.random.default_rng(seed)
    n = 25
    approach = rng.normal(size=(n, 3))
    closing = np.cross(approach, rng.normal(size=(n, 3)))
    return Grasps(center=rng.uniform(-0.2, 0.2, (n, 3)), approach=approach, closing=closing,
                  width=rng.uniform(0.0, 0.05, n), score=np.linspace(1, 0, n),
                  stage=np.full(n, 2, dtype=np.int8))


def main() -> None:
    seed = int(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node('test_grasp_publisher')
    pub = node.create_publisher(GraspArray, 'test_grasps', 10)
    msg = grasps_to_array_msg(known_grasps(seed), Header(frame_id='base_link'),
                              InferenceTiming(total=0.25, model=f'seed-{seed}'))
    try:
        while rclpy.ok():
            msg.header.stamp = node.get_clock().now().to_msg()
            pub.publish(msg)
            rclpy.spin_once(node, timeout_sec=0.2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == '__main__':
    main()
