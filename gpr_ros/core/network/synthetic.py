"""Tiny synthetic scenes in the stored dataset format (tests, smoke runs, benchmarks).

A scene is a few boxes standing on a floor, seen by a camera looking along +Z (optical
frame). Points are sampled on the floor and on the boxes' top faces. For each box narrower
than the gripper, grasps close across the box's short side at several positions along its
long side, approaching from above (n close to +Z, tilted by a random angle about the closing
axis), centred ``grasp_depth`` below the top face. Every top-face point takes the label of the
nearest grasp whose centre lies within ``label_radius`` (in XY); all other points are
background. The arrays follow :mod:`gpr_ros.core.dataset.scene_format`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gpr_ros.core.dataset.scene_format import grasp_arrays
from gpr_ros.core.dataset.storage import DatasetWriter, Manifest, pack_scenes
from gpr_ros.core.grasp import STAGE_ANNOTATION, Grasps

__all__ = ["synthetic_scene", "write_synthetic_dataset"]


def synthetic_scene(
    rng: np.random.Generator,
    num_boxes: int = 3,
    num_points: int = 2048,
    floor_distance: float = 0.6,
    half_extent: float = 0.12,
    grasp_depth: float = 0.012,
    label_radius: float = 0.012,
    scene_index: int = 0,
) -> dict[str, NDArray[Any]]:
    """One synthetic scene (see the module docstring).

    :param rng: random generator.
    :param num_boxes: boxes in the scene.
    :param num_points: points in the cloud.
    :param floor_distance: distance from the camera to the floor along +Z, m.
    :param half_extent: half size of the visible floor square, m.
    :param grasp_depth: depth of the grasp centres below the top faces, m.
    :param label_radius: XY radius within which top points take a grasp's label, m.
    :param scene_index: stored ``scene_index``.
    :return: the scene dict.
    """
    boxes = []
    for _ in range(num_boxes):
        size = np.array([rng.uniform(0.02, 0.045), rng.uniform(0.05, 0.09),
                         rng.uniform(0.03, 0.08)])
        if rng.uniform() < 0.5:
            size[[0, 1]] = size[[1, 0]]
        center = rng.uniform(-half_extent + 0.05, half_extent - 0.05, size=2)
        boxes.append((center, size))
    areas = np.array([s[0] * s[1] for _, s in boxes])
    n_top = np.maximum((num_points * 0.6 * areas / areas.sum()).astype(int), 8)
    n_floor = num_points - int(n_top.sum())
    pts, obj = [], []
    floor = rng.uniform(-half_extent, half_extent, size=(4 * n_floor, 2))
    for c, s in boxes:
        floor = floor[np.any(np.abs(floor - c) > s[:2] / 2, axis=1)]
    floor = floor[:n_floor]
    pts.append(np.column_stack([floor, np.full(len(floor), floor_distance)]))
    obj.append(np.full(len(floor), -1))
    poses, widths, contacts, gobj = [], [], [], []
    for k, ((c, s), n) in enumerate(zip(boxes, n_top, strict=True)):
        top = c + rng.uniform(-0.5, 0.5, size=(n, 2)) * s[:2]
        pts.append(np.column_stack([top, np.full(n, floor_distance - s[2])]))
        obj.append(np.full(n, k))
        short = int(np.argmin(s[:2]))
        if s[short] > 0.045:
            continue
        long = 1 - short
        r = np.zeros(3)
        r[short] = 1.0
        for t in np.arange(-s[long] / 2 + 0.01, s[long] / 2 - 0.0099, 0.01):
            tilt = rng.uniform(-0.3, 0.3)
            axis_other = np.zeros(3)
            axis_other[long] = 1.0
            n_vec = np.cos(tilt) * np.array([0.0, 0.0, 1.0]) + np.sin(tilt) * axis_other
            centre = np.array([c[0], c[1], floor_distance - s[2] + grasp_depth])
            centre[long] += t
            rot = np.column_stack([n_vec, r, np.cross(n_vec, r)])
            poses.append((centre, rot))
            widths.append(s[short])
            contacts.append([centre - r * s[short] / 2, centre + r * s[short] / 2])
            gobj.append(k)
    points = np.concatenate(pts)
    point_object = np.concatenate(obj)
    if poses:
        grasps = Grasps.from_rotations(
            np.array([p[0] for p in poses]), np.array([p[1] for p in poses]),
            np.array(widths), score=rng.uniform(0.2, 1.0, len(poses)), stage=STAGE_ANNOTATION,
            contacts=np.array(contacts),
        )
    else:
        grasps = Grasps.empty()
    point_grasp = np.full(len(points), -1, dtype=np.int32)
    if len(grasps):
        on_top = point_object >= 0
        d = np.linalg.norm(points[:, None, :2] - grasps.center[None, :, :2], axis=2)
        same = point_object[:, None] == np.array(gobj)[None, :]
        d = np.where(same & on_top[:, None], d, np.inf)
        best = d.argmin(axis=1)
        close = d[np.arange(len(points)), best] < label_radius
        point_grasp[close] = best[close]
    mask = (point_grasp >= 0).astype(np.uint8)
    score = np.where(mask > 0, grasps.score[np.maximum(point_grasp, 0)] if len(grasps) else 0, 0)
    scene: dict[str, NDArray[Any]] = {
        "points": points.astype(np.float32),
        "point_object": point_object.astype(np.int16),
        "point_class": mask.astype(np.int8),
        "point_grasp": point_grasp,
        "point_score": score.astype(np.float32),
        "mask": mask,
        **grasp_arrays(grasps),
        "grasp_object": np.array(gobj, dtype=np.int32),
        "object_ids": np.arange(num_boxes, dtype=np.int32),
        "object_poses": np.repeat(np.eye(4)[None], num_boxes, axis=0),
        "object_in_bin": np.ones(num_boxes, dtype=bool),
        "camera_pose": np.eye(4)[None],
        "scene_index": np.array([scene_index], dtype=np.int64),
    }
    return scene


def write_synthetic_dataset(
    root: Path | str, num_scenes: int, seed: int = 0, scenes_per_shard: int = 4,
    **kwargs: Any,
) -> Path:
    """Write ``num_scenes`` synthetic scenes as a dataset folder.

    :param root: output folder.
    :param num_scenes: scenes.
    :param seed: seed (scene i uses ``default_rng([seed, i])``).
    :param scenes_per_shard: scenes per shard.
    :param kwargs: passed to :func:`synthetic_scene`.
    :return: the folder.
    """
    root = Path(root)
    manifest = Manifest(config={"synthetic": True, "seed": seed}, num_scenes=num_scenes,
                        scenes_per_shard=scenes_per_shard)
    writer = DatasetWriter(root, manifest)
    for shard in writer.pending_shards():
        scenes = [synthetic_scene(np.random.default_rng([seed, i]), scene_index=i, **kwargs)
                  for i in manifest.shard_range(shard)]
        writer.write_shard(shard, pack_scenes(scenes))
    return root
