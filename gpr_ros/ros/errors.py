"""Typed errors of the ROS layer (message conversions and node plumbing)."""

from __future__ import annotations

from gpr_ros.core.errors import GprError


class CloudFormatError(GprError, ValueError):
    """A ``sensor_msgs/PointCloud2`` whose layout or contents cannot be read."""


class GraspMessageError(GprError, ValueError):
    """A ``gpr_msgs/Grasp`` that does not describe a valid grasp."""
