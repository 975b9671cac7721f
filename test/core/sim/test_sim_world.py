"""Tests of the MuJoCo bin world: dropping, settling, removing and observing objects."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
from scipy.spatial.transform import Rotation
import trimesh

from gpr_ros.core.errors import ConfigError
from gpr_ros.core.sim.camera import CameraConfig, NoiseConfig, Observation
from gpr_ros.core.sim.errors import ModelBuildError, SimulationError
from gpr_ros.core.sim.world import (
    GROUP_OBJECTS,
    BinConfig,
    BinWorld,
    SceneConfig,
    SceneObjectSpec,
    SceneState,
    sample_objects,
)


def object_spec(name: str, mesh: trimesh.Trimesh, mass: float = 0.1) -> SceneObjectSpec:
    """A single-part object with its origin at the mesh's centre of mass."""
    vertices = np.asarray(mesh.vertices) - mesh.center_mass
    return SceneObjectSpec(name=name, parts=((vertices, np.asarray(mesh.faces)),), mass=mass)


BOX_A = object_spec("box_a", trimesh.creation.box((0.06, 0.04, 0.03)))
BOX_B = object_spec("box_b", trimesh.creation.box((0.08, 0.03, 0.03)), mass=0.15)
BOX_C = object_spec("box_c", trimesh.creation.box((0.04, 0.04, 0.04)), mass=0.05)
CYLINDER = object_spec("cylinder", trimesh.creation.cylinder(radius=0.02, height=0.07))
SPHERE = object_spec("sphere", trimesh.creation.icosphere(subdivisions=2, radius=0.025))
OBJECTS = (BOX_A, BOX_B, BOX_C, CYLINDER)


def min_contact_distance(world: BinWorld) -> float:
    data = world.data
    return min((float(data.contact[i].dist) for i in range(data.ncon)), default=0.0)


@pytest.fixture(scope="module")
def dropped() -> tuple[BinWorld, SceneState]:
    world = BinWorld()
    state = world.drop_objects(OBJECTS, np.random.default_rng(0))
    return world, state


# ---------------------------------------------------------------------- configuration


def test_bin_roi_is_the_inner_volume() -> None:
    roi = BinConfig(roi_inset=0.0).roi()
    assert roi.lower == (-0.15, -0.15, -0.005)
    assert roi.upper == pytest.approx((0.15, 0.15, 0.2))
    assert BinConfig().roi().upper[0] == pytest.approx(0.147)


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (BinConfig, {"inner_x": 0.0}),
        (BinConfig, {"friction": -0.1}),
        (BinConfig, {"roi_inset": 0.2}),
        (SceneConfig, {"num_objects": (5, 3)}),
        (SceneConfig, {"num_objects": 4}),
        (SceneConfig, {"timestep": 0.0}),
        (SceneConfig, {"contact_timeconst": 0.001}),
        (SceneConfig, {"impratio": 0.5}),
    ],
)
def test_configs_reject_invalid_values(cls: type, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        cls(**kwargs)


def test_configs_round_trip_through_dicts() -> None:
    scene = SceneConfig(num_objects=(10, 10), object_friction=0.5)
    assert SceneConfig.from_dict(scene.to_dict()) == scene
    assert scene.to_dict()["num_objects"] == [10, 10]
    bin_config = BinConfig(inner_x=0.4, friction=0.5)
    assert BinConfig.from_dict(bin_config.to_dict()) == bin_config


def test_scene_object_spec_validation() -> None:
    box = trimesh.creation.box((0.1, 0.1, 0.1))
    with pytest.raises(ConfigError):
        SceneObjectSpec("x", (), 0.1)
    with pytest.raises(ConfigError):
        SceneObjectSpec("x", ((box.vertices[:, :2], box.faces),), 0.1)
    with pytest.raises(ConfigError):
        SceneObjectSpec("x", ((box.vertices, box.faces + 100),), 0.1)
    with pytest.raises(ConfigError):
        SceneObjectSpec("x", ((box.vertices, box.faces),), 0.0)
    spec = SceneObjectSpec("x", ((box.vertices, box.faces),), 0.1)
    assert spec.bounding_radius() == pytest.approx(np.sqrt(3) * 0.05)
    with pytest.raises(ValueError):
        spec.parts[0][0][0, 0] = 1.0  # frozen arrays


def test_sample_objects_draws_a_count_within_range() -> None:
    pool = [BOX_A, BOX_B, BOX_C, CYLINDER, SPHERE]
    scene = SceneConfig(num_objects=(2, 4))
    counts = {len(sample_objects(pool, scene, np.random.default_rng(s))) for s in range(30)}
    assert counts == {2, 3, 4}
    names = [o.name for o in sample_objects(pool, scene, np.random.default_rng(1))]
    assert len(set(names)) == len(names)
    with pytest.raises(ConfigError):
        sample_objects(pool[:1], scene, np.random.default_rng(0))
    assert len(sample_objects(pool[:1], scene, np.random.default_rng(0), replace=True)) >= 2


def test_degenerate_mesh_raises_model_build_error() -> None:
    flat = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=float) * 0.05
    faces = np.array([[0, 1, 2], [1, 3, 2], [0, 2, 1], [1, 2, 3]])
    with pytest.raises(ModelBuildError):
        BinWorld().build([SceneObjectSpec("flat", ((flat, faces),), 0.1)])


