"""DetectionPipeline in-process (no DDS): config checks, frames, filters, errors, markers.

The fixture cloud is a real simulated scene: three objects dropped into the MuJoCo bin and
observed by the simulated PhoXi (61,504 points), run through the shipped model.
"""

from __future__ import annotations

import copy
from pathlib import Path

from builtin_interfaces.msg import Time
import numpy as np
from numpy.typing import NDArray
import pytest
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import PointCloud2
import torch
import trimesh
from visualization_msgs.msg import Marker

from gpr_msgs.msg import GraspArray
from gpr_msgs.srv import DetectGrasps
from gpr_ros.core.errors import GeometryError
from gpr_ros.core.grasp import STAGE_1, STAGE_2, Grasps, GripperModel
from gpr_ros.core.grasp.transforms import pose_to_matrix
from gpr_ros.core.grasp.wireframe import SEGMENTS_PER_GRASP, gripper_wireframe
from gpr_ros.core.network.config import DEFAULT_MIN_SCORE
from gpr_ros.core.network.inference import GraspDetector
from gpr_ros.core.sim.world import BinWorld, SceneObjectSpec
from gpr_ros.ros.conversions import array_msg_to_grasps, xyz_to_cloud
from gpr_ros.ros.detection import (
    DetectionConfig,
    DetectionConfigError,
    DetectionError,
    DetectionPipeline,
    TransformUnavailableError,
    default_model_path,
    error_name,
)

R = DetectGrasps.Response
STAMP = Time(sec=1234, nanosec=5678)
#: camera pose in a 'world' frame: 1.3 m up, turned 90 degrees about z.
CAMERA_IN_WORLD = (0.1, -0.2, 1.3, 0.0, 0.0, float(np.sin(np.pi / 4)), float(np.cos(np.pi / 4)))


def _object(name: str, mesh: trimesh.Trimesh) -> SceneObjectSpec:
    vertices = np.asarray(mesh.vertices) - mesh.center_mass
    return SceneObjectSpec(name=name, parts=((vertices, np.asarray(mesh.faces)),), mass=0.1)


