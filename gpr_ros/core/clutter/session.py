"""The two halves of a clutter-removal trial, shared by the in-process runner and the ROS graph.

- :class:`TrialWorld` owns the simulated bin of one trial: it pours the trial's objects
  deterministically, observes the bin and executes grasps. In-process it is driven by
  :func:`~.protocol.run_trial`; over ROS the simulated-world node wraps it.
- :class:`TrialBook` keeps the protocol's books of one trial: when it ends, what each attempt
  counted for, SR / CR. In-process :func:`~.protocol.run_trial` uses it; over ROS the
  clutter-removal supervisor does, with outcomes that arrive as action results.

Because both paths go through these two classes, the same seed gives the same trial whether it
runs in one process or as a graph of ROS nodes (the supervisor's totals are tested to equal
the in-process benchmark's).

Randomness of trial t (see :mod:`.protocol`): objects and poses from ``(seed, t)``, the camera
noise of the a-th executed attempt from ``(seed, t, a, 1)`` and the policy's rng from
``(seed, t, a, 2)``; a k-th extra look before the same attempt appends ``k``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
import time
from typing import Any

import numpy as np

from gpr_ros.core.clutter.policies import GraspPolicy
from gpr_ros.core.clutter.protocol import (
    ClutterConfig,
    ProtocolConfig,
    TrialResult,
    trial_objects,
)
from gpr_ros.core.grasp.grasps import Grasps
from gpr_ros.core.sim.camera import Observation
from gpr_ros.core.sim.errors import SimulationError
from gpr_ros.core.sim.gripper import (
    AttemptResult,
    Outcome,
    SimGripper,
    execute_grasp,
    precheck_grasp,
)
from gpr_ros.core.sim.world import BinWorld, SceneObjectSpec, SceneState

__all__ = ["TrialBook", "TrialWorld", "executed", "object_pool", "run_trial"]

#: Why a trial ends (``TrialResult.ended_by``, ``trial_end`` records).
ENDINGS = ("cleared", "max_attempts", "consecutive_failures", "no_grasp", "error")


class TrialWorld:
    """The simulated bin of one trial: pour, observe, execute (see the module docstring).

    :param config: the benchmark configuration (camera, noise, bin, scene, gripper,
        execution; the protocol gives the number of objects poured).
    """

    def __init__(self, config: ClutterConfig) -> None:
        """Keep the configuration; :meth:`reset` builds the world."""
        self.config = config
        self.gripper = SimGripper(config.gripper)
        self._world: BinWorld | None = None
        self.seed = 0
        self.trial = 0
        self.attempts = 0
        self.objects_total = 0
        self.looks = 0  # observations since the attempt began (begin_attempt, execute, pour)
        self.objects: tuple[SceneObjectSpec, ...] = ()
        self.pour_state: SceneState | None = None

    @property
    def world(self) -> BinWorld:
        """The current world.

        :raises SimulationError: before the first :meth:`reset`.
        """
        if self._world is None:
            raise SimulationError("no scene yet: reset the trial world first")
        return self._world

    @property
    def ready(self) -> bool:
        """Whether a scene was poured."""
        return self._world is not None

    @property
    def bin_empty(self) -> bool:
        """Whether no object is left in the scene."""
        return not bool(self.world.in_scene.any())

    def reset(self, subset: Sequence[SceneObjectSpec], seed: int, trial: int) -> dict[str, Any]:
        """Build a new world and pour trial ``trial``'s objects.

        :param subset: the run's subset (:func:`~.protocol.select_subset`).
        :param seed: run seed.
        :param trial: trial index.
        :return: ``{'objects', 'poured', 'objects_total', 'pour_sim_time',
            'pour_wall_time'}``.
        :raises SimulationError: if the world cannot be built or the pour diverges.
        """
        objects = trial_objects(subset, self.config.protocol, seed, trial)
        return self.pour(objects, seed, trial)

    def pour(self, objects: Sequence[SceneObjectSpec], seed: int, trial: int) -> dict[str, Any]:
        """Build a new world and pour the given objects with the trial's pose rng.

        :param objects: the objects, in pouring order.
        :param seed: run seed.
        :param trial: trial index.
        :return: as :meth:`reset`.
        """
        self._world = None
        world = BinWorld(self.config.bin, self.config.scene, spec_hooks=[self.gripper.spec_hook])
        state = world.drop_objects(objects, np.random.default_rng([seed, trial, 1]))
        self.gripper.park(world)
        self._world = world
        self.seed, self.trial, self.attempts, self.looks = int(seed), int(trial), 0, 0
        self.objects = tuple(objects)
        self.objects_total = int(world.in_scene.sum())
        self.pour_state = state
        return {"objects": [o.name for o in objects], "poured": len(objects),
                "objects_total": self.objects_total, "pour_sim_time": state.sim_time,
                "pour_wall_time": state.wall_time}

    def begin_attempt(self) -> None:
        """Make the next :meth:`observe` the first view of the next attempt (an executed
        attempt does this too; a ROS supervisor calls it so a re-done attempt repeats)."""
        self.looks = 0

    def observe(self, noise: bool = True) -> Observation:
        """Observe the bin for the next attempt (gripper hidden).

        The noise of the k-th observation since the attempt began (:meth:`begin_attempt`, an
        executed attempt, the pour) depends on ``(seed, trial, attempts, k)`` only: a second
        look before the same attempt sees the same scene with fresh noise, and both the
        in-process run and the ROS graph (whose camera captures through the sim world) count
        their looks here.

        :param noise: apply the configured noise model (with the attempt's seed).
        :return: the observation in the camera frame.
        """
        key = [self.seed, self.trial, self.attempts, 1]
        if self.looks:
            key.append(self.looks)  # the first look keeps the seeds of single-look runs
        self.looks += 1
        rng = np.random.default_rng(key)
        return self.world.observe(self.config.camera, self.config.noise if noise else None,
                                  rng, self.gripper.camera_geomgroup())

    def policy_rng(self) -> np.random.Generator:
        """The policy's random generator for the latest look (:meth:`observe`)."""
        key = [self.seed, self.trial, self.attempts, 2]
        if self.looks > 1:
            key.append(self.looks - 1)
        return np.random.default_rng(key)

    def check(self, grasp_world: Grasps) -> tuple[Outcome, str] | None:
        """The checks made before anything moves.

        :param grasp_world: one grasp, world frame.
        :return: ``(outcome, message)`` when refused, else ``None``.
        """
        return precheck_grasp(grasp_world, self.world, self.gripper, self.config.execution)

    def first_feasible(self, grasps_world: Grasps) -> int:
        """Index of the best grasp passing :meth:`check`, −1 if none.

        :param grasps_world: ranked grasps, world frame.
        :return: the index.
        """
        for i in range(len(grasps_world)):
            if self.check(grasps_world[i]) is None:
                return i
        return -1

    def execute(self, grasp_world: Grasps) -> AttemptResult:
        """Execute one grasp; a refused grasp (stage ``check``) changes nothing.

        :param grasp_world: one grasp, world frame.
        :return: the result; executed attempts advance the attempt counter.
        """
        result = execute_grasp(self.world, self.gripper, grasp_world, self.config.execution)
        if executed(result):
            self.attempts += 1
            self.looks = 0
        return result

    def object_name(self, index: int) -> str | None:
        """Name of scene object ``index`` (``None`` for −1)."""
        return self.world.objects[index].name if index >= 0 else None


def executed(result: AttemptResult) -> bool:
    """Whether an attempt moved anything (refusals by the checks did not).

    :param result: the attempt's result.
    :return: ``False`` for a refusal.
    """
    return result.stage != "check"


@dataclass
class TrialBook:
    """The protocol's books of one trial.

    :ivar protocol: the protocol.
    :ivar trial: trial index.
    :ivar objects_total: objects in the bin after pouring (CR denominator).
    """

    protocol: ProtocolConfig
    trial: int
    objects_total: int
    attempts: int = 0
    successes: int = 0
    removed: int = 0
    consecutive_failures: int = 0
    ended_by: str | None = None
    records: list[dict[str, Any]] = field(default_factory=list)

    def end_reason(self, bin_empty: bool) -> str | None:
        """Why the trial ends before the next attempt, or ``None`` to go on.

        :param bin_empty: no object left in the bin.
        :return: ``'cleared'``, ``'max_attempts'``, ``'consecutive_failures'`` or ``None``
            (also the reason already recorded, once ended).
        """
        if self.ended_by is not None:
            return self.ended_by
        p = self.protocol
        if bin_empty:
            return "cleared"
        if p.max_attempts is not None and self.attempts >= p.max_attempts:
            return "max_attempts"
        if (p.max_consecutive_failures is not None
                and self.consecutive_failures >= p.max_consecutive_failures):
            return "consecutive_failures"
        return None

    def finish(self, reason: str) -> None:
        """Record the trial's end.

        :param reason: one of :data:`ENDINGS`.
        """
        self.ended_by = reason

    def no_grasp(self, record: Mapping[str, Any], proposed: int) -> dict[str, Any]:
        """Book a view without a feasible grasp: not an attempt, and the trial ends.

        :param record: the record's base fields (attempt, num_points, ...).
        :param proposed: grasps the policy proposed.
        :return: the complete record.
        """
        rec = dict(record)
        rec.update(outcome=Outcome.NO_GRASP.value, object=-1, object_name=None,
                   message="no feasible grasp proposed" if proposed else "no grasp proposed",
                   counted=False, sim_time=0.0, wall_time=0.0, lifted=[], fell_out=[],
                   pushed=[])
        self.records.append(rec)
        self.ended_by = "no_grasp"
        return rec

    def attempt(self, record: Mapping[str, Any], outcome: str, lifted: int) -> dict[str, Any]:
        """Book an executed attempt.

        :param record: every field of the record but ``counted``.
        :param outcome: the :class:`~gpr_ros.core.sim.gripper.Outcome` value.
        :param lifted: objects lifted out by it (a success counts at least one: a real robot
            reports no object ids).
        :return: the complete record.
        """
        rec = dict(record)
        rec.update(outcome=outcome, counted=True)
        self.attempts += 1
        if outcome == Outcome.SUCCESS.value:
            self.successes += 1
            self.removed += max(int(lifted), 1)
            self.consecutive_failures = 0
        else:
            self.consecutive_failures += 1
        self.records.append(rec)
        if outcome == Outcome.ERROR.value:
            self.ended_by = "error"
        return rec

    def replay(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Rebuild the books from a trial's logged records (resume after a restart).

        :param records: the trial's attempt records in order.
        """
        for rec in records:
            if rec.get("counted"):
                self.attempt(rec, str(rec["outcome"]), len(rec.get("lifted", ())))
            elif rec.get("outcome") == Outcome.NO_GRASP.value:
                self.records.append(dict(rec))
                self.ended_by = "no_grasp"


def run_trial(policy: GraspPolicy, subset: Sequence[SceneObjectSpec], config: ClutterConfig,
              seed: int, trial: int,
              on_attempt: Callable[[dict[str, Any]], None] | None = None,
              on_start: Callable[[dict[str, Any]], None] | None = None) -> TrialResult:
    """Run one trial of the configured protocol in this process.

    The policy sees the cloud as float32, exactly as a ``sensor_msgs/PointCloud2`` carries it,
    so the ROS graph reproduces the in-process run.

    :param policy: the grasp policy.
    :param subset: the run's object subset (:func:`~.protocol.select_subset`).
    :param config: the benchmark configuration.
    :param seed: run seed.
    :param trial: trial index.
    :param on_attempt: called with each attempt record as soon as it exists.
    :param on_start: called once the objects are poured, with ``{'objects', 'poured',
        'objects_total', ...}``.
    :return: the trial's totals and records.
    :raises SimulationError: if the world cannot be built or the pour diverges.
    """
    start = time.perf_counter()
    tw = TrialWorld(config)
    info = tw.reset(subset, seed, trial)
    if on_start is not None:
        on_start(info)
    assert tw.pour_state is not None
    sim_time = tw.pour_state.sim_time
    book = TrialBook(config.protocol, trial, tw.objects_total)
    while (reason := book.end_reason(tw.bin_empty)) is None:
        observe_time = policy_time = 0.0
        tw.begin_attempt()
        for _ in range(config.protocol.max_looks):  # new looks until a grasp is feasible
            t0 = time.perf_counter()
            obs = tw.observe()
            t1 = time.perf_counter()
            grasps = Grasps.empty()
            if len(obs) >= config.min_points:
                see = getattr(policy, "see", None)
                if callable(see):  # a policy that reads the world (the oracle)
                    see(tw.world, obs)
                grasps = policy(obs.points.astype(np.float32), tw.policy_rng())
            t2 = time.perf_counter()
            observe_time += t1 - t0
            policy_time += t2 - t1
            grasps_world = grasps.transformed(obs.T_world_camera) if len(grasps) else grasps
            index = tw.first_feasible(grasps_world)
            if index >= 0:
                break
        record: dict[str, Any] = {
            "attempt": book.attempts, "num_points": len(obs), "num_grasps": len(grasps),
            "grasp_rank": index, "looks": tw.looks, "observe_time": observe_time,
            "policy_time": policy_time,
        }
        if index < 0:
            rec = book.no_grasp(record, len(grasps))
        else:
            grasp = grasps_world[index]
            result = tw.execute(grasp.as_received())  # bit-identical to a ROS graph's grasp
            sim_time += result.sim_time
            record.update(result.to_dict())
            obj = record.pop("object_index")
            record.update(
                object=obj, object_name=tw.object_name(obj),
                grasp=dict(center=grasp.center[0].tolist(), approach=grasp.approach[0].tolist(),
                           closing=grasp.closing[0].tolist(), width=float(grasp.width[0]),
                           score=float(grasp.score[0])))
            rec = book.attempt(record, result.outcome.value, len(result.lifted))
        if on_attempt is not None:
            on_attempt(rec)
    book.finish(reason)
    return TrialResult(trial=trial, poured=len(tw.objects), objects_total=tw.objects_total,
                       attempts=book.attempts, successes=book.successes, removed=book.removed,
                       ended_by=reason, records=tuple(book.records), sim_time=sim_time,
                       wall_time=time.perf_counter() - start)


def object_pool(object_set: str, cache_dir: str | Path | None = None,
                units: str = "m") -> list[SceneObjectSpec]:
    """The objects of a set, ready to pour, in a stable order.

    :param object_set: ``'similar'``, ``'novel'`` or a folder of meshes.
    :param cache_dir: object cache (default ``$GPR_ROS_CACHE`` or ``~/.cache/gpr_ros``).
    :param units: units of the meshes in a folder.
    :return: the pool.
    :raises GprError: (a subclass) when the set cannot be resolved.
    """
    from gpr_ros.core.dataset.generate import _spec_of, default_cache_dir
    from gpr_ros.core.dataset.objects import ObjectConfig, resolve_object_set

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    models = resolve_object_set(str(object_set), cache, ObjectConfig(user_units=units))
    return [_spec_of(m) for m in models]