# ---------------------------------------------------------------------- building


def test_model_has_the_requested_masses_and_parked_objects() -> None:
    world = BinWorld()
    world.build(OBJECTS)
    ids = world.object_body_ids
    np.testing.assert_allclose(world.model.body_mass[ids], [o.mass for o in OBJECTS])
    assert not world.in_scene.any()
    before = world.object_poses()
    world.step(200)
    np.testing.assert_allclose(world.object_poses(), before, atol=1e-9)
    # parked objects are invisible to the camera
    obs = world.observe(CameraConfig())
    assert len(obs) > 0 and np.all(obs.object_index == -1)
    groups = world.model.geom_group[world.geom_object_index >= 0]
    assert np.all(groups == GROUP_OBJECTS)


def test_multi_part_object_keeps_its_frame_and_mass() -> None:
    long_box = trimesh.creation.box((0.08, 0.02, 0.02))
    cube = trimesh.creation.box((0.02, 0.02, 0.02))
    cube.apply_translation((0.03, 0.02, 0.0))
    volumes = np.array([long_box.volume, cube.volume])
    centroid = (volumes[0] * long_box.center_mass + volumes[1] * cube.center_mass) / volumes.sum()
    parts = ((long_box.vertices, long_box.faces), (cube.vertices, cube.faces))
    world = BinWorld()
    world.build([SceneObjectSpec("ell", parts, 0.2)])
    body = int(world.object_body_ids[0])
    assert world.model.body_mass[body] == pytest.approx(0.2)
    assert world.model.body_geomnum[body] == 2
    # the body frame is the spec's object frame: the inertial centre is the parts' centroid
    np.testing.assert_allclose(world.model.body_ipos[body], centroid, atol=1e-9)


def test_spec_hooks_add_bodies() -> None:
    def add_marker(spec: mujoco.MjSpec) -> None:
        body = spec.worldbody.add_body(name="marker", pos=[0.5, 0.5, 0.5])
        body.add_geom(type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[0.01, 0, 0], group=2)

    world = BinWorld(spec_hooks=[add_marker])
    world.build([BOX_A])
    assert mujoco.mj_name2id(world.model, mujoco.mjtObj.mjOBJ_BODY, "marker") >= 0
    assert world.geom_object_index[-1] == -1


# ---------------------------------------------------------------------- dropping


def test_dropped_objects_rest_inside_the_bin(dropped: tuple[BinWorld, SceneState]) -> None:
    world, state = dropped
    assert state.names == ("box_a", "box_b", "box_c", "cylinder")
    assert state.in_bin.all() and state.removed == ()
    assert state.settled
    assert world.in_scene.all()
    # no bad interpenetration
    assert min_contact_distance(world) > -0.002
    # inside the walls, above the floor, below the rim
    half = 0.15
    for pose, obj in zip(state.poses, OBJECTS, strict=True):
        vertices = obj.parts[0][0] @ pose[:3, :3].T + pose[:3, 3]
        assert np.all(np.abs(vertices[:, :2]) < half + 1e-3)
        assert vertices[:, 2].min() > -0.002
        assert pose[2, 3] > 0.0
    assert np.all(np.isfinite(state.settle_times)) and np.all(state.settle_times > 0.1)
    assert state.sim_time >= state.settle_times.sum()


def test_settled_scene_stays_put() -> None:
    world = BinWorld()
    state = world.drop_objects(OBJECTS, np.random.default_rng(1))
    assert state.settled
    world.step(250)  # 0.5 s more
    moved = np.linalg.norm(world.object_poses()[:, :3, 3] - state.positions, axis=1)
    assert moved.max() < 0.002
    qvel = world.data.qvel.reshape(-1, 6)
    assert np.linalg.norm(qvel[:, :3], axis=1).max() < 0.01


