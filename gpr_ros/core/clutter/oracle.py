"""Ground-truth oracle policy: the annotated grasps of the objects as they lie now.

The oracle is not a grasp detector. It asks the simulated world where every object is, moves
each object's annotated grasps (paper Sec. IV-A, the dataset's annotation, cached per object)
by its pose and keeps those the dataset's labelling keeps for an observed scene
(:func:`~gpr_ros.core.dataset.labels.label_scene`: free of the other objects and the bin
along the whole approach, from the camera's side, with an observed contact), best
Ferrari–Canny score first. Executing them tells what the simulated gripper and executor
achieve with grasps as good as the annotation: the ceiling the benchmark puts on any policy,
and the yardstick that separates a model's errors from the executor's.

It needs the world's state, which a real robot does not have, so it runs in the in-process
benchmark only (``gpr-ros bench clutter --policies oracle,...``), not through the ROS graph.
The runner hands the world over before each call (:meth:`OraclePolicy.see`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from gpr_ros.core.clutter.errors import PolicyUnavailableError
from gpr_ros.core.grasp.grasps import Grasps

if TYPE_CHECKING:  # pragma: no cover
    from gpr_ros.core.sim.camera import Observation
    from gpr_ros.core.sim.world import BinConfig, BinWorld

__all__ = ["OraclePolicy"]

#: Points of the observed cloud labelled per call (the dataset's scene size).
LABEL_POINTS = 16384


class OraclePolicy:
    """Annotated grasps of the objects in the bin (see the module docstring).

    :param object_set: ``'similar'``, ``'novel'`` or a mesh folder: where the objects poured
        come from (their annotations are made or read from the cache).
    :param cache_dir: object and annotation cache (default ``$GPR_ROS_CACHE`` or
        ``~/.cache/gpr_ros``).
    :param max_grasps: grasps returned per call, best first.
    :param units: units of the meshes of a folder.
    """

    name = "oracle"

    def __init__(self, object_set: str, cache_dir: Path | str | None = None,
                 max_grasps: int = 20, units: str = "m") -> None:
        """Resolve the object set (annotations are made on first use; see the class)."""
        from gpr_ros.core.dataset.generate import GenerationConfig, default_cache_dir
        from gpr_ros.core.dataset.objects import ObjectConfig, resolve_object_set

        if not object_set:
            raise PolicyUnavailableError(
                "policy 'oracle' needs the object set the objects come from")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.config = GenerationConfig(num_scenes=1, object_set=str(object_set),
                                       objects=ObjectConfig(user_units=units))
        self.models = {m.name: m for m in resolve_object_set(
            str(object_set), self.cache_dir, self.config.objects, self.config.split_seed)}
        self.max_grasps = int(max_grasps)
        self._annotations: dict[str, Any] = {}
        self._world: BinWorld | None = None
        self._observation: Observation | None = None
        #: the bin's obstacle points, made once per bin configuration
        self._bin: tuple[BinConfig, NDArray[np.float64]] | None = None

    def see(self, world: BinWorld, observation: Observation) -> None:
        """The world and the observation the next call answers for (set by the runner).

        :param world: the simulated world.
        :param observation: the cloud handed to the next call, with its per-point object
            indices and camera pose.
        """
        self._world = world
        self._observation = observation

    def _annotation(self, name: str) -> Any:
        if name not in self._annotations:
            from gpr_ros.core.dataset.generate import annotate_model

            model = self.models.get(name)
            if model is None:
                raise PolicyUnavailableError(
                    f"policy 'oracle': object {name!r} is not in its object set")
            self._annotations[name] = annotate_model(model, self.config, self.cache_dir)
        return self._annotations[name]

    def __call__(self, points_camera: NDArray[np.floating], rng: np.random.Generator) -> Grasps:
        """The annotated grasps that fit the scene now, best score first, camera frame.

        :param points_camera: the observed cloud (the observation given to :meth:`see`).
        :param rng: picks the labelled points when the cloud has more than
            :data:`LABEL_POINTS`.
        :return: grasps (score = Ferrari–Canny Q), best first; empty when none fits.
        :raises PolicyUnavailableError: when no world was handed over.
        """
        grasps, _ = self.labelled(rng)
        return grasps[: self.max_grasps] if len(grasps) else grasps

    def labelled(self, rng: np.random.Generator) -> tuple[Grasps, NDArray[np.int32]]:
        """Every annotated grasp that fits the scene now (see :meth:`__call__`), best first,
        with the scene index of the object each one grasps.

        :param rng: picks the labelled points when the cloud has more than
            :data:`LABEL_POINTS`.
        :return: ``(grasps, object_index)``, camera frame, all of them (no ``max_grasps``).
        :raises PolicyUnavailableError: when no world was handed over.
        """
        from gpr_ros.core.dataset.generate import bin_obstacle_points, label_source
        from gpr_ros.core.dataset.labels import label_scene

        world, obs = self._world, self._observation
        if world is None or obs is None:
            raise PolicyUnavailableError(
                "policy 'oracle' needs the simulated world: it runs in the in-process "
                "benchmark only")
        if len(obs) == 0:
            return Grasps.empty(), np.zeros(0, dtype=np.int32)
        poses = world.object_poses()
        sources = [label_source(k, poses[k], self._annotation(spec.name))
                   for k, spec in enumerate(world.objects) if world.in_scene[k]]
        if self._bin is None or self._bin[0] != world.bin_config:
            self._bin = (world.bin_config, bin_obstacle_points(world.bin_config))
        pick = (np.arange(len(obs)) if len(obs) <= LABEL_POINTS
                else np.sort(rng.choice(len(obs), size=LABEL_POINTS, replace=False)))
        labels = label_scene(obs.points[pick], obs.object_index[pick], obs.T_world_camera,
                             sources, self._bin[1], self.config.gripper, self.config.labels)
        grasps = labels.grasps
        if len(grasps) == 0:
            return grasps, np.zeros(0, dtype=np.int32)
        order = np.argsort(-grasps.score, kind="stable")
        return grasps[order], labels.grasp_object[order]
