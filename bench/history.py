"""Cycle cost against the length of history: 1 day versus 1 year (~500,000 samples) in the store.

Each scenario's cycles run in a fresh child interpreter so CPU time and peak memory are its own.
Run: .venv/bin/python -m bench.history [--cycles N]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "history.json"
STEP_S = 300          # one sample per series every 5 minutes, as the default interval
SERIES = ("system.memory_percent", "system.load1", "processes.count",
          "process.count[sshd]", "process.memory_rss_mb[sshd]")


def fill(db: Path, days: int) -> int:
    """Write ``days`` of history for the series a cycle produces; returns the sample count."""
    sys.path.insert(0, str(ROOT))
    from foundation.store.data_storage import Store

    store = Store.open(db)
    end = time.time() - STEP_S
    start = end - days * 86400
    count = 0
    with store.transaction() as tx:
        for series in SERIES:
            rows = ((series, start + i * STEP_S, 40.0 + (i % 12))
                    for i in range(days * 86400 // STEP_S))
            count += tx.add_history(rows, by_hour=series == "system.load1")
    store.close()
    return count


def measure(db: Path, cycles: int) -> dict[str, float]:
    """Run in a child: one warm-up cycle, then ``cycles`` measured ones."""
    sys.path.insert(0, str(ROOT))
    from agent.cycle import Agent
    from alerts.console import ConsoleNotifier
    from analysis.rules import RulesJudge
    from foundation.settings import load_settings
    from foundation.store.data_storage import Store

    settings = load_settings(environ={}, overrides={
        "DATA_DIR": db.parent, "COLLECTORS": ["processes"], "PROCESSES_TO_MONITOR": ["sshd"],
        "HISTORY_RETENTION_DAYS": 400})
    store = Store.open(db)
    cpu, wall = [], []
    with open(os.devnull, "w") as devnull:
        agent = Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(devnull)})
        agent.run_cycle()
        for _ in range(cycles):
            c0, w0 = time.process_time(), time.perf_counter()
            agent.run_cycle()
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
    store.close()
    cpu.sort()
    wall.sort()
    return {"cpu_ms_median": 1000 * cpu[len(cpu) // 2], "cpu_ms_min": 1000 * cpu[0],
            "wall_ms_median": 1000 * wall[len(wall) // 2],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    """Fill both stores, measure each in a child, print figures and the ratio."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--child", nargs=2, metavar=("DB", "CYCLES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), int(args.child[1]))))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, days in (("1 day", 1), ("1 year", 365)):
            db = Path(tmp) / label.replace(" ", "_") / "monitor.db"
            t0 = time.perf_counter()
            samples = fill(db, days)
            setup = time.perf_counter() - t0
            out = subprocess.run([sys.executable, "-m", "bench.history", "--child", str(db),
                                  str(args.cycles)], cwd=ROOT, capture_output=True, text=True,
                                 check=True)
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            figures.update({"samples": samples, "db_mb": db.stat().st_size / 2**20,
                            "setup_s": setup})
            results[label] = figures
            print(f"{label:7} history: {samples:>7} samples, store {figures['db_mb']:.1f} MB; "
                  f"cycle CPU {figures['cpu_ms_median']:.1f} ms (median of {args.cycles}), "
                  f"wall {figures['wall_ms_median']:.1f} ms, peak RSS "
                  f"{figures['peak_rss_mb']:.1f} MB")
    day, year = results["1 day"], results["1 year"]
    ratio_cpu = year["cpu_ms_median"] / day["cpu_ms_median"]
    ratio_mem = year["peak_rss_mb"] / day["peak_rss_mb"]
    print(f"ratio 1 year / 1 day: CPU {ratio_cpu:.2f}x, peak memory {ratio_mem:.2f}x "
          f"(goal: at most 1.10)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "history", "cycles": args.cycles,
                                   "scenarios": results, "ratio_cpu": ratio_cpu,
                                   "ratio_peak_memory": ratio_mem,
                                   "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")},
                                  indent=2) + "\n")


if __name__ == "__main__":
    main()
