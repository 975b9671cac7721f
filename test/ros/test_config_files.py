"""Every parameter file in config/ names real nodes and parameters they declare.

A parameter the node does not declare is silently ignored by rclpy (a typo in a YAML file
just keeps the default), and a value of the wrong type makes the node exit at start-up; both
are caught here. The declared names come from each node module's ``PARAMETERS`` table (the
nodes declare exactly their table, checked against the running nodes over ROS below); the
declared types are read from the running nodes with ``rcl_interfaces/srv/DescribeParameters``.
The files are collected when the tests are: new files are covered as they appear.
"""

from __future__ import annotations

from collections.abc import Iterator
import difflib
import importlib
import os
from pathlib import Path
import re
import subprocess
from typing import Any

import pytest
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rcl_interfaces.srv import DescribeParameters, ListParameters
from rclpy.node import Node
from ros_helpers import call_service, stop_process
import yaml

from gpr_ros.ros.graph import CAMERA_GRAPH, REAL_GRAPH, SIM_GRAPH, NodeSpec, command_line
from gpr_ros.ros.nodes.yumi_executor import PARAMETERS as EXECUTOR_PARAMETERS

CONFIG = Path(__file__).resolve().parents[2] / 'config'
YAML_FILES = sorted([*CONFIG.glob('*.yaml'), *CONFIG.glob('*.yml')])
NODES: dict[str, NodeSpec] = {s.name: s for s in (*SIM_GRAPH, *REAL_GRAPH, *CAMERA_GRAPH)}
#: overrides that let each node start alone and cheaply (no meshes, no camera, no trial)
STANDALONE: dict[str, dict[str, Any]] = {
    'sim_world': {'preload': False},
    'phoxi_camera': {'source': 'none'},
    'gpr_inference': {},
    'yumi_executor': {},
    'clutter_removal_supervisor': {'camera_trigger_service': 'no_camera/trigger'},
}

files = pytest.mark.parametrize('path', YAML_FILES, ids=[p.name for p in YAML_FILES])


def _table(node: str) -> set[str]:
    """Names in the node module's parameter table."""
    return set(importlib.import_module(NODES[node].module).PARAMETERS)


def _moveit_node(blocks: dict[str, Any]) -> str:
    """Name of the executor's MoveItPy node: its block holds MoveIt's own parameters."""
    params = (blocks.get('yumi_executor') or {}).get('ros__parameters') or {}
    return str(params.get('moveit_node_name', EXECUTOR_PARAMETERS['moveit_node_name'][0]))


