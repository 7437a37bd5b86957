"""The process table of one cycle, read once (psutil) for every collector that needs it.

The processes collector (watched processes, top consumers) and llm_runtimes (which processes are
model runtimes) both walk every process; one walk a cycle costs ~6 ms on a home server's hundred
processes, so they share it through the cycle's ``CollectContext.shared``. A context made outside a
cycle (a test, ``check``) shares nothing: each call walks the table itself.
"""
from __future__ import annotations

from typing import Any

import psutil

from foundation.context import CollectContext

# every attribute either collector reads (psutil reads them in one pass per process)
ATTRS = ["pid", "name", "cmdline", "cpu_times", "memory_info", "create_time"]


def processes(ctx: CollectContext) -> list[Any]:
    """psutil processes with ``.info`` holding ATTRS, as the cycle first read them."""
    return ctx.shared.once("process_table", lambda: list(psutil.process_iter(ATTRS)))
