"""Grasp execution with the simulated gripper: success, refusal, collision and slip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import trimesh

from gpr_ros.core.clutter.protocol import GRASP_IMPRATIO, ClutterConfig
from gpr_ros.core.clutter.session import executed
from gpr_ros.core.errors import ConfigError
from gpr_ros.core.grasp import Grasps
from gpr_ros.core.grasp.clearance import ClearanceConfig
from gpr_ros.core.sim.gripper import (
    GROUP_GRIPPER,
    ExecutionConfig,
    Outcome,
    SimGripper,
    execute_grasp,
    precheck_grasp,
)
from gpr_ros.core.sim.world import BinWorld, SceneConfig, SceneObjectSpec

#: Execution of the grasp pose as given, without the planner's bin check: the physics alone
#: judges bin contacts.
UNCHECKED = ExecutionConfig(grasp_depth=0.0, bin_clearance=ClearanceConfig(enabled=False))
EXTENTS = np.array([0.06, 0.03, 0.04])


def box_spec(name: str = "box", extents: np.ndarray = EXTENTS) -> SceneObjectSpec:
    mesh = trimesh.creation.box(extents)
    vertices = np.asarray(mesh.vertices) - mesh.center_mass
    return SceneObjectSpec(name=name, parts=((vertices, np.asarray(mesh.faces)),), mass=0.1)


@pytest.fixture()
def single_box() -> tuple[BinWorld, SimGripper]:
    gripper = SimGripper()
    world = BinWorld(spec_hooks=[gripper.spec_hook])
    world.drop_objects([box_spec()], np.random.default_rng(0), spawn_positions=[(0.0, 0.0, 0.1)])
    return world, gripper


def topdown_grasp(world: BinWorld, index: int = 0, extra_width: float = 0.01) -> Grasps:
    """A top-down grasp across the box's narrow horizontal side, 15 mm below its top."""
    pose = world.object_poses()[index]
    rot = pose[:3, :3]
    vertical = int(np.argmax(np.abs(rot[2])))
    horizontal = [i for i in range(3) if i != vertical]
    narrow = min(horizontal, key=lambda i: EXTENTS[i])
    center = pose[:3, 3].copy()
    center[2] += 0.5 * EXTENTS[vertical] - 0.015
    return Grasps(center[None], [[0.0, 0.0, -1.0]], rot[:, narrow][None],
                  EXTENTS[narrow] + extra_width)


def test_topdown_grasp_lifts_and_removes_the_box(single_box) -> None:
    world, gripper = single_box
    result = execute_grasp(world, gripper, topdown_grasp(world))
    assert result.outcome is Outcome.SUCCESS, result.message
    assert result.object_index == 0 and result.lifted == (0,)
    assert not world.in_scene[0]
    assert 0.02 < result.finger_width < 0.04  # held across the 30 mm side
    assert result.sim_time > 0.5 and result.wall_time > 0.0


def test_too_wide_grasp_is_refused_and_nothing_moves(single_box) -> None:
    world, gripper = single_box
    before_q, before_t = world.data.qpos.copy(), float(world.data.time)
    grasp = topdown_grasp(world, extra_width=0.05)  # 80 mm > 50 mm
    result = execute_grasp(world, gripper, grasp)
    assert result.outcome is Outcome.WIDTH_EXCEEDED
    assert result.outcome.error_code == 3
    np.testing.assert_array_equal(world.data.qpos, before_q)
    assert world.data.time == before_t and world.in_scene[0]


