"""Tests of the object library (gpr_ros.core.dataset.objects, paper Sec. IV-A)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from gpr_ros.core.dataset.errors import DatasetError, MeshError, ObjectSetError
from gpr_ros.core.dataset.objects import (
    ObjectConfig,
    ObjectLibrary,
    ObjectSource,
    ObjectSplit,
    clean_mesh,
    convex_parts,
    load_mesh_file,
    make_split,
    prepare_object,
    random_objects,
    resolve_object_set,
    ycb_objects,
)
from gpr_ros.core.errors import ConfigError, GprError

MM = ObjectConfig(user_units="mm")


def _box(extents: tuple[float, float, float], centre: tuple[float, float, float] = (0, 0, 0)):
    box = trimesh.creation.box(extents=extents)
    box.apply_translation(centre)
    return box


def _l_prism(arm: float = 0.08, thick: float = 0.02, height: float = 0.02) -> trimesh.Trimesh:
    """Watertight L-shaped prism: the union of an arm x thick and a thick x arm box."""
    poly = np.array(
        [[0, 0], [arm, 0], [arm, thick], [thick, thick], [thick, arm], [0, arm]], dtype=float
    )
    n = len(poly)
    vertices = np.concatenate([np.c_[poly, np.zeros(n)], np.c_[poly, np.full(n, height)]])
    reflex = 3  # (thick, thick) sees every other corner: fan triangulation from it
    cap = [[reflex, (reflex + i) % n, (reflex + i + 1) % n] for i in range(1, n - 1)]
    faces = [[a, c, b] for a, b, c in cap] + [[a + n, b + n, c + n] for a, b, c in cap]
    for i in range(n):
        j = (i + 1) % n
        faces += [[i, j, j + n], [i, j + n, i + n]]
    mesh = trimesh.Trimesh(vertices, np.array(faces), process=False)
    trimesh.repair.fix_normals(mesh)
    assert mesh.is_watertight and mesh.volume > 0
    return mesh


def _write(mesh: trimesh.Trimesh, path: Path, scale: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    scaled = mesh.copy()
    scaled.apply_scale(scale)
    scaled.export(str(path))
    return path


def _union_volume(parts, bounds, n: int = 40_000, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    pts = rng.uniform(bounds[0], bounds[1], size=(n, 3))
    inside = np.zeros(n, dtype=bool)
    for part in parts:
        normals, origins = part.face_normals, part.triangles[:, 0]
        signed = np.einsum("fk,pfk->pf", normals, pts[:, None, :] - origins[None])
        inside |= np.all(signed <= 1e-12, axis=1)
    return float(inside.mean() * np.prod(bounds[1] - bounds[0]))


# ------------------------------------------------------------------ config and errors


def test_error_hierarchy() -> None:
    assert issubclass(MeshError, DatasetError) and issubclass(MeshError, ValueError)
    assert issubclass(ObjectSetError, DatasetError) and issubclass(DatasetError, GprError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_parts": 0},
        {"max_parts": 2.5},
        {"user_units": "inch"},
        {"density": -1.0},
        {"min_extent": 0.05},  # above the 40 mm graspable limit
        {"graspable_fraction": 1.5},
        {"min_mass": 2.0},
        {"max_extent": float("nan")},
    ],
)
def test_config_rejects_invalid_values(kwargs) -> None:
    with pytest.raises(ConfigError):
        ObjectConfig(**kwargs)


def test_config_defaults_and_digest() -> None:
    cfg = ObjectConfig()
    assert cfg.min_extent_limit == pytest.approx(0.04)
    assert ObjectConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.digest() == ObjectConfig().digest() != ObjectConfig(density=600.0).digest()
    with pytest.raises(ConfigError, match="unknown"):
        ObjectConfig.from_dict({"densty": 1.0})


# ------------------------------------------------------------------ loading and cleaning


def test_mm_box_loads_in_metres_centred(tmp_path: Path) -> None:
    path = _write(_box((30, 20, 10), centre=(100, 50, 7)), tmp_path / "box.stl")
    mesh = load_mesh_file(path, units="mm")
    np.testing.assert_allclose(mesh.extents, [0.03, 0.02, 0.01], atol=1e-9)
    model = prepare_object(ObjectSource("user/box", "user", str(path), 0.001), MM)
    np.testing.assert_allclose(model.mesh.extents, [0.03, 0.02, 0.01], atol=1e-9)
    np.testing.assert_allclose(model.mesh.center_mass, 0.0, atol=1e-12)
    assert model.watertight and model.scale == pytest.approx(0.001)
    # 6 cm^3 x 500 kg/m^3 = 3 g, clamped up to the 20 g minimum
    assert model.mass == pytest.approx(0.02)
    assert json.loads(json.dumps(model.to_dict()))["n_parts"] == 1


def test_thick_box_is_scaled_to_graspable_size(tmp_path: Path) -> None:
    _write(_box((100, 120, 150)), tmp_path / "thick.obj")
    library = ObjectLibrary.from_folder(tmp_path, MM)
    library.prepare()
    model = library.get("user/thick")
    np.testing.assert_allclose(np.sort(model.mesh.extents), [0.04, 0.048, 0.06], rtol=1e-6)
    assert model.scale == pytest.approx(0.001 * 0.4)
    assert model.mass == pytest.approx(0.04 * 0.048 * 0.06 * 500.0)


def test_long_object_fits_max_extent(tmp_path: Path) -> None:
    path = _write(_box((0.03, 0.036, 0.3)), tmp_path / "long.stl")
    model = prepare_object(ObjectSource("user/long", "user", str(path)))
    np.testing.assert_allclose(np.sort(model.mesh.extents), [0.02, 0.024, 0.2], rtol=1e-6)


def test_unusable_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    _write(_box((5, 5, 5)), tmp_path / "tiny.stl")
    _write(_box((30, 20, 10)), tmp_path / "good.ply")
    (tmp_path / "empty.stl").write_bytes(b"")
    (tmp_path / "garbage.obj").write_text("this is not a mesh\n")
    (tmp_path / "notes.txt").write_text("ignored: not a mesh suffix")
    library = ObjectLibrary.from_folder(tmp_path, MM)
    library.prepare()
    assert library.names == ["user/good"] and len(library) == 1
    reasons = dict(library.skipped)
    assert set(reasons) == {"user/tiny", "user/empty", "user/garbage"}
    assert "too small" in reasons["user/tiny"] and "5.00 mm" in reasons["user/tiny"]
    assert "empty" in reasons["user/empty"]
    assert "no triangles" in reasons["user/garbage"] or "unreadable" in reasons["user/garbage"]
    with pytest.raises(KeyError, match="too small"):
        library.get("user/tiny")


def test_object_scaled_below_min_extent_by_max_extent_is_skipped(tmp_path: Path) -> None:
    # 12 mm thick but 400 mm long: fitting 200 mm leaves 6 mm < 10 mm
    path = _write(_box((0.012, 0.03, 0.4)), tmp_path / "rod.stl")
    with pytest.raises(MeshError, match="after fitting max_extent"):
        prepare_object(ObjectSource("user/rod", "user", str(path)))


def test_missing_and_wrong_type_files(tmp_path: Path) -> None:
    with pytest.raises(MeshError, match="no such file"):
        load_mesh_file(tmp_path / "nope.stl")
    with pytest.raises(MeshError, match="unsupported"):
        load_mesh_file(tmp_path / "mesh.dae")
    with pytest.raises(ConfigError):
        load_mesh_file(tmp_path / "nope.stl", units="ft")


def test_box_with_missing_face_is_repaired() -> None:
    box = _box((0.03, 0.02, 0.01))
    open_box = trimesh.Trimesh(box.vertices, box.faces[1:], process=False)
    assert not open_box.is_watertight
    mesh, report = clean_mesh(open_box)
    assert report.holes_filled and report.watertight and mesh.is_watertight
    assert mesh.volume == pytest.approx(6e-6, rel=1e-6)


def test_open_surface_stays_non_watertight(tmp_path: Path) -> None:
    # a tube without caps (loops of up to 64 edges are closed, so use a 96-segment tube)
    tube = trimesh.creation.cylinder(radius=0.015, height=0.06, sections=96)
    side = np.abs(tube.face_normals[:, 2]) < 0.5
    open_tube = trimesh.Trimesh(tube.vertices, tube.faces[side], process=False)
    open_tube.remove_unreferenced_vertices()
    path = _write(open_tube, tmp_path / "tube.ply")
    model = prepare_object(ObjectSource("user/tube", "user", str(path)))
    assert not model.watertight
    centroid = (model.mesh.triangles_center * model.mesh.area_faces[:, None]).sum(0)
    np.testing.assert_allclose(centroid / model.mesh.area, 0.0, atol=1e-9)
    assert model.collision_parts and all(p.is_convex for p in model.collision_parts)
    assert 0.02 <= model.mass <= 1.0


@pytest.mark.parametrize(
    ("vertices", "faces", "match"),
    [
        (np.zeros((0, 3)), np.zeros((0, 3), dtype=int), "empty"),
        ([[0, 0, 0], [1, 0, 0], [np.nan, 1, 0]], [[0, 1, 2]], "non-finite"),
        ([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]], "degenerate"),
        ([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], [[0, 1, 2], [1, 3, 2]], "flat"),
    ],
)
def test_clean_mesh_rejects_unusable_meshes(vertices, faces, match) -> None:
    mesh = trimesh.Trimesh(np.asarray(vertices, float), np.asarray(faces), process=False)
    with pytest.raises(MeshError, match=match):
        clean_mesh(mesh)


def test_clean_mesh_fixes_inverted_winding() -> None:
    box = _box((0.03, 0.02, 0.01))
    box.invert()
    mesh, report = clean_mesh(box)
    assert report.watertight and mesh.volume == pytest.approx(6e-6)


# ------------------------------------------------------------------ collision parts


def test_convex_box_is_one_part() -> None:
    parts = convex_parts(_box((0.03, 0.02, 0.01)))
    assert len(parts) == 1
    assert parts[0].volume == pytest.approx(6e-6)


def test_l_shape_is_decomposed() -> None:
    mesh = _l_prism()
    parts = convex_parts(mesh, max_parts=16, rng_seed=0)
    assert 2 <= len(parts) <= 16
    for part in parts:
        assert part.is_watertight and part.is_convex
        assert 4 <= len(part.vertices) <= 200
        assert np.linalg.matrix_rank(part.vertices - part.vertices[0]) == 3
    bounds = np.array([mesh.bounds[0] - 0.002, mesh.bounds[1] + 0.002])
    union = _union_volume(parts, bounds)
    assert union == pytest.approx(mesh.volume, rel=0.25)
    assert convex_parts(mesh, 16, 0)[0].vertices.tolist() == parts[0].vertices.tolist()
    assert len(convex_parts(mesh, max_parts=1)) == 1


def test_hull_vertex_cap() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.02)
    assert len(sphere.vertices) > 200
    (part,) = convex_parts(sphere, max_hull_vertices=64)
    assert len(part.vertices) <= 64 and part.is_convex
    assert part.volume > 0.9 * sphere.volume


def test_centre_of_mass_is_origin(tmp_path: Path) -> None:
    path = _write(_l_prism(), tmp_path / "ell.stl")
    model = prepare_object(ObjectSource("user/ell", "user", str(path)))
    np.testing.assert_allclose(model.mesh.center_mass, 0.0, atol=1e-12)
    assert len(model.collision_parts) >= 2
    assert not np.allclose(_l_prism().center_mass, 0.0)


# ------------------------------------------------------------------ packaged sources


def test_packaged_sources() -> None:
    ycb, rand = ycb_objects(), random_objects()
    assert (len(ycb), len(rand)) == (78, 1000)
    names = [s.name for s in ycb + rand]
    assert len(set(names)) == len(names)
    assert {s.source for s in ycb} == {"ycb"} and {s.source for s in rand} == {"random"}
    assert all(Path(s.path).is_file() for s in ycb + rand)
    assert rand[0].name == "random/000" and rand[0].scale == pytest.approx(0.015)


@pytest.mark.parametrize("name", ["ycb/011_banana", "random/000"])
def test_packaged_objects_load_with_sane_extents(name: str) -> None:
    source = next(s for s in ycb_objects() + random_objects() if s.name == name)
    model = prepare_object(source)
    ext = np.sort(model.extents)
    assert ext[2] <= 0.20 + 1e-6 and 0.01 <= ext[0] <= 0.04 + 1e-6
    assert 1 <= len(model.collision_parts) <= 16
    assert model.watertight
    np.testing.assert_allclose(model.mesh.center_mass, 0.0, atol=1e-9)


# ------------------------------------------------------------------ split


def _candidates(n_ycb: int = 78, n_random: int = 100) -> list[ObjectSource]:
    ycb = [ObjectSource(f"ycb/{i:03d}", "ycb", f"/x/{i}.stl") for i in range(n_ycb)]
    rand = [ObjectSource(f"random/{i:03d}", "random", f"/r/{i}.obj") for i in range(n_random)]
    return ycb + rand


def test_make_split_is_deterministic_stratified_and_disjoint() -> None:
    cands = _candidates()
    split = make_split(cands, seed=3)
    assert split == make_split(list(reversed(cands)), seed=3)
    assert (len(split.similar), len(split.novel)) == (120, 30)
    assert not set(split.similar) & set(split.novel)
    for side, n_ycb in ((split.similar, 60), (split.novel, 15)):
        assert sum(n.startswith("ycb/") for n in side) == n_ycb
        assert any(n.startswith("random/") for n in side)
    assert make_split(cands, seed=4) != split
    assert ObjectSplit.from_dict(json.loads(json.dumps(split.to_dict()))) == split


def test_make_split_with_few_ycb_fills_from_the_rest() -> None:
    split = make_split(_candidates(n_ycb=40, n_random=200), seed=0)
    names = split.similar + split.novel
    assert len(names) == 150 and sum(n.startswith("ycb/") for n in names) == 40
    assert sum(n.startswith("ycb/") for n in split.novel) == 8


def test_make_split_errors() -> None:
    with pytest.raises(ObjectSetError, match="need 150"):
        make_split(_candidates(50, 50))
    with pytest.raises(ObjectSetError):
        make_split(_candidates(), n_novel=0)
    with pytest.raises(ObjectSetError, match="overlap"):
        ObjectSplit(similar=("a", "b"), novel=("b",))


# ------------------------------------------------------------------ cache


def test_cache_reuses_and_invalidates(tmp_path: Path) -> None:
    folder = tmp_path / "meshes"
    _write(_l_prism(), folder / "ell.stl")
    _write(_box((30, 20, 10)), folder / "box.obj", scale=0.001)
    _write(_box((0.004, 0.004, 0.004)), folder / "tiny.stl")
    cache = tmp_path / "cache"
    first = ObjectLibrary.from_folder(folder)
    first.prepare(cache_dir=cache)
    assert sorted(first.processed) == ["user/box", "user/ell", "user/tiny"]
    meta = cache / "objects" / "user__ell" / "meta.json"
    assert (meta.parent / "mesh.obj").is_file() and (meta.parent / "part_00.obj").is_file()
    stamp = meta.stat().st_mtime_ns
    assert not list(cache.rglob("*.tmp"))

    calls: list[tuple[int, int, str]] = []
    second = ObjectLibrary.from_folder(folder)
    second.prepare(cache_dir=cache, progress=lambda *a: calls.append(a))
    assert second.processed == []
    assert meta.stat().st_mtime_ns == stamp
    assert second.names == first.names == ["user/box", "user/ell"]
    assert [n for n, _ in second.skipped] == ["user/tiny"]
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]
    a, b = first.get("user/ell"), second.get("user/ell")
    np.testing.assert_allclose(a.mesh.vertices, b.mesh.vertices, atol=1e-8)
    assert len(a.collision_parts) == len(b.collision_parts)
    assert b.mass == pytest.approx(a.mass) and b.watertight

    third = ObjectLibrary.from_folder(folder, ObjectConfig(density=800.0))
    third.prepare(cache_dir=cache)
    assert sorted(third.processed) == ["user/box", "user/ell", "user/tiny"]
    assert third.get("user/ell").mass == pytest.approx(a.mass * 1.6)

    _write(_box((40, 20, 10)), folder / "box.obj", scale=0.001)  # changed file
    fourth = ObjectLibrary.from_folder(folder, ObjectConfig(density=800.0))
    fourth.prepare(cache_dir=cache)
    assert fourth.processed == ["user/box"]


# ------------------------------------------------------------------ object sets


def test_resolve_object_set_errors(tmp_path: Path) -> None:
    with pytest.raises(ObjectSetError, match="similar"):
        resolve_object_set("training")
    with pytest.raises(ObjectSetError, match="expected one of"):
        resolve_object_set(str(tmp_path / "missing"))
    with pytest.raises(ObjectSetError, match="no .*mesh files"):
        resolve_object_set(str(tmp_path))
    (tmp_path / "bad.stl").write_bytes(b"")
    with pytest.raises(ObjectSetError, match="no usable mesh"):
        resolve_object_set(str(tmp_path))


def test_resolve_object_set_folder(tmp_path: Path) -> None:
    _write(_box((30, 20, 10)), tmp_path / "a.stl")
    _write(_l_prism(), tmp_path / "sub" / "b.stl", scale=1000.0)
    models = resolve_object_set(str(tmp_path), config=MM)
    assert [m.name for m in models] == ["user/a", "user/sub/b"]
    assert all(m.source == "user" for m in models)


def test_parts_load_in_mujoco() -> None:
    mujoco = pytest.importorskip("mujoco")
    parts = convex_parts(_l_prism(), max_parts=16)
    assets = "".join(
        f'<mesh name="p{i}" vertex="{" ".join(f"{x:.9g}" for x in p.vertices.ravel())}"/>'
        for i, p in enumerate(parts)
    )
    geoms = "".join(f'<geom type="mesh" mesh="p{i}"/>' for i in range(len(parts)))
    xml = f"<mujoco><asset>{assets}</asset><worldbody><body><freejoint/>{geoms}</body>"
    model = mujoco.MjModel.from_xml_string(xml + "</worldbody></mujoco>")
    assert model.nmesh == len(parts) and model.body_mass[1] > 0.0


def test_fresh_and_cached_models_are_bit_identical(tmp_path: Path) -> None:
    # Annotation caches key on the mesh bytes: a model must look the same whether it was just
    # processed or read back from the object cache (in another process).
    folder = tmp_path / 'meshes'
    folder.mkdir()
    trimesh.creation.capsule(0.05, 0.0123).export(folder / 'capsule.stl')
    first = ObjectLibrary.from_folder(folder, ObjectConfig())
    fresh = first.prepare(cache_dir=tmp_path / 'cache')[0]
    second = ObjectLibrary.from_folder(folder, ObjectConfig())
    cached = second.prepare(cache_dir=tmp_path / 'cache')[0]
    assert second.processed == []
    assert fresh.mesh.vertices.tobytes() == cached.mesh.vertices.tobytes()
    assert fresh.mesh.faces.tobytes() == cached.mesh.faces.tobytes()
