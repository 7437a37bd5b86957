"""One full cycle with the host and network collectors: wall time, per-collector time, agent CPU.

Collectors: processes, sensors, ping (three loopback targets), containers and llm_runtimes (those
present in this build), through agent.cycle.Agent on a temporary store with the rules judge (the
Ollama judge's own cost is the judge benchmark's subject). A stand-in LLM runtime (a python process
holding a .gguf open with a loopback connection) runs meanwhile, so llm_runtimes does its deep
reads. Reference measured in the same run: one bare ``psutil.process_iter`` pass.

Run: .venv/bin/python -m bench.cycle_collectors [--cycles 5]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "cycle_collectors.json"
WANTED = ("processes", "sensors", "ping", "containers", "llm_runtimes")
PING_TARGETS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
BAR_S = 2.0
STAND_IN = """
import os, socket, sys, time
held = open(sys.argv[1], "rb")
out = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
print("ready", flush=True)
time.sleep(600)
"""


def present_collectors() -> list[str]:
    """The wanted collectors whose modules exist in this build."""
    import collectors

    found = []
    for name in WANTED:
        try:
            collectors.load(name)
        except collectors.CollectorUnavailable:
            continue
        found.append(name)
    return found


def start_stand_in(folder: Path, port: int) -> subprocess.Popen:
    """A process with a unique name that holds a .gguf open and a loopback connection."""
    link = folder / f"benchrt{os.getpid()}"[:15]
    link.symlink_to(os.path.realpath(sys.executable))
    model = folder / "bench-q4_0.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 4092)
    script = folder / "stand_in.py"
    script.write_text(STAND_IN)
    proc = subprocess.Popen([str(link), str(script), str(model), str(port)],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


def cpu_now() -> tuple[float, float]:
    """(CPU seconds of this process, CPU seconds of its waited-for children)."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), kids.ru_utime + kids.ru_stime


def reference(rounds: int) -> dict[str, float]:
    """A bare process-table pass, the floor any process collector stands on."""
    walls, cpus = [], []
    for _ in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        count = sum(1 for _ in psutil.process_iter(["pid", "name", "cmdline", "memory_info"]))
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus),
            "processes": count}


def alone(settings: Any, names: list[str], rounds: int) -> dict[str, float]:
    """Median wall time of each collector called by itself, one after another (no contention)."""
    import collectors
    from foundation.context import CollectContext

    out = {}
    for name in names:
        module = collectors.load(name)
        walls = []
        for _ in range(rounds):
            w0 = time.perf_counter()
            module.collect(CollectContext(settings, time.time(), {}))
            walls.append(time.perf_counter() - w0)
        out[name] = statistics.median(walls)
    return out


def scan_cost(rounds: int) -> dict[str, float]:
    """llm_runtimes' process scan: the cheap pass as shipped versus reading every process."""
    from collectors import llm_runtimes

    out = {}
    for label, rss in (("candidates_only", llm_runtimes.CANDIDATE_RSS_BYTES), ("every_process", 0)):
        walls = []
        for _ in range(rounds):
            w0 = time.perf_counter()
            llm_runtimes.scan(candidate_rss=rss)
            walls.append(time.perf_counter() - w0)
        out[label] = statistics.median(walls)
    return out


