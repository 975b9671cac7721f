"""Grasp policies for clutter removal and their name registry.

A policy maps a single-view cloud in the camera optical frame to grasps in the same frame,
best first (:class:`GraspPolicy`). Built-in names:

- ``gpr``: the GPR network, stage 2 (refined) grasps;
- ``stage1``: the GPR network, stage-1 proposals only (no refinement);
- ``antipodal``: :func:`gpr_ros.core.baselines.antipodal.detect_antipodal`;
- ``random``: :func:`gpr_ros.core.baselines.random_grasps.random_grasps`;
- ``oracle``: the annotated (ground-truth) grasps of the objects where they lie
  (:mod:`gpr_ros.core.clutter.oracle`): the executor's ceiling; in-process only, since it
  reads the simulated world (a policy with a ``see(world, observation)`` method is handed
  both before each call).

A name of the form ``package.module:factory`` imports ``factory`` and calls it with the
:class:`PolicyContext`; it must return a :class:`GraspPolicy`. :func:`register_policy` adds
names programmatically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import importlib
from pathlib import Path
import re
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from gpr_ros.core.baselines.antipodal import AntipodalConfig, detect_antipodal
from gpr_ros.core.baselines.random_grasps import RandomGraspConfig, random_grasps
from gpr_ros.core.clutter.errors import PolicyUnavailableError
from gpr_ros.core.grasp.grasps import STAGE_1, STAGE_2, Grasps
from gpr_ros.core.grasp.gripper import GripperModel
from gpr_ros.core.network.config import DEFAULT_MIN_SCORE, DEFAULT_POSE_PASSES

__all__ = [
    "DEFAULT_MIN_SCORE",
    "AntipodalPolicy",
    "GPRPolicy",
    "GraspPolicy",
    "PolicyContext",
    "RandomPolicy",
    "available_policies",
    "make_policy",
    "register_policy",
]


@runtime_checkable
class GraspPolicy(Protocol):
    """Anything that proposes grasps for a cloud.

    :ivar name: a short name used in the results.
    """

    name: str

    def __call__(self, points_camera: NDArray[np.floating], rng: np.random.Generator) -> Grasps:
        """Propose grasps.

        :param points_camera: (N, 3) cloud in the camera optical frame, m.
        :param rng: random generator for any sampling the policy does.
        :return: grasps in the camera frame, best first (may be empty).
        """
        ...


@dataclass(frozen=True)
class PolicyContext:
    """What factories may use to build a policy.

    :ivar model_path: GPR checkpoint, or ``None`` when there is none.
    :ivar device: torch device for network policies.
    :ivar gripper: the gripper.
    :ivar max_grasps: most grasps a policy should return.
    :ivar min_score: network policies (``gpr``, ``stage1``) drop grasps scoring below this
        (:data:`DEFAULT_MIN_SCORE`; the ``gpr_inference`` node's ``min_score``).
    :ivar threads: torch CPU threads of network policies. Float32 sums depend on the thread
        count, so results are reproducible (and equal to the ROS graph's, whose inference
        node runs 1 thread by default) only for the same count.
    :ivar object_set: the object set of the run (``'similar'``, ``'novel'`` or a folder),
        for policies that need the objects themselves (``oracle``).
    :ivar cache_dir: object and annotation cache (``None``: the default).
    :ivar units: units of the meshes of a folder object set.
    :ivar pose_passes: stage-2 passes over the pose of network policies
        (:data:`~gpr_ros.core.network.config.DEFAULT_POSE_PASSES`; the ``gpr_inference``
        node's ``pose_passes``).
    """

    model_path: Path | None = None
    device: str = "cpu"
    gripper: GripperModel = field(default_factory=GripperModel)
    max_grasps: int = 20
    min_score: float = DEFAULT_MIN_SCORE
    threads: int = 1
    object_set: str = ""
    cache_dir: Path | None = None
    units: str = "m"
    pose_passes: int = DEFAULT_POSE_PASSES


class GPRPolicy:
    """GPR grasps from a :class:`~gpr_ros.core.network.inference.GraspDetector`.

    :param detector: the detector.
    :param stage: :data:`STAGE_2` (refined) or :data:`STAGE_1` (proposals).
    :param max_grasps: grasps requested per cloud.
    :param name: the policy name.
    :param min_score: grasps scoring below this are not proposed.
    """

    def __init__(self, detector: object, stage: int = STAGE_2, max_grasps: int = 20,
                 name: str = "gpr", min_score: float = DEFAULT_MIN_SCORE) -> None:
        """Wrap a detector (see the class docstring)."""
        self.detector = detector
        self.stage = stage
        self.max_grasps = max_grasps
        self.name = name
        self.min_score = float(min_score)

    def __call__(self, points_camera: NDArray[np.floating], rng: np.random.Generator) -> Grasps:
        """Detect grasps (the detector's sampling is seeded by the detector itself).

        :param points_camera: (N, 3) cloud, camera frame.
        :param rng: unused.
        :return: grasps, best first.
        """
        if len(points_camera) == 0:
            return Grasps.empty()
        grasps: Grasps = self.detector.detect(  # type: ignore[attr-defined]
            points_camera, max_grasps=self.max_grasps, stage=self.stage,
            min_score=self.min_score)
        return grasps


class AntipodalPolicy:
    """The analytic antipodal baseline.

    :param config: its settings.
    """

    name = "antipodal"

    def __init__(self, config: AntipodalConfig | None = None) -> None:
        """Keep the settings."""
        self.config = config if config is not None else AntipodalConfig()

    def __call__(self, points_camera: NDArray[np.floating], rng: np.random.Generator) -> Grasps:
        """Detect antipodal grasps.

        :param points_camera: (N, 3) cloud, camera frame.
        :param rng: sampling.
        :return: grasps, best first.
        """
        return detect_antipodal(points_camera, rng, self.config)


class RandomPolicy:
    """Random grasps on the cloud.

    :param config: its settings.
    """

    name = "random"

    def __init__(self, config: RandomGraspConfig | None = None) -> None:
        """Keep the settings."""
        self.config = config if config is not None else RandomGraspConfig()

    def __call__(self, points_camera: NDArray[np.floating], rng: np.random.Generator) -> Grasps:
        """Draw random grasps.

        :param points_camera: (N, 3) cloud, camera frame.
        :param rng: sampling.
        :return: grasps in random order.
        """
        return random_grasps(points_camera, rng, self.config)


PolicyFactory = Callable[[PolicyContext], GraspPolicy]


def _gpr_factory(stage: int, name: str) -> PolicyFactory:
    def build(context: PolicyContext) -> GraspPolicy:
        path = context.model_path
        if path is None or not Path(path).is_file():
            raise PolicyUnavailableError(
                f"policy {name!r} needs a GPR checkpoint; none found at "
                f"{path if path is not None else 'the default location'} (pass --model)")
        import torch

        from gpr_ros.core.network.inference import GraspDetector  # torch only when needed

        torch.set_num_threads(max(1, int(context.threads)))
        detector = GraspDetector.from_checkpoint(path, device=context.device,
                                                 pose_passes=context.pose_passes)
        return GPRPolicy(detector, stage, context.max_grasps, name, context.min_score)

    return build


def _oracle(context: PolicyContext) -> GraspPolicy:
    from gpr_ros.core.clutter.oracle import OraclePolicy  # the dataset code only when needed

    return OraclePolicy(context.object_set, context.cache_dir, context.max_grasps,
                        context.units)


_REGISTRY: dict[str, PolicyFactory] = {
    "gpr": _gpr_factory(STAGE_2, "gpr"),
    "stage1": _gpr_factory(STAGE_1, "stage1"),
    "antipodal": lambda context: AntipodalPolicy(
        AntipodalConfig(gripper=context.gripper, max_grasps=context.max_grasps)),
    "random": lambda context: RandomPolicy(
        RandomGraspConfig(max_width=context.gripper.max_width)),
    "oracle": _oracle,
}
#: Names that need a GPR checkpoint.
NETWORK_POLICIES = ("gpr", "stage1")
_PLUGIN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def register_policy(name: str, factory: PolicyFactory) -> None:
    """Register (or replace) a policy name.

    :param name: the name (no ``:``).
    :param factory: builds the policy from a :class:`PolicyContext`.
    :raises PolicyUnavailableError: on an empty name or one with ``:``.
    """
    if not name or ":" in name:
        raise PolicyUnavailableError(f"policy names must be non-empty without ':', got {name!r}")
    _REGISTRY[name] = factory


def available_policies() -> tuple[str, ...]:
    """Return the registered policy names."""
    return tuple(_REGISTRY)


def make_policy(name: str, context: PolicyContext | None = None) -> GraspPolicy:
    """Build a policy by name or ``module:factory``.

    :param name: a registered name or ``package.module:factory``.
    :param context: what the factory may use.
    :return: the policy (its ``name`` is set to ``name`` when it has none).
    :raises PolicyUnavailableError: on an unknown name, an import failure, a missing model or
        a factory that does not return a policy.
    """
    ctx = context if context is not None else PolicyContext()
    if name in _REGISTRY:
        return _REGISTRY[name](ctx)
    if not _PLUGIN.match(name):
        raise PolicyUnavailableError(
            f"unknown policy {name!r}: expected one of {', '.join(_REGISTRY)} or "
            "'package.module:factory'")
    module_name, attr = name.split(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise PolicyUnavailableError(f"cannot load policy {name!r}: {err}") from None
    policy = factory(ctx)
    if not callable(policy):
        raise PolicyUnavailableError(f"{name!r} did not return a callable policy")
    if not getattr(policy, "name", None):
        try:
            policy.name = name
        except AttributeError:
            pass
    return policy
