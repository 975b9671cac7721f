"""Fixtures for tests that talk real DDS: an rclpy context with one node per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import rclpy
from rclpy.node import Node


@pytest.fixture(scope='module')
def ros_node(request: pytest.FixtureRequest) -> Iterator[Node]:
    """An initialised rclpy context with one node for the test module."""
    rclpy.init()
    node = rclpy.create_node(f'test_{request.module.__name__.split(".")[-1]}')
    yield node
    node.destroy_node()
    rclpy.shutdown()
