"""End-to-end dataset generation on tiny real scenes: determinism, resume, Ray, CLI."""

from __future__ import annotations

from collections.abc import Iterator
import json
import os
from pathlib import Path
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import trimesh

from gpr_ros.core.dataset.annotation import FORMAT_VERSION, AnnotationConfig
from gpr_ros.core.dataset.errors import DatasetError
from gpr_ros.core.dataset.generate import GenerationConfig, generate
from gpr_ros.core.dataset.labels import POINT_POSITIVE
from gpr_ros.core.dataset.scene_format import SCENE_KEYS, scene_grasps
from gpr_ros.core.dataset.storage import DatasetReader, shard_name
from gpr_ros.core.grasp import GripperModel
from gpr_ros.core.sim.camera import CameraConfig, NoiseConfig
from gpr_ros.core.sim.world import SceneConfig


@pytest.fixture(scope='module')
def mesh_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp('meshes')
    trimesh.creation.box((0.03, 0.06, 0.08)).export(folder / 'box.stl')
    trimesh.creation.cylinder(0.018, 0.07).export(folder / 'can.stl')
    trimesh.creation.box((0.035, 0.035, 0.035)).export(folder / 'cube.obj')
    trimesh.creation.box((0.004, 0.004, 0.004)).export(folder / 'speck.stl')  # unusable
    return folder


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp('cache')


def _config(mesh_dir: Path, **kw: object) -> GenerationConfig:
    base = dict(num_scenes=4, scenes_per_shard=2, num_points=2048, seed=3,
                object_set=str(mesh_dir), scene=SceneConfig(num_objects=(2, 3)),
                camera=CameraConfig(), noise=NoiseConfig(enabled=True),
                annotation=AnnotationConfig(num_points=384, collision_points=1024,
                                            num_approaches=6))
    base.update(kw)
    return GenerationConfig(**base)  # type: ignore[arg-type]


def _shard_bytes(folder: Path) -> list[bytes]:
    return [(folder / shard_name(i)).read_bytes() for i in range(2)]


@pytest.fixture(scope='module')
def reference(mesh_dir: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp('reference')
    manifest = generate(_config(mesh_dir), out, workers=1, cache_dir=cache_dir)
    assert manifest.complete
    return out


def test_scenes_have_the_documented_arrays(reference: Path) -> None:
    reader = DatasetReader(reference)
    assert len(reader) == 4
    scene = reader.scene(2)
    assert sorted(scene) == sorted(SCENE_KEYS)
    n = len(scene['points'])
    assert n == 2048 and scene['points'].dtype == np.float32
    for key in ('point_object', 'point_class', 'point_grasp', 'point_score', 'mask'):
        assert len(scene[key]) == n
    assert int(scene['scene_index'][0]) == 2
    # Points lie in the bin seen from ~1.3 m.
    assert 1.1 < float(np.median(scene['points'][:, 2])) < 1.35
    grasps = scene_grasps(scene)
    assert len(grasps) > 0
    assert (grasps.width <= GripperModel().max_width).all()
    # Every labelled positive point references a grasp of its own object with its score.
    pos = scene['point_class'] == POINT_POSITIVE
    assert pos.any()
    idx = scene['point_grasp'][pos]
    assert (idx >= 0).all()
    np.testing.assert_array_equal(scene['grasp_object'][idx], scene['point_object'][pos])
    np.testing.assert_allclose(scene['point_score'][pos], scene['grasp_score'][idx])
    assert (scene['mask'] == (scene['point_score'] > 0)).all()
    # The manifest records provenance.
    info = reader.manifest.info
    assert len(info['objects']) == 3 and 'mujoco' in info['package_versions']
    assert info['annotation_format'] == FORMAT_VERSION
    [(name, reason)] = info['skipped_objects']
    assert name == 'user/speck' and 'too small' in reason


def test_same_seed_same_bytes_with_two_workers(reference: Path, mesh_dir: Path, cache_dir: Path,
                                               tmp_path: Path) -> None:
    generate(_config(mesh_dir), tmp_path, workers=2, cache_dir=cache_dir)
    assert _shard_bytes(tmp_path) == _shard_bytes(reference)


def test_other_seed_other_scenes(reference: Path, mesh_dir: Path, cache_dir: Path,
                                 tmp_path: Path) -> None:
    generate(_config(mesh_dir, seed=4, num_scenes=2), tmp_path, cache_dir=cache_dir)
    other = DatasetReader(tmp_path).scene(0)['points']
    assert not np.array_equal(other, DatasetReader(reference).scene(0)['points'])


class _KilledError(Exception):
    pass


def test_killed_run_resumes_to_the_same_result(reference: Path, mesh_dir: Path,
                                               cache_dir: Path, tmp_path: Path) -> None:
    def kill_after_first_shard(stage: str, done: int, total: int) -> None:
        if stage == 'scenes' and done >= 2:
            raise _KilledError

    with pytest.raises(_KilledError):
        generate(_config(mesh_dir), tmp_path, cache_dir=cache_dir,
                 progress=kill_after_first_shard)
    assert (tmp_path / shard_name(0)).exists() and not (tmp_path / shard_name(1)).exists()
    assert len(DatasetReader(tmp_path)) == 2  # what was written is readable
    # A torn write of the second shard (as a kill during the write could leave) is redone.
    (tmp_path / shard_name(1)).write_bytes(b'PK\x03\x04 torn')
    manifest = generate(_config(mesh_dir), tmp_path, cache_dir=cache_dir)
    assert manifest.complete
    assert _shard_bytes(tmp_path) == _shard_bytes(reference)


def test_scenes_of_another_annotation_format_are_not_resumed(reference: Path, mesh_dir: Path,
                                                             cache_dir: Path,
                                                             tmp_path: Path) -> None:
    shutil.copytree(reference, tmp_path, dirs_exist_ok=True)
    path = tmp_path / 'manifest.json'
    manifest = json.loads(path.read_text())
    del manifest['info']['annotation_format']  # as written before the format was recorded
    path.write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match='annotation format 1'):
        generate(_config(mesh_dir), tmp_path, cache_dir=cache_dir)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ray_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    ray_bin = Path(sys.executable).parent / 'ray'
    if not ray_bin.exists():
        pytest.skip('ray is not installed (make setup installs it)')
    # Keep every Ray process on the loopback interface.
    monkeypatch.setenv('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER', '0')
    monkeypatch.setenv('RAY_AUTH_MODE', 'disabled')
    monkeypatch.setenv('RAY_USAGE_STATS_ENABLED', '0')
    port = _free_port()
    subprocess.run([str(ray_bin), 'start', '--head', '--node-ip-address=127.0.0.1',
                    f'--port={port}', '--num-cpus=2', '--include-dashboard=false',
                    '--disable-usage-stats'], check=True, capture_output=True, timeout=120,
                   env=dict(os.environ))
    try:
        yield f'127.0.0.1:{port}'
    finally:
        subprocess.run([str(ray_bin), 'stop', '--force'], capture_output=True, timeout=120)


