"""tf2 transforms (gpr_ros.ros.tf): conversions here, the tf2 lookup on a full ROS 2 install."""

from __future__ import annotations

from geometry_msgs.msg import Quaternion, Transform, Vector3
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gpr_ros.ros.detection import TransformUnavailableError
from gpr_ros.ros.tf import TfLookup, TfUnavailableError, tf_available, transform_to_matrix

QUAT = Rotation.from_euler('xyz', [0.3, -0.2, 1.1]).as_quat()


def _transform(quat: np.ndarray = QUAT) -> Transform:
    return Transform(translation=Vector3(x=0.1, y=-0.2, z=1.3),
                     rotation=Quaternion(x=quat[0], y=quat[1], z=quat[2], w=quat[3]))


def test_transform_to_matrix() -> None:
    matrix = transform_to_matrix(_transform())
    np.testing.assert_allclose(matrix[:3, :3], Rotation.from_quat(QUAT).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(matrix[:3, 3], [0.1, -0.2, 1.3])
    np.testing.assert_allclose(matrix[3], [0, 0, 0, 1])
    with pytest.raises(TransformUnavailableError, match='invalid transform from tf2'):
        transform_to_matrix(_transform(np.zeros(4)))


@pytest.mark.skipif(tf_available(), reason='tf2_ros is installed here')
def test_without_tf2_the_lookup_says_what_to_do(ros_node) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TfUnavailableError, match='camera_to_output'):
        TfLookup(ros_node)


@pytest.mark.skipif(not tf_available(), reason='tf2_ros is not installed (full ROS 2 only)')
def test_a_static_transform_is_looked_up(ros_node) -> None:  # type: ignore[no-untyped-def]
    import threading

    from geometry_msgs.msg import TransformStamped
    from rclpy.executors import SingleThreadedExecutor
    import tf2_ros

    lookup = TfLookup(ros_node, timeout_s=5.0)
    broadcaster = tf2_ros.StaticTransformBroadcaster(ros_node)
    stamped = TransformStamped(transform=_transform())
    stamped.header.frame_id, stamped.child_frame_id = 'world', 'camera_optical_frame'
    broadcaster.sendTransform(stamped)
    executor = SingleThreadedExecutor()
    executor.add_node(ros_node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        matrix = lookup('world', 'camera_optical_frame', None)
        with pytest.raises(TransformUnavailableError, match='tf2'):
            lookup('world', 'no_such_frame', None)
    finally:
        executor.shutdown()
        executor.remove_node(ros_node)
    np.testing.assert_allclose(matrix, transform_to_matrix(_transform()), atol=1e-9)
