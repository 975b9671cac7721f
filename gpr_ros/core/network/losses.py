"""Losses of the GPR network (Eq. 5 and the stage-2 losses of Sec. V-B).

Stage 1:

- ``seg``: sigmoid focal loss (Lin et al. 2017) summed over all points and divided by the
  number of positive points N_pos (Eq. 5 sums it unnormalised; dividing by N_pos, as Lin et al.
  do, keeps its scale independent of the cloud size);
- ``bin_cls``: cross entropy of the bin of each of x, y, z, width, θ1, θ2, θ3, summed over the
  keys, positive points only, divided by N_pos;
- ``bin_res``: smooth L1 between the predicted residual *of the ground-truth bin* and the
  target residual, same normalisation.

Stage 2 (per proposal):

- ``s2_conf``: binary cross entropy of the confidence logit against the proposal label
  (``confidence_target="proposal"``) or against whether the refined grasp is accurate
  (``"refined"``, :meth:`~.model.GPRNet.refined_accuracy_label`), averaged over the sampled
  proposals;
- ``s2_center``, ``s2_rot``, ``s2_width``: smooth L1 of the centre (gripper frame, scaled),
  axis-angle and width residuals, positive proposals only, divided by their number.

Every term is a differentiable function of every output, also when a batch has no positive,
so all parameters receive (possibly zero) gradients, which DDP requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.nn import functional as nnf

from gpr_ros.core.grasp import BIN_KEYS
from gpr_ros.core.network.config import LOSS_KEYS, NetworkConfig

__all__ = ["compute_losses", "focal_loss"]


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Elementwise sigmoid focal loss FL(p_t) = -α_t (1 - p_t)^γ log(p_t).

    :param logits: logits of any shape.
    :param targets: 0/1 targets of the same shape.
    :param alpha: weight of the positives (1 - α for the negatives).
    :param gamma: focusing parameter.
    :return: the elementwise losses.
    """
    ce = nnf.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return alpha_t * (1 - p_t).pow(gamma) * ce


def compute_losses(
    outputs: Mapping[str, Any],
    batch: Mapping[str, Any],
    config: NetworkConfig,
) -> dict[str, torch.Tensor]:
    """All loss terms and their weighted sum.

    :param outputs: :meth:`GPRNet.forward` output (with ground truth).
    :param batch: the collated batch (``seg_target``, ``reg_mask``, ``bin_target``,
        ``res_target``).
    :param config: the architecture (loss weights, focal α/γ, bins).
    :return: ``{term: scalar}`` for every key of :data:`LOSS_KEYS` plus ``"total"``, and the
        diagnostics ``"num_pos_points"`` and ``"num_pos_proposals"`` (not differentiated).
    """
    seg_logits: torch.Tensor = outputs["seg_logits"]
    seg_target = batch["seg_target"].to(seg_logits.dtype)
    reg_mask = batch["reg_mask"]
    n_pos = reg_mask.sum().clamp_min(1).to(seg_logits.dtype)
    terms: dict[str, torch.Tensor] = {}
    terms["seg"] = focal_loss(
        seg_logits, seg_target, config.focal_alpha, config.focal_gamma
    ).sum() / n_pos

    reg: torch.Tensor = outputs["reg"].transpose(1, 2)  # (B, N, R)
    weight = reg_mask.to(reg.dtype)
    cls_total = reg.new_zeros(())
    res_total = reg.new_zeros(())
    counts = [config.bins.spec(key).count for key in BIN_KEYS]
    # One split into the 14 (logits, residuals) blocks, not 14 slices: each slice's backward
    # zero-fills a gradient of the whole (B, N, R) output and the 14 are summed, the split's
    # backward concatenates the blocks (the same gradient, bit for bit: x + 0 == x).
    parts = torch.split(reg, [c for count in counts for c in (count, count)], dim=-1)
    for j, count in enumerate(counts):
        logits, res = parts[2 * j], parts[2 * j + 1]
        target_bin = batch["bin_target"][..., j]
        ce = nnf.cross_entropy(logits.reshape(-1, count), target_bin.reshape(-1), reduction="none")
        cls_total = cls_total + (ce * weight.reshape(-1)).sum()
        pred_res = res.gather(-1, target_bin.unsqueeze(-1)).squeeze(-1)
        sl1 = nnf.smooth_l1_loss(pred_res, batch["res_target"][..., j].to(reg.dtype),
                               reduction="none", beta=1.0 / 9.0)
        res_total = res_total + (sl1 * weight).sum()
    terms["bin_cls"] = cls_total / n_pos
    terms["bin_res"] = res_total / n_pos

    s2 = outputs["stage2"]
    props = outputs["proposals"]
    label = props.label.to(s2["conf"].dtype)
    valid = props.valid.to(s2["conf"].dtype)
    n_valid = valid.sum().clamp_min(1)
    terms["s2_conf"] = (nnf.binary_cross_entropy_with_logits(
        s2["conf"], props.confidence_target.to(label.dtype), reduction="none") * valid
    ).sum() / n_valid
    pos = label * valid
    n_pos_props = pos.sum().clamp_min(1)
    terms["s2_center"] = (nnf.smooth_l1_loss(s2["d_center"], props.center_target, reduction="none")
                          .sum(-1) * pos).sum() / n_pos_props
    terms["s2_rot"] = (nnf.smooth_l1_loss(s2["d_rot"], props.rot_target, reduction="none",
                                        beta=0.1).sum(-1) * pos).sum() / n_pos_props
    terms["s2_width"] = (nnf.smooth_l1_loss(s2["d_width"], props.width_target, reduction="none")
                         * pos).sum() / n_pos_props
    total = seg_logits.new_zeros(())
    for key in LOSS_KEYS:
        total = total + config.loss_weights[key] * terms[key]
    terms["total"] = total
    terms["num_pos_points"] = reg_mask.sum().detach().to(seg_logits.dtype)
    terms["num_pos_proposals"] = pos.sum().detach()
    return terms
