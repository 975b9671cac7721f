"""ROS-free core of gpr_ros: geometry, data, network and metrics that never import rclpy."""
