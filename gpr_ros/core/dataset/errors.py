"""Typed exceptions of :mod:`gpr_ros.core.dataset`."""

from __future__ import annotations

from gpr_ros.core.errors import GprError

__all__ = ["DatasetError", "MeshError", "ObjectSetError"]


class DatasetError(GprError):
    """Base class of the errors raised while building the synthetic dataset."""


class MeshError(DatasetError, ValueError):
    """An unusable mesh: unreadable, empty, degenerate, non-finite, flat or of the wrong size."""


class ObjectSetError(DatasetError, ValueError):
    """An unknown object set name, an empty or missing folder, or too few usable objects."""
