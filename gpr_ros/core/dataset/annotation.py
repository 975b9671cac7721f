"""Single-object grasp annotation (GPR, Sec. IV-A).

For one object mesh, in the object's own frame:

a) sample ``num_points`` contact candidates p_i on the surface (area-weighted) with their
   outward face normals n_i;
b) sample k = ``num_directions`` directions inside the friction cone around −n_i and cast a
   ray from just inside p_i along each; the first hit on a back-facing triangle (where the
   ray leaves the object: the "backward surface") is the second contact c2, and the contact
   distance |c2 − c1| is the grasp width; where two bodies of the mesh touch face to face,
   the ray passes through their interface (:func:`_exit_points`);
c) keep the candidates in antipodal force closure (the segment inside the friction cones of
   both contacts) whose width plus ``width_clearance`` fits the gripper;
d) for each such candidate, centre o = (c1 + c2)/2 and closing r = unit(c2 − c1), try
   ``num_approaches`` approach directions n ⟂ r, evenly spaced about r (random phase), and
   keep those for which the gripper, opened to width + clearance, is collision-free at the
   grasp pose and along the approach path (translated back by up to
   ``pregrasp_distance`` along −n);
e) score each kept grasp with Q(g) = Ferrari–Canny ε of (c1, n1), (c2, n2) about the centre
   of mass (:mod:`gpr_ros.core.quality.ferrari_canny`), computed once per candidate since it
   does not depend on the approach; a candidate with ε = 0 (at the edge of a cone, outside
   the inscribed linearised cone) counts as not in force closure;
f) prune with grasp NMS on D (Eq. 1) by descending Q, keeping at most
   ``max_grasps_per_object``;
g) label every sampled point :data:`POSITIVE` (a collision-free grasp from it exists before
   NMS), :data:`NEGATIVE_COLLISION` (force-closure candidates exist but every approach
   collides) or :data:`UNSUITABLE` (no second contact, no force closure, or too wide).

Grasps follow the project frame convention (:mod:`gpr_ros.core.grasp.grasps`): X approach,
Y closing, centre midway between the contacts; ``width`` is the contact distance (the
gripper is opened to width + clearance for the collision check).

Collision test: the gripper body is the finger and palm boxes of
:class:`~gpr_ros.core.grasp.gripper.GripperModel` (open boxes), each elongated backwards
along −n by ``pregrasp_distance`` (the volume swept by the approach), tested against
``collision_points`` dense surface samples of the object. Surface samples miss penetrations
thinner than their spacing (about sqrt(area / collision_points)). The samples are reduced per
candidate to those inside the cylinder about r that bounds the swept body of every approach
(a dense, chunked distance test: with ``collision_points`` samples per object this is cheaper
than KD-tree ball queries, which return Python lists), then tested per approach in float32.

Cost with the defaults, one CPU core: about 1–6 s per YCB object (16k faces); about half is
one 6-D Qhull per reachable candidate (~0.5 ms each), most of the rest the collision test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
import hashlib
import json
import math
import os
from pathlib import Path
import re
import tempfile
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.spatial import cKDTree
import trimesh

from gpr_ros.core.dataset.errors import DatasetError, MeshError
from gpr_ros.core.errors import ConfigError, GeometryError
from gpr_ros.core.grasp.distance import DEFAULT_BETA, DEFAULT_NMS_THRESHOLD, grasp_nms
from gpr_ros.core.grasp.grasps import STAGE_ANNOTATION, Grasps
from gpr_ros.core.grasp.gripper import GripperModel, in_swept_body, in_swept_body_banded
from gpr_ros.core.kernels import NUMBA_AVAILABLE, approach_collision_kernel
from gpr_ros.core.quality.ferrari_canny import (
    DEFAULT_NUM_CONE_EDGES,
    DEFAULT_TORSIONAL_FRICTION,
    ferrari_canny_batch,
)
from gpr_ros.core.quality.force_closure import antipodal_force_closure, tangent_basis

__all__ = [
    "FORMAT_VERSION",
    "NEGATIVE_COLLISION",
    "POSITIVE",
    "UNSUITABLE",
    "AnnotationConfig",
    "AnnotationError",
    "ObjectAnnotation",
    "annotate_object",
    "annotate_object_cached",
    "annotation_cache_key",
    "gripper_collision",
    "mesh_hash",
]

# The values match the point classes of :mod:`gpr_ros.core.dataset.labels` (0 = background).

#: Point label: at least one collision-free force-closure grasp starts at the point.
POSITIVE = 1
#: Point label: force-closure grasps exist, but every approach collides with the object.
NEGATIVE_COLLISION = 2
#: Point label: no second contact, no force closure, or the contacts are too far apart.
UNSUITABLE = 3

#: Version of the on-disk format of :meth:`ObjectAnnotation.save` and of the annotation
#: procedure (part of the cache key). 2: second contacts skip internal interfaces between
#: touching bodies and no longer depend on the CPU (:func:`_exit_points`).
FORMAT_VERSION = 2

#: Rays start this far inside the surface (m), so they do not hit their own triangle.
_RAY_OFFSET = 1e-5
#: Hits closer than this to the ray origin (m) are self-hits and skipped.
_MIN_HIT_DISTANCE = 2e-5
#: Faces whose (unit normal, offset / mesh scale) differ by less than this share a plane.
_COPLANAR_TOLERANCE = 1e-6
#: Barycentric slack of the test whether a hit lies on a face of a touching body.
_BARYCENTRIC_SLACK = 1e-9
#: (candidate, point) pairs handled at once by the collision test (bounds temporaries).
_COLLISION_CHUNK = 2_000_000

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class AnnotationError(DatasetError, ValueError):
    """An unusable annotation.

    Inconsistent arrays, a corrupt or outdated cache file, or a bad cache name or seed.
    """


# ---------------------------------------------------------------------------------- config


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(
            f"AnnotationConfig.{name} must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


def _check_float(value: Any, name: str) -> float:
    if isinstance(value, (bool, str, bytes)):
        raise ConfigError(f"AnnotationConfig.{name} must be a number >= 0, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"AnnotationConfig.{name} must be a number >= 0, got {value!r}"
        ) from None
    if not math.isfinite(number) or number < 0.0:
        raise ConfigError(f"AnnotationConfig.{name} must be a finite number >= 0, got {value!r}")
    return number


@dataclass(frozen=True)
class AnnotationConfig:
    """Parameters of :func:`annotate_object`.

    :ivar num_points: surface contact candidates sampled per object (the paper's n = 16384;
        the default is smaller to keep annotation fast).
    :ivar num_directions: antipodal directions k sampled inside the friction cone per point.
    :ivar friction: Coulomb friction coefficient μ (the paper's γ = 0.3).
    :ivar num_approaches: approach directions tried about each closing axis, evenly spaced.
    :ivar width_clearance: added to the contact distance to open the gripper, m; a grasp is
        kept only if width + clearance <= the gripper's max width.
    :ivar pregrasp_distance: length of the approach path checked for collisions, m.
    :ivar collision_points: surface samples used for the collision test.
    :ivar nms_threshold: threshold on the grasp distance D for NMS.
    :ivar max_grasps_per_object: grasps kept after NMS, at most.
    :ivar beta: weights (β1 per metre, β2, β3) of D (Eq. 1).
    :ivar num_cone_edges: edges of the linearised friction cones used by Ferrari–Canny.
    :ivar torsional_friction: soft-finger torsional moment per unit normal force, m.
    """

    num_points: int = 2048
    num_directions: int = 4
    friction: float = 0.3
    num_approaches: int = 12
    width_clearance: float = 0.004
    pregrasp_distance: float = 0.05
    collision_points: int = 4096
    nms_threshold: float = DEFAULT_NMS_THRESHOLD
    max_grasps_per_object: int = 500
    beta: tuple[float, float, float] = DEFAULT_BETA
    num_cone_edges: int = DEFAULT_NUM_CONE_EDGES
    torsional_friction: float = DEFAULT_TORSIONAL_FRICTION

    def __post_init__(self) -> None:
        """Validate and normalise the values.

        :raises ConfigError: on a value of the wrong type or out of range.
        """
        ints = {
            "num_points": 1,
            "num_directions": 1,
            "num_approaches": 1,
            "collision_points": 1,
            "max_grasps_per_object": 1,
            "num_cone_edges": 3,
        }
        for name, minimum in ints.items():
            object.__setattr__(self, name, _check_int(getattr(self, name), name, minimum))
        for name in (
            "friction",
            "width_clearance",
            "pregrasp_distance",
            "nms_threshold",
            "torsional_friction",
        ):
            object.__setattr__(self, name, _check_float(getattr(self, name), name))
        beta = self.beta
        if isinstance(beta, (str, bytes)) or not hasattr(beta, "__len__") or len(beta) != 3:
            raise ConfigError(f"AnnotationConfig.beta must be three weights, got {beta!r}")
        values = tuple(_check_float(b, "beta") for b in beta)
        object.__setattr__(self, "beta", values)

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters as plain JSON-compatible values (``beta`` as a list).

        :return: ``{field: value}``.
        """
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["beta"] = list(self.beta)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnnotationConfig:
        """Build from a mapping; missing keys take their defaults.

        :param data: ``{field: value}``.
        :return: the config.
        :raises ConfigError: on unknown keys or invalid values.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"AnnotationConfig must be built from a mapping, got {type(data).__name__}"
            )
        names = tuple(f.name for f in fields(cls))
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(
                f"unknown AnnotationConfig key(s) {unknown}; expected a subset of {names}"
            )
        values = dict(data)
        if "beta" in values and isinstance(values["beta"], list):
            values["beta"] = tuple(values["beta"])
        return cls(**values)

    def hash(self) -> str:
        """Return a stable short hash of the parameters (16 hex digits), for cache keys.

        :return: the hash, identical across processes and machines for equal configs.
        """
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------------------------- result


def _readonly(arr: NDArray[Any]) -> NDArray[Any]:
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class ObjectAnnotation:
    """Grasp annotations of one object, in the object's frame.

    :ivar grasps: M kept grasps (stage :data:`~gpr_ros.core.grasp.grasps.STAGE_ANNOTATION`,
        score = Q(g) = Ferrari–Canny ε, width = contact distance, contacts = (c1, c2)),
        best first.
    :ivar grasp_point_index: (M,) int64 index into ``points`` of each grasp's first contact.
    :ivar points: (P, 3) sampled contact candidates, m.
    :ivar normals: (P, 3) their outward unit normals.
    :ivar point_labels: (P,) int8 labels (:data:`POSITIVE`, :data:`NEGATIVE_COLLISION`,
        :data:`UNSUITABLE`).
    :ivar config_hash: :meth:`AnnotationConfig.hash` of the config used.
    """

    grasps: Grasps
    grasp_point_index: NDArray[np.int64]
    points: NDArray[np.float64]
    normals: NDArray[np.float64]
    point_labels: NDArray[np.int8]
    config_hash: str

    def __post_init__(self) -> None:
        """Check that the arrays are consistent and make them read-only.

        :raises AnnotationError: on inconsistent shapes or out-of-range indices/labels.
        """
        index = np.array(self.grasp_point_index, dtype=np.int64)
        points = np.array(self.points, dtype=np.float64)
        normals = np.array(self.normals, dtype=np.float64)
        labels = np.array(self.point_labels, dtype=np.int8)
        n_points = len(points)
        if points.ndim != 2 or points.shape[1] != 3 or normals.shape != points.shape:
            raise AnnotationError(
                f"points and normals must both be (P, 3), got {points.shape} and {normals.shape}"
            )
        if labels.shape != (n_points,) or not np.all(
            np.isin(labels, (UNSUITABLE, POSITIVE, NEGATIVE_COLLISION))
        ):
            raise AnnotationError(
                f"point_labels must be ({n_points},) values in "
                f"{(UNSUITABLE, POSITIVE, NEGATIVE_COLLISION)}, got shape {labels.shape}"
            )
        if index.shape != (len(self.grasps),) or (
            index.size and (index.min() < 0 or index.max() >= n_points)
        ):
            raise AnnotationError(
                f"grasp_point_index must be ({len(self.grasps)},) indices into {n_points} "
                f"points, got shape {index.shape}"
            )
        if self.grasps.contacts is None:
            raise AnnotationError("annotation grasps must carry their contacts (c1, c2)")
        for name, arr in (
            ("grasp_point_index", index),
            ("points", points),
            ("normals", normals),
            ("point_labels", labels),
        ):
            object.__setattr__(self, name, _readonly(arr))
        object.__setattr__(self, "config_hash", str(self.config_hash))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the annotation to a compressed ``.npz`` file atomically.

        The data go to a temporary file in the same folder, which then replaces ``path``, so
        readers never see a partial file.

        :param path: the destination file.
        :raises OSError: if the file cannot be written.
        """
        target = Path(path)
        g = self.grasps
        contacts = g.contacts if g.contacts is not None else np.zeros((len(g), 2, 3))
        arrays: dict[str, NDArray[Any]] = {
            "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
            "config_hash": np.array(self.config_hash),
            "center": g.center,
            "approach": g.approach,
            "closing": g.closing,
            "width": g.width,
            "score": g.score,
            "stage": g.stage,
            "contacts": contacts,
            "grasp_point_index": self.grasp_point_index,
            "points": self.points,
            "normals": self.normals,
            "point_labels": self.point_labels,
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ObjectAnnotation:
        """Read an annotation written by :meth:`save`.

        :param path: the ``.npz`` file.
        :return: the annotation.
        :raises FileNotFoundError: if ``path`` does not exist.
        :raises AnnotationError: if the file is not a valid annotation of this format version.
        """
        target = Path(path)
        if not target.is_file():
            raise FileNotFoundError(f"no annotation file at {target}")
        try:
            with np.load(target, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError) as exc:
            raise AnnotationError(f"cannot read annotation file {target}: {exc}") from None
        version = int(arrays.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise AnnotationError(
                f"annotation file {target} has format version {version}, "
                f"expected {FORMAT_VERSION}"
            )
        try:
            stored = {
                key: np.array(arrays[key], dtype=np.int8 if key == "stage" else np.float64)
                for key in ("center", "approach", "closing", "width", "score", "stage", "contacts")
            }
            Grasps(**stored)  # validates shapes, finiteness, frames and stages
            # Rebuild from the stored bits: the constructor re-normalises the directions,
            # which could change their last bits and break exact cache round trips.
            grasps = Grasps._from_valid(**{k: _readonly(v) for k, v in stored.items()})
            return cls(
                grasps=grasps,
                grasp_point_index=arrays["grasp_point_index"],
                points=arrays["points"],
                normals=arrays["normals"],
                point_labels=arrays["point_labels"],
                config_hash=str(arrays["config_hash"]),
            )
        except KeyError as exc:
            raise AnnotationError(f"annotation file {target} lacks the array {exc}") from None
        except GeometryError as exc:
            raise AnnotationError(f"annotation file {target} is invalid: {exc}") from None


# ---------------------------------------------------------------------------------- geometry


def gripper_collision(
    points: ArrayLike,
    grasps: Grasps,
    gripper: GripperModel,
    width: ArrayLike | None = None,
    pregrasp_distance: float = 0.0,
) -> NDArray[np.bool_]:
    """Whether the gripper of each grasp, or its approach path, contains any of the points.

    With ``pregrasp_distance = 0`` this is ``gripper.points_in_gripper_body(points, grasps,
    width).any(axis=1)``; otherwise every body box is elongated backwards along −n by that
    distance (the volume swept while approaching from the pre-grasp pose).

    :param points: (P, 3) obstacle points (e.g. dense surface samples of the object), m.
    :param grasps: N grasps.
    :param gripper: the gripper model.
    :param width: finger opening(s), scalar or (N,); default the grasps' widths.
    :param pregrasp_distance: approach path length, m, >= 0.
    :return: (N,) booleans, true where some point is inside.
    :raises GeometryError: on invalid points or widths.
    :raises ConfigError: on a negative ``pregrasp_distance``.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or not np.all(np.isfinite(pts)):
        raise GeometryError(f"points must be a finite (P, 3) array, got shape {pts.shape}")
    sweep = float(pregrasp_distance)
    if not math.isfinite(sweep) or sweep < 0.0:
        raise ConfigError(f"pregrasp_distance must be a finite value >= 0 m, got {sweep}")
    w = grasps.width if width is None else np.broadcast_to(
        np.asarray(width, dtype=np.float64), (len(grasps),)
    )
    if not np.all(np.isfinite(w)) or np.any(w < 0.0):
        raise GeometryError("width must be finite and >= 0 m")
    result = np.zeros(len(grasps), dtype=bool)
    step = max(1, _COLLISION_CHUNK // max(len(pts), 1))
    for start in range(0, len(grasps), step):
        sl = slice(start, start + step)
        rel = pts[None, :, :] - grasps.center[sl, None, :]
        z_axis = np.cross(grasps.approach[sl], grasps.closing[sl])
        x = np.einsum("npk,nk->np", rel, grasps.approach[sl])
        abs_y = np.abs(np.einsum("npk,nk->np", rel, grasps.closing[sl]))
        abs_z = np.abs(np.einsum("npk,nk->np", rel, z_axis))
        half = 0.5 * w[sl, None]
        result[sl] = in_swept_body(x, abs_y, abs_z, half, gripper, sweep).any(axis=1)
    return result


def _approach_collisions(
    points: NDArray[np.float64],
    centers: NDArray[np.float64],
    closing: NDArray[np.float64],
    phases: NDArray[np.float64],
    half_open: NDArray[np.float64],
    gripper: GripperModel,
    sweep: float,
    use_kernel: bool = True,
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Collision test of C candidates × A approach directions about their closing axes.

    Approach j of candidate i is n = cos φ u + sin φ v with φ = ``phases[i, j]`` and (u, v)
    the tangent basis of r (:func:`tangent_basis`). Points are first reduced to those near
    each candidate (inside the cylinder about r that bounds every approach's swept body),
    then tested per approach. With numba (and ``use_kernel``) the numba kernel
    :func:`~gpr_ros.core.kernels.approach_collision_kernel` does the same tests point by point
    (same answers, 18x faster over 8 objects: no (c, P) temporaries).

    :return: ``(collides (C, A), approaches (C, A, 3))``.
    """
    n_cand, n_app = phases.shape
    u, v = tangent_basis(closing) if n_cand else (np.zeros((0, 3)), np.zeros((0, 3)))
    cos_ph, sin_ph = np.cos(phases), np.sin(phases)
    approaches = cos_ph[:, :, None] * u[:, None, :] + sin_ph[:, :, None] * v[:, None, :]
    collides = np.zeros((n_cand, n_app), dtype=bool)
    fd, pd, t = gripper.finger_depth, gripper.palm_depth, gripper.finger_thickness
    reach = fd + pd + sweep
    half_z = 0.5 * max(gripper.finger_height, gripper.palm_height)
    radius_sq = reach * reach + half_z * half_z
    y_max = np.maximum(half_open, 0.5 * gripper.max_width) + gripper.finger_thickness
    if NUMBA_AVAILABLE and use_kernel and n_cand and len(points):
        t32 = np.float32
        consts = np.array([t32(t), t32(0.5 * gripper.max_width), t32(-fd - sweep), t32(-fd),
                           t32(-fd - pd - sweep), t32(0.5 * gripper.finger_height),
                           t32(0.5 * gripper.palm_height)], dtype=np.float32)
        collides = approach_collision_kernel(
            np.ascontiguousarray(points, dtype=np.float64),
            np.ascontiguousarray(centers, dtype=np.float64),
            np.ascontiguousarray(closing, dtype=np.float64), np.ascontiguousarray(u),
            np.ascontiguousarray(v), np.ascontiguousarray(half_open, dtype=np.float64),
            np.ascontiguousarray(y_max), float(radius_sq),
            np.ascontiguousarray(cos_ph, dtype=np.float32),
            np.ascontiguousarray(sin_ph, dtype=np.float32), consts)
        return collides, approaches
    step = max(1, _COLLISION_CHUNK // max(len(points), 1))
    for start in range(0, n_cand, step):
        sl = slice(start, min(start + step, n_cand))
        rel = points[None, :, :] - centers[sl, None, :]  # (c, P, 3)
        y = np.einsum("cpk,ck->cp", rel, closing[sl])
        a = np.einsum("cpk,ck->cp", rel, u[sl])
        b = np.einsum("cpk,ck->cp", rel, v[sl])
        near = (np.abs(y) < y_max[sl, None]) & (a * a + b * b < radius_sq)
        ci, pi = np.nonzero(near)
        if ci.size == 0:
            continue
        # float32 halves the memory traffic of the per-approach tests; 1e-7 relative error
        # on coordinates below 0.2 m is far below the sampling resolution.
        a_k = a[ci, pi].astype(np.float32)
        b_k = b[ci, pi].astype(np.float32)
        abs_y = np.abs(y[ci, pi]).astype(np.float32)
        half_k = half_open[sl][ci].astype(np.float32)
        finger_band = (abs_y > half_k) & (abs_y < half_k + np.float32(t))
        palm_band = abs_y < np.maximum(half_k, np.float32(0.5 * gripper.max_width)) + t
        cos_c = cos_ph[sl].astype(np.float32)
        sin_c = sin_ph[sl].astype(np.float32)
        n_sub = sl.stop - sl.start
        for j in range(n_app):
            cos_p, sin_p = cos_c[ci, j], sin_c[ci, j]
            x = a_k * cos_p + b_k * sin_p
            abs_z = np.abs(b_k * cos_p - a_k * sin_p)
            inside = in_swept_body_banded(
                x, abs_z, finger_band, palm_band, gripper, sweep
            )
            collides[sl, j] = np.bincount(ci[inside], minlength=n_sub) > 0
    return collides, approaches


def _dot3(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Row-wise dot product of two (N, 3) arrays.

    Written out as products and sums, which IEEE arithmetic rounds the same on every CPU;
    ``einsum`` may add in a SIMD-width-dependent order.
    """
    result: NDArray[np.float64] = a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1] + a[:, 2] * b[:, 2]
    return result


@dataclass(frozen=True)
class _CoplanarFaces:
    """The faces of a mesh that share a plane with another face, found once per mesh.

    Procedural objects are often several closed bodies touching face to face. Where two bodies
    meet, one body's face and the other's lie in the same plane with opposite normals (an
    internal interface), and several faces of one body can share a plane.

    :ivar canonical: (F,) the lowest index among the faces in the plane of face i that face
        the same way (i itself when it has no such neighbour).
    :ivar opposite_start: (F + 1,) offsets: the faces in the plane of face i that face the
        other way are ``opposite[opposite_start[i]:opposite_start[i + 1]]``.
    :ivar opposite: those faces, ascending per face.
    """

    canonical: NDArray[np.int64]
    opposite_start: NDArray[np.int64]
    opposite: NDArray[np.int64]


def _coplanar_faces(mesh: trimesh.Trimesh) -> _CoplanarFaces:
    """Group the faces of ``mesh`` by plane (see :class:`_CoplanarFaces`).

    A face's plane is the key (unit normal, offset / mesh scale); two faces are in the same
    plane when their keys are within :data:`_COPLANAR_TOLERANCE`, and in the same plane facing
    opposite ways when one key is within it of the other's negation.
    """
    normals = np.asarray(mesh.face_normals, dtype=np.float64)
    offsets = _dot3(normals, np.asarray(mesh.triangles[:, 0], dtype=np.float64))
    key = np.column_stack([normals, offsets / max(float(mesh.scale), 1e-12)])
    n_faces = len(key)
    tree = cKDTree(key)
    same = tree.query_pairs(_COPLANAR_TOLERANCE, output_type="ndarray")  # i < j
    canonical = np.arange(n_faces, dtype=np.int64)
    np.minimum.at(canonical, same[:, 1], same[:, 0])
    opposite = tree.sparse_distance_matrix(
        cKDTree(-key), _COPLANAR_TOLERANCE, output_type="ndarray"
    )
    face = np.asarray(opposite["i"], dtype=np.int64)
    other = np.asarray(opposite["j"], dtype=np.int64)
    order = np.lexsort((other, face))
    start = np.zeros(n_faces + 1, dtype=np.int64)
    np.cumsum(np.bincount(face, minlength=n_faces), out=start[1:])
    return _CoplanarFaces(canonical, start, other[order])


def _on_opposite_face(
    mesh: trimesh.Trimesh,
    planes: _CoplanarFaces,
    triangles: NDArray[np.int64],
    locations: NDArray[np.float64],
) -> NDArray[np.bool_]:
    """Whether each hit lies on a face coplanar with its own and facing the other way.

    :param triangles: (H,) the face of each hit.
    :param locations: (H, 3) the hit points, in the plane of their face.
    :return: (H,) True for hits on an internal interface between two touching bodies.
    """
    begin = planes.opposite_start[triangles]
    counts = planes.opposite_start[triangles + 1] - begin
    result = np.zeros(len(triangles), dtype=bool)
    if not counts.any():
        return result
    hit = np.repeat(np.arange(len(triangles)), counts)
    ends = np.cumsum(counts)
    face = planes.opposite[np.arange(int(ends[-1])) + np.repeat(begin - ends + counts, counts)]
    # Barycentric coordinates of each hit in each candidate face.
    corners = np.asarray(mesh.triangles[face], dtype=np.float64)
    e0 = corners[:, 1] - corners[:, 0]
    e1 = corners[:, 2] - corners[:, 0]
    q = locations[hit] - corners[:, 0]
    d00, d01, d11 = _dot3(e0, e0), _dot3(e0, e1), _dot3(e1, e1)
    d20, d21 = _dot3(q, e0), _dot3(q, e1)
    denom = d00 * d11 - d01 * d01
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate faces: NaN, not inside
        v = (d11 * d20 - d01 * d21) / denom
        w = (d00 * d21 - d01 * d20) / denom
    slack = -_BARYCENTRIC_SLACK
    inside = (v >= slack) & (w >= slack) & (1.0 - v - w >= slack)
    result[hit[inside]] = True
    return result


def _exit_points(
    mesh: trimesh.Trimesh,
    origins: NDArray[np.float64],
    directions: NDArray[np.float64],
    intersector: Any = None,
) -> tuple[NDArray[np.bool_], NDArray[np.float64], NDArray[np.int64]]:
    """First hit of each ray where it leaves the object, whichever coincident face is reported.

    A back-facing hit is where a ray leaves a body; it leaves the object unless the hit lies
    on a coplanar face of a touching body (an internal interface), where the ray enters that
    body instead. Embree reports only one of two coincident faces, and which one depends on
    its CPU-specific kernel (SSE, AVX2, AVX-512), so the hits are made independent of that
    choice: each hit is moved to the lowest-index face of its plane facing the same way
    (:class:`_CoplanarFaces`), its location recomputed on that plane, and interface hits are
    dropped. The ray continues to the far side of the touching body, which the multi-hit
    query reports either way.

    :param mesh: the object.
    :param origins: (R, 3) ray origins.
    :param directions: (R, 3) unit ray directions.
    :param intersector: the ray intersector (``mesh.ray`` by default: Embree when installed,
        else trimesh's pure-Python one).
    :return: ``(found (R,), locations (R, 3), triangle (R,))``; rows without a hit hold
        zeros and −1.
    """
    n_rays = len(origins)
    found = np.zeros(n_rays, dtype=bool)
    locations = np.zeros((n_rays, 3))
    triangles = np.full(n_rays, -1, dtype=np.int64)
    if n_rays == 0:
        return found, locations, triangles
    ray = mesh.ray if intersector is None else intersector
    _, ray_idx, tri_idx = ray.intersects_location(origins, directions, multiple_hits=True)
    if len(ray_idx) == 0:
        return found, locations, triangles
    planes = _coplanar_faces(mesh)
    ray_idx = np.asarray(ray_idx, dtype=np.int64)
    tri_idx = planes.canonical[np.asarray(tri_idx, dtype=np.int64)]
    origin, direction = origins[ray_idx], directions[ray_idx]
    normal = np.asarray(mesh.face_normals[tri_idx], dtype=np.float64)
    corner = np.asarray(mesh.triangles[tri_idx, 0], dtype=np.float64)
    facing = _dot3(normal, direction)
    back = facing > 0.0
    ray_idx, tri_idx = ray_idx[back], tri_idx[back]
    origin, direction = origin[back], direction[back]
    dist = _dot3(corner[back] - origin, normal[back]) / facing[back]
    valid = dist > _MIN_HIT_DISTANCE
    ray_idx, tri_idx, dist = ray_idx[valid], tri_idx[valid], dist[valid]
    loc = origin[valid] + dist[:, None] * direction[valid]
    inner = _on_opposite_face(mesh, planes, tri_idx, loc)
    ray_idx, tri_idx, dist, loc = ray_idx[~inner], tri_idx[~inner], dist[~inner], loc[~inner]
    order = np.lexsort((tri_idx, dist, ray_idx))
    first = order[np.unique(ray_idx[order], return_index=True)[1]]
    found[ray_idx[first]] = True
    locations[ray_idx[first]] = loc[first]
    triangles[ray_idx[first]] = tri_idx[first]
    return found, locations, triangles


def _cone_directions(
    normals: NDArray[np.float64], mu: float, k: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Sample k unit directions per point inside the friction cone, shape (P, k, 3).

    Uniform on the spherical cap of half-angle atan(μ) around the inward normal −n.
    """
    cos_max = 1.0 / math.sqrt(1.0 + mu * mu)
    cos_t = 1.0 - rng.random((len(normals), k)) * (1.0 - cos_max)
    sin_t = np.sqrt(np.maximum(0.0, 1.0 - cos_t * cos_t))
    phi = rng.uniform(0.0, 2.0 * np.pi, (len(normals), k))
    t1, t2 = tangent_basis(normals)
    tangential = np.cos(phi)[..., None] * t1[:, None, :] + np.sin(phi)[..., None] * t2[:, None, :]
    result: NDArray[np.float64] = (
        -cos_t[..., None] * normals[:, None, :] + sin_t[..., None] * tangential
    )
    return result


def _check_mesh(mesh: Any) -> trimesh.Trimesh:
    if not isinstance(mesh, trimesh.Trimesh):
        raise MeshError(f"mesh must be a trimesh.Trimesh, got {type(mesh).__name__}")
    if not np.all(np.isfinite(mesh.vertices)):
        raise MeshError("mesh vertices must be finite, got NaN/inf values")
    if len(mesh.faces) == 0 or not mesh.area > 0.0:
        raise MeshError(
            f"mesh must have faces with a positive total area, got {len(mesh.faces)} face(s)"
        )
    return mesh


def _center_of_mass(mesh: trimesh.Trimesh) -> NDArray[np.float64]:
    if mesh.is_watertight and abs(float(mesh.volume)) > 0.0:
        return np.asarray(mesh.center_mass, dtype=np.float64)
    return np.asarray(mesh.centroid, dtype=np.float64)


# ---------------------------------------------------------------------------------- annotate


def annotate_object(
    mesh: trimesh.Trimesh,
    gripper: GripperModel,
    config: AnnotationConfig,
    rng: np.random.Generator,
) -> ObjectAnnotation:
    """Annotate one object with dense, scored, collision-free grasps (Sec. IV-A).

    See the module docstring for the procedure. The object's centre of mass is
    ``mesh.center_mass`` for a watertight mesh and the surface centroid otherwise; torques in
    Q(g) are scaled by the largest vertex distance from it.

    :param mesh: the object, in its own frame, m; outward-facing triangles.
    :param gripper: the gripper model.
    :param config: the annotation parameters.
    :param rng: random generator (same state, same annotation).
    :return: the annotation.
    :raises MeshError: if the mesh is not a Trimesh, is empty or is not finite.
    """
    mesh = _check_mesh(mesh)
    cfg = config
    seeds = rng.integers(0, 2**31 - 1, size=2)
    samples, face_idx = trimesh.sample.sample_surface(mesh, cfg.num_points, seed=int(seeds[0]))
    points = np.asarray(samples, dtype=np.float64)
    normals = np.asarray(mesh.face_normals[face_idx], dtype=np.float64)
    obstacles, _ = trimesh.sample.sample_surface(mesh, cfg.collision_points, seed=int(seeds[1]))
    obstacles = np.asarray(obstacles, dtype=np.float64)
    com = _center_of_mass(mesh)
    torque_scale = float(np.max(np.linalg.norm(mesh.vertices - com, axis=1)))

    # b) antipodal rays inside the friction cone of every point.
    k = cfg.num_directions
    directions = _cone_directions(normals, cfg.friction, k, rng).reshape(-1, 3)
    point_of_ray = np.repeat(np.arange(len(points)), k)
    c1 = points[point_of_ray]
    n1 = normals[point_of_ray]
    found, c2, tri = _exit_points(mesh, c1 - _RAY_OFFSET * n1, directions)

    # c) force closure and width of the candidates that found a second contact.
    cand = np.flatnonzero(found)
    c1, n1, c2 = c1[cand], n1[cand], c2[cand]
    n2 = np.asarray(mesh.face_normals[tri[cand]], dtype=np.float64)
    width = np.linalg.norm(c2 - c1, axis=1)
    ok = (width > 0.0) & (width + cfg.width_clearance <= gripper.max_width)
    ok[ok] = antipodal_force_closure(c1[ok], n1[ok], c2[ok], n2[ok], cfg.friction)
    sel = np.flatnonzero(ok)
    c1, n1, c2, n2 = c1[sel], n1[sel], c2[sel], n2[sel]
    width, cand_point = width[sel], point_of_ray[cand[sel]]

    # d) approaches about each closing axis, with the approach path swept backwards.
    centers = 0.5 * (c1 + c2)
    closing = (c2 - c1) / width[:, None]
    steps = 2.0 * np.pi * np.arange(cfg.num_approaches) / cfg.num_approaches
    phases = rng.uniform(0.0, 2.0 * np.pi, (len(sel), 1)) + steps[None, :]
    half_open = 0.5 * (width + cfg.width_clearance)
    collides, approaches = _approach_collisions(
        obstacles, centers, closing, phases, half_open, gripper, cfg.pregrasp_distance
    )

    # e) Q(g) of the candidates with a free approach. The linearised cones are inscribed in
    # the circular ones, so a candidate at the edge of a cone can get ε = 0: it is not in
    # force closure after all and is dropped like one (its point may become UNSUITABLE).
    reachable = ~np.all(collides, axis=1)
    quality = np.zeros(len(sel))
    quality[reachable] = ferrari_canny_batch(
        c1[reachable],
        n1[reachable],
        c2[reachable],
        n2[reachable],
        com,
        mu=cfg.friction,
        num_cone_edges=cfg.num_cone_edges,
        torsional_friction=cfg.torsional_friction,
        torque_scale=torque_scale,
    )
    closed = ~reachable | (quality > 0.0)
    free_c, free_a = np.nonzero(~collides & (quality > 0.0)[:, None])

    # f) scored grasps, pruned by NMS on D.
    all_grasps = Grasps(
        centers[free_c],
        approaches[free_c, free_a],
        closing[free_c],
        width[free_c],
        quality[free_c],
        STAGE_ANNOTATION,
        np.stack([c1[free_c], c2[free_c]], axis=1),
    )
    keep = grasp_nms(
        all_grasps, cfg.nms_threshold, cfg.beta, max_keep=cfg.max_grasps_per_object
    )

    # g) point labels.
    labels = np.full(len(points), UNSUITABLE, dtype=np.int8)
    labels[cand_point[closed]] = NEGATIVE_COLLISION
    labels[cand_point[free_c]] = POSITIVE
    return ObjectAnnotation(
        grasps=all_grasps[keep],
        grasp_point_index=cand_point[free_c][keep],
        points=points,
        normals=normals,
        point_labels=labels,
        config_hash=cfg.hash(),
    )


# ---------------------------------------------------------------------------------- cache


def mesh_hash(mesh: trimesh.Trimesh) -> str:
    """Return a short hash (16 hex digits) of a mesh's vertices and faces.

    :param mesh: the mesh.
    :return: the hash of the float64 vertex and int64 face bytes.
    """
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(mesh.vertices, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(mesh.faces, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def annotation_cache_key(
    mesh: trimesh.Trimesh,
    name: str,
    gripper: GripperModel,
    config: AnnotationConfig,
    seed: int,
) -> str:
    """Return the cache key of an annotation: name, mesh, gripper, config, seed and format.

    :param mesh: the object.
    :param name: the object's name.
    :param gripper: the gripper model.
    :param config: the annotation parameters.
    :param seed: the random seed.
    :return: 16 hex digits.
    """
    parts = {
        "format": FORMAT_VERSION,
        "name": name,
        "mesh": mesh_hash(mesh),
        "gripper": gripper.to_dict(),
        "config": config.hash(),
        "seed": int(seed),
    }
    text = json.dumps(parts, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def annotate_object_cached(
    mesh: trimesh.Trimesh,
    name: str,
    cache_dir: str | os.PathLike[str],
    gripper: GripperModel,
    config: AnnotationConfig,
    seed: int,
) -> ObjectAnnotation:
    """Annotate an object, or read its annotation from the per-object cache.

    The cache file is ``cache_dir/<name>-<key>.npz`` with the key of
    :func:`annotation_cache_key`; a missing or unreadable file is (re)computed with
    ``np.random.default_rng(seed)`` and written atomically.

    :param mesh: the object, in its own frame, m.
    :param name: the object's name (used in the file name; characters other than letters,
        digits, ``_``, ``.`` and ``-`` are replaced).
    :param cache_dir: the cache folder (created if missing).
    :param gripper: the gripper model.
    :param config: the annotation parameters.
    :param seed: the random seed (an integer >= 0).
    :return: the annotation.
    :raises AnnotationError: on an empty name or a negative seed.
    :raises MeshError: if the mesh is not a Trimesh, is empty or is not finite.
    :raises OSError: if the cache cannot be written.
    """
    if not name:
        raise AnnotationError("the object name must be a non-empty string")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise AnnotationError(f"seed must be an integer >= 0, got {seed!r}")
    mesh = _check_mesh(mesh)
    key = annotation_cache_key(mesh, name, gripper, config, int(seed))
    path = Path(cache_dir) / f"{_SAFE_NAME.sub('_', name)}-{key}.npz"
    if path.is_file():
        try:
            return ObjectAnnotation.load(path)
        except AnnotationError:
            pass  # a corrupt or outdated entry is recomputed and overwritten
    annotation = annotate_object(mesh, gripper, config, np.random.default_rng(int(seed)))
    annotation.save(path)
    return annotation
