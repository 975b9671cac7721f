"""retain_freed_memory: the allocator keeps a detection's freed arrays for the next one."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from gpr_ros.core.network.inference import retain_freed_memory

# Allocates and frees a 16 MB array and reports glibc's free bytes kept in the heap
# (mallinfo2().fordblks): with glibc's defaults a block that large is mmap'd and unmapped on
# free, so nothing is kept; after retain_freed_memory it comes from the heap and stays there.
_PROBE = r'''
import ctypes, sys
import numpy as np
from gpr_ros.core.network.inference import retain_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "retain":
    assert retain_freed_memory(64) is True
block = np.ones(16 * 1024 * 1024, dtype=np.uint8)
del block
print(libc.mallinfo2().fordblks)
'''


def _kept_after_free(mode: str) -> int:
    done = subprocess.run([sys.executable, '-c', _PROBE, mode], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='mallopt/mallinfo2 are glibc')
def test_freed_detection_memory_stays_in_the_heap() -> None:
    assert _kept_after_free('default') < 16 * 1024 * 1024
    assert _kept_after_free('retain') >= 16 * 1024 * 1024


def test_zero_changes_nothing_and_negative_is_rejected() -> None:
    assert retain_freed_memory(0) is False
    with pytest.raises(ValueError, match='megabytes must be >= 0'):
        retain_freed_memory(-1)
