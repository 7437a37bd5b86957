"""Watched processes and top consumers, through psutil.

Matching: an entry of PROCESSES_TO_MONITOR matches a process whose name (the kernel's comm, at most
15 characters) or whose argv[0] base name equals it exactly. An entry written ``cmdline:TEXT``
matches any process whose full command line contains TEXT (the agent's own process excluded).
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from collectors import proctable
from foundation.context import CollectContext
from foundation.model import CollectResult, Sample
from foundation.settings import Settings

CMDLINE_PREFIX = "cmdline:"
TOP_N = 5
ATTRS = ["pid", "name", "cmdline", "cpu_times", "memory_info", "create_time"]


def timeout_s(settings: Settings) -> float:
    """A process table walk takes tens of milliseconds; allow for a loaded machine."""
    return 15.0


@dataclass(frozen=True)
class ProcInfo:
    """The few facts kept about one process."""

    pid: int
    name: str
    argv0: str
    cmdline: str
    cpu_seconds: float
    rss_bytes: int
    create_time: float


def snapshot(procs: Iterable[Any] | None = None) -> list[ProcInfo]:
    """Read the process table (or the given psutil-like processes) into ProcInfo records."""
    out = []
    for proc in procs if procs is not None else psutil.process_iter(ATTRS):
        info = proc.info
        times, mem = info.get("cpu_times"), info.get("memory_info")
        cmd = info.get("cmdline") or []
        out.append(ProcInfo(
            pid=info["pid"], name=info.get("name") or "",
            argv0=os.path.basename(cmd[0]) if cmd else "", cmdline=" ".join(cmd),
            cpu_seconds=(times.user + times.system) if times else 0.0,
            rss_bytes=mem.rss if mem else 0, create_time=info.get("create_time") or 0.0))
    return out


def matches(entry: str, proc: ProcInfo, own_pid: int) -> bool:
    """True when a PROCESSES_TO_MONITOR entry matches a process (see the module's docstring)."""
    if entry.startswith(CMDLINE_PREFIX):
        return proc.pid != own_pid and entry[len(CMDLINE_PREFIX):] in proc.cmdline
    return entry in (proc.name, proc.argv0)


def name_index(procs: list[ProcInfo]) -> dict[str, list[ProcInfo]]:
    """Processes by name and by argv[0] base name, each process once per key, in table order."""
    index: dict[str, list[ProcInfo]] = {}
    for proc in procs:
        for key in {proc.name, proc.argv0}:
            index.setdefault(key, []).append(proc)
    return index


def cpu_percent(proc: ProcInfo, previous: Mapping[str, Any], now: float, last_at: float | None
                ) -> float:
    """CPU % since the last cycle, or over the process lifetime the first time it is seen."""
    prev = previous.get(str(proc.pid))
    if prev and last_at and abs(prev[0] - proc.create_time) < 0.01 and now > last_at:
        used, wall = proc.cpu_seconds - prev[1], now - last_at
    else:
        used, wall = proc.cpu_seconds, now - proc.create_time
    return round(max(0.0, 100.0 * used / wall), 2) if wall > 0 else 0.0


def summarize(watch: Iterable[str], procs: list[ProcInfo], previous: Mapping[str, Any],
              now: float, own_pid: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Observations and next state from a process snapshot (pure: no system calls)."""
    last_at = previous.get("at")
    prev_cpu = previous.get("cpu", {})
    cpu = {p.pid: cpu_percent(p, prev_cpu, now, last_at) for p in procs}
    by_name = name_index(procs)
    watched = {}
    for entry in watch:
        if entry.startswith(CMDLINE_PREFIX):
            hits = [p for p in procs if matches(entry, p, own_pid)]
        else:   # an exact entry: one look-up, not a scan of the table per entry
            hits = by_name.get(entry, [])
        watched[entry] = {
            "running": bool(hits), "count": len(hits), "pids": sorted(p.pid for p in hits)[:20],
            "cpu_percent": round(sum(cpu[p.pid] for p in hits), 2),
            "memory_rss_mb": round(sum(p.rss_bytes for p in hits) / 2**20, 1)}
    by_cpu = sorted(procs, key=lambda p: cpu[p.pid], reverse=True)[:TOP_N]
    by_mem = sorted(procs, key=lambda p: p.rss_bytes, reverse=True)[:TOP_N]
    observations = {
        "process_count": len(procs),
        "watched": watched,
        "top_cpu": [{"pid": p.pid, "name": p.name, "cpu_percent": cpu[p.pid]} for p in by_cpu],
        "top_memory": [{"pid": p.pid, "name": p.name, "memory_rss_mb": round(p.rss_bytes / 2**20, 1)}
                       for p in by_mem],
    }
    state = {"at": now, "cpu": {str(p.pid): [p.create_time, p.cpu_seconds] for p in procs}}
    return observations, state


def collect(ctx: CollectContext) -> CollectResult:
    """Snapshot the process table (shared with llm_runtimes in a cycle) and the system's load."""
    procs = snapshot(proctable.processes(ctx))
    observations, state = summarize(ctx.settings.PROCESSES_TO_MONITOR, procs, ctx.state,
                                    time.time(), os.getpid())
    vm = psutil.virtual_memory()
    load1 = os.getloadavg()[0]
    observations["system"] = {"memory_percent": vm.percent, "load1": round(load1, 2),
                              "cpu_count": psutil.cpu_count() or 1}
    samples = [Sample("system.memory_percent", vm.percent),
               Sample("system.load1", load1, by_hour=True),
               Sample("processes.count", float(len(procs)))]
    for entry, facts in observations["watched"].items():
        samples.append(Sample("process.count", float(facts["count"]), key=entry))
        samples.append(Sample("process.memory_rss_mb", facts["memory_rss_mb"], key=entry))
    return CollectResult(observations=observations, samples=tuple(samples), state=state)
