"""Node start-up and shutdown shared by every gpr_ros executable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
import sys

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node


def run_node(factory: Callable[[], Node], args: Sequence[str] | None = None,
             num_threads: int = 2) -> int:
    """Initialise rclpy, spin the node on a multi-threaded executor, shut down cleanly.

    Uses only API common to Humble, Jazzy and Kilted (no ``with rclpy.init()``).

    :param factory: builds the node (called after ``rclpy.init``).
    :param args: command-line arguments including ``--ros-args ...`` (default ``sys.argv``).
    :param num_threads: executor threads.
    :return: process exit code (0 on a clean shutdown, Ctrl-C included).
    """
    rclpy.init(args=list(args) if args is not None else sys.argv)
    node: Node | None = None
    try:
        node = factory()
        executor = MultiThreadedExecutor(num_threads=num_threads)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
