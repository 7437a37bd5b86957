"""Process-wide settings the agent applies once at start (monitor_agent.py; the log benchmarks too).

- One OpenBLAS thread: numpy's OpenBLAS starts a thread per core that spins after work; the agent
  does no linear algebra, and a monitor should not busy a second core. Set on import, before
  numpy is: import this module first.
- malloc keeps blocks up to 16 MiB in its heap: the log readers allocate a 4 MiB block per chunk,
  and by default glibc maps each one fresh from the kernel, which zeroes every page again
  (bench.auth_ingest: reading took ~47 ms per million lines, ~28 with this; the whole extraction
  ~12 % faster). At most 32 MiB of freed heap is kept before it is given back; peak memory +4 MB.
"""
from __future__ import annotations

import ctypes
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

M_TRIM_THRESHOLD = -1          # glibc's mallopt() parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 16 << 20
TRIM_THRESHOLD = 32 << 20


def tune_allocator() -> bool:
    """Apply the malloc thresholds above; False where there is no glibc mallopt (musl, macOS)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
