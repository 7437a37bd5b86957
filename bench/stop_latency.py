"""How long the running agent takes to exit after SIGTERM (the README promises 2 s).

tests/test_cli.py checks the same path with a wide bound that holds on a loaded machine; the
figure lives here. Each trial starts the real loop (`monitor_agent.py`, processes collector),
waits for its first committed cycle, sends SIGTERM and times the exit.
Run: .venv/bin/python -m bench.stop_latency [--trials N]
"""
from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import save

ROOT = Path(__file__).resolve().parent.parent


def committed(db: Path) -> bool:
    """True once the store holds a cycle."""
    if not db.exists():
        return False
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM cycles").fetchone()[0] >= 1
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def trial(folder: Path) -> float:
    """One start, first cycle, SIGTERM; seconds from the signal to the exit."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder),
           "MONITOR_DATA_DIR": str(folder / "data"), "MONITOR_COLLECTORS": "processes",
           "MONITOR_PROCESSES_TO_MONITOR": f"bench-never-runs-{os.getpid()}",
           "MONITOR_INTERVAL_SECONDS": "30", "MONITOR_OLLAMA_TIMEOUT_SECONDS": "5"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not committed(folder / "data" / "monitor.db"):
            if time.monotonic() > deadline:
                raise SystemExit("the agent never committed a cycle")
            time.sleep(0.05)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        return time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main() -> None:
    """Run the trials and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    times = []
    for n in range(args.trials):
        with tempfile.TemporaryDirectory() as tmp:
            times.append(trial(Path(tmp)))
    figures = {"trials": args.trials, "median_s": statistics.median(times), "max_s": max(times)}
    print(f"SIGTERM -> exit: median {figures['median_s']:.2f} s, max {figures['max_s']:.2f} s "
          f"over {args.trials} trials (README: within 2 s)")
    save("stop_latency", figures)


if __name__ == "__main__":
    main()
