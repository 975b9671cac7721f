"""Typed exceptions of the network subpackage."""

from __future__ import annotations

from gpr_ros.core.errors import GprError

__all__ = ["CheckpointError", "NetworkError"]


class NetworkError(GprError):
    """Invalid network input (wrong shapes, empty clouds) or an inconsistent batch."""


class CheckpointError(NetworkError):
    """A checkpoint that is missing, corrupt, truncated, or does not match its config."""
