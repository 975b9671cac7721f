"""Every message <-> numpy mapping of gpr_ros in one place.

Point clouds (``sensor_msgs/PointCloud2``) and grasps (``gpr_msgs/Grasp``, ``GraspArray``) are
converted here and nowhere else; nodes call these functions and the ROS-free core never sees a
message. Parsing validates the cloud's layout before touching its bytes and raises
:class:`CloudFormatError` with what was wrong and what was expected.

Supported clouds: little-endian data (or big-endian, byte-swapped on read), every
``PointField`` datatype, fields with ``count >= 1``, organized (``height > 1``) and unorganized
clouds, padding between points and at row ends (``row_step > width * point_step``), NaN points
with ``is_dense = False``. Colour is read from a packed ``rgb``/``rgba`` field (float32 or
uint32 bit pattern, 0x00RRGGBB).

Simulation: a world's object poses become ``gpr_msgs/SimSceneState`` (:func:`scene_to_msg`,
back with :func:`msg_to_scene`) and an attempt of the simulated gripper a
``SimExecuteGrasp`` response (:func:`attempt_to_sim_response`, :data:`SIM_ERROR_CODES`).
"""

from __future__ import annotations

from collections.abc import Sequence
import sys
from typing import TYPE_CHECKING, Any

from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, Quaternion
import numpy as np
from numpy.typing import NDArray
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from gpr_msgs.msg import Grasp, GraspArray, InferenceTiming, SimObjectState, SimSceneState
from gpr_msgs.srv import SimExecuteGrasp
from gpr_ros.core.errors import GeometryError
from gpr_ros.core.grasp import Grasps
from gpr_ros.ros.errors import CloudFormatError, GraspMessageError

if TYPE_CHECKING:  # the simulation imports MuJoCo: only nodes that simulate load it
    from gpr_ros.core.sim.gripper import AttemptResult
    from gpr_ros.core.sim.world import SceneState

#: PointField datatype constant -> numpy dtype (native byte order chosen at use).
DATATYPES: dict[int, np.dtype] = {
    PointField.INT8: np.dtype(np.int8),
    PointField.UINT8: np.dtype(np.uint8),
    PointField.INT16: np.dtype(np.int16),
    PointField.UINT16: np.dtype(np.uint16),
    PointField.INT32: np.dtype(np.int32),
    PointField.UINT32: np.dtype(np.uint32),
    PointField.FLOAT32: np.dtype(np.float32),
    PointField.FLOAT64: np.dtype(np.float64),
}
_NAME_OF_DATATYPE = {v: k for k, v in vars(PointField).items() if isinstance(v, int)
                     and k.isupper()}


def _field_dtype(field: PointField, big_endian: bool) -> np.dtype:
    if field.datatype not in DATATYPES:
        raise CloudFormatError(
            f'field {field.name!r} has unsupported datatype {field.datatype}; expected one of '
            f'{sorted(DATATYPES)} (PointField.INT8 .. PointField.FLOAT64)')
    if field.count < 1:
        raise CloudFormatError(f'field {field.name!r} has count {field.count}; expected >= 1')
    base = DATATYPES[field.datatype].newbyteorder('>' if big_endian else '<')
    return np.dtype((base, (field.count,))) if field.count > 1 else base


def cloud_dtype(msg: PointCloud2) -> np.dtype:
    """Build the numpy structured dtype of one point of ``msg``, checking the field layout.

    :param msg: the cloud.
    :return: a structured dtype with ``itemsize == msg.point_step``.
    :raises CloudFormatError: on duplicate names, unsupported datatypes, fields that overlap or
        reach past ``point_step``.
    """
    names: list[str] = []
    formats: list[np.dtype] = []
    offsets: list[int] = []
    spans: list[tuple[int, int, str]] = []
    for field in msg.fields:
        dtype = _field_dtype(field, msg.is_bigendian)
        end = field.offset + dtype.itemsize
        if field.offset < 0 or end > msg.point_step:
            raise CloudFormatError(
                f'field {field.name!r} occupies bytes [{field.offset}, {end}) but point_step is '
                f'{msg.point_step}; every field must lie inside one point')
        if field.name in names:
            raise CloudFormatError(f'field {field.name!r} appears twice')
        for start, stop, other in spans:
            if field.offset < stop and start < end:
                raise CloudFormatError(
                    f'fields {other!r} and {field.name!r} overlap in bytes '
                    f'[{max(start, field.offset)}, {min(stop, end)})')
        spans.append((field.offset, end, field.name))
        names.append(field.name)
        formats.append(dtype)
        offsets.append(field.offset)
    return np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                     'itemsize': msg.point_step})


