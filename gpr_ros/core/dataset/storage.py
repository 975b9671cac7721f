"""Sharded, compressed, byte-reproducible dataset storage with a manifest.

A dataset folder holds ``manifest.json`` and shards ``shard_00000.npz``, ... . A shard is a zip
of ``.npy`` members (readable with :func:`numpy.load`) holding several scenes: every per-scene
array is stored as one concatenation over the shard's scenes plus an offsets array
``<name>__offsets`` (length scenes + 1), so scenes of different sizes share one member.

Writes are atomic (temporary file, fsync, :func:`os.replace`) and deterministic: members are
written in sorted order with a fixed timestamp, so the same arrays give the same bytes. The
manifest lists every finished shard with its SHA-256; a run that is interrupted resumes by
regenerating exactly the shards that are missing or do not match their hash.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
import hashlib
import io
import json
import os
from pathlib import Path
import tempfile
from typing import Any
import zipfile

import numpy as np
from numpy.typing import NDArray

from gpr_ros.core.dataset.errors import DatasetError
from gpr_ros.core.validation import describe_differences

MANIFEST = 'manifest.json'
FORMAT_VERSION = 1
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)

Scene = dict[str, NDArray[Any]]


class StorageError(DatasetError):
    """A dataset folder or shard that cannot be read or written as expected."""


def shard_name(index: int) -> str:
    """File name of shard ``index``."""
    return f'shard_{index:05d}.npz'


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    :param path: destination.
    :param data: contents.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _npy_bytes(array: NDArray[Any]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def pack_scenes(scenes: Sequence[Scene]) -> bytes:
    """Serialise scenes into the bytes of one shard (deterministic).

    :param scenes: scenes with the same keys; each array's first axis may differ per scene,
        the other axes and the dtype must agree.
    :return: the zip bytes.
    :raises StorageError: on inconsistent keys, dtypes or trailing shapes, or object arrays.
    """
    if not scenes:
        raise StorageError('a shard needs at least one scene')
    keys = sorted(scenes[0])
    members: dict[str, NDArray[Any]] = {}
    for key in keys:
        parts = []
        for i, scene in enumerate(scenes):
            if sorted(scene) != keys:
                raise StorageError(f'scene {i} has keys {sorted(scene)}; expected {keys}')
            arr = np.asarray(scene[key])
            if arr.dtype == object:
                raise StorageError(f'array {key!r} has dtype object; only plain dtypes are stored')
            parts.append(arr.reshape(1) if arr.ndim == 0 else arr)
        first = parts[0]
        for i, arr in enumerate(parts):
            if arr.dtype != first.dtype or arr.shape[1:] != first.shape[1:]:
                raise StorageError(
                    f'array {key!r} of scene {i} is {arr.dtype}{list(arr.shape)}, scene 0 is '
                    f'{first.dtype}{list(first.shape)}; dtype and trailing axes must agree')
        members[key] = np.concatenate(parts, axis=0)
        members[f'{key}__offsets'] = np.concatenate(
            [[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(f'{name}.npy', date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, _npy_bytes(members[name]), compresslevel=6)
    return buf.getvalue()


def unpack_scenes(data: bytes | Path) -> list[Scene]:
    """Read the scenes of one shard.

    :param data: the shard's bytes or path.
    :return: the scenes, in order.
    :raises StorageError: when the file is not a valid shard (truncated, corrupt, wrong layout).
    """
    source = data if isinstance(data, Path) else io.BytesIO(data)
    try:
        with np.load(source, allow_pickle=False) as npz:
            members = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise StorageError(f'cannot read shard {data if isinstance(data, Path) else ""}: '
                           f'{err}') from None
    keys = sorted(k for k in members if not k.endswith('__offsets'))
    if not keys:
        raise StorageError('shard holds no arrays')
    n = len(members[f'{keys[0]}__offsets']) - 1
    scenes: list[Scene] = [{} for _ in range(n)]
    for key in keys:
        offsets = members.get(f'{key}__offsets')
        if offsets is None or len(offsets) != n + 1:
            raise StorageError(f'shard member {key!r} has no valid offsets')
        for i in range(n):
            scenes[i][key] = members[key][offsets[i]:offsets[i + 1]]
    return scenes


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Manifest:
    """What a dataset folder holds and how it was made.

    :ivar config: generation config (plain JSON types).
    :ivar num_scenes: scenes planned.
    :ivar scenes_per_shard: scenes per shard (the last shard may hold fewer).
    :ivar shards: finished shards: file name -> ``{'sha256', 'scenes', 'first_scene'}``.
    :ivar info: provenance (package versions, object split, seeds, timings).
    """

    config: dict[str, Any]
    num_scenes: int
    scenes_per_shard: int
    shards: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    @property
    def num_shards(self) -> int:
        """Shards planned."""
        return -(-self.num_scenes // self.scenes_per_shard)

    def shard_range(self, index: int) -> range:
        """Scene indices that shard ``index`` holds."""
        start = index * self.scenes_per_shard
        return range(start, min(start + self.scenes_per_shard, self.num_scenes))

    @property
    def complete(self) -> bool:
        """Whether every planned shard is finished."""
        return len(self.shards) == self.num_shards

    def to_json(self) -> str:
        """Serialise (sorted keys, stable)."""
        return json.dumps({'version': self.version, 'config': self.config,
                           'num_scenes': self.num_scenes,
                           'scenes_per_shard': self.scenes_per_shard,
                           'shards': self.shards, 'info': self.info},
                          indent=2, sort_keys=True) + '\n'

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse a manifest.

        :raises StorageError: when it is not a manifest of a supported version.
        """
        try:
            data = json.loads(text)
            if data.get('version') != FORMAT_VERSION:
                raise StorageError(f'manifest version {data.get("version")!r} is not supported '
                                   f'(expected {FORMAT_VERSION})')
            return cls(config=data['config'], num_scenes=int(data['num_scenes']),
                       scenes_per_shard=int(data['scenes_per_shard']),
                       shards=dict(data['shards']), info=dict(data.get('info', {})))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise StorageError(f'invalid manifest: {err}') from None


