"""The GPR two-stage network (Sec. V): stage-1 proposals, NMS and sampling, stage-2 refinement.

Stage 1 (Sec. V-A). A PointNet++ MSG backbone gives per-point features; a segmentation head
predicts one contact logit per point and a regression head predicts, for each of x, y, z
(centre offset centre - point), width, θ1, θ2 and θ3, ``count`` bin logits followed by
``count`` normalised residuals (Eq. 3-4, :class:`~gpr_ros.core.grasp.BinConfig`). A point's
proposal is decoded as argmax bin + that bin's residual, exactly like
:meth:`BinConfig.decode_grasps` (:meth:`GPRNet.decode_proposals` is its torch twin).

Proposal selection (Sec. V-B). Scores are sigmoid(seg logit). The ``pre_nms_proposals``
best points (at inference only those with score >= ``proposal_threshold``) are decoded and
reduced by greedy NMS with the grasp distance D (:func:`~gpr_ros.core.grasp.grasp_nms`,
run on CPU numpy: it is sequential, ~1k candidates, and not differentiated). Training samples
``proposals_train`` of the survivors, at most ``positive_fraction`` positives, where a
proposal is positive if D to its nearest ground-truth grasp is below ``positive_distance``
(D is invariant to r -> -r); missing slots are filled by sampling with replacement.
Inference keeps the ``proposals_test`` best; there only the NMS candidates are regressed and
decoded (:meth:`GPRNet.inference_proposals`), not every point.

Stage 2 (Sec. V-B). For each proposal the backbone points inside the enlarged closing region
are cropped (the box of :class:`~gpr_ros.core.grasp.GripperModel` grown by ε on every side;
the y extent uses the gripper's *maximum* opening rather than the proposal's width, because
stage 2 refines the width and must see the object extent a wider opening would enclose),
``crop_points`` of them are sampled (with replacement when fewer), transformed to the
canonical gripper frame (divided by ``max_width``), concatenated with their stage-1 features
and stage-1 scores, and encoded by a PointNet (shared MLP + max-pool). The heads predict:

- a confidence logit;
- a centre residual in the proposal's gripper frame (``center_scale`` units);
- a rotation residual δ as an axis-angle vector in the proposal's frame, R' = R·exp(δ).
  Proposals matched to a ground truth are already close to it (D < ``positive_distance``),
  so a small-angle residual is well conditioned; unlike re-predicting bins it has no
  bin-boundary discontinuities and no θ3 singularity for horizontal approaches. The target
  picks whichever of the two symmetric ground-truth frames (r or -r) is nearer;
- a width residual (``width_scale`` units).

Gradients of stage 2 flow into the backbone through the gathered features: both stages are
trained end to end; proposal parameters themselves are detached (as in PointRCNN).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation
import torch
from torch import nn
import torch.nn.functional as nnf

from gpr_ros.core.grasp import BIN_KEYS, Grasps, grasp_nms, pairwise_grasp_distance
from gpr_ros.core.kernels import (
    NUMBA_AVAILABLE,
    crop_kernel,
    crop_mt_kernel,
    mt19937_uniform_kernel,
)
from gpr_ros.core.network.config import NetworkConfig
from gpr_ros.core.network.pointnet2 import (
    Backbone,
    channels_last,
    first_conv,
    gather_points,
    shared_mlp,
)

__all__ = [
    "GPRNet",
    "InferenceProposals",
    "ProposalBatch",
    "Stage1Candidates",
    "axis_angle_to_matrix",
    "rotations_from_angles",
]


def rotations_from_angles(angles: torch.Tensor) -> torch.Tensor:
    """Grasp rotations R = [n | r | n x r] from (θ1, θ2, θ3) (torch twin of the core's).

    Same formulas as :func:`~gpr_ros.core.grasp.angles.grasps_from_angles`, including the
    singular fallback r = (cos θ3, sin θ3, 0).

    :param angles: (..., 3) angles, rad.
    :return: (..., 3, 3) rotations (columns n, r, n x r).
    """
    t1, t2, t3 = angles.unbind(-1)
    s2 = torch.sin(t2)
    n = torch.stack([s2 * torch.cos(t1), s2 * torch.sin(t1), torch.cos(t2)], dim=-1)
    d = torch.stack([torch.cos(t3), torch.sin(t3), torch.zeros_like(t3)], dim=-1)
    dn = (d * n).sum(-1)
    nz = n[..., 2]
    r = nz.unsqueeze(-1) * d
    r = torch.cat([r[..., :2], (r[..., 2] - dn).unsqueeze(-1)], dim=-1)
    norm = torch.hypot(nz, dn)
    singular = norm < 1e-12
    r = torch.where(singular.unsqueeze(-1), d, r / torch.where(singular, 1.0, norm).unsqueeze(-1))
    return torch.stack([n, r, torch.linalg.cross(n, r, dim=-1)], dim=-1)


def axis_angle_to_matrix(vec: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula exp([v]x), stable near zero.

    :param vec: (..., 3) axis-angle vectors.
    :return: (..., 3, 3) rotations.
    """
    theta2 = (vec * vec).sum(-1, keepdim=True).unsqueeze(-1)
    theta = torch.sqrt(theta2.clamp_min(1e-12))
    small = theta2 < 1e-8
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    x, y, z = vec.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*vec.shape, 3)
    eye = torch.eye(3, dtype=vec.dtype, device=vec.device).expand_as(k)
    return eye + a * k + b * (k @ k)


