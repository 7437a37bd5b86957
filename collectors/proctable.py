"""The process table of one cycle, read once (psutil) for every collector that needs it.

The processes collector (watched processes, top consumers) and llm_runtimes (which processes are
model runtimes) both walk every process; they share one walk a cycle through the cycle's
``CollectContext.shared``. A context made outside a cycle (a test, ``check``) shares nothing: each
call walks the table itself.

psutil reads every process's stat and statm in one pass (``process_iter`` with its attributes);
the command line, a file more per process, is read only where there is one: kernel threads (the
children of kthreadd, pid 2, most of a host's table) always have an empty one. Whether pid 2 is
kthreadd is checked on each walk (in a container's pid namespace it is an ordinary process).
"""
from __future__ import annotations

from typing import Any

import psutil

from foundation.context import CollectContext

# every attribute either collector reads (psutil reads them in one pass per process)
ATTRS = ["pid", "name", "cmdline", "cpu_times", "memory_info", "create_time"]
# what process_iter reads of every process: ATTRS without the command line, with the parent
BASE = [a for a in ATTRS if a != "cmdline"] + ["ppid"]
KTHREADD = 2


def walk() -> list[Any]:
    """Every process, with ``.info`` holding ATTRS as psutil.process_iter(ATTRS) gives them."""
    procs = list(psutil.process_iter(BASE))
    kernel = any(p.info["pid"] == KTHREADD and p.info["name"] == "kthreadd"
                 and p.info["ppid"] == 0 for p in procs[:4])
    out = []
    for proc in procs:
        info = proc.info
        if kernel and (info["pid"] == KTHREADD or info["ppid"] == KTHREADD):
            info["cmdline"] = []            # a kernel thread: its command line is always empty
        else:
            try:
                info["cmdline"] = proc.cmdline()
            except (psutil.AccessDenied, psutil.ZombieProcess):
                info["cmdline"] = None      # as process_iter(ATTRS) gives it
            except psutil.NoSuchProcess:
                continue                    # it exited during the walk, as process_iter drops it
        del info["ppid"]
        out.append(proc)
    return out


def processes(ctx: CollectContext) -> list[Any]:
    """psutil processes with ``.info`` holding ATTRS, as the cycle first read them."""
    return ctx.shared.once("process_table", walk)
