"""Clutter-removal protocols and one trial of them.

Protocols (:class:`ProtocolConfig`):

- ``gpr`` (paper Sec. VI-C): a fixed ``subset_size`` (20) object subset of the object set is
  drawn once from the run seed; each trial pours ``objects_per_trial`` (10) of those 20 into the
  bin; the policy grasps until the bin is empty or ``max_attempts`` (15) grasps were attempted.
  SR = successes / attempts, CR = objects removed / objects in the bin.
- ``pile`` (VGN / GIGA-style): ``objects_per_trial`` (5) objects from the whole set per trial
  (the bin stays, unlike VGN's removed box); a round ends when the bin is empty or after
  ``max_consecutive_failures`` (2) failed attempts in a row. GSR and DR are the same ratios.

Decisions (documented here and in the results):

- *No grasp*: when the policy proposes no feasible grasp (none, or all wider than the
  opening / unreachable / below its confidence threshold), the bin is captured again (fresh
  sensor noise) and the policy asked again, up to ``max_looks`` views (3 in ``gpr``: the
  paper's robot keeps trying until 15 attempts; 1 in ``pile``, as VGN). If none of them gives
  a feasible grasp the trial ends with ``ended_by = 'no_grasp'``; that is logged but is *not*
  an attempt (SR counts executed grasps; CR pays for the objects left).
- *Objects that leave the bin* while pouring are not counted in the trial's total; objects
  pushed or dropped out of the bin during an attempt are removed from the scene but count
  as *not* removed in CR (only objects lifted by the gripper count), and the attempt is a
  success only if the gripper lifted an object.
- *Double picks*: an attempt that lifts two objects is one success and removes both.

Randomness: the objects and poses of trial t depend only on ``(seed, t)`` (the same for every
policy); attempt a of trial t draws its camera noise from ``(seed, t, a, 1)`` and the policy's
rng from ``(seed, t, a, 2)`` (its k-th extra look: ``(seed, t, a, 1, k)``, ``(seed, t, a, 2,
k)``), so a trial re-run from its start repeats itself exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpr_ros.core.errors import ConfigError
from gpr_ros.core.sim.camera import (
    CameraConfig,
    NoiseConfig,
)
from gpr_ros.core.sim.gripper import (
    ExecutionConfig,
    GripperSimConfig,
)
from gpr_ros.core.sim.world import BinConfig, SceneConfig, SceneObjectSpec
from gpr_ros.core.validation import (
    config_from_dict as _config_from_dict,
)
from gpr_ros.core.validation import (
    config_to_dict as _config_to_dict,
)

__all__ = [
    "GRASP_IMPRATIO",
    "PROTOCOL_NAMES",
    "ClutterConfig",
    "ProtocolConfig",
    "TrialResult",
    "select_subset",
    "trial_objects",
]

PROTOCOL_NAMES = ("gpr", "pile")


@dataclass(frozen=True)
class ProtocolConfig:
    """A clutter-removal protocol (use :meth:`named` for the two standard ones).

    :ivar name: ``'gpr'`` or ``'pile'`` (or a custom label).
    :ivar subset_size: objects drawn once per run from the set (``None``: the whole set).
    :ivar objects_per_trial: objects poured per trial.
    :ivar max_attempts: attempt limit per trial (``None``: none).
    :ivar max_consecutive_failures: failed attempts in a row that end a trial (``None``: none).
    :ivar max_looks: views of the bin before an attempt (a new capture each, fresh sensor
        noise, and the policy asked again) while the policy proposes no feasible grasp; after
        that many the trial ends with 'no grasp'.
    """

    name: str = "gpr"
    subset_size: int | None = 20
    objects_per_trial: int = 10
    max_attempts: int | None = 15
    max_consecutive_failures: int | None = None
    max_looks: int = 3

    def __post_init__(self) -> None:
        """Validate the values.

        :raises ConfigError: on non-positive counts or a trial that can never end.
        """
        for name in ("subset_size", "objects_per_trial", "max_attempts",
                     "max_consecutive_failures", "max_looks"):
            value = getattr(self, name)
            if value is None and name not in ("objects_per_trial", "max_looks"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ProtocolConfig.{name} must be an int >= 1, got {value!r}")
        if self.max_attempts is None and self.max_consecutive_failures is None:
            raise ConfigError("ProtocolConfig needs max_attempts or max_consecutive_failures")
        if self.subset_size is not None and self.subset_size < self.objects_per_trial:
            raise ConfigError("ProtocolConfig.subset_size must be >= objects_per_trial")

    @classmethod
    def named(cls, name: str) -> ProtocolConfig:
        """Return a standard protocol.

        :param name: ``'gpr'`` (10 of 20 objects, 15 attempts, 3 looks) or ``'pile'`` (5
            objects, two consecutive failures, 1 look).
        :return: the protocol.
        :raises ConfigError: on another name.
        """
        if name == "gpr":
            return cls()
        if name == "pile":
            return cls(name="pile", subset_size=None, objects_per_trial=5, max_attempts=None,
                       max_consecutive_failures=2, max_looks=1)
        raise ConfigError(f"unknown protocol {name!r}: expected one of {PROTOCOL_NAMES}")

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain Python values.

        :return: ``{field: value}``.
        """
        return _config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProtocolConfig:
        """Build from a mapping; missing keys take their defaults.

        :param data: ``{field: value}``.
        :return: the configuration.
        """
        result: ProtocolConfig = _config_from_dict(cls, data)
        return result


