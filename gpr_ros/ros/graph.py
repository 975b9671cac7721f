"""The node graphs of the suite, described once for the launch files and for ``gpr-ros demo``.

``launch/*.launch.py`` (full ROS 2 installs) and :mod:`gpr_ros.ros.demo` (pip-only installs)
both start the nodes listed here, each with ``--ros-args -r __node:=NAME --params-file FILE``
plus ``-p`` overrides, so the two paths run the same graph with the same parameters.

Topic and service names are relative, so a namespace moves the whole graph. The data flow:
``sim_world`` (simulation only) → ``phoxi_camera`` → ``cloud`` → ``gpr_inference`` →
``grasps`` / ``detect_grasps`` → ``clutter_removal_supervisor`` → ``execute_grasp`` →
``yumi_executor`` → (``sim_world/execute`` | MoveIt).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import os
from pathlib import Path
import sys
from typing import Any

import yaml

__all__ = [
    'CAMERA_GRAPH',
    'REAL_GRAPH',
    'SIM_GRAPH',
    'NodeSpec',
    'command_line',
    'executable_path',
    'format_parameter',
    'launch_node',
    'namespace_argument',
    'override_parameters',
    'params_file_argument',
]


@dataclass(frozen=True)
class NodeSpec:
    """One node of a graph.

    :ivar executable: the executable in ``lib/gpr_ros`` (``ros2 run gpr_ros EXECUTABLE``).
    :ivar name: the node name.
    :ivar module: the Python module whose ``main`` runs it (fallback when the executable is
        not installed, e.g. a plain ``pip install`` without the ament script dir).
    """

    executable: str
    name: str
    module: str


SIM_WORLD = NodeSpec('sim_world', 'sim_world', 'gpr_ros.ros.nodes.sim_world')
CAMERA = NodeSpec('phoxi_camera', 'phoxi_camera', 'gpr_ros.ros.nodes.phoxi_camera')
INFERENCE = NodeSpec('gpr_inference', 'gpr_inference', 'gpr_ros.ros.nodes.gpr_inference')
EXECUTOR = NodeSpec('yumi_executor', 'yumi_executor', 'gpr_ros.ros.nodes.yumi_executor')
SUPERVISOR = NodeSpec('clutter_removal_supervisor', 'clutter_removal_supervisor',
                      'gpr_ros.ros.nodes.clutter_removal_supervisor')

#: The simulated clutter removal (``sim_clutter_removal.launch.py``, ``gpr-ros demo``).
SIM_GRAPH: tuple[NodeSpec, ...] = (SIM_WORLD, CAMERA, INFERENCE, EXECUTOR, SUPERVISOR)
#: The real robot (``clutter_removal.launch.py``): PhoXi, GPR, YuMi through MoveIt.
REAL_GRAPH: tuple[NodeSpec, ...] = (CAMERA, INFERENCE, EXECUTOR, SUPERVISOR)
#: Camera and inference only (``inference.launch.py``).
CAMERA_GRAPH: tuple[NodeSpec, ...] = (CAMERA, INFERENCE)


def format_parameter(value: Any) -> str:
    """Format a value for ``-p name:=value`` (YAML, as ``ros2 run`` parses it).

    :param value: bool, int, float, str or a list of them.
    :return: the text.
    """
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return '[' + ', '.join(format_parameter(v) for v in value) + ']'
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def executable_path(spec: NodeSpec, prefix: str | os.PathLike[str] | None = None) -> list[str]:
    """How to start a node: ``PREFIX/lib/gpr_ros/EXECUTABLE`` when installed there, else
    ``python -m MODULE`` with this interpreter.

    :param spec: the node.
    :param prefix: install prefix (default ``sys.prefix``).
    :return: the argv head.
    """
    exe = Path(prefix if prefix is not None else sys.prefix) / 'lib' / 'gpr_ros' / spec.executable
    if exe.is_file() and os.access(exe, os.X_OK):
        return [str(exe)]
    return [sys.executable, '-m', spec.module]


def command_line(spec: NodeSpec, params_file: str | os.PathLike[str] | None,
                 overrides: Mapping[str, Any] | None = None,
                 remaps: Sequence[tuple[str, str]] = ()) -> list[str]:
    """The full command line of one node, as a launch file would build it.

    :param spec: the node.
    :param params_file: YAML file with a ``ros__parameters`` block per node (or ``None``).
    :param overrides: parameters given after the file (they win).
    :param remaps: ``(from, to)`` name remappings.
    :return: argv.
    """
    argv = [*executable_path(spec), '--ros-args', '-r', f'__node:={spec.name}']
    if params_file is not None:
        argv += ['--params-file', str(params_file)]
    for name, value in (overrides or {}).items():
        argv += ['-p', f'{name}:={format_parameter(value)}']
    for src, dst in remaps:
        argv += ['-r', f'{src}:={dst}']
    return argv


# ---------------------------------------------------------------------- launch file helpers
# Imported lazily: launch and launch_ros exist only on full ROS 2 installs.


def params_file_argument(default_file: str) -> Any:
    """The ``params_file`` launch argument, defaulting to ``share/gpr_ros/config/<file>``.

    :param default_file: a file name in ``config/``.
    :return: a ``DeclareLaunchArgument``.
    """
    from launch.actions import DeclareLaunchArgument
    from launch.substitutions import PathJoinSubstitution
    from launch_ros.substitutions import FindPackageShare

    return DeclareLaunchArgument(
        'params_file',
        default_value=PathJoinSubstitution([FindPackageShare('gpr_ros'), 'config', default_file]),
        description='YAML file with a ros__parameters block per node')


def namespace_argument() -> Any:
    """The ``namespace`` launch argument (every node, topic and service moves with it).

    :return: a ``DeclareLaunchArgument``.
    """
    from launch.actions import DeclareLaunchArgument

    return DeclareLaunchArgument('namespace', default_value='',
                                 description='namespace of every node of the graph')


def override_parameters(values: Mapping[str, str]) -> dict[str, Any]:
    """Parameters a launch file sets from its arguments on top of ``params_file``.

    An empty argument (every override's default) keeps the parameter file's value, so editing
    ``config/*.yaml`` works without passing the argument; any other text is parsed as YAML, as
    ``ros2 launch`` parses parameter substitutions (``'3'`` -> 3, ``'novel'`` -> ``'novel'``).

    :param values: parameter name -> the evaluated launch argument.
    :return: the parameters to set.
    """
    return {name: yaml.safe_load(text) for name, text in values.items() if text != ''}


def launch_node(spec: NodeSpec, overrides: Mapping[str, Any] | None = None) -> Any:
    """A ``launch_ros`` Node for ``spec``: the ``params_file`` argument, then ``overrides``.

    :param spec: the node.
    :param overrides: parameter name -> text or launch substitution (e.g. a
        ``LaunchConfiguration``); those that evaluate to ``''`` keep the file's value
        (:func:`override_parameters`).
    :return: a ``launch_ros.actions.Node``.
    """
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    parameters: list[Any] = [LaunchConfiguration('params_file')]
    if overrides:
        parameters.append(_overrides_file(dict(overrides)))
    return Node(package='gpr_ros', executable=spec.executable, name=spec.name,
                namespace=LaunchConfiguration('namespace'), parameters=parameters,
                output='screen', emulate_tty=True)


def _overrides_file(overrides: dict[str, Any]) -> Any:
    """A substitution that writes the non-empty overrides to a parameter file, its value the
    file's path (launch_ros reads substitutions in ``parameters`` as parameter files)."""
    import tempfile

    from launch.substitution import Substitution
    from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions

    class OverridesFile(Substitution):  # type: ignore[misc]
        def describe(self) -> str:
            return f'launch-argument overrides of {sorted(overrides)}'

        def perform(self, context: Any) -> str:
            texts = {name: perform_substitutions(context,
                                                 normalize_to_list_of_substitutions(value))
                     for name, value in overrides.items()}
            with tempfile.NamedTemporaryFile('w', prefix='gpr_ros_overrides_', suffix='.yaml',
                                             delete=False) as handle:
                yaml.safe_dump({'/**': {'ros__parameters': override_parameters(texts)}},
                               handle)
            return handle.name

    return OverridesFile()
