"""Small synthetic scenes with known answers, for demos, tests and benchmarks.

Clouds are expressed in a camera frame that follows the optical convention (REP 103 for
cameras): +Z points from the camera into the scene, so the bin floor lies at ``z = distance``
and object tops have smaller z than the floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Box:
    """An axis-aligned box resting on the floor, seen from the camera.

    :param center_xy: x, y of the box centre in the camera frame (m).
    :param size: extents along camera x, y and along the view axis (height above the floor), m.
    """

    center_xy: tuple[float, float]
    size: tuple[float, float, float]


def box_scene_cloud(boxes: list[Box], *, distance: float = 1.3, floor_half: float = 0.15,
                    points_per_m2: float = 4.0e5, rng: np.random.Generator) -> NDArray[np.float64]:
    """Sample the camera-visible surfaces of boxes on a floor plane (top faces and the floor).

    Points are sampled uniformly on the floor square and on the boxes' top faces; floor points
    under a box are removed. This is what a top-down depth camera sees, without noise.

    :param boxes: the boxes.
    :param distance: distance from the camera to the floor along +Z (m).
    :param floor_half: half extent of the visible floor square (m).
    :param points_per_m2: sampling density.
    :param rng: random generator (same seed, same cloud).
    :return: ``(N, 3)`` points in the camera frame (m).
    """
    n_floor = int(points_per_m2 * (2 * floor_half) ** 2)
    floor = np.column_stack([rng.uniform(-floor_half, floor_half, (n_floor, 2)),
                             np.full(n_floor, distance)])
    keep = np.ones(n_floor, dtype=bool)
    parts = []
    for box in boxes:
        cx, cy = box.center_xy
        sx, sy, sz = box.size
        keep &= ~((np.abs(floor[:, 0] - cx) <= sx / 2) & (np.abs(floor[:, 1] - cy) <= sy / 2))
        n_top = max(int(points_per_m2 * sx * sy), 16)
        top = np.column_stack([rng.uniform(cx - sx / 2, cx + sx / 2, n_top),
                               rng.uniform(cy - sy / 2, cy + sy / 2, n_top),
                               np.full(n_top, distance - sz)])
        parts.append(top)
    return np.concatenate([floor[keep], *parts]) if parts else floor
