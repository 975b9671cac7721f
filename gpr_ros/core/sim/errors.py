"""Typed exceptions raised by :mod:`gpr_ros.core.sim`.

Invalid configuration values raise :class:`gpr_ros.core.errors.ConfigError` (shared with the
rest of the core); everything that goes wrong while building or running a simulation raises a
:class:`SimulationError`.
"""

from __future__ import annotations

from gpr_ros.core.errors import GprError

__all__ = ["ModelBuildError", "SimulationError", "UnstableSimulationError"]


class SimulationError(GprError):
    """A MuJoCo world could not be built, stepped or observed as requested."""


class ModelBuildError(SimulationError, ValueError):
    """The MuJoCo model could not be compiled (degenerate mesh, bad object spec)."""


class UnstableSimulationError(SimulationError):
    """The simulation diverged (MuJoCo reported bad accelerations, positions or velocities)."""