@dataclass
class ProposalBatch:
    """Selected proposals of a batch (P per scene, padded).

    :ivar index: (B, P) int64 point indices of the proposals.
    :ivar valid: (B, P) bool, False for padding.
    :ivar label: (B, P) float, 1 for positives (training), else 0.
    :ivar center_target: (B, P, 3) centre residual targets (proposal frame, scaled).
    :ivar rot_target: (B, P, 3) axis-angle targets.
    :ivar width_target: (B, P) width residual targets (scaled).
    :ivar conf_label: (B, P) float target of the stage-2 confidence when it differs from
        ``label`` (``confidence_target="refined"``: 1 where the refined grasp is accurate);
        ``None``: ``label``.
    """

    index: torch.Tensor
    valid: torch.Tensor
    label: torch.Tensor
    center_target: torch.Tensor
    rot_target: torch.Tensor
    width_target: torch.Tensor
    conf_label: torch.Tensor | None = None

    @property
    def confidence_target(self) -> torch.Tensor:
        """What the stage-2 confidence is trained against (``conf_label`` or ``label``)."""
        return self.label if self.conf_label is None else self.conf_label


@dataclass
class Stage1Candidates:
    """The NMS candidates of a batch at inference (Q per scene, padded with index 0).

    :ivar seg_logits: (B, N) stage-1 logits of every point.
    :ivar index: (B, Q) int64 point indices of the candidates.
    :ivar scores: per scene, the float64 scores of its real candidates, best first.
    :ivar center: (B, Q, 3) decoded centres.
    :ivar rotation: (B, Q, 3, 3) decoded rotations.
    :ivar width: (B, Q) decoded widths.
    """

    seg_logits: torch.Tensor
    index: torch.Tensor
    scores: list[NDArray[np.float64]]
    center: torch.Tensor
    rotation: torch.Tensor
    width: torch.Tensor


@dataclass
class InferenceProposals:
    """Inference proposals of a batch (P per scene, padded), with their stage-1 parameters.

    :ivar index: (B, P) int64 point indices (0 for padding).
    :ivar valid: (B, P) bool, False for padding.
    :ivar center: (B, P, 3) decoded centres.
    :ivar rotation: (B, P, 3, 3) decoded rotations.
    :ivar width: (B, P) decoded widths (>= 0).
    :ivar seg_logits: (B, N) stage-1 logits of every point.
    """

    index: torch.Tensor
    valid: torch.Tensor
    center: torch.Tensor
    rotation: torch.Tensor
    width: torch.Tensor
    seg_logits: torch.Tensor

    @property
    def count(self) -> int:
        """Real proposals of the first scene (inference runs one scene at a time)."""
        return int(self.valid[0].sum())


def _to_grasps(center: NDArray[Any], rot: NDArray[Any], width: NDArray[Any],
               score: NDArray[Any]) -> Grasps:
    return Grasps(center, rot[:, :, 0], rot[:, :, 1], np.maximum(width, 0.0), score)


#: Layout of a CPU generator's ``get_state()`` (ATen's ``CPUGeneratorImplState``): its size
#: and the byte offsets of the MT19937's ``left`` (int32), ``next`` (uint64) and 624 words
#: (uint64 each).
_MT_STATE_BYTES = 5056
_MT_LEFT, _MT_NEXT, _MT_WORDS = 8, 16, 24
#: Whether :func:`_mt19937_matches_torch` found our draws equal to ``torch.rand``'s (None:
#: not checked yet in this process).
_MT_MATCHES_TORCH: bool | None = None


class _EngineState:
    """A CPU generator's MT19937 state as numpy values, written back by :meth:`store`."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        self.raw = generator.get_state().numpy().copy()
        self.left = int(self.raw[_MT_LEFT:_MT_LEFT + 4].view(np.int32)[0])
        self.position = int(self.raw[_MT_NEXT:_MT_NEXT + 8].view(np.uint64)[0])
        self.words = self.raw[_MT_WORDS:_MT_WORDS + 624 * 8].view(np.uint64).astype(np.uint32)

    def store(self) -> None:
        raw = self.raw
        raw[_MT_LEFT:_MT_LEFT + 4] = np.array([self.left], np.int32).view(np.uint8)
        raw[_MT_NEXT:_MT_NEXT + 8] = np.array([self.position], np.uint64).view(np.uint8)
        raw[_MT_WORDS:_MT_WORDS + 624 * 8] = self.words.astype(np.uint64).view(np.uint8)
        self.generator.set_state(torch.from_numpy(raw))


def _mt19937_matches_torch() -> bool:
    """Check once per process that :func:`~gpr_ros.core.kernels.mt19937_uniform_kernel` on
    the state :class:`_EngineState` reads draws what ``torch.rand`` draws (across state
    regenerations) and leaves the same state; another PyTorch could differ."""
    global _MT_MATCHES_TORCH
    if _MT_MATCHES_TORCH is None:
        ours, theirs = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        try:
            same = ours.get_state().numel() == _MT_STATE_BYTES
            for n in (5, 1000, 700) if same else ():
                engine = _EngineState(ours)
                out = np.empty(n, dtype=np.float32)
                engine.left, engine.position = mt19937_uniform_kernel(
                    engine.words, engine.left, engine.position, out)
                engine.store()
                same = same and torch.equal(torch.from_numpy(out),
                                            torch.rand((n,), generator=theirs))
            same = same and torch.equal(ours.get_state(), theirs.get_state())
        except (RuntimeError, ValueError):  # another state layout
            same = False
        _MT_MATCHES_TORCH = bool(same)
    return _MT_MATCHES_TORCH


def _crop_torch(
    xyz: torch.Tensor, origin: torch.Tensor, rot: torch.Tensor, noise: torch.Tensor,
    bounds: tuple[float, float, float, float], k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop selection with tensor operations (see :meth:`GPRNet.crop`).

    :return: ``(index (B, P, K), count (B, P))``.
    """
    x_lo, x_hi, y_half, z_half = bounds
    canon = torch.einsum("bpni,bpik->bpnk", xyz.unsqueeze(1) - origin.unsqueeze(2), rot)
    inside = (
        (canon[..., 0] >= x_lo)
        & (canon[..., 0] <= x_hi)
        & (canon[..., 1].abs() <= y_half)
        & (canon[..., 2].abs() <= z_half)
    )
    keys = inside.to(xyz.dtype) * (1.0 + noise)
    kk = min(k, inside.shape[-1])
    idx = keys.topk(kk, dim=-1).indices
    count = inside.sum(-1)
    slot = torch.arange(k, device=xyz.device).expand(*count.shape, k)
    period = count.clamp_min(1).unsqueeze(-1)
    src = torch.where(slot < count.unsqueeze(-1), slot, slot % period).clamp_max(kk - 1)
    return idx.gather(-1, src), count


