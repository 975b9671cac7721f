"""Camera sources that deliver organized point clouds in metres (GenICam 3D cameras for now)."""

from gpr_ros.core.camera.errors import (
    AcquisitionTimeoutError,
    CameraConfigError,
    CameraDisconnectedError,
    CameraError,
    DeviceNotFoundError,
)
from gpr_ros.core.camera.genicam_source import (
    DeviceInfo,
    Frame,
    FrameSource,
    GenicamConfig,
    GenicamSource,
)

__all__ = [
    "AcquisitionTimeoutError",
    "CameraConfigError",
    "CameraDisconnectedError",
    "CameraError",
    "DeviceInfo",
    "DeviceNotFoundError",
    "Frame",
    "FrameSource",
    "GenicamConfig",
    "GenicamSource",
]
