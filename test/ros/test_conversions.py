"""PointCloud2 <-> numpy and Grasp <-> core conversions, including malformed clouds."""

from __future__ import annotations

from geometry_msgs.msg import Point
import numpy as np
import pytest
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from gpr_msgs.msg import Grasp, GraspArray, InferenceTiming
from gpr_ros.core.grasp import Grasps
from gpr_ros.ros.conversions import (
    array_msg_to_grasps,
    cloud_to_arrays,
    cloud_to_structured,
    cloud_to_xyz,
    grasps_to_array_msg,
    grasps_to_msgs,
    msgs_to_grasps,
    xyz_to_cloud,
)
from gpr_ros.ros.errors import CloudFormatError, GraspMessageError


def _points(n: int = 2000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.2, 1.3, (n, 3))


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_xyz_round_trip_unorganized(dtype: type) -> None:
    pts = _points()
    msg = xyz_to_cloud(pts, frame_id='camera', dtype=dtype)
    assert (msg.height, msg.width) == (1, 2000)
    assert msg.point_step == 3 * np.dtype(dtype).itemsize and msg.is_dense
    assert msg.header.frame_id == 'camera'
    back = cloud_to_xyz(msg, dtype=np.float64)
    np.testing.assert_allclose(back, pts.astype(dtype), rtol=0, atol=0)


def test_organized_cloud_with_nans_keeps_shape_or_drops_them() -> None:
    pts = _points(12).reshape(3, 4, 3)
    pts[1, 2] = np.nan
    msg = xyz_to_cloud(pts, frame_id='camera')
    assert (msg.height, msg.width) == (3, 4) and not msg.is_dense
    dense = cloud_to_xyz(msg)
    assert dense.shape == (11, 3) and np.isfinite(dense).all()
    full = cloud_to_xyz(msg, remove_nans=False)
    assert full.shape == (3, 4, 3) and np.isnan(full[1, 2]).all()
    np.testing.assert_allclose(full[0], pts[0].astype(np.float32))


def test_rgb_and_intensity_round_trip() -> None:
    pts = _points(50)
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (50, 3)).astype(np.uint8)
    inten = rng.uniform(0, 1, 50).astype(np.float32)
    pts[7] = np.nan
    msg = xyz_to_cloud(pts, frame_id='camera', rgb=rgb, intensity=inten)
    assert [f.name for f in msg.fields] == ['x', 'y', 'z', 'rgb', 'intensity']
    arrays = cloud_to_arrays(msg)
    keep = np.arange(50) != 7
    np.testing.assert_array_equal(arrays['rgb'], rgb[keep])
    np.testing.assert_array_equal(arrays['intensity'], inten[keep])
    assert arrays['xyz'].shape == (49, 3)


def _handmade(fields: list[PointField], point_step: int, values: bytes, width: int,
              row_step: int | None = None, height: int = 1, big: bool = False) -> PointCloud2:
    msg = PointCloud2(header=Header(frame_id='camera'), height=height, width=width,
                      fields=fields, is_bigendian=big, point_step=point_step,
                      row_step=row_step if row_step is not None else point_step * width,
                      is_dense=True)
    msg.data = values
    return msg


def _xyz_fields(datatype: int = PointField.FLOAT32, size: int = 4) -> list[PointField]:
    return [PointField(name=n, offset=i * size, datatype=datatype, count=1)
            for i, n in enumerate('xyz')]


def test_padding_between_points_and_rows_is_skipped() -> None:
    # 16-byte points (xyz + 4 bytes padding), 2 points per row, 8 bytes of row padding.
    rows = []
    expected = []
    for r in range(2):
        row = b''
        for c in range(2):
            p = np.array([r, c, r + c + 0.5], dtype='<f4')
            expected.append(p)
            row += p.tobytes() + b'\xff' * 4
        rows.append(row + b'\xee' * 8)
    msg = _handmade(_xyz_fields(), 16, b''.join(rows), width=2, row_step=40, height=2)
    np.testing.assert_array_equal(cloud_to_xyz(msg), np.array(expected))


