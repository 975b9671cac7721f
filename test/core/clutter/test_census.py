"""The census of a clutter run: replay from the log, leftovers counted, oracle finish."""

from __future__ import annotations

import json

import pytest
import trimesh

from gpr_ros.core.clutter.census import refusal_kind, run_census, summarize_census, write_census
from gpr_ros.core.clutter.errors import ResultsLogError
from gpr_ros.core.clutter.policies import PolicyContext, make_policy
from gpr_ros.core.clutter.protocol import ClutterConfig, ProtocolConfig
from gpr_ros.core.clutter.runner import AttemptLog, completed_trials, run_benchmark
from gpr_ros.core.clutter.session import object_pool
from gpr_ros.core.sim.camera import CameraConfig, NoiseConfig
from gpr_ros.core.sim.world import SceneConfig

# 4 of 5 objects, 3 attempts: with a flat plate (65 x 65 x 12 mm: the 65 mm do not fit in the
# 50 mm opening, and a finger cannot go under the 12 mm) something is left.
CONFIG = ClutterConfig(
    protocol=ProtocolConfig(name="tiny", subset_size=None, objects_per_trial=4, max_attempts=3),
    camera=CameraConfig(width=258, height=193, fx=275.0, fy=275.0),
    noise=NoiseConfig(enabled=False),
    scene=SceneConfig(max_time_per_object=0.6, final_settle_time=0.6),
)


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory: pytest.TempPathFactory, box_cache):
    root = tmp_path_factory.mktemp("census")
    folder = root / "objects"
    folder.mkdir()
    for i in range(4):
        trimesh.creation.box((0.05 + 0.005 * i, 0.025 + 0.002 * i, 0.03)).export(
            folder / f"box_{i}.stl")
    trimesh.creation.box((0.065, 0.065, 0.012)).export(folder / "plate.stl")
    cache = box_cache
    pool = object_pool(str(folder), cache)
    out = root / "run"
    run_benchmark(out, pool, ["antipodal"], trials=2, seed=1, config=CONFIG,
                  object_set=str(folder))
    records = AttemptLog(out / "attempts.jsonl").read()
    oracle = make_policy("oracle", PolicyContext(object_set=str(folder), cache_dir=cache))
    return out, pool, records, oracle


def test_the_census_replays_the_logged_trials_and_counts_what_was_left(logged_run) -> None:
    out, pool, records, oracle = logged_run
    ends = completed_trials(records)
    censuses = run_census(records, pool, "antipodal", oracle, finish=True)
    assert [c.trial for c in censuses] == [0, 1]
    for c in censuses:
        end = ends[("antipodal", c.trial)]
        assert c.replayed and c.mismatch == ""
        assert c.removed == end["removed"] and c.ended_by == end["ended_by"]
        assert c.objects_total == end["objects_total"]
        assert c.removed + len(c.left) <= c.objects_total
        for x in c.left:
            assert 0 <= x["feasible"] <= x["annotated"]
            assert sum(x["refused"].values()) == x["annotated"] - x["feasible"]
            assert x["finished"] in (True, False)
        # the finish gets the attempts the protocol had left (at least one)
        assert c.finish_attempts <= max(1, CONFIG.protocol.max_attempts - end["attempts"])
    summary = summarize_census(censuses)
    assert summary["removed"] == sum(c.removed for c in censuses)
    assert summary["left"] + summary["removed"] + summary["fell_out"] == summary[
        "objects_total"]
    assert summary["left_never_feasible"] <= summary["left_without_feasible"] <= summary["left"]
    assert summary["cr_bound"] >= summary["cr"]
    # the plate lies flat: where it is left, no annotated grasp of it passes the checks
    plates = [x for c in censuses for x in c.left if x["name"].endswith("plate")]
    assert plates and all(x["feasible"] == 0 and not x["finished"] for x in plates)
    paths = write_census(out, "antipodal", censuses)
    assert json.loads(paths[0].read_text())["summary"]["left"] == summary["left"]
    assert "| objects poured | removed |" in paths[1].read_text()


def test_a_log_whose_grasp_was_changed_is_not_replayed(logged_run) -> None:
    _, pool, records, oracle = logged_run
    tampered = [dict(r) for r in records]
    first = next(r for r in tampered if r.get("type") == "attempt" and r.get("counted")
                 and r.get("trial") == 0)
    grasp = dict(first["grasp"])
    grasp["center"] = [grasp["center"][0], grasp["center"][1], grasp["center"][2] + 0.15]
    first["grasp"] = grasp  # the same grasp in the air above the bin
    outcome = first["outcome"]
    first["outcome"] = "success" if outcome != "success" else "slip"
    census = run_census(tampered, pool, "antipodal", oracle, finish=False)[0]
    assert not census.replayed and f"attempt {first['attempt']}" in census.mismatch
    assert summarize_census([census])["not_replayed"] == [0]


def test_census_errors(logged_run, tmp_path, capsys) -> None:
    from gpr_ros.cli import main

    _, pool, records, oracle = logged_run
    with pytest.raises(ResultsLogError, match="header"):
        run_census(records[1:], pool, "antipodal", oracle)
    with pytest.raises(ResultsLogError, match="object set"):
        run_census(records, pool[:-1], "antipodal", oracle)
    with pytest.raises(ResultsLogError, match="no completed trial of policy 'gpr'"):
        run_census(records, pool, "gpr", oracle)
    assert main(["bench", "census", "--run", str(tmp_path / "nothing")]) == 1
    assert "no log" in capsys.readouterr().err


def test_the_cli_pools_the_census_of_several_runs(logged_run, tmp_path, capsys) -> None:
    from gpr_ros.cli import main

    out = logged_run[0]
    assert main(["bench", "census", "--policy", "antipodal", "--no-finish", "--run", str(out),
                 str(out), "--out", str(tmp_path / "pooled")]) == 0
    one = json.loads((out / "census_antipodal.json").read_text())["summary"]
    both = json.loads((tmp_path / "pooled" / "census_antipodal.json").read_text())["summary"]
    assert both["trials"] == 2 * one["trials"] == 4
    assert both["left"] == 2 * one["left"] and both["removed"] == 2 * one["removed"]
    assert "4 trials of 2 runs replayed" in capsys.readouterr().out


def test_refusal_kinds_name_the_executor_checks() -> None:
    assert refusal_kind("grasp width 1.9 mm is below the min width 5.0 mm") == "width"
    assert refusal_kind("approach 95 deg from straight down exceeds 90 deg") == "approach_angle"
    assert refusal_kind("grasp centre [0.3, 0.0, 0.0] is outside the workspace") == "workspace"
    assert refusal_kind("the pre-grasp pose is below the floor") == "floor"
    assert refusal_kind("the approach would hit the bin wall 40 mm before") == "wall"
    assert refusal_kind("something new") == "other"
