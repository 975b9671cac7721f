"""Helpers for tests that talk real DDS: spinning on futures, node processes."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import time

import rclpy
from rclpy.client import Client
from rclpy.node import Node
from rclpy.task import Future

HELPERS = Path(__file__).parent / 'helpers'


def spin_until(node: Node, future: Future, timeout: float = 20.0) -> object:
    """Spin ``node`` until ``future`` is done; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while not future.done():
        assert time.monotonic() < deadline, f'timed out after {timeout} s'
        rclpy.spin_until_future_complete(node, future, timeout_sec=0.1)
    return future.result()


def call_service(node: Node, client: Client, request: object, timeout: float = 30.0,
                 attempts: int = 3) -> object:
    """Call a service; re-send when the response is lost; fail the test after ``attempts``.

    Right after discovery Fast DDS can drop a response ("failed to send response (timeout):
    client will not receive response") while the server's reply writer is not yet matched to
    the client, although ``service_is_ready()`` was already true: the request is sent again.
    """
    for _ in range(attempts):
        future = client.call_async(request)
        deadline = time.monotonic() + timeout / attempts
        while not future.done() and time.monotonic() < deadline:
            rclpy.spin_until_future_complete(node, future, timeout_sec=0.1)
        if future.done():
            return future.result()
        client.remove_pending_request(future)
    raise AssertionError(f'no response from {client.service_name} in {attempts} attempts '
                         f'({timeout} s)')


def spin_while(node: Node, condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Spin ``node`` while ``condition()`` is true; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while condition():
        assert time.monotonic() < deadline, f'timed out after {timeout} s'
        rclpy.spin_once(node, timeout_sec=0.1)


def wait_for_server(node: Node, ready, timeout: float = 30.0,  # type: ignore[no-untyped-def]
                    settle: float = 1.0) -> None:
    """Spin until ``ready()`` (a client sees its server), then ``settle`` seconds more.

    ``service_is_ready()`` says the client has matched the server; the server may match the
    client's reply reader later, and Fast DDS drops a reply sent before that (it waits only
    100 ms: "failed to send response (timeout): client will not receive response"). A request
    that must not be sent twice (a trigger that advances a bag, a trial start) is sent only
    after both sides had time to discover each other.
    """
    spin_while(node, lambda: not ready(), timeout=timeout)
    end = time.monotonic() + settle
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)


def start_process(args: list[str]) -> subprocess.Popen[bytes]:
    """Start a Python node process with this test run's ROS environment."""
    return subprocess.Popen([sys.executable, *args], env=dict(os.environ))


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a node process started by :func:`start_process` (SIGINT, then kill)."""
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
