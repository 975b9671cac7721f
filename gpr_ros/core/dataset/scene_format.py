"""The arrays of one stored scene, and conversions to core types.

Every scene of a dataset is a dict of plain numpy arrays (see :mod:`.storage`):

================  ===========  ==============================================================
key               shape/dtype  meaning
================  ===========  ==============================================================
points            (N,3) f32    network input: observed points in the camera optical frame (m)
point_object      (N,) i16     scene object index of each point (-1: bin or floor)
point_class       (N,) i8      ``POINT_*`` of :mod:`.labels` (Fig. 3 classes)
point_grasp       (N,) i32     index into the scene grasps of the point's label (-1: none)
point_score       (N,) f32     Q of the point's label (0: none / negative)
mask              (N,) u8      M(p) = 1[Q > 0]
grasp_pose        (G,7) f64    positive scene grasps, camera frame: x y z qx qy qz qw
grasp_width       (G,) f32     width (m)
grasp_score       (G,) f32     Ferrari-Canny Q
grasp_contacts    (G,2,3) f32  contact points c1, c2 (camera frame)
grasp_object      (G,) i32     scene object index of each grasp
object_ids        (M,) i32     index of each scene object in the manifest's object list
object_poses      (M,4,4) f64  T_world_object after settling
object_in_bin     (M,) bool    False for objects that fell out of the bin
camera_pose       (1,4,4) f64  T_world_camera
scene_index       (1,) i64     index of the scene in the dataset (its seed is derived from it)
================  ===========  ==============================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from gpr_ros.core.grasp import STAGE_ANNOTATION, Grasps

SCENE_KEYS = ('points', 'point_object', 'point_class', 'point_grasp', 'point_score', 'mask',
              'grasp_pose', 'grasp_width', 'grasp_score', 'grasp_contacts', 'grasp_object',
              'object_ids', 'object_poses', 'object_in_bin', 'camera_pose', 'scene_index')


def scene_grasps(scene: dict[str, NDArray[Any]]) -> Grasps:
    """The positive grasps of a stored scene (camera frame, score = Q, with contacts).

    :param scene: a scene dict.
    :return: the grasps.
    """
    if len(scene['grasp_pose']) == 0:
        return Grasps.empty()
    return Grasps.from_poses(np.asarray(scene['grasp_pose'], dtype=np.float64),
                             width=np.asarray(scene['grasp_width'], dtype=np.float64),
                             score=np.asarray(scene['grasp_score'], dtype=np.float64),
                             stage=STAGE_ANNOTATION,
                             contacts=np.asarray(scene['grasp_contacts'], dtype=np.float64))


def grasp_arrays(grasps: Grasps) -> dict[str, NDArray[Any]]:
    """The ``grasp_*`` arrays of a scene dict for a grasp set with contacts."""
    n = len(grasps)
    contacts = (grasps.contacts if grasps.contacts is not None
                else np.repeat(grasps.center[:, None, :], 2, axis=1))
    return {'grasp_pose': grasps.poses.reshape(n, 7).astype(np.float64),
            'grasp_width': grasps.width.astype(np.float32),
            'grasp_score': grasps.score.astype(np.float32),
            'grasp_contacts': contacts.reshape(n, 2, 3).astype(np.float32)}
