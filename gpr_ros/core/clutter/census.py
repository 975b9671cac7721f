"""What a clutter-removal run left in the bin, and whether anything could have picked it.

A trial's CR counts every object left, whether the policy missed a grasp that was there or
the object lies where no grasp of this gripper fits (a flat can wider than the opening, a cup
on its side). The census tells the two apart after the fact, from the run's log alone:

1. **Replay.** The trial is poured again from its seed and the logged grasps are executed in
   order (as the run executed them, :meth:`~gpr_ros.core.grasp.grasps.Grasps.as_received`);
   the outcomes must repeat the log attempt by attempt, or the trial is reported as not
   replayed and left out. No policy runs, so a GPR run is censused without its model.
2. **Count.** For each object left when the trial ended, the annotated grasps (the dataset's
   annotation, as the oracle policy uses it: free of the other objects and the bin along the
   approach, from the camera's side) that also pass the executor's checks (width, reach,
   approach angle, workspace) are counted where the object lies now.
3. **Finish** (optional). The oracle then gets the attempts the protocol had left (at least
   one; :data:`UNLIMITED_FINISH_ATTEMPTS` without a limit) to clear the bin: the executor's
   verdict on whether the leftovers can be lifted.

Objects without a feasible annotated grasp at the end bound the CR of *any* policy that
ends the trial there; ``cr_bound`` says how far.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpr_ros.core.clutter.errors import ResultsLogError
from gpr_ros.core.clutter.protocol import ClutterConfig, select_subset
from gpr_ros.core.clutter.session import TrialWorld, executed
from gpr_ros.core.grasp.grasps import Grasps
from gpr_ros.core.sim.world import SceneObjectSpec

__all__ = ["UNLIMITED_FINISH_ATTEMPTS", "TrialCensus", "census_markdown", "census_trial",
           "refusal_kind", "run_census", "summarize_census", "write_census"]

#: Attempts of the oracle's finish when the protocol sets no attempt limit (``pile``; the
#: ``gpr`` protocol's limit is 15).
UNLIMITED_FINISH_ATTEMPTS = 15


@dataclass(frozen=True)
class TrialCensus:
    """The census of one trial.

    :ivar trial: trial index.
    :ivar replayed: the logged attempts repeated their outcomes.
    :ivar mismatch: what differed when not ``replayed`` (else ``''``).
    :ivar objects_total: objects in the bin after pouring.
    :ivar removed: objects the policy removed (from the replay).
    :ivar ended_by: how the logged trial ended.
    :ivar left: per object left: ``{'name', 'annotated', 'feasible', 'refused',
        'feasible_at_pour', 'finished'}`` (annotated grasps that fit the scene at the end, of
        those the ones the executor accepts, why it refuses the others (:func:`refusal_kind`
        → count), the feasible ones right after the pour, and whether the oracle's finish
        lifted it; ``None`` without a finish).
    :ivar finish_attempts: attempts the oracle made in the finish.
    """

    trial: int
    replayed: bool
    mismatch: str
    objects_total: int
    removed: int
    ended_by: str
    left: tuple[dict[str, Any], ...]
    finish_attempts: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"trial": self.trial, "replayed": self.replayed, "mismatch": self.mismatch,
                "objects_total": self.objects_total, "removed": self.removed,
                "ended_by": self.ended_by, "left": [dict(x) for x in self.left],
                "finish_attempts": self.finish_attempts}


def _logged_grasp(rec: Mapping[str, Any]) -> Grasps:
    """The logged grasp, bit for bit (JSON keeps every float64 bit; the validating
    constructor would normalize the directions again and move their last bits, and a
    grasp a bit away is, now and then, another outcome)."""
    g = rec["grasp"]
    center, approach, closing, width = (np.asarray([g[k]], dtype=np.float64)
                                        for k in ("center", "approach", "closing", "width"))
    Grasps(center, approach, closing, width)  # validates (finite, unit, orthogonal, width)
    return Grasps._from_valid(center, approach, closing, width,
                              np.asarray([g["score"]], dtype=np.float64),
                              np.zeros(1, dtype=np.int8), None)


#: Why the executor refuses a grasp, by the start of :func:`~..sim.gripper.precheck_grasp`'s
#: message (the rest: the approach path, into the floor or a wall).
_REFUSALS = (("grasp width", "width"), ("approach ", "approach_angle"),
             ("grasp centre", "workspace"), ("the pre-grasp pose is below", "floor"),
             ("the gripper would reach", "floor"), ("the approach would hit", "wall"))


def refusal_kind(message: str) -> str:
    """Short name of an executor refusal: width, approach_angle, workspace, floor, wall or
    other.

    :param message: the refusal's message.
    :return: the name.
    """
    for start, kind in _REFUSALS:
        if message.startswith(start):
            return kind
    return "other"


def _feasible_by_object(tw: TrialWorld, oracle: Any, rng: np.random.Generator
                        ) -> tuple[dict[int, int], dict[int, int], dict[int, dict[str, int]]]:
    """Annotated grasps that fit the scene now, those the executor's checks accept, and why
    it refuses the others, per object."""
    obs = tw.observe(noise=False)
    oracle.see(tw.world, obs)
    grasps, owner = oracle.labelled(rng)
    annotated: dict[int, int] = {}
    feasible: dict[int, int] = {}
    refused: dict[int, dict[str, int]] = {}
    if len(grasps):
        world = grasps.transformed(obs.T_world_camera)
        for i in range(len(world)):
            k = int(owner[i])
            annotated[k] = annotated.get(k, 0) + 1
            verdict = tw.check(world[i])
            if verdict is None:
                feasible[k] = feasible.get(k, 0) + 1
            else:
                why = refused.setdefault(k, {})
                kind = refusal_kind(verdict[1])
                why[kind] = why.get(kind, 0) + 1
    return annotated, feasible, refused


def census_trial(subset: Sequence[SceneObjectSpec], config: ClutterConfig, seed: int,
                 trial: Mapping[str, Any], oracle: Any, finish: bool = True) -> TrialCensus:
    """Replay one logged trial and count what it left (see the module docstring).

    :param subset: the run's object subset.
    :param config: the run's configuration (from the log's header).
    :param seed: the run's seed.
    :param trial: a :func:`~.runner.completed_trials` value (trial_end + attempt records).
    :param oracle: an :class:`~.oracle.OraclePolicy` of the run's object set.
    :param finish: let the oracle try to clear the bin afterwards.
    :return: the census.
    """
    index = int(trial["trial"])
    tw = TrialWorld(config)
    tw.reset(subset, seed, index)
    rng = np.random.default_rng([seed, index, 0xCE5])
    _, at_pour, _ = _feasible_by_object(tw, oracle, rng)
    removed_now: list[int] = []
    mismatch = ""
    for rec in trial.get("attempt_records", []):
        if not rec.get("counted"):
            continue
        if "grasp" not in rec:
            mismatch = f"attempt {rec.get('attempt')} logged no grasp"
            break
        result = tw.execute(_logged_grasp(rec).as_received())
        lifted = sorted(int(i) for i in result.lifted)
        if (not executed(result) or result.outcome.value != rec.get("outcome")
                or lifted != sorted(int(i) for i in rec.get("lifted") or [])):
            mismatch = (f"attempt {rec.get('attempt')}: logged {rec.get('outcome')} "
                        f"{rec.get('lifted')}, replayed {result.outcome.value} {lifted}")
            break
        removed_now.extend(lifted)
    if mismatch:
        return TrialCensus(trial=index, replayed=False, mismatch=mismatch,
                           objects_total=tw.objects_total, removed=len(removed_now),
                           ended_by=str(trial.get("ended_by")), left=(), finish_attempts=0)
    left_idx = [int(k) for k in np.flatnonzero(tw.world.in_scene)]
    annotated, feasible, refused = (_feasible_by_object(tw, oracle, rng) if left_idx
                                    else ({}, {}, {}))
    left = {k: {"name": tw.object_name(k), "annotated": annotated.get(k, 0),
                "feasible": feasible.get(k, 0), "refused": refused.get(k, {}),
                "feasible_at_pour": at_pour.get(k, 0), "finished": None} for k in left_idx}
    attempts = 0
    if finish and left:
        for k in left:
            left[k]["finished"] = False
        limit = config.protocol.max_attempts or UNLIMITED_FINISH_ATTEMPTS
        budget = max(1, limit - tw.attempts)
        while attempts < budget and not tw.bin_empty:
            obs = tw.observe(noise=False)
            oracle.see(tw.world, obs)
            grasps = oracle(obs.points.astype(np.float32), rng)
            grasps_world = grasps.transformed(obs.T_world_camera) if len(grasps) else grasps
            i = tw.first_feasible(grasps_world)
            if i < 0:
                break
            result = tw.execute(grasps_world[i].as_received())
            attempts += 1
            for k in result.lifted:
                if int(k) in left:
                    left[int(k)]["finished"] = True
    return TrialCensus(trial=index, replayed=True, mismatch="",
                       objects_total=tw.objects_total, removed=len(removed_now),
                       ended_by=str(trial.get("ended_by")), left=tuple(left.values()),
                       finish_attempts=attempts)


def run_census(records: Sequence[Mapping[str, Any]], pool: Sequence[SceneObjectSpec],
               policy: str, oracle: Any, finish: bool = True,
               progress: Callable[[TrialCensus], None] | None = None) -> list[TrialCensus]:
    """Census every completed trial of one policy in a run's log.

    :param records: the log's records (header first).
    :param pool: the run's object set, in the header's order.
    :param policy: which policy's trials.
    :param oracle: an :class:`~.oracle.OraclePolicy` of the run's object set.
    :param finish: see :func:`census_trial`.
    :param progress: called with each trial's census.
    :return: the censuses, by trial.
    :raises ResultsLogError: without a header, when the pool is not the header's, or when the
        policy has no completed trial.
    """
    from gpr_ros.core.clutter.runner import completed_trials

    headers = [r for r in records if r.get("type") == "header"]
    if not headers:
        raise ResultsLogError("the log has no header line: not a gpr-ros bench clutter log")
    header = headers[0]
    if [o.name for o in pool] != list(header.get("objects") or []):
        raise ResultsLogError("the object set does not match the one the run logged")
    config = ClutterConfig.from_dict(header["config"])
    seed = int(header["seed"])
    subset = select_subset(pool, config.protocol, seed)
    trials = sorted((t for (p, _), t in completed_trials(dict(r) for r in records).items()
                     if p == policy),
                    key=lambda t: int(t["trial"]))
    if not trials:
        raise ResultsLogError(f"the log has no completed trial of policy {policy!r}")
    out = []
    for trial in trials:
        result = census_trial(subset, config, seed, trial, oracle, finish)
        out.append(result)
        if progress is not None:
            progress(result)
    return out


def summarize_census(censuses: Sequence[TrialCensus]) -> dict[str, Any]:
    """Totals over the replayed trials.

    :param censuses: :func:`run_census` output.
    :return: ``{'trials', 'not_replayed', 'objects_total', 'removed', 'left',
        'left_without_feasible', 'left_never_feasible', 'fell_out', 'left_without_annotated',
        'finished', 'cr', 'cr_bound', 'cr_feasible', 'objects'}``: ``cr_bound`` = 1 − (left
        without a feasible annotated grasp) / total, ``cr_feasible`` = removed / (total −
        left without one), ``left_never_feasible``: left without one both right after the
        pour and at the end; ``objects`` per name: ``{'left', 'without_feasible', 'never',
        'finished'}``.
    """
    ok = [c for c in censuses if c.replayed]
    total = sum(c.objects_total for c in ok)
    removed = sum(c.removed for c in ok)
    left = [x for c in ok for x in c.left]
    no_feasible = sum(1 for x in left if x["feasible"] == 0)
    never = sum(1 for x in left if x["feasible"] == 0 and x.get("feasible_at_pour", 1) == 0)
    objects: dict[str, dict[str, int]] = {}
    for x in left:
        o = objects.setdefault(str(x["name"]), {"left": 0, "without_feasible": 0, "never": 0,
                                                "finished": 0})
        o["left"] += 1
        o["without_feasible"] += int(x["feasible"] == 0)
        o["never"] += int(x["feasible"] == 0 and x.get("feasible_at_pour", 1) == 0)
        o["finished"] += int(bool(x["finished"]))

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    return {"trials": len(ok), "not_replayed": [c.trial for c in censuses if not c.replayed],
            "objects_total": total, "removed": removed, "left": len(left),
            "left_without_feasible": no_feasible, "left_never_feasible": never,
            "fell_out": total - removed - len(left),
            "left_without_annotated": sum(1 for x in left if x["annotated"] == 0),
            "finished": sum(1 for x in left if x["finished"]),
            "cr": ratio(removed, total), "cr_bound": ratio(total - no_feasible, total),
            "cr_feasible": ratio(removed, total - no_feasible),
            "objects": dict(sorted(objects.items(), key=lambda kv: (-kv[1]["left"], kv[0])))}


def census_markdown(policy: str, censuses: Sequence[TrialCensus], runs: int = 1) -> str:
    """The census as a Markdown report.

    :param policy: the policy censused.
    :param censuses: :func:`run_census` output.
    :param runs: how many runs' logs the trials come from.
    :return: the report.
    """
    s = summarize_census(censuses)

    def pct(v: float) -> str:
        return "n/a" if v != v else f"{100 * v:.1f} %"

    lines = [f"# What policy `{policy}` left in the bin", "",
             (f"{s['trials']} trials of {runs} runs replayed from their logs" if runs > 1
              else f"{s['trials']} trials replayed from the log")
             + (f" ({len(s['not_replayed'])} did not repeat and are left out: "
                f"{s['not_replayed']})" if s["not_replayed"] else "") + ".", "",
             "| objects poured | removed | pushed out | left | left without a feasible "
             "annotated grasp | ... nor one after the pour | lifted by the oracle afterwards |",
             "|---:|---:|---:|---:|---:|---:|---:|",
             f"| {s['objects_total']} | {s['removed']} | {s['fell_out']} | {s['left']} | "
             f"{s['left_without_feasible']} | {s['left_never_feasible']} | "
             f"{s['finished']} |", "",
             f"- CR: {pct(s['cr'])}",
             f"- CR bound (objects with no feasible annotated grasp where they ended count as "
             f"left by any policy that stops there): {pct(s['cr_bound'])}",
             f"- CR over the objects that had one: {pct(s['cr_feasible'])}", "",
             "| object | left | without a feasible grasp at the end | ... nor after the pour "
             "| lifted by the oracle |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {o['left']} | {o['without_feasible']} | {o['never']} | "
              f"{o['finished']} |" for name, o in s["objects"].items()]
    return "\n".join(lines) + "\n"


def write_census(out: Path, policy: str, censuses: Sequence[TrialCensus],
                 runs: int = 1) -> list[Path]:
    """Write ``census_<policy>.json`` and ``census_<policy>.md`` (:func:`census_markdown`)
    into ``out``.

    :param out: the run folder (created).
    :param policy: the policy censused.
    :param censuses: :func:`run_census` output.
    :param runs: see :func:`census_markdown`.
    :return: the files written.
    """
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out / f"census_{policy}.json", out / f"census_{policy}.md"
    jpath.write_text(json.dumps({"policy": policy, "summary": summarize_census(censuses),
                                 "trials": [c.to_dict() for c in censuses]}, indent=1))
    mpath.write_text(census_markdown(policy, censuses, runs))
    return [jpath, mpath]
