"""Point-cloud acquisition from GenICam 3D cameras (Photoneo PhoXi/MotionCam) through harvesters.

:class:`GenicamSource` loads a GenTL producer (``.cti``), opens one device, configures the 3D
range component and the trigger, and turns each delivered buffer into a :class:`Frame`: an
organized ``(H, W, 3)`` float32 cloud in metres in the camera frame, NaN where the device had no
measurement. It never imports ROS; the ``phoxi_camera`` node wraps it.

Conventions (GenICam SFNC 3D / PFNC):

- ``component='coord3d'``: the device delivers calibrated Cartesian coordinates, as one
  interleaved ``Coord3D_ABC*`` part, one ``Coord3D_ABC*_Planar`` part, or three parts
  ``Coord3D_A*``/``B*``/``C*``. ``A, B, C`` are taken as ``x, y, z``.
- ``component='range'``: only the depth ``C`` is used and back-projected with pinhole intrinsics
  ``(fx, fy, cx, cy)`` in pixels, from the config or from ``Scan3dFocalLength`` and
  ``Scan3dPrincipalPointU/V``.
- Raw values become device units through ``Scan3dCoordinateScale/Offset`` (per coordinate, via
  ``Scan3dCoordinateSelector``) and metres through ``Scan3dDistanceUnit`` (Millimeter when
  the device does not say; PhoXi streams millimetres) unless ``unit_scale`` overrides it.
- Invalid points: raw values equal to ``Scan3dInvalidDataValue`` when ``Scan3dInvalidDataFlag``
  is set, non-finite values, the point ``(0, 0, 0)`` (PhoXi marks missing points this way) and a
  zero depth in range mode. They become NaN (``invalid='nan'``, cloud stays organized) or are
  removed (``invalid='drop'``, cloud becomes ``(N, 3)``). Points outside the ROI box are treated
  the same way.
- Software trigger uses the SFNC features ``TriggerSelector=FrameStart``, ``TriggerMode=On``,
  ``TriggerSource=Software`` and the ``TriggerSoftware`` command. A device without them runs
  free and a "trigger" is emulated: stale buffers are dropped and the next frame is returned.

What the genicam wheel's simulated producer ``viky.cti`` offers (probed with genicam 1.6.0 and
harvesters 1.4.3): three devices, ids ``VikyTL_DEV_red``/``_green``/``_blue``, serials ``0``,
``1``, ``2``, model ``Viky``, vendor ``Machine Vision Games Ltd.``, all 400 x 400 at 20 fps,
free-running only (``AcquisitionMode=Continuous``; no ``TriggerMode``/``TriggerSoftware``, so the
software trigger is emulated). ``ComponentSelector`` has ``Intensity`` (``RGBa8`` or ``Mono8``,
always enabled) and ``Range`` (disabled by default; once enabled ``PixelFormat`` is
``Coord3D_ABC32f_Planar`` and the buffer is multi-part: ``RGBa8``, ``Coord3D_A32f``,
``Coord3D_B32f``, ``Coord3D_C32f``). Scan3d: ``Scan3dDistanceUnit=Millimeter``,
``Scan3dCoordinateSystem=Cartesian``, ``Scan3dOutputMode=CalibratedABC_Grid``, scale 1 and
offset 0 for A, B, C, ``Scan3dInvalidDataFlag=False``, no ``Scan3dInvalidDataValue``, no focal
length or principal point; the reference transform is RotationY 180 deg, TranslationZ 565.7 mm.
The data is a synthetic bouncing ball: ``A`` is the column and ``B`` the row index (0..399 mm),
``C`` is 0 except on about 400 ball pixels (up to ~45 mm). Buffers carry a frame id but no
timestamp (``timestamp_ns`` is reported as 0). While one harvester holds the producer, a second
one in the same process lists no devices: keep one source per producer and process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import importlib.util
import math
import os
import re
import threading
from typing import Any, Literal, Protocol, get_args

from genicam.genapi import EAccessMode
from genicam.genapi import GenericException as GenApiError
from genicam.gentl import GenericException as GenTLError
from genicam.gentl import TimeoutException as GenTLTimeout
from harvesters.core import Harvester, ImageAcquirer
import numpy as np
from numpy.typing import NDArray

from gpr_ros.core.camera.errors import (
    AcquisitionTimeoutError,
    CameraConfigError,
    CameraDisconnectedError,
    DeviceNotFoundError,
)

__all__ = [
    "DeviceInfo",
    "Frame",
    "FrameSource",
    "GenicamConfig",
    "GenicamSource",
    "Scan3dCalibration",
    "default_cti_path",
    "planes_to_points",
    "select_points",
]

TriggerMode = Literal['software', 'continuous']
ComponentMode = Literal['coord3d', 'range']
InvalidMode = Literal['nan', 'drop']

#: Scan3dDistanceUnit symbol -> metres per unit.
DISTANCE_UNITS = {'Millimeter': 1e-3, 'Micrometer': 1e-6, 'Centimeter': 1e-2, 'Meter': 1.0,
                  'Inch': 0.0254}
_CHOICES = {'trigger': TriggerMode, 'component': ComponentMode, 'invalid': InvalidMode}
_COORD3D = re.compile(r'^Coord3D_([ABC]+)(\d+[a-z]*)(_Planar)?$')


def default_cti_path() -> str | None:
    """Path of the simulated producer shipped in the genicam wheel, or None without the wheel.

    :return: ``<site-packages>/genicam/viky.cti`` when it exists.
    """
    spec = importlib.util.find_spec('genicam')
    if spec is None or spec.origin is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), 'viky.cti')
    return path if os.path.isfile(path) else None


@dataclass(frozen=True)
class GenicamConfig:
    """How to open the camera and turn its buffers into clouds.

    :param cti_path: GenTL producer file; empty selects the genicam wheel's ``viky.cti``
        simulator when installed, otherwise the path is required.
    :param device_id: serial number, device id or user-defined name; a plain integer that
        matches none of them is a device index. Empty: the first device.
    :param trigger: ``'software'`` (one frame per :meth:`GenicamSource.trigger`) or
        ``'continuous'`` (free run; :meth:`GenicamSource.grab` returns the newest frame).
    :param component: ``'coord3d'`` (calibrated Coord3D ABC) or ``'range'`` (depth + intrinsics).
    :param intensity: also read the intensity/texture component.
    :param unit_scale: metres per device distance unit; 0 takes it from ``Scan3dDistanceUnit``.
    :param invalid: ``'nan'`` keeps the organized grid with NaN, ``'drop'`` removes the points.
    :param roi: empty, or ``(x_min, y_min, z_min, x_max, y_max, z_max)`` in metres in the
        camera frame; points outside are invalid.
    :param intrinsics: empty (from the device) or ``(fx, fy, cx, cy)`` in pixels, range mode.
    :param timeout_s: default acquisition timeout of one grab.
    :raises CameraConfigError: on any invalid value.
    """

    cti_path: str = ''
    device_id: str = ''
    trigger: TriggerMode = 'software'
    component: ComponentMode = 'coord3d'
    intensity: bool = False
    unit_scale: float = 0.0
    invalid: InvalidMode = 'nan'
    roi: tuple[float, ...] = ()
    intrinsics: tuple[float, ...] = ()
    timeout_s: float = 2.0

    def __post_init__(self) -> None:
        cti = self.cti_path or default_cti_path()
        if not cti:
            raise CameraConfigError(
                'cti_path is empty and the genicam wheel simulator (viky.cti) is not installed; '
                'give the path of the GenTL producer, e.g. the Photoneo GenTL .cti')
        object.__setattr__(self, 'cti_path', cti)
        for name, value in (('trigger', self.trigger), ('component', self.component),
                            ('invalid', self.invalid)):
            choices = get_args(_CHOICES[name])
            if value not in choices:
                raise CameraConfigError(
                    f'{name} is {value!r}; expected one of {", ".join(map(repr, choices))}')
        if not (math.isfinite(self.unit_scale) and self.unit_scale >= 0.0):
            raise CameraConfigError(
                f'unit_scale is {self.unit_scale}; expected metres per device unit > 0 '
                '(e.g. 0.001 for millimetres) or 0 for the device unit')
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0.0):
            raise CameraConfigError(f'timeout_s is {self.timeout_s}; expected a time > 0 s')
        roi = tuple(float(v) for v in self.roi)
        if roi:
            if len(roi) != 6 or not all(math.isfinite(v) for v in roi):
                raise CameraConfigError(
                    f'roi has {len(roi)} values {list(roi)}; expected none or 6 finite values '
                    '(x_min, y_min, z_min, x_max, y_max, z_max) in metres')
            if any(roi[i] >= roi[i + 3] for i in range(3)):
                raise CameraConfigError(
                    f'roi {list(roi)} is empty; expected each minimum below its maximum '
                    '(x_min, y_min, z_min, x_max, y_max, z_max)')
        object.__setattr__(self, 'roi', roi)
        intr = tuple(float(v) for v in self.intrinsics)
        if intr and (len(intr) != 4 or not all(math.isfinite(v) for v in intr)
                     or intr[0] <= 0 or intr[1] <= 0):
            raise CameraConfigError(
                f'intrinsics are {list(intr)}; expected none or (fx, fy, cx, cy) in pixels '
                'with fx, fy > 0')
        object.__setattr__(self, 'intrinsics', intr)


@dataclass(frozen=True, eq=False)
class Frame:
    """One acquired cloud.

    :param points: ``(H, W, 3)`` float32 metres with NaN for invalid points (``invalid='nan'``)
        or ``(N, 3)`` valid points only (``invalid='drop'``).
    :param intensity: ``points.shape[:-1]`` float32 intensities, or None.
    :param timestamp_ns: device timestamp in ns; 0 when the producer gives none.
    :param sequence: device frame counter (or a local counter when the producer has none).
    """

    points: NDArray[np.float32]
    intensity: NDArray[np.float32] | None
    timestamp_ns: int
    sequence: int

    @property
    def organized(self) -> bool:
        """True for an ``(H, W, 3)`` grid."""
        return self.points.ndim == 3

    @property
    def num_valid(self) -> int:
        """Number of points with finite coordinates."""
        return int(np.isfinite(self.points).all(axis=-1).sum())


class FrameSource(Protocol):
    """What the camera node needs from a source (GenICam device, later simulator or bag)."""

    @property
    def is_open(self) -> bool:
        """True while frames can be captured."""
        ...

    def open(self) -> None:
        """Connect; raises a :class:`~gpr_ros.core.camera.errors.CameraError`."""
        ...

    def close(self) -> None:
        """Disconnect; never raises."""
        ...

    def capture(self, timeout: float | None = None) -> Frame:
        """Trigger when the source is triggered, then return one frame."""
        ...


@dataclass(frozen=True)
class DeviceInfo:
    """One device the producer lists.

    :param index: position in the producer's list.
    """

    index: int
    id: str
    serial_number: str
    model: str
    vendor: str
    user_defined_name: str
    access_status: int

    def describe(self) -> str:
        """Short text for error messages and logs."""
        name = f' "{self.user_defined_name}"' if self.user_defined_name else ''
        return (f'#{self.index} id={self.id} serial={self.serial_number} '
                f'{self.vendor} {self.model}{name}')


@dataclass(frozen=True)
class Scan3dCalibration:
    """What turns raw Coord3D values into metres.

    :param metres_per_unit: metres per device distance unit.
    :param scale: raw -> device unit scale per coordinate ``'A'``, ``'B'``, ``'C'``.
    :param offset: offset per coordinate, device units.
    :param invalid_value: raw value marking an invalid coordinate, per coordinate, or absent.
    :param intrinsics: ``(fx, fy, cx, cy)`` pixels for range data, or empty.
    """

    metres_per_unit: float = 1e-3
    scale: Mapping[str, float] = field(default_factory=lambda: {'A': 1.0, 'B': 1.0, 'C': 1.0})
    offset: Mapping[str, float] = field(default_factory=lambda: {'A': 0.0, 'B': 0.0, 'C': 0.0})
    invalid_value: Mapping[str, float] = field(default_factory=dict)
    intrinsics: tuple[float, ...] = ()


def planes_to_points(planes: Mapping[str, NDArray[Any]], calib: Scan3dCalibration,
                     component: ComponentMode = 'coord3d') -> NDArray[np.float32]:
    """Convert raw Coord3D planes to an organized cloud in metres, NaN where invalid.

    :param planes: ``'A'``, ``'B'``, ``'C'`` raw ``(H, W)`` arrays (coord3d) or ``'C'`` (range).
    :param calib: scales, offsets, unit, invalid markers and (range) intrinsics.
    :param component: ``'coord3d'`` or ``'range'``.
    :return: ``(H, W, 3)`` float32 metres.
    :raises CameraConfigError: when a needed plane or the intrinsics are missing.
    """
    needed = 'ABC' if component == 'coord3d' else 'C'
    missing = [c for c in needed if c not in planes]
    if missing:
        raise CameraConfigError(
            f'the frame has no Coord3D {"/".join(missing)} data (got {sorted(planes) or "none"});'
            f' component={component!r} needs {"/".join(needed)}')
    bad = np.zeros(planes['C'].shape, dtype=bool)
    coords: dict[str, NDArray[np.float64]] = {}
    for c in needed:
        raw = planes[c]
        if c in calib.invalid_value:
            bad |= raw == calib.invalid_value[c]
        value = (raw.astype(np.float64) * calib.scale.get(c, 1.0) + calib.offset.get(c, 0.0))
        coords[c] = value * calib.metres_per_unit
        bad |= ~np.isfinite(coords[c])
    if component == 'coord3d':
        xyz = np.stack([coords['A'], coords['B'], coords['C']], axis=-1)
        bad |= (xyz == 0.0).all(axis=-1)
    else:
        if len(calib.intrinsics) != 4:
            raise CameraConfigError(
                "component='range' needs intrinsics (fx, fy, cx, cy): set them in the config; "
                'the device has no Scan3dFocalLength/Scan3dPrincipalPointU/V')
        fx, fy, cx, cy = calib.intrinsics
        z = coords['C']
        bad |= z <= 0.0
        v, u = np.indices(z.shape, dtype=np.float64)
        xyz = np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=-1)
    xyz[bad] = np.nan
    return xyz.astype(np.float32)


def select_points(points: NDArray[np.float32], intensity: NDArray[np.float32] | None,
                  roi: tuple[float, ...] = (), invalid: InvalidMode = 'nan',
                  ) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
    """Apply the ROI box and the invalid-point policy.

    :param points: ``(H, W, 3)`` metres, NaN where invalid.
    :param intensity: matching ``(H, W)`` intensities or None.
    :param roi: empty or ``(x_min, y_min, z_min, x_max, y_max, z_max)``.
    :param invalid: ``'nan'`` (keep the grid) or ``'drop'`` (return ``(N, 3)``).
    :return: the points and intensities after cropping.
    """
    keep = np.isfinite(points).all(axis=-1)
    if roi:
        lo, hi = np.asarray(roi[:3]), np.asarray(roi[3:])
        with np.errstate(invalid='ignore'):
            keep &= ((points >= lo) & (points <= hi)).all(axis=-1)
    if invalid == 'drop':
        return (np.ascontiguousarray(points[keep]),
                None if intensity is None else np.ascontiguousarray(intensity[keep]))
    out = points.copy()
    out[~keep] = np.nan
    return out, intensity


def _readable(node: Any) -> bool:
    try:
        return node.node.get_access_mode() in (EAccessMode.RO, EAccessMode.RW)
    except (GenApiError, AttributeError):
        return False


def _writable(node: Any) -> bool:
    try:
        return node.node.get_access_mode() in (EAccessMode.WO, EAccessMode.RW)
    except (GenApiError, AttributeError):
        return False


class GenicamSource:
    """One GenICam 3D camera opened through a GenTL producer with harvesters.

    Not thread-safe: call it from one thread at a time (the node serialises its callbacks).

    :param config: what to open and how to convert frames.
    """

    def __init__(self, config: GenicamConfig) -> None:
        self.config = config
        self._harvester: Harvester | None = None
        self._acquirer: ImageAcquirer | None = None
        self._device: DeviceInfo | None = None
        self._calib = Scan3dCalibration()
        self._hw_trigger = False
        self._counter = 0

    # --- lifetime -----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True between a successful :meth:`open` and :meth:`close`."""
        return self._acquirer is not None

    @property
    def device(self) -> DeviceInfo | None:
        """The open device, or None."""
        return self._device

    @property
    def hardware_trigger(self) -> bool:
        """True when the device has a software-trigger command (not emulated)."""
        return self._hw_trigger

    @property
    def calibration(self) -> Scan3dCalibration:
        """Scales, unit and invalid markers read from the device at :meth:`open`."""
        return self._calib

    def __enter__(self) -> GenicamSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load(self) -> Harvester:
        if self._harvester is None:
            if not os.path.isfile(self.config.cti_path):
                raise CameraConfigError(
                    f'GenTL producer {self.config.cti_path!r} does not exist; expected the path '
                    'of a .cti file')
            harvester = Harvester()
            try:
                harvester.add_file(self.config.cti_path)
                harvester.update()
            except (GenTLError, GenApiError, OSError) as err:
                harvester.reset()
                raise CameraConfigError(
                    f'cannot load GenTL producer {self.config.cti_path!r}: {err}') from None
            self._harvester = harvester
        return self._harvester

    def list_devices(self) -> list[DeviceInfo]:
        """Devices the producer offers now (the producer is loaded on first use).

        :return: one entry per device, in the producer's order.
        :raises CameraConfigError: when the producer cannot be loaded.
        """
        harvester = self._load()
        if self._acquirer is None:
            harvester.update()
        out = []
        for i, info in enumerate(harvester.device_info_list):
            props = info.property_dict
            out.append(DeviceInfo(
                index=i, id=str(props.get('id_') or ''),
                serial_number=str(props.get('serial_number') or ''),
                model=str(props.get('model') or ''), vendor=str(props.get('vendor') or ''),
                user_defined_name=str(props.get('user_defined_name') or ''),
                access_status=int(props.get('access_status') or 0)))
        return out

    def _find(self, devices: list[DeviceInfo]) -> DeviceInfo:
        key = self.config.device_id.strip()
        listing = '; '.join(d.describe() for d in devices) or 'none'
        if not devices:
            raise DeviceNotFoundError(
                f'the producer {self.config.cti_path!r} lists no devices; check the cable, '
                'power and network, and that no other process holds the camera')
        if not key:
            return devices[0]
        for attr in ('serial_number', 'id', 'user_defined_name'):
            for d in devices:
                if getattr(d, attr) == key:
                    return d
        if key.lstrip('#').isdigit() and int(key.lstrip('#')) < len(devices):
            return devices[int(key.lstrip('#'))]
        raise DeviceNotFoundError(
            f'no device with serial, id, name or index {key!r}; available: {listing}')

    def open(self) -> None:
        """Load the producer, open the configured device, configure it and start acquisition.

        :raises CameraConfigError: bad producer file, or the device lacks what the config needs.
        :raises DeviceNotFoundError: the device is not listed (message lists those that are).
        :raises CameraDisconnectedError: the device is listed but cannot be opened.
        """
        if self.is_open:
            return
        try:
            device = self._find(self.list_devices())
            try:
                acquirer = _create_acquirer(self._load(), device.index)
            except (GenTLError, GenApiError, ValueError, IndexError) as err:
                raise CameraDisconnectedError(
                    f'cannot open {device.describe()}: {err} (is it used by another '
                    'process?)') from None
            try:
                self._configure(acquirer)
                acquirer.start()
            except (GenTLError, GenApiError) as err:
                acquirer.destroy()
                raise CameraDisconnectedError(
                    f'cannot start acquisition on {device.describe()}: {err}') from None
            except CameraConfigError:
                acquirer.destroy()
                raise
        except BaseException:
            self._release_harvester()
            raise
        self._acquirer = acquirer
        self._device = device

    def close(self) -> None:
        """Stop acquisition and release the device and the producer; safe to call twice."""
        acquirer, self._acquirer, self._device = self._acquirer, None, None
        if acquirer is not None:
            for step in (acquirer.stop, acquirer.destroy):
                try:
                    step()
                except Exception:  # the device may be gone; release the rest
                    pass
        self._release_harvester()

    def _release_harvester(self) -> None:
        harvester, self._harvester = self._harvester, None
        if harvester is not None:
            try:
                harvester.reset()
            except Exception:  # best effort while tearing down
                pass

    def reopen(self) -> None:
        """Close and open again (after a disconnect); raises as :meth:`open`."""
        self.close()
        self.open()

    # --- configuration ------------------------------------------------------------------------

    def _configure(self, acquirer: ImageAcquirer) -> None:
        nm = acquirer.remote_device.node_map
        selector = getattr(nm, 'ComponentSelector', None)
        if selector is not None and _writable(selector):
            wanted = {'Range': True}
            if 'Intensity' in selector.symbolics:
                wanted['Intensity'] = self.config.intensity
            for name, on in wanted.items():
                if name not in selector.symbolics:
                    raise CameraConfigError(
                        f'the device has no {name!r} component; ComponentSelector offers '
                        f'{list(selector.symbolics)}')
                selector.value = name
                enable = getattr(nm, 'ComponentEnable', None)
                if enable is not None and _writable(enable) and enable.value != on:
                    enable.value = on
                elif enable is not None and on and _readable(enable) and not enable.value:
                    raise CameraConfigError(f'the {name!r} component cannot be enabled')
        self._hw_trigger = False
        mode = getattr(nm, 'TriggerMode', None)
        if mode is not None and _writable(mode):
            if self.config.trigger == 'software':
                soft = getattr(nm, 'TriggerSoftware', None)
                if soft is not None:
                    trig_sel = getattr(nm, 'TriggerSelector', None)
                    if trig_sel is not None and _writable(trig_sel) \
                            and 'FrameStart' in trig_sel.symbolics:
                        trig_sel.value = 'FrameStart'
                    mode.value = 'On'
                    source = getattr(nm, 'TriggerSource', None)
                    if source is not None and _writable(source) \
                            and 'Software' in source.symbolics:
                        source.value = 'Software'
                    self._hw_trigger = True
            elif 'Off' in mode.symbolics:
                mode.value = 'Off'
        self._calib = self._read_calibration(nm)
        # Free-running devices fill every buffer while nobody fetches; keep only the newest so
        # that a grab (or an emulated trigger) never returns a frame from long ago.
        for stream in acquirer.data_streams:
            handling = getattr(stream.node_map, 'StreamBufferHandlingMode', None)
            if handling is not None and _writable(handling):
                for mode_name in ('NewestOnly', 'OldestFirstOverwrite'):
                    if mode_name in handling.symbolics:
                        handling.value = mode_name
                        break

    def _read_calibration(self, nm: Any) -> Scan3dCalibration:
        metres = self.config.unit_scale
        system = getattr(nm, 'Scan3dCoordinateSystem', None)
        if self.config.component == 'coord3d' and system is not None and _readable(system) \
                and system.value != 'Cartesian':
            raise CameraConfigError(
                f'Scan3dCoordinateSystem is {system.value!r}; component=coord3d expects '
                'Cartesian')
        if metres == 0.0:
            unit = getattr(nm, 'Scan3dDistanceUnit', None)
            name = unit.value if unit is not None and _readable(unit) else 'Millimeter'
            if name not in DISTANCE_UNITS:
                raise CameraConfigError(
                    f'Scan3dDistanceUnit is {name!r}; set unit_scale (metres per unit)')
            metres = DISTANCE_UNITS[name]
        scale: dict[str, float] = {}
        offset: dict[str, float] = {}
        invalid: dict[str, float] = {}
        sel = getattr(nm, 'Scan3dCoordinateSelector', None)
        for letter in 'ABC':
            coord = f'Coordinate{letter}'
            if sel is None or not _writable(sel) or coord not in sel.symbolics:
                continue
            sel.value = coord
            node = getattr(nm, 'Scan3dCoordinateScale', None)
            if node is not None and _readable(node):
                scale[letter] = float(node.value)
            node = getattr(nm, 'Scan3dCoordinateOffset', None)
            if node is not None and _readable(node):
                offset[letter] = float(node.value)
            flag = getattr(nm, 'Scan3dInvalidDataFlag', None)
            value = getattr(nm, 'Scan3dInvalidDataValue', None)
            if flag is not None and _readable(flag) and flag.value and value is not None \
                    and _readable(value):
                invalid[letter] = float(value.value)
        intrinsics = self.config.intrinsics
        if not intrinsics:
            nodes = [getattr(nm, n, None) for n in ('Scan3dFocalLength', 'Scan3dPrincipalPointU',
                                                     'Scan3dPrincipalPointV')]
            if all(n is not None and _readable(n) for n in nodes):
                f, u0, v0 = (float(n.value) for n in nodes)  # type: ignore[union-attr]
                intrinsics = (f, f, u0, v0)
        if self.config.component == 'range' and len(intrinsics) != 4:
            raise CameraConfigError(
                "component='range' needs intrinsics: the device has no Scan3dFocalLength/"
                'Scan3dPrincipalPointU/V; set intrinsics (fx, fy, cx, cy) in pixels')
        return Scan3dCalibration(
            metres_per_unit=metres,
            scale={c: scale.get(c, 1.0) for c in 'ABC'},
            offset={c: offset.get(c, 0.0) for c in 'ABC'},
            invalid_value=invalid, intrinsics=intrinsics)

    # --- acquisition --------------------------------------------------------------------------

    def _require(self) -> ImageAcquirer:
        if self._acquirer is None:
            raise CameraDisconnectedError('the camera is not open; call open() or reopen()')
        return self._acquirer

    def _drain(self, acquirer: ImageAcquirer) -> int:
        dropped = 0
        while (buf := acquirer.try_fetch(timeout=1e-3)) is not None:
            buf.queue()
            dropped += 1
        return dropped

    def trigger(self) -> bool:
        """Request one frame: fire ``TriggerSoftware``, or drop stale frames of a free-running
        device so that the next :meth:`grab` returns a frame started after this call.

        :return: True when the device was triggered, False when the trigger was emulated.
        :raises CameraDisconnectedError: when the device is closed or gone.
        """
        acquirer = self._require()
        try:
            self._drain(acquirer)
            if self._hw_trigger:
                acquirer.remote_device.node_map.TriggerSoftware.execute()
                return True
        except (GenTLError, GenApiError) as err:
            raise CameraDisconnectedError(f'software trigger failed: {err}') from None
        return False

    def grab(self, timeout: float | None = None) -> Frame:
        """Wait for one frame and convert it (the buffer is copied and requeued at once).

        In continuous mode the newest queued frame is returned and older ones are dropped.

        :param timeout: seconds to wait; the config's ``timeout_s`` when None.
        :return: the frame.
        :raises AcquisitionTimeoutError: when no frame arrives in time.
        :raises CameraDisconnectedError: when the device is closed or the transport fails.
        :raises CameraConfigError: when the frame lacks the configured component.
        """
        acquirer = self._require()
        wait = self.config.timeout_s if timeout is None else float(timeout)
        try:
            buf = acquirer.fetch(timeout=max(wait, 1e-3))
            if self.config.trigger == 'continuous':
                while (newer := acquirer.try_fetch(timeout=1e-3)) is not None:
                    buf.queue()
                    buf = newer
            try:
                planes, intensity = _copy_components(buf)
                stamp = _timestamp_ns(buf)
                try:
                    sequence = int(buf.module.frame_id)
                except (GenTLError, AttributeError):
                    sequence = self._counter
            finally:
                buf.queue()
        except GenTLTimeout:
            raise AcquisitionTimeoutError(
                f'no frame from {self._describe()} within {wait:.2f} s (trigger='
                f'{self.config.trigger})') from None
        except (GenTLError, GenApiError) as err:
            raise CameraDisconnectedError(
                f'acquisition from {self._describe()} failed: {err}') from None
        self._counter += 1
        points = planes_to_points(planes, self._calib, self.config.component)
        if intensity is not None and intensity.shape != points.shape[:2]:
            intensity = None
        points, intensity = select_points(points, intensity, self.config.roi,
                                          self.config.invalid)
        return Frame(points=points, intensity=intensity if self.config.intensity else None,
                     timestamp_ns=stamp, sequence=sequence)

    def capture(self, timeout: float | None = None) -> Frame:
        """Trigger (in software mode) and grab one frame; raises as :meth:`grab`."""
        if self.config.trigger == 'software':
            self.trigger()
        return self.grab(timeout)

    def _describe(self) -> str:
        return self._device.describe() if self._device is not None else 'the camera'


