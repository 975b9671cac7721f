"""A straightforward pure-PyTorch implementation of GPR inference: the speed reference.

The issue asks for the speed-up of our inference over "a straightforward pure-PyTorch
PointNet++ reference (Python-loop farthest-point sampling, dense-distance ball query)". This
module is that reference, written the way the common PyTorch ports of PointNet++ are, with
the weights of the same :class:`~.model.GPRNet`:

- grouping: FPS with a Python loop over the samples, ball query and 3-NN from dense
  distance matrices (:func:`~.sampling.reference_groups`);
- backbone: neighbourhoods gathered with ``torch.gather`` (index expanded over the
  channels), shared MLPs run as the ``nn.Conv2d`` / ``nn.Conv1d`` modules on channels-first
  (B, C, ...) tensors, 3-NN interpolation as gather, multiply and sum;
- stage 1: both heads on every point, every point's proposal decoded, then the same NMS;
- stage 2: the canonical coordinates of every (proposal, point) pair as one dense tensor,
  the crop's random subset by ``topk`` over random keys (:func:`~.model._crop_torch`), the
  encoder's modules on channels-first tensors.

It computes the same grasps as :meth:`GraspDetector.detect` (same sampling seeds; equal up
to float rounding, which the tests check), so the benchmark compares like with like.
"""

from __future__ import annotations

import time
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike
import torch

from gpr_ros.core.grasp import STAGE_2, Grasps
from gpr_ros.core.network.model import GPRNet, _crop_torch
from gpr_ros.core.network.pointnet2 import Backbone, FeaturePropagation, SetAbstractionMSG
from gpr_ros.core.network.sampling import precompute_groups, reference_groups

__all__ = ["reference_backbone", "reference_detect", "reference_gather"]


