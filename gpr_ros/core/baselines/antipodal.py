"""An analytic antipodal grasp detector in the spirit of GPD's candidate sampler.

Works on a single-view cloud in the camera optical frame (+Z into the scene, camera at the
origin):

1. subsample the cloud; estimate normals by PCA of the k nearest neighbours, oriented towards
   the camera;
2. sample seed points; from each, look along −normal (into the object) for a second point
   within the gripper's opening that lies near that line and whose normal points back along
   it: both contact normals within ``friction_angle`` of the line joining the contacts
   (a two-point antipodal pair);
3. closing axis = the line, centre = the contacts' midpoint; approach = the viewing direction
   made perpendicular to the closing axis (from the camera side), optionally tilted about the
   closing axis; the centre is pushed ``depth_offsets`` further along the approach so the
   contacts sit on the finger pads rather than the fingertips;
4. reject candidates whose fingers or palm (at the opening the executor will use) contain
   cloud points (:meth:`GripperModel.points_in_gripper_body` on a subsampled cloud);
5. score = antipodality (the smaller cosine of the two contact angles) + ``depth_weight`` ×
   depth offset / finger depth; keep the best candidate per contact pair.

A single view rarely shows both opposite faces of a box (the camera must lie between the
faces' planes), so pairs alone find grasps mainly on curved objects and on objects seen from
the side. GPD's own candidate generator therefore does not need both faces: it approaches a
sampled surface point against its normal and keeps hand poses whose closing region holds
points and whose fingers are free. ``surface_samples`` > 0 adds those candidates (step 6):

6. from each surface seed, approach = −normal (at most ``max_surface_tilt`` from the view
   direction), the centre ``surface_depths`` below the surface, closing axes every
   π / ``closing_angles`` about the approach; the closing region's points give the object's
   visible extent across the fingers: the grasp is centred on it and its width is the extent
   plus ``width_margin`` per side (too wide: dropped); finger/palm collision as step 4;
   score = ``surface_weight`` × (filled fraction of the closing depth) − extent / max width.
   Contact pairs (antipodality in [cos φ, 1] + depth bonus) rank above surface candidates
   of equal score since their antipodality is measured, not assumed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from gpr_ros.core.errors import ConfigError
from gpr_ros.core.grasp.grasps import STAGE_BASELINE, Grasps
from gpr_ros.core.grasp.gripper import GripperModel
from gpr_ros.core.validation import config_from_dict as _config_from_dict
from gpr_ros.core.validation import config_to_dict as _config_to_dict

__all__ = ["AntipodalConfig", "detect_antipodal", "estimate_normals"]


@dataclass(frozen=True)
class AntipodalConfig:
    """Antipodal sampling settings (lengths in m, angles in rad).

    :ivar gripper: the gripper (max opening, finger depth, body boxes).
    :ivar max_points: the cloud is subsampled to at most this many points.
    :ivar normal_neighbors: neighbours in the normal PCA.
    :ivar num_samples: seed points drawn.
    :ivar line_radius: the second contact must lie this close to the seed's normal line.
    :ivar friction_angle: both contact normals within this angle of the contact line.
    :ivar min_width: contacts closer than this are ignored.
    :ivar width_margin: added to the contact distance on each side to give the grasp width.
    :ivar tilt_angles: rotations of the approach about the closing axis to try.
    :ivar depth_offsets: pushes of the centre along the approach to try.
    :ivar depth_weight: score bonus for depth (per finger depth).
    :ivar collision_points: cloud points used in the collision check.
    :ivar max_grasps: most grasps returned.
    :ivar surface_samples: surface seeds of the GPD-style candidates (0: pairs only).
    :ivar surface_depths: depths of the grasp centre below the seed surface.
    :ivar closing_angles: closing directions tried per seed (over π).
    :ivar max_surface_tilt: largest angle between −normal and the view direction.
    :ivar surface_weight: weight of the closing-depth fill in the surface score.
    """

    gripper: GripperModel = field(default_factory=GripperModel)
    max_points: int = 4000
    normal_neighbors: int = 16
    num_samples: int = 400
    line_radius: float = 0.003
    friction_angle: float = math.radians(20.0)
    min_width: float = 0.004
    width_margin: float = 0.005
    tilt_angles: tuple[float, ...] = (0.0, math.radians(20.0), -math.radians(20.0))
    depth_offsets: tuple[float, ...] = (0.0, 0.0075, 0.015)
    depth_weight: float = 0.2
    collision_points: int = 2000
    max_grasps: int = 20
    surface_samples: int = 200
    surface_depths: tuple[float, ...] = (0.01, 0.02)
    closing_angles: int = 6
    max_surface_tilt: float = math.radians(45.0)
    surface_weight: float = 1.0

    def __post_init__(self) -> None:
        """Validate the values.

        :raises ConfigError: on non-positive counts or radii, or an angle outside (0, π/2).
        """
        if isinstance(self.gripper, Mapping):
            object.__setattr__(self, "gripper", GripperModel.from_dict(self.gripper))
        for name in ("max_points", "normal_neighbors", "num_samples", "collision_points",
                     "max_grasps", "closing_angles"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) < (3 if name == "normal_neighbors" else 1):
                raise ConfigError(f"AntipodalConfig.{name} must be a positive count, got {value}")
            object.__setattr__(self, name, int(value))
        if not 0.0 < float(self.friction_angle) < math.pi / 2:
            raise ConfigError("AntipodalConfig.friction_angle must be in (0, pi/2)")
        if float(self.line_radius) <= 0.0 or float(self.min_width) < 0.0:
            raise ConfigError("AntipodalConfig needs line_radius > 0 and min_width >= 0")
        object.__setattr__(self, "tilt_angles", tuple(float(a) for a in self.tilt_angles))
        object.__setattr__(self, "depth_offsets", tuple(float(d) for d in self.depth_offsets))
        if not self.tilt_angles or not self.depth_offsets:
            raise ConfigError("AntipodalConfig needs at least one tilt angle and depth offset")
        if isinstance(self.surface_samples, bool) or int(self.surface_samples) < 0:
            raise ConfigError("AntipodalConfig.surface_samples must be >= 0")
        object.__setattr__(self, "surface_samples", int(self.surface_samples))
        object.__setattr__(self, "surface_depths",
                           tuple(float(d) for d in self.surface_depths))
        if self.surface_samples and (not self.surface_depths
                                     or min(self.surface_depths) < 0.0):
            raise ConfigError("AntipodalConfig.surface_depths must be non-empty and >= 0")
        if not 0.0 < float(self.max_surface_tilt) <= math.pi / 2:
            raise ConfigError("AntipodalConfig.max_surface_tilt must be in (0, pi/2]")

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain Python values.

        :return: ``{field: value}`` (the gripper as a nested dict).
        """
        return _config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AntipodalConfig:
        """Build from a mapping; missing keys take their defaults.

        :param data: ``{field: value}``.
        :return: the configuration.
        :raises ConfigError: on unknown keys or invalid values.
        """
        result: AntipodalConfig = _config_from_dict(cls, data)
        return result


