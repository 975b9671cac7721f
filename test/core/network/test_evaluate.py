"""Evaluation of the network (Tables I and II): metric arithmetic, protocol, reports, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
import shutil

import numpy as np
import pytest
import torch

from gpr_ros.cli import main
from gpr_ros.core.dataset.scene_format import grasp_arrays, scene_grasps
from gpr_ros.core.dataset.storage import DatasetReader, DatasetWriter, Manifest, pack_scenes
from gpr_ros.core.grasp import STAGE_1, STAGE_2, Grasps
from gpr_ros.core.network.checkpoint import save_checkpoint
from gpr_ros.core.network.config import NetworkConfig
from gpr_ros.core.network.errors import NetworkError
from gpr_ros.core.network.evaluate import (
    EvaluationError,
    GraspMatch,
    calibration,
    evaluate,
    match_to_ground_truth,
    operating_points,
    predict_stages,
    stage_metrics,
)
from gpr_ros.core.network.inference import GraspDetector
from gpr_ros.core.network.model import GPRNet
from gpr_ros.core.network.synthetic import synthetic_scene

NUM_SCENES = 3
EMPTY_SCENE = 1


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    # Tiny tensors gain nothing from more threads, and other jobs share the CPUs.
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three synthetic scenes; scene 1 has its ground truth removed."""
    root = tmp_path_factory.mktemp("eval_ds")
    scenes = [synthetic_scene(np.random.default_rng([7, i]), num_points=700, scene_index=i)
              for i in range(NUM_SCENES)]
    empty = scenes[EMPTY_SCENE]
    empty.update(grasp_arrays(Grasps.empty()))
    empty["grasp_object"] = np.zeros(0, dtype=np.int32)
    empty["point_grasp"][:] = -1
    empty["mask"][:] = 0
    empty["point_class"][:] = 0
    empty["point_score"][:] = 0
    manifest = Manifest(config={"synthetic": True}, num_scenes=NUM_SCENES, scenes_per_shard=4)
    DatasetWriter(root, manifest).write_shard(0, pack_scenes(scenes))
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = NetworkConfig.tiny(proposal_threshold=0.0)
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("eval_ckpt") / "tiny.pt", GPRNet(cfg), cfg,
                           epoch=2)


def _grasp(center, approach, closing, width) -> Grasps:
    return Grasps(np.atleast_2d(center), np.atleast_2d(approach), np.atleast_2d(closing),
                  np.atleast_1d(width))


def _stack(*grasps: Grasps) -> Grasps:
    return Grasps(np.concatenate([g.center for g in grasps]),
                  np.concatenate([g.approach for g in grasps]),
                  np.concatenate([g.closing for g in grasps]),
                  np.concatenate([g.width for g in grasps]))


def test_metrics_on_hand_made_predictions() -> None:
    z, x = [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]
    gt = _stack(_grasp([0, 0, 0], z, x, 0.04), _grasp([0.1, 0, 0], z, x, 0.02))
    tilted = [0.0, -math.sin(math.pi / 4), math.cos(math.pi / 4)]  # 45 deg about x
    pred = _stack(
        _grasp([0.001, 0, 0], z, x, 0.0424),          # D 0.001,  |dw| 2.4 mm
        _grasp([0, 0.007, 0], z, x, 0.034),           # D 0.007,  |dw| 6 mm
        _grasp([0.1, 0, 0.012], z, [-1, 0, 0], 0.029),  # r -> -r: D 0.012, |dw| 9 mm
        _grasp([0.1, 0.03, 0], z, x, 0.02),           # D 0.03,   |dw| 0
        _grasp([0, 0, 0], tilted, x, 0.04),           # D 0.03/4 = 0.0075, |dw| 0
    )
    match = match_to_ground_truth(pred, gt)
    np.testing.assert_allclose(match.distance, [0.001, 0.007, 0.012, 0.03, 0.0075], atol=1e-12)
    np.testing.assert_array_equal(match.gt_index, [0, 0, 1, 1, 0])
    np.testing.assert_allclose(match.width_error, [0.0024, 0.006, 0.009, 0, 0], atol=1e-12)
    np.testing.assert_allclose(match.gt_distance, [0.001, 0.012], atol=1e-12)

    lonely = match_to_ground_truth(Grasps.empty(), gt[:1])  # a scene without predictions
    assert lonely.distance.size == 0 and np.isinf(lonely.gt_distance).all()
    m = stage_metrics(STAGE_2, [match, lonely], proposals=9)
    assert (m.stage, m.proposals, m.predictions, m.gt_grasps) == (STAGE_2, 9, 5, 3)
    assert m.width_accuracy == pytest.approx((3 / 5, 3 / 5, 4 / 5, 5 / 5))
    assert m.pose_accuracy == pytest.approx((1 / 5, 3 / 5, 4 / 5, 4 / 5))
    assert m.coverage == pytest.approx(1 / 3)  # only the first ground truth is within 0.01
    assert m.mean_width_error == pytest.approx((0.0024 + 0.006 + 0.009) / 5)
    assert m.median_distance == pytest.approx(0.0075)


