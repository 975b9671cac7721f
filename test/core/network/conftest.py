"""Fixtures shared by the network tests."""

from __future__ import annotations

import numpy as np
import pytest

from gpr_ros.core.network.config import NetworkConfig
from gpr_ros.core.network.data import collate, prepare_scene
from gpr_ros.core.network.synthetic import synthetic_scene


@pytest.fixture(scope="module")
def batch() -> dict:
    """A collated batch of two small synthetic scenes for the ``tiny`` preset."""
    cfg = NetworkConfig.tiny()
    items = [prepare_scene(synthetic_scene(np.random.default_rng(i), num_points=700), cfg,
                           np.random.default_rng(i)) for i in range(2)]
    return collate(items)
