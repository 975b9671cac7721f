"""Shard storage: byte-reproducible shards, atomic writes, manifest, resume, corruption."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gpr_ros.core.dataset.storage import (
    MANIFEST,
    DatasetReader,
    DatasetWriter,
    Manifest,
    StorageError,
    pack_scenes,
    shard_name,
    unpack_scenes,
)


def _scene(i: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(i)
    n = 10 + i
    return {'points': rng.normal(size=(n, 3)).astype(np.float32),
            'mask': (rng.uniform(size=n) > 0.5).astype(np.uint8),
            'scene_index': np.array([i], dtype=np.int64)}


def test_pack_is_deterministic_and_round_trips() -> None:
    scenes = [_scene(i) for i in range(3)]
    a, b = pack_scenes(scenes), pack_scenes([_scene(i) for i in range(3)])
    assert a == b
    back = unpack_scenes(a)
    assert len(back) == 3
    for got, want in zip(back, scenes, strict=True):
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
            assert got[key].dtype == want[key].dtype


def test_pack_rejects_inconsistent_scenes() -> None:
    bad = _scene(1)
    bad['points'] = bad['points'].astype(np.float64)
    with pytest.raises(StorageError, match="array 'points' of scene 1"):
        pack_scenes([_scene(0), bad])
    with pytest.raises(StorageError, match='keys'):
        pack_scenes([_scene(0), {'points': np.zeros((1, 3), np.float32)}])


def test_truncated_shard_is_a_clear_error() -> None:
    data = pack_scenes([_scene(0)])
    with pytest.raises(StorageError, match='cannot read shard'):
        unpack_scenes(data[: len(data) // 2])


def _manifest(n: int = 5) -> Manifest:
    return Manifest(config={'seed': 1}, num_scenes=n, scenes_per_shard=2)


def test_writer_resume_and_reader(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path, _manifest())
    assert writer.pending_shards() == [0, 1, 2]
    for index in (0, 2):
        scenes = [_scene(i) for i in writer.manifest.shard_range(index)]
        writer.write_shard(index, pack_scenes(scenes))
    # A new writer (a resumed run) only has shard 1 left to do.
    again = DatasetWriter(tmp_path, _manifest())
    assert again.pending_shards() == [1]
    reader = DatasetReader(tmp_path)
    assert len(reader) == 3 and reader.scene_indices() == [0, 1, 4]
    np.testing.assert_array_equal(reader.scene(4)['points'], _scene(4)['points'])
    with pytest.raises(IndexError, match='not finished'):
        reader.scene(2)
    # No temporary files are left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [MANIFEST, shard_name(0), shard_name(2)])


def test_corrupt_shard_is_regenerated(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path, _manifest(2))
    writer.write_shard(0, pack_scenes([_scene(0), _scene(1)]))
    path = tmp_path / shard_name(0)
    path.write_bytes(path.read_bytes()[:100])
    assert DatasetWriter(tmp_path, _manifest(2)).pending_shards() == [0]


def test_other_config_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    DatasetWriter(tmp_path, _manifest())
    with pytest.raises(StorageError, match='another config') as err:
        DatasetWriter(tmp_path, Manifest(config={'seed': 2}, num_scenes=5, scenes_per_shard=2))
    assert 'config.seed: 1 -> 2' in str(err.value)  # names what differs
    nested = Manifest(config={'seed': 1, 'annotation': {'nms_threshold': 0.02}}, num_scenes=5,
                      scenes_per_shard=2)
    DatasetWriter(tmp_path / 'nested', nested)
    nested.config['annotation']['nms_threshold'] = 0.01
    with pytest.raises(StorageError) as err:
        DatasetWriter(tmp_path / 'nested', nested)
    assert 'config.annotation.nms_threshold: 0.02 -> 0.01' in str(err.value)
    with pytest.raises(StorageError, match='not a dataset folder'):
        DatasetReader(tmp_path / 'nothing')