def estimate_normals(points: NDArray[np.float64], neighbors: int = 16,
                     viewpoint: ArrayLike = (0.0, 0.0, 0.0)) -> NDArray[np.float64]:
    """Estimate unit normals by PCA of each point's k nearest neighbours.

    :param points: (P, 3) points.
    :param neighbors: k (including the point itself), at most P.
    :param viewpoint: normals are flipped to point towards this point (the camera).
    :return: (P, 3) unit normals.
    """
    k = max(3, min(int(neighbors), len(points)))
    _, idx = cKDTree(points).query(points, k=k)
    nbrs = points[idx]
    centred = nbrs - nbrs.mean(axis=1, keepdims=True)
    cov = np.einsum("pki,pkj->pij", centred, centred)
    _, vecs = np.linalg.eigh(cov)
    normals = vecs[:, :, 0]
    towards = np.asarray(viewpoint, dtype=np.float64) - points
    flip = np.einsum("pi,pi->p", normals, towards) < 0.0
    normals[flip] *= -1.0
    result: NDArray[np.float64] = normals
    return result


def detect_antipodal(points: ArrayLike, rng: np.random.Generator,
                     config: AntipodalConfig | None = None) -> Grasps:
    """Find antipodal grasps on a single-view cloud (see the module docstring).

    :param points: (N, 3) cloud in the camera optical frame, m (non-finite rows ignored).
    :param rng: random generator (subsampling and seeds).
    :param config: settings.
    :return: grasps, best first; may be empty.
    """
    cfg = config if config is not None else AntipodalConfig()
    gripper = cfg.gripper
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) < cfg.normal_neighbors:
        return Grasps.empty()
    if len(pts) > cfg.max_points:
        pts = pts[rng.choice(len(pts), cfg.max_points, replace=False)]
    normals = estimate_normals(pts, cfg.normal_neighbors)
    found = [_pair_candidates(pts, normals, rng, cfg)]
    if cfg.surface_samples:
        found.append(_surface_candidates(pts, normals, rng, cfg))
    parts = [p for p in found if p is not None and len(p[0])]
    if not parts:
        return Grasps.empty()
    if len(parts) > 1:  # surface candidates have no contact points: drop the pairs' too
        parts = [(Grasps(g.center, g.approach, g.closing, g.width, g.score, STAGE_BASELINE), r)
                 for g, r in parts]
    candidates = Grasps.concat([p[0] for p in parts])
    row = np.concatenate([p[1] + k * 10**9 for k, p in enumerate(parts)])
    sub = pts if len(pts) <= cfg.collision_points else pts[
        rng.choice(len(pts), cfg.collision_points, replace=False)]
    free = ~gripper.points_in_gripper_body(sub, candidates).any(axis=1)
    if not np.any(free):
        return Grasps.empty()
    keep = np.flatnonzero(free)
    order = keep[np.argsort(-candidates.score[keep], kind="stable")]
    # Best candidate per contact pair, then the best pairs.
    _, first_of_pair = np.unique(row[order], return_index=True)
    chosen = order[np.sort(first_of_pair)][: cfg.max_grasps]
    return candidates[chosen].sorted_by_score()


