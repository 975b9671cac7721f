"""ROS 2 nodes of gpr_ros: thin wrappers that read parameters, call the core and publish."""
