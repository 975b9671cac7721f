"""The launch files start the graphs of :mod:`gpr_ros.ros.graph` with their parameter files.

Three levels, each where it can run:

- everywhere: every launch file compiles, and its source (read with :mod:`ast`, nothing
  imported) starts the nodes of its graph, describes every argument and defaults
  ``params_file`` to a file that exists in config/;
- with ``launch`` and ``launch_ros`` (a full ROS 2 install): the launch description itself,
  from ``generate_launch_description()``;
- with ``launch_testing`` and gpr_ros built with colcon: inference.launch.py is launched and
  the ``gpr_inference`` node must come up on DDS.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path
import py_compile
import signal
import subprocess
import sys
import time
from types import ModuleType
from typing import Any

import pytest
import rclpy
from rclpy.node import Node

from gpr_msgs.srv import DetectGrasps
from gpr_ros.ros import graph
from gpr_ros.ros.graph import CAMERA_GRAPH, REAL_GRAPH, SIM_GRAPH, NodeSpec

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / 'launch'
CONFIG = ROOT / 'config'
#: launch file -> the graph it starts
GRAPHS: dict[str, tuple[NodeSpec, ...]] = {
    'sim_clutter_removal.launch.py': SIM_GRAPH,
    'clutter_removal.launch.py': REAL_GRAPH,
    'inference.launch.py': CAMERA_GRAPH,
}
LAUNCH_FILES = sorted(LAUNCH.glob('*.launch.py'))
files = pytest.mark.parametrize('path', LAUNCH_FILES, ids=[p.name for p in LAUNCH_FILES])
#: what launch writes when an argument has no description
NO_DESCRIPTION = 'no description given'


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    """Calls of function ``name`` in source order."""
    found = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name) and n.func.id == name]
    return sorted(found, key=lambda c: (c.lineno, c.col_offset))


# ---------------------------------------------------------------------- everywhere


def test_each_graph_has_its_launch_file() -> None:
    assert {p.name for p in LAUNCH_FILES} == set(GRAPHS)


@files
def test_compiles(path: Path, tmp_path: Path) -> None:
    py_compile.compile(str(path), cfile=str(tmp_path / 'launch.pyc'), doraise=True)


@files
def test_source_starts_the_graph_with_its_parameter_file(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = []
    for call in _calls(tree, 'launch_node'):
        assert isinstance(call.args[0], ast.Name), ast.unparse(call)
        nodes.append(getattr(graph, call.args[0].id))
    assert [s.executable for s in nodes] == [s.executable for s in GRAPHS[path.name]]

    (params,) = _calls(tree, 'params_file_argument')
    (default,) = params.args
    assert isinstance(default, ast.Constant), ast.unparse(params)
    assert (CONFIG / default.value).is_file(), f'{path.name}: no config/{default.value}'

    arguments = _calls(tree, 'DeclareLaunchArgument')
    assert arguments
    for call in arguments:
        text = {k.arg: k.value for k in call.keywords}.get('description')
        assert text is not None and ast.literal_eval(text).strip(), ast.unparse(call)


def test_empty_launch_arguments_keep_the_params_file_values() -> None:
    values = {'cti_path': '', 'num_trials': '5', 'object_set': 'novel', 'device': '',
              'results_dir': '/tmp/run'}
    assert graph.override_parameters(values) == {'num_trials': 5, 'object_set': 'novel',
                                                 'results_dir': '/tmp/run'}


@files
def test_overriding_arguments_default_to_the_params_file(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for call in _calls(tree, 'DeclareLaunchArgument'):
        name = ast.literal_eval(call.args[0])
        default = {k.arg: k.value for k in call.keywords}.get('default_value')
        if name not in ('params_file', 'namespace'):
            assert default is not None and ast.literal_eval(default) == '', name


# ---------------------------------------------------------------------- with launch_ros


def _launch_modules() -> tuple[Any, Any]:
    # `launch` alone is no proof: the repository's own launch/ folder imports as a namespace
    # package named launch
    actions = pytest.importorskip('launch.actions', reason='the ROS 2 launch package is not '
                                  'installed (pip-only setup): launch descriptions not loaded')
    ros_actions = pytest.importorskip('launch_ros.actions', reason='launch_ros is not installed '
                                      '(pip-only setup): launch descriptions not loaded')
    return actions, ros_actions


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f'launch_file_{path.name[:-10]}', path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _text(value: Any) -> str:
    """A launch value (text or substitutions that need no context) as text."""
    from launch import LaunchContext
    from launch.utilities import normalize_to_list_of_substitutions, perform_substitutions

    if isinstance(value, str):
        return value
    return perform_substitutions(LaunchContext(), normalize_to_list_of_substitutions(value))


def _flatten(items: Any) -> list[Any]:
    out: list[Any] = []
    for item in items:
        out.extend(_flatten(item) if isinstance(item, (list, tuple)) else [item])
    return out


@files
def test_launch_description(path: Path) -> None:
    actions, ros_actions = _launch_modules()
    from launch.substitutions import PathJoinSubstitution, TextSubstitution
    from launch_ros.substitutions import FindPackageShare

    description = _load(path).generate_launch_description()
    arguments = [e for e in description.entities if isinstance(e, actions.DeclareLaunchArgument)]
    names = [a.name for a in arguments]
    assert {'params_file', 'namespace'} <= set(names), names
    for arg in arguments:
        assert arg.description.strip() and arg.description != NO_DESCRIPTION, arg.name

    (params_file,) = [a for a in arguments if a.name == 'params_file']
    (join,) = params_file.default_value
    assert isinstance(join, PathJoinSubstitution)
    share, *rest = _flatten(join.substitutions)
    assert isinstance(share, FindPackageShare) and _text(share.package) == 'gpr_ros'
    assert all(isinstance(s, TextSubstitution) for s in rest)
    folder, name = (_text([s]) for s in rest)
    assert folder == 'config' and (CONFIG / name).is_file(), (folder, name)

    nodes = [e for e in description.entities if isinstance(e, ros_actions.Node)]
    assert [_text(n.node_package) for n in nodes] == ['gpr_ros'] * len(nodes)
    assert [_text(n.node_executable) for n in nodes] == \
        [s.executable for s in GRAPHS[path.name]]


# ---------------------------------------------------------------------- launched

_LAUNCH_SCRIPT = """
import sys
from launch import LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
path, *args = sys.argv[1:]
service = LaunchService()
service.include_launch_description(IncludeLaunchDescription(
    PythonLaunchDescriptionSource(path),
    launch_arguments=[tuple(a.split(':=', 1)) for a in args]))
