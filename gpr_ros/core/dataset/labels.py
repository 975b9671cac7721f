"""Per-point scene labels from single-object annotations (paper Sec. IV-B, Eq. 2).

For each object in the bin, its annotated grasps are moved by the object's 6D pose and checked
for collision against the other objects and the bin, the approach path included. The contacts
of the collision-free grasps form the positive set; the contacts of colliding grasps and the
object's unsuitable sample points form the negative set. Each observed point within radius R
of a positive (negative) contact receives that contact's label ``L(p) = [n, r, w, Q]`` and mask
``M(p) = 1[Q > 0]``; a point reached by several contacts keeps the label with the highest score
(positives win over negatives, whose score is 0).

Labels reference their grasp through an index into the scene-level positive grasp set, which is
stored too (for the network's regression targets and for the pose-accuracy evaluation), so
``L(p)`` is ``grasps[point_grasp[p]]``: approach n, closing r, width w and score Q.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import math

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from gpr_ros.core.errors import ConfigError
from gpr_ros.core.grasp import Grasps
from gpr_ros.core.grasp.gripper import GripperModel, in_swept_body
from gpr_ros.core.kernels import NUMBA_AVAILABLE, swept_collision_kernel

#: Point classes (Fig. 3 of the paper): what a point of the observed cloud is labelled as.
POINT_BACKGROUND = 0          # not near any sampled contact (bin, unlabelled object surface)
POINT_POSITIVE = 1            # near the contact of a collision-free grasp (light blue)
POINT_NEGATIVE_COLLISION = 2  # near the contact of a grasp that collides in the scene (dark blue)
POINT_UNSUITABLE = 3          # near an unsuitable contact point of an object (orange)
POINT_CLASS_NAMES = ('background', 'positive', 'negative (collision)', 'unsuitable')


@dataclass(frozen=True)
class LabelConfig:
    """How scene labels are made.

    :ivar radius: R, contact-to-point broadcast radius (m). The paper does not give R; with a
        camera above the bin most contacts lie on the objects' sides, so R must reach from a
        side contact to the top-face points next to it (1 cm).
    :ivar same_object_only: broadcast a contact only to points of its own object.
    :ivar pregrasp_distance: length of the approach path checked for collision (m).
    :ivar width_clearance: added to the grasp width when the fingers are placed (m).
    :ivar max_approach_angle: grasps whose approach makes a larger angle with the camera's
        viewing axis (+Z of the camera frame) are dropped, degrees (90: only grasps that come
        from the camera's side).
    """

    radius: float = 0.01
    same_object_only: bool = True
    pregrasp_distance: float = 0.05
    width_clearance: float = 0.004
    max_approach_angle: float = 90.0

    def __post_init__(self) -> None:
        """Validate.

        :raises ConfigError: on out-of-range values.
        """
        checks = {'radius': self.radius > 0, 'pregrasp_distance': self.pregrasp_distance >= 0,
                  'width_clearance': self.width_clearance >= 0,
                  'max_approach_angle': 0 < self.max_approach_angle <= 180}
        for name, ok in checks.items():
            if not ok or not math.isfinite(float(getattr(self, name))):
                raise ConfigError(f'LabelConfig.{name} = {getattr(self, name)!r} is out of range')

    def to_dict(self) -> dict[str, object]:
        """Plain dict (JSON types)."""
        return asdict(self)


@dataclass(frozen=True)
class ObjectLabelSource:
    """What the labeller needs of one object in the scene (arrays in the object frame).

    :ivar index: the object's index in the scene (as in the observation's ``object_index``).
    :ivar pose: 4x4 ``T_world_object``.
    :ivar grasps: annotated collision-free single-object grasps, with contacts, score = Q.
    :ivar unsuitable_points: (U, 3) sampled surface points without any positive grasp.
    :ivar surface_points: (S, 3) dense surface samples used as obstacles for other objects.
    :ivar collision_points: (C, 3) sampled points whose antipodal grasps all collided with the
        object itself (single-object annotation); they are negative (collision) points.
    """

    index: int
    pose: NDArray[np.float64]
    grasps: Grasps
    unsuitable_points: NDArray[np.float64]
    surface_points: NDArray[np.float64]
    collision_points: NDArray[np.float64] = field(
        default_factory=lambda: np.zeros((0, 3)))


@dataclass(frozen=True)
class SceneLabels:
    """Labels of one observed cloud (N points) and the scene's positive grasps (G).

    :ivar point_class: (N,) int8, ``POINT_*``.
    :ivar point_grasp: (N,) int32 index into ``grasps`` (-1: none).
    :ivar point_score: (N,) float32 Q of the kept label (0 for negatives and background).
    :ivar mask: (N,) uint8, M(p) = 1[Q > 0].
    :ivar grasps: positive grasps, in the frame of the observed points, score = Q.
    :ivar grasp_object: (G,) int32 scene object index of each positive grasp.
    :ivar num_colliding: grasps removed by the scene collision check.
    """

    point_class: NDArray[np.int8]
    point_grasp: NDArray[np.int32]
    point_score: NDArray[np.float32]
    mask: NDArray[np.uint8]
    grasps: Grasps
    grasp_object: NDArray[np.int32]
    num_colliding: int


def swept_gripper_collisions(obstacles: NDArray[np.float64], grasps: Grasps,
                             gripper: GripperModel, width: NDArray[np.float64],
                             pregrasp_distance: float, chunk_elements: int = 4_000_000,
                             use_kernel: bool = True) -> NDArray[np.bool_]:
    """Which grasps hit an obstacle point with the gripper at the grasp or on its way there.

    The gripper moves to the grasp along its approach axis (+X of the grasp frame), so the
    swept volume of each box is the box extended backwards along X by ``pregrasp_distance``:
    one box test per finger and palm covers the whole approach path
    (:func:`~gpr_ros.core.grasp.gripper.in_swept_body`, shared with the single-object
    annotation). A KD-tree limits each grasp's test to the obstacle points within reach.

    :param obstacles: (P, 3) points in the grasps' frame.
    :param grasps: N grasps.
    :param gripper: gripper model.
    :param width: (N,) finger placement widths (m).
    :param pregrasp_distance: approach path length (m).
    :param chunk_elements: grasp x point pairs processed at once (bounds memory).
    :param use_kernel: use the numba kernel when numba imports
        (:func:`~gpr_ros.core.kernels.swept_collision_kernel`: the same answers, about 2 ms
        instead of 0.4-1.3 s per object of a scene on a 2-core VM); false forces the numpy
        path.
    :return: (N,) True where a point lies inside the swept gripper.
    """
    n = len(grasps)
    hit = np.zeros(n, dtype=bool)
    if n == 0 or len(obstacles) == 0:
        return hit
    pts = np.asarray(obstacles, dtype=np.float64)
    if NUMBA_AVAILABLE and use_kernel:
        dims = np.array([gripper.finger_depth, gripper.palm_depth, gripper.finger_thickness,
                         gripper.max_width, gripper.finger_height, gripper.palm_height,
                         pregrasp_distance], dtype=np.float64)
        hit, finite = swept_collision_kernel(
            np.ascontiguousarray(pts), np.ascontiguousarray(grasps.center, dtype=np.float64),
            np.ascontiguousarray(grasps.rotations, dtype=np.float64),
            np.ascontiguousarray(0.5 * np.asarray(width, dtype=np.float64)), dims)
        if finite:
            return hit
        hit = np.zeros(n, dtype=bool)  # non-finite input: the numpy path below decides
    tree = cKDTree(pts)
    reach = math.hypot(gripper.palm_depth + gripper.finger_depth + pregrasp_distance,
                       0.5 * gripper.max_width + gripper.finger_thickness,
                       0.5 * max(gripper.palm_height, gripper.finger_height))
    rot = grasps.rotations
    origin = grasps.center - gripper.finger_depth * grasps.approach
    # Only points near a grasp's swept volume can hit it: query around the sweep's midpoint.
    mid = origin - 0.5 * (pregrasp_distance + gripper.palm_depth) * grasps.approach
    near = tree.query_ball_point(mid, reach)
    order = np.argsort([len(x) for x in near])
    batch: list[int] = []
    budget = 0
    for i in [*order, -1]:
        if i >= 0 and budget + len(near[i]) <= chunk_elements:
            batch.append(int(i))
            budget += len(near[i])
            continue
        if batch:
            idx = np.concatenate([np.asarray(near[j], dtype=np.int64) for j in batch])
            owner = np.repeat(np.asarray(batch), [len(near[j]) for j in batch])
            local = np.einsum('kji,kj->ki', rot[owner], pts[idx] - grasps.center[owner])
            inside = in_swept_body(local[:, 0], np.abs(local[:, 1]), np.abs(local[:, 2]),
                                   0.5 * width[owner], gripper, pregrasp_distance)
            hit[np.unique(owner[inside])] = True
        if i < 0:
            break
        batch, budget = [int(i)], len(near[i])
    return hit


def broadcast(points: NDArray[np.floating], point_object: NDArray[np.integer],
              sources: NDArray[np.floating], source_object: NDArray[np.integer],
              source_score: NDArray[np.floating], radius: float, same_object_only: bool
              ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Give every point the best source within ``radius``.

    :param points: (N, 3) observed points.
    :param point_object: (N,) object index of each point (-1: bin).
    :param sources: (K, 3) contact points, same frame.
    :param source_object: (K,) object index of each source.
    :param source_score: (K,) score of each source; the highest wins, ties to the lower index.
    :param radius: broadcast radius R.
    :param same_object_only: ignore sources of other objects.
    :return: ``(point_ids, source_ids)``: for each point reached, the source it keeps.
    """
    if len(sources) == 0 or len(points) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    tree = cKDTree(np.asarray(points, dtype=np.float64))
    lists = tree.query_ball_point(np.asarray(sources, dtype=np.float64), radius)
    counts = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    if counts.sum() == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    pid = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists if len(x)])
    sid = np.repeat(np.arange(len(sources)), counts)
    if same_object_only:
        keep = np.asarray(point_object)[pid] == np.asarray(source_object)[sid]
        pid, sid = pid[keep], sid[keep]
    # Highest score per point; ties -> lowest source index (stable and deterministic).
    order = np.lexsort((sid, -np.asarray(source_score)[sid], pid))
    pid, sid = pid[order], sid[order]
    first = np.ones(len(pid), dtype=bool)
    first[1:] = pid[1:] != pid[:-1]
    return pid[first], sid[first]