def run(cycles: int) -> dict[str, Any]:
    """Warm-up plus ``cycles`` measured cycles; returns the figures."""
    sys.path.insert(0, str(ROOT))
    from agent.cycle import Agent
    from alerts.console import ConsoleNotifier
    from analysis.rules import RulesJudge
    from foundation.settings import load_settings
    from foundation.store.data_storage import Store

    names = present_collectors()
    with tempfile.TemporaryDirectory(prefix="bench-cycle-") as tmp, \
            socket.socket() as listener, open(os.devnull, "w") as devnull:
        folder = Path(tmp)
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            ollama = f"http://127.0.0.1:{closed.getsockname()[1]}"
        settings = load_settings(environ={}, overrides={
            "DATA_DIR": folder / "data", "COLLECTORS": names, "PING_TARGETS": PING_TARGETS,
            "OLLAMA_HOST": ollama})
        store = Store.open(settings.db_path)
        stand_in = start_stand_in(folder, listener.getsockname()[1])
        try:
            agent = Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(devnull)})
            agent.run_cycle()
            walls, own, kids, per = [], [], [], {n: [] for n in names}
            last: dict[str, Any] = {}
            for _ in range(cycles):
                c0, k0 = cpu_now()
                w0 = time.perf_counter()
                last = agent.run_cycle()
                walls.append(time.perf_counter() - w0)
                c1, k1 = cpu_now()
                own.append(c1 - c0)
                kids.append(k1 - k0)
                for name in names:
                    per[name].append(last["collectors"][name]["duration_s"])
            by_itself = alone(settings, names, cycles)
            scans = scan_cost(10)
        finally:
            stand_in.terminate()
            stand_in.wait(5)
            store.close()
    ref = reference(20)
    obs = last["observations"].get("llm_runtimes", {})
    return {
        "cycles": cycles, "collectors": names, "ping_targets": PING_TARGETS,
        "cpu_count": psutil.cpu_count(), "load1_at_end": round(os.getloadavg()[0], 2),
        "wall_s": {"median": statistics.median(walls), "max": max(walls), "all": walls},
        "agent_cpu_s_per_cycle": statistics.median(own),
        "children_cpu_s_per_cycle": statistics.median(kids),
        "collector_s": {n: {"median": statistics.median(v), "max": max(v),
                            "alone_median": by_itself[n]} for n, v in per.items()},
        "collector_status": {n: {k: last["collectors"][n][k] for k in ("ok", "available", "note")}
                             for n in names},
        "llm_runtimes": {"processes_seen": obs.get("processes_seen"),
                         "candidates_checked": obs.get("candidates_checked"),
                         "runtimes_found": obs.get("runtime_count"),
                         "scan_s": scans},
        "reference_process_iter": ref,
        "bar_s": BAR_S, "under_bar": max(walls) < BAR_S,
    }


def main() -> None:
    """Run, print the figures, write bench/results/cycle_collectors.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5)
    args = parser.parse_args()
    res = run(max(1, args.cycles))
    ref = res["reference_process_iter"]
    print(f"collectors: {', '.join(res['collectors'])}; {res['cycles']} cycles after a warm-up; "
          f"{res['cpu_count']} CPUs, load {res['load1_at_end']}")
    for name, figs in res["collector_s"].items():
        status = res["collector_status"][name]
        extra = "" if status["available"] else f"\n      unavailable: {status['note'] or ''}"
        print(f"  {name:<13} in cycle: median {figs['median'] * 1000:6.1f} ms, max "
              f"{figs['max'] * 1000:6.1f} ms; alone {figs['alone_median'] * 1000:6.1f} ms{extra}")
    wall = res["wall_s"]
    print(f"cycle wall time: median {wall['median']:.3f} s, max {wall['max']:.3f} s "
          f"(bar {res['bar_s']:.0f} s: {'met' if res['under_bar'] else 'MISSED'})")
    cpu = res["agent_cpu_s_per_cycle"]
    kids = res["children_cpu_s_per_cycle"]
    print(f"agent CPU per cycle: {cpu * 1000:.1f} ms (+ {kids * 1000:.1f}"
          f" ms in child commands)")
    print(f"reference: bare process_iter over {ref['processes']} processes: "
          f"{ref['wall_s'] * 1000:.1f} ms wall, {ref['cpu_s'] * 1000:.1f} ms CPU; "
          f"cycle CPU = {cpu / max(ref['cpu_s'], 1e-6):.0f}x that pass")
    lr = res["llm_runtimes"]
    print(f"llm_runtimes: {lr['processes_seen']} processes seen, {lr['candidates_checked']} read "
          f"closely, {lr['runtimes_found']} runtime(s) found; process scan "
          f"{lr['scan_s']['candidates_only'] * 1000:.1f} ms as shipped vs "
          f"{lr['scan_s']['every_process'] * 1000:.1f} ms reading every process's maps and files")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
