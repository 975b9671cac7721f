"""Typed exceptions raised by :mod:`gpr_ros.core.camera`.

Every message says what was wrong and what was expected; errors about a missing device list the
devices the producer does offer.
"""

from __future__ import annotations

from gpr_ros.core.errors import ConfigError, GprError

__all__ = [
    "AcquisitionTimeoutError",
    "CameraConfigError",
    "CameraDisconnectedError",
    "CameraError",
    "DeviceNotFoundError",
]


class CameraError(GprError):
    """Base class of every error raised while talking to a camera."""


class CameraConfigError(CameraError, ConfigError):
    """An invalid camera configuration: bad value, missing producer file, unknown device id,
    a component or feature the device does not offer."""


class CameraDisconnectedError(CameraError):
    """The device is closed, gone, or the producer reported a transport error; ``reopen()`` it."""


class AcquisitionTimeoutError(CameraError, TimeoutError):
    """No complete frame arrived within the acquisition timeout."""


class DeviceNotFoundError(CameraDisconnectedError, LookupError):
    """The requested device is not listed by the producer; the message lists those that are.

    A subclass of :class:`CameraDisconnectedError` because an unplugged camera looks the same:
    callers that retry on disconnects retry here too.
    """