@pytest.fixture(scope='module', autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # the CPUs are shared; the pipeline sets the same


@pytest.fixture(scope='module')
def points() -> NDArray[np.float32]:
    """A simulated bin scene: two boxes and a cylinder, observed without noise."""
    world = BinWorld()
    world.drop_objects((_object('box_a', trimesh.creation.box((0.06, 0.04, 0.03))),
                        _object('box_b', trimesh.creation.box((0.08, 0.03, 0.03))),
                        _object('cyl', trimesh.creation.cylinder(radius=0.02, height=0.07))),
                       np.random.default_rng(0))
    return world.observe().points


@pytest.fixture(scope='module')
def cloud(points: NDArray[np.float32]) -> PointCloud2:
    return xyz_to_cloud(points, frame_id='camera_optical_frame', stamp=STAMP)


@pytest.fixture(scope='module')
def direct(points: NDArray[np.float32]) -> Grasps:
    """What GraspDetector.detect gives on the same points (camera frame) with the pipeline's
    default threshold."""
    detector = GraspDetector.from_checkpoint(default_model_path(), seed=0)
    grasps = detector.detect(points, max_grasps=20, min_score=DEFAULT_MIN_SCORE)
    assert len(grasps) >= 3  # the scene must be worth testing on
    return grasps


@pytest.fixture(scope='module')
def pipeline() -> DetectionPipeline:
    return DetectionPipeline(DetectionConfig())


def _error(pipeline: DetectionPipeline, cloud: PointCloud2) -> DetectionError:
    with pytest.raises(DetectionError) as info:
        pipeline.detect(cloud)
    return info.value


# --- core helpers ----------------------------------------------------------------------------

def test_pose_to_matrix() -> None:
    np.testing.assert_allclose(pose_to_matrix((0, 0, 0, 0, 0, 0, 1)), np.eye(4))
    mat = pose_to_matrix(CAMERA_IN_WORLD)
    np.testing.assert_allclose(mat[:3, 3], CAMERA_IN_WORLD[:3])
    np.testing.assert_allclose(mat[:3, :3] @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
    # a rounded quaternion is normalized
    np.testing.assert_allclose(pose_to_matrix((0, 0, 0, 0, 0, 0.7071, 0.7071))[:3, :3],
                               mat[:3, :3], atol=1e-4)
    for bad in ((0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0), (0, 0, 0, 1, 0, 0, 1),
                (0, 0, float('nan'), 0, 0, 0, 1)):
        with pytest.raises(GeometryError):
            pose_to_matrix(bad)


def test_gripper_wireframe_outlines_fingers_at_the_width() -> None:
    gripper = GripperModel()
    grasps = Grasps(center=[[0.0, 0.0, 1.0], [0.1, 0.0, 1.0]], approach=[[0, 0, 1], [1, 0, 0]],
                    closing=[[1, 0, 0], [0, 1, 0]], width=[0.02, 0.04], score=[0.9, 0.5])
    seg = gripper_wireframe(grasps, gripper)
    assert seg.shape == (2, SEGMENTS_PER_GRASP, 2, 3)
    for i in range(2):  # in grasp coordinates: fingers at |y| in [w/2, w/2 + thickness]
        local = (seg[i].reshape(-1, 3) - grasps.center[i]) @ grasps.rotations[i]
        fingers = np.abs(local[:48, 1])
        half = grasps.width[i] / 2
        assert fingers.min() == pytest.approx(half)
        assert fingers.max() == pytest.approx(half + gripper.finger_thickness)
        assert local[:48, 0].max() == pytest.approx(0.0, abs=1e-12)  # fingertips at the centre
        assert local[:, 0].min() == pytest.approx(-gripper.finger_depth - gripper.palm_depth)
        lengths = np.linalg.norm(seg[i, :, 0] - seg[i, :, 1], axis=1)
        assert (lengths > 0).all()
    assert gripper_wireframe(Grasps.empty(), gripper).shape == (0, SEGMENTS_PER_GRASP, 2, 3)


# --- configuration ---------------------------------------------------------------------------

@pytest.mark.parametrize('kwargs', [
    {'device': 'tpu'}, {'device': 'cuda:x'}, {'stage': 3}, {'stage': True}, {'max_grasps': 0},
    {'max_grasps': 1001}, {'min_score': 1.5}, {'min_score': float('nan')}, {'min_points': 0},
    {'max_width': -0.01}, {'max_width': float('inf')}, {'threads': 0}, {'seed': -1},
    {'pose_passes': 0}, {'pose_passes': 9}, {'pose_passes': 1.5},
    {'model_path': None}, {'camera_to_output': (0.0, 0.0, 1.0), 'output_frame': 'world'},
    {'camera_to_output': (0, 0, 0, 0, 0, 0, 1)},  # extrinsics without an output frame
    {'camera_to_output': (0, 0, 0, 0, 0, 0, 2), 'output_frame': 'world'},
    {'camera_to_output': ('a',) * 7, 'output_frame': 'world'},
    {'camera_to_output': (0, 0, 0, 0, 0, 0, 1), 'output_frame': 'cam', 'cloud_frame': 'cam'},
])
def test_config_rejects_invalid_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(DetectionConfigError):
        DetectionConfig(**kwargs)  # type: ignore[arg-type]


def test_config_defaults_and_extrinsics() -> None:
    assert DetectionConfig().extrinsics is None
    cfg = DetectionConfig(output_frame='world', camera_to_output=[0, 0, 1, 0, 0, 0, 1],
                          device='cuda:1')
    assert cfg.camera_to_output == (0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert cfg.extrinsics is not None and cfg.extrinsics[2, 3] == 1.0
    numpy_values = DetectionConfig(max_grasps=np.int64(5), min_score=np.float32(0.5))
    assert type(numpy_values.max_grasps) is int and type(numpy_values.min_score) is float


def test_model_errors() -> None:
    with pytest.raises(DetectionError) as info:
        DetectionPipeline(DetectionConfig(model_path='/nonexistent/model.pt'))
    assert info.value.code == R.MODEL_ERROR and '/nonexistent/model.pt' in str(info.value)


def test_corrupt_model_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(DetectionError) as info:
        DetectionPipeline(DetectionConfig(model_path=str(bad)))
    assert info.value.code == R.MODEL_ERROR and info.value.name == 'MODEL_ERROR'


@pytest.mark.skipif(torch.cuda.is_available(), reason='this machine has CUDA')
def test_cuda_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(DetectionConfigError, match='CUDA is not available'):
        DetectionPipeline(DetectionConfig(device='cuda'))


# --- detection -------------------------------------------------------------------------------

def test_detect_matches_the_detector_in_the_cloud_frame(
        pipeline: DetectionPipeline, cloud: PointCloud2, direct: Grasps) -> None:
    msg = pipeline.detect(cloud)
    assert msg.header.frame_id == 'camera_optical_frame'
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (STAMP.sec, STAMP.nanosec)
    grasps = array_msg_to_grasps(msg)
    assert len(grasps) == len(direct)
    np.testing.assert_allclose(grasps.center, direct.center, atol=1e-6)
    np.testing.assert_allclose(grasps.approach, direct.approach, atol=1e-6)
    np.testing.assert_allclose(grasps.score, direct.score, atol=1e-6)
    assert (np.diff(grasps.score) <= 0).all()  # best first
    assert (grasps.width <= pipeline.gripper.max_width + 1e-9).all()
    assert (grasps.stage == STAGE_2).all()
    t = msg.timing
    assert t.num_input_points == cloud.width * cloud.height
    assert t.num_used_points == pipeline.detector.config.num_points
    assert t.device == 'cpu' and t.model == 'gpr_default.pt'
    # the shipped model's confidence is the accuracy-aware one: the node's 0.1 suits it
    assert pipeline.suggested_min_score == DEFAULT_MIN_SCORE == 0.1
    stages = (t.preprocess, t.backbone, t.stage1, t.nms, t.stage2, t.postprocess)
    assert all(s > 0 for s in stages)
    assert t.total >= sum(stages) * (1 - 1e-4)
    again = array_msg_to_grasps(pipeline.detect(cloud))  # same cloud, same grasps
    np.testing.assert_array_equal(again.center, grasps.center)


def test_extrinsics_move_the_grasps_into_the_output_frame(
        cloud: PointCloud2, direct: Grasps) -> None:
    pipeline = DetectionPipeline(DetectionConfig(output_frame='world',
                                                 camera_to_output=CAMERA_IN_WORLD))
    msg = pipeline.detect(cloud)
    assert msg.header.frame_id == 'world'
    grasps = array_msg_to_grasps(msg)
    rot = Rotation.from_quat(CAMERA_IN_WORLD[3:]).as_matrix()
    np.testing.assert_allclose(grasps.center, direct.center @ rot.T + CAMERA_IN_WORLD[:3],
                               atol=1e-6)
    np.testing.assert_allclose(grasps.approach, direct.approach @ rot.T, atol=1e-6)
    np.testing.assert_allclose(grasps.width, direct.width, atol=1e-9)
    np.testing.assert_allclose(grasps.center[:, 2], direct.center[:, 2] + 1.3, atol=1e-6)
    # a cloud already in the output frame passes through unchanged
    in_world = copy.deepcopy(cloud)
    in_world.header.frame_id = 'world'
    same = array_msg_to_grasps(pipeline.detect(in_world))
    np.testing.assert_allclose(same.center, direct.center, atol=1e-6)


def test_a_transform_lookup_serves_clouds_without_extrinsics(
        cloud: PointCloud2, direct: Grasps) -> None:
    # the node passes tf2 (gpr_ros.ros.tf.TfLookup) here on a full ROS 2 install
    asked: list[tuple[str, str, object]] = []

    def lookup(target: str, source: str, stamp: object) -> NDArray[np.float64]:
        asked.append((target, source, stamp))
        if source != 'camera_optical_frame':
            raise TransformUnavailableError(f'"{source}" passed to lookupTransform does not '
                                            'exist')
        return pose_to_matrix(CAMERA_IN_WORLD)

    pipeline = DetectionPipeline(DetectionConfig(output_frame='world'), lookup)
    grasps = array_msg_to_grasps(pipeline.detect(cloud))
    rot = Rotation.from_quat(CAMERA_IN_WORLD[3:]).as_matrix()
    np.testing.assert_allclose(grasps.center, direct.center @ rot.T + CAMERA_IN_WORLD[:3],
                               atol=1e-6)
    assert asked == [('world', 'camera_optical_frame', STAMP)]  # at the cloud's stamp
    other = copy.deepcopy(cloud)
    other.header.frame_id = 'left_camera'
    err = _error(pipeline, other)
    assert err.code == R.TRANSFORM_ERROR
    assert "'left_camera'" in str(err) and 'does not exist' in str(err)
    # static extrinsics win over the lookup
    static = DetectionPipeline(DetectionConfig(output_frame='world',
                                               camera_to_output=CAMERA_IN_WORLD), lookup)
    static.detect(other)
    assert len(asked) == 2


def test_max_width_drops_wider_grasps(cloud: PointCloud2, direct: Grasps) -> None:
    limit = float(np.median(direct.width))
    pipeline = DetectionPipeline(DetectionConfig(max_width=limit))
    grasps = array_msg_to_grasps(pipeline.detect(cloud))
    assert (grasps.width <= limit).all()
    np.testing.assert_allclose(grasps.center, direct[direct.width <= limit].center, atol=1e-6)


def test_request_limits(pipeline: DetectionPipeline, cloud: PointCloud2,
                        direct: Grasps) -> None:
    assert len(pipeline.detect(cloud, max_grasps=2).grasps) <= 2
    threshold = float(np.median(direct.score))
    scores = [g.score for g in pipeline.detect(cloud, min_score=threshold).grasps]
    assert scores and min(scores) >= threshold - 1e-6
    # 0: the configured threshold; negative: none
    strict = DetectionPipeline(DetectionConfig(min_score=threshold, max_grasps=100))
    kept = [g.score for g in strict.detect(cloud).grasps]
    assert kept and min(kept) >= threshold - 1e-6
    everything = [g.score for g in strict.detect(cloud, min_score=-1.0).grasps]
    assert len(everything) > len(kept) and min(everything) < threshold
    with pytest.raises(DetectionError) as info:
        pipeline.detect(cloud, min_score=float('nan'))
    assert info.value.code == R.UNKNOWN


def test_stage_one_gives_proposals(cloud: PointCloud2) -> None:
    msg = DetectionPipeline(DetectionConfig(stage=1, max_grasps=5)).detect(cloud)
    assert 0 < len(msg.grasps) <= 5
    assert {g.stage for g in msg.grasps} == {STAGE_1}


# --- errors ----------------------------------------------------------------------------------

def test_malformed_clouds_are_invalid(pipeline: DetectionPipeline,
                                      points: NDArray[np.float32]) -> None:
    short = xyz_to_cloud(points[:500], frame_id='cam')
    short.data = short.data[:-4]  # data length != row_step * height
    err = _error(pipeline, short)
    assert err.code == R.INVALID_CLOUD and 'bytes' in str(err)
    no_z = xyz_to_cloud(points[:500], frame_id='cam')
    no_z.fields = no_z.fields[:2]
    err = _error(pipeline, no_z)
    assert err.code == R.INVALID_CLOUD and 'no z field' in str(err)
    no_frame = xyz_to_cloud(points[:500], frame_id='cam')
    no_frame.header.frame_id = ''
    assert _error(pipeline, no_frame).code == R.INVALID_CLOUD


def test_too_few_points(pipeline: DetectionPipeline, points: NDArray[np.float32]) -> None:
    err = _error(pipeline, xyz_to_cloud(points[:99], frame_id='cam'))
    assert err.code == R.TOO_FEW_POINTS and '99 finite points' in str(err)
    assert _error(pipeline, xyz_to_cloud(np.zeros((0, 3)), frame_id='cam')).code == \
        R.TOO_FEW_POINTS
    nan = np.full((20, 30, 3), np.nan, dtype=np.float32)
    assert _error(pipeline, xyz_to_cloud(nan, frame_id='cam')).code == R.TOO_FEW_POINTS


def test_frame_mismatch_is_a_transform_error(cloud: PointCloud2) -> None:
    no_extrinsics = DetectionPipeline(DetectionConfig(output_frame='world'))
    err = _error(no_extrinsics, cloud)
    assert err.code == R.TRANSFORM_ERROR and 'camera_to_output' in str(err)
    other_camera = DetectionPipeline(DetectionConfig(cloud_frame='left_camera'))
    assert _error(other_camera, cloud).code == R.TRANSFORM_ERROR


def test_error_names() -> None:
    assert error_name(R.BUSY) == 'BUSY' and error_name(99) == 'code 99'


# --- markers ---------------------------------------------------------------------------------

def test_markers_draw_each_grasp_coloured_by_score(pipeline: DetectionPipeline,
                                                    cloud: PointCloud2) -> None:
    msg = pipeline.detect(cloud)
    markers = pipeline.markers(msg, ns='test').markers
    assert markers[0].action == Marker.DELETEALL
    assert len(markers) == len(msg.grasps) + 1
    grasps = array_msg_to_grasps(msg)
    for i, marker in enumerate(markers[1:]):
        assert marker.type == Marker.LINE_LIST and marker.ns == 'test' and marker.id == i
        assert marker.header.frame_id == msg.header.frame_id
        assert len(marker.points) == 2 * SEGMENTS_PER_GRASP
        xyz = np.array([(p.x, p.y, p.z) for p in marker.points])
        assert np.linalg.norm(xyz - grasps.center[i], axis=1).max() < 0.1
    greens = [m.color.g for m in markers[1:]]
    assert greens == sorted(greens, reverse=True)  # best first, greenest first
    assert markers[1].color.g == pytest.approx(msg.grasps[0].score)
    only_delete = pipeline.markers(GraspArray(header=msg.header)).markers
    assert [m.action for m in only_delete] == [Marker.DELETEALL]
