"""Rigid transforms written as poses: ``(x, y, z, qx, qy, qz, qw)`` to a 4x4 matrix.

Poses follow the project convention (quaternions in ROS order, scalar last, metres). A pose
``T_parent_child`` maps coordinates in the child frame to the parent frame:
``p_parent = R p_child + t``, the form :meth:`Grasps.transformed` applies.
"""

from __future__ import annotations

from collections.abc import Sequence
import math

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from gpr_ros.core.errors import GeometryError

__all__ = ["QUATERNION_NORM_TOLERANCE", "pose_to_matrix"]

#: A pose's quaternion may deviate this much from unit length (typed-in extrinsics are
#: rounded); it is normalized. Larger deviations are rejected as a likely typo.
QUATERNION_NORM_TOLERANCE = 1e-2


def pose_to_matrix(pose: Sequence[float]) -> NDArray[np.float64]:
    """Convert a pose ``(x, y, z, qx, qy, qz, qw)`` to a 4x4 homogeneous transform.

    :param pose: seven finite numbers: translation in metres, then a unit quaternion
        (x, y, z, w); its norm may differ from 1 by :data:`QUATERNION_NORM_TOLERANCE`.
    :return: the (4, 4) float64 matrix ``[[R, t], [0, 0, 0, 1]]``.
    :raises GeometryError: on a wrong length, a non-finite value or a quaternion that is not
        (close to) unit length.
    """
    values = np.asarray(pose, dtype=np.float64).reshape(-1)
    if values.shape != (7,):
        raise GeometryError(
            f"a pose has 7 values (x, y, z, qx, qy, qz, qw), got {values.shape[0]}")
    if not np.isfinite(values).all():
        raise GeometryError(f"a pose must be finite, got {values.tolist()}")
    norm = float(np.linalg.norm(values[3:]))
    if not math.isclose(norm, 1.0, abs_tol=QUATERNION_NORM_TOLERANCE):
        raise GeometryError(
            f"the quaternion (qx, qy, qz, qw) = {values[3:].tolist()} has norm {norm:.4g}; "
            "expected a unit quaternion, scalar last")
    matrix = np.eye(4)
    matrix[:3, :3] = Rotation.from_quat(values[3:] / norm).as_matrix()
    matrix[:3, 3] = values[:3]
    return matrix