def _create_acquirer(harvester: Harvester, index: int) -> ImageAcquirer:
    """``harvester.create(index)``, run off the main thread when called on it.

    harvesters replaces the process's SIGINT handler when an acquirer is created on the main
    thread (its handler destroys the acquirer and swallows Ctrl-C), which breaks the shutdown of
    rclpy and of any other host program; from another thread it leaves signals alone.
    """
    if threading.current_thread() is not threading.main_thread():
        return harvester.create(index)
    result: list[Any] = []

    def work() -> None:
        try:
            result.append(harvester.create(index))
        except BaseException as err:  # re-raised on the calling thread
            result.append(err)

    worker = threading.Thread(target=work, name='genicam-open', daemon=True)
    worker.start()
    worker.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def _timestamp_ns(buf: Any) -> int:
    try:
        return int(buf.module.timestamp_ns)
    except (GenTLError, AttributeError):
        pass
    try:
        ticks = int(buf.module.timestamp)
        freq = int(buf.timestamp_frequency)
    except (GenTLError, AttributeError):
        return 0
    return ticks * 1_000_000_000 // freq if freq > 0 else 0


def _copy_components(buf: Any) -> tuple[dict[str, NDArray[Any]], NDArray[np.float32] | None]:
    """Copy the Coord3D planes and the first intensity image out of a harvesters buffer."""
    planes: dict[str, NDArray[Any]] = {}
    intensity: NDArray[np.float32] | None = None
    for comp in buf.payload.components:
        if comp is None or comp.data is None:
            continue
        fmt = str(comp.data_format)
        height, width = int(comp.height), int(comp.width)
        data = np.asarray(comp.data)
        match = _COORD3D.match(fmt)
        if match:
            letters, planar = match.group(1), match.group(3) is not None
            n = len(letters)
            if data.size != n * height * width:
                raise CameraConfigError(
                    f'{fmt} part has {data.size} values; expected {n} x {height} x {width}')
            if n == 1:
                planes[letters] = np.array(data.reshape(height, width))
            else:
                grid = data.reshape(n, height, width) if planar else \
                    np.moveaxis(data.reshape(height, width, n), -1, 0)
                for i, letter in enumerate(letters):
                    planes[letter] = np.array(grid[i])
        elif intensity is None and height * width > 0 and data.size % (height * width) == 0:
            channels = data.size // (height * width)
            img = data.reshape(height, width, channels).astype(np.float32)
            intensity = img[..., :3].mean(axis=-1) if channels >= 3 else img[..., 0].copy()
    return planes, intensity