def _five_scored_predictions() -> tuple[np.ndarray, GraspMatch]:
    """Scores of five predictions of one scene and their match to one ground-truth grasp."""
    match = GraspMatch(distance=np.array([0.005, 0.015, 0.03, 0.001, 0.012]),
                       gt_index=np.zeros(5, dtype=np.int64),
                       width_error=np.array([0.001, 0.006, 0.002, 0.0, 0.01]),
                       gt_distance=np.array([0.001]))
    return np.array([0.1, 0.35, 0.35, 0.95, 1.0]), match


def test_calibration_bins_all_predictions_by_score() -> None:
    scores, match = _five_scored_predictions()
    bins = calibration([(scores, match)], edges=(0.0, 0.3, 0.5, 1.0))
    assert [(b.low, b.high, b.predictions) for b in bins] == [(0.0, 0.3, 1), (0.3, 0.5, 2),
                                                             (0.5, 1.0, 2)]
    assert (bins[0].pose_0_01, bins[0].pose_0_02, bins[0].width_5mm) == (1.0, 1.0, 1.0)
    assert (bins[1].pose_0_01, bins[1].pose_0_02, bins[1].width_5mm) == (0.0, 0.5, 0.5)
    assert (bins[2].pose_0_01, bins[2].pose_0_02, bins[2].width_5mm) == (0.5, 1.0, 0.5)
    empty = calibration([(scores[:1], GraspMatch(match.distance[:1], match.gt_index[:1],
                                                 match.width_error[:1], match.gt_distance))])
    assert empty[-1].predictions == 0 and empty[-1].pose_0_01 is None
    m = stage_metrics(STAGE_2, [match], proposals=5, scored=[(scores, match)])
    assert sum(b.predictions for b in m.calibration) == 5


def test_operating_points_pool_the_predictions_above_each_threshold() -> None:
    scores, match = _five_scored_predictions()
    empty_scene = (np.zeros(0), GraspMatch(np.zeros(0), np.zeros(0, dtype=np.int64),
                                           np.zeros(0), np.array([0.1])))
    points = operating_points([(scores, match), empty_scene], thresholds=(0.0, 0.3, 0.9, 1.5))
    assert [p.threshold for p in points] == [0.0, 0.3, 0.9, 1.5]
    assert [p.per_scene for p in points] == [2.5, 2.0, 1.0, 0.0]
    assert (points[0].width_5mm, points[0].pose_0_01) == (0.6, 0.4)
    assert (points[1].width_5mm, points[1].pose_0_01) == (0.5, 0.25)
    assert (points[2].width_5mm, points[2].pose_0_01) == (0.5, 0.5)
    assert points[3].width_5mm is None and points[3].pose_0_01 is None
    m = stage_metrics(STAGE_2, [match], proposals=5, scored=[(scores, match)])
    assert [p.threshold for p in m.operating_points] == [0.1, 0.3, 0.5, 0.7, 0.9]
    assert m.operating_points[0].per_scene == 5.0


def test_thresholds_are_strict() -> None:
    match = GraspMatch(distance=np.array([0.005, np.nextafter(0.005, 0.0), 0.02]),
                       gt_index=np.zeros(3, dtype=np.int64),
                       width_error=np.array([0.0025, np.nextafter(0.0025, 0.0), 0.01]),
                       gt_distance=np.array([0.01, np.nextafter(0.01, 0.0)]))
    m = stage_metrics(STAGE_1, [match], proposals=3, width_thresholds=(0.0025, 0.01),
                      pose_thresholds=(0.005, 0.02), coverage_threshold=0.01)
    assert m.width_accuracy == pytest.approx((1 / 3, 2 / 3))
    assert m.pose_accuracy == pytest.approx((1 / 3, 2 / 3))
    assert m.coverage == pytest.approx(1 / 2)


