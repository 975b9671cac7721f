"""GenicamSource against the real viky.cti GenTL simulator shipped in the genicam wheel.

The simulator streams a 400 x 400 multi-part frame: Coord3D A = column, B = row (millimetres),
C = height of a bouncing ball (0 elsewhere); pixel (0, 0) is the point (0, 0, 0).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from gpr_ros.core.camera import (
    CameraConfigError,
    CameraDisconnectedError,
    DeviceNotFoundError,
    GenicamConfig,
    GenicamSource,
)
from gpr_ros.core.camera.genicam_source import (
    Scan3dCalibration,
    default_cti_path,
    planes_to_points,
    select_points,
)

pytestmark = pytest.mark.skipif(default_cti_path() is None,
                                reason='the genicam wheel simulator viky.cti is not installed')

SIZE = 400
DEVICE = 'VikyTL_DEV_green'


def test_lists_the_simulated_devices() -> None:
    source = GenicamSource(GenicamConfig())
    try:
        devices = source.list_devices()
    finally:
        source.close()
    assert [d.id for d in devices] == ['VikyTL_DEV_red', 'VikyTL_DEV_green', 'VikyTL_DEV_blue']
    assert {d.model for d in devices} == {'Viky'}
    assert [d.serial_number for d in devices] == ['0', '1', '2']


def test_grabs_an_organized_coord3d_frame_in_metres() -> None:
    with GenicamSource(GenicamConfig(device_id=DEVICE, intensity=True)) as source:
        assert source.device is not None and source.device.id == DEVICE
        assert source.calibration.metres_per_unit == pytest.approx(1e-3)
        first = source.capture()
        second = source.capture()
    pts = first.points
    assert pts.shape == (SIZE, SIZE, 3) and pts.dtype == np.float32 and first.organized
    assert first.intensity is not None and first.intensity.shape == (SIZE, SIZE)
    assert first.num_valid == SIZE * SIZE - 1  # only (0, 0, 0) is invalid
    # A is the column and B the row index in millimetres: x = col / 1000, y = row / 1000.
    np.testing.assert_allclose(pts[123, 45, :2], [0.045, 0.123], rtol=1e-6)
    np.testing.assert_allclose(np.nanmax(pts[..., :2].reshape(-1, 2), axis=0), [0.399, 0.399],
                               rtol=1e-6)
    z = pts[..., 2][np.isfinite(pts[..., 2])]
    assert 0.0 <= z.min() and 0.01 < z.max() < 0.1  # the ball, a few centimetres high
    assert second.sequence > first.sequence


def test_invalid_points_become_nan_or_are_dropped() -> None:
    with GenicamSource(GenicamConfig(device_id=DEVICE)) as source:
        organized = source.capture()
    assert np.isnan(organized.points[0, 0]).all()
    assert np.isfinite(organized.points[0, 1]).all()
    with GenicamSource(GenicamConfig(device_id=DEVICE, invalid='drop')) as source:
        dropped = source.capture()
    assert not dropped.organized and dropped.points.shape == (SIZE * SIZE - 1, 3)
    assert np.isfinite(dropped.points).all()


def test_roi_crops_in_metres() -> None:
    roi = (0.0995, 0.1995, -0.01, 0.1505, 0.2505, 0.2)  # between pixels: 51 x 51 of them
    with GenicamSource(GenicamConfig(device_id=DEVICE, invalid='drop', roi=roi)) as source:
        frame = source.capture()
    assert frame.points.shape == (51 * 51, 3)
    assert (frame.points.min(axis=0) >= np.array(roi[:3]) - 1e-6).all()
    assert (frame.points.max(axis=0) <= np.array(roi[3:]) + 1e-6).all()


def test_unit_scale_overrides_the_device_unit() -> None:
    with GenicamSource(GenicamConfig(device_id=DEVICE, unit_scale=1.0)) as source:
        frame = source.capture()
    assert np.nanmax(frame.points[..., 0]) == pytest.approx(399.0)


def test_software_trigger_returns_a_fresh_frame() -> None:
    with GenicamSource(GenicamConfig(device_id=DEVICE, trigger='software')) as source:
        # viky has no TriggerSoftware: the trigger is emulated by dropping stale frames.
        assert not source.hardware_trigger
        before = source.capture()
        time.sleep(0.3)  # the device runs at 20 fps: about 6 frames pile up meanwhile
        assert source.trigger() is False
        after = source.grab()
    assert after.sequence >= before.sequence + 4


def test_continuous_mode_returns_the_newest_frame() -> None:
    with GenicamSource(GenicamConfig(device_id=DEVICE, trigger='continuous')) as source:
        before = source.capture()
        time.sleep(0.3)
        after = source.capture()
    assert after.sequence >= before.sequence + 4


def test_range_mode_back_projects_depth_and_rejects_zero_depth() -> None:
    intrinsics = (500.0, 500.0, 200.0, 200.0)
    config = GenicamConfig(device_id=DEVICE, component='range', intrinsics=intrinsics)
    with GenicamSource(config) as source:
        frame = source.capture()
    pts = frame.points
    valid = np.isfinite(pts).all(axis=-1)
    assert pts.shape == (SIZE, SIZE, 3) and 0 < valid.sum() < 2000  # only the ball has depth
    assert (pts[valid, 2] > 0).all()
    rows, cols = np.nonzero(valid)
    np.testing.assert_allclose(pts[rows, cols, 0], (cols - 200.0) * pts[rows, cols, 2] / 500.0,
                               rtol=1e-5, atol=1e-7)


def test_range_mode_without_intrinsics_is_a_config_error() -> None:
    source = GenicamSource(GenicamConfig(device_id=DEVICE, component='range'))
    with pytest.raises(CameraConfigError, match='intrinsics'):
        source.open()
    assert not source.is_open


def test_unknown_device_lists_the_available_ones() -> None:
    source = GenicamSource(GenicamConfig(device_id='PhoXi-2019-123'))
    with pytest.raises(DeviceNotFoundError) as info:
        source.open()
    message = str(info.value)
    assert 'PhoXi-2019-123' in message
    assert all(f'VikyTL_DEV_{c}' in message for c in ('red', 'green', 'blue'))
    assert isinstance(info.value, CameraDisconnectedError)
    # the failed open released the producer: another device opens right away
    with GenicamSource(GenicamConfig(device_id='2')) as other:
        assert other.device is not None and other.device.id == 'VikyTL_DEV_blue'


def test_reopen_after_close() -> None:
    source = GenicamSource(GenicamConfig(device_id=DEVICE))
    source.open()
    try:
        assert source.capture().num_valid > 0
        source.close()
        with pytest.raises(CameraDisconnectedError, match='not open'):
            source.capture()
        source.reopen()
        assert source.is_open and source.capture().num_valid > 0
    finally:
        source.close()
    assert not source.is_open


@pytest.mark.parametrize('kwargs, match', [
    ({'trigger': 'sometimes'}, 'trigger'),
    ({'component': 'mesh'}, 'component'),
    ({'invalid': 'zero'}, 'invalid'),
    ({'unit_scale': -1.0}, 'unit_scale'),
    ({'timeout_s': 0.0}, 'timeout_s'),
    ({'roi': (0.0, 0.0, 0.0, 1.0)}, '6 finite values'),
    ({'roi': (0.0, 0.0, 0.0, 1.0, -1.0, 1.0)}, 'minimum below'),
    ({'intrinsics': (0.0, 1.0, 2.0, 3.0)}, 'fx, fy > 0'),
])
def test_config_rejects_invalid_values(kwargs: dict, match: str) -> None:
    with pytest.raises(CameraConfigError, match=match):
        GenicamConfig(**kwargs)


def test_missing_producer_file_is_a_config_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = GenicamSource(GenicamConfig(cti_path=str(tmp_path / 'missing.cti')))
    with pytest.raises(CameraConfigError, match='does not exist'):
        source.open()


def test_planes_to_points_applies_scale_offset_and_invalid_markers() -> None:
    raw = {'A': np.array([[10, 20], [0, 65535]], dtype=np.uint16),
           'B': np.array([[1, 2], [0, 3]], dtype=np.uint16),
           'C': np.array([[100, 200], [0, 300]], dtype=np.uint16)}
    calib = Scan3dCalibration(metres_per_unit=1e-3, scale={'A': 0.5, 'B': 1.0, 'C': 2.0},
                              offset={'A': 0.0, 'B': -1.0, 'C': 0.0},
                              invalid_value={'A': 65535.0})
    pts = planes_to_points(raw, calib)
    np.testing.assert_allclose(pts[0, 0], [0.005, 0.0, 0.2])
    np.testing.assert_allclose(pts[0, 1], [0.010, 0.001, 0.4])
    assert np.isnan(pts[1, 1]).all()  # the device's invalid-data value
    # (0, 0, 0) raw is (0, -1 mm, 0) after the offset, so only a real origin point is dropped
    np.testing.assert_allclose(pts[1, 0], [0.0, -0.001, 0.0])
    floats = {k: v.astype(np.float32) for k, v in raw.items()}
    floats['C'][0, 0] = np.inf
    assert np.isnan(planes_to_points(floats, Scan3dCalibration())[0, 0]).all()


def test_select_points_keeps_intensity_aligned() -> None:
    pts = np.array([[[0.0, 0.0, 0.5], [np.nan] * 3], [[0.2, 0.0, 0.5], [0.0, 0.0, 2.0]]],
                   dtype=np.float32)
    inten = np.arange(4, dtype=np.float32).reshape(2, 2)
    kept, kept_i = select_points(pts, inten, roi=(-0.1, -0.1, 0.0, 0.1, 0.1, 1.0),
                                 invalid='drop')
    np.testing.assert_array_equal(kept, [[0.0, 0.0, 0.5]])
    assert kept_i is not None and kept_i.tolist() == [0.0]
    grid, _ = select_points(pts, inten, roi=(-0.1, -0.1, 0.0, 0.1, 0.1, 1.0))
    assert grid.shape == (2, 2, 3) and np.isfinite(grid).all(axis=-1).sum() == 1
