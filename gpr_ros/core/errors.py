"""Typed exceptions raised by the ROS-free core.

Library code raises these; ROS nodes catch them and log or report them. Every message says
what was wrong and what was expected.
"""

from __future__ import annotations

__all__ = ["ConfigError", "GeometryError", "GprError"]


class GprError(Exception):
    """Base class of every error raised by :mod:`gpr_ros.core`."""


class GeometryError(GprError, ValueError):
    """Bad geometric input.

    Wrong array shapes, non-finite values, zero or parallel direction vectors, non-orthogonal
    frames, non-rigid transforms, or encodings that cannot be decoded.
    """


class ConfigError(GprError, ValueError):
    """An invalid configuration value (gripper dimensions, bin specifications, thresholds)."""