def label_scene(points: NDArray[np.floating], point_object: NDArray[np.integer],
                t_world_camera: NDArray[np.float64], objects: list[ObjectLabelSource],
                bin_points: NDArray[np.float64], gripper: GripperModel,
                config: LabelConfig) -> SceneLabels:
    """Label an observed cloud (paper Sec. IV-B).

    :param points: (N, 3) observed points in the camera frame.
    :param point_object: (N,) scene object index of each point (-1: bin or floor).
    :param t_world_camera: 4x4 camera pose in the world.
    :param objects: the objects in the bin with their annotations and poses.
    :param bin_points: (B, 3) obstacle samples of the bin's inner surfaces, world frame.
    :param gripper: gripper model.
    :param config: label config.
    :return: the labels; grasps are expressed in the camera frame.
    """
    t_camera_world = np.linalg.inv(t_world_camera)
    world_surfaces = [_apply(o.pose, o.surface_points) for o in objects]
    positives: list[Grasps] = []
    positive_object: list[NDArray[np.int32]] = []
    neg_points: list[NDArray[np.float64]] = []
    neg_class: list[NDArray[np.int8]] = []
    neg_object: list[NDArray[np.int32]] = []
    colliding = 0
    cos_max = math.cos(math.radians(config.max_approach_angle))
    for k, obj in enumerate(objects):
        to_camera = t_camera_world @ obj.pose
        for pts_obj, cls in ((obj.unsuitable_points, POINT_UNSUITABLE),
                             (obj.collision_points, POINT_NEGATIVE_COLLISION)):
            moved = _apply(to_camera, pts_obj)
            neg_points.append(moved)
            neg_class.append(np.full(len(moved), cls, dtype=np.int8))
            neg_object.append(np.full(len(moved), obj.index, dtype=np.int32))
        if len(obj.grasps) == 0:
            continue
        world = obj.grasps.transformed(obj.pose)
        others = [s for j, s in enumerate(world_surfaces) if j != k]
        obstacles = np.concatenate([np.asarray(bin_points, dtype=np.float64).reshape(-1, 3),
                                    *others])
        width = np.minimum(world.width + config.width_clearance, gripper.max_width)
        hit = swept_gripper_collisions(obstacles, world, gripper, width,
                                       config.pregrasp_distance)
        in_camera = world.transformed(t_camera_world)
        visible_side = in_camera.approach[:, 2] >= cos_max - 1e-12
        bad = hit | ~visible_side
        colliding += int(bad.sum())
        if bad.any() and in_camera.contacts is not None:
            c = in_camera.contacts[bad].reshape(-1, 3)
            neg_points.append(c)
            neg_class.append(np.full(len(c), POINT_NEGATIVE_COLLISION, dtype=np.int8))
            neg_object.append(np.full(len(c), obj.index, dtype=np.int32))
        good = in_camera[~bad]
        positives.append(good)
        positive_object.append(np.full(len(good), obj.index, dtype=np.int32))

    grasps = Grasps.concat(positives) if positives else Grasps.empty()
    grasp_object = (np.concatenate(positive_object) if positive_object
                    else np.zeros(0, dtype=np.int32))
    n = len(points)
    point_class = np.zeros(n, dtype=np.int8)
    point_grasp = np.full(n, -1, dtype=np.int32)
    point_score = np.zeros(n, dtype=np.float32)
    pts = np.asarray(points, dtype=np.float64)
    obj_of_point = np.asarray(point_object)

    # Negatives first, positives overwrite: a positive label always scores higher than 0.
    if neg_points:
        sources = np.concatenate(neg_points)
        classes = np.concatenate(neg_class)
        pid, sid = broadcast(pts, obj_of_point, sources, np.concatenate(neg_object),
                             np.zeros(len(sources)), config.radius, config.same_object_only)
        point_class[pid] = classes[sid]
    if len(grasps) and grasps.contacts is not None:
        contacts = grasps.contacts.reshape(-1, 3)
        owner = np.repeat(np.arange(len(grasps)), 2)
        pid, sid = broadcast(pts, obj_of_point, contacts, grasp_object[owner],
                             grasps.score[owner], config.radius, config.same_object_only)
        point_class[pid] = POINT_POSITIVE
        point_grasp[pid] = owner[sid]
        point_score[pid] = grasps.score[owner[sid]]
    mask = (point_score > 0).astype(np.uint8)
    return SceneLabels(point_class=point_class, point_grasp=point_grasp, point_score=point_score,
                       mask=mask, grasps=grasps, grasp_object=grasp_object,
                       num_colliding=colliding)


def _apply(transform: NDArray[np.float64], points: NDArray[np.floating]) -> NDArray[np.float64]:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return pts @ transform[:3, :3].T + transform[:3, 3]
