"""tf2 transforms for the nodes on a full ROS 2 install (``tf2_ros`` is not on PyPI).

:class:`TfLookup` is a :data:`gpr_ros.ros.detection.TransformLookup` over a tf2 buffer and
listener on a node: the ``gpr_inference`` node uses it (parameter ``use_tf``) when grasps go to
an ``output_frame`` other than the cloud's and no static ``camera_to_output`` is set, e.g. a
camera on the robot's wrist or a hand-eye calibration published by ``static_transform_publisher``.
``tf2_ros`` is imported only here and only when such a lookup is built; without it (a pip-only
install) the node says so at start-up and needs ``camera_to_output``.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from geometry_msgs.msg import Transform
import numpy as np
from numpy.typing import NDArray

from gpr_ros.core.errors import GeometryError
from gpr_ros.core.grasp.transforms import pose_to_matrix
from gpr_ros.ros.detection import TransformUnavailableError


class TfUnavailableError(RuntimeError):
    """``tf2_ros`` cannot be imported (not a full ROS 2 install)."""


def tf_available() -> bool:
    """Whether ``tf2_ros`` is importable here."""
    return importlib.util.find_spec('tf2_ros') is not None


def transform_to_matrix(transform: Transform) -> NDArray[np.float64]:
    """A ``geometry_msgs/Transform`` as a 4x4 homogeneous matrix.

    :param transform: translation (m) and rotation (unit quaternion).
    :return: ``[[R, t], [0, 0, 0, 1]]``.
    :raises TransformUnavailableError: on a non-finite value or a quaternion far from unit length.
    """
    t, q = transform.translation, transform.rotation
    try:
        return pose_to_matrix((t.x, t.y, t.z, q.x, q.y, q.z, q.w))
    except GeometryError as err:
        raise TransformUnavailableError(f'invalid transform from tf2: {err}') from None


class TfLookup:
    """Transforms from tf2: ``lookup(target, source, stamp)`` -> 4x4 matrix.

    :param node: the node whose executor receives ``/tf`` and ``/tf_static`` (the listener
        subscribes on it; call the lookup from another thread than that executor's).
    :param timeout_s: wait at most this long for a transform at the requested stamp, s.
    :raises TfUnavailableError: when ``tf2_ros`` is not installed.
    """

    def __init__(self, node: Any, timeout_s: float = 0.2) -> None:
        """Create the buffer and the listener (see the class docstring)."""
        try:
            import tf2_ros
        except ImportError as err:
            raise TfUnavailableError(
                f'tf2_ros is not installed ({err}); it comes with a full ROS 2 install '
                '(apt ros-<distro>-tf2-ros). Without it set camera_to_output') from None
        self._tf2 = tf2_ros
        self.timeout_s = float(timeout_s)
        self.buffer = tf2_ros.Buffer(node=node)
        self.listener = tf2_ros.TransformListener(self.buffer, node, spin_thread=False)

    def __call__(self, target: str, source: str, stamp: object) -> NDArray[np.float64]:
        """The transform of ``source`` in ``target`` at ``stamp`` (a zero or None stamp: the
        latest).

        :raises TransformUnavailableError: when tf2 has none within ``timeout_s`` (its message).
        """
        from rclpy.duration import Duration
        from rclpy.time import Time

        when = Time()
        if stamp is not None and (getattr(stamp, 'sec', 0) or getattr(stamp, 'nanosec', 0)):
            when = Time.from_msg(stamp)  # type: ignore[arg-type]
        try:
            found = self.buffer.lookup_transform(target, source, when,
                                                 Duration(seconds=self.timeout_s))
        except self._tf2.TransformException as err:
            raise TransformUnavailableError(f'tf2: {err}') from None
        return transform_to_matrix(found.transform)
