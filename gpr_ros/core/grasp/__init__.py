"""Grasp geometry: the grasp set, angle and bin encodings, grasp distance and NMS, gripper.

Grasp frame (project-wide, also in ``gpr_msgs/Grasp``): origin o = midpoint between the two
fingertip contacts; X = approach n (palm towards object); Y = closing r (r ~ -r); Z = X x Y;
R = [n | r | nxr]; quaternions (x, y, z, w) with w >= 0; poses (x, y, z, qx, qy, qz, qw);
metres and radians. The canonical gripper frame of the stage-2 crop has the same axes and its
origin at o - finger_depth·n. Details in :mod:`~gpr_ros.core.grasp.grasps`.
"""

from __future__ import annotations

from gpr_ros.core.grasp.angles import (
    APPROACH_Z_TOLERANCE,
    angles_to_approach,
    approach_to_angles,
    closing_to_theta3,
    grasp_angles,
    grasps_from_angles,
    theta3_to_closing,
)
from gpr_ros.core.grasp.bins import (
    BIN_KEYS,
    DEFAULT_OFFSET_BIN_SIZE,
    DEFAULT_SEARCH_RANGE,
    BinConfig,
    BinSpec,
    Encoded,
)
from gpr_ros.core.grasp.distance import (
    DEFAULT_BETA,
    DEFAULT_NMS_THRESHOLD,
    grasp_distance,
    grasp_nms,
    pairwise_grasp_distance,
)
from gpr_ros.core.grasp.grasps import (
    PARALLEL_TOLERANCE,
    RIGID_TOLERANCE,
    STAGE_1,
    STAGE_2,
    STAGE_ANNOTATION,
    STAGE_BASELINE,
    STAGE_PROPOSAL,
    STAGE_REFINED,
    STAGE_UNKNOWN,
    Grasps,
    check_rigid_transform,
)
from gpr_ros.core.grasp.gripper import (
    BOX_FINGER_NEGATIVE,
    BOX_FINGER_POSITIVE,
    BOX_PALM,
    SURFACE_TOLERANCE,
    GripperBoxes,
    GripperModel,
)

__all__ = [
    "APPROACH_Z_TOLERANCE",
    "BIN_KEYS",
    "BOX_FINGER_NEGATIVE",
    "BOX_FINGER_POSITIVE",
    "BOX_PALM",
    "DEFAULT_BETA",
    "DEFAULT_NMS_THRESHOLD",
    "DEFAULT_OFFSET_BIN_SIZE",
    "DEFAULT_SEARCH_RANGE",
    "PARALLEL_TOLERANCE",
    "RIGID_TOLERANCE",
    "STAGE_1",
    "STAGE_2",
    "STAGE_ANNOTATION",
    "STAGE_BASELINE",
    "STAGE_PROPOSAL",
    "STAGE_REFINED",
    "STAGE_UNKNOWN",
    "SURFACE_TOLERANCE",
    "BinConfig",
    "BinSpec",
    "Encoded",
    "Grasps",
    "GripperBoxes",
    "GripperModel",
    "angles_to_approach",
    "approach_to_angles",
    "check_rigid_transform",
    "closing_to_theta3",
    "grasp_angles",
    "grasp_distance",
    "grasp_nms",
    "grasps_from_angles",
    "pairwise_grasp_distance",
    "theta3_to_closing",
]
