"""Grasp detection with a trained GPR network, and latency benchmarks.

:class:`GraspDetector` turns an (N, 3) camera-frame cloud into ranked :class:`Grasps`:

1. preprocess: drop non-finite points, draw ``num_points`` of them (seeded, random order;
   repeats when the cloud is smaller) and precompute the grouping (:mod:`.sampling`);
2. backbone; 3. stage-1 heads and proposal decoding; 4. NMS; 5. stage-2 refinement;
6. postprocess: widths above the gripper's opening plus ``width_tolerance`` are dropped, the
   rest are clipped to ``[0, max_width]``; scores below ``min_score`` are dropped; grasps are
   sorted by score (stage 2: sigmoid of the confidence logit; stage 1: the contact score).

Every call records its wall-clock breakdown in :attr:`GraspDetector.last_timing`, with the
fields of ``gpr_msgs/msg/InferenceTiming.msg``.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from pathlib import Path
import statistics
import threading
import time
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
import torch

from gpr_ros.core.grasp import STAGE_1, STAGE_2, Grasps
from gpr_ros.core.kernels import compile_kernels
from gpr_ros.core.network.checkpoint import load_model
from gpr_ros.core.network.config import DEFAULT_POSE_PASSES, MAX_POSE_PASSES
from gpr_ros.core.network.data import sample_indices
from gpr_ros.core.network.errors import NetworkError
from gpr_ros.core.network.model import GPRNet
from gpr_ros.core.network.reference import reference_detect
from gpr_ros.core.network.sampling import precompute_groups

__all__ = [
    "TIMING_FIELDS",
    "GraspDetector",
    "benchmark_inference",
    "benchmark_reference",
    "flushed_denormals",
    "retain_freed_memory",
]

#: glibc ``mallopt`` parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Largest mmap threshold glibc accepts on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``), bytes.
_MAX_MMAP_THRESHOLD = 32 * 1024 * 1024

#: Stage keys of the timing dict, as in ``gpr_msgs/msg/InferenceTiming.msg`` (seconds).
TIMING_FIELDS = ("preprocess", "backbone", "stage1", "nms", "stage2", "postprocess", "total")


class GraspDetector:
    """Run a :class:`GPRNet` on point clouds."""

    def __init__(
        self,
        model: GPRNet,
        device: str | torch.device = "cpu",
        seed: int = 0,
        width_tolerance: float = 0.005,
        model_name: str = "gpr",
        pose_passes: int = DEFAULT_POSE_PASSES,
    ) -> None:
        """Wrap a model.

        :param model: the network (put in eval mode here).
        :param device: where to run it.
        :param seed: seed of the point subsampling and crop sampling (same cloud, same
            grasps).
        :param width_tolerance: predicted widths up to ``max_width + width_tolerance`` are
            clipped to ``max_width``; wider ones are dropped, m.
        :param model_name: identifier reported in the timing.
        :param pose_passes: stage-2 passes over the pose (:meth:`GPRNet.refine_poses`; 1:
            the paper's single refinement).
        :raises NetworkError: if ``pose_passes`` is not an integer in [1, 8].
        """
        if isinstance(pose_passes, bool) or not isinstance(pose_passes, (int, np.integer)) \
                or not 1 <= int(pose_passes) <= MAX_POSE_PASSES:
            raise NetworkError(f"pose_passes must be an integer in [1, {MAX_POSE_PASSES}], "
                               f"got {pose_passes!r}")
        self.pose_passes = int(pose_passes)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config = model.config
        self.seed = int(seed)
        self.width_tolerance = float(width_tolerance)
        self.model_name = model_name
        self.last_timing: dict[str, Any] = {}

    @classmethod
    def from_checkpoint(cls, path: Path | str, device: str | torch.device = "cpu",
                        **kwargs: Any) -> GraspDetector:
        """Load a detector from a checkpoint.

        :param path: checkpoint file.
        :param device: where to run.
        :param kwargs: passed to the constructor.
        :return: the detector.
        :raises CheckpointError: on a missing, corrupt or mismatched checkpoint.
        """
        kwargs.setdefault("model_name", Path(path).name)
        return cls(load_model(path, map_location=device), device, **kwargs)

    def warm_up(self) -> float:
        """Pay the first-call costs now: compile (or load) the numba kernels and run one
        detection on a synthetic cloud (PyTorch's first-call allocations).

        Detections are stateless (every call seeds its own generators), so this changes no
        later result. The ``gpr_inference`` node calls it at start-up.

        :return: seconds taken.
        """
        start = time.perf_counter()
        compile_kernels()
        rng = np.random.default_rng(0)
        cloud = np.column_stack([rng.uniform(-0.15, 0.15, (2 * self.config.num_points, 2)),
                                 1.3 - rng.uniform(0.0, 0.08, 2 * self.config.num_points)])
        self.detect(cloud)
        return time.perf_counter() - start

    def preprocess(self, points: ArrayLike) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
        """Sample the network input and precompute its grouping.

        :param points: (N, 3) cloud.
        :return: ``(points (num_points, 3) float32, groups, num_finite_points)``.
        :raises NetworkError: on a wrong shape or a cloud without finite points.
        """
        sel, finite = self.sample_input(points)
        return sel, precompute_groups(sel, self.config), finite

    def sample_input(self, points: ArrayLike) -> tuple[np.ndarray, int]:
        """The network input: ``num_points`` finite points drawn with the detector's seed.

        :param points: (N, 3) cloud.
        :return: ``(points (num_points, 3) float32, num_finite_points)``.
        :raises NetworkError: on a wrong shape or a cloud without finite points.
        """
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise NetworkError(f"points must have shape (N, 3), got {pts.shape}")
        pts = pts[np.all(np.isfinite(pts), axis=1)]
        if len(pts) == 0:
            raise NetworkError("the cloud has no finite point")
        rng = np.random.default_rng(self.seed)
        sel = pts[sample_indices(len(pts), self.config.num_points, rng)].astype(np.float32)
        return sel, len(pts)

    @torch.no_grad()
    def detect(
        self,
        points: ArrayLike,
        max_grasps: int | None = None,
        min_score: float = 0.0,
        stage: int = STAGE_2,
        proposals: int | None = None,
    ) -> Grasps:
        """Detect grasps in a cloud.

        As in the paper, ``proposals`` stage-1 proposals survive NMS and (stage 2) are all
        refined; the grasps are then ranked by their own score and the best ``max_grasps``
        returned. Refining fewer proposals is faster, but stage 2's ranking then only sees
        the stage-1 favourites (in simulated clutter removal, 20 instead of 100 cost GPR 2-7
        points of SR; docs/network.md). The further pose passes (``pose_passes``) refine
        only the grasps returned, which the first pass's width and score already decide;
        the result is the same as refining all of them (:meth:`GPRNet.further_pose_passes`).

        :param points: (N, 3) points in the camera optical frame, m.
        :param max_grasps: return at most this many, best first (default: all).
        :param min_score: drop grasps scoring below this.
        :param stage: :data:`STAGE_2` (refined) or :data:`STAGE_1` (proposals after NMS).
        :param proposals: proposals kept after NMS and refined (default
            ``config.proposals_test``, or ``max_grasps`` when that is larger).
        :return: grasps sorted by descending score; ``stage`` set accordingly.
        :raises NetworkError: on bad input, an unknown stage, or a ``max_grasps`` or
            ``proposals`` below 1.
        """
        if stage not in (STAGE_1, STAGE_2):
            raise NetworkError(f"stage must be STAGE_1 ({STAGE_1}) or STAGE_2 ({STAGE_2})")
        for name, value in (("max_grasps", max_grasps), ("proposals", proposals)):
            if value is not None and int(value) < 1:
                raise NetworkError(f"{name} must be >= 1 or None, got {value}")
        timing: dict[str, Any] = dict.fromkeys(TIMING_FIELDS, 0.0)
        t0 = time.perf_counter()
        raw = np.asarray(points)
        sel, groups_np, _ = self.preprocess(points)
        xyz = torch.from_numpy(sel).to(self.device).unsqueeze(0)
        groups = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device).unsqueeze(0)
                  for k, v in groups_np.items()}
        t1 = time.perf_counter()
        # only the network runs with subnormals flushed: scipy's cKDTree (preprocessing's
        # tie-breaks, the numpy fallbacks) can crash under flush-to-zero
        with flushed_denormals():
            model = self.model
            features = model.backbone(xyz, groups)
            t2 = time.perf_counter()
            if proposals is None:  # at least as many as asked for
                limit = max(self.config.proposals_test, int(max_grasps or 0))
            else:
                limit = int(proposals)
            candidates = model.stage1_candidates(features, xyz)
            seg_logits = candidates.seg_logits
            t3 = time.perf_counter()
            props = model.nms_proposals(candidates, limit)
            t4 = time.perf_counter()
            n = props.count
            p_center, p_rot = props.center[:, :n], props.rotation[:, :n]
            p_width = props.width[:, :n]
            score = torch.sigmoid(torch.gather(seg_logits, 1, props.index[:, :n]))
            if stage == STAGE_2 and n > 0:
                generator = torch.Generator().manual_seed(self.seed)
                s2 = model.refine(features, seg_logits, xyz, p_center, p_rot, generator)
                score = torch.sigmoid(s2["conf"])
                p_center, p_rot, p_width = model.apply_refinement(p_center, p_rot, p_width, s2)
                keep = None
                if max_grasps is not None and self.pose_passes > 1:
                    # the first pass's width and score decide which grasps are returned: only
                    # those are refined again (as GPRNet.refine_poses, for the same grasps)
                    chosen = self.ranking(p_width[0], score[0], min_score)[: int(max_grasps)]
                    keep = torch.from_numpy(np.sort(chosen)).to(xyz.device).unsqueeze(0)
                p_center, p_rot = model.further_pose_passes(
                    features, seg_logits, xyz, p_center, p_rot, p_width, generator,
                    self.pose_passes - 1, keep)
        t5 = time.perf_counter()
        grasps = self.postprocess(p_center[0], p_rot[0], p_width[0], score[0], min_score, stage)
        if max_grasps is not None:
            grasps = grasps[: int(max_grasps)]
        t6 = time.perf_counter()
        timing.update(preprocess=t1 - t0, backbone=t2 - t1, stage1=t3 - t2, nms=t4 - t3,
                      stage2=t5 - t4, postprocess=t6 - t5, total=t6 - t0)
        timing.update(num_input_points=int(raw.shape[0]) if raw.ndim == 2 else 0,
                      num_used_points=self.config.num_points, device=str(self.device),
                      model=self.model_name)
        self.last_timing = timing
        return grasps

    def postprocess(self, center: torch.Tensor, rot: torch.Tensor, width: torch.Tensor,
                    score: torch.Tensor, min_score: float, stage: int) -> Grasps:
        """Grasps from one scene's refined (or stage-1) parameters: widths up to
        ``max_width + width_tolerance`` clipped to ``max_width``, wider ones and those scoring
        below ``min_score`` dropped, the rest sorted by descending score.

        :param center: (P, 3).
        :param rot: (P, 3, 3).
        :param width: (P,).
        :param score: (P,).
        :param min_score: minimum score.
        :param stage: stage recorded in the grasps.
        :return: the grasps.
        """
        order = self.ranking(width, score, min_score)
        if len(order) == 0:
            return Grasps.empty()
        c = center.cpu().double().numpy()[order]
        r = rot.cpu().double().numpy()[order]
        w = width.cpu().double().numpy()[order]
        s = score.cpu().double().numpy()[order]
        max_width = self.config.gripper.max_width
        return Grasps(c, r[:, :, 0], r[:, :, 1], np.clip(w, 0.0, max_width), s, stage)

    def ranking(self, width: torch.Tensor, score: torch.Tensor,
                min_score: float) -> NDArray[np.intp]:
        """Indices of the grasps :meth:`postprocess` keeps, by descending score.

        :param width: (P,) widths.
        :param score: (P,) scores.
        :param min_score: minimum score.
        :return: the indices.
        """
        w = width.cpu().double().numpy()
        s = score.cpu().double().numpy()
        keep = (w <= self.config.gripper.max_width + self.width_tolerance) & (s >= min_score)
        return np.flatnonzero(keep)[np.argsort(-s[keep], kind="stable")]


@contextlib.contextmanager
def flushed_denormals() -> Iterator[bool]:
    """Treat subnormal floats as zero in PyTorch's CPU kernels inside the block.

    Adam with weight decay leaves many weights subnormal (below 1.2e-38 in float32): 36 % of
    the shipped model's, 29 % of a run's after 16 epochs. x86 CPUs compute with subnormal
    operands in slow microcode, so a training step took 1.2-2.0 s instead of 0.33-0.36 s
    (session 13, AVX-512 VM, the same loss to the last bit) and epochs slowed from 3 to 9 min
    as the weights decayed. Such a weight changes no float32 sum of ordinary magnitude, so
    results are the same. The setting (PyTorch's ``set_flush_denormal``, SSE FTZ/DAZ) is
    kept by the thread that sets it (nesting is counted per thread), and scipy's ``cKDTree``
    crashed under it in a process that left it on (segmentation fault in an
    annotation's grasp NMS), so it is restored when the outermost block exits; training steps
    (:func:`~.train.train`) and :meth:`GraspDetector.detect`'s network part use it.

    :return: (as the ``with`` target) whether the CPU supports it.
    """
    supported = bool(torch.set_flush_denormal(True))
    depth = getattr(_FLUSH_STATE, "depth", 0)
    _FLUSH_STATE.depth = depth + 1
    try:
        yield supported
    finally:
        _FLUSH_STATE.depth = depth
        if supported and depth == 0:
            torch.set_flush_denormal(False)


#: Nesting depth of :func:`flushed_denormals` per thread: the CPU's flush-to-zero state
#: (MXCSR) belongs to the thread that sets it.
_FLUSH_STATE = threading.local()


def retain_freed_memory(megabytes: int = 256) -> bool:
    """Let the process keep freed memory in its heap instead of returning it to the OS.

    With glibc's defaults a detection frees its large intermediate arrays back to the kernel
    (``munmap`` / heap trimming) and the next detection page-faults them in again; in a
    worker thread (a non-main malloc arena, trimmed eagerly) that cost 1-3 ms of a ~40 ms
    detection on the 2-core CPU (docs/environment.md). This raises glibc's mmap threshold to
    ``min(megabytes, 32)`` MB and its trim threshold to ``megabytes`` MB, process-wide, so the
    process keeps up to that much freed memory for reuse. Call it once at start-up in
    processes that detect repeatedly (the ``gpr_inference`` node does, parameter
    ``malloc_retain_mb``).

    :param megabytes: freed memory kept, MB; 0 changes nothing.
    :return: True when the thresholds were set; False for 0, or where the C library has no
        ``mallopt`` (not glibc: musl, macOS, Windows).
    :raises ValueError: for a negative ``megabytes``.
    """
    if megabytes < 0:
        raise ValueError(f"megabytes must be >= 0, got {megabytes}")
    if megabytes == 0:
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    size = int(megabytes) * 1024 * 1024
    mmap_ok = mallopt(_M_MMAP_THRESHOLD, min(size, _MAX_MMAP_THRESHOLD))
    trim_ok = mallopt(_M_TRIM_THRESHOLD, min(size, 2**31 - 1))
    return bool(mmap_ok and trim_ok)


def _median_timing(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.median(float(r[k]) for r in runs) for k in TIMING_FIELDS}


def benchmark_inference(
    detector: GraspDetector, points: ArrayLike, repeats: int = 10, warmup: int = 2,
    stage: int = STAGE_2,
) -> dict[str, float]:
    """Median per-stage latency of :meth:`GraspDetector.detect`.

    :param detector: the detector.
    :param points: the cloud.
    :param repeats: timed calls.
    :param warmup: untimed calls first.
    :param stage: detection stage.
    :return: median seconds per field of :data:`TIMING_FIELDS`, plus ``"repeats"``.
    """
    runs = []
    for i in range(warmup + repeats):
        detector.detect(points, stage=stage)
        if i >= warmup:
            runs.append(dict(detector.last_timing))
    out = _median_timing(runs)
    out["repeats"] = float(repeats)
    return out


def benchmark_reference(
    detector: GraspDetector, points: ArrayLike, repeats: int = 3, warmup: int = 1,
    fast_per_round: int = 5, max_grasps: int | None = None,
) -> dict[str, Any]:
    """:meth:`GraspDetector.detect` against the straightforward pure-PyTorch reference.

    The reference (:func:`~.reference.reference_detect`) computes the same grasps with FPS in
    a Python loop, ball query / 3-NN from dense distance matrices, channels-first shared MLPs
    and a dense stage-2 crop (see :mod:`.reference`). The two are timed in alternation, each
    round ``fast_per_round`` fast calls and one reference call, so that a change of the
    machine's load between them does not bias the ratio.

    :param detector: the detector.
    :param points: the cloud (e.g. 16,384 points).
    :param repeats: timed rounds.
    :param warmup: untimed rounds first.
    :param fast_per_round: fast calls per round.
    :param max_grasps: grasps asked for (both return the same ones).
    :return: ``{"fast": medians, "reference": medians ("preprocess", "total"),
        "speedup_total": ratio, "speedup_preprocess": ratio}``.
    """
    fast_runs: list[dict[str, Any]] = []
    ref_runs: list[dict[str, float]] = []
    for i in range(warmup + repeats):
        for _ in range(fast_per_round):
            detector.detect(points, max_grasps=max_grasps)
            if i >= warmup:
                fast_runs.append(dict(detector.last_timing))
        timing: dict[str, float] = {}
        with flushed_denormals():  # the same numerics as the fast path's network
            reference_detect(detector, points, timing, max_grasps=max_grasps)
        if i >= warmup:
            ref_runs.append(timing)
    fast = _median_timing(fast_runs)
    fast["repeats"] = float(len(fast_runs))
    ref = {k: statistics.median(r[k] for r in ref_runs) for k in ("preprocess", "total")}
    return {
        "fast": fast,
        "reference": ref,
        "speedup_total": ref["total"] / fast["total"],
        "speedup_preprocess": ref["preprocess"] / fast["preprocess"],
    }