def _pair_candidates(pts: NDArray[np.float64], normals: NDArray[np.float64],
                     rng: np.random.Generator, cfg: AntipodalConfig
                     ) -> tuple[Grasps, NDArray[np.int64]] | None:
    """Steps 2-3: contact-pair candidates and the pair index of each."""
    gripper = cfg.gripper
    tree = cKDTree(pts)
    tree = cKDTree(pts)
    cos_fa = math.cos(cfg.friction_angle)
    max_dist = gripper.max_width - 2.0 * cfg.width_margin
    seeds = rng.choice(len(pts), min(cfg.num_samples, len(pts)), replace=False)
    pairs: list[tuple[int, int, float]] = []
    for i, candidates in zip(seeds, tree.query_ball_point(pts[seeds], max_dist), strict=True):
        cand = np.asarray(candidates, dtype=np.int64)
        direction = -normals[i]
        v = pts[cand] - pts[i]
        t = v @ direction
        perp = np.linalg.norm(v - t[:, None] * direction, axis=1)
        ok = (t >= cfg.min_width) & (t <= max_dist) & (perp <= cfg.line_radius)
        if not np.any(ok):
            continue
        cand, v = cand[ok], v[ok]
        dist = np.linalg.norm(v, axis=1)
        line = v / dist[:, None]
        cos_i = line @ direction
        cos_j = np.einsum("ij,ij->i", line, normals[cand])
        quality = np.minimum(cos_i, cos_j)
        best = int(np.argmax(quality))
        if quality[best] >= cos_fa:
            pairs.append((int(i), int(cand[best]), float(quality[best])))
    if not pairs:
        return None
    first = np.array([p[0] for p in pairs])
    second = np.array([p[1] for p in pairs])
    quality = np.array([p[2] for p in pairs])
    c1, c2 = pts[first], pts[second]
    closing = c2 - c1
    dist = np.linalg.norm(closing, axis=1)
    closing /= dist[:, None]
    middle = 0.5 * (c1 + c2)
    view = middle / np.linalg.norm(middle, axis=1, keepdims=True)
    base = view - np.einsum("ij,ij->i", view, closing)[:, None] * closing
    norm = np.linalg.norm(base, axis=1)
    usable = norm > 1e-3
    if not np.any(usable):
        return None
    first, closing, middle, base, quality, dist = (
        first[usable], closing[usable], middle[usable], base[usable] / norm[usable, None],
        quality[usable], dist[usable])
    width = np.minimum(dist + 2.0 * cfg.width_margin, gripper.max_width)
    # Candidates: every (pair, tilt, depth) combination.
    rows, approaches, centres, scores = [], [], [], []
    for tilt in cfg.tilt_angles:
        rot = Rotation.from_rotvec(closing * tilt)
        approach = rot.apply(base)
        for depth in cfg.depth_offsets:
            rows.append(np.arange(len(first)))
            approaches.append(approach)
            centres.append(middle + depth * approach)
            scores.append(quality + cfg.depth_weight * depth / gripper.finger_depth
                          - 1e-3 * abs(tilt))
    row = np.concatenate(rows)
    return Grasps(np.concatenate(centres), np.concatenate(approaches), closing[row],
                        width[row], np.concatenate(scores), STAGE_BASELINE,
                        np.stack([c1, c2], axis=1)[usable][row]), row


