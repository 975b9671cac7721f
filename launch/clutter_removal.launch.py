"""Real clutter removal: PhoXi camera (GenICam), GPR inference, YuMi executor (MoveIt backend)
and the supervisor in real mode (an operator pours the objects and calls
``clutter_removal_supervisor/start_trial``), with config/clutter_removal.yaml.

    ros2 launch gpr_ros clutter_removal.launch.py device_id:=<PhoXi serial> \
        cti_path:=/opt/Photoneo/PhoXiControl/API/lib/photoneo.cti

Needs a full ROS 2 install with a YuMi MoveIt configuration running (move_group) and
moveit_py; see README "Real robot".
"""

from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration

from gpr_ros.ros.graph import (
    CAMERA,
    EXECUTOR,
    INFERENCE,
    SUPERVISOR,
    launch_node,
    namespace_argument,
    params_file_argument,
)

# Every argument but params_file and namespace defaults to '': the params file's value
# (gpr_ros.ros.graph.override_parameters).


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the four nodes."""
    args = [
        params_file_argument('clutter_removal.yaml'),
        namespace_argument(),
        DeclareLaunchArgument('cti_path', default_value='',
                              description='the PhoXi GenTL producer, .cti (empty: params_file)'),
        DeclareLaunchArgument('device_id', default_value='',
                              description='PhoXi serial or device id (empty: params_file)'),
        DeclareLaunchArgument('results_dir', default_value='',
                              description='folder of attempts.jsonl and the result tables (empty: '
                                          'params_file)'),
        DeclareLaunchArgument('num_trials', default_value='',
                              description='trials to run (empty: params_file)'),
        DeclareLaunchArgument('object_set', default_value='',
                              description='label of the object set (recorded in the results) '
                                          '(empty: params_file)'),
        DeclareLaunchArgument('device', default_value='',
                              description="'cpu' or 'cuda' inference (empty: params_file)"),
    ]
    nodes = [
        launch_node(CAMERA, {'cti_path': LaunchConfiguration('cti_path'),
                             'device_id': LaunchConfiguration('device_id')}),
        launch_node(INFERENCE, {'device': LaunchConfiguration('device')}),
        launch_node(EXECUTOR),
        launch_node(SUPERVISOR, {'results_dir': LaunchConfiguration('results_dir'),
                                 'num_trials': LaunchConfiguration('num_trials'),
                                 'object_set': LaunchConfiguration('object_set')}),
    ]
    return LaunchDescription([*args, *nodes])
