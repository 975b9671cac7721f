"""flushed_denormals: subnormal floats count as zero inside the block, and only there."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# A fresh process: the setting is process-wide.
_PROBE = r'''
import numpy as np
import torch
from gpr_ros.core.network.config import NetworkConfig
from gpr_ros.core.network.inference import GraspDetector, flushed_denormals
from gpr_ros.core.network.model import GPRNet

sub = torch.tensor([1e-39], dtype=torch.float32)
seen = [float(sub * 1.0) > 0.0]
with flushed_denormals() as supported:
    with flushed_denormals():
        pass
    seen += [supported, float(sub * 1.0) == 0.0]  # still flushed after the inner block
seen.append(float(sub * 1.0) > 0.0)  # restored: scipy's cKDTree can crash under it
detector = GraspDetector(GPRNet(NetworkConfig.tiny()))
rng = np.random.default_rng(0)
cloud = np.column_stack([rng.uniform(-0.1, 0.1, (3000, 2)), rng.uniform(0.9, 1.0, 3000)])
detector.detect(cloud, max_grasps=5)
seen.append(float(sub * 1.0) > 0.0)  # detect flushes only while its network runs
print(*seen)
'''


x86_only = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                              reason="PyTorch flushes subnormals only where the CPU has SSE3 "
                                     "FTZ/DAZ")


def _run(probe: str) -> list[str]:
    """Run ``probe`` in a fresh process (the setting is process state); its printed words."""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.split()


@x86_only
def test_subnormals_are_flushed_inside_the_block_only() -> None:
    assert _run(_PROBE) == ["True"] * 5


# Each thread keeps its own flush state (a new thread starts with its creator's), so nesting
# is counted per thread: a worker's block restores the worker even while the main thread is
# still inside its own.
_THREAD_PROBE = r'''
import threading
import torch
from gpr_ros.core.network.inference import flushed_denormals

sub = torch.tensor([1e-39], dtype=torch.float32)
entered, leave = threading.Event(), threading.Event()
seen = {}
def worker():
    with flushed_denormals():
        seen["worker_inside"] = float(sub * 1.0) == 0.0
        entered.set()
        leave.wait()
    seen["worker_after"] = float(sub * 1.0) > 0.0
with flushed_denormals():
    thread = threading.Thread(target=worker)
    thread.start()
    entered.wait()
    leave.set()
    thread.join()
    seen["main_inside"] = float(sub * 1.0) == 0.0
seen["main_after"] = float(sub * 1.0) > 0.0
print(*(seen[k] for k in ("worker_inside", "worker_after", "main_inside", "main_after")))
'''


@x86_only
def test_each_thread_restores_its_own_setting() -> None:
    assert _run(_THREAD_PROBE) == ["True"] * 4
