"""Typed exceptions of :mod:`gpr_ros.core.clutter`."""

from __future__ import annotations

from gpr_ros.core.errors import GprError

__all__ = ["ClutterError", "PolicyUnavailableError", "ResultsLogError"]


class ClutterError(GprError):
    """A clutter-removal benchmark could not be set up or run."""


class PolicyUnavailableError(ClutterError):
    """A policy cannot be built here (unknown name, no model checkpoint, bad plug-in)."""


class ResultsLogError(ClutterError):
    """The attempts log belongs to another configuration or cannot be read."""