class DatasetWriter:
    """Write shards into a folder and keep its manifest up to date (atomically)."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        """Open ``root`` for writing; an existing manifest must describe the same dataset.

        :param root: dataset folder (created if missing).
        :param manifest: the manifest of the dataset to write (its shards are ignored: the
            finished shards are read from the folder's manifest, if any).
        :raises StorageError: when the folder holds a dataset made with another config.
        """
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / MANIFEST
        if path.exists():
            existing = Manifest.from_json(path.read_text())
            shown = describe_differences(
                {'config': existing.config, 'num_scenes': existing.num_scenes,
                 'scenes_per_shard': existing.scenes_per_shard},
                {'config': manifest.config, 'num_scenes': manifest.num_scenes,
                 'scenes_per_shard': manifest.scenes_per_shard})
            if shown:
                raise StorageError(
                    f'{self.root} already holds a dataset generated with another config or '
                    f'size ({shown}); choose another --out folder or delete it')
            manifest.shards = existing.shards
            manifest.info = {**manifest.info, **{k: v for k, v in existing.info.items()
                                                 if k not in manifest.info}}
        self.manifest = manifest
        self.save_manifest()

    def save_manifest(self) -> None:
        """Write the manifest atomically."""
        atomic_write_bytes(self.root / MANIFEST, self.manifest.to_json().encode())

    def pending_shards(self) -> list[int]:
        """Shards that are missing, unlisted or whose bytes do not match the manifest."""
        pending = []
        for index in range(self.manifest.num_shards):
            name = shard_name(index)
            entry = self.manifest.shards.get(name)
            path = self.root / name
            if entry is None or not path.exists() or sha256_file(path) != entry['sha256']:
                self.manifest.shards.pop(name, None)
                pending.append(index)
        return pending

    def write_shard(self, index: int, data: bytes) -> None:
        """Store shard ``index`` (packed by :func:`pack_scenes`) and record it."""
        name = shard_name(index)
        atomic_write_bytes(self.root / name, data)
        scenes = self.manifest.shard_range(index)
        self.manifest.shards[name] = {'sha256': hashlib.sha256(data).hexdigest(),
                                      'scenes': len(scenes), 'first_scene': scenes.start}
        self.save_manifest()


class DatasetReader:
    """Random access to the scenes of a dataset folder."""

    def __init__(self, root: Path) -> None:
        """Open a dataset folder.

        :param root: folder with ``manifest.json``.
        :raises StorageError: when there is no readable manifest.
        """
        self.root = Path(root)
        path = self.root / MANIFEST
        if not path.is_file():
            raise StorageError(f'{self.root} is not a dataset folder (no {MANIFEST})')
        self.manifest = Manifest.from_json(path.read_text())
        self._cache: tuple[int, list[Scene]] | None = None

    def __len__(self) -> int:
        """Number of scenes in finished shards."""
        return sum(int(e['scenes']) for e in self.manifest.shards.values())

    def scene_indices(self) -> list[int]:
        """Indices of the scenes that can be read."""
        out: list[int] = []
        for entry in self.manifest.shards.values():
            out.extend(range(int(entry['first_scene']),
                             int(entry['first_scene']) + int(entry['scenes'])))
        return sorted(out)

    def scene(self, index: int) -> Scene:
        """Read scene ``index``.

        :raises IndexError: when no finished shard holds it.
        :raises StorageError: when its shard is corrupt.
        """
        if not 0 <= index < self.manifest.num_scenes:
            raise IndexError(f'scene {index} out of range [0, {self.manifest.num_scenes})')
        shard = index // self.manifest.scenes_per_shard
        if shard_name(shard) not in self.manifest.shards:
            raise IndexError(f'scene {index} is in shard {shard}, which is not finished')
        if self._cache is None or self._cache[0] != shard:
            self._cache = (shard, unpack_scenes(self.root / shard_name(shard)))
        return self._cache[1][index - shard * self.manifest.scenes_per_shard]

    def __iter__(self) -> Iterator[Scene]:
        """Iterate over the readable scenes in index order."""
        for index in self.scene_indices():
            yield self.scene(index)


def config_dict(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Round-trip a config through JSON so comparisons with a stored manifest are exact."""
    return json.loads(json.dumps(mapping, sort_keys=True))
