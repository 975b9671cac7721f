"""Camera and GPR inference only: clouds on ``cloud``, grasps on ``grasps`` and
``grasp_markers`` (RViz), the ``detect_grasps`` service for your own nodes.

    ros2 launch gpr_ros inference.launch.py source:=genicam device:=cuda
"""

from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration

from gpr_ros.ros.graph import (
    CAMERA,
    INFERENCE,
    launch_node,
    namespace_argument,
    params_file_argument,
)


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the two nodes."""
    args = [
        params_file_argument('inference.yaml'),
        namespace_argument(),
        DeclareLaunchArgument('source', default_value='genicam',
                              description="camera source: 'genicam', 'bag', 'sim' or 'none'"),
        DeclareLaunchArgument('cti_path', default_value='',
                              description="GenTL producer (.cti); '' = genicam's simulator"),
        DeclareLaunchArgument('bag_path', default_value='',
                              description="source:=bag: the rosbag2 folder or file to play"),
        DeclareLaunchArgument('device', default_value='cpu',
                              description="inference device: 'cpu' or 'cuda'"),
        DeclareLaunchArgument('model_path', default_value='',
                              description="GPR checkpoint; '' = the shipped default model"),
    ]
    nodes = [
        launch_node(CAMERA, {'source': LaunchConfiguration('source'),
                             'cti_path': LaunchConfiguration('cti_path'),
                             'bag_path': LaunchConfiguration('bag_path')}),
        launch_node(INFERENCE, {'device': LaunchConfiguration('device'),
                                'model_path': LaunchConfiguration('model_path')}),
    ]
    return LaunchDescription([*args, *nodes])
