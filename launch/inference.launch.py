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

# Every argument but params_file and namespace defaults to '': the params file's value
# (gpr_ros.ros.graph.override_parameters).


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the two nodes."""
    args = [
        params_file_argument('inference.yaml'),
        namespace_argument(),
        DeclareLaunchArgument('source', default_value='',
                              description="camera source: 'genicam', 'bag', 'sim' or 'none' "
                                          '(empty: params_file)'),
        DeclareLaunchArgument('cti_path', default_value='',
                              description='GenTL producer (.cti) (empty: params_file)'),
        DeclareLaunchArgument('bag_path', default_value='',
                              description='source:=bag: the rosbag2 folder or file (empty: '
                                          'params_file)'),
        DeclareLaunchArgument('device', default_value='',
                              description="'cpu' or 'cuda' inference (empty: params_file)"),
        DeclareLaunchArgument('model_path', default_value='',
                              description='GPR checkpoint (empty: params_file)'),
    ]
    nodes = [
        launch_node(CAMERA, {'source': LaunchConfiguration('source'),
                             'cti_path': LaunchConfiguration('cti_path'),
                             'bag_path': LaunchConfiguration('bag_path')}),
        launch_node(INFERENCE, {'device': LaunchConfiguration('device'),
                                'model_path': LaunchConfiguration('model_path')}),
    ]
    return LaunchDescription([*args, *nodes])