def test_no_prediction_and_no_ground_truth_give_none() -> None:
    m = stage_metrics(STAGE_1, [], proposals=0)
    assert m.width_accuracy == (None,) * 4 and m.pose_accuracy == (None,) * 4
    assert m.coverage is None and m.mean_width_error is None and m.median_distance is None
    with pytest.raises(EvaluationError, match="empty ground truth"):
        match_to_ground_truth(Grasps.empty(), Grasps.empty())


def test_predict_stages_refines_the_same_proposals_as_detect(checkpoint: Path) -> None:
    detector = GraspDetector.from_checkpoint(checkpoint)
    cloud = synthetic_scene(np.random.default_rng(3), num_points=700)["points"]
    pred = predict_stages(detector, cloud)
    n = len(pred.proposals)
    assert 0 < n == len(pred.refined) <= detector.config.proposals_test
    assert np.all(pred.proposals.stage == STAGE_1) and np.all(pred.refined.stage == STAGE_2)
    assert np.all(np.diff(pred.proposals.score) <= 0)  # NMS order, best first
    one = detector.detect(cloud, stage=STAGE_1)
    two = detector.detect(cloud, stage=STAGE_2)
    # detect() returns subsets (width filter), sorted by score; every grasp must be ours.
    for ours, theirs in ((pred.proposals, one), (pred.refined, two)):
        assert 0 < len(theirs) <= n
        d = np.linalg.norm(theirs.center[:, None] - ours.center[None], axis=2)
        j = d.argmin(axis=1)
        np.testing.assert_allclose(d[np.arange(len(theirs)), j], 0.0, atol=1e-9)
        np.testing.assert_allclose(theirs.score, ours.score[j], atol=1e-9)
        np.testing.assert_allclose(theirs.width, ours.width[j], atol=1e-9)


def test_max_grasps_returns_the_best_refined_grasps_of_all_proposals(checkpoint: Path) -> None:
    # As in the paper, every proposal kept after NMS is refined and the refined grasps are
    # ranked by their own score; max_grasps only truncates that ranking (it used to limit
    # the proposals refined, so stage 2 ranked only the stage-1 favourites).
    detector = GraspDetector.from_checkpoint(checkpoint)
    cloud = synthetic_scene(np.random.default_rng(3), num_points=700)["points"]
    every = detector.detect(cloud, stage=STAGE_2)
    assert len(every) > 3
    best = detector.detect(cloud, max_grasps=3, stage=STAGE_2)
    np.testing.assert_array_equal(best.center, every.center[:3])
    np.testing.assert_array_equal(best.score, every.score[:3])
    # refining only the 3 stage-1 favourites gives at most 3 grasps, not necessarily the best
    few = detector.detect(cloud, proposals=3, stage=STAGE_2)
    assert 0 < len(few) <= 3 and few.score.max() <= every.score.max()
    for bad in ({"max_grasps": 0}, {"proposals": 0}):
        with pytest.raises(NetworkError, match=">= 1 or None"):
            detector.detect(cloud, **bad)