@pytest.mark.parametrize('point_step', [12, 16, 32])
def test_packed_float32_clouds_read_like_the_general_path(point_step: int) -> None:
    # x, y, z float32 at 0/4/8 and no row padding take a strided fast path; it must give
    # exactly what the structured-array path gives, NaN rows dropped, a copy not a view.
    rng = np.random.default_rng(3)
    n = 257
    raw = rng.uniform(-1, 1, (n, point_step // 4)).astype('<f4')
    raw[[5, 77], 1] = np.nan
    raw[200, 2] = np.inf
    msg = _handmade(_xyz_fields(), point_step, raw.tobytes(), width=n)
    got = cloud_to_xyz(msg)
    keep = np.isfinite(raw[:, :3]).all(axis=1)
    np.testing.assert_array_equal(got, raw[keep, :3])
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.flags.writeable
    got[0, 0] = 42.0  # the message keeps its bytes
    assert np.frombuffer(msg.data, dtype='<f4')[0] != 42.0
    np.testing.assert_array_equal(cloud_to_xyz(msg, dtype=np.float64), raw[keep, :3])
    full = cloud_to_xyz(msg, remove_nans=False)
    np.testing.assert_array_equal(full, raw[:, :3])


def test_int16_millimetre_fields_are_read() -> None:
    data = np.array([[1000, -20, 1300], [5, 6, 7]], dtype='<i2').tobytes()
    msg = _handmade(_xyz_fields(PointField.INT16, 2), 6, data, width=2)
    np.testing.assert_array_equal(cloud_to_xyz(msg), [[1000, -20, 1300], [5, 6, 7]])


def test_big_endian_cloud_is_byte_swapped() -> None:
    pts = np.array([[0.1, 0.2, 1.25], [-0.5, 0.0, 0.75]], dtype='>f4')
    msg = _handmade(_xyz_fields(), 12, pts.tobytes(), width=2, big=True)
    np.testing.assert_allclose(cloud_to_xyz(msg), pts.astype(np.float32))


@pytest.mark.parametrize('case, match', [
    ('offset_outside', r'occupies bytes \[12, 16\) but point_step is 12'),
    ('data_length', r'data has 20 bytes but row_step \* height = 12 \* 2 = 24'),
    ('datatype', r'unsupported datatype 42'),
    ('missing_z', r'no z field'),
    ('row_step', r'row_step 8 is smaller than width \* point_step'),
    ('overlap', r"fields 'y' and 'z' overlap"),
    ('duplicate', r"field 'x' appears twice"),
    ('zero_step', r'point_step is 0'),
])
def test_malformed_clouds_raise_typed_errors(case: str, match: str) -> None:
    good = np.zeros((2, 3), dtype='<f4').tobytes()
    fields = _xyz_fields()
    if case == 'offset_outside':
        fields[2].offset = 12
        msg = _handmade(fields, 12, good, width=2)
    elif case == 'data_length':
        msg = _handmade(fields, 12, good[:20], width=2, row_step=12, height=2)
        msg.width = 1
    elif case == 'datatype':
        fields[1].datatype = 42
        msg = _handmade(fields, 12, good, width=2)
    elif case == 'missing_z':
        msg = _handmade(fields[:2], 12, good, width=2)
    elif case == 'row_step':
        msg = _handmade(fields, 12, good, width=2, row_step=8)
    elif case == 'overlap':
        fields[2].offset = 6
        msg = _handmade(fields, 12, good, width=2)
    elif case == 'duplicate':
        fields.append(PointField(name='x', offset=12, datatype=PointField.FLOAT32, count=1))
        msg = _handmade(fields, 16, np.zeros((2, 4), dtype='<f4').tobytes(), width=2)
    else:
        msg = _handmade(fields, 0, good, width=2)
    with pytest.raises(CloudFormatError, match=match):
        cloud_to_xyz(msg)
    assert issubclass(CloudFormatError, ValueError)


def test_empty_cloud_gives_no_points() -> None:
    assert cloud_to_xyz(PointCloud2(fields=_xyz_fields(), point_step=12)).shape == (0, 3)
    assert cloud_to_structured(PointCloud2(fields=_xyz_fields(), point_step=12)).size == 0


def test_xyz_to_cloud_rejects_bad_input() -> None:
    with pytest.raises(CloudFormatError, match='shape'):
        xyz_to_cloud(np.zeros((4, 2)), frame_id='camera')
    with pytest.raises(CloudFormatError, match='frame_id'):
        xyz_to_cloud(np.zeros((4, 3)), frame_id='')
    with pytest.raises(CloudFormatError, match='rgb'):
        xyz_to_cloud(np.zeros((4, 3)), frame_id='c', rgb=np.zeros((3, 3), np.uint8))


def _grasps(n: int = 6, contacts: bool = True) -> Grasps:
    rng = np.random.default_rng(3)
    approach = rng.normal(size=(n, 3))
    closing = np.cross(approach, rng.normal(size=(n, 3)))
    center = rng.uniform(-0.1, 0.1, (n, 3))
    width = rng.uniform(0.0, 0.05, n)
    g = Grasps(center=center, approach=approach, closing=closing, width=width,
               score=rng.uniform(0, 1, n), stage=np.full(n, 2, dtype=np.int8))
    if contacts:
        tips = g.fingertip_positions()
        g = Grasps(center=g.center, approach=g.approach, closing=g.closing, width=g.width,
                   score=g.score, stage=g.stage, contacts=tips)
    return g


@pytest.mark.parametrize('contacts', [True, False])
def test_grasp_messages_round_trip(contacts: bool) -> None:
    g = _grasps(contacts=contacts)
    msgs = grasps_to_msgs(g)
    assert all(isinstance(m, Grasp) for m in msgs)
    assert all(len(m.contacts) == (2 if contacts else 0) for m in msgs)
    back = msgs_to_grasps(msgs)
    np.testing.assert_allclose(back.center, g.center, atol=1e-12)
    np.testing.assert_allclose(back.rotations, g.rotations, atol=1e-9)
    np.testing.assert_allclose(back.width, g.width)
    np.testing.assert_allclose(back.score, g.score, atol=1e-6)  # float32 on the wire
    np.testing.assert_array_equal(back.stage, g.stage)
    if contacts:
        np.testing.assert_allclose(back.contacts, g.contacts, atol=1e-12)
    else:
        assert back.contacts is None


def test_grasp_array_carries_header_and_timing() -> None:
    g = _grasps()
    msg = grasps_to_array_msg(g, Header(frame_id='base_link'), InferenceTiming(total=0.1))
    assert isinstance(msg, GraspArray) and msg.header.frame_id == 'base_link'
    assert msg.timing.total == pytest.approx(0.1)
    assert len(array_msg_to_grasps(msg)) == len(g)
    assert len(msgs_to_grasps([])) == 0


def test_invalid_grasp_messages_raise() -> None:
    m = grasps_to_msgs(_grasps(1))[0]
    m.pose.orientation.x = m.pose.orientation.y = m.pose.orientation.z = 0.0
    m.pose.orientation.w = 0.0
    with pytest.raises(GraspMessageError, match='zero quaternion'):
        msgs_to_grasps([m])
    m = grasps_to_msgs(_grasps(1))[0]
    m.width = float('nan')
    with pytest.raises(GraspMessageError, match='non-finite'):
        msgs_to_grasps([m])
    m = grasps_to_msgs(_grasps(1))[0]
    m.contacts = [Point()]
    with pytest.raises(GraspMessageError, match='expected 0 or 2'):
        msgs_to_grasps([m])
    m = grasps_to_msgs(_grasps(1))[0]
    m.score = float('nan')
    with pytest.raises(GraspMessageError, match='invalid grasp message'):
        msgs_to_grasps([m])
    m = grasps_to_msgs(_grasps(1))[0]
    m.stage = 77
    with pytest.raises(GraspMessageError, match='invalid grasp message'):
        msgs_to_grasps([m])
    m = grasps_to_msgs(_grasps(1))[0]
    m.width = -0.01
    with pytest.raises(GraspMessageError, match='negative width'):
        msgs_to_grasps([m])
