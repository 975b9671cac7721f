"""A node whose timer shuts the context down under its running executor (as SIGINT does)."""

import sys

import rclpy
from rclpy.node import Node

from gpr_ros.ros.runtime import run_node


def _node() -> Node:
    node = Node('shutdown_under_executor')
    node.create_timer(0.2, lambda: rclpy.try_shutdown())
    # busy timers keep the executor building wait sets while the shutdown lands
    for _ in range(8):
        node.create_timer(0.001, lambda: None)
    return node


if __name__ == '__main__':
    sys.exit(run_node(_node, sys.argv[1:] or None))
