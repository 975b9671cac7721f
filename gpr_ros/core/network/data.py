"""Training data: scenes of a dataset folder as network inputs and stage-1 targets.

Each item of :class:`SceneDataset` is one scene of a :class:`~gpr_ros.core.dataset.storage.
DatasetReader` folder:

- ``points`` (N, 3) float32: ``config.num_points`` points drawn without replacement (in
  random order, which the ball query relies on; see :mod:`.sampling`), or all points plus
  repeats drawn with replacement when the scene has fewer;
- ``groups``: :func:`~.sampling.precompute_groups` of those points (computed in the worker);
- ``seg_target`` (N,) float32: the scene's contact mask M(p);
- ``reg_mask`` (N,) bool: positive points that reference a scene grasp;
- ``bin_target`` (N, 7) int64 and ``res_target`` (N, 7) float32: the bins and residuals of
  ``BinConfig.encode_grasps(points[pos], scene_grasps(scene)[point_grasp[pos]])`` (zeros
  elsewhere), in the order of :data:`~gpr_ros.core.grasp.BIN_KEYS`;
- ``gt``: the scene's positive grasps (:class:`~gpr_ros.core.grasp.Grasps`) for stage 2.

Augmentation rotates the cloud *and* the grasps by a random angle φ about the camera's view
axis (+Z of the optical frame) and re-encodes the targets from the rotated grasps: θ1 and θ3
shift by φ (wrapped into their periods), θ2 and the widths do not change, and the centre
offsets rotate with the cloud. Randomness comes from a generator seeded by
(seed, epoch, scene index), so an item does not depend on worker scheduling and a resumed run
sees the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
import torch
from torch.utils.data import Dataset

from gpr_ros.core.dataset.scene_format import scene_grasps
from gpr_ros.core.dataset.storage import DatasetReader
from gpr_ros.core.grasp import BIN_KEYS, Grasps
from gpr_ros.core.network.config import NetworkConfig
from gpr_ros.core.network.errors import NetworkError
from gpr_ros.core.network.sampling import precompute_groups

__all__ = [
    "SceneDataset",
    "batch_to",
    "collate",
    "prepare_scene",
    "rotation_about_z",
    "sample_indices",
]


def sample_indices(num: int, target: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """Indices of ``target`` points out of ``num`` (random order; repeats only if needed).

    :param num: points available, >= 1.
    :param target: points wanted.
    :param rng: random generator.
    :return: (target,) int64 indices.
    :raises NetworkError: if ``num`` is 0.
    """
    if num < 1:
        raise NetworkError("cannot sample points from an empty cloud")
    if num >= target:
        return rng.choice(num, target, replace=False).astype(np.int64)
    extra = rng.choice(num, target - num, replace=True)
    return rng.permutation(np.concatenate([np.arange(num), extra])).astype(np.int64)


def rotation_about_z(angle: float) -> NDArray[np.float64]:
    """4x4 homogeneous rotation about +Z.

    :param angle: rad.
    :return: the transform.
    """
    c, s = math.cos(angle), math.sin(angle)
    out = np.eye(4)
    out[:2, :2] = [[c, -s], [s, c]]
    return out


def prepare_scene(
    scene: dict[str, NDArray[Any]],
    config: NetworkConfig,
    rng: np.random.Generator,
    augment: bool = False,
) -> dict[str, Any]:
    """Turn one stored scene into a network item (see the module docstring).

    :param scene: a scene dict of :mod:`gpr_ros.core.dataset.scene_format`.
    :param config: the architecture.
    :param rng: random generator (point sampling, augmentation).
    :param augment: rotate about the view axis by a uniform random angle.
    :return: the item.
    :raises NetworkError: on an empty cloud or labels that reference missing grasps.
    """
    points = np.asarray(scene["points"], dtype=np.float64)
    grasps = scene_grasps(scene)
    idx = sample_indices(len(points), config.num_points, rng)
    pts = points[idx]
    mask = np.asarray(scene["mask"])[idx] > 0
    point_grasp = np.asarray(scene["point_grasp"], dtype=np.int64)[idx]
    if point_grasp.size and point_grasp.max() >= len(grasps):
        raise NetworkError(
            f"point_grasp references grasp {int(point_grasp.max())} but the scene has "
            f"{len(grasps)} grasps"
        )
    if augment:
        transform = rotation_about_z(float(rng.uniform(0.0, 2.0 * math.pi)))
        pts = pts @ transform[:3, :3].T
        grasps = grasps.transformed(transform) if len(grasps) else grasps
    pos = mask & (point_grasp >= 0)
    n = config.num_points
    bin_target = np.zeros((n, len(BIN_KEYS)), dtype=np.int64)
    res_target = np.zeros((n, len(BIN_KEYS)), dtype=np.float32)
    if np.any(pos):
        encoded = config.bins.encode_grasps(pts[pos], grasps[point_grasp[pos]], clip=True)
        for j, key in enumerate(BIN_KEYS):
            bin_target[pos, j], res_target[pos, j] = encoded[key]
    pts32 = pts.astype(np.float32)
    groups = precompute_groups(pts32, config)
    return {
        "points": torch.from_numpy(pts32),
        "groups": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in groups.items()},
        "seg_target": torch.from_numpy(mask.astype(np.float32)),
        "reg_mask": torch.from_numpy(pos),
        "bin_target": torch.from_numpy(bin_target),
        "res_target": torch.from_numpy(res_target),
        "gt": grasps,
        "scene_index": int(np.asarray(scene.get("scene_index", [-1])).reshape(-1)[0]),
    }


class SceneDataset(Dataset[dict[str, Any]]):
    """The scenes of a dataset folder as network items."""

    def __init__(
        self,
        root: Path | str,
        config: NetworkConfig,
        indices: Sequence[int] | None = None,
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        """Open a dataset folder.

        :param root: folder with ``manifest.json``.
        :param config: the architecture.
        :param indices: scene indices to use (default: every readable scene).
        :param augment: random rotation about the view axis.
        :param seed: base seed.
        :raises NetworkError: if there is no scene.
        """
        self.root = Path(root)
        self.config = config
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self._reader: DatasetReader | None = None
        self.indices = list(self.reader.scene_indices() if indices is None else indices)
        if not self.indices:
            raise NetworkError(f"{self.root} holds no readable scene")

    @property
    def reader(self) -> DatasetReader:
        """The reader (opened lazily, so each DataLoader worker has its own cache)."""
        if self._reader is None:
            self._reader = DatasetReader(self.root)
        return self._reader

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the reader's shard cache."""
        state = dict(self.__dict__)
        state["_reader"] = None
        return state

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch that seeds the sampling and augmentation.

        :param epoch: the epoch.
        """
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Number of scenes."""
        return len(self.indices)

    def __getitem__(self, item: int) -> dict[str, Any]:
        """Load and prepare one scene.

        :param item: position in ``indices``.
        :return: the item (see the module docstring).
        """
        index = self.indices[item]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return prepare_scene(self.reader.scene(index), self.config, rng, self.augment)


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack items into a batch (ground truths stay a list).

    :param items: dataset items.
    :return: the batch; ``groups`` is a dict of stacked tensors.
    """
    batch: dict[str, Any] = {}
    for key in ("points", "seg_target", "reg_mask", "bin_target", "res_target"):
        batch[key] = torch.stack([it[key] for it in items])
    batch["groups"] = {k: torch.stack([it["groups"][k] for it in items])
                       for k in items[0]["groups"]}
    gt: list[Grasps] = [it["gt"] for it in items]
    batch["gt"] = gt
    batch["scene_index"] = [it["scene_index"] for it in items]
    return batch


def batch_to(batch: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """Move the tensors of a batch to a device.

    :param batch: a collated batch.
    :param device: target device.
    :return: a new dict with moved tensors.
    """
    out = dict(batch)
    for key in ("points", "seg_target", "reg_mask", "bin_target", "res_target"):
        out[key] = batch[key].to(device)
    out["groups"] = {k: v.to(device) for k, v in batch["groups"].items()}
    return out
