"""Random grasps: the floor any grasp detector should beat.

A grasp is centred on a random cloud point (pushed up to ``max_depth_offset`` further along its
approach, so the fingers can reach around the surface), approaches within ``max_angle`` of the
camera's viewing axis, closes along a random direction perpendicular to the approach and opens
to a random width. Works in the camera optical frame (+Z into the scene).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from gpr_ros.core.errors import ConfigError
from gpr_ros.core.grasp.grasps import STAGE_BASELINE, Grasps
from gpr_ros.core.grasp.gripper import GripperModel
from gpr_ros.core.validation import config_from_dict as _config_from_dict
from gpr_ros.core.validation import config_to_dict as _config_to_dict

__all__ = ["RandomGraspConfig", "random_grasps"]


@dataclass(frozen=True)
class RandomGraspConfig:
    """Random-grasp sampling.

    :ivar num_grasps: grasps returned per call.
    :ivar max_angle: largest angle between the approach and the viewing axis (+Z), rad.
    :ivar min_width: smallest width drawn, m (the largest is the gripper's max opening).
    :ivar max_width: largest width drawn, m.
    :ivar max_depth_offset: the centre moves a uniform 0 … this along the approach, m.
    """

    num_grasps: int = 10
    max_angle: float = math.radians(45.0)
    min_width: float = 0.0
    max_width: float = GripperModel().max_width
    max_depth_offset: float = 0.015

    def __post_init__(self) -> None:
        """Validate the values.

        :raises ConfigError: on a non-positive count, an angle outside [0, π/2] or bad widths.
        """
        if isinstance(self.num_grasps, bool) or int(self.num_grasps) < 1:
            raise ConfigError(f"RandomGraspConfig.num_grasps must be >= 1, got {self.num_grasps}")
        object.__setattr__(self, "num_grasps", int(self.num_grasps))
        if not 0.0 <= float(self.max_angle) <= math.pi / 2:
            raise ConfigError(f"RandomGraspConfig.max_angle must be in [0, pi/2], "
                              f"got {self.max_angle}")
        if not 0.0 <= float(self.min_width) <= float(self.max_width):
            raise ConfigError("RandomGraspConfig needs 0 <= min_width <= max_width, got "
                              f"{self.min_width}, {self.max_width}")
        if float(self.max_depth_offset) < 0.0:
            raise ConfigError("RandomGraspConfig.max_depth_offset must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain Python values.

        :return: ``{field: value}``.
        """
        return _config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RandomGraspConfig:
        """Build from a mapping; missing keys take their defaults.

        :param data: ``{field: value}``.
        :return: the configuration.
        :raises ConfigError: on unknown keys or invalid values.
        """
        result: RandomGraspConfig = _config_from_dict(cls, data)
        return result


def random_grasps(points: ArrayLike, rng: np.random.Generator,
                  config: RandomGraspConfig | None = None) -> Grasps:
    """Draw random grasps on a cloud.

    :param points: (N, 3) cloud in the camera optical frame, m (non-finite rows ignored).
    :param rng: random generator (the only source of randomness).
    :param config: sampling settings.
    :return: grasps sorted by a random score (so "best first" is a random order); empty when
        the cloud has no finite point.
    """
    cfg = config if config is not None else RandomGraspConfig()
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if len(pts) == 0:
        return Grasps.empty()
    n = cfg.num_grasps
    centre = pts[rng.integers(0, len(pts), n)]
    cos_theta = rng.uniform(math.cos(cfg.max_angle), 1.0, n)  # uniform on the spherical cap
    sin_theta = np.sqrt(np.clip(1.0 - cos_theta**2, 0.0, None))
    phi = rng.uniform(0.0, 2.0 * math.pi, n)
    approach = np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=1)
    helper = rng.standard_normal((n, 3))
    closing = np.cross(approach, helper)
    closing /= np.linalg.norm(closing, axis=1, keepdims=True)
    width = rng.uniform(cfg.min_width, cfg.max_width, n)
    centre = centre + rng.uniform(0.0, cfg.max_depth_offset, n)[:, None] * approach
    score = rng.random(n)
    return Grasps(centre, approach, closing, width, score, STAGE_BASELINE).sorted_by_score()