def reference_gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather rows of (B, N, C) with ``torch.gather`` and an index expanded over C.

    :param values: (B, N, C).
    :param index: (B, ...) int64 indices into N.
    :return: (B, ..., C).
    """
    b = values.shape[0]
    flat = index.reshape(b, -1)
    out = torch.gather(values, 1, flat.unsqueeze(-1).expand(-1, -1, values.shape[-1]))
    return out.reshape(*index.shape, values.shape[-1])


def reference_backbone(backbone: Backbone, xyz: torch.Tensor,
                       groups: dict[str, torch.Tensor]) -> torch.Tensor:
    """The PointNet++ MSG backbone on channels-first tensors.

    :param backbone: the module (its weights are used).
    :param xyz: (B, N, 3) points.
    :param groups: grouping indices (batched).
    :return: (B, N, C) per-point features, like :meth:`Backbone.forward`.
    """
    xyzs: list[torch.Tensor] = [xyz]
    feats: list[torch.Tensor | None] = [None]
    for i, level in enumerate(backbone.config.sa_levels, start=1):
        sa = cast(SetAbstractionMSG, backbone.sa[i - 1])
        prev_xyz, prev_feat = xyzs[-1], feats[-1]
        new_xyz = reference_gather(prev_xyz, groups[f"sa{i}_centers"])
        outs = []
        for j, (radius, mlp) in enumerate(zip(level.radii, sa.mlps, strict=True)):
            index = groups[f"sa{i}_group{j}"]
            rel = (reference_gather(prev_xyz, index) - new_xyz.unsqueeze(2)) / radius
            grouped = rel if prev_feat is None else torch.cat(
                [rel, reference_gather(prev_feat, index)], dim=-1)
            h = mlp(grouped.permute(0, 3, 1, 2).contiguous())  # (B, C', M, K)
            outs.append(h.max(dim=-1).values)
        xyzs.append(new_xyz)
        feats.append(torch.cat(outs, dim=1).transpose(1, 2).contiguous())
    current = feats[-1]
    assert current is not None
    for i in reversed(range(len(backbone.fp))):
        index, weight = groups[f"fp{i + 1}_index"], groups[f"fp{i + 1}_weight"]
        interp = (reference_gather(current, index) * weight.unsqueeze(-1)).sum(dim=2)
        skip = feats[i]
        h = interp if skip is None else torch.cat([interp, skip], dim=-1)
        fp = cast(FeaturePropagation, backbone.fp[i])
        current = fp.mlp(h.transpose(1, 2).contiguous()).transpose(1, 2).contiguous()
    return current


def _reference_refine(model: GPRNet, features: torch.Tensor, seg_logits: torch.Tensor,
                      xyz: torch.Tensor, center: torch.Tensor, rot: torch.Tensor,
                      generator: torch.Generator,
                      noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """:meth:`GPRNet.refine` with the dense crop and channels-first modules."""
    cfg = model.config
    g = cfg.gripper
    e = cfg.enlarge + 1e-9
    b, p = center.shape[:2]
    k = cfg.crop_points
    origin = center - g.finger_depth * rot[..., 0]
    if noise is None:
        noise = torch.rand((b, p, xyz.shape[1]), generator=generator, device="cpu")
    bounds = (-e, g.finger_depth + e, 0.5 * g.max_width + e, 0.5 * g.finger_height + e)
    idx, count = _crop_torch(xyz, origin, rot, noise.to(xyz.device), bounds, k)
    canon = torch.einsum("bpni,bpik->bpnk", xyz.unsqueeze(1) - origin.unsqueeze(2), rot)
    local = canon.gather(2, idx.unsqueeze(-1).expand(-1, -1, -1, 3)) / g.max_width
    feats = reference_gather(features, idx.reshape(b, p * k))
    seg = reference_gather(torch.sigmoid(seg_logits).unsqueeze(-1), idx.reshape(b, p * k))
    x = torch.cat([local.reshape(b, p * k, 3), feats, seg], dim=-1)
    x = x * (count > 0).reshape(b, p, 1).expand(b, p, k).reshape(b, p * k, 1)
    x = x.reshape(b * p, k, -1).transpose(1, 2).contiguous()
    out = model.s2_head(model.s2_encoder(x).max(dim=-1).values).reshape(b, p, -1)
    return {"conf": out[..., 0], "d_center": out[..., 1:4], "d_rot": out[..., 4:7],
            "d_width": out[..., 7]}


@torch.no_grad()
def reference_detect(detector: Any, points: ArrayLike,
                     timing: dict[str, float] | None = None,
                     reference_grouping: bool = True,
                     max_grasps: int | None = None) -> Grasps:
    """Detect grasps like :meth:`GraspDetector.detect` (stage 2, other arguments at their
    defaults), the straightforward way (see the module docstring).

    :param detector: a :class:`~.inference.GraspDetector` (its model, seed and filters).
    :param points: (N, 3) cloud.
    :param timing: filled with ``preprocess`` (sampling and grouping) and ``total`` seconds.
    :param reference_grouping: group with :func:`~.sampling.reference_groups`; ``False``
        uses the detector's own grouping (fpsample's FPS visits ties and near-ties in
        another order than the exact Python loop, so only then are the grasps those of
        :meth:`GraspDetector.detect`: the tests compare the network code this way).
    :param max_grasps: return at most this many; further pose passes refine only those, as
        :meth:`GraspDetector.detect` does.
    :return: grasps sorted by descending score.
    :raises NetworkError: on a bad cloud.
    """
    t0 = time.perf_counter()
    model: GPRNet = detector.model
    cfg = model.config
    sel, _ = detector.sample_input(points)
    xyz = torch.from_numpy(sel).to(detector.device).unsqueeze(0)
    if reference_grouping:
        groups = {k: v.unsqueeze(0) for k, v in reference_groups(xyz[0], cfg).items()}
    else:
        groups = {k: torch.from_numpy(np.ascontiguousarray(v)).to(detector.device).unsqueeze(0)
                  for k, v in precompute_groups(sel, cfg).items()}
    t1 = time.perf_counter()
    features = reference_backbone(model.backbone, xyz, groups)
    features_cf = features.transpose(1, 2).contiguous()
    seg_logits = model.seg_head(features_cf).squeeze(1)
    reg = model.reg_head(features_cf)
    center, rot, width = model.decode_proposals(xyz, reg)
    score = torch.sigmoid(seg_logits).cpu().double().numpy()[0]
    kept = model.nms_candidates(score, center[0].cpu().double().numpy(),
                                rot[0].cpu().double().numpy(),
                                width[0].cpu().double().numpy(),
                                cfg.proposal_threshold, cfg.proposals_test)
    index = torch.from_numpy(kept).to(xyz.device).unsqueeze(0)
    p_center = reference_gather(center, index)
    p_rot = reference_gather(rot.flatten(2), index).unflatten(-1, (3, 3))
    p_width = torch.gather(width, 1, index)
    if len(kept):
        generator = torch.Generator().manual_seed(detector.seed)
        s2 = _reference_refine(model, features, seg_logits, xyz, p_center, p_rot, generator)
        p_center, p_rot, p_width = model.apply_refinement(p_center, p_rot, p_width, s2)
        conf = torch.sigmoid(s2["conf"])
        # as GPRNet.further_pose_passes: the returned grasps are known after the first pass
        keep = torch.arange(len(kept))
        if max_grasps is not None:
            keep = torch.from_numpy(np.sort(detector.ranking(p_width[0], conf[0], 0.0)
                                            [: int(max_grasps)]))
        k_center, k_rot = p_center[:, keep], p_rot[:, keep]
        for _ in range(detector.pose_passes - 1):
            noise = torch.rand((1, len(kept), xyz.shape[1]), generator=generator)
            again = _reference_refine(model, features, seg_logits, xyz, k_center, k_rot,
                                      generator, noise[:, keep])
            k_center, k_rot, _ = model.apply_refinement(k_center, k_rot, p_width[:, keep], again)
        p_center[:, keep], p_rot[:, keep] = k_center, k_rot
    else:
        conf = p_width
    grasps = detector.postprocess(p_center[0], p_rot[0], p_width[0], conf[0], 0.0, STAGE_2)
    if max_grasps is not None:
        grasps = grasps[: int(max_grasps)]
    if timing is not None:
        timing.update(preprocess=t1 - t0, total=time.perf_counter() - t0)
    return grasps
