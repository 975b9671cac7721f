"""GPR grasp detection at the message level: ``PointCloud2`` in, ``GraspArray`` out.

:class:`DetectionPipeline` is shared by the ``gpr_inference`` node and the rosbag replay tool.
It converts the cloud (:func:`~gpr_ros.ros.conversions.cloud_to_xyz`), runs
:class:`~gpr_ros.core.network.inference.GraspDetector` in the cloud's frame, moves the grasps
into the output frame with static extrinsics, drops grasps wider than ``max_width`` and builds
the ``GraspArray`` (best first, stamped with the cloud's stamp, timing filled). Failures raise
:class:`DetectionError`, whose ``code`` is the ``gpr_msgs/srv/DetectGrasps`` error constant a
service answers with.

Frames: with ``output_frame=''`` grasps stay in the cloud's frame. With an ``output_frame``,
clouds already in that frame pass through unchanged and clouds in any other frame are moved
with ``camera_to_output`` (the pose of the cloud frame in ``output_frame``,
``[x, y, z, qx, qy, qz, qw]``); without it they are rejected with ``TRANSFORM_ERROR``, as are
clouds whose frame is not ``cloud_frame`` when that is set (the extrinsics belong to one
camera).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
import math
import numbers
from pathlib import Path
import re
import time

from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
import numpy as np
from numpy.typing import NDArray
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from gpr_msgs.msg import GraspArray, InferenceTiming
from gpr_msgs.srv import DetectGrasps
from gpr_ros.core.errors import ConfigError, GeometryError, GprError
from gpr_ros.core.grasp import STAGE_1, STAGE_2
from gpr_ros.core.grasp.transforms import pose_to_matrix
from gpr_ros.core.grasp.wireframe import gripper_wireframe
from gpr_ros.core.network.config import (
    DEFAULT_MIN_SCORE,
    DEFAULT_POSE_PASSES,
    MAX_POSE_PASSES,
    default_min_score,
)
from gpr_ros.core.network.errors import NetworkError
from gpr_ros.ros.conversions import array_msg_to_grasps, cloud_to_xyz, grasps_to_array_msg
from gpr_ros.ros.errors import CloudFormatError

__all__ = [
    'MAX_GRASPS_LIMIT',
    'DetectionConfig',
    'DetectionConfigError',
    'DetectionError',
    'DetectionPipeline',
    'default_model_path',
    'error_name',
]

#: Upper bound of ``max_grasps`` (config and requests): more proposals than this are never
#: refined in one call.
MAX_GRASPS_LIMIT = 1000
_DEVICE = re.compile(r'cpu|cuda(:\d+)?')
#: Line width of the gripper wireframes in RViz, m.
MARKER_LINE_WIDTH = 0.002


#: ``lookup(target_frame, source_frame, stamp)`` -> 4x4 transform of ``source_frame`` in
#: ``target_frame`` at ``stamp`` (e.g. tf2: :class:`gpr_ros.ros.tf.TfLookup`); raises
#: :class:`TransformUnavailableError` with the reason when there is none.
TransformLookup = Callable[[str, str, object], NDArray[np.float64]]


class TransformUnavailableError(GprError):
    """A :data:`TransformLookup` has no transform (the message says why)."""


def default_model_path() -> Path:
    """The shipped model, ``share_dir()/models/gpr_default.pt``."""
    from gpr_ros.resources import share_dir

    return share_dir() / 'models' / 'gpr_default.pt'


def error_name(code: int) -> str:
    """The name of a ``DetectGrasps.Response`` error constant (``'NO_CLOUD'``, ...).

    :param code: the constant's value.
    :return: its name, or ``'code N'`` for an unknown value.
    """
    for name in ('NONE', 'UNKNOWN', 'NO_CLOUD', 'INVALID_CLOUD', 'TOO_FEW_POINTS',
                 'TRANSFORM_ERROR', 'MODEL_ERROR', 'TIMEOUT', 'BUSY'):
        if getattr(DetectGrasps.Response, name) == code:
            return name
    return f'code {code}'


class DetectionConfigError(ConfigError):
    """An invalid :class:`DetectionConfig` value, or a device this machine does not have."""


class DetectionError(GprError):
    """Grasp detection failed for one cloud (or the model could not be loaded).

    :ivar code: the ``DetectGrasps.Response`` error constant (``NO_CLOUD``, ``INVALID_CLOUD``,
        ``TOO_FEW_POINTS``, ``TRANSFORM_ERROR``, ``MODEL_ERROR``, ...).
    """

    def __init__(self, code: int, message: str) -> None:
        """Create the error.

        :param code: the ``DetectGrasps.Response`` error constant.
        :param message: what went wrong and what was expected.
        """
        super().__init__(message)
        self.code = int(code)

    @property
    def name(self) -> str:
        """The name of :attr:`code` (e.g. ``'INVALID_CLOUD'``)."""
        return error_name(self.code)


@dataclass(frozen=True)
class DetectionConfig:
    """What :class:`DetectionPipeline` runs; validated on construction.

    :ivar model_path: GPR checkpoint; ``''`` is the shipped ``models/gpr_default.pt``.
    :ivar device: ``'cpu'``, ``'cuda'`` or ``'cuda:N'`` (checked against the machine when the
        pipeline is built).
    :ivar stage: 2: refined grasps (GPR); 1: stage-1 proposals only.
    :ivar max_grasps: grasps returned per cloud when a call asks for 0, 1 ..
        :data:`MAX_GRASPS_LIMIT`.
    :ivar proposals: stage-1 proposals kept after NMS and refined per cloud, best
        ``max_grasps`` of them returned; 0: the model's ``proposals_test`` (100, the paper's).
        Fewer is faster but lets stage 2 rank fewer candidates. A call asking for more grasps
        gets that many proposals.
    :ivar pose_passes: stage-2 passes over the pose, 1 .. 8 (default 2; 1: the paper's single
        refinement; :meth:`~gpr_ros.core.network.model.GPRNet.refine_poses`).
    :ivar min_score: drop grasps scoring below this when a call asks for 0, in [0, 1]
        (default :data:`~gpr_ros.core.network.config.DEFAULT_MIN_SCORE`, 0.1).
    :ivar min_points: clouds with fewer finite points are rejected (``TOO_FEW_POINTS``).
    :ivar output_frame: frame of the published grasps; ``''``: the cloud's frame.
    :ivar camera_to_output: pose ``[x, y, z, qx, qy, qz, qw]`` of the cloud frame in
        ``output_frame`` (static extrinsics); ``()``: none, the pipeline's lookup (tf2 in the
        node) gives the transform, or clouds must be in ``output_frame`` (or
        ``output_frame`` empty).
    :ivar max_width: grasps wider than this are dropped, m; 0: the model gripper's opening.
    :ivar threads: torch CPU threads (process-wide setting).
    :ivar seed: detector seed (same cloud, same grasps).
    :ivar cloud_frame: frame the clouds must be in; ``''``: any frame.
    :raises DetectionConfigError: on an invalid value.
    """

    model_path: str = ''
    device: str = 'cpu'
    stage: int = 2
    max_grasps: int = 20
    proposals: int = 0
    pose_passes: int = DEFAULT_POSE_PASSES
    min_score: float = DEFAULT_MIN_SCORE
    min_points: int = 100
    output_frame: str = ''
    camera_to_output: tuple[float, ...] = ()
    max_width: float = 0.0
    threads: int = 1
    seed: int = 0
    cloud_frame: str = ''

    def __post_init__(self) -> None:
        """Check every value; numbers become ``int``/``float``, ``camera_to_output`` a tuple."""
        _check_type('model_path', self.model_path, str)
        _check_type('device', self.device, str)
        _check_type('output_frame', self.output_frame, str)
        _check_type('cloud_frame', self.cloud_frame, str)
        if not _DEVICE.fullmatch(self.device):
            raise DetectionConfigError(
                f"device is {self.device!r}; expected 'cpu', 'cuda' or 'cuda:N'")
        for name in ('stage', 'max_grasps', 'proposals', 'pose_passes', 'min_points', 'threads',
                     'seed'):
            _check_type(name, getattr(self, name), numbers.Integral)
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.stage not in (STAGE_1, STAGE_2):
            raise DetectionConfigError(
                f'stage is {self.stage}; expected {STAGE_2} (refined) or {STAGE_1} (proposals)')
        _check_int_range('max_grasps', self.max_grasps, 1, MAX_GRASPS_LIMIT)
        _check_int_range('proposals', self.proposals, 0, MAX_GRASPS_LIMIT)
        _check_int_range('pose_passes', self.pose_passes, 1, MAX_POSE_PASSES)
        _check_int_range('min_points', self.min_points, 1, None)
        _check_int_range('threads', self.threads, 1, 1024)
        _check_int_range('seed', self.seed, 0, 2**63 - 1)
        for name in ('min_score', 'max_width'):
            value = getattr(self, name)
            _check_type(name, value, numbers.Real)
            value = float(value)
            object.__setattr__(self, name, value)
            if not math.isfinite(value) or value < 0:
                raise DetectionConfigError(f'{name} is {value}; expected a finite value >= 0')
        if self.min_score > 1:
            raise DetectionConfigError(f'min_score is {self.min_score}; expected a value in '
                                       '[0, 1]')
        try:
            extrinsics = tuple(float(v) for v in self.camera_to_output)
        except (TypeError, ValueError):
            raise DetectionConfigError(
                f'camera_to_output is {self.camera_to_output!r}; expected 7 numbers '
                '[x, y, z, qx, qy, qz, qw] or none') from None
        object.__setattr__(self, 'camera_to_output', extrinsics)
        if extrinsics:
            if not self.output_frame:
                raise DetectionConfigError(
                    'camera_to_output is set but output_frame is empty; name the frame the '
                    'extrinsics map into')
            try:
                pose_to_matrix(extrinsics)
            except GeometryError as err:
                raise DetectionConfigError(f'camera_to_output: {err}') from None
        if self.cloud_frame and self.cloud_frame == self.output_frame and extrinsics:
            raise DetectionConfigError(
                f'cloud_frame and output_frame are both {self.output_frame!r} but '
                'camera_to_output is set; remove the extrinsics or fix the frame names')

    @property
    def extrinsics(self) -> NDArray[np.float64] | None:
        """``camera_to_output`` as a 4x4 transform, or None when not set."""
        return pose_to_matrix(self.camera_to_output) if self.camera_to_output else None


_KINDS: dict[type, str] = {str: 'a string', numbers.Integral: 'an integer',
                           numbers.Real: 'a number'}


def _check_type(name: str, value: object, kind: type) -> None:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise DetectionConfigError(f'{name} is {value!r}; expected {_KINDS[kind]}')


def _check_int_range(name: str, value: int, lo: int, hi: int | None) -> None:
    if value < lo or (hi is not None and value > hi):
        bound = f'in [{lo}, {hi}]' if hi is not None else f'>= {lo}'
        raise DetectionConfigError(f'{name} is {value}; expected an integer {bound}')


class DetectionPipeline:
    """Detect grasps in ``PointCloud2`` messages with a GPR model loaded once.

    Not thread-safe: call :meth:`detect` from one thread at a time (the node runs it in its
    worker thread).
    """

    def __init__(self, config: DetectionConfig,
                 lookup: TransformLookup | None = None) -> None:
        """Load the model and check the device.

        :param config: the validated configuration.
        :param lookup: transforms for clouds not in ``output_frame`` when ``camera_to_output``
            is not set (the node passes tf2 on a full ROS install); None: none.
        :raises DetectionConfigError: when the device is CUDA and this machine has none.
        :raises DetectionError: ``MODEL_ERROR`` when the checkpoint cannot be loaded.
        """
        import torch

        from gpr_ros.core.network.errors import CheckpointError
        from gpr_ros.core.network.inference import GraspDetector

        self.config = config
        if config.device.startswith('cuda'):
            if not torch.cuda.is_available():
                raise DetectionConfigError(
                    f'device is {config.device!r} but CUDA is not available (torch '
                    f'{torch.__version__}, built with CUDA {torch.version.cuda}); use '
                    "device 'cpu'")
            index = int(config.device.partition(':')[2] or 0)
            if index >= torch.cuda.device_count():
                raise DetectionConfigError(
                    f'device is {config.device!r} but this machine has '
                    f'{torch.cuda.device_count()} CUDA device(s)')
        torch.set_num_threads(config.threads)
        self.model_path = Path(config.model_path).expanduser() if config.model_path \
            else default_model_path()
        try:
            self.detector = GraspDetector.from_checkpoint(self.model_path, config.device,
                                                          seed=config.seed,
                                                          pose_passes=config.pose_passes)
        except (CheckpointError, OSError, RuntimeError) as err:
            raise DetectionError(DetectGrasps.Response.MODEL_ERROR,
                                 f'cannot load the GPR model {str(self.model_path)!r}: '
                                 f'{err}') from None
        self.gripper = self.detector.config.gripper
        self.max_width = config.max_width or self.gripper.max_width
        #: the minimum score that suits this model's confidence (nodes warn below it)
        self.suggested_min_score = default_min_score(self.detector.config)
        self._extrinsics = config.extrinsics
        self._lookup = lookup

    def output_frame(self, cloud_frame: str) -> str:
        """The frame the grasps of a cloud in ``cloud_frame`` are published in."""
        return self.config.output_frame or cloud_frame

    def _transform_for(self, frame_id: str, stamp: object = None) -> NDArray[np.float64] | None:
        """The transform cloud frame -> output frame (None: identity): ``camera_to_output``
        when set, else the pipeline's lookup (tf2) at the cloud's stamp.

        :raises DetectionError: ``INVALID_CLOUD`` or ``TRANSFORM_ERROR``.
        """
        cfg = self.config
        if not frame_id:
            raise DetectionError(DetectGrasps.Response.INVALID_CLOUD,
                                 'the cloud has an empty header.frame_id; every cloud must '
                                 'name its frame')
        if cfg.cloud_frame and frame_id != cfg.cloud_frame:
            raise DetectionError(DetectGrasps.Response.TRANSFORM_ERROR,
                                 f'the cloud is in frame {frame_id!r} but this pipeline '
                                 f'expects clouds in {cfg.cloud_frame!r} (cloud_frame)')
        if not cfg.output_frame or frame_id == cfg.output_frame:
            return None
        if self._extrinsics is not None:
            return self._extrinsics
        if self._lookup is None:
            raise DetectionError(DetectGrasps.Response.TRANSFORM_ERROR,
                                 f'no transform from the cloud frame {frame_id!r} to the '
                                 f'output frame {cfg.output_frame!r}: set camera_to_output, '
                                 'publish the cloud in the output frame, or (full ROS 2 '
                                 'install) let tf2 provide it (use_tf)')
        try:
            return self._lookup(cfg.output_frame, frame_id, stamp)
        except TransformUnavailableError as err:
            raise DetectionError(DetectGrasps.Response.TRANSFORM_ERROR,
                                 f'no transform from the cloud frame {frame_id!r} to the '
                                 f'output frame {cfg.output_frame!r}: {err}') from None

    def detect(self, cloud: PointCloud2, max_grasps: int = 0,
               min_score: float = 0.0) -> GraspArray:
        """Detect grasps in one cloud.

        :param cloud: the cloud; ``x``, ``y``, ``z`` of any numeric type, NaN points allowed.
        :param max_grasps: at most this many grasps (capped at :data:`MAX_GRASPS_LIMIT`);
            0: ``config.max_grasps``.
        :param min_score: drop grasps scoring below this; 0: ``config.min_score``; negative:
            keep all.
        :return: grasps best first in :meth:`output_frame`, ``header.stamp`` the cloud's,
            ``timing`` filled (seconds; ``total`` covers this whole call).
        :raises DetectionError: ``INVALID_CLOUD`` (malformed cloud, no frame),
            ``TOO_FEW_POINTS``, ``TRANSFORM_ERROR`` or ``MODEL_ERROR``; ``UNKNOWN`` for a
            negative ``max_grasps`` or a non-finite ``min_score``.
        """
        t0 = time.perf_counter()
        cfg = self.config
        if max_grasps < 0 or not math.isfinite(min_score):
            raise DetectionError(DetectGrasps.Response.UNKNOWN,
                                 f'invalid request: max_grasps {max_grasps} (expected >= 0), '
                                 f'min_score {min_score} (expected finite)')
        limit = min(int(max_grasps) or cfg.max_grasps, MAX_GRASPS_LIMIT)
        if min_score == 0:
            threshold = cfg.min_score
        else:  # negative: keep all
            threshold = max(float(min_score), 0.0)
        transform = self._transform_for(cloud.header.frame_id, cloud.header.stamp)
        try:
            points = cloud_to_xyz(cloud)
        except CloudFormatError as err:
            raise DetectionError(DetectGrasps.Response.INVALID_CLOUD,
                                 f'malformed PointCloud2: {err}') from None
        if len(points) < cfg.min_points:
            raise DetectionError(DetectGrasps.Response.TOO_FEW_POINTS,
                                 f'the cloud has {len(points)} finite points of '
                                 f'{cloud.width * cloud.height}; need at least {cfg.min_points}')
        t1 = time.perf_counter()
        try:
            proposals = max(limit, cfg.proposals) if cfg.proposals else None
            grasps = self.detector.detect(points, max_grasps=limit, proposals=proposals,
                                          min_score=threshold, stage=cfg.stage)
        except (NetworkError, RuntimeError, ValueError) as err:
            raise DetectionError(DetectGrasps.Response.MODEL_ERROR,
                                 f'the model failed: {err}') from None
        t2 = time.perf_counter()
        timing = dict(self.detector.last_timing)
        if transform is not None:
            grasps = grasps.transformed(transform)
        if len(grasps) and cfg.max_width > 0:
            grasps = grasps[grasps.width <= self.max_width]
        header = Header(stamp=cloud.header.stamp,
                        frame_id=self.output_frame(cloud.header.frame_id))
        msg = grasps_to_array_msg(grasps, header)
        t3 = time.perf_counter()
        msg.timing = InferenceTiming(
            preprocess=float(timing['preprocess']) + (t1 - t0),
            backbone=float(timing['backbone']), stage1=float(timing['stage1']),
            nms=float(timing['nms']), stage2=float(timing['stage2']),
            postprocess=float(timing['postprocess']) + (t3 - t2), total=t3 - t0,
            num_input_points=cloud.width * cloud.height,
            num_used_points=int(timing['num_used_points']), device=str(timing['device']),
            model=str(timing['model']))
        return msg

    def markers(self, grasps: GraspArray, ns: str = 'gpr_grasps') -> MarkerArray:
        """RViz wireframes of the gripper (fingers and palm at each grasp's width).

        The first marker is a ``DELETEALL`` (it clears the previous set); then one
        ``LINE_LIST`` per grasp, ``id`` its rank, coloured by score from red (0) to green (1).

        :param grasps: grasps as published (their header gives frame and stamp).
        :param ns: marker namespace.
        :return: the markers.
        :raises GraspMessageError: when a grasp message is invalid.
        """
        header = grasps.header
        out = MarkerArray()
        out.markers.append(Marker(header=header, ns=ns, action=Marker.DELETEALL))
        core = array_msg_to_grasps(grasps)
        segments = gripper_wireframe(core, self.gripper)
        for i in range(len(core)):
            score = float(np.clip(core.score[i], 0.0, 1.0))
            marker = Marker(header=header, ns=ns, id=i, type=Marker.LINE_LIST,
                            action=Marker.ADD, lifetime=Duration(), frame_locked=False)
            marker.pose.orientation.w = 1.0
            marker.scale.x = MARKER_LINE_WIDTH
            marker.color = ColorRGBA(r=1.0 - score, g=score, b=0.0, a=1.0)
            marker.points = _points(segments[i].reshape(-1, 3))
            out.markers.append(marker)
        return out


def _points(xyz: NDArray[np.floating] | Sequence[Sequence[float]]) -> list[Point]:
    """(K, 3) coordinates as ``geometry_msgs/Point`` messages."""
    return [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in np.asarray(xyz).tolist()]
