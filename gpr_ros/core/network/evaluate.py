"""Offline evaluation of a trained GPR network: grasp width and grasp pose accuracy (Sec. VI-B).

Protocol (paper Sec. VI-B, Tables I and II; written the same way into every report):

1. Scenes. The scenes of a stored dataset folder are visited in index order (the first
   ``max_scenes`` of them when given). The ground truth of a scene is its stored set of
   positive grasps (:func:`~gpr_ros.core.dataset.scene_format.scene_grasps`, camera frame).
   Scenes without a ground-truth grasp are skipped (the network is not run) and counted.
2. Predictions. The network runs once on the scene's stored points, exactly as
   :meth:`GraspDetector.detect` does (same seeded subsampling of ``num_points`` points, same
   crop seed): stage 1 decodes one proposal per point; the points scoring at least
   ``proposal_threshold`` (best ``pre_nms_proposals``) go through NMS with D, and the best
   ``proposals_test`` survivors (the paper's "100 proposals after NMS") are kept. Stage 2
   refines these same proposals. Each proposal thus yields a stage-1 prediction (score:
   sigmoid of the segmentation logit of its point) and a stage-2 prediction (score: sigmoid
   of the refined confidence logit). Widths are clipped to ``[0, max_width]`` as in
   :meth:`GraspDetector.detect`; unlike ``detect``, no prediction is dropped for its width.
3. Negatives and the two stages. "We select 100 proposals after NMS operation and filter out
   the negative samples": a proposal whose stage-2 confidence is below
   ``confidence_threshold`` (default 0.5) is dropped (stage 2 is the part that "classifies
   noisy grasp candidates", paper Fig. 1). Tables I and II score the kept proposals twice:
   with their stage-1 pose and width (stage-1 column) and refined by stage 2 (stage-2
   column), so the columns compare the same grasps before and after refinement, as the paper
   reads its tables ("grasp width accuracy after refinement has 25% and 8% improvement
   respectively over stage-1"; "proposals after refinement outperform stage-1").
4. Matching. Each kept prediction is matched to the ground-truth grasp of its scene with the
   smallest grasp distance D (Eq. 1, β = (1, 0.03, 0.03); D is invariant to r -> -r).
5. Width accuracy at t (Table I): the fraction of kept predictions with
   ``|w_pred - w_gt| < t``, w_gt the width of the D-nearest ground-truth grasp,
   t = 2.5, 5, 7.5, 10 mm.
   Pose accuracy at t (Table II): the fraction of kept predictions with ``min D < t``,
   t = 0.005, 0.01, 0.015, 0.02.
   Both are pooled over all kept predictions of all evaluated scenes (not averaged per scene).
6. Coverage (extra, not in the paper): the fraction of ground-truth grasps of the evaluated
   scenes whose nearest kept prediction has D < 0.01 (a scene without kept predictions
   recovers none of its grasps).
7. Calibration (extra): every prediction *before* the negative filter, binned by its score
   (edges :data:`CALIBRATION_EDGES`), with the fraction of D < 0.01, D < 0.02 and width
   error < 5 mm per bin: how far a grasp's score can be trusted, and what a ``min_score``
   buys.
8. Stage 1 on its own (extra): stage 1 read as a single-shot detector with its own score
   (the segmentation probability of the proposal's point), in two ways: (a) its own filter,
   the proposals scoring at least ``confidence_threshold`` by stage 1, and (b) the same
   count, per scene the proposals with the highest stage-1 scores, as many as stage 2 keeps
   in that scene. (a) is what the stage-1 column showed until session 15; its selection
   depends on how the two scores are calibrated (the focal-loss stage-1 score rarely
   passes 0.5, so it keeps a few of its most confident points), which (b) removes. The
   calibration and operating points of item 7 use each stage's own score.

A fraction with an empty denominator (no kept prediction, no ground-truth grasp) is reported
as ``None`` (``n/a`` in Markdown), never as a division by zero.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
import json
import math
from pathlib import Path
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray
import torch

from gpr_ros.core.dataset.scene_format import scene_grasps
from gpr_ros.core.dataset.storage import DatasetReader
from gpr_ros.core.grasp import DEFAULT_BETA, STAGE_1, STAGE_2, Grasps, pairwise_grasp_distance
from gpr_ros.core.network.checkpoint import load_checkpoint
from gpr_ros.core.network.config import DEFAULT_POSE_PASSES
from gpr_ros.core.network.errors import NetworkError
from gpr_ros.core.network.inference import GraspDetector

__all__ = [
    "CALIBRATION_EDGES",
    "CONFIDENCE_THRESHOLD",
    "COVERAGE_THRESHOLD",
    "OPERATING_THRESHOLDS",
    "PAPER_POSE_ACCURACY",
    "PAPER_WIDTH_ACCURACY",
    "POSE_THRESHOLDS",
    "PROTOCOL",
    "WIDTH_THRESHOLDS",
    "CalibrationBin",
    "EvaluationError",
    "EvaluationResult",
    "calibration",
    "GraspMatch",
    "OperatingPoint",
    "StageMetrics",
    "StagePredictions",
    "evaluate",
    "match_to_ground_truth",
    "operating_points",
    "plot_evaluation",
    "predict_stages",
    "stage_metrics",
]

#: Width thresholds of Table I, m (2.5, 5, 7.5, 10 mm).
WIDTH_THRESHOLDS: tuple[float, ...] = (0.0025, 0.005, 0.0075, 0.01)
#: Grasp distance thresholds of Table II (D, Eq. 1).
POSE_THRESHOLDS: tuple[float, ...] = (0.005, 0.01, 0.015, 0.02)
#: D below which a ground-truth grasp counts as recovered (coverage; not in the paper).
COVERAGE_THRESHOLD = 0.01
#: Score bin edges of the calibration table.
CALIBRATION_EDGES: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0)
#: Score thresholds of the operating-point table (kept per scene against accuracy).
OPERATING_THRESHOLDS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
#: Predictions scoring below this are the "negative samples" filtered out.
CONFIDENCE_THRESHOLD = 0.5

#: Table I of the paper, % per threshold of :data:`WIDTH_THRESHOLDS`, by stage.
PAPER_WIDTH_ACCURACY: Mapping[int, tuple[float, ...]] = {
    STAGE_1: (42.0, 76.0, 87.5, 92.9),
    STAGE_2: (52.5, 82.2, 90.2, 93.1),
}
#: Table II of the paper, % per threshold of :data:`POSE_THRESHOLDS`, by stage.
PAPER_POSE_ACCURACY: Mapping[int, tuple[float, ...]] = {
    STAGE_1: (25.3, 29.1, 31.8, 33.5),
    STAGE_2: (52.5, 61.2, 63.9, 65.2),
}

#: The protocol, as written into the Markdown report.
PROTOCOL = """\
1. Scenes: the dataset's scenes in index order (the first `max_scenes` when given); the ground
   truth is the scene's stored positive grasps (camera frame). Scenes without a ground-truth
   grasp are skipped and counted.
