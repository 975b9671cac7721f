"""A top-down grasp heuristic: grasp the highest surface patches across their narrow side.

Used by the smoke demo and as the simplest baseline. Works in a frame whose +Z axis points
from the camera into the scene (the camera optical frame), so "highest" means smallest z and
every grasp approaches along +Z.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from gpr_ros.core.grasp import Grasps
from gpr_ros.core.grasp.grasps import STAGE_BASELINE
from gpr_ros.core.grasp.gripper import GripperModel


def detect_topdown(points: NDArray[np.floating], *, max_grasps: int = 10,
                   gripper: GripperModel | None = None, patch_radius: float = 0.03,
                   top_band: float = 0.01, margin: float = 0.004) -> Grasps:
    """Propose top-down grasps on the patches nearest to the camera.

    Repeatedly takes the nearest unused point, gathers the points within ``patch_radius`` in
    the image plane that lie within ``top_band`` of its depth (the top face), and grasps the
    patch across its minor principal axis with the measured extent plus ``margin`` as width.
    Patches wider than the gripper's opening are skipped. The score is the patch's height
    above the farthest point, normalised to [0, 1].

    :param points: ``(N, 3)`` cloud in the camera optical frame (m).
    :param max_grasps: at most this many grasps.
    :param gripper: gripper model (default YuMi smart gripper).
    :param patch_radius: radius of a patch in the XY plane (m).
    :param top_band: depth tolerance of the top face (m).
    :param margin: added to the measured extent (m).
    :return: grasps, best first; may be empty.
    """
    gripper = gripper or GripperModel()
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) < 3:
        return Grasps.empty()
    tree = cKDTree(pts[:, :2])
    order = np.argsort(pts[:, 2], kind='stable')
    used = np.zeros(len(pts), dtype=bool)
    depth_range = max(float(pts[:, 2].max() - pts[:, 2].min()), 1e-6)
    centers: list[list[float]] = []
    closings: list[list[float]] = []
    widths: list[float] = []
    scores: list[float] = []
    for seed in order:
        if len(centers) >= max_grasps:
            break
        if used[seed]:
            continue
        nbrs = np.asarray(tree.query_ball_point(pts[seed, :2], patch_radius), dtype=np.int64)
        patch = nbrs[np.abs(pts[nbrs, 2] - pts[seed, 2]) <= top_band]
        used[nbrs] = True
        if len(patch) < 3:
            continue
        xy = pts[patch, :2]
        mean = xy.mean(axis=0)
        _, vecs = np.linalg.eigh(np.cov((xy - mean).T))
        minor = vecs[:, 0]
        proj = (xy - mean) @ minor
        width = float(proj.max() - proj.min()) + margin
        if width > gripper.max_width:
            continue
        mid = mean + minor * (proj.max() + proj.min()) / 2
        depth = float(pts[patch, 2].mean()) + gripper.finger_depth / 2
        centers.append([float(mid[0]), float(mid[1]), depth])
        closings.append([float(minor[0]), float(minor[1]), 0.0])
        widths.append(width)
        scores.append(float(pts[:, 2].max() - pts[seed, 2]) / depth_range)
    if not centers:
        return Grasps.empty()
    n = len(centers)
    return Grasps(center=np.array(centers), approach=np.tile([0.0, 0.0, 1.0], (n, 1)),
                  closing=np.array(closings), width=np.array(widths), score=np.array(scores),
                  stage=np.full(n, STAGE_BASELINE, dtype=np.int8)).sorted_by_score()