sys.exit(service.run())
"""


def test_inference_launch_brings_up_gpr_inference(ros_node: Node) -> None:
    pytest.importorskip('launch_testing', reason='launch_testing is not installed (pip-only '
                        'setup): the launch files are not launched')
    _launch_modules()
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        prefix = Path(get_package_prefix('gpr_ros'))
    except PackageNotFoundError:
        pytest.skip('gpr_ros is not in the ament index (not built with colcon)')
    if not (prefix / 'lib' / 'gpr_ros' / 'gpr_inference').is_file():
        pytest.skip(f'{prefix}/lib/gpr_ros has no gpr_inference: not built with colcon')

    # The launch runs in a process of its own: LaunchService wants its main thread, and the
    # launch_testing pytest plugin would take over this whole module.
    proc = subprocess.Popen([sys.executable, '-c', _LAUNCH_SCRIPT,
                             str(LAUNCH / 'inference.launch.py'), 'source:=none'],
                            env=dict(os.environ), start_new_session=True)
    client = ros_node.create_client(DetectGrasps, 'detect_grasps')
    try:
        deadline = time.monotonic() + 60.0
        while ('gpr_inference', '/') not in ros_node.get_node_names_and_namespaces():
            assert proc.poll() is None, f'the launch exited with code {proc.returncode}'
            assert time.monotonic() < deadline, 'gpr_inference did not come up'
            rclpy.spin_once(ros_node, timeout_sec=0.2)
        assert ('phoxi_camera', '/') in ros_node.get_node_names_and_namespaces()
        assert client.wait_for_service(timeout_sec=30.0), 'no detect_grasps service'
    finally:
        ros_node.destroy_client(client)
        proc.send_signal(signal.SIGINT)  # launch shuts its nodes down
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the launch and the nodes it started
            proc.wait()