2. Predictions: one network run per scene on its stored points, as `GraspDetector.detect`
   (same seeded subsampling and crop seed). The best `proposals_test` stage-1 proposals after
   NMS (paper: 100) are taken, and stage 2 refines these same proposals. Stage-1 score:
   sigmoid of the point's segmentation logit; stage-2 score: sigmoid of the refined
   confidence logit. Widths are clipped to [0, max_width]; none is dropped for its width.
3. Negatives filtered out: proposals whose stage-2 score is < {conf:g} are dropped. Tables I and
   II score the kept proposals with their stage-1 pose and width (stage-1 column) and
   refined (stage-2 column): the same grasps before and after refinement (paper: "grasp
   width accuracy after refinement has 25% and 8% improvement respectively over stage-1").
4. Matching: each kept prediction is matched to the scene's ground-truth grasp with the
   smallest grasp distance D (Eq. 1, beta = {beta}; D treats r and -r alike).
5. Width accuracy at t (Table I): fraction of kept predictions with |w_pred - w_gt| < t, w_gt
   the width of the D-nearest ground-truth grasp. Pose accuracy at t (Table II): fraction of
   kept predictions with min D < t. Pooled over all kept predictions of all evaluated scenes.
6. Coverage (extra): fraction of ground-truth grasps whose nearest kept prediction has
   D < {cov:g}.
7. Calibration (extra): all predictions before the filter, binned by score; per bin the
   fraction with D < 0.01, D < 0.02 and width error < 5 mm. Operating points (extra): for
   several filter thresholds t, the predictions scoring >= t per scene and their width
   accuracy at 5 mm and pose accuracy at D < 0.01. The tables pool over kept predictions,
   so a stricter filter raises them while fewer grasps are kept: compare models at the same
   number kept per scene.
8. Stage 1 on its own (extra): stage 1 as a single-shot detector ranked by its own score,
   (a) its own filter (stage-1 score >= {conf:g}) and (b) per scene its best-scoring proposals,
   as many as stage 2 keeps there (the same count, free of how the two scores are
   calibrated). Item 7 bins each stage by its own score."""


class EvaluationError(NetworkError):
    """Invalid evaluation input (thresholds, scene counts, ground truth)."""


@dataclass(frozen=True)
class StagePredictions:
    """The proposals of one scene and their stage-2 refinements (same order, unfiltered).

    :ivar proposals: stage-1 proposals after NMS, score = sigmoid(segmentation logit),
        stage :data:`STAGE_1`.
    :ivar refined: ``proposals[i]`` refined by stage 2, score = sigmoid(confidence logit),
        stage :data:`STAGE_2`.
    """

    proposals: Grasps
    refined: Grasps


@dataclass(frozen=True)
class GraspMatch:
    """Predictions of one scene matched to its ground truth by the grasp distance D.

    :ivar distance: (P,) D of each prediction to its nearest ground-truth grasp.
    :ivar gt_index: (P,) index of that ground-truth grasp.
    :ivar width_error: (P,) ``|w_pred - w_gt|`` against that grasp, m.
    :ivar gt_distance: (G,) D of each ground-truth grasp to its nearest prediction (``inf``
        when there is no prediction).
    """

    distance: NDArray[np.float64]
    gt_index: NDArray[np.int64]
    width_error: NDArray[np.float64]
    gt_distance: NDArray[np.float64]


@dataclass(frozen=True)
class CalibrationBin:
    """Predictions of one score bin (all predictions, before the negative filter).

    :ivar low: lower score edge (inclusive).
    :ivar high: upper score edge (exclusive; the last bin includes 1).
    :ivar predictions: predictions in the bin.
    :ivar pose_0_01: fraction with D < 0.01 (``None``: empty bin).
    :ivar pose_0_02: fraction with D < 0.02.
    :ivar width_5mm: fraction with a width error < 5 mm.
    """

    low: float
    high: float
    predictions: int
    pose_0_01: float | None
    pose_0_02: float | None
    width_5mm: float | None


@dataclass(frozen=True)
class OperatingPoint:
    """The predictions scoring at least ``threshold`` (all scenes pooled).

    :ivar threshold: the filter.
    :ivar per_scene: kept predictions per evaluated scene.
    :ivar width_5mm: fraction with a width error < 5 mm (``None``: none kept).
    :ivar pose_0_01: fraction with D < 0.01 (``None``: none kept).
    """

    threshold: float
    per_scene: float
    width_5mm: float | None
    pose_0_01: float | None


@dataclass(frozen=True)
class StageMetrics:
    """Accuracy of one stage over the evaluated scenes.

    :ivar stage: :data:`STAGE_1` or :data:`STAGE_2`.
    :ivar proposals: predictions before the negative filter.
    :ivar predictions: kept predictions (the denominator of the accuracies).
    :ivar gt_grasps: ground-truth grasps of the evaluated scenes.
    :ivar width_accuracy: per width threshold, fraction in [0, 1] (``None``: no prediction).
    :ivar pose_accuracy: per pose threshold, fraction in [0, 1] (``None``: no prediction).
    :ivar coverage: fraction of ground-truth grasps recovered (``None``: no ground truth).
    :ivar mean_width_error: mean ``|w_pred - w_gt|``, m (``None``: no prediction).
    :ivar median_distance: median D to the nearest ground truth (``None``: no prediction).
    :ivar max_score: highest score before the negative filter (``None``: no proposal); shows
        whether the confidence threshold is reachable at all.
    :ivar calibration: accuracy per score bin over all predictions (protocol item 7).
    :ivar operating_points: accuracy of the predictions above several thresholds (item 7).
    """

    stage: int
    proposals: int
    predictions: int
    gt_grasps: int
    width_accuracy: tuple[float | None, ...]
    pose_accuracy: tuple[float | None, ...]
    coverage: float | None
    mean_width_error: float | None
    median_distance: float | None
    max_score: float | None = None
    calibration: tuple[CalibrationBin, ...] = ()
    operating_points: tuple[OperatingPoint, ...] = ()


@dataclass(frozen=True)
class EvaluationResult:
    """Result of :func:`evaluate` (see the module docstring for the protocol).

    :ivar data_dir: the dataset folder.
    :ivar model: the checkpoint path, or the detector's model name.
    :ivar model_config: summary of the network config (and the checkpoint's epoch).
    :ivar device: where the network ran.
    :ivar scenes_total: scenes visited.
    :ivar scenes_evaluated: scenes with ground truth, on which the network ran.
    :ivar scenes_skipped: scenes skipped for having no ground-truth grasp.
    :ivar max_proposals: proposals kept after NMS per scene.
    :ivar confidence_threshold: predictions scoring below this were filtered out.
    :ivar beta: weights of D.
    :ivar width_thresholds: thresholds of Table I, m.
    :ivar pose_thresholds: thresholds of Table II (D).
    :ivar coverage_threshold: D threshold of the coverage.
    :ivar stage1: metrics of the stage-1 proposals filtered by their own (stage-1) score, with
        the calibration and operating points of stage 1 (protocol items 7 and 8a).
    :ivar stage2: metrics of their stage-2 refinements (the stage-2 column of Tables I, II).
    :ivar stage1_paired: metrics of the stage-1 poses of the proposals whose stage-2
        prediction is kept: the stage-1 column of Tables I and II (protocol item 3).
    :ivar stage1_same_count: metrics of the best-scoring stage-1 proposals of each scene, as
        many as stage 2 keeps there (protocol item 8b).
    :ivar seconds: wall-clock time of the evaluation.
    :ivar ground_truth_nms: the NMS threshold on D the dataset's grasps were annotated with
        (from its manifest; ``None`` when not recorded): ground-truth grasps of an object are
        at least this far apart, so a valid prediction between two of them can be up to about
        half of it from both, which bounds what Table II's small thresholds can show.
    """

    data_dir: str
    model: str
    model_config: Mapping[str, Any]
    device: str
    scenes_total: int
    scenes_evaluated: int
    scenes_skipped: int
    max_proposals: int
    confidence_threshold: float
    beta: tuple[float, float, float]
    width_thresholds: tuple[float, ...]
    pose_thresholds: tuple[float, ...]
    coverage_threshold: float
    stage1: StageMetrics
    stage2: StageMetrics
    stage1_paired: StageMetrics
    stage1_same_count: StageMetrics
    seconds: float
    ground_truth_nms: float | None = None

    def stages(self) -> tuple[StageMetrics, StageMetrics]:
        """Return ``(stage1, stage2)``."""
        return self.stage1, self.stage2

    @property
    def table_stage1(self) -> StageMetrics:
        """The stage-1 column of Tables I and II: the proposals stage 2 keeps, before
        refinement."""
        return self.stage1_paired

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (what :meth:`to_json` writes).

        :return: the dict; stage metrics under ``"stage1"``, ``"stage1_paired"``,
            ``"stage1_same_count"`` and ``"stage2"``; ``"tables_stage1"`` names the entry of
            the stage-1 column of Tables I and II.
        """
        data = asdict(self)
        data["model_config"] = dict(self.model_config)
        data["protocol"] = self.protocol()
        data["tables_stage1"] = "stage1_paired"
        data["paper"] = {
            "width_accuracy_percent": {f"stage{k}": list(v)
                                       for k, v in PAPER_WIDTH_ACCURACY.items()},
            "pose_accuracy_percent": {f"stage{k}": list(v)
                                      for k, v in PAPER_POSE_ACCURACY.items()},
            "width_thresholds": list(WIDTH_THRESHOLDS),
            "pose_thresholds": list(POSE_THRESHOLDS),
        }
        return data

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict` (fractions in [0, 1]; ``null`` for n/a).

        :return: the text.
        """
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def protocol(self) -> str:
        """The protocol with this run's parameters filled in."""
        beta = "(" + ", ".join(f"{b:g}" for b in self.beta) + ")"
        return PROTOCOL.format(conf=self.confidence_threshold, beta=beta,
                               cov=self.coverage_threshold)

    def to_markdown(self) -> str:
        """Markdown report: Tables I and II next to the paper's numbers, counts, protocol.

        :return: the text.
        """
        s1, s2 = self.table_stage1, self.stage2
        cfg = ", ".join(f"{k}={_fmt_value(v)}" for k, v in self.model_config.items())
        lines = [
            "# GPR network evaluation",
            "",
            f"- model: `{self.model}` ({cfg})",
            f"- data: `{self.data_dir}`",
            f"- scenes: {self.scenes_evaluated} evaluated, {self.scenes_skipped} skipped "
            f"without ground truth, {self.scenes_total} visited",
            f"- ground truth: {self.stage1.gt_grasps} annotated grasps "
            f"({self.stage1.gt_grasps / max(self.scenes_evaluated, 1):.0f} per scene), "
            + (f"at least D = {self.ground_truth_nms:g} apart per object (annotation NMS)"
               if self.ground_truth_nms is not None else "annotation NMS not recorded"),
            f"- proposals per scene after NMS: {self.max_proposals}; negatives filtered: "
            f"stage-2 score < {self.confidence_threshold:g}; "
            "stage-1 column: the same kept proposals before refinement",
            f"- device: {self.device}; time: {self.seconds:.1f} s",
            "",
            "## Table I: grasp width accuracy (%)",
            "",
            "| Threshold (mm) | stage-1 | stage-2 | paper stage-1 | paper stage-2 |",
            "|---:|---:|---:|---:|---:|",
        ]
        for i, t in enumerate(self.width_thresholds):
            p1, p2 = _paper(PAPER_WIDTH_ACCURACY, WIDTH_THRESHOLDS, t)
            lines.append(f"| {t * 1000:g} | {_pct(s1.width_accuracy[i])} | "
                         f"{_pct(s2.width_accuracy[i])} | {p1} | {p2} |")
        lines += [
            "",
            "## Table II: grasp pose accuracy (%)",
            "",
            "| Threshold (D) | stage-1 | stage-2 | paper stage-1 | paper stage-2 |",
            "|---:|---:|---:|---:|---:|",
        ]
        for i, t in enumerate(self.pose_thresholds):
            p1, p2 = _paper(PAPER_POSE_ACCURACY, POSE_THRESHOLDS, t)
            lines.append(f"| {t:g} | {_pct(s1.pose_accuracy[i])} | {_pct(s2.pose_accuracy[i])} "
                         f"| {p1} | {p2} |")
        lines += self._stage1_alone_markdown()
        n = self.scenes_evaluated
        columns = [("stage-1 (tables)", s1), ("stage-1 own filter", self.stage1),
                   ("stage-1 same count", self.stage1_same_count), ("stage-2", s2)]

        def row(label: str, cell: Callable[[StageMetrics], str]) -> str:
            return f"| {label} | " + " | ".join(cell(m) for _, m in columns) + " |"

        lines += [
            "",
            "## Counts",
            "",
            "| | " + " | ".join(name for name, _ in columns) + " |",
            "|---|" + "---:|" * len(columns),
            row("proposals (before filtering)", lambda m: str(m.proposals)),
            row("predictions kept", lambda m: str(m.predictions)),
            row("predictions kept per scene (mean)", lambda m: _ratio(m.predictions, n)),
            row("ground-truth grasps", lambda m: str(m.gt_grasps)),
            row(f"ground-truth grasps recovered, D < {self.coverage_threshold:g} (%)",
                lambda m: _pct(m.coverage)),
            row("mean width error (mm)", lambda m: _mm(m.mean_width_error)),
            row("median D to nearest ground truth", lambda m: _num(m.median_distance)),
            row("highest score before filtering", lambda m: _num(m.max_score)),
            "",
        ]
        lines += self._calibration_markdown()
        lines += [
            "## Protocol",
            "",
            self.protocol(),
            "",
        ]
        return "\n".join(lines)

    def _stage1_alone_markdown(self) -> list[str]:
        own, same, s2 = self.stage1, self.stage1_same_count, self.stage2
        columns = [
            (f"stage-1, own score >= {self.confidence_threshold:g} ({own.predictions})", own),
            (f"stage-1, same count by own score ({same.predictions})", same),
            (f"stage-2 ({s2.predictions})", s2),
        ]
        lines = [
            "",
            "## Stage 1 on its own, ranked by its own score (%; predictions in brackets)",
            "",
            "| Threshold | " + " | ".join(name for name, _ in columns) + " |",
            "|---|" + "---:|" * len(columns),
        ]
        for i, t in enumerate(self.width_thresholds):
            lines.append(f"| width {t * 1000:g} mm | "
                         + " | ".join(_pct(m.width_accuracy[i]) for _, m in columns) + " |")
        for i, t in enumerate(self.pose_thresholds):
            lines.append(f"| D < {t:g} | "
                         + " | ".join(_pct(m.pose_accuracy[i]) for _, m in columns) + " |")
        return lines

    def _calibration_markdown(self) -> list[str]:
        s1, s2 = self.stage1.calibration, self.stage2.calibration
        if not s1 and not s2:
            return []
        lines = [
            "## Confidence calibration (all predictions, before the filter)",
            "",
            "| score | stage-1 n | D < 0.01 | D < 0.02 | width < 5 mm | stage-2 n | D < 0.01 | "
            "D < 0.02 | width < 5 mm |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        empty = CalibrationBin(0.0, 0.0, 0, None, None, None)
        for b1, b2 in zip(s1 or [empty] * len(s2), s2 or [empty] * len(s1), strict=True):
            ref = b1 if s1 else b2
            cells = []
            for b in (b1, b2):
                cells += [str(b.predictions), _pct(b.pose_0_01), _pct(b.pose_0_02),
                          _pct(b.width_5mm)]
            lines.append(f"| [{ref.low:g}, {ref.high:g}{']' if ref.high >= 1.0 else ')'} | "
                         + " | ".join(cells) + " |")
        o1, o2 = self.stage1.operating_points, self.stage2.operating_points
        if o1 or o2:
            lines += [
                "",
                "Operating points (predictions scoring >= t, all scenes pooled):",
                "",
                "| t | stage-1 per scene | width < 5 mm | D < 0.01 | stage-2 per scene | "
                "width < 5 mm | D < 0.01 |",
                "|---:|---:|---:|---:|---:|---:|---:|",
            ]
            none = OperatingPoint(0.0, 0.0, None, None)
            for p1, p2 in zip(o1 or [none] * len(o2), o2 or [none] * len(o1), strict=True):
                point = p1 if o1 else p2
                row = []
                for p in (p1, p2):
                    row += [f"{p.per_scene:.1f}", _pct(p.width_5mm), _pct(p.pose_0_01)]
                lines.append(f"| {point.threshold:g} | " + " | ".join(row) + " |")
        return [*lines, ""]


def _fmt_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_fmt_value(v) for v in value) + ")"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f}"


def _mm(value: float | None) -> str:
    return "n/a" if value is None else f"{1000.0 * value:.2f}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _ratio(num: int, den: int) -> str:
    return "n/a" if den == 0 else f"{num / den:.1f}"


def _paper(table: Mapping[int, tuple[float, ...]], thresholds: tuple[float, ...],
           t: float) -> tuple[str, str]:
    for i, ref in enumerate(thresholds):
        if math.isclose(ref, t, rel_tol=1e-9, abs_tol=0.0):
            return f"{table[STAGE_1][i]:.1f}", f"{table[STAGE_2][i]:.1f}"
    return "-", "-"


# ---------------------------------------------------------------------------- predictions


@torch.no_grad()
def predict_stages(detector: GraspDetector, points: NDArray[Any],
                   max_proposals: int | None = None) -> StagePredictions:
    """Run the network once; return the proposals after NMS and their stage-2 refinements.

    Follows :meth:`GraspDetector.detect` step by step (same subsampling and crop seeds), so
    ``refined`` holds the grasps ``detect(points, stage=STAGE_2)`` returns before its
    postprocessing, and ``proposals`` those of ``stage=STAGE_1``. Nothing is filtered or
    sorted here; widths are clipped to ``[0, max_width]``.

    :param detector: the detector.
    :param points: (N, 3) camera-frame cloud, m.
    :param max_proposals: proposals kept after NMS (default ``config.proposals_test``).
    :return: both stages, in the same proposal order (best stage-1 score first).
    :raises NetworkError: on a bad cloud.
    """
    model = detector.model
    config = detector.config
    sel, groups_np, _ = detector.preprocess(points)
    xyz = torch.from_numpy(sel).to(detector.device).unsqueeze(0)
    groups = {k: torch.from_numpy(np.ascontiguousarray(v)).to(detector.device).unsqueeze(0)
              for k, v in groups_np.items()}
    features = model.backbone(xyz, groups)
    limit = config.proposals_test if max_proposals is None else int(max_proposals)
    props = model.inference_proposals(features, xyz, limit)
    n = props.count
    if n == 0:
        return StagePredictions(Grasps.empty(), Grasps.empty())
    p_center, p_rot = props.center[:, :n], props.rotation[:, :n]
    p_width = props.width[:, :n]
    seg_logits = props.seg_logits
    score1 = torch.sigmoid(torch.gather(seg_logits, 1, props.index[:, :n]))
    generator = torch.Generator().manual_seed(detector.seed)
    s2, r_center, r_rot, r_width = model.refine_poses(
        features, seg_logits, xyz, p_center, p_rot, p_width, generator, detector.pose_passes)
    score2 = torch.sigmoid(s2["conf"])
    max_width = config.gripper.max_width
    return StagePredictions(
        proposals=_grasps(p_center, p_rot, p_width, score1, max_width, STAGE_1),
        refined=_grasps(r_center, r_rot, r_width, score2, max_width, STAGE_2),
    )


def _grasps(center: torch.Tensor, rot: torch.Tensor, width: torch.Tensor, score: torch.Tensor,
            max_width: float, stage: int) -> Grasps:
    r = rot[0].cpu().double().numpy()
    return Grasps(center[0].cpu().double().numpy(), r[:, :, 0], r[:, :, 1],
                  np.clip(width[0].cpu().double().numpy(), 0.0, max_width),
                  score[0].cpu().double().numpy(), stage)


# ---------------------------------------------------------------------------- metrics


def match_to_ground_truth(predictions: Grasps, ground_truth: Grasps,
                          beta: Sequence[float] = DEFAULT_BETA) -> GraspMatch:
    """Match every prediction to its D-nearest ground-truth grasp.

    :param predictions: P grasps (already filtered).
    :param ground_truth: G >= 1 grasps of the same scene and frame.
    :param beta: weights of D.
    :return: the match.
    :raises EvaluationError: when the ground truth is empty.
    """
    g = len(ground_truth)
    if g == 0:
        raise EvaluationError("cannot match predictions to an empty ground truth; scenes "
                              "without ground-truth grasps must be skipped")
    p = len(predictions)
    if p == 0:
        return GraspMatch(np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0),
                          np.full(g, np.inf))
    dist = pairwise_grasp_distance(predictions, ground_truth, beta)
    nearest = np.argmin(dist, axis=1).astype(np.int64)
    width_error = np.abs(predictions.width - ground_truth.width[nearest])
    return GraspMatch(dist[np.arange(p), nearest], nearest, width_error, dist.min(axis=0))


def _fraction(count: int, total: int) -> float | None:
    return None if total == 0 else count / total


def stage_metrics(
    stage: int,
    matches: Sequence[GraspMatch],
    proposals: int,
    width_thresholds: Sequence[float] = WIDTH_THRESHOLDS,
    pose_thresholds: Sequence[float] = POSE_THRESHOLDS,
    coverage_threshold: float = COVERAGE_THRESHOLD,
    max_score: float | None = None,
    scored: Sequence[tuple[NDArray[np.float64], GraspMatch]] = (),
) -> StageMetrics:
    """Pool the matches of the evaluated scenes into one stage's metrics.

    A prediction is positive at a threshold t when its error is strictly below t.

    :param stage: :data:`STAGE_1` or :data:`STAGE_2`.
    :param matches: one match per evaluated scene.
    :param proposals: predictions before the negative filter.
    :param width_thresholds: Table I thresholds, m.
    :param pose_thresholds: Table II thresholds (D).
    :param coverage_threshold: D below which a ground-truth grasp counts as recovered.
    :param max_score: highest score before the negative filter, reported as is.
    :param scored: per scene, the scores of *all* predictions and their match (for the
        calibration table; empty: no table).
    :return: the metrics.
    """
    width_error = np.concatenate([m.width_error for m in matches] or [np.zeros(0)])
    distance = np.concatenate([m.distance for m in matches] or [np.zeros(0)])
    gt_distance = np.concatenate([m.gt_distance for m in matches] or [np.zeros(0)])
    n, g = len(distance), len(gt_distance)
    return StageMetrics(
        stage=int(stage),
        proposals=int(proposals),
        predictions=n,
        gt_grasps=g,
        width_accuracy=tuple(_fraction(int(np.sum(width_error < t)), n)
                             for t in width_thresholds),
        pose_accuracy=tuple(_fraction(int(np.sum(distance < t)), n) for t in pose_thresholds),
        coverage=_fraction(int(np.sum(gt_distance < coverage_threshold)), g),
        mean_width_error=float(width_error.mean()) if n else None,
        median_distance=float(np.median(distance)) if n else None,
        max_score=None if max_score is None else float(max_score),
        calibration=calibration(scored) if scored else (),
        operating_points=operating_points(scored) if scored else (),
    )


def _pool_scored(scored: Sequence[tuple[NDArray[np.float64], GraspMatch]],
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Scores, D and width errors of all scenes' predictions, concatenated."""
    score = np.concatenate([np.asarray(s, dtype=np.float64) for s, _ in scored] or [np.zeros(0)])
    dist = np.concatenate([m.distance for _, m in scored] or [np.zeros(0)])
    werr = np.concatenate([m.width_error for _, m in scored] or [np.zeros(0)])
    return score, dist, werr


def calibration(scored: Sequence[tuple[NDArray[np.float64], GraspMatch]],
                edges: Sequence[float] = CALIBRATION_EDGES) -> tuple[CalibrationBin, ...]:
    """Accuracy per score bin (protocol item 7).

    :param scored: per scene, the scores of all predictions and their match.
    :param edges: increasing bin edges; the last bin includes its upper edge.
    :return: one bin per pair of edges.
    """
    score, dist, werr = _pool_scored(scored)
    bins = []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        last = k == len(edges) - 2
        sel = (score >= lo) & ((score <= hi) if last else (score < hi))
        n = int(sel.sum())
        bins.append(CalibrationBin(
            low=float(lo), high=float(hi), predictions=n,
            pose_0_01=_fraction(int(np.sum(dist[sel] < 0.01)), n),
            pose_0_02=_fraction(int(np.sum(dist[sel] < 0.02)), n),
            width_5mm=_fraction(int(np.sum(werr[sel] < 0.005)), n)))
    return tuple(bins)


def operating_points(scored: Sequence[tuple[NDArray[np.float64], GraspMatch]],
                     thresholds: Sequence[float] = OPERATING_THRESHOLDS,
                     ) -> tuple[OperatingPoint, ...]:
    """Accuracy of the predictions scoring at least each threshold (protocol item 7).

    :param scored: per scene, the scores of all predictions and their match.
    :param thresholds: the filters.
    :return: one point per threshold.
    """
    score, dist, werr = _pool_scored(scored)
    scenes = max(len(scored), 1)
    points = []
    for t in thresholds:
        sel = score >= t
        n = int(sel.sum())
        points.append(OperatingPoint(
            threshold=float(t), per_scene=n / scenes,
            width_5mm=_fraction(int(np.sum(werr[sel] < 0.005)), n),
            pose_0_01=_fraction(int(np.sum(dist[sel] < 0.01)), n)))
    return tuple(points)


def _check_thresholds(values: Sequence[float], name: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if not out or not all(math.isfinite(v) and v > 0.0 for v in out):
        raise EvaluationError(f"{name} must be one or more finite values > 0, got {values!r}")
    return out


# ---------------------------------------------------------------------------- evaluation


@dataclass
class _Tally:
    proposals: int = 0
    max_score: float | None = None
    matches: list[GraspMatch] = field(default_factory=list)
    scored: list[tuple[NDArray[np.float64], GraspMatch]] = field(default_factory=list)


def evaluate(
    model: GraspDetector | Path | str,
    data_dir: Path | str,
    max_scenes: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    device: str | torch.device = "cpu",
    max_proposals: int | None = None,
    confidence_threshold: float = CONFIDENCE_THRESHOLD,
    beta: Sequence[float] = DEFAULT_BETA,
    width_thresholds: Sequence[float] = WIDTH_THRESHOLDS,
    pose_thresholds: Sequence[float] = POSE_THRESHOLDS,
    coverage_threshold: float = COVERAGE_THRESHOLD,
    pose_passes: int | None = None,
) -> EvaluationResult:
    """Evaluate stage-1 proposals and their stage-2 refinements on a dataset folder.

    See the module docstring for the protocol.

    :param model: a detector, or the path of a checkpoint to load one from.
    :param data_dir: dataset folder (``gpr-ros dataset generate``).
    :param max_scenes: visit only the first this many scenes (default: all).
    :param progress: called as ``progress(done, total)`` after each visited scene.
    :param device: where to run a model loaded from a path (ignored for a detector).
    :param max_proposals: proposals kept after NMS (default ``config.proposals_test``).
    :param confidence_threshold: predictions scoring below this are filtered out.
    :param beta: weights of D.
    :param width_thresholds: Table I thresholds, m.
    :param pose_thresholds: Table II thresholds (D).
    :param coverage_threshold: D below which a ground-truth grasp counts as recovered.
    :param pose_passes: stage-2 passes over the pose of a model loaded from a path (default
        :data:`~.config.DEFAULT_POSE_PASSES`; a given detector keeps its own).
    :return: the result.
    :raises CheckpointError: on a missing or unusable checkpoint.
    :raises StorageError: when ``data_dir`` is not a dataset folder or a shard is corrupt.
    :raises EvaluationError: on invalid thresholds or counts.
    """
    start = time.perf_counter()
    widths = _check_thresholds(width_thresholds, "width_thresholds")
    poses = _check_thresholds(pose_thresholds, "pose_thresholds")
    coverage = _check_thresholds((coverage_threshold,), "coverage_threshold")[0]
    if not 0.0 <= float(confidence_threshold) <= 1.0:
        raise EvaluationError(
            f"confidence_threshold must be in [0, 1], got {confidence_threshold}")
    if max_scenes is not None and int(max_scenes) < 1:
        raise EvaluationError(f"max_scenes must be >= 1 or None, got {max_scenes}")
    if max_proposals is not None and int(max_proposals) < 1:
        raise EvaluationError(f"max_proposals must be >= 1 or None, got {max_proposals}")
    b = tuple(float(v) for v in beta)
    if len(b) != 3:
        raise EvaluationError(f"beta must hold 3 weights, got {beta!r}")

    reader = DatasetReader(Path(data_dir))
    summary: dict[str, Any] = {}
    if isinstance(model, GraspDetector):
        detector, name = model, model.model_name
    else:
        epoch = load_checkpoint(model, "cpu")["epoch"]
        passes = DEFAULT_POSE_PASSES if pose_passes is None else pose_passes
        detector = GraspDetector.from_checkpoint(model, device, pose_passes=passes)
        name = str(model)
        summary["epoch"] = int(epoch)
    cfg = detector.config
    summary.update(num_points=cfg.num_points, proposals_test=cfg.proposals_test,
                   confidence_target=cfg.confidence_target,
                   proposal_threshold=cfg.proposal_threshold,
                   pre_nms_proposals=cfg.pre_nms_proposals, nms_threshold=cfg.nms_threshold,
                   max_width=cfg.gripper.max_width, pose_passes=detector.pose_passes)
    limit = cfg.proposals_test if max_proposals is None else int(max_proposals)

    indices = reader.scene_indices()
    if max_scenes is not None:
        indices = indices[: int(max_scenes)]
    tallies = {STAGE_1: _Tally(), STAGE_2: _Tally()}
    paired: list[GraspMatch] = []  # stage-1 poses of the proposals stage 2 keeps (item 3)
    same_count: list[GraspMatch] = []  # stage 1's best, as many as stage 2 keeps (item 8b)
    evaluated = skipped = 0
    for done, index in enumerate(indices, start=1):
        scene = reader.scene(index)
        gt = scene_grasps(scene)
        if len(gt) == 0:
            skipped += 1
        else:
            evaluated += 1
            pred = predict_stages(detector, scene["points"], limit)
            for stage, grasps in ((STAGE_1, pred.proposals), (STAGE_2, pred.refined)):
                kept = grasps[grasps.score >= confidence_threshold]
                tally = tallies[stage]
                tally.proposals += len(grasps)
                if len(grasps):
                    best = float(grasps.score.max())
                    tally.max_score = best if tally.max_score is None else max(
                        tally.max_score, best)
                tally.matches.append(match_to_ground_truth(kept, gt, b))
                tally.scored.append((grasps.score, match_to_ground_truth(grasps, gt, b)))
            keep = pred.refined.score >= confidence_threshold
            paired.append(match_to_ground_truth(pred.proposals[keep], gt, b))
            best_first = np.argsort(-pred.proposals.score, kind="stable")
            same_count.append(match_to_ground_truth(
                pred.proposals[best_first[: int(keep.sum())]], gt, b))
        if progress is not None:
            progress(done, len(indices))

    s1, s2 = (stage_metrics(stage, t.matches, t.proposals, widths, poses, coverage, t.max_score,
                            t.scored)
              for stage, t in tallies.items())
    return EvaluationResult(
        data_dir=str(data_dir), model=name, model_config=summary, device=str(detector.device),
        scenes_total=len(indices), scenes_evaluated=evaluated, scenes_skipped=skipped,
        max_proposals=limit, confidence_threshold=float(confidence_threshold),
        beta=(b[0], b[1], b[2]), width_thresholds=widths, pose_thresholds=poses,
        coverage_threshold=coverage, stage1=s1, stage2=s2,
        stage1_paired=stage_metrics(STAGE_1, paired, s2.proposals, widths, poses, coverage),
        stage1_same_count=stage_metrics(STAGE_1, same_count, s2.proposals, widths, poses,
                                        coverage, tallies[STAGE_1].max_score),
        seconds=time.perf_counter() - start, ground_truth_nms=_annotation_nms(reader),
    )


def _annotation_nms(reader: DatasetReader) -> float | None:
    """The dataset's annotation NMS threshold on D, from its manifest (``None``: absent)."""
    annotation = reader.manifest.config.get("annotation")
    value = annotation.get("nms_threshold") if isinstance(annotation, dict) else None
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def plot_evaluation(result: EvaluationResult, path: Path | str) -> Path:
    """Plot Tables I and II (both stages against the paper's stage 2), the calibration and the
    operating points (accuracy against predictions kept per scene).

    :param result: an evaluation.
    :param path: the PNG to write.
    :return: the path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def pct(values: Sequence[float | None]) -> NDArray[np.float64]:
        return np.array([np.nan if v is None else 100.0 * v for v in values])

    fig, axes = plt.subplots(1, 4, figsize=(18.0, 3.8))
    panels = (
        (axes[0], [t * 1000 for t in result.width_thresholds], "width threshold (mm)",
         "Table I: width accuracy (%)", "width_accuracy", PAPER_WIDTH_ACCURACY,
         [t * 1000 for t in WIDTH_THRESHOLDS]),
        (axes[1], list(result.pose_thresholds), "D threshold", "Table II: pose accuracy (%)",
         "pose_accuracy", PAPER_POSE_ACCURACY, list(POSE_THRESHOLDS)),
    )
    for ax, xs, xlabel, title, key, paper, paper_x in panels:
        curves = [(result.table_stage1, "o--", 1.0, "stage 1 (same grasps, before refinement)"),
                  (result.stage2, "o-", 1.0, "stage 2"),
                  (result.stage1, "^:", 0.5,
                   f"stage 1 alone, own score >= {result.confidence_threshold:g} "
                   f"({result.stage1.predictions})")]
        for metrics, style, alpha, label in curves:
            ax.plot(xs, pct(getattr(metrics, key)), style, color=f"C{metrics.stage - 1}",
                    alpha=alpha, label=label)
        ax.plot(paper_x, paper[STAGE_2], "s:", color="grey", label="paper stage 2")
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes[2]
    for metrics, style in ((result.stage1, "o--"), (result.stage2, "o-")):
        bins = [b for b in metrics.calibration if b.predictions]
        if not bins:
            continue
        mid = [0.5 * (b.low + b.high) for b in bins]
        colour = f"C{metrics.stage - 1}"
        ax.plot(mid, pct([b.pose_0_02 for b in bins]), style, color=colour,
                label=f"stage {metrics.stage}: D < 0.02")
        ax.plot(mid, pct([b.width_5mm for b in bins]), "s:", color=colour, alpha=0.6,
                label=f"stage {metrics.stage}: width < 5 mm")
    ax.set_xlabel("prediction score")
    ax.set_title("Calibration: accuracy per score bin (%)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[3]
    for metrics, style in ((result.stage1, "o--"), (result.stage2, "o-")):
        points = [p for p in metrics.operating_points if p.per_scene > 0]
        if not points:
            continue
        kept = [p.per_scene for p in points]
        colour = f"C{metrics.stage - 1}"
        ax.plot(kept, pct([p.pose_0_01 for p in points]), style, color=colour,
                label=f"stage {metrics.stage}: D < 0.01")
        ax.plot(kept, pct([p.width_5mm for p in points]), "s:", color=colour, alpha=0.6,
                label=f"stage {metrics.stage}: width < 5 mm")
        for p, y in zip(points, pct([p.pose_0_01 for p in points]), strict=True):
            ax.annotate(f"{p.threshold:g}", (p.per_scene, y), textcoords="offset points",
                        xytext=(3, -10), fontsize=7, color=colour)
    ax.set_xlabel("predictions kept per scene (score >= t, t annotated)")
    ax.set_title("Operating points: accuracy of what is kept (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
