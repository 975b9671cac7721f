"""Simulated clutter removal: MuJoCo world, camera (sim source), GPR, YuMi executor (sim
backend) and the supervisor, with the parameters of config/sim_clutter_removal.yaml.

    ros2 launch gpr_ros sim_clutter_removal.launch.py num_trials:=5 results_dir:=/tmp/gpr_sim

The pip-only equivalent is ``gpr-ros demo`` (same nodes, same parameter file).
"""

from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration

from gpr_ros.ros.graph import (
    CAMERA,
    EXECUTOR,
    INFERENCE,
    SIM_WORLD,
    SUPERVISOR,
    launch_node,
    namespace_argument,
    params_file_argument,
)

# Every argument but params_file and namespace defaults to '': the params file's value
# (gpr_ros.ros.graph.override_parameters).


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the five nodes."""
    args = [
        params_file_argument('sim_clutter_removal.yaml'),
        namespace_argument(),
        DeclareLaunchArgument('results_dir', default_value='',
                              description='folder of attempts.jsonl and the result tables '
                                          '(relative to the launch cwd) (empty: params_file)'),
        DeclareLaunchArgument('num_trials', default_value='',
                              description='trials to run (empty: params_file)'),
        DeclareLaunchArgument('seed', default_value='',
                              description='run seed (scenes) (empty: params_file)'),
        DeclareLaunchArgument('protocol', default_value='',
                              description="'gpr' (10 of 20 objects, 15 attempts) or 'pile' "
                                          '(empty: params_file)'),
        DeclareLaunchArgument('object_set', default_value='',
                              description="'similar', 'novel' or a folder of meshes "
                                          '(empty: params_file)'),
        DeclareLaunchArgument('device', default_value='',
                              description="'cpu' or 'cuda' inference (empty: params_file)"),
    ]
    world = {'protocol': LaunchConfiguration('protocol'),
             'object_set': LaunchConfiguration('object_set')}
    supervisor = {'results_dir': LaunchConfiguration('results_dir'),
                  'num_trials': LaunchConfiguration('num_trials'),
                  'seed': LaunchConfiguration('seed'),
                  'protocol': LaunchConfiguration('protocol'),
                  'object_set': LaunchConfiguration('object_set')}
    nodes = [
        launch_node(SIM_WORLD, world),
        launch_node(CAMERA),
        launch_node(INFERENCE, {'device': LaunchConfiguration('device')}),
        launch_node(EXECUTOR),
        launch_node(SUPERVISOR, supervisor),
    ]
    return LaunchDescription([*args, *nodes])
