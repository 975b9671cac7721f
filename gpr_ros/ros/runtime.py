"""Node start-up and shutdown shared by every gpr_ros executable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
import sys
import time
from typing import Any, TypeVar

import rclpy
from rclpy.executors import (
    Executor,
    ExternalShutdownException,
    MultiThreadedExecutor,
    SingleThreadedExecutor,
)
from rclpy.node import Node

EXIT_INVALID_PARAMETERS = 2

_Response = TypeVar('_Response')


class NodeStartupError(RuntimeError):
    """A node cannot start (the reason is already logged); its ``main`` exits non-zero."""


class Throttle:
    """True at most once per ``period_s``: for per-message log lines.

    rclpy's ``throttle_duration_sec`` inspects the caller's frame on every call, ~0.17 ms even
    when the line is suppressed; checking this first costs a clock read.
    """

    def __init__(self, period_s: float) -> None:
        """Start due.

        :param period_s: seconds between two True answers.
        """
        self.period_s = period_s
        self._next = float('-inf')

    def due(self) -> bool:
        """Whether the period has passed since the last True (and start a new one if so)."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.period_s
        return True


def fail_response(response: _Response, code: int, message: str) -> _Response:
    """Fill a nav2-style response (``success``, ``error_code``, ``message``) as a failure.

    :param response: the service response.
    :param code: one of the response's error-code constants.
    :param message: what went wrong, for humans.
    :return: ``response``.
    """
    resp: Any = response
    resp.success = False
    resp.error_code = code
    resp.message = message
    return response


def spin_until_shutdown(executor: Executor) -> None:
    """Spin ``executor`` until Ctrl-C or a shutdown of its context; both are a clean stop.

    A SIGINT can shut the context down while the executor builds its wait set; rclpy then
    raises RCLError ("the given context is not valid") instead of ExternalShutdownException
    (always so when the process was started with SIGINT ignored, as a background job is).
    Any error while the context is still up propagates.

    :param executor: the executor, with its nodes added.
    """
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise


def run_node(factory: Callable[[], Node], args: Sequence[str] | None = None,
             num_threads: int = 2) -> int:
    """Initialise rclpy, spin the node on an executor, shut down cleanly.

    Uses only API common to Humble, Jazzy and Kilted (no ``with rclpy.init()``).

    :param factory: builds the node (called after ``rclpy.init``).
    :param args: command-line arguments including ``--ros-args ...`` (default ``sys.argv``).
    :param num_threads: executor threads; 1: a ``SingleThreadedExecutor`` (no hand-off of
        each callback to a pool thread), else a ``MultiThreadedExecutor``.
    :return: process exit code (0 on a clean shutdown, Ctrl-C included).
    """
    rclpy.init(args=list(args) if args is not None else sys.argv)
    node: Node | None = None
    try:
        node = factory()
        executor: Executor = SingleThreadedExecutor() if num_threads == 1 \
            else MultiThreadedExecutor(num_threads=num_threads)
        executor.add_node(node)
        spin_until_shutdown(executor)
    except KeyboardInterrupt:  # Ctrl-C while the node was being built
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