def cloud_to_structured(msg: PointCloud2) -> NDArray[np.void]:
    """View the cloud's bytes as a structured array of shape ``(height, width)``.

    Row padding (``row_step > width * point_step``) is skipped. The result is a read-only view
    when no padding is present, a copy otherwise.

    :param msg: the cloud.
    :return: structured array, one record per point.
    :raises CloudFormatError: when sizes are inconsistent (``point_step``, ``row_step``, data
        length) or the fields are invalid.
    """
    if msg.height == 0 or msg.width == 0:
        return np.zeros((msg.height, msg.width), dtype=cloud_dtype(msg))
    if msg.point_step <= 0:
        raise CloudFormatError(f'point_step is {msg.point_step}; expected > 0')
    dtype = cloud_dtype(msg)
    min_row = msg.width * msg.point_step
    if msg.row_step < min_row:
        raise CloudFormatError(
            f'row_step {msg.row_step} is smaller than width * point_step = {msg.width} * '
            f'{msg.point_step} = {min_row}')
    expected = msg.row_step * msg.height
    data = msg.data
    size = len(data)
    if size != expected:
        raise CloudFormatError(
            f'data has {size} bytes but row_step * height = {msg.row_step} * {msg.height} = '
            f'{expected}')
    try:  # array.array, bytes and numpy arrays share their buffer without a copy
        buf = np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        buf = np.asarray(data, dtype=np.uint8)
    rows = buf.reshape(msg.height, msg.row_step)[:, :min_row]
    if msg.row_step != min_row:
        rows = np.ascontiguousarray(rows)
    return rows.view(dtype).reshape(msg.height, msg.width)