def test_evaluate_filters_negatives_and_skips_empty_scenes(dataset: Path,
                                                          checkpoint: Path) -> None:
    detector = GraspDetector.from_checkpoint(checkpoint)
    calls: list[tuple[int, int]] = []
    result = evaluate(detector, dataset, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i + 1, NUM_SCENES) for i in range(NUM_SCENES)]
    assert (result.scenes_total, result.scenes_evaluated, result.scenes_skipped) == (3, 2, 1)

    reader = DatasetReader(dataset)
    kept = {STAGE_1: 0, STAGE_2: 0}
    best = {STAGE_1: 0.0, STAGE_2: 0.0}
    total = 0
    gt_total = 0
    for i in (0, 2):
        scene = reader.scene(i)
        gt_total += len(scene["grasp_width"])
        pred = predict_stages(detector, scene["points"])
        total += len(pred.proposals)
        kept[STAGE_1] += int(np.sum(pred.proposals.score >= 0.5))
        kept[STAGE_2] += int(np.sum(pred.refined.score >= 0.5))
        best[STAGE_1] = max(best[STAGE_1], float(pred.proposals.score.max()))
        best[STAGE_2] = max(best[STAGE_2], float(pred.refined.score.max()))
    s1, s2 = result.stages()
    assert s1.proposals == s2.proposals == total > 0
    assert (s1.predictions, s2.predictions) == (kept[STAGE_1], kept[STAGE_2])
    assert s1.gt_grasps == s2.gt_grasps == gt_total
    assert (s1.max_score, s2.max_score) == (best[STAGE_1], best[STAGE_2])
    # A random network scores around 0.5: the filter must actually drop something.
    assert s1.predictions < total or s2.predictions < total

    everything = evaluate(detector, dataset, max_scenes=1, confidence_threshold=0.0)
    assert everything.scenes_total == 1 and everything.scenes_skipped == 0
    assert everything.stage1.predictions == everything.stage1.proposals > 0
    for acc in everything.stage1.width_accuracy + everything.stage1.pose_accuracy:
        assert acc is not None and 0.0 <= acc <= 1.0
    pose = everything.stage1.pose_accuracy
    assert all(b >= a for a, b in zip(pose[:-1], pose[1:], strict=True))
    none = evaluate(detector, dataset, max_scenes=1, confidence_threshold=1.0)
    assert none.stage2.predictions == 0 and none.stage2.width_accuracy == (None,) * 4
    assert none.stage2.coverage == 0.0
    assert "n/a" in none.to_markdown()
    with pytest.raises(EvaluationError, match="max_scenes"):
        evaluate(detector, dataset, max_scenes=0)


def test_tables_compare_the_proposals_stage_2_keeps_before_and_after_refinement(
        dataset: Path, checkpoint: Path) -> None:
    detector = GraspDetector.from_checkpoint(checkpoint)
    result = evaluate(detector, dataset, confidence_threshold=0.5)
    reader = DatasetReader(dataset)
    paired, same_count = [], []
    for i in (0, 2):  # the scenes with ground truth
        scene = reader.scene(i)
        gt = scene_grasps(scene)
        pred = predict_stages(detector, scene["points"])
        keep = pred.refined.score >= 0.5
        paired.append(match_to_ground_truth(pred.proposals[keep], gt, (1.0, 0.03, 0.03)))
        # stage 1 by its own score, as many as stage 2 keeps in this scene
        order = sorted(range(len(pred.proposals)), key=lambda k: -pred.proposals.score[k])
        best = np.array(order[: int(keep.sum())], dtype=np.int64)
        same_count.append(match_to_ground_truth(pred.proposals[best], gt, (1.0, 0.03, 0.03)))
    for got, matches in ((result.stage1_paired, paired),
                         (result.stage1_same_count, same_count)):
        expected = stage_metrics(STAGE_1, matches, result.stage2.proposals)
        assert got is not None
        assert got.predictions == result.stage2.predictions > 0
        assert got.width_accuracy == expected.width_accuracy
        assert got.pose_accuracy == expected.pose_accuracy
    assert result.table_stage1 is result.stage1_paired
    md = result.to_markdown()
    table_1 = md[md.index("## Table I"):md.index("## Table II")]
    w5 = result.stage1_paired.width_accuracy[1]
    assert f"| 5 | {100 * w5:.1f} | {100 * result.stage2.width_accuracy[1]:.1f} |" in table_1
    assert "stage-1 column: the same kept proposals before refinement" in md
    alone = md[md.index("## Stage 1 on its own"):md.index("## Counts")]
    assert f"own score >= 0.5 ({result.stage1.predictions})" in alone
    assert f"same count by own score ({result.stage2.predictions})" in alone
    assert "| width 5 mm |" in alone and "| D < 0.01 |" in alone
    assert "| | stage-1 (tables) | stage-1 own filter | stage-1 same count | stage-2 |" in md
    data = json.loads(result.to_json())
    assert data["tables_stage1"] == "stage1_paired"
    assert data["stage1_paired"]["predictions"] == result.stage2.predictions
    assert data["stage1_same_count"]["predictions"] == result.stage2.predictions
    assert "8. Stage 1 on its own" in data["protocol"]
    assert "stage-2 score is < 0.5 are dropped" in data["protocol"]


