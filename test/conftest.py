"""Test-wide settings: DDS stays on this machine, on a domain of its own per test run."""

import os

# Set before any rclpy.init in this process and inherited by every node process a test starts.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
