"""ROS 2 side of gpr_ros: message conversions and the thin nodes over :mod:`gpr_ros.core`."""
