"""Clutter-removal protocol, metrics, resume and the baselines on tiny box scenes."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import trimesh

from gpr_ros.core.baselines.antipodal import detect_antipodal
from gpr_ros.core.clutter.errors import PolicyUnavailableError, ResultsLogError
from gpr_ros.core.clutter.metrics import rate, t_interval, wilson_interval
from gpr_ros.core.clutter.policies import PolicyContext, make_policy
from gpr_ros.core.clutter.protocol import ClutterConfig, ProtocolConfig
from gpr_ros.core.clutter.runner import AttemptLog, run_benchmark, summarize, write_reports
from gpr_ros.core.clutter.session import object_pool, run_trial
from gpr_ros.core.errors import ConfigError
from gpr_ros.core.grasp import Grasps
from gpr_ros.core.sim.camera import CameraConfig, NoiseConfig
from gpr_ros.core.sim.world import SceneConfig, SceneObjectSpec


def box(name: str, extents: tuple[float, float, float]) -> SceneObjectSpec:
    mesh = trimesh.creation.box(extents)
    vertices = np.asarray(mesh.vertices) - mesh.center_mass
    return SceneObjectSpec(name=name, parts=((vertices, np.asarray(mesh.faces)),), mass=0.1)


POOL = [box(f"box_{i}", (0.05 + 0.005 * i, 0.025 + 0.002 * i, 0.03)) for i in range(4)]
# Small, fast: 3 of 4 boxes, at most 4 attempts, a coarse camera and short settling.
CONFIG = ClutterConfig(
    protocol=ProtocolConfig(name="tiny", subset_size=None, objects_per_trial=3, max_attempts=4),
    camera=CameraConfig(width=258, height=193, fx=275.0, fy=275.0),
    noise=NoiseConfig(enabled=False),
    scene=SceneConfig(max_time_per_object=0.6, final_settle_time=0.6),
)


def test_rates_are_nan_without_denominator() -> None:
    assert math.isnan(rate(0, 0))
    assert rate(3, 4) == 0.75
    low, high = wilson_interval(0, 0)
    assert math.isnan(low) and math.isnan(high)
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_t_interval_of_rates_stays_within_zero_and_one() -> None:
    # two trials with CR 70 % and 90 %: the t interval alone is [-47, 207] %
    mean, low, high = t_interval([0.7, 0.9])
    assert mean == pytest.approx(0.8) and low < 0.0 and high > 1.0
    assert t_interval([0.7, 0.9], bounds=(0.0, 1.0)) == pytest.approx((0.8, 0.0, 1.0))
    mean, low, high = t_interval([0.5, 0.6, 0.55, 0.58], bounds=(0.0, 1.0))
    assert 0.0 < low < mean < high < 1.0  # not clipped when inside


def test_summary_with_zero_attempts_is_nan() -> None:
    records = [
        {"type": "header", "protocol": "gpr"},
        {"type": "trial_end", "policy": "p", "trial": 0, "segment": "p#0#0", "attempts": 0,
         "successes": 0, "removed": 0, "objects_total": 0, "ended_by": "no_grasp",
         "wall_time": 1.0},
    ]
    p = summarize(records)["policies"]["p"]
    assert math.isnan(p["sr"]) and math.isnan(p["cr"])


def test_per_object_removal_counts_and_table(tmp_path) -> None:
    def end(policy: str, trial: int, segment: str) -> dict:
        return {"type": "trial_end", "policy": policy, "trial": trial, "segment": segment,
                "attempts": 3, "successes": 2, "removed": 2, "objects_total": 3,
                "ended_by": "max_attempts", "wall_time": 1.0}

    records = [
        {"type": "header", "protocol": "gpr", "seed": 0, "object_set": "novel"},
        # an abandoned first segment: its lines must not count
        {"type": "trial_start", "policy": "p", "trial": 0, "segment": "p#0#0",
         "objects": ["x", "y", "z"]},
        {"type": "attempt", "policy": "p", "trial": 0, "segment": "p#0#0",
         "outcome": "success", "lifted": [0], "object_name": "x", "counted": True},
        {"type": "trial_start", "policy": "p", "trial": 0, "segment": "p#0#1",
         "objects": ["a", "b", "c"]},
        {"type": "attempt", "policy": "p", "trial": 0, "segment": "p#0#1",
         "outcome": "success", "lifted": [1], "object_name": "b", "counted": True},
        {"type": "attempt", "policy": "p", "trial": 0, "segment": "p#0#1",
         "outcome": "slip", "lifted": [], "object_name": None, "counted": True},
        {"type": "attempt", "policy": "p", "trial": 0, "segment": "p#0#1",
         "outcome": "success", "lifted": [], "object_name": "c", "counted": True},
        end("p", 0, "p#0#1"),
        # real-robot trials name no objects
        {"type": "trial_start", "policy": "q", "trial": 0, "segment": "q#0#0",
         "objects": []},
        {"type": "attempt", "policy": "q", "trial": 0, "segment": "q#0#0",
         "outcome": "success", "lifted": [], "object_name": None, "counted": True},
        end("q", 0, "q#0#0"),
    ]
    summary = summarize(records)
    assert summary["policies"]["p"]["objects"] == {
        "a": {"poured": 1, "removed": 0}, "b": {"poured": 1, "removed": 1},
        "c": {"poured": 1, "removed": 1}}
    assert summary["policies"]["q"]["objects"] == {}
    write_reports(tmp_path, summary)
    text = (tmp_path / "results.md").read_text()
    assert "| object | p | q |" in text and "| b | 1/1 |  |" in text
    assert json.loads((tmp_path / "results.json").read_text())["policies"]["p"]["objects"][
        "a"] == {"poured": 1, "removed": 0}


def test_same_seed_same_outcomes() -> None:
    policy = make_policy("random")
    first = run_trial(policy, POOL, CONFIG, seed=3, trial=0)
    second = run_trial(policy, POOL, CONFIG, seed=3, trial=0)
    keys = ("outcome", "object", "grasp_rank")
    assert [tuple(r.get(k) for k in keys) for r in first.records] == [
        tuple(r.get(k) for k in keys) for r in second.records]
    assert first.records and first.attempts == second.attempts
    assert first.objects_total == 3


def test_a_results_folder_of_another_config_names_what_differs(tmp_path) -> None:
    run_benchmark(tmp_path, POOL, ["random"], 1, 5, CONFIG)
    other = dataclasses.replace(CONFIG, scene=dataclasses.replace(CONFIG.scene, impratio=10.0))
    with pytest.raises(ResultsLogError,
                       match=r"another config \(scene\.impratio: 1\.0 -> 10\.0\)"):
        run_benchmark(tmp_path, POOL, ["random"], 1, 5, other)
    with pytest.raises(ResultsLogError, match=r"another seed \(5 -> 6\)"):
        run_benchmark(tmp_path, POOL, ["random"], 1, 6, CONFIG)
    with pytest.raises(ResultsLogError,
                       match=r"another objects \(without \['box_3'\], with \[\]\)"):
        run_benchmark(tmp_path, POOL[:3], ["random"], 1, 5, CONFIG)
    with pytest.raises(ResultsLogError,
                       match=r"another policy_settings \(min_score: 0\.1 -> 0\.5\)"):
        run_benchmark(tmp_path, POOL, ["random"], 1, 5, CONFIG, PolicyContext(min_score=0.5))
    with pytest.raises(ResultsLogError, match=r"another policy_settings \(pose_passes: 2 -> 1\)"):
        run_benchmark(tmp_path, POOL, ["random"], 1, 5, CONFIG, PolicyContext(pose_passes=1))
    model = tmp_path / "model.pt"
    model.write_bytes(b"not a model, but a file with a digest")
    with pytest.raises(ResultsLogError, match=r"another policy_settings \(model: None -> "):
        run_benchmark(tmp_path, POOL, ["random"], 1, 5, CONFIG, PolicyContext(model_path=model))


def test_resume_from_truncated_log_matches(tmp_path) -> None:
    full, partial = tmp_path / "full", tmp_path / "partial"
    run_benchmark(full, POOL, ["random"], 2, 5, CONFIG)
    expected = summarize(AttemptLog(full / "attempts.jsonl").read())["policies"]["random"]
    # Crash simulation: keep trial 0 complete, trial 1 only up to its first attempt, and cut
    # that attempt line in half.
    lines = (full / "attempts.jsonl").read_text().splitlines()
    end0 = next(i for i, line in enumerate(lines)
                if '"trial_end"' in line and '"trial":0' in line)
    first_attempt_1 = next(i for i, line in enumerate(lines)
                           if '"attempt"' in line and '"trial":1' in line)
    partial.mkdir()
    kept = lines[: max(end0, first_attempt_1) + 1]
    text = "\n".join(kept[:-1]) + "\n" + kept[-1][: len(kept[-1]) // 2]
    (partial / "attempts.jsonl").write_text(text)
    run = run_benchmark(partial, POOL, ["random"], 2, 5, CONFIG)
    assert run.skipped == (("random", 0),) and run.ran == (("random", 1),)
    records = AttemptLog(partial / "attempts.jsonl").read()
    got = summarize(records)["policies"]["random"]
    for key in ("attempts", "successes", "removed", "objects_total", "failures"):
        assert got[key] == expected[key]
    segments = {r["segment"] for r in records if r.get("type") == "trial_start"}
    assert "random#1#1" in segments  # the interrupted trial was re-run in a new segment
    for line in (partial / "attempts.jsonl").read_text().splitlines():
        json.loads(line)


def test_gpr_policy_without_model_is_unavailable(tmp_path) -> None:
    with pytest.raises(PolicyUnavailableError):
        make_policy("gpr", PolicyContext(model_path=tmp_path / "missing.pt"))
    with pytest.raises(PolicyUnavailableError):
        make_policy("no_such_policy")


def test_antipodal_grasps_a_box_across_its_narrow_side() -> None:
    mesh = trimesh.creation.box((0.06, 0.03, 0.04))
    points = trimesh.sample.sample_surface_even(mesh, 3000, seed=0)[0] + [0.0, 0.0, 1.2]
    grasps = detect_antipodal(points, np.random.default_rng(0))
    assert len(grasps) > 0
    best = grasps[0]
    assert abs(best.closing[0][1]) > 0.95  # across the 30 mm (y) side
    assert 0.03 <= best.width[0] <= 0.045
    assert best.approach[0][2] > 0.9  # from the camera side


@pytest.fixture(scope="module")
def box_folder(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("boxes")
    for i in range(4):
        trimesh.creation.box((0.05 + 0.005 * i, 0.025 + 0.002 * i, 0.03)).export(
            folder / f"box_{i}.stl")
    return folder


def test_oracle_executes_the_annotated_grasps_of_the_objects_where_they_lie(
        box_folder, box_cache) -> None:
    cache = box_cache
    pool = object_pool(str(box_folder), cache)
    context = PolicyContext(object_set=str(box_folder), cache_dir=cache)
    policy = make_policy("oracle", context)
    result = run_trial(policy, pool, CONFIG, seed=3, trial=0)
    assert result.attempts > 0 and result.successes > 0
    executed_grasps = [r["grasp"] for r in result.records if "grasp" in r]
    assert executed_grasps and all(g["score"] > 0 for g in executed_grasps)  # Q of the annotation
    assert all(0.0 < g["width"] <= 0.05 for g in executed_grasps)
    # the annotations were cached: a second oracle reads them instead of annotating again
    assert len(list((cache / "annotations").glob("*.npz"))) >= 3
    # it needs the world (in-process only) and an object set
    fresh = make_policy("oracle", context)
    with pytest.raises(PolicyUnavailableError, match="in-process"):
        fresh(np.zeros((100, 3), dtype=np.float32), np.random.default_rng(0))
    with pytest.raises(PolicyUnavailableError, match="object set"):
        make_policy("oracle", PolicyContext())


class _BlindPolicy:
    """Proposes nothing for its first ``blind`` calls, then the antipodal baseline's grasps;
    keeps every cloud it was shown."""

    name = "blind"

    def __init__(self, blind: int) -> None:
        self.blind = blind
        self.clouds: list[np.ndarray] = []
        self.inner = make_policy("antipodal")

    def __call__(self, points: np.ndarray, rng: np.random.Generator) -> Grasps:
        self.clouds.append(points.copy())
        if len(self.clouds) <= self.blind:
            return Grasps.empty()
        return self.inner(points, rng)


ONE_ATTEMPT = dataclasses.replace(
    CONFIG, noise=NoiseConfig(enabled=True),
    protocol=dataclasses.replace(CONFIG.protocol, max_attempts=1))


def test_a_view_without_a_feasible_grasp_is_looked_at_again_with_fresh_noise() -> None:
    policy = _BlindPolicy(blind=2)
    result = run_trial(policy, POOL, ONE_ATTEMPT, seed=3, trial=0)
    (record,) = result.records
    assert record["looks"] == 3 and record["outcome"] != "no_grasp" and result.attempts == 1
    first, second, third = policy.clouds
    # the same scene, fresh sensor noise per look
    assert not np.array_equal(first, second) and not np.array_equal(second, third)
    again = _BlindPolicy(blind=2)
    run_trial(again, POOL, ONE_ATTEMPT, seed=3, trial=0)
    assert all(np.array_equal(a, b) for a, b in zip(policy.clouds, again.clouds, strict=True))
    # the first look of an attempt sees what a single-look run sees
    single = _BlindPolicy(blind=0)
    run_trial(single, POOL, ONE_ATTEMPT, seed=3, trial=0)
    assert np.array_equal(single.clouds[0], first)


@pytest.mark.parametrize("looks", [1, 3])
def test_the_trial_ends_with_no_grasp_after_max_looks(looks: int) -> None:
    config = dataclasses.replace(
        ONE_ATTEMPT, protocol=dataclasses.replace(ONE_ATTEMPT.protocol, max_looks=looks))
    policy = _BlindPolicy(blind=100)
    result = run_trial(policy, POOL, config, seed=3, trial=0)
    (record,) = result.records
    assert record["outcome"] == "no_grasp" and record["looks"] == looks
    assert len(policy.clouds) == looks and result.attempts == 0 and result.ended_by == "no_grasp"


def test_protocol_looks() -> None:
    assert ProtocolConfig.named("gpr").max_looks == 3
    assert ProtocolConfig.named("pile").max_looks == 1
    with pytest.raises(ConfigError, match="max_looks"):
        ProtocolConfig(max_looks=0)


@pytest.mark.parametrize("args", [["--min-score", "1.5"], ["--max-looks", "0"],
                                  ["--max-grasps", "0"], ["--pose-passes", "0"]])
def test_bench_clutter_rejects_invalid_policy_settings(tmp_path, capsys, args) -> None:
    from gpr_ros.cli import main

    assert main(["bench", "clutter", "--out", str(tmp_path / "out"), *args]) == 2
    assert args[0] in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written