def _surface_candidates(pts: NDArray[np.float64], normals: NDArray[np.float64],
                        rng: np.random.Generator, cfg: AntipodalConfig
                        ) -> tuple[Grasps, NDArray[np.int64]] | None:
    """Step 6: GPD-style candidates approaching surface seeds against their normals."""
    gripper = cfg.gripper
    seeds = rng.choice(len(pts), min(cfg.surface_samples, len(pts)), replace=False)
    approach = -normals[seeds]
    view = pts[seeds] / np.linalg.norm(pts[seeds], axis=1, keepdims=True)
    ok = np.einsum("ij,ij->i", approach, view) >= math.cos(cfg.max_surface_tilt)
    seeds, approach = seeds[ok], approach[ok]
    if len(seeds) == 0:
        return None
    helper = np.where(np.abs(approach[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    u = np.cross(approach, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = np.cross(approach, u)
    angles = np.arange(cfg.closing_angles) * math.pi / cfg.closing_angles
    rows, centres, approaches, closings = [], [], [], []
    for angle in angles:
        closing = math.cos(angle) * u + math.sin(angle) * w
        for depth in cfg.surface_depths:
            rows.append(np.arange(len(seeds)))
            centres.append(pts[seeds] + depth * approach)
            approaches.append(approach)
            closings.append(closing)
    row = np.concatenate(rows)
    probe = Grasps(np.concatenate(centres), np.concatenate(approaches), np.concatenate(closings),
                   np.full(len(row), gripper.max_width), np.zeros(len(row)), STAGE_BASELINE)
    # The visible extent across the fingers, from the points in the widest closing region.
    near = cKDTree(pts).query_ball_point(probe.center, gripper.max_width)
    centre_shift = np.zeros(len(probe))
    extent = np.full(len(probe), np.inf)
    fill = np.zeros(len(probe))
    for k, idx in enumerate(near):
        if len(idx) < 3:
            continue
        local = gripper.to_canonical(pts[idx], probe[k])[0]
        inside = ((local[:, 0] >= 0.0) & (local[:, 0] <= gripper.finger_depth)
                  & (np.abs(local[:, 1]) <= 0.5 * gripper.max_width)
                  & (np.abs(local[:, 2]) <= 0.5 * gripper.finger_height))
        if np.count_nonzero(inside) < 3:
            continue
        y = local[inside, 1]
        lo, hi = float(y.min()), float(y.max())
        if lo <= -0.5 * gripper.max_width + 1e-3 or hi >= 0.5 * gripper.max_width - 1e-3:
            continue  # the object fills the whole opening: it continues beyond the fingers
        centre_shift[k] = 0.5 * (lo + hi)
        extent[k] = hi - lo
        fill[k] = (local[inside, 0].max() - local[inside, 0].min()) / gripper.finger_depth
    width = extent + 2.0 * cfg.width_margin
    good = np.isfinite(extent) & (width <= gripper.max_width)
    if not np.any(good):
        return None
    g = probe[np.flatnonzero(good)]
    centre = g.center + centre_shift[good, None] * g.closing
    score = cfg.surface_weight * np.clip(fill[good], 0.0, 1.0) - extent[good] / gripper.max_width
    # Pairs score in [cos φ, 1 + depth bonus]; keep surface candidates below the best pairs.
    score = math.cos(cfg.friction_angle) * 0.5 * (1.0 + score / (1.0 + cfg.surface_weight))
    return (Grasps(centre, g.approach, g.closing, width[good], score, STAGE_BASELINE),
            row[good].astype(np.int64))