#: MuJoCo frictional-to-normal impedance ratio (elliptic cones) of the grasping simulation.
#: At 1 (MuJoCo's default, kept for pouring dataset scenes) friction is as soft as the normal
#: contact and a held object creeps out under its own weight even inside the friction cone;
#: 10 is the value MuJoCo's documentation and Menagerie's grasping scenes use against slip.
#: The friction coefficients, and so the friction limit itself, are unchanged.
GRASP_IMPRATIO = 10.0


@dataclass(frozen=True)
class ClutterConfig:
    """Everything a clutter-removal trial needs besides the policy and the objects.

    :ivar protocol: the protocol.
    :ivar camera: the camera.
    :ivar noise: sensor noise (``enabled=False`` for clean clouds).
    :ivar bin: the bin.
    :ivar scene: simulation and pouring settings (``num_objects`` is ignored). The default
        differs from :class:`SceneConfig`'s in one value: ``impratio`` =
        :data:`GRASP_IMPRATIO`, so that a grasp inside its friction cone holds instead of
        creeping out of the fingers (MuJoCo's soft friction constraints let a load below the
        friction limit slide at the default ratio of 1; README, "Simulated clutter removal").
    :ivar gripper: the simulated gripper.
    :ivar execution: how grasps are executed.
    :ivar min_points: a cloud with fewer points counts as an empty bin view (no grasp).
    """

    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    bin: BinConfig = field(default_factory=BinConfig)
    scene: SceneConfig = field(default_factory=lambda: SceneConfig(impratio=GRASP_IMPRATIO))
    gripper: GripperSimConfig = field(default_factory=GripperSimConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    min_points: int = 50

    def to_dict(self) -> dict[str, Any]:
        """Return nested plain Python values.

        :return: ``{section: {field: value}}``.
        """
        return {
            "protocol": self.protocol.to_dict(), "camera": self.camera.to_dict(),
            "noise": self.noise.to_dict(), "bin": self.bin.to_dict(),
            "scene": self.scene.to_dict(), "gripper": self.gripper.to_dict(),
            "execution": self.execution.to_dict(), "min_points": self.min_points,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClutterConfig:
        """Build from nested mappings; missing keys take their defaults.

        :param data: as returned by :meth:`to_dict`.
        :return: the configuration.
        :raises ConfigError: on unknown sections or invalid values.
        """
        sections: dict[str, Any] = {
            "protocol": ProtocolConfig, "camera": CameraConfig, "noise": NoiseConfig,
            "bin": BinConfig, "scene": SceneConfig, "gripper": GripperSimConfig,
            "execution": ExecutionConfig,
        }
        unknown = set(data) - set(sections) - {"min_points"}
        if unknown:
            raise ConfigError(f"unknown ClutterConfig section(s) {sorted(unknown)}")
        kwargs: dict[str, Any] = {k: sections[k].from_dict(v) for k, v in data.items()
                                  if k in sections}
        if "min_points" in data:
            kwargs["min_points"] = int(data["min_points"])
        return cls(**kwargs)


@dataclass(frozen=True)
class TrialResult:
    """Totals of one trial.

    :ivar trial: trial index.
    :ivar poured: objects poured.
    :ivar objects_total: objects in the bin after pouring (the CR denominator).
    :ivar attempts: executed grasp attempts.
    :ivar successes: successful attempts.
    :ivar removed: objects lifted out by the gripper.
    :ivar ended_by: ``'cleared'``, ``'max_attempts'``, ``'consecutive_failures'``,
        ``'no_grasp'`` or ``'error'``.
    :ivar records: one dict per attempt (and one for a final no-grasp), JSON-ready.
    :ivar sim_time: simulated time of the trial (pouring and attempts), s.
    :ivar wall_time: wall-clock time of the trial, s.
    """

    trial: int
    poured: int
    objects_total: int
    attempts: int
    successes: int
    removed: int
    ended_by: str
    records: tuple[dict[str, Any], ...]
    sim_time: float
    wall_time: float


def select_subset(pool: Sequence[SceneObjectSpec], protocol: ProtocolConfig,
                  seed: int) -> tuple[SceneObjectSpec, ...]:
    """Draw the run's object subset (the paper's 20 objects) from the set.

    :param pool: the object set, in a stable order.
    :param protocol: gives the subset size.
    :param seed: run seed.
    :return: the subset (the whole pool when ``subset_size`` is ``None`` or >= the pool).
    :raises ConfigError: if the pool is smaller than ``objects_per_trial``.
    """
    if len(pool) < protocol.objects_per_trial:
        raise ConfigError(f"the object set has {len(pool)} objects; protocol "
                          f"{protocol.name!r} pours {protocol.objects_per_trial} per trial")
    if protocol.subset_size is None or protocol.subset_size >= len(pool):
        return tuple(pool)
    rng = np.random.default_rng([seed, 0x5EB5E7])
    idx = np.sort(rng.choice(len(pool), protocol.subset_size, replace=False))
    return tuple(pool[int(i)] for i in idx)


def trial_objects(subset: Sequence[SceneObjectSpec], protocol: ProtocolConfig, seed: int,
                  trial: int) -> tuple[SceneObjectSpec, ...]:
    """Draw the objects poured in one trial (independent of the policy).

    :param subset: the run's subset (:func:`select_subset`).
    :param protocol: gives the count.
    :param seed: run seed.
    :param trial: trial index.
    :return: the objects in pouring order.
    """
    rng = np.random.default_rng([seed, trial, 0])
    idx = rng.choice(len(subset), protocol.objects_per_trial, replace=False)
    return tuple(subset[int(i)] for i in idx)
