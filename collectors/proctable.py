"""The process table of one cycle, read once (psutil) for every collector that needs it.

The processes collector (watched processes, top consumers) and llm_runtimes (which processes are
model runtimes) both walk every process; they share one walk a cycle through the cycle's
``CollectContext.shared``. A context made outside a cycle (a test, ``check``) shares nothing: each
call walks the table itself.

psutil reads every process's stat and statm in one pass (``process_iter`` with its attributes);
the command line, a file more per process, is read only where there can be one: a process
without a memory map (virtual size 0 in statm: a kernel thread, most of a host's table, or a
zombie) has an empty command line, which the kernel reads from that map. The parent pid is not
asked for: psutil checks a pid for reuse before it answers ``ppid()``, a second Process and stat
read per process (about 40 % of the walk).
"""
from __future__ import annotations

from typing import Any

import psutil

from foundation.context import CollectContext

# every attribute either collector reads (psutil reads them in one pass per process)
ATTRS = ["pid", "name", "cmdline", "cpu_times", "memory_info", "create_time"]
# what process_iter reads of every process: ATTRS without the command line
BASE = [a for a in ATTRS if a != "cmdline"]


def walk() -> list[Any]:
    """Every process, with ``.info`` holding ATTRS as psutil.process_iter(ATTRS) gives them
    (a process without a memory map: ``[]`` where psutil would say ``[]`` or, for a zombie,
    None; the collectors read both as no command line)."""
    out = []
    for proc in psutil.process_iter(BASE):
        info = proc.info
        mem = info["memory_info"]
        if mem is not None and mem.vms == 0:
            info["cmdline"] = []            # no memory map: no command line to read
        else:
            try:
                info["cmdline"] = proc.cmdline()
            except (psutil.AccessDenied, psutil.ZombieProcess):
                info["cmdline"] = None      # as process_iter(ATTRS) gives it
            except psutil.NoSuchProcess:
                continue                    # it exited during the walk, as process_iter drops it
        out.append(proc)
    return out


def processes(ctx: CollectContext) -> list[Any]:
    """psutil processes with ``.info`` holding ATTRS, as the cycle first read them."""
    return ctx.shared.once("process_table", walk)
