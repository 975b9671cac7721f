"""Run clutter-removal benchmarks with a resumable attempt log, and summarise them.

The log ``attempts.jsonl`` holds one JSON object per line, appended as things happen:

- ``{"type": "header", ...}``: protocol, seed, object set and configuration; a rerun into the
  same folder must match it;
- ``{"type": "trial_start", "policy", "trial", "segment", "objects", "objects_total", ...}``;
- ``{"type": "attempt", "policy", "trial", "segment", "attempt", "outcome", "object", ...}``;
- ``{"type": "trial_end", "policy", "trial", "segment", "attempts", "successes", ...}``.

Every (re)start of a trial opens a new ``segment`` (``policy#trial#k``). Only segments closed by
a ``trial_end`` count; a trial interrupted by a crash is re-run from its start in a new segment
and the lines of the old one are ignored, so totals never double count. A truncated last line
(a crash mid-write) is cut off before appending.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
import hashlib
import json
import math
import multiprocessing
import os
from pathlib import Path
from typing import Any

import numpy as np

from gpr_ros.core.clutter.errors import ResultsLogError
from gpr_ros.core.clutter.metrics import (
    bootstrap_ratio_interval,
    rate,
    t_interval,
    wilson_interval,
)
from gpr_ros.core.clutter.policies import GraspPolicy, PolicyContext, make_policy
from gpr_ros.core.clutter.protocol import ClutterConfig, TrialResult, select_subset
from gpr_ros.core.clutter.session import run_trial
from gpr_ros.core.sim.world import SceneObjectSpec
from gpr_ros.core.validation import describe_differences

__all__ = [
    "FAILURE_KINDS",
    "AttemptLog",
    "model_digest",
    "run_benchmark",
    "summarize",
    "write_reports",
]

FAILURE_KINDS = ("collision", "slip", "unreachable", "width_exceeded", "no_grasp", "error")
LOG_NAME = "attempts.jsonl"


class AttemptLog:
    """The append-only JSONL log of a benchmark folder.

    :param path: the ``attempts.jsonl`` file.
    """

    def __init__(self, path: Path) -> None:
        """Open (not create) the log (see the class docstring)."""
        self.path = Path(path)

    def read(self) -> list[dict[str, Any]]:
        """Return every complete, valid line (a truncated or corrupt last line is skipped).

        :return: the records in file order.
        :raises ResultsLogError: on a corrupt line that is not the last one.
        """
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")
        records = []
        for k, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if k == len(lines) - 1:
                    continue  # a partial last line from a crash
                raise ResultsLogError(f"{self.path}: line {k + 1} is not JSON") from None
        return records

    def repair(self) -> None:
        """Cut a partial last line (no trailing newline) so appends start on a fresh line."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as handle:
                handle.truncate(cut)

    def append(self, record: dict[str, Any]) -> None:
        """Append one record as one line (a single ``write`` on an O_APPEND descriptor, so
        lines from concurrent workers do not interleave).

        :param record: JSON-ready values.
        """
        line = (json.dumps(record, separators=(",", ":"), allow_nan=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def completed_trials(records: Iterable[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Map (policy, trial) to its first completed segment: the trial_end record plus
    ``'attempt_records'`` (that segment's attempt lines) and ``'start_record'`` (its
    trial_start line, ``{}`` when missing).

    :param records: log records.
    :return: the completed trials.
    """
    records = list(records)
    ends: dict[tuple[str, int], dict[str, Any]] = {}
    for rec in records:
        if rec.get("type") == "trial_end":
            ends.setdefault((rec["policy"], int(rec["trial"])), dict(rec))
    by_segment = {end["segment"]: end for end in ends.values()}
    for end in ends.values():
        end["attempt_records"] = []
        end["start_record"] = {}
    for rec in records:
        if rec.get("type") == "attempt" and rec.get("segment") in by_segment:
            by_segment[rec["segment"]]["attempt_records"].append(rec)
        elif rec.get("type") == "trial_start" and rec.get("segment") in by_segment:
            by_segment[rec["segment"]]["start_record"] = rec
    return ends


def object_removal(trials: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per object name: how often it was poured and how often lifted out.

    Names come from each trial's trial_start ``objects`` (the poured order, which the
    attempts' ``lifted`` indices refer to) and, failing that, the attempt's ``object_name``.
    Real-robot trials name no objects and give an empty result.

    :param trials: :func:`completed_trials` values.
    :return: ``{name: {'poured': n, 'removed': m}}``, sorted by name.
    """
    counts: dict[str, dict[str, int]] = {}
    for trial in trials:
        names = list(trial.get("start_record", {}).get("objects") or [])
        for name in names:
            counts.setdefault(str(name), {"poured": 0, "removed": 0})["poured"] += 1
        for rec in trial.get("attempt_records", []):
            if rec.get("outcome") != "success":
                continue
            lifted = [int(i) for i in rec.get("lifted") or [] if 0 <= int(i) < len(names)]
            taken = [names[i] for i in lifted] or (
                [rec["object_name"]] if rec.get("object_name") else [])
            for name in taken:
                counts.setdefault(str(name), {"poured": 0, "removed": 0})["removed"] += 1
    return dict(sorted(counts.items()))


# ---------------------------------------------------------------------- running

_WORKER_POLICIES: dict[str, GraspPolicy] = {}


def _policy(name: str, context: PolicyContext) -> GraspPolicy:
    if name not in _WORKER_POLICIES:
        _WORKER_POLICIES[name] = make_policy(name, context)
    return _WORKER_POLICIES[name]


def _run_task(task: tuple[str, int, str, PolicyContext, Sequence[SceneObjectSpec],
                          ClutterConfig, int, str]) -> dict[str, Any]:
    name, trial, segment, context, subset, config, seed, log_path = task
    log = AttemptLog(Path(log_path))
    policy = _policy(name, context)
    base = {"policy": name, "trial": trial, "segment": segment}

    def on_start(info: dict[str, Any]) -> None:
        log.append({"type": "trial_start", **base, **info})

    def on_attempt(record: dict[str, Any]) -> None:
        log.append({"type": "attempt", **base, **record})

    result: TrialResult = run_trial(policy, subset, config, seed, trial, on_attempt, on_start)
    end = {"type": "trial_end", **base, "attempts": result.attempts,
           "successes": result.successes, "removed": result.removed,
           "objects_total": result.objects_total, "poured": result.poured,
           "ended_by": result.ended_by, "sim_time": result.sim_time,
           "wall_time": result.wall_time}
    log.append(end)
    return end


@dataclass(frozen=True)
class BenchmarkRun:
    """What :func:`run_benchmark` did.

    :ivar ran: (policy, trial) pairs run now.
    :ivar skipped: pairs read back from the log.
    :ivar unavailable: policy name → why it was skipped.
    """

    ran: tuple[tuple[str, int], ...]
    skipped: tuple[tuple[str, int], ...]
    unavailable: dict[str, str]


def model_digest(path: Path | str | None) -> str | None:
    """First 16 hex digits of a checkpoint's SHA-256 (``None`` without the file): results
    are not resumed with another model (this benchmark's folders, ``gpr-ros demo``'s).

    :param path: the checkpoint.
    :return: the digest.
    """
    if path is None or not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def run_benchmark(out: Path, pool: Sequence[SceneObjectSpec], policies: Sequence[str],
                  trials: int, seed: int, config: ClutterConfig,
                  context: PolicyContext | None = None, object_set: str = "",
                  workers: int = 1,
                  progress: Callable[[dict[str, Any]], None] | None = None,
                  check_policy: Callable[[str, PolicyContext], str | None] | None = None,
                  ) -> BenchmarkRun:
    """Run (or resume) every policy on trials 0 … trials − 1 and log them to ``out``.

    :param out: results folder (created).
    :param pool: the object set, in a stable order.
    :param policies: policy names (see :func:`make_policy`).
    :param trials: trials per policy.
    :param seed: run seed (same scenes for every policy).
    :param config: the benchmark configuration.
    :param context: passed to the policy factories.
    :param object_set: label of the object set (logged and checked on resume).
    :param workers: worker processes (1: run here).
    :param progress: called with each trial_end record as trials finish.
    :param check_policy: returns a reason to skip a policy (e.g. no model), or ``None``.
    :return: what ran and what was skipped.
    :raises ResultsLogError: if ``out`` holds a log of another configuration.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = context if context is not None else PolicyContext()
    log = AttemptLog(out / LOG_NAME)
    log.repair()
    records = log.read()
    header = {"type": "header", "protocol": config.protocol.name, "seed": int(seed),
              "object_set": object_set, "objects": [o.name for o in pool],
              "config": config.to_dict(),
              "policy_settings": {"max_grasps": ctx.max_grasps, "min_score": ctx.min_score,
                                  "pose_passes": ctx.pose_passes,
                                  "model": model_digest(ctx.model_path)}}
    headers = [r for r in records if r.get("type") == "header"]
    if headers:
        old = headers[0]
        for key in ("protocol", "seed", "object_set", "objects", "config", "policy_settings"):
            saved, now = (json.loads(json.dumps(v)) for v in (old.get(key), header[key]))
            if saved != now:
                if key in ("config", "policy_settings"):
                    what = describe_differences(saved or {}, now)
                elif key == "objects":
                    gone = sorted(set(saved or ()) - set(now))
                    new_ = sorted(set(now) - set(saved or ()))
                    what = f"without {gone[:3]}, with {new_[:3]}" if gone or new_ \
                        else "another order"
                else:
                    what = f"{saved!r} -> {now!r}"
                raise ResultsLogError(
                    f"{out} holds results with another {key} ({what}); use a new --out folder")
    else:
        log.append(header)
    done = completed_trials(records)
    starts: dict[tuple[str, int], int] = {}
    for rec in records:
        if rec.get("type") == "trial_start":
            started = (str(rec["policy"]), int(rec["trial"]))
            starts[started] = starts.get(started, 0) + 1
    subset = select_subset(pool, config.protocol, seed)
    unavailable: dict[str, str] = {}
    tasks = []
    skipped = []
    for name in policies:
        reason = check_policy(name, ctx) if check_policy is not None else None
        if reason is not None:
            unavailable[name] = reason
            continue
        for trial in range(trials):
            if (name, trial) in done:
                skipped.append((name, trial))
                continue
            segment = f"{name}#{trial}#{starts.get((name, trial), 0)}"
            tasks.append((name, trial, segment, ctx, subset, config, int(seed),
                          str(log.path)))
    ran = []
    if workers <= 1:
        for task in tasks:
            end = _run_task(task)
            ran.append((task[0], task[1]))
            if progress is not None:
                progress(end)
    elif tasks:
        mp = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp) as pool_exec:
            futures = {pool_exec.submit(_run_task, task): task for task in tasks}
            for future in as_completed(futures):
                end = future.result()
                task = futures[future]
                ran.append((task[0], task[1]))
                if progress is not None:
                    progress(end)
    return BenchmarkRun(ran=tuple(ran), skipped=tuple(skipped), unavailable=unavailable)


# ---------------------------------------------------------------------- summaries


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def summarize(records: Iterable[dict[str, Any]], bootstrap_seed: int = 0) -> dict[str, Any]:
    """Summarise the completed trials of a log, per policy.

    :param records: log records (:meth:`AttemptLog.read`).
    :param bootstrap_seed: seed of the bootstrap resampling.
    :return: ``{'protocol', 'policies': {name: {...}}}`` with SR/CR (= GSR/DR), intervals,
        failure counts and timing.
    """
    records = list(records)
    header = next((r for r in records if r.get("type") == "header"), {})
    done = completed_trials(records)
    names = list(dict.fromkeys(name for name, _ in sorted(done)))
    policies: dict[str, Any] = {}
    for name in names:
        trials = [done[k] for k in sorted(done) if k[0] == name]
        attempts = sum(int(t["attempts"]) for t in trials)
        successes = sum(int(t["successes"]) for t in trials)
        removed = np.array([int(t["removed"]) for t in trials])
        totals = np.array([int(t["objects_total"]) for t in trials])
        sr_low, sr_high = wilson_interval(successes, attempts)
        cr_low, cr_high = bootstrap_ratio_interval(
            removed, totals, np.random.default_rng(bootstrap_seed))
        per_trial_cr = [rate(r, n) for r, n in zip(removed, totals, strict=True)]
        cr_mean, cr_t_low, cr_t_high = t_interval(per_trial_cr, bounds=(0.0, 1.0))
        attempt_recs = [a for t in trials for a in t["attempt_records"]]
        failures = dict.fromkeys(FAILURE_KINDS, 0)
        for rec in attempt_recs:
            if rec.get("outcome") in failures:
                failures[rec["outcome"]] += 1
        executed = [a for a in attempt_recs if a.get("counted")]
        wall = [float(a.get("wall_time", 0.0)) for a in executed]
        # Over ROS the simulated time is not reported: n/a rather than 0.
        sim = [float(a["sim_time"]) for a in executed if "sim_time" in a]
        sim_wall = [float(a.get("wall_time", 0.0)) for a in executed if "sim_time" in a]
        policy_time = [float(a.get("policy_time", 0.0)) for a in attempt_recs]
        policies[name] = {
            "trials": len(trials), "attempts": attempts, "successes": successes,
            "removed": int(removed.sum()), "objects_total": int(totals.sum()),
            "sr": rate(successes, attempts), "sr_ci": [sr_low, sr_high],
            "cr": rate(int(removed.sum()), int(totals.sum())), "cr_ci": [cr_low, cr_high],
            "cr_trial_mean": cr_mean, "cr_trial_t_ci": [cr_t_low, cr_t_high],
            "failures": failures,
            "ended_by": {k: sum(1 for t in trials if t["ended_by"] == k)
                         for k in sorted({t["ended_by"] for t in trials})},
            "mean_attempt_wall_time": float(np.mean(wall)) if wall else math.nan,
            "mean_attempt_sim_time": float(np.mean(sim)) if sim else math.nan,
            "mean_policy_time": float(np.mean(policy_time)) if policy_time else math.nan,
            "sim_per_wall": rate(sum(sim), sum(sim_wall)) if sim else math.nan,
            "mean_trial_wall_time": float(np.mean([float(t["wall_time"]) for t in trials])),
            "objects": object_removal(trials),
        }
    return {"protocol": header.get("protocol"), "seed": header.get("seed"),
            "object_set": header.get("object_set"), "policies": policies}


def _num(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.1f}"


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{100 * value:.1f}%"


def _ci(pair: Sequence[float]) -> str:
    low, high = pair
    if not (math.isfinite(low) and math.isfinite(high)):
        return "n/a"
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def write_reports(out: Path, summary: dict[str, Any], notes: Sequence[str] = ()) -> list[Path]:
    """Write ``results.md``, ``results.json``, ``results.csv`` and ``results.png``.

    :param out: results folder.
    :param summary: :func:`summarize` output.
    :param notes: extra lines for the Markdown report (e.g. skipped policies).
    :return: the files written.
    """
    out = Path(out)
    pile = summary.get("protocol") == "pile"
    sr_name, cr_name = ("GSR", "DR") if pile else ("SR", "CR")
    pols = summary["policies"]
    lines = [
        f"# Simulated clutter removal: protocol `{summary.get('protocol')}`, objects "
        f"`{summary.get('object_set')}`, seed {summary.get('seed')}",
        "",
        f"| Policy | Trials | Attempts | {sr_name} | {sr_name} 95% CI (Wilson) | {cr_name} | "
        f"{cr_name} 95% CI (bootstrap) | {cr_name} per-trial mean [t 95% CI] | "
        + " | ".join(FAILURE_KINDS) + " | s/attempt (wall) | sim s / wall s |",
        "|" + "---|" * (10 + len(FAILURE_KINDS)),
    ]
    for name, p in pols.items():
        lines.append(
            f"| {name} | {p['trials']} | {p['attempts']} | {_pct(p['sr'])} | {_ci(p['sr_ci'])} "
            f"| {_pct(p['cr'])} | {_ci(p['cr_ci'])} | {_pct(p['cr_trial_mean'])} "
            f"{_ci(p['cr_trial_t_ci'])} | "
            + " | ".join(str(p["failures"][k]) for k in FAILURE_KINDS)
            + f" | {p['mean_attempt_wall_time']:.3f} | {_num(p['sim_per_wall'])} |")
    lines += ["", f"{sr_name} = successful attempts / attempts (pooled); {cr_name} = objects "
              "lifted out / objects in the bin after pouring (pooled). A 'no grasp' ends a "
              "trial and is not an attempt; objects pushed or dropped out of the bin are not "
              "counted as removed.", *[f"- {n}" for n in notes], ""]
    lines += _object_table(pols)
    paths = [out / "results.md", out / "results.json", out / "results.csv", out / "results.png"]
    paths[0].write_text("\n".join(lines))
    paths[1].write_text(json.dumps(_nan_to_none(summary), indent=2) + "\n")
    csv = ["policy,trials,attempts,successes,removed,objects_total,sr,sr_low,sr_high,cr,"
           "cr_low,cr_high," + ",".join(FAILURE_KINDS)]
    for name, p in pols.items():
        csv.append(",".join(str(v) for v in (
            name, p["trials"], p["attempts"], p["successes"], p["removed"], p["objects_total"],
            p["sr"], *p["sr_ci"], p["cr"], *p["cr_ci"], *(p["failures"][k]
                                                           for k in FAILURE_KINDS))))
    paths[2].write_text("\n".join(csv) + "\n")
    _plot(paths[3], pols, sr_name, cr_name)
    return paths


def _object_table(pols: dict[str, Any]) -> list[str]:
    """Markdown lines of the per-object removal table (none when no object is named)."""
    names = sorted({o for p in pols.values() for o in p.get("objects", {})})
    if not names:
        return []
    policies = list(pols)
    lines = ["## Objects lifted out / poured, per policy", "",
             "| object | " + " | ".join(policies) + " |",
             "|---|" + "---:|" * len(policies)]
    for obj in names:
        cells = []
        for name in policies:
            c = pols[name].get("objects", {}).get(obj)
            cells.append("" if c is None else f"{c['removed']}/{c['poured']}")
        lines.append(f"| {obj} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _plot(path: Path, pols: dict[str, Any], sr_name: str, cr_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(pols)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(names) + 2), 3.5))
    for k, (key, label) in enumerate((("sr", sr_name), ("cr", cr_name))):
        values = np.array([pols[n][key] for n in names], dtype=float)
        ci = np.array([pols[n][f"{key}_ci"] for n in names], dtype=float).reshape(-1, 2)
        err = np.vstack([values - ci[:, 0], ci[:, 1] - values])
        err = np.where(np.isfinite(err), err, 0.0)
        ax.bar(x + (k - 0.5) * 0.38, np.nan_to_num(values) * 100, 0.38, yerr=err * 100,
               capsize=3, label=label)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.legend()
    ax.set_title("Simulated clutter removal (95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
