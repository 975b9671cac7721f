"""The numba kernels' compilation helper (the kernels themselves are tested through their
callers in test_distance.py and network/test_network_sampling.py)."""

from __future__ import annotations

import numpy as np
import pytest

from gpr_ros.core import kernels


@pytest.mark.skipif(not kernels.NUMBA_AVAILABLE, reason="numba is not installed")
def test_njit_compiles_without_a_cache_location() -> None:
    # A function without a source file has no cache location: numba.njit(cache=True) raises
    # at decoration time, and the kernel is compiled without a cache instead.
    namespace: dict[str, object] = {}
    exec("def twice(x):\n    return 2.0 * x\n", namespace)
    with pytest.raises(RuntimeError, match="cannot cache"):
        kernels._numba.njit(cache=True)(namespace["twice"])
    twice = kernels._njit(namespace["twice"])  # type: ignore[arg-type]
    assert twice(np.float64(1.5)) == 3.0
    assert len(twice.signatures) == 1  # compiled, not the plain function
