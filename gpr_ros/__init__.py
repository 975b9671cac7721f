"""gpr_ros: the GPR grasp pose refinement network as a ROS 2 grasping node suite.

``gpr_ros.core`` is ROS-free (numpy, scipy, torch); ``gpr_ros.ros`` holds the thin rclpy nodes
and the message conversions.
"""

__version__ = '0.1.0'