def test_too_narrow_grasp_is_refused_before_anything_moves(single_box) -> None:
    world, gripper = single_box
    before_q, before_t = world.data.qpos.copy(), float(world.data.time)
    grasp = topdown_grasp(world)
    thin = Grasps(grasp.center, grasp.approach, grasp.closing, 0.003)  # below the 5 mm default
    refusal = precheck_grasp(thin, world, gripper, ExecutionConfig())
    assert refusal is not None and refusal[0] is Outcome.WIDTH_EXCEEDED
    assert 'below the min width 5.0 mm' in refusal[1]
    result = execute_grasp(world, gripper, thin)
    assert result.outcome is Outcome.WIDTH_EXCEEDED and not executed(result)
    np.testing.assert_array_equal(world.data.qpos, before_q)
    assert world.data.time == before_t and world.in_scene[0]
    # min_width 0 accepts it: the planner's other checks pass
    assert precheck_grasp(thin, world, gripper, ExecutionConfig(min_width=0.0)) is None
    with pytest.raises(ConfigError, match='min_width'):
        ExecutionConfig(min_width=-0.001)


def test_pregrasp_inside_the_wall_is_a_collision(single_box) -> None:
    world, gripper = single_box
    # A horizontal approach towards -x: at the pre-grasp pose, 10 cm back along +x, the palm
    # spans x = 0.13 ... 0.16 m and cuts the +x wall (inner face at 0.15 m).
    grasp = Grasps([[0.0, 0.1, 0.05]], [[-1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]], 0.03)
    result = execute_grasp(world, gripper, grasp, UNCHECKED)
    assert result.outcome is Outcome.COLLISION and result.stage == "pregrasp"
    assert world.in_scene[0]


def test_planner_refuses_an_approach_through_the_wall_before_moving(single_box) -> None:
    world, gripper = single_box
    before_q, before_t = world.data.qpos.copy(), float(world.data.time)
    # executed 15 mm deeper (grasp_depth): the palm at the pre-grasp pose cuts the +x wall
    grasp = Grasps([[0.015, 0.1, 0.05]], [[-1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]], 0.03)
    result = execute_grasp(world, gripper, grasp)
    assert result.outcome is Outcome.UNREACHABLE and result.stage == "check"
    assert "wall" in result.message
    np.testing.assert_array_equal(world.data.qpos, before_q)
    assert world.data.time == before_t


def test_pregrasp_inside_an_object_is_a_collision(single_box) -> None:
    world, gripper = single_box
    center = world.object_poses()[0][:3, 3] - np.array([0.0, 0.0, 0.09])
    grasp = Grasps(center[None], [[0.0, 0.0, -1.0]], [[1.0, 0.0, 0.0]], 0.03)
    # Pre-grasp = 10 cm above a centre 9 cm below the box's: the palm sits in the box.
    config = dataclasses.replace(UNCHECKED, workspace_margin=0.2)
    result = execute_grasp(world, gripper, grasp, config)
    assert result.outcome is Outcome.COLLISION and result.stage == "pregrasp"


def test_pregrasp_inside_an_object_is_a_collision_with_the_default_planner(single_box) -> None:
    world, gripper = single_box
    box = world.object_poses()[0][:3, 3]
    # A horizontal approach along +x that clears the bin: 10 cm back along -x, at the
    # pre-grasp pose, the fingers sit in the box (objects are not the planner's business).
    grasp = Grasps([[box[0] + 0.1, box[1], max(box[2] + 0.01, 0.036)]], [[1.0, 0.0, 0.0]],
                   [[0.0, 0.0, 1.0]], 0.01)
    result = execute_grasp(world, gripper, grasp)
    assert result.outcome is Outcome.COLLISION and result.stage == "pregrasp", result.message


def test_grasp_in_empty_space_slips(single_box) -> None:
    world, gripper = single_box
    grasp = Grasps([[-0.1, -0.1, 0.05]], [[0.0, 0.0, -1.0]], [[1.0, 0.0, 0.0]], 0.03)
    result = execute_grasp(world, gripper, grasp)
    assert result.outcome is Outcome.SLIP
    assert result.object_index == -1 and world.in_scene[0]
    assert result.finger_width < 0.002


