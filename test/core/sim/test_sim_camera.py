"""Tests of the simulated depth camera against real MuJoCo ray casting."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from gpr_ros.core.errors import ConfigError
from gpr_ros.core.sim.camera import (
    CameraConfig,
    NoiseConfig,
    PixelWindow,
    RoiBox,
    apply_noise,
    capture,
    crop_to_roi,
    depth_to_points,
    image_window,
    projector_shadow_mask,
    render_depth,
)
from gpr_ros.core.sim.errors import SimulationError

ROI = RoiBox(lower=(-0.15, -0.15, -0.01), upper=(0.15, 0.15, 0.2))
#: Only the projector shadows: no depth noise, no other dropouts.
SHADOWS_ONLY = NoiseConfig(
    sigma_constant=0.0,
    sigma_quadratic=0.0,
    dropout_probability=0.0,
    grazing_dropout=False,
    edge_dropout_probability=0.0,
)


def make_world(
    boxes: tuple[tuple[tuple[float, float, float], tuple[float, float, float]], ...] = (),
) -> tuple[mujoco.MjModel, mujoco.MjData]:
    """A ground plane at z = 0 plus static boxes given as (centre, half size)."""
    spec = mujoco.MjSpec()
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0.0, 0.0, 0.05])
    for pos, half in boxes:
        spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, pos=list(pos), size=list(half))
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return model, data


@pytest.fixture(scope="module")
def floor() -> tuple[mujoco.MjModel, mujoco.MjData]:
    return make_world()


# ---------------------------------------------------------------------- configuration


def test_default_camera_looks_down_with_ros_optical_axes() -> None:
    camera = CameraConfig()
    pose = camera.pose()
    np.testing.assert_allclose(pose[:3, 3], [0.0, 0.0, 1.3])
    # optical X = world +X, optical Y = world -Y (image down), optical Z = world -Z
    np.testing.assert_allclose(pose[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    assert camera.cx == pytest.approx(515.5)
    assert camera.cy == pytest.approx(385.5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 0},
        {"fx": -1.0},
        {"fy": float("nan")},
        {"min_depth": 2.0, "max_depth": 1.0},
        {"target": (0.0, 0.0, 1.3)},
        {"up": (0.0, 0.0, 1.0)},
        {"position": (0.0, 1.0)},
        {"width": 10.5},
    ],
)
def test_camera_config_rejects_invalid_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        CameraConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dropout_probability": 1.5},
        {"sigma_constant": -0.1},
        {"max_incidence_angle": 2.0},
        {"edge_threshold": 0.0},
        {"enabled": "yes"},
    ],
)
def test_noise_config_rejects_invalid_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        NoiseConfig(**kwargs)  # type: ignore[arg-type]


def test_configs_round_trip_through_dicts() -> None:
    camera = CameraConfig(position=(0.2, 0.1, 1.2), width=640, height=480, fx=600.0)
    assert CameraConfig.from_dict(camera.to_dict()) == camera
    noise = NoiseConfig(dropout_probability=0.05, projector_baseline=-0.1)
    assert NoiseConfig.from_dict(noise.to_dict()) == noise
    with pytest.raises(ConfigError, match="unknown"):
        CameraConfig.from_dict({"focal": 1.0})


def test_noise_sigma_follows_quadratic_model() -> None:
    noise = NoiseConfig()
    assert float(noise.sigma(1.3)) == pytest.approx(0.0002 + 0.0005 * 1.69)


# ---------------------------------------------------------------------- clean geometry


def test_flat_floor_gives_constant_depth_and_points_on_the_floor(floor) -> None:
    model, data = floor
    camera = CameraConfig()
    image = render_depth(model, data, camera, ROI)
    window = image.window
    # the ROI (0.3 m at floor level, 0.2 m tall) maps to roughly 250-300 px squares
    assert 250 <= window.width <= 310 and 250 <= window.height <= 310
    assert np.all(np.isfinite(image.depth))
    np.testing.assert_allclose(image.depth, 1.3, atol=1e-9)
    np.testing.assert_allclose(image.points_world[..., 2], 0.0, atol=1e-6)
    assert np.all(image.geom_id == 0)

    obs = capture(model, data, camera, ROI)
    assert obs.points.dtype == np.float32 and obs.points.shape[1] == 3
    np.testing.assert_allclose(obs.points[:, 2], 1.3, atol=1e-6)
    np.testing.assert_allclose(obs.points_world()[:, 2], 0.0, atol=1e-6)
    assert np.all(ROI.contains(obs.points_world()))
    assert np.all(obs.object_index == -1)
    # about (0.3 m / 1.18 mm)^2 floor points
    assert 0.9 * 254**2 < len(obs) < 1.1 * 254**2
    assert len(np.unique(obs.pixel_index)) == len(obs)


def test_box_top_is_at_the_right_depth() -> None:
    height = 0.12
    model, data = make_world((((0.0, 0.0, height / 2), (0.04, 0.04, height / 2)),))
    camera = CameraConfig()
    image = render_depth(model, data, camera, ROI)
    centre = image.depth[image.window.height // 2, image.window.width // 2]
    assert centre == pytest.approx(1.3 - height, abs=1e-9)
    on_box = image.geom_id == 1
    np.testing.assert_allclose(image.depth[on_box], 1.3 - height, atol=1e-9)
    # a 8 cm square at 1.18 m covers about (0.08 * 1100 / 1.18)^2 pixels
    expected = (0.08 * 1100 / 1.18) ** 2
    assert 0.9 * expected < on_box.sum() < 1.1 * expected


def test_pinhole_projection_lands_on_the_rendered_pixel(floor) -> None:
    model, data = floor
    camera = CameraConfig()
    point = np.array([0.05, -0.03, 0.0])
    uv, depth = camera.project(point)
    assert depth == pytest.approx(1.3)
    cx, cy = camera.principal_point
    assert uv[0] == pytest.approx(cx + 1100.0 * 0.05 / 1.3)
    assert uv[1] == pytest.approx(cy + 1100.0 * 0.03 / 1.3)  # world -Y is image down

    image = render_depth(model, data, camera, ROI)
    u, v = int(round(uv[0])), int(round(uv[1]))
    hit = image.points_world[v - image.window.v0, u - image.window.u0]
    pixel_size = 1.3 / 1100.0
    assert np.all(np.abs(hit - point) <= pixel_size)


def test_tilted_camera_rays_and_projection_agree() -> None:
    model, data = make_world((((0.02, -0.01, 0.05), (0.05, 0.03, 0.05)),))
    camera = CameraConfig(position=(0.4, -0.3, 1.1), target=(0.0, 0.0, 0.0), width=320, height=240)
    image = render_depth(model, data, camera)
    assert image.window == PixelWindow(0, 0, 320, 240)
    valid = np.isfinite(image.depth)
    assert valid.mean() > 0.99
    uv, depth = camera.project(image.points_world[valid])
    uu, vv = image.window.pixel_grid()
    np.testing.assert_allclose(uv[:, 0], uu[valid], atol=1e-6)
    np.testing.assert_allclose(uv[:, 1], vv[valid], atol=1e-6)
    np.testing.assert_allclose(depth, image.depth[valid], atol=1e-9)
    # back-projection reproduces the world points through T_world_camera
    cam_points = depth_to_points(image.depth, camera)
    pose = camera.pose()
    world = cam_points @ pose[:3, :3].T + pose[:3, 3]
    np.testing.assert_allclose(world[valid], image.points_world[valid], atol=1e-9)
    assert np.all(image.geom_id[valid] >= 0) and np.all(image.geom_id[~valid] == -1)


def test_image_window_contains_the_projected_roi_corners() -> None:
    camera = CameraConfig()
    window = image_window(camera, ROI)
    uv, _ = camera.project(ROI.corners())
    assert window.u0 <= uv[:, 0].min() and uv[:, 0].max() <= window.u0 + window.width - 1
    assert window.v0 <= uv[:, 1].min() and uv[:, 1].max() <= window.v0 + window.height - 1
    behind = RoiBox(lower=(-1.0, -1.0, 1.2), upper=(1.0, 1.0, 1.5))
    assert image_window(camera, behind).size == camera.width * camera.height
    outside = RoiBox(lower=(5.0, 5.0, 0.0), upper=(6.0, 6.0, 0.1))
    assert image_window(camera, outside).size == 0


def test_out_of_view_roi_gives_an_empty_observation(floor) -> None:
    model, data = floor
    obs = capture(model, data, CameraConfig(), RoiBox((5.0, 5.0, 0.0), (6.0, 6.0, 0.1)))
    assert len(obs) == 0 and obs.points.shape == (0, 3)


def test_depth_outside_the_working_range_is_invalid(floor) -> None:
    model, data = floor
    image = render_depth(model, data, CameraConfig(max_depth=1.2), ROI)
    assert np.all(np.isnan(image.depth)) and np.all(image.geom_id == -1)


def test_crop_to_roi_keeps_inside_points_only() -> None:
    points = np.array([[0.0, 0.0, 0.0], [0.2, 0.0, 0.0], [np.nan, 0.0, 0.0], [0.1, -0.1, 0.15]])
    np.testing.assert_array_equal(crop_to_roi(points, ROI), points[[0, 3]])


def test_malformed_geomgroup_is_rejected(floor) -> None:
    model, data = floor
    with pytest.raises(SimulationError):
        render_depth(model, data, CameraConfig(), ROI, geomgroup=[1, 1])


def test_geomgroup_hides_geoms() -> None:
    spec = mujoco.MjSpec()
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0.0, 0.0, 0.05])
    spec.worldbody.add_geom(
        type=mujoco.mjtGeom.mjGEOM_BOX, pos=[0, 0, 0.1], size=[0.05, 0.05, 0.1], group=2
    )
    model = spec.compile()
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    seen = render_depth(model, data, CameraConfig(), ROI)
    hidden = render_depth(model, data, CameraConfig(), ROI, geomgroup=[1, 1, 0, 1, 1, 1])
    assert np.any(seen.geom_id == 1) and not np.any(hidden.geom_id == 1)


# ---------------------------------------------------------------------- noise


def test_noise_off_is_exact_and_deterministic(floor) -> None:
    model, data = floor
    camera = CameraConfig()
    clean = capture(model, data, camera, ROI)
    off = capture(model, data, camera, ROI, NoiseConfig(enabled=False), np.random.default_rng(1))
    np.testing.assert_array_equal(clean.points, off.points)
    np.testing.assert_array_equal(clean.pixel_index, off.pixel_index)


def test_noise_matches_sigma_and_drops_pixels(floor) -> None:
    model, data = floor
    camera = CameraConfig()
    noise = NoiseConfig()
    clean = capture(model, data, camera, ROI)
    noisy = capture(model, data, camera, ROI, noise, np.random.default_rng(7))
    std = float(np.std(noisy.points[:, 2].astype(np.float64)))
    assert std == pytest.approx(float(noise.sigma(1.3)), rel=0.2)
    dropped = 1.0 - len(noisy) / len(clean)
    assert 0.005 < dropped < 0.02  # the 1 % random dropouts (a flat floor has no others)
    assert np.all(np.isin(noisy.pixel_index, clean.pixel_index))


def test_same_seed_gives_the_same_noisy_cloud() -> None:
    model, data = make_world((((0.0, 0.0, 0.05), (0.03, 0.05, 0.05)),))
    camera, noise = CameraConfig(), NoiseConfig()
    a = capture(model, data, camera, ROI, noise, np.random.default_rng(3))
    b = capture(model, data, camera, ROI, noise, np.random.default_rng(3))
    c = capture(model, data, camera, ROI, noise, np.random.default_rng(4))
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.pixel_index, b.pixel_index)
    assert a.points.shape != c.points.shape or not np.array_equal(a.points, c.points)


def test_noise_needs_an_rng(floor) -> None:
    model, data = floor
    with pytest.raises(SimulationError, match="rng"):
        capture(model, data, CameraConfig(), ROI, NoiseConfig())


def test_projector_shadow_falls_on_the_side_away_from_the_projector() -> None:
    # a 6 cm wide, 25 cm tall box; projector 0.2 m along optical +X = world +X
    model, data = make_world((((0.0, 0.0, 0.125), (0.03, 0.03, 0.125)),))
    camera = CameraConfig()
    clean = capture(model, data, camera, ROI)
    noisy = capture(model, data, camera, ROI, SHADOWS_ONLY, np.random.default_rng(0))
    missing = ~np.isin(clean.pixel_index, noisy.pixel_index)
    lost = clean.points_world()[missing]
    assert len(lost) > 500
    # the shadow lies on the floor on the -X side: x from -0.03 to about
    # 0.2 - 0.23 * 1.3 / 1.05 = -0.085 m, within the box's y extent
    assert np.all(lost[:, 0] < -0.029) and np.all(lost[:, 0] > -0.09)
    assert np.all(np.abs(lost[:, 2]) < 1e-6) and np.all(np.abs(lost[:, 1]) < 0.04)
    # nothing is lost on the projector's side, and the kept points are exact
    kept = noisy.points_world()
    assert np.sum((kept[:, 0] > 0.03) & (kept[:, 0] < 0.09) & (np.abs(kept[:, 1]) < 0.03)) > 0
    np.testing.assert_array_equal(noisy.points, clean.points[~missing])

    # a projector on the other side moves the shadow to +X
    mirrored = NoiseConfig.from_dict({**SHADOWS_ONLY.to_dict(), "projector_baseline": -0.2})
    image = render_depth(model, data, camera, ROI)
    shadow = projector_shadow_mask(model, data, image, mirrored.projector_baseline)
    assert shadow.sum() > 500
    assert np.all(image.points_world[shadow][:, 0] > 0.029)


def test_grazing_and_edge_dropouts() -> None:
    # a box under a tilted camera: its side faces are seen at grazing angles and its outline
    # is a depth discontinuity
    model, data = make_world((((0.0, 0.0, 0.1), (0.05, 0.05, 0.1)),))
    camera = CameraConfig(position=(0.35, -0.9, 0.95), width=400, height=300, fx=400, fy=400)
    image = render_depth(model, data, camera)
    rng = np.random.default_rng(0)
    base = {**SHADOWS_ONLY.to_dict(), "projector_shadows": False}
    grazing = NoiseConfig.from_dict({**base, "grazing_dropout": True})
    edges = NoiseConfig.from_dict({**base, "edge_dropout_probability": 1.0})
    valid = np.isfinite(image.depth)
    g = apply_noise(image.depth, camera, grazing, rng, image.window)
    e = apply_noise(image.depth, camera, edges, rng, image.window)
    g_lost = valid & np.isnan(g)
    e_lost = valid & np.isnan(e)
    assert g_lost.sum() > 50 and e_lost.sum() > 50
    # edge pixels: exactly those touching a depth jump of more than 5 mm
    d = image.depth
    jump = np.zeros_like(valid)
    with np.errstate(invalid="ignore"):
        ju = np.abs(np.diff(d, axis=1)) > edges.edge_threshold
        jv = np.abs(np.diff(d, axis=0)) > edges.edge_threshold
    jump[:, 1:] |= ju
    jump[:, :-1] |= ju
    jump[1:] |= jv
    jump[:-1] |= jv
    np.testing.assert_array_equal(e_lost, jump & valid)
    # grazing: pixels on the box's +X face (seen at about 76 degrees incidence) are lost,
    # elsewhere only pixels next to depth jumps (whose normal estimate spans two surfaces)
    side = valid & (image.geom_id == 1)
    side &= np.abs(np.nan_to_num(image.points_world[..., 0]) - 0.05) < 1e-6
    assert side.sum() > 50
    assert g_lost[side].mean() > 0.8
    assert np.all(side[g_lost] | jump[g_lost])
    floor_far_from_edges = valid & (image.geom_id == 0) & ~jump
    assert not np.any(g_lost[floor_far_from_edges])
    # without depth noise the kept pixels are exact
    np.testing.assert_array_equal(g[~np.isnan(g)], d[~np.isnan(g)])
