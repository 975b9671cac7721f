"""Wireframe of the parallel-jaw gripper at each grasp, for visualisation.

The wireframe is made of the 12 edges of each body box of :meth:`GripperModel.finger_boxes`
(the finger on the +r side, the finger on the -r side, the palm), placed at each grasp's
width: 36 line segments per grasp, in the grasps' frame.
"""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import NDArray

from gpr_ros.core.grasp.grasps import Grasps
from gpr_ros.core.grasp.gripper import GripperModel

__all__ = ["BOX_EDGES", "SEGMENTS_PER_GRASP", "gripper_wireframe"]

#: Corners of the unit box as signs along its three axes, (8, 3).
_CORNER_SIGNS = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
#: Corner index pairs that differ along exactly one axis: the 12 edges of a box.
BOX_EDGES: tuple[tuple[int, int], ...] = tuple(
    (i, j) for i, j in itertools.combinations(range(8), 2)
    if int(np.count_nonzero(_CORNER_SIGNS[i] != _CORNER_SIGNS[j])) == 1)
#: Line segments drawn per grasp (3 boxes x 12 edges).
SEGMENTS_PER_GRASP = 3 * len(BOX_EDGES)


def gripper_wireframe(grasps: Grasps, gripper: GripperModel) -> NDArray[np.float64]:
    """Line segments outlining the gripper's fingers and palm at every grasp.

    :param grasps: N grasps; the fingers are placed at each grasp's width.
    :param gripper: the gripper dimensions.
    :return: (N, :data:`SEGMENTS_PER_GRASP`, 2, 3) segment end points in the grasps' frame, m;
        segments ``[12 b, 12 b + 12)`` are the edges of box ``b`` (``BOX_FINGER_POSITIVE``,
        ``BOX_FINGER_NEGATIVE``, ``BOX_PALM``).
    """
    if len(grasps) == 0:
        return np.zeros((0, SEGMENTS_PER_GRASP, 2, 3))
    boxes = gripper.finger_boxes(grasps)
    # corner offsets along the box axes, then rotated into the grasps' frame: (N, 3, 8, 3)
    local = _CORNER_SIGNS[None, None, :, :] * boxes.half_extents[:, :, None, :]
    corners = boxes.centers[:, :, None, :] + np.einsum("nij,nbkj->nbki", boxes.rotations, local)
    edges = np.array(BOX_EDGES)
    segments = corners[:, :, edges, :]  # (N, 3 boxes, 12 edges, 2, 3)
    result: NDArray[np.float64] = segments.reshape(len(grasps), SEGMENTS_PER_GRASP, 2, 3)
    return result