def _crop_numba(
    xyz: torch.Tensor, origin: torch.Tensor, rot: torch.Tensor, noise: torch.Tensor,
    bounds: tuple[float, float, float, float], k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop selection with :func:`~gpr_ros.core.kernels.crop_kernel`, scene by scene (CPU
    tensors).

    :return: ``(index (B, P, K), count (B, P))``, equal to :func:`_crop_torch`'s.
    """
    b, p = origin.shape[:2]
    idx = np.zeros((b, p, k), dtype=np.int64)
    count = np.zeros((b, p), dtype=np.int64)
    lims = np.asarray(bounds, dtype=np.float64)
    for i in range(b):
        crop_kernel(
            xyz[i].detach().numpy().astype(np.float64),
            origin[i].detach().numpy().astype(np.float64),
            rot[i].detach().numpy().astype(np.float64),
            noise[i].numpy(), lims, idx[i], count[i],
        )
    return torch.from_numpy(idx), torch.from_numpy(count)


def _crop_numba_mt(
    xyz: torch.Tensor, origin: torch.Tensor, rot: torch.Tensor, generator: torch.Generator,
    rows: torch.Tensor, drawn: int, bounds: tuple[float, float, float, float], k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_crop_numba` with the keys ``torch.rand((B, drawn, N), generator=generator)``
    would give, row ``rows[b, q]`` for proposal q, computed inside the kernel
    (:func:`~gpr_ros.core.kernels.crop_mt_kernel`); the generator advances as under
    ``torch.rand``.

    :return: ``(index (B, Q, K), count (B, Q))``.
    """
    b, q = origin.shape[:2]
    idx = np.zeros((b, q, k), dtype=np.int64)
    count = np.zeros((b, q), dtype=np.int64)
    lims = np.asarray(bounds, dtype=np.float64)
    engine = _EngineState(generator)
    rows_np = rows.cpu().numpy().astype(np.int64)
    for i in range(b):
        engine.left, engine.position = crop_mt_kernel(
            xyz[i].detach().numpy().astype(np.float64),
            origin[i].detach().numpy().astype(np.float64),
            rot[i].detach().numpy().astype(np.float64),
            np.ascontiguousarray(rows_np[i]), int(drawn), engine.words, engine.left,
            engine.position, lims, idx[i], count[i],
        )
    engine.store()
    return torch.from_numpy(idx), torch.from_numpy(count)


class GPRNet(nn.Module):
    """GPR: backbone, stage-1 heads, proposal selection and the stage-2 refinement network."""

    def __init__(self, config: NetworkConfig) -> None:
        """Build the network.

        :param config: the architecture.
        """
        super().__init__()
        self.config = config
        self.backbone = Backbone(config)
        c = config.feature_channels
        h = config.head_width
        self.counts = [config.bins.spec(k).count for k in BIN_KEYS]
        self.seg_head = nn.Sequential(
            shared_mlp(c, (h,), config.norm, config.group_norm_groups), nn.Conv1d(h, 1, 1)
        )
        self.reg_head = nn.Sequential(
            shared_mlp(c, (h,), config.norm, config.group_norm_groups),
            nn.Conv1d(h, 2 * sum(self.counts), 1),
        )
        # Focal-loss prior (Lin et al.): start with p = 0.01 so early losses are not dominated
        # by the many easy negatives.
        seg_out: nn.Conv1d = self.seg_head[-1]  # type: ignore[assignment]
        assert seg_out.bias is not None
        nn.init.constant_(seg_out.bias, -math.log((1 - 0.01) / 0.01))
        self.s2_encoder = shared_mlp(
            3 + c + 1, config.stage2_mlp, config.norm, config.group_norm_groups
        )
        self.s2_head = nn.Sequential(
            nn.Linear(config.stage2_mlp[-1], config.stage2_head),
            nn.ReLU(inplace=True),
            nn.Linear(config.stage2_head, 1 + 3 + 3 + 1),
        )
        # Residual outputs start near zero, so untrained refinement leaves proposals intact.
        s2_out: nn.Linear = self.s2_head[-1]  # type: ignore[assignment]
        nn.init.normal_(s2_out.weight, std=1e-3)
        nn.init.zeros_(s2_out.bias)

    # ------------------------------------------------------------------ stage 1

    def stage1(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage-1 heads.

        :param features: (B, N, C) backbone features.
        :return: ``(seg_logits (B, N), reg (B, R, N))`` (``reg`` is a transposed view).
        """
        return self.segmentation(features), channels_last(self.reg_head, features).transpose(1, 2)

    def segmentation(self, features: torch.Tensor) -> torch.Tensor:
        """Stage-1 contact logits.

        :param features: (B, N, C) backbone features.
        :return: (B, N) logits.
        """
        return channels_last(self.seg_head, features).squeeze(-1)

    def regression_at(self, features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The stage-1 regression output of some points only (inference).

        The head's hidden layer runs on every point (its GroupNorm statistics are taken over
        the whole cloud, as in :meth:`stage1`); its output layer only on the points asked for.

        :param features: (B, N, C) backbone features.
        :param index: (B, Q) point indices.
        :return: (B, R, Q), equal to ``stage1(features)[1]`` gathered at ``index``.
        """
        hidden = channels_last(self.reg_head[0], features)
        out: nn.Conv1d = self.reg_head[-1]  # type: ignore[assignment]
        picked = nnf.linear(gather_points(hidden, index), out.weight.flatten(1), out.bias)
        return picked.transpose(1, 2)

    def split_regression(self, reg: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Split the regression output into per-key bin logits and residuals.

        :param reg: (B, R, N).
        :return: ``{key: (logits (B, N, K), residuals (B, N, K))}``.
        """
        # Only decoding uses this, without gradients (the losses split the output themselves,
        # :func:`~.losses.compute_losses`).
        sizes = [c for count in self.counts for c in (count, count)]
        parts = torch.split(reg.transpose(1, 2), sizes, dim=-1)
        return {key: (parts[2 * k], parts[2 * k + 1]) for k, key in enumerate(BIN_KEYS)}

    def decode_bins(self, reg: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decode every key as argmax bin + its residual (as :meth:`BinSpec.decode`).

        :param reg: (B, R, N).
        :return: ``{key: values (B, N)}``.
        """
        values: dict[str, torch.Tensor] = {}
        for key, (logits, res) in self.split_regression(reg).items():
            spec = self.config.bins.spec(key)
            bins = logits.argmax(dim=-1, keepdim=True)
            r = res.gather(-1, bins).squeeze(-1)
            v = spec.start + (bins.squeeze(-1).to(r.dtype) + 0.5 + r) * spec.size
            if spec.periodic:
                v = spec.start + torch.remainder(v - spec.start, spec.period)
            values[key] = v
        return values

    def decode_proposals(
        self, xyz: torch.Tensor, reg: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-point grasp proposals (no gradient).

        :param xyz: (B, N, 3) points.
        :param reg: (B, R, N) regression output.
        :return: ``(center (B, N, 3), rotation (B, N, 3, 3), width (B, N))``; widths >= 0.
        """
        with torch.no_grad():
            v = self.decode_bins(reg.detach())
            center = xyz + torch.stack([v["x"], v["y"], v["z"]], dim=-1)
            rot = rotations_from_angles(torch.stack([v["theta1"], v["theta2"], v["theta3"]], -1))
            return center, rot, v["width"].clamp_min(0.0)

    # ------------------------------------------------------------------ proposal selection

    def nms_candidates(
        self, score: NDArray[Any], center: NDArray[Any], rot: NDArray[Any], width: NDArray[Any],
        threshold: float, max_keep: int | None,
    ) -> NDArray[np.int64]:
        """Top-scoring points, then greedy NMS with D (one scene, numpy).

        :param score: (N,) proposal scores.
        :param center: (N, 3) centres.
        :param rot: (N, 3, 3) rotations.
        :param width: (N,) widths.
        :param threshold: minimum score.
        :param max_keep: keep at most this many after NMS.
        :return: kept point indices, best first.
        """
        order = np.argsort(-score, kind="stable")[: self.config.pre_nms_proposals]
        order = order[score[order] >= threshold]
        if len(order) == 0:
            return np.zeros(0, dtype=np.int64)
        grasps = _to_grasps(center[order], rot[order], width[order], score[order])
        keep = grasp_nms(grasps, self.config.nms_threshold, self.config.distance_beta, max_keep)
        return order[keep]

    def sample_training_proposals(
        self,
        seg_logits: torch.Tensor,
        center: torch.Tensor,
        rot: torch.Tensor,
        width: torch.Tensor,
        gt: list[Grasps],
        rng: np.random.Generator,
    ) -> ProposalBatch:
        """NMS, label and sample ``proposals_train`` proposals per scene (Sec. VI-A).

        :param seg_logits: (B, N).
        :param center: (B, N, 3) decoded centres.
        :param rot: (B, N, 3, 3) decoded rotations.
        :param width: (B, N) decoded widths.
        :param gt: ground-truth grasps of each scene.
        :param rng: random generator of the sampling.
        :return: the proposals with their labels and stage-2 targets.
        """
        cfg = self.config
        p = cfg.proposals_train
        score = torch.sigmoid(seg_logits.detach()).cpu().double().numpy()
        c_np = center.cpu().double().numpy()
        r_np = rot.cpu().double().numpy()
        w_np = width.cpu().double().numpy()
        b = len(gt)
        index = np.zeros((b, p), dtype=np.int64)
        label = np.zeros((b, p), dtype=np.float32)
        c_t = np.zeros((b, p, 3), dtype=np.float32)
        r_t = np.zeros((b, p, 3), dtype=np.float32)
        w_t = np.zeros((b, p), dtype=np.float32)
        for i in range(b):
            kept = self.nms_candidates(score[i], c_np[i], r_np[i], w_np[i], 0.0, 4 * p)
            props = _to_grasps(c_np[i, kept], r_np[i, kept], w_np[i, kept], score[i, kept])
            if len(gt[i]):
                dist = pairwise_grasp_distance(props, gt[i], cfg.distance_beta)
                match = dist.argmin(axis=1)
                positive = dist[np.arange(len(kept)), match] < cfg.positive_distance
            else:
                match = np.zeros(len(kept), dtype=np.int64)
                positive = np.zeros(len(kept), dtype=bool)
            pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
            n_pos = min(len(pos), int(round(cfg.positive_fraction * p)))
            chosen = [rng.permutation(pos)[:n_pos], rng.permutation(neg)[: p - n_pos]]
            sel = np.concatenate(chosen)
            if len(sel) < p:
                sel = np.concatenate([sel, rng.choice(sel, p - len(sel))])
            index[i] = kept[sel]
            label[i] = positive[sel]
            good = positive[sel]
            if np.any(good):
                ct, rt, wt = self._targets(props[sel[good]], gt[i][match[sel[good]]])
                c_t[i, good], r_t[i, good], w_t[i, good] = ct, rt, wt
        dev = seg_logits.device
        return ProposalBatch(
            index=torch.from_numpy(index).to(dev),
            valid=torch.ones(b, p, dtype=torch.bool, device=dev),
            label=torch.from_numpy(label).to(dev),
            center_target=torch.from_numpy(c_t).to(dev),
            rot_target=torch.from_numpy(r_t).to(dev),
            width_target=torch.from_numpy(w_t).to(dev),
        )

    def _targets(
        self, props: Grasps, gt: Grasps
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
        """Stage-2 targets of positive proposals from their matched ground truths."""
        rp = props.rotations
        rg = gt.rotations
        center = np.einsum("nji,nj->ni", rp, gt.center - props.center) / self.config.center_scale
        flip = np.diag([1.0, -1.0, -1.0])  # r -> -r, z -> -z: the same parallel-jaw grasp
        rel_a = np.einsum("nji,njk->nik", rp, rg)
        vec_a = Rotation.from_matrix(rel_a).as_rotvec()
        vec_b = Rotation.from_matrix(rel_a @ flip).as_rotvec()
        use_b = np.linalg.norm(vec_b, axis=1) < np.linalg.norm(vec_a, axis=1)
        rot = np.where(use_b[:, None], vec_b, vec_a)
        width = (gt.width - props.width) / self.config.width_scale
        return center.astype(np.float32), rot.astype(np.float32), width.astype(np.float32)

    def inference_proposals(
        self,
        features: torch.Tensor,
        xyz: torch.Tensor,
        max_proposals: int | None = None,
        min_score: float | None = None,
        seg_logits: torch.Tensor | None = None,
    ) -> InferenceProposals:
        """Stage-1 scores, then the ``proposals_test`` best proposals after NMS (padded).

        Equal to decoding every point and running :meth:`nms_candidates` on all of them, but
        only the candidates of the NMS are regressed and decoded
        (:meth:`stage1_candidates`, then :meth:`nms_proposals`).

        :param features: (B, N, C) backbone features.
        :param xyz: (B, N, 3) points.
        :param max_proposals: override of ``proposals_test``.
        :param min_score: override of ``proposal_threshold``.
        :param seg_logits: (B, N) stage-1 logits when already computed.
        :return: the proposals; ``valid`` marks real ones, best stage-1 score first.
        """
        candidates = self.stage1_candidates(features, xyz, min_score, seg_logits)
        return self.nms_proposals(candidates, max_proposals)

    @torch.no_grad()
    def stage1_candidates(
        self,
        features: torch.Tensor,
        xyz: torch.Tensor,
        min_score: float | None = None,
        seg_logits: torch.Tensor | None = None,
    ) -> Stage1Candidates:
        """Stage 1 at inference: every point's contact score, and the decoded proposals of
        the NMS candidates only (the ``pre_nms_proposals`` best points scoring at least
        ``min_score``, default ``proposal_threshold``; :meth:`regression_at`).

        :param features: (B, N, C) backbone features.
        :param xyz: (B, N, 3) points.
        :param min_score: minimum sigmoid score, or ``None``.
        :param seg_logits: (B, N) stage-1 logits when already computed.
        :return: the candidates.
        """
        if seg_logits is None:
            seg_logits = self.segmentation(features)
        thr = self.config.proposal_threshold if min_score is None else float(min_score)
        score = torch.sigmoid(seg_logits.detach()).cpu().double().numpy()
        orders, scores = [], []
        for row in score:
            order = np.argsort(-row, kind="stable")[: self.config.pre_nms_proposals]
            order = order[row[order] >= thr]
            orders.append(order)
            scores.append(row[order])
        index = np.zeros((len(orders), max(1, max(len(o) for o in orders))), dtype=np.int64)
        for i, order in enumerate(orders):
            index[i, : len(order)] = order
        cand = torch.from_numpy(index).to(seg_logits.device)
        reg = self.regression_at(features, cand)
        center, rot, width = self.decode_proposals(gather_points(xyz, cand), reg)
        return Stage1Candidates(seg_logits, cand, scores, center, rot, width)

    def nms_proposals(self, candidates: Stage1Candidates,
                      max_proposals: int | None = None) -> InferenceProposals:
        """Greedy NMS with D of every scene's candidates; the survivors, padded to P.

        :param candidates: :meth:`stage1_candidates` output.
        :param max_proposals: P (default ``proposals_test``).
        :return: the proposals.
        """
        c = candidates
        p = self.config.proposals_test if max_proposals is None else int(max_proposals)
        c_np, r_np = c.center.cpu().double().numpy(), c.rotation.cpu().double().numpy()
        w_np = c.width.cpu().double().numpy()
        b = len(c.scores)
        pos = np.zeros((b, p), dtype=np.int64)
        valid = np.zeros((b, p), dtype=bool)
        for i, score in enumerate(c.scores):
            m = len(score)
            if m == 0:
                continue
            grasps = _to_grasps(c_np[i, :m], r_np[i, :m], w_np[i, :m], score)
            keep = grasp_nms(grasps, self.config.nms_threshold, self.config.distance_beta, p)
            pos[i, : len(keep)] = keep
            valid[i, : len(keep)] = True
        dev = c.seg_logits.device
        pos_t = torch.from_numpy(pos).to(dev)
        return InferenceProposals(
            index=torch.gather(c.index, 1, pos_t),
            valid=torch.from_numpy(valid).to(dev),
            center=gather_points(c.center, pos_t),
            rotation=gather_points(c.rotation.flatten(2), pos_t).unflatten(-1, (3, 3)),
            width=torch.gather(c.width, 1, pos_t),
            seg_logits=c.seg_logits,
        )

    # ------------------------------------------------------------------ stage 2

    def crop(
        self,
        xyz: torch.Tensor,
        center: torch.Tensor,
        rot: torch.Tensor,
        generator: torch.Generator | None = None,
        rows: torch.Tensor | None = None,
        drawn: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample ``crop_points`` points in each proposal's enlarged closing region.

        :meth:`GripperModel.points_in_closing_region` with the y extent of the maximum
        opening (see the module docstring). Every point gets a uniform random key per
        proposal; the ``crop_points`` inside points with the largest keys are taken (a random
        subset without replacement), repeated in that order when fewer. The keys are
        ``torch.rand((B, drawn, N), generator=generator)``, row ``rows[b, p]`` for proposal p
        (default: ``drawn`` = P, row p), so a subset of proposals can get the crops it would
        get among all of them. On CPU a numba kernel visits the (point, proposal) pairs once
        (:func:`~gpr_ros.core.kernels.crop_kernel`) and, given a generator, computes those
        keys itself from the generator's state, the same numbers ``torch.rand`` draws, rows
        not asked for skipped (:func:`~gpr_ros.core.kernels.crop_mt_kernel`; 1.6 ms less per
        100 proposals on the 2-core CPU); elsewhere, or without numba, tensor operations make
        the same selection (:func:`_crop_torch`).

        :param xyz: (B, N, 3) points.
        :param center: (B, P, 3) proposal centres.
        :param rot: (B, P, 3, 3) proposal rotations.
        :param generator: RNG of the random choice among the points of a region (None:
            PyTorch's default generator).
        :param rows: (B, P) ascending rows of the keys, in [0, drawn).
        :param drawn: rows of keys drawn per scene (default P).
        :return: ``(index (B, P, K) into N, canonical (B, P, K, 3) in m, count (B, P))``;
            a region with fewer than K points repeats them; an empty one gives count 0.
        :raises ValueError: on rows of the wrong shape, out of range or not ascending.
        """
        g = self.config.gripper
        e = self.config.enlarge + 1e-9
        k = self.config.crop_points
        b, p = center.shape[:2]
        n = xyz.shape[1]
        drawn = p if drawn is None else int(drawn)
        if rows is None:
            if drawn != p:
                raise ValueError(f"drawn ({drawn}) differs from the proposals ({p}): give rows")
            rows = torch.arange(p).expand(b, p)
        rows = rows.cpu()
        if (rows.shape != (b, p) or (p and (int(rows.min()) < 0 or int(rows.max()) >= drawn))
                or bool((rows[:, 1:] <= rows[:, :-1]).any())):
            raise ValueError(f"rows must be ({b}, {p}) ascending indices below {drawn}, got "
                             f"shape {tuple(rows.shape)}")
        origin = center - g.finger_depth * rot[..., 0]
        bounds = (-e, g.finger_depth + e, 0.5 * g.max_width + e, 0.5 * g.finger_height + e)
        cpu = NUMBA_AVAILABLE and xyz.device.type == "cpu"
        if cpu and generator is not None and generator.device.type == "cpu" \
                and _mt19937_matches_torch():
            idx, count = _crop_numba_mt(xyz, origin, rot, generator, rows, drawn, bounds, k)
        else:
            noise = torch.rand((b, drawn, n), generator=generator, device="cpu")
            if drawn != p or b > 0 and not bool((rows == torch.arange(p)).all()):
                noise = torch.gather(noise, 1, rows.unsqueeze(-1).expand(-1, -1, n))
            if cpu:
                idx, count = _crop_numba(xyz, origin, rot, noise, bounds, k)
            else:
                idx, count = _crop_torch(xyz, origin, rot, noise.to(xyz.device), bounds, k)
        picked = gather_points(xyz, idx)  # (B, P, K, 3)
        local = torch.einsum("bpki,bpij->bpkj", picked - origin.unsqueeze(2), rot)
        return idx, local, count

    def refine(
        self,
        features: torch.Tensor,
        seg_logits: torch.Tensor,
        xyz: torch.Tensor,
        center: torch.Tensor,
        rot: torch.Tensor,
        generator: torch.Generator | None = None,
        rows: torch.Tensor | None = None,
        drawn: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Stage-2 refinement of P proposals per scene.

        :param features: (B, N, C) backbone features.
        :param seg_logits: (B, N) stage-1 logits.
        :param xyz: (B, N, 3) points.
        :param center: (B, P, 3) proposal centres (detached).
        :param rot: (B, P, 3, 3) proposal rotations (detached).
        :param generator: RNG of the crop sampling.
        :param rows: which rows of the crop's random keys (:meth:`crop`).
        :param drawn: rows of random keys drawn (:meth:`crop`).
        :return: ``{"conf" (B, P), "d_center" (B, P, 3), "d_rot" (B, P, 3), "d_width" (B, P),
            "crop_count" (B, P)}``.
        """
        b, p = center.shape[:2]
        idx, local, count = self.crop(xyz, center, rot, generator, rows, drawn)
        k = idx.shape[-1]
        # The encoder's input per cropped point is [canonical xyz / max_width, stage-1
        # features, stage-1 score]; its first layer is applied to the last two per cloud
        # point, before the crop gathers them (N rows instead of P·K, see pointnet2).
        first = first_conv(self.s2_encoder)
        w = first.weight.flatten(1)  # (C', 3 + C + 1)
        score = torch.sigmoid(seg_logits.detach()).unsqueeze(-1)
        per_point = torch.addcmul(nnf.linear(features, w[:, 3:-1]), score, w[:, -1])
        local = local / self.config.gripper.max_width
        h = nnf.linear(local, w[:, :3]) + gather_points(per_point, idx)
        h = h * (count > 0).unsqueeze(-1).unsqueeze(-1)  # an empty crop's input is zeros
        if first.bias is not None:
            h = h + first.bias
        pooled = channels_last(self.s2_encoder, h.reshape(b * p, k, -1),
                               skip_first=True).amax(dim=1)
        out = self.s2_head(pooled).reshape(b, p, -1)
        return {
            "conf": out[..., 0],
            "d_center": out[..., 1:4],
            "d_rot": out[..., 4:7],
            "d_width": out[..., 7],
            "crop_count": count,
        }

    def apply_refinement(
        self,
        center: torch.Tensor,
        rot: torch.Tensor,
        width: torch.Tensor,
        s2: Mapping[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Refined grasps from proposals and stage-2 residuals.

        :param center: (B, P, 3).
        :param rot: (B, P, 3, 3).
        :param width: (B, P).
        :param s2: output of :meth:`refine`.
        :return: ``(center, rotation, width)`` refined; widths >= 0.
        """
        cfg = self.config
        d_c = torch.einsum("bpij,bpj->bpi", rot, s2["d_center"] * cfg.center_scale)
        new_rot = rot @ axis_angle_to_matrix(s2["d_rot"])
        new_width = (width + s2["d_width"] * cfg.width_scale).clamp_min(0.0)
        return center + d_c, new_rot, new_width

    def refine_poses(
        self,
        features: torch.Tensor,
        seg_logits: torch.Tensor,
        xyz: torch.Tensor,
        center: torch.Tensor,
        rot: torch.Tensor,
        width: torch.Tensor,
        generator: torch.Generator | None = None,
        pose_passes: int = 1,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage 2 at inference: refine the proposals, then refine the refined poses again.

        The first pass is the paper's (:meth:`refine`, :meth:`apply_refinement`); the
        ``pose_passes - 1`` further ones are :meth:`further_pose_passes`.

        :param features: (B, N, C) backbone features.
        :param seg_logits: (B, N) stage-1 logits.
        :param xyz: (B, N, 3) points.
        :param center: (B, P, 3) proposal centres.
        :param rot: (B, P, 3, 3) proposal rotations.
        :param width: (B, P) proposal widths.
        :param generator: RNG of the crop sampling (continues across passes).
        :param pose_passes: stage-2 passes over the pose, >= 1.
        :return: ``(s2 of the first pass, center, rotation, width)``.
        """
        s2 = self.refine(features, seg_logits, xyz, center, rot, generator)
        c, r, w = self.apply_refinement(center, rot, width, s2)
        c, r = self.further_pose_passes(features, seg_logits, xyz, c, r, w, generator,
                                        int(pose_passes) - 1)
        return s2, c, r, w

    def further_pose_passes(
        self,
        features: torch.Tensor,
        seg_logits: torch.Tensor,
        xyz: torch.Tensor,
        center: torch.Tensor,
        rot: torch.Tensor,
        width: torch.Tensor,
        generator: torch.Generator | None = None,
        passes: int = 1,
        keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Refine refined poses again: each pass crops around the pose the previous one gave
        and applies only its centre and rotation residuals. The width and the confidence stay
        those of the first pass, which they were trained for (a second width step
        over-corrects, and the confidence of a refined pose is off its training
        distribution; docs/network.md).

        :param features: (B, N, C) backbone features.
        :param seg_logits: (B, N) stage-1 logits.
        :param xyz: (B, N, 3) points.
        :param center: (B, P, 3) refined centres.
        :param rot: (B, P, 3, 3) refined rotations.
        :param width: (B, P) refined widths (the canonical frame's reference, unchanged).
        :param generator: RNG of the crop sampling.
        :param passes: further passes, >= 0.
        :param keep: (B, Q) ascending indices of the grasps refined again (default: all).
            Since the width and the score come from the first pass, a caller that returns
            only some grasps knows them before these passes (:meth:`GraspDetector.detect`
            refines only those). The crop's random keys are those of all P grasps
            (:meth:`crop`'s ``rows``), so a kept one gets the same crop as without ``keep``;
            the others keep their pose.
        :return: ``(center, rotation)``, all P.
        """
        if passes <= 0 or (keep is not None and keep.shape[1] == 0):
            return center, rot
        b, p = center.shape[:2]
        if keep is None:
            keep = torch.arange(p, device=center.device).expand(b, p)
        c = gather_points(center, keep)
        r = gather_points(rot.flatten(2), keep).unflatten(-1, (3, 3))
        w = torch.gather(width, 1, keep)
        for _ in range(int(passes)):
            again = self.refine(features, seg_logits, xyz, c, r, generator, keep, p)
            c, r, _ = self.apply_refinement(c, r, w, again)
        center = center.scatter(1, keep.unsqueeze(-1).expand(-1, -1, 3), c)
        rot = rot.flatten(2).scatter(1, keep.unsqueeze(-1).expand(-1, -1, 9),
                                     r.flatten(2)).unflatten(-1, (3, 3))
        return center, rot

    @torch.no_grad()
    def refined_accuracy_label(
        self,
        center: torch.Tensor,
        rot: torch.Tensor,
        width: torch.Tensor,
        s2: Mapping[str, torch.Tensor],
        gt: list[Grasps],
    ) -> torch.Tensor:
        """1 where the refined grasp is accurate (``confidence_target="refined"``).

        Accurate: D to the nearest ground-truth grasp of its scene below
        ``confidence_distance`` and the width within ``confidence_width`` of that grasp's
        (the widths clipped to the gripper's opening, as at inference).

        :param center: (B, P, 3) proposal centres.
        :param rot: (B, P, 3, 3) proposal rotations.
        :param width: (B, P) proposal widths.
        :param s2: the stage-2 output for these proposals.
        :param gt: ground-truth grasps per scene.
        :return: (B, P) float labels.
        """
        cfg = self.config
        r_center, r_rot, r_width = self.apply_refinement(
            center, rot, width, {k: v.detach() for k, v in s2.items()})
        c_np = r_center.cpu().double().numpy()
        r_np = r_rot.cpu().double().numpy()
        w_np = np.clip(r_width.cpu().double().numpy(), 0.0, cfg.gripper.max_width)
        label = np.zeros(w_np.shape, dtype=np.float32)
        for i, truth in enumerate(gt):
            if len(truth) == 0:
                continue
            refined = _to_grasps(c_np[i], r_np[i], w_np[i], np.zeros(len(w_np[i])))
            dist = pairwise_grasp_distance(refined, truth, cfg.distance_beta)
            nearest = dist.argmin(axis=1)
            rows = np.arange(len(nearest))
            label[i] = ((dist[rows, nearest] < cfg.confidence_distance)
                        & (np.abs(w_np[i] - truth.width[nearest]) < cfg.confidence_width))
        return torch.from_numpy(label).to(center.device)

    # ------------------------------------------------------------------ training forward

    def forward(
        self,
        xyz: torch.Tensor,
        groups: Mapping[str, torch.Tensor],
        gt: list[Grasps] | None = None,
        seed: int = 0,
    ) -> dict[str, Any]:
        """Full forward pass.

        With ``gt`` (training / validation) proposals are sampled and labelled against the
        ground truth; without it the inference proposals are used.

        :param xyz: (B, N, 3) points.
        :param groups: batched group indices.
        :param gt: ground-truth grasps per scene, or ``None``.
        :param seed: seed of the proposal and crop sampling (deterministic runs).
        :return: ``{"seg_logits", "reg", "proposals" (:class:`ProposalBatch`), "stage2"
            (dict of :meth:`refine`), "center", "rotation", "width"}`` where the last three
            are the proposals' decoded stage-1 parameters (B, P, ...).
        """
        features = self.backbone(xyz, groups)
        seg_logits, reg = self.stage1(features)
        if gt is not None:
            center, rot, width = self.decode_proposals(xyz, reg)
            props = self.sample_training_proposals(
                seg_logits, center, rot, width, gt, np.random.default_rng(seed)
            )
            p_center = gather_points(center, props.index)
            p_rot = gather_points(rot.flatten(2), props.index).unflatten(-1, (3, 3))
            p_width = torch.gather(width, 1, props.index)
        else:
            inf = self.inference_proposals(features, xyz, seg_logits=seg_logits)
            zeros = torch.zeros(inf.index.shape, device=xyz.device)
            props = ProposalBatch(
                index=inf.index, valid=inf.valid, label=zeros,
                center_target=zeros.new_zeros(*zeros.shape, 3),
                rot_target=zeros.new_zeros(*zeros.shape, 3), width_target=zeros,
            )
            p_center, p_rot, p_width = inf.center, inf.rotation, inf.width
        generator = torch.Generator().manual_seed(int(seed))
        s2 = self.refine(features, seg_logits, xyz, p_center, p_rot, generator)
        if gt is not None and self.config.confidence_target == "refined":
            props.conf_label = self.refined_accuracy_label(p_center, p_rot, p_width, s2, gt)
        return {
            "seg_logits": seg_logits,
            "reg": reg,
            "proposals": props,
            "stage2": s2,
            "center": p_center,
            "rotation": p_rot,
            "width": p_width,
        }
