"""Shared node helpers (gpr_ros.ros.runtime)."""

from __future__ import annotations

import time

from gpr_ros.ros.runtime import Throttle


def test_throttle_is_due_once_per_period() -> None:
    throttle = Throttle(0.2)
    assert throttle.due()  # the first line is never suppressed
    assert not throttle.due() and not throttle.due()
    time.sleep(0.25)
    assert throttle.due()
    assert not throttle.due()