def test_ray_cluster_gives_the_same_bytes(reference: Path, mesh_dir: Path, cache_dir: Path,
                                          tmp_path: Path, ray_cluster: str) -> None:
    generate(_config(mesh_dir), tmp_path, cache_dir=cache_dir, ray_address=ray_cluster)
    assert _shard_bytes(tmp_path) == _shard_bytes(reference)


def test_cli_stats_and_show(reference: Path, tmp_path: Path) -> None:
    exe = [sys.executable, '-m', 'gpr_ros.cli', 'dataset']
    out = subprocess.run([*exe, 'stats', str(reference), '--png', str(tmp_path / 's.png')],
                         capture_output=True, text=True, check=True).stdout
    assert 'positive' in out and 'grasp width' in out
    assert (tmp_path / 's.png').stat().st_size > 10_000
    out = subprocess.run([*exe, 'show', str(reference), '--scene', '1', '--png',
                          str(tmp_path / 'scene.png')], capture_output=True, text=True,
                         check=True).stdout
    assert 'grasps drawn' in out and (tmp_path / 'scene.png').stat().st_size > 20_000
    bad = subprocess.run([*exe, 'show', str(tmp_path), '--png', str(tmp_path / 'x.png')],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and 'not a dataset folder' in bad.stderr
    shutil.rmtree(tmp_path)


def test_lower_grasp_nms_gives_denser_ground_truth_on_the_same_scenes(
        reference: Path, mesh_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    base = _config(mesh_dir).annotation
    dense = _config(mesh_dir, annotation=AnnotationConfig(
        num_points=base.num_points, collision_points=base.collision_points,
        num_approaches=base.num_approaches, nms_threshold=base.nms_threshold / 2))
    generate(dense, tmp_path, cache_dir=cache_dir)
    sparse_reader, dense_reader = DatasetReader(reference), DatasetReader(tmp_path)
    assert dense_reader.manifest.config['annotation']['nms_threshold'] == base.nms_threshold / 2
    more = 0
    for i in range(len(sparse_reader)):
        sparse, denser = sparse_reader.scene(i), dense_reader.scene(i)
        np.testing.assert_array_equal(sparse['points'], denser['points'])  # same scene
        n_sparse, n_dense = len(sparse['grasp_width']), len(denser['grasp_width'])
        assert n_dense >= n_sparse
        more += n_dense - n_sparse
    assert more > 0


def test_cli_rejects_a_negative_grasp_nms(tmp_path: Path) -> None:
    bad = subprocess.run([sys.executable, '-m', 'gpr_ros.cli', 'dataset', 'generate', '--out',
                          str(tmp_path / 'd'), '--scenes', '1', '--grasp-nms', '-0.01'],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert 'nms_threshold' in bad.stderr and '>= 0' in bad.stderr
    assert not (tmp_path / 'd').exists()