def test_scene_state_poses_are_consistent(dropped: tuple[BinWorld, SceneState]) -> None:
    _, state = dropped
    np.testing.assert_allclose(state.poses[:, :3, 3], state.positions)
    rotations = Rotation.from_quat(state.quaternions).as_matrix()  # scipy: (x, y, z, w)
    np.testing.assert_allclose(rotations, state.poses[:, :3, :3], atol=1e-9)
    assert np.all(state.quaternions[:, 3] >= 0.0)
    np.testing.assert_allclose(state.poses[:, 3], np.tile([0, 0, 0, 1.0], (len(OBJECTS), 1)))


def test_same_seed_same_scene_and_cloud() -> None:
    noise = NoiseConfig()
    results = []
    for seed in (5, 5, 6):
        world = BinWorld()
        rng = np.random.default_rng(seed)
        state = world.drop_objects(OBJECTS[:3], rng)
        results.append((state, world.observe(CameraConfig(), noise, rng)))
    (a, obs_a), (b, obs_b), (c, _) = results
    np.testing.assert_array_equal(a.poses, b.poses)
    np.testing.assert_array_equal(obs_a.points, obs_b.points)
    np.testing.assert_array_equal(obs_a.object_index, obs_b.object_index)
    assert np.abs(a.positions - c.positions).max() > 1e-3


def test_object_dropped_outside_is_reported_and_removed() -> None:
    world = BinWorld()
    spawn = [None, (0.30, 0.0, 0.05), None]
    state = world.drop_objects([BOX_A, BOX_C, CYLINDER], np.random.default_rng(2), spawn)
    assert list(state.in_bin) == [True, False, True]
    assert state.removed == (1,)
    assert not world.in_scene[1]
    # its reported pose is where it landed, on the ground outside the wall
    assert state.positions[1, 0] > 0.15 and state.positions[1, 2] < 0.05
    obs = world.observe(CameraConfig())
    assert 1 not in set(obs.object_index.tolist())
    with pytest.raises(SimulationError):
        world.drop_objects([BOX_A], np.random.default_rng(0), [(0.0, 0.0)])
    with pytest.raises(SimulationError):
        world.drop_objects([BOX_A], np.random.default_rng(0), [])


def test_points_are_labelled_with_the_object_they_lie_on(
    dropped: tuple[BinWorld, SceneState],
) -> None:
    world, state = dropped
    obs = world.observe(CameraConfig())
    assert isinstance(obs, Observation)
    np.testing.assert_array_equal(obs.object_index, world.geom_object_index[obs.geom_id])
    points = obs.points_world()
    seen = set(obs.object_index.tolist())
    assert -1 in seen and len(seen - {-1}) >= 3  # the floor and most objects are visible
    for k in seen - {-1}:
        vertices = OBJECTS[k].parts[0][0] @ state.poses[k, :3, :3].T + state.poses[k, :3, 3]
        mine = points[obs.object_index == k]
        assert np.all(mine >= vertices.min(axis=0) - 1e-6)
        assert np.all(mine <= vertices.max(axis=0) + 1e-6)
    # background points lie on the floor (objects occlude, nothing floats)
    background = points[obs.object_index == -1]
    np.testing.assert_allclose(background[:, 2], 0.0, atol=1e-6)
    np.testing.assert_allclose(obs.T_world_camera, CameraConfig().pose())


def test_remove_object_hides_it_from_the_next_observation() -> None:
    world = BinWorld()
    world.drop_objects(OBJECTS[:3], np.random.default_rng(0))
    before = world.observe(CameraConfig())
    visible = sorted(set(before.object_index.tolist()) - {-1})
    target = visible[0]
    world.remove_object(target)
    after = world.observe(CameraConfig())
    assert target not in set(after.object_index.tolist())
    assert not world.in_scene[target]
    state = world.state()
    assert not state.in_bin[target]
    # the other objects are still seen, and the removed one no longer collides
    assert set(after.object_index.tolist()) - {-1} == set(visible) - {target}
    assert np.all(world.model.geom_contype[world.geom_object_index == target] == 0)
    # the rest of the pile settles again without the removed object
    elapsed, rested = world.settle(2.0)
    assert rested and elapsed <= 2.0
    with pytest.raises(SimulationError):
        world.remove_object(7)
    with pytest.raises(SimulationError):
        world.step(-1)