def _node_blocks(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(node name, ros__parameters) of the gpr_ros nodes configured in ``path``."""
    blocks = yaml.safe_load(path.read_text())
    moveit = _moveit_node(blocks)
    for node, block in blocks.items():
        if node != moveit:
            yield node, block['ros__parameters']


class _RclLoader(yaml.SafeLoader):
    """Scalars typed as rcl's parser types them: YAML 1.1 reads ``1e-3`` as a string, rcl as
    a double; quoted scalars stay strings in both."""


_RclLoader.add_implicit_resolver(
    'tag:yaml.org,2002:float', re.compile(r'^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$'),
    list('-+0123456789'))

_SCALARS = ((bool, ParameterType.PARAMETER_BOOL), (int, ParameterType.PARAMETER_INTEGER),
            (float, ParameterType.PARAMETER_DOUBLE), (str, ParameterType.PARAMETER_STRING))
_ARRAYS = {ParameterType.PARAMETER_BOOL: ParameterType.PARAMETER_BOOL_ARRAY,
           ParameterType.PARAMETER_INTEGER: ParameterType.PARAMETER_INTEGER_ARRAY,
           ParameterType.PARAMETER_DOUBLE: ParameterType.PARAMETER_DOUBLE_ARRAY,
           ParameterType.PARAMETER_STRING: ParameterType.PARAMETER_STRING_ARRAY}
_ANY_ARRAY = -1  # [] has no element type: it fits every array parameter
_TYPE_NAMES = {ParameterType.PARAMETER_BOOL: 'bool', ParameterType.PARAMETER_INTEGER: 'integer',
               ParameterType.PARAMETER_DOUBLE: 'double', ParameterType.PARAMETER_STRING: 'string',
               ParameterType.PARAMETER_BOOL_ARRAY: 'bool array',
               ParameterType.PARAMETER_INTEGER_ARRAY: 'integer array',
               ParameterType.PARAMETER_DOUBLE_ARRAY: 'double array',
               ParameterType.PARAMETER_STRING_ARRAY: 'string array', _ANY_ARRAY: 'an empty array'}


def _ros_type(value: Any) -> int | None:
    """The ParameterType rcl gives a YAML value (None: no ROS parameter can hold it)."""
    if isinstance(value, list):
        if not value:
            return _ANY_ARRAY
        types = {_ros_type(v) for v in value}
        return _ARRAYS.get(types.pop()) if len(types) == 1 else None
    for py_type, ros_type in _SCALARS:  # bool before int: bool is an int in Python
        if isinstance(value, py_type):
            return ros_type
    return None


# ---------------------------------------------------------------------- the files alone


def test_the_parameter_files_are_there() -> None:
    names = {p.name for p in YAML_FILES}
    # the simulated graph (launch file and `gpr-ros demo`) and one file per node
    assert {'sim_clutter_removal.yaml', 'sim_world.yaml', 'phoxi_camera.yaml',
            'yumi_executor.yaml'} <= names, names


@files
def test_each_top_level_key_is_a_node_with_ros_parameters(path: Path) -> None:
    blocks = yaml.safe_load(path.read_text())
    assert isinstance(blocks, dict) and blocks, f'{path.name}: not a mapping of nodes'
    known = {*NODES, _moveit_node(blocks)}
    for node, block in blocks.items():
        assert node in known, f'{path.name}: {node!r} is not a node of the graph ({known})'
        assert isinstance(block, dict) and set(block) == {'ros__parameters'}, \
            f'{path.name}: {node!r} must hold exactly a ros__parameters mapping'
        params = block['ros__parameters']
        assert isinstance(params, dict) and params, \
            f'{path.name}: {node}.ros__parameters is empty or not a mapping'


@files
def test_every_parameter_is_declared_by_its_node(path: Path, ros_node: Node) -> None:
    # use_sim_time & co.: every rclpy node declares them, so a file may set them
    builtin = set(ros_node.get_parameters_by_prefix(''))
    for node, params in _node_blocks(path):
        declared = _table(node) | builtin
        unknown = {name: difflib.get_close_matches(name, declared, n=1)
                   for name in params if name not in declared}
        assert not unknown, (f'{path.name}: {node} declares no parameter '
                             + ', '.join(f'{k!r} (did you mean {v[0]!r}?)' if v else repr(k)
                                         for k, v in unknown.items()))


# ---------------------------------------------------------------------- against the nodes


@pytest.fixture(scope='module')
def declared(ros_node: Node, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[dict[str, dict[str, ParameterDescriptor]]]:
    """Descriptors of every parameter each node declares, read from the running node."""
    results = tmp_path_factory.mktemp('supervisor_results')
    env = dict(os.environ)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in NODES:
            overrides = dict(STANDALONE[name])
            if name == 'clutter_removal_supervisor':
                overrides['results_dir'] = str(results)
            with open(results / f'{name}.log', 'wb') as log:
                procs[name] = subprocess.Popen(command_line(NODES[name], None, overrides),
                                               env=env, cwd=results, stdout=log,
                                               stderr=subprocess.STDOUT)
        descriptors: dict[str, dict[str, ParameterDescriptor]] = {}
        for name in procs:
            listing = ros_node.create_client(ListParameters, f'/{name}/list_parameters')
            describe = ros_node.create_client(DescribeParameters,
                                              f'/{name}/describe_parameters')
            try:
                assert listing.wait_for_service(timeout_sec=60.0), \
                    f'{name} did not come up:\n{(results / f"{name}.log").read_text()[-2000:]}'
                names = call_service(ros_node, listing, ListParameters.Request(depth=0),
                                     timeout=30.0).result.names
                assert describe.wait_for_service(timeout_sec=10.0)
                reply = call_service(ros_node, describe,
                                     DescribeParameters.Request(names=list(names)), timeout=30.0)
                descriptors[name] = {d.name: d for d in reply.descriptors}
            finally:
                ros_node.destroy_client(listing)
                ros_node.destroy_client(describe)
        yield descriptors
    finally:
        for proc in procs.values():
            stop_process(proc)


def test_the_tables_are_what_the_nodes_declare(
        declared: dict[str, dict[str, ParameterDescriptor]], ros_node: Node) -> None:
    builtin = set(ros_node.get_parameters_by_prefix(''))
    for node, descriptors in declared.items():
        assert set(descriptors) == _table(node) | builtin, node


@files
def test_every_value_has_the_declared_type(
        path: Path, declared: dict[str, dict[str, ParameterDescriptor]]) -> None:
    blocks = yaml.load(path.read_text(), Loader=_RclLoader)  # a SafeLoader subclass
    moveit = _moveit_node(blocks)
    wrong = []
    for node, block in blocks.items():
        if node == moveit:
            continue
        for name, value in block['ros__parameters'].items():
            descriptor = declared[node].get(name)
            if descriptor is None or descriptor.dynamic_typing:
                continue  # unknown names fail the test above; dynamic ones take any type
            got = _ros_type(value)
            arrays = set(_ARRAYS.values())
            if got != descriptor.type and not (got == _ANY_ARRAY and descriptor.type in arrays):
                what = _TYPE_NAMES.get(got, 'no parameter type (a mixed array or a mapping)')
                wrong.append(f'{node}.{name}: {value!r} reads as {what}; the node declares '
                             f'{_TYPE_NAMES.get(descriptor.type, descriptor.type)}')
    assert not wrong, f'{path.name}: ' + '; '.join(wrong)
