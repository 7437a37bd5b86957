"""The agent's own memory, said in every cycle report: its peak RSS so far and its RSS now.

A monitor that grows is itself an incident (DESIGN.md: "it is cheap"); the figures let the operator
see it in `status --json` and the cycle log without another tool. docs/performance.md has the
measured steady figures (bench/footprint.py).
"""
from __future__ import annotations

import os
import resource
import sys

MIB = float(1 << 20)


def rss_now_bytes() -> int | None:
    """The resident set size now (Linux: /proc/self/statm), None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """The largest resident set size this process has had (getrusage's ru_maxrss)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024   # macOS: bytes; Linux: KiB


def memory_report() -> dict[str, float | None]:
    """``peak_rss_mb`` and ``rss_mb`` (MiB, one decimal) for the cycle report."""
    now = rss_now_bytes()
    return {"peak_rss_mb": round(peak_rss_bytes() / MIB, 1),
            "rss_mb": None if now is None else round(now / MIB, 1)}
