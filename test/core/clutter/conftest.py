"""Shared fixtures of the clutter tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def box_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One object and annotation cache for the test boxes of these modules: the same box
    meshes (``user/box_i``) are annotated once per run, not once per module (~7 s each)."""
    return tmp_path_factory.mktemp("box_cache")