def test_reports_hold_both_stages_and_all_thresholds(dataset: Path, checkpoint: Path) -> None:
    result = evaluate(checkpoint, dataset, max_scenes=1)
    md = result.to_markdown()
    assert "Table I" in md and "Table II" in md and "Protocol" in md
    assert "| Threshold (mm) | stage-1 | stage-2 | paper stage-1 | paper stage-2 |" in md
    for row in ("| 2.5 |", "| 5 |", "| 7.5 |", "| 10 |", "| 0.005 |", "| 0.01 |", "| 0.015 |",
                "| 0.02 |"):
        assert row in md
    for paper in ("| 42.0 | 52.5 |", "| 92.9 | 93.1 |", "| 25.3 | 52.5 |", "| 33.5 | 65.2 |"):
        assert paper in md
    assert "score < 0.5" in md and str(dataset) in md and "epoch=2" in md
    data = json.loads(result.to_json())
    for stage in ("stage1", "stage2"):
        assert len(data[stage]["width_accuracy"]) == 4 and len(data[stage]["pose_accuracy"]) == 4
        assert data[stage]["proposals"] == result.stages()[int(stage[-1]) - 1].proposals
    assert data["width_thresholds"] == [0.0025, 0.005, 0.0075, 0.01]
    assert data["pose_thresholds"] == [0.005, 0.01, 0.015, 0.02]
    assert data["paper"]["pose_accuracy_percent"]["stage2"] == [52.5, 61.2, 63.9, 65.2]
    assert data["model_config"]["epoch"] == 2 and data["scenes_evaluated"] == 1
    assert "highest score before filtering" in md
    assert "annotation NMS not recorded" in md and data["ground_truth_nms"] is None
    assert "## Confidence calibration" in md and "| [0.9, 1] |" in md
    assert "Operating points" in md and "| 0.9 |" in md
    for stage in ("stage1", "stage2"):
        ops = data[stage]["operating_points"]
        assert [p["threshold"] for p in ops] == [0.1, 0.3, 0.5, 0.7, 0.9]
        assert ops[2]["per_scene"] == data[stage]["predictions"] / data["scenes_evaluated"]
    for stage in ("stage1", "stage2"):
        bins = data[stage]["calibration"]
        assert [b["low"] for b in bins] == [0.0, 0.3, 0.5, 0.7, 0.8, 0.9]
        assert sum(b["predictions"] for b in bins) == data[stage]["proposals"]


def test_cli_errors(dataset: Path, checkpoint: Path, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--model", str(tmp_path / "nope.pt"), "--data", str(dataset)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(checkpoint), "--data", str(tmp_path)]) == 1
    assert "is not a dataset folder" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(checkpoint), "--data", str(dataset),
                 "--max-scenes", "0"]) == 2
    assert "--max-scenes" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cli_writes_the_report(dataset: Path, checkpoint: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    prefix = tmp_path / "reports" / "novel"
    assert main(["evaluate", "--model", str(checkpoint), "--data", str(dataset), "--out",
                 str(prefix), "--max-scenes", "2"]) == 0
    out = capsys.readouterr().out
    assert "## Table I: grasp width accuracy (%)" in out
    md, js = prefix.with_suffix(".md"), prefix.with_suffix(".json")
    assert md.read_text() in out
    data = json.loads(js.read_text())
    assert (data["scenes_total"], data["scenes_skipped"]) == (2, 1)
    folder = tmp_path / "folder"
    folder.mkdir()
    assert main(["evaluate", "--model", str(checkpoint), "--data", str(dataset), "--out",
                 str(folder), "--max-scenes", "1", "--confidence-threshold", "0"]) == 0
    assert (folder / "evaluation.md").is_file() and (folder / "evaluation.json").is_file()
    assert (folder / "evaluation.png").stat().st_size > 10_000
    assert prefix.with_suffix(".png").is_file()
    data = json.loads((folder / "evaluation.json").read_text())
    assert data["confidence_threshold"] == 0.0
    assert data["stage1"]["predictions"] == data["stage1"]["proposals"] > 0


def test_report_names_the_ground_truth_density_from_the_manifest(
        dataset: Path, checkpoint: Path, tmp_path: Path) -> None:
    copy = tmp_path / "dense"
    shutil.copytree(dataset, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["config"]["annotation"] = {"nms_threshold": 0.01}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = evaluate(checkpoint, copy, max_scenes=1)
    assert result.ground_truth_nms == 0.01
    gt = result.stage1.gt_grasps
    assert f"- ground truth: {gt} annotated grasps ({gt:.0f} per scene), at least D = 0.01 " \
        "apart per object (annotation NMS)" in result.to_markdown()
    assert json.loads(result.to_json())["ground_truth_nms"] == 0.01
