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


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the five nodes."""
    args = [
        params_file_argument('sim_clutter_removal.yaml'),
        namespace_argument(),
        DeclareLaunchArgument('results_dir', default_value='gpr_sim_results',
                              description='folder of attempts.jsonl and the result tables '
                                          '(a relative path is relative to the launch cwd)'),
        DeclareLaunchArgument('num_trials', default_value='3', description='trials to run'),
        DeclareLaunchArgument('seed', default_value='0', description='run seed (scenes)'),
        DeclareLaunchArgument('protocol', default_value='gpr',
                              description="'gpr' (10 of 20 objects, 15 attempts) or 'pile'"),
        DeclareLaunchArgument('object_set', default_value='novel',
                              description="'similar', 'novel' or a folder of meshes"),
        DeclareLaunchArgument('device', default_value='cpu',
                              description="inference device: 'cpu' or 'cuda'"),
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
