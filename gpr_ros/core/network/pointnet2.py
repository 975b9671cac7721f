"""PointNet++ MSG backbone (Qi et al. 2017) that consumes precomputed group indices.

The set-abstraction (SA) layers group the previous level's points around FPS centres at
several radii (multi-scale grouping), run a shared MLP (1x1 convolutions + norm + ReLU) on
each group's relative coordinates (divided by the radius, so every scale sees unit-scale
inputs) and features, max-pool over the group and concatenate the scales. The
feature-propagation (FP) layers interpolate a level's features back onto the previous level
(3-NN, inverse distance weights), concatenate the skip features and run a shared MLP.

Only relative coordinates enter the features, so the backbone is translation invariant: the
absolute camera-frame position of a cloud does not matter.

All grouping indices come from :func:`~.sampling.precompute_groups` (batched by
:func:`~.data.collate`): the layers only gather, so they run unchanged on CPU and CUDA.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from gpr_ros.core.network.config import NetworkConfig, SALevel

__all__ = ["Backbone", "FeaturePropagation", "SetAbstractionMSG", "gather_points", "shared_mlp"]


def _norm(kind: str, channels: int, groups: int, dims: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(groups, channels)
    return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm1d(channels)


def shared_mlp(
    in_channels: int, widths: Sequence[int], norm: str, groups: int, dims: int = 1
) -> nn.Sequential:
    """A shared MLP as 1x1 convolutions, each followed by normalisation and ReLU.

    :param in_channels: input channels.
    :param widths: output widths of the layers.
    :param norm: ``"batch"`` or ``"group"``.
    :param groups: GroupNorm groups.
    :param dims: 1 for (B, C, N) inputs, 2 for (B, C, M, K).
    :return: the module.
    """
    conv = nn.Conv2d if dims == 2 else nn.Conv1d
    layers: list[nn.Module] = []
    channels = in_channels
    for width in widths:
        layers += [conv(channels, width, 1, bias=False), _norm(norm, width, groups, dims),
                   nn.ReLU(inplace=True)]
        channels = width
    return nn.Sequential(*layers)


def gather_points(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather rows of a batched (B, N, C) tensor.

    :param values: (B, N, C).
    :param index: (B, ...) int64 indices into N.
    :return: (B, ..., C).
    """
    b = values.shape[0]
    flat = index.reshape(b, -1)
    out = torch.gather(values, 1, flat.unsqueeze(-1).expand(-1, -1, values.shape[-1]))
    return out.reshape(*index.shape, values.shape[-1])


class SetAbstractionMSG(nn.Module):
    """One multi-scale-grouping set-abstraction level."""

    def __init__(self, level: SALevel, in_channels: int, norm: str, groups: int) -> None:
        """Build the per-scale shared MLPs.

        :param level: the level's configuration.
        :param in_channels: feature channels of the previous level (0 for raw points).
        :param norm: normalisation kind.
        :param groups: GroupNorm groups.
        """
        super().__init__()
        self.radii = tuple(level.radii)
        self.mlps = nn.ModuleList(
            shared_mlp(in_channels + 3, m, norm, groups, dims=2) for m in level.mlps
        )

    def forward(
        self,
        xyz: torch.Tensor,
        features: torch.Tensor | None,
        centers: torch.Tensor,
        groups: Sequence[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Abstract one level.

        :param xyz: (B, N, 3) previous level's points.
        :param features: (B, N, C) previous level's features or ``None``.
        :param centers: (B, M) indices of the centres into N.
        :param groups: per scale (B, M, K) neighbour indices into N.
        :return: ``(new_xyz (B, M, 3), new_features (B, M, C'))``.
        """
        new_xyz = gather_points(xyz, centers)
        outs = []
        for radius, index, mlp in zip(self.radii, groups, self.mlps, strict=True):
            rel = (gather_points(xyz, index) - new_xyz.unsqueeze(2)) / radius  # (B, M, K, 3)
            grouped = rel if features is None else torch.cat(
                [rel, gather_points(features, index)], dim=-1
            )
            h = mlp(grouped.permute(0, 3, 1, 2).contiguous())  # (B, C', M, K)
            outs.append(h.max(dim=-1).values)
        return new_xyz, torch.cat(outs, dim=1).transpose(1, 2).contiguous()


class FeaturePropagation(nn.Module):
    """Interpolate a coarse level's features onto a finer level and fuse the skip features."""

    def __init__(self, in_channels: int, widths: Sequence[int], norm: str, groups: int) -> None:
        """Build the shared MLP.

        :param in_channels: coarse + skip feature channels.
        :param widths: MLP widths.
        :param norm: normalisation kind.
        :param groups: GroupNorm groups.
        """
        super().__init__()
        self.mlp = shared_mlp(in_channels, widths, norm, groups, dims=1)

    def forward(
        self,
        coarse: torch.Tensor,
        skip: torch.Tensor | None,
        index: torch.Tensor,
        weight: torch.Tensor,
    ) -> torch.Tensor:
        """Propagate.

        :param coarse: (B, M, C1) coarse features.
        :param skip: (B, N, C2) features of the finer level, or ``None``.
        :param index: (B, N, 3) indices into M.
        :param weight: (B, N, 3) interpolation weights.
        :return: (B, N, C') features of the finer level.
        """
        interp = (gather_points(coarse, index) * weight.unsqueeze(-1)).sum(dim=2)
        h = interp if skip is None else torch.cat([interp, skip], dim=-1)
        return self.mlp(h.transpose(1, 2).contiguous()).transpose(1, 2).contiguous()


class Backbone(nn.Module):
    """PointNet++ MSG encoder-decoder producing per-point features (B, C, N)."""

    def __init__(self, config: NetworkConfig) -> None:
        """Build the SA and FP layers.

        :param config: the architecture.
        """
        super().__init__()
        self.config = config
        groups = config.group_norm_groups
        self.sa = nn.ModuleList()
        channels = [0]
        for level in config.sa_levels:
            self.sa.append(SetAbstractionMSG(level, channels[-1], config.norm, groups))
            channels.append(level.out_channels)
        self.fp = nn.ModuleList()
        depth = len(config.sa_levels)
        # fp[i] maps level i+1 onto level i; the deepest runs first.
        for i in range(depth):
            coarse = channels[i + 1] if i == depth - 1 else config.fp_mlps[i + 1][-1]
            self.fp.append(
                FeaturePropagation(coarse + channels[i], config.fp_mlps[i], config.norm, groups)
            )

    @property
    def out_channels(self) -> int:
        """Per-point feature width C."""
        return self.config.feature_channels

    def forward(self, xyz: torch.Tensor, groups: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Per-point features.

        :param xyz: (B, N, 3) input points.
        :param groups: batched :func:`~.sampling.precompute_groups` output.
        :return: (B, C, N) features.
        """
        xyzs: list[torch.Tensor] = [xyz]
        feats: list[torch.Tensor | None] = [None]
        for i, level in enumerate(self.config.sa_levels, start=1):
            sa = self.sa[i - 1]
            scales = [groups[f"sa{i}_group{j}"] for j in range(len(level.radii))]
            new_xyz, new_feat = sa(xyzs[-1], feats[-1], groups[f"sa{i}_centers"], scales)
            xyzs.append(new_xyz)
            feats.append(new_feat)
        current = feats[-1]
        assert current is not None
        for i in reversed(range(len(self.fp))):
            current = self.fp[i](
                current, feats[i], groups[f"fp{i + 1}_index"], groups[f"fp{i + 1}_weight"]
            )
        return current.transpose(1, 2).contiguous()