def _packed_float32_xyz(msg: PointCloud2) -> NDArray[np.float32] | None:
    """(N, 3) strided float32 view of x, y, z when they are the first three native float32s.

    The common layout (this package's clouds, PCL's, most drivers'): x, y, z float32 at
    offsets 0, 4 and 8, native byte order, no row padding, ``point_step`` a multiple of 4.
    None for any other layout (the general path then reads the structured array).
    """
    offsets = {f.name: (f.offset, f.datatype) for f in msg.fields}
    if (offsets.get('x') != (0, PointField.FLOAT32) or offsets.get('y') != (4, PointField.FLOAT32)
            or offsets.get('z') != (8, PointField.FLOAT32)):
        return None
    if (bool(msg.is_bigendian) != (sys.byteorder == 'big') or msg.point_step < 12
            or msg.point_step % 4 or msg.row_step != msg.width * msg.point_step):
        return None
    data = msg.data
    if len(data) != msg.row_step * msg.height:
        return None  # the general path names the inconsistency
    try:
        buf = np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        buf = np.asarray(data, dtype=np.uint8)
    if buf.size == 0:
        return np.empty((0, 3), dtype=np.float32)
    return buf.view(np.float32).reshape(-1, msg.point_step // 4)[:, :3]


def cloud_to_xyz(msg: PointCloud2, *, remove_nans: bool = True,
                 dtype: type[np.floating] = np.float32) -> NDArray[np.floating]:
    """Read the x, y, z coordinates of a cloud.

    :param msg: the cloud; x, y and z may be of any numeric datatype.
    :param remove_nans: drop points with a non-finite coordinate (the result is then ``(N, 3)``
        even for organized clouds); when False, organized clouds keep their shape
        ``(height, width, 3)`` and unorganized ones give ``(width, 3)``.
    :param dtype: float type of the result.
    :return: the coordinates in the cloud's units (metres for ROS clouds).
    :raises CloudFormatError: when x, y or z is missing or the layout is invalid.
    """
    present = {f.name for f in msg.fields}
    missing = [c for c in 'xyz' if c not in present]
    if missing:
        raise CloudFormatError(
            f'cloud has no {", ".join(missing)} field(s); fields present: '
            f'{sorted(present) or "none"}; expected x, y and z')
    for f in msg.fields:
        if f.name in 'xyz' and len(f.name) == 1 and f.count != 1:
            raise CloudFormatError(f'field {f.name!r} has count {f.count}; expected 1')
    fast = _packed_float32_xyz(msg) if remove_nans else None
    if fast is not None:
        return _finite_rows(fast, dtype)
    arr = cloud_to_structured(msg)
    xyz = np.stack([arr[c].astype(dtype, copy=False) for c in 'xyz'], axis=-1)
    if remove_nans:
        return _finite_rows(xyz.reshape(-1, 3), dtype, copy=False)  # stack made it new
    return xyz if msg.height > 1 else xyz.reshape(-1, 3)


def _finite_rows(xyz: NDArray[np.floating], dtype: type[np.floating],
                 copy: bool = True) -> NDArray[np.floating]:
    """The rows of (N, 3) ``xyz`` whose three values are finite, C-contiguous, as ``dtype``.

    Column by column and with ``np.compress``: on a full PhoXi frame with 30 % invalid pixels
    about 10x faster than a boolean index of the (N, 3) mask (1.7 vs 16.8 ms).

    :param copy: when every row is finite, copy even if ``xyz`` already has the layout
        (it views a message's buffer); False for an array of the caller's own.
    """
    finite = np.isfinite(xyz[:, 0])
    finite &= np.isfinite(xyz[:, 1])
    finite &= np.isfinite(xyz[:, 2])
    if finite.all():
        return np.array(xyz, dtype=dtype, order='C') if copy \
            else np.ascontiguousarray(xyz, dtype=dtype)
    return np.ascontiguousarray(np.compress(finite, xyz, axis=0), dtype=dtype)


def cloud_to_arrays(msg: PointCloud2, *, remove_nans: bool = True) -> dict[str, NDArray]:
    """Read xyz plus the optional ``rgb`` (uint8, N x 3) and ``intensity`` (float32, N).

    :param msg: the cloud.
    :param remove_nans: drop points with a non-finite coordinate from every array.
    :return: ``{'xyz': (N, 3) float32, 'rgb': (N, 3) uint8, 'intensity': (N,) float32}``,
        the last two only when the cloud has those fields.
    :raises CloudFormatError: as :func:`cloud_to_xyz`.
    """
    xyz = cloud_to_xyz(msg, remove_nans=False).reshape(-1, 3)
    arr = cloud_to_structured(msg).reshape(-1)
    keep = np.isfinite(xyz).all(axis=1) if remove_nans else np.ones(len(xyz), dtype=bool)
    out: dict[str, NDArray] = {'xyz': np.ascontiguousarray(xyz[keep])}
    names = {f.name: f for f in msg.fields}
    colour = names.get('rgb') or names.get('rgba')
    if colour is not None:
        if DATATYPES.get(colour.datatype, np.dtype(np.int8)).itemsize != 4 or colour.count != 1:
            raise CloudFormatError(
                f'field {colour.name!r} must be one packed 4-byte value (float32 or uint32), got '
                f'datatype {colour.datatype} count {colour.count}')
        packed = np.ascontiguousarray(arr[colour.name][keep]).view(
            np.dtype('>u4' if msg.is_bigendian else '<u4')).astype(np.uint32)
        out['rgb'] = np.stack([(packed >> 16) & 0xFF, (packed >> 8) & 0xFF, packed & 0xFF],
                              axis=-1).astype(np.uint8)
    if 'intensity' in names:
        out['intensity'] = arr['intensity'][keep].astype(np.float32)
    return out


def xyz_to_cloud(points: NDArray[np.floating], *, frame_id: str, stamp: Time | None = None,
                 rgb: NDArray[np.integer] | None = None,
                 intensity: NDArray[np.floating] | None = None,
                 dtype: type[np.floating] = np.float32) -> PointCloud2:
    """Build a PointCloud2 from coordinates, optionally with colour and intensity.

    :param points: ``(N, 3)`` (unorganized) or ``(H, W, 3)`` (organized) coordinates in metres;
        NaN rows are kept and make the cloud ``is_dense = False``.
    :param frame_id: frame of the coordinates (never empty).
    :param stamp: header stamp; zero time when None.
    :param rgb: optional ``(..., 3)`` uint8 colours, packed into a float32 ``rgb`` field.
    :param intensity: optional ``(...)`` intensities (float32 field ``intensity``).
    :param dtype: float32 or float64 coordinates.
    :return: the cloud (little-endian).
    :raises CloudFormatError: on inconsistent shapes, an empty frame_id or an unsupported dtype.
    """
    pts = np.asarray(points)
    if pts.ndim not in (2, 3) or pts.shape[-1] != 3:
        raise CloudFormatError(f'points must have shape (N, 3) or (H, W, 3), got {pts.shape}')
    if not frame_id:
        raise CloudFormatError('frame_id must not be empty: every cloud names its frame')
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise CloudFormatError(f'dtype must be float32 or float64, got {np.dtype(dtype)}')
    height, width = (1, pts.shape[0]) if pts.ndim == 2 else pts.shape[:2]
    ftype = PointField.FLOAT32 if np.dtype(dtype) == np.float32 else PointField.FLOAT64
    size = np.dtype(dtype).itemsize
    names = ['x', 'y', 'z']
    formats: list[np.dtype] = [np.dtype(dtype).newbyteorder('<')] * 3
    fields = [PointField(name=n, offset=i * size, datatype=ftype, count=1)
              for i, n in enumerate(names)]
    offset = 3 * size
    extras: dict[str, NDArray] = {}
    if rgb is not None:
        colours = np.asarray(rgb)
        if colours.shape != pts.shape:
            raise CloudFormatError(f'rgb must have shape {pts.shape}, got {colours.shape}')
        c = colours.astype(np.uint32)
        extras['rgb'] = ((c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]).astype('<u4')
        fields.append(PointField(name='rgb', offset=offset, datatype=PointField.FLOAT32,
                                 count=1))
        names.append('rgb')
        formats.append(np.dtype('<u4'))
        offset += 4
    if intensity is not None:
        inten = np.asarray(intensity, dtype=np.float32)
        if inten.shape != pts.shape[:-1]:
            raise CloudFormatError(
                f'intensity must have shape {pts.shape[:-1]}, got {inten.shape}')
        extras['intensity'] = inten
        fields.append(PointField(name='intensity', offset=offset, datatype=PointField.FLOAT32,
                                 count=1))
        names.append('intensity')
        formats.append(np.dtype('<f4'))
        offset += 4
    record = np.dtype({'names': names, 'formats': formats,
                       'offsets': [f.offset for f in fields], 'itemsize': offset})
    arr = np.zeros(pts.shape[:-1], dtype=record)
    for i, n in enumerate('xyz'):
        arr[n] = pts[..., i]
    for name, values in extras.items():
        arr[name] = values
    msg = PointCloud2()
    msg.header = Header(frame_id=frame_id, stamp=stamp if stamp is not None else Time())
    msg.height, msg.width = int(height), int(width)
    msg.fields = fields
    msg.is_bigendian = False
    msg.point_step = offset
    msg.row_step = offset * int(width)
    msg.data = arr.tobytes()
    msg.is_dense = bool(np.isfinite(pts).all())
    return msg


# --- grasps ------------------------------------------------------------------------------------

def grasps_to_msgs(grasps: Grasps) -> list[Grasp]:
    """Convert a core grasp set to ``gpr_msgs/Grasp`` messages (same order).

    :param grasps: the grasps (frame convention in ``gpr_msgs/msg/Grasp.msg``).
    :return: one message per grasp; ``contacts`` filled when the set has contacts.
    """
    # Plain Python floats and keyword construction: a node builds these on every cloud.
    rows = zip(grasps.poses.tolist(), np.asarray(grasps.width, dtype=np.float64).tolist(),
               np.asarray(grasps.score, dtype=np.float64).tolist(),
               np.asarray(grasps.stage).astype(int).tolist(), strict=True)
    contacts = None if grasps.contacts is None else np.asarray(grasps.contacts).tolist()
    out: list[Grasp] = []
    for i, ((x, y, z, qx, qy, qz, qw), width, score, stage) in enumerate(rows):
        msg = Grasp(pose=Pose(position=Point(x=x, y=y, z=z),
                              orientation=Quaternion(x=qx, y=qy, z=qz, w=qw)),
                    width=width, score=score, stage=stage)
        if contacts is not None:
            msg.contacts = [Point(x=cx, y=cy, z=cz) for cx, cy, cz in contacts[i]]
        out.append(msg)
    return out


def msgs_to_grasps(msgs: Sequence[Grasp]) -> Grasps:
    """Convert ``gpr_msgs/Grasp`` messages to a core grasp set.

    :param msgs: the messages.
    :return: the grasps; ``contacts`` is set only when every message carries two contacts.
    :raises GraspMessageError: on a non-finite value, a zero quaternion, a negative width or a
        contact list that is neither empty nor of length two.
    """
    if len(msgs) == 0:
        return Grasps.empty()
    poses = np.empty((len(msgs), 7))
    width = np.empty(len(msgs))
    score = np.empty(len(msgs))
    stage = np.empty(len(msgs), dtype=np.int8)
    contacts = np.empty((len(msgs), 2, 3))
    have_contacts = True
    for i, m in enumerate(msgs):
        p, o = m.pose.position, m.pose.orientation
        poses[i] = (p.x, p.y, p.z, o.x, o.y, o.z, o.w)
        width[i], score[i], stage[i] = m.width, m.score, m.stage
        if len(m.contacts) == 2:
            contacts[i] = [(c.x, c.y, c.z) for c in m.contacts]
        elif len(m.contacts) == 0:
            have_contacts = False
        else:
            raise GraspMessageError(
                f'grasp {i} has {len(m.contacts)} contact points; expected 0 or 2')
    bad = ~np.isfinite(poses).all(axis=1) | ~np.isfinite(width)
    if bad.any():
        raise GraspMessageError(f'grasp {int(np.argmax(bad))} has a non-finite pose or width')
    norms = np.linalg.norm(poses[:, 3:], axis=1)
    if (norms < 1e-6).any():
        raise GraspMessageError(
            f'grasp {int(np.argmax(norms < 1e-6))} has a zero quaternion; expected a unit one')
    if (width < 0).any():
        raise GraspMessageError(f'grasp {int(np.argmax(width < 0))} has a negative width')
    poses[:, 3:] /= norms[:, None]
    try:
        return Grasps.from_poses(poses, width=width, score=score, stage=stage,
                                 contacts=contacts if have_contacts else None)
    except GeometryError as err:  # NaN score, unknown stage, non-finite contact, ...
        raise GraspMessageError(f'invalid grasp message: {err}') from None


def grasps_to_array_msg(grasps: Grasps, header: Header,
                        timing: InferenceTiming | None = None) -> GraspArray:
    """Wrap grasps in a ``GraspArray`` with the given header (the frame of the poses).

    :param grasps: the grasps, in the order they should be published (best first).
    :param header: stamp of the source cloud and frame of the grasp poses.
    :param timing: optional inference timing breakdown.
    :return: the message.
    """
    return GraspArray(header=header, grasps=grasps_to_msgs(grasps),
                      timing=timing if timing is not None else InferenceTiming())


def array_msg_to_grasps(msg: GraspArray) -> Grasps:
    """Read the grasps of a ``GraspArray`` (their poses are in ``msg.header.frame_id``).

    :param msg: the message.
    :return: the grasps.
    :raises GraspMessageError: as :func:`msgs_to_grasps`.
    """
    return msgs_to_grasps(msg.grasps)


# --- simulation --------------------------------------------------------------------------------

#: :class:`gpr_ros.core.sim.gripper.Outcome` value -> ``SimExecuteGrasp.Response`` error code
#: (a simulation error has no code of its own: UNKNOWN, with the reason in the message).
SIM_ERROR_CODES: dict[str, int] = {
    'success': SimExecuteGrasp.Response.NONE,
    'collision': SimExecuteGrasp.Response.COLLISION,
    'slip': SimExecuteGrasp.Response.SLIP,
    'unreachable': SimExecuteGrasp.Response.UNREACHABLE,
    'width_exceeded': SimExecuteGrasp.Response.WIDTH_EXCEEDED,
    'no_grasp': SimExecuteGrasp.Response.UNKNOWN,
    'error': SimExecuteGrasp.Response.UNKNOWN,
}


def scene_to_msg(state: SceneState, in_bin: NDArray[np.bool_], *, header: Header, seed: int,
                 trial: int, protocol: str, object_set: str, objects_total: int,
                 attempts: int) -> SimSceneState:
    """Describe a simulated bin scene as ``gpr_msgs/SimSceneState``.

    :param state: the world's snapshot (:meth:`gpr_ros.core.sim.world.BinWorld.state`):
        names, positions and (x, y, z, w) quaternions in the world frame, object-index order.
    :param in_bin: ``(N,)`` whether each object is still in the bin (not removed).
    :param header: stamp and world frame of the poses.
    :param seed: run seed of the scene.
    :param trial: trial index of the scene.
    :param protocol: protocol the objects were drawn with.
    :param object_set: object set name or folder.
    :param objects_total: objects in the bin right after pouring.
    :param attempts: executed grasps since the scene was poured.
    :return: the message; object ``id`` is the object index.
    :raises GeometryError: when ``in_bin`` does not have one entry per object.
    """
    flags = np.asarray(in_bin, dtype=bool)
    if flags.shape != (len(state.names),):
        raise GeometryError(
            f'in_bin must have shape ({len(state.names)},), got {flags.shape}')
    msg = SimSceneState(header=header, seed=int(seed), trial=int(trial), protocol=str(protocol),
                        object_set=str(object_set), objects_total=int(objects_total),
                        attempts=int(attempts))
    for i, name in enumerate(state.names):
        obj = SimObjectState(name=str(name), id=i, in_bin=bool(flags[i]))
        p, q = state.positions[i], state.quaternions[i]
        obj.pose.position.x, obj.pose.position.y, obj.pose.position.z = (float(v) for v in p)
        o = obj.pose.orientation
        o.x, o.y, o.z, o.w = (float(v) for v in q)
        msg.objects.append(obj)
    return msg


def msg_to_scene(msg: SimSceneState) -> dict[str, Any]:
    """Read the objects of a ``gpr_msgs/SimSceneState``.

    :param msg: the message.
    :return: ``{'names': list of str, 'ids': (N,) int32, 'poses': (N, 7) float64
        [x, y, z, qx, qy, qz, qw] in ``msg.header.frame_id``, 'in_bin': (N,) bool}``.
    """
    poses = np.empty((len(msg.objects), 7))
    for i, obj in enumerate(msg.objects):
        p, o = obj.pose.position, obj.pose.orientation
        poses[i] = (p.x, p.y, p.z, o.x, o.y, o.z, o.w)
    return {'names': [o.name for o in msg.objects],
            'ids': np.array([o.id for o in msg.objects], dtype=np.int32),
            'poses': poses,
            'in_bin': np.array([o.in_bin for o in msg.objects], dtype=bool)}


def attempt_to_sim_response(result: AttemptResult, *, executed: bool,
                            scene: SimSceneState) -> SimExecuteGrasp.Response:
    """Describe one attempt of the simulated gripper as a ``SimExecuteGrasp`` response.

    :param result: the attempt (:func:`gpr_ros.core.sim.gripper.execute_grasp`).
    :param executed: whether anything moved (``False`` for a refusal by the checks).
    :param scene: the world's state after the attempt.
    :return: the response; ``error_code`` from :data:`SIM_ERROR_CODES`.
    """
    outcome = str(result.outcome.value)
    return SimExecuteGrasp.Response(
        success=outcome == 'success',
        error_code=SIM_ERROR_CODES.get(outcome, SimExecuteGrasp.Response.UNKNOWN),
        message=str(result.message), executed=bool(executed),
        finger_width=float(result.finger_width),
        lifted_ids=[int(i) for i in result.lifted],
        fell_out_ids=[int(i) for i in result.fell_out],
        outcome=outcome, object_id=int(result.object_index), scene=scene)