def test_approach_into_the_floor_is_a_collision(single_box) -> None:
    world, gripper = single_box
    grasp = Grasps([[-0.1, 0.1, -0.005]], [[0.0, 0.0, -1.0]], [[1.0, 0.0, 0.0]], 0.03)
    result = execute_grasp(world, gripper, grasp, UNCHECKED)
    assert result.outcome is Outcome.COLLISION and result.stage == "approach"
    # executed 15 mm deeper (grasp_depth), then moved back above the floor by the planner:
    # it closes on nothing, without a collision
    grasp = Grasps([[-0.1, 0.1, 0.01]], [[0.0, 0.0, -1.0]], [[1.0, 0.0, 0.0]], 0.03)
    result = execute_grasp(world, gripper, grasp)
    assert result.outcome is Outcome.SLIP and result.stage == "close"
    assert "shorter to clear the floor" in result.message
    deeper = Grasps([[-0.1, 0.1, -0.05]], [[0.0, 0.0, -1.0]], [[1.0, 0.0, 0.0]], 0.03)
    result = execute_grasp(world, gripper, deeper, ExecutionConfig(workspace_margin=0.1))
    assert result.outcome is Outcome.UNREACHABLE and "floor" in result.message


def test_approach_from_below_is_unreachable(single_box) -> None:
    world, gripper = single_box
    grasp = Grasps([[0.0, 0.0, 0.02]], [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]], 0.03)
    assert execute_grasp(world, gripper, grasp).outcome is Outcome.UNREACHABLE


def test_camera_does_not_see_the_gripper(single_box) -> None:
    world, gripper = single_box
    grasp = topdown_grasp(world)
    pose = np.eye(4)
    pose[:3, :3] = grasp.rotations[0]
    pose[:3, 3] = grasp.center[0] + np.array([0.0, 0.0, 0.05])
    gripper.teleport(world, pose, 0.05)
    hidden = world.observe(geomgroup=gripper.camera_geomgroup())
    seen = world.observe()
    gripper_geoms = np.flatnonzero(world.model.geom_group == GROUP_GRIPPER)
    assert np.isin(seen.geom_id, gripper_geoms).any()
    assert not np.isin(hidden.geom_id, gripper_geoms).any()


def _sphere_world(scene: SceneConfig, mass: float) -> tuple[BinWorld, SimGripper]:
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.02)
    spec = SceneObjectSpec(name="ball", parts=((np.asarray(mesh.vertices) - mesh.center_mass,
                                                np.asarray(mesh.faces)),), mass=mass)
    gripper = SimGripper()
    world = BinWorld(scene=scene, spec_hooks=[gripper.spec_hook])
    world.drop_objects([spec], np.random.default_rng(0), spawn_positions=[(0.0, 0.0, 0.1)])
    return world, gripper


@pytest.mark.parametrize("mass", [0.2, 1.0])
def test_a_ball_held_well_inside_the_friction_cone_does_not_creep_out(mass: float) -> None:
    # Two point contacts at the equator, 20 N each with pad friction 0.8: 32 N of friction
    # against 2-10 N of weight. The clutter simulation's friction (impratio 10) holds it for
    # 2 s; MuJoCo's default (impratio 1) lets it creep out of the fingers, which is why the
    # clutter simulation does not use the default.
    execution = ExecutionConfig(grasp_depth=0.0, hold_time=2.0)
    results = {}
    for name, scene in (("clutter", ClutterConfig().scene),
                        ("mujoco default", SceneConfig(impratio=1.0))):
        world, gripper = _sphere_world(scene, mass)
        centre = world.object_poses()[0][:3, 3]
        grasp = Grasps(centre[None], [[0.0, 0.0, -1.0]], [[1.0, 0.0, 0.0]], 0.05)
        results[name] = execute_grasp(world, gripper, grasp, execution)
    assert ClutterConfig().scene.impratio == GRASP_IMPRATIO > 1.0
    assert results["clutter"].outcome is Outcome.SUCCESS, results["clutter"].message
    assert 0.035 < results["clutter"].finger_width < 0.04  # held across the 40 mm ball
    assert results["mujoco default"].outcome is Outcome.SLIP
    assert results["mujoco default"].stage == "lift"
