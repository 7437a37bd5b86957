"""The agent's steady footprint (issue 20, point 1): CPU per steady cycle, steady and peak RSS, and
the CPU of ``--once``, now and at the commit before the work (a0d1137), measured in the same run.

Each variant runs ``monitor_agent.py`` from its own tree with this virtual environment's Python:

- the loop at MONITOR_INTERVAL_SECONDS 10 with config.py's default COLLECTORS, on a quiet machine
  state: a temporary DATA_DIR; SYSLOG_PATH and AUTH_LOG_PATH temporary empty files (backend
  "file") that get no new line; ping and nmap on 127.0.0.1 (the defaults); no Discord webhook,
  no Docker container watched; Ollama answering its health checks (the tests' loopback fake of
  its API, tests/fakes/ollama_server.py, in this process): the steady cycle of issue 20 has no
  finding, and an Ollama that does not answer is one (llm_unavailable). With no finding the
  judge is not asked (the rules' verdict: none);
  COLLECTOR_TIMEOUT_SECONDS 3 and OLLAMA_TIMEOUT_SECONDS 1, without which the agent refuses a
  10 s interval (agent/budget.py); the daily recap 12 hours away. After its first two cycles
  (the first one scans with nmap, migrates the store, backs it up) a window of ``--window``
  seconds (120) is measured: CPU = user + system of the agent and of its children (reaped ones
  through psutil's children_user/children_system, live ones added), divided by the cycles that
  started in the window; RSS of the agent sampled every second: median (steady) and max, and the
  kernel's high-water mark (VmHWM, the peak over the whole run).
- ``--once`` on a store that already had a cycle: user + system of the process and of every child
  it waited for (os.wait4), median of ``--once-runs`` (5).

The "before" tree is ``git worktree add --detach /tmp/footprint-before a0d1137``, made and
removed by this bench (its C auth scanner is copied in when its source is the same as here, as a
build would make it). Writes bench/results/footprint.json.

Run: .venv/bin/python -m bench.footprint [--window 120] [--skip-before]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import psutil

from bench import save

ROOT = Path(__file__).resolve().parent.parent
BEFORE_COMMIT = "a0d1137"
BEFORE_TREE = Path("/tmp/footprint-before")
INTERVAL_S = 10
WARM_CYCLES = 2
BARS = {"steady_rss_mb": 40.0, "cpu_per_cycle_ms": 15.0, "once_cpu_s": 0.3}
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


def closed_port_url() -> str:
    """An http URL on loopback where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def agent_env(folder: Path, ollama_url: str = "", **extra: str) -> dict[str, str]:
    """The quiet machine state of the module's docstring, in ``folder``."""
    (folder / "data").mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in ("syslog", "auth.log"):
        (folder / name).touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update(MONITOR_DATA_DIR=str(folder / "data"), MONITOR_MONITOR_INTERVAL_SECONDS=str(INTERVAL_S),
               MONITOR_SYSLOG_PATH=str(folder / "syslog"), MONITOR_SYSLOG_BACKEND="file",
               MONITOR_AUTH_LOG_PATH=str(folder / "auth.log"), MONITOR_AUTH_LOG_BACKEND="file",
               MONITOR_OLLAMA_HOST=ollama_url or closed_port_url(),
               MONITOR_COLLECTOR_TIMEOUT_SECONDS="3",
               MONITOR_OLLAMA_TIMEOUT_SECONDS="1", MONITOR_LOG_LEVEL="INFO",
               MONITOR_DAILY_RECAP_TIME=time.strftime("%H:%M", time.localtime(time.time() + 43200)),
               **extra)
    return env


def cycles_started(db: Path) -> list[float]:
    """Start times (epoch) of the committed cycles in the store."""
    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return [float(r[0]) for r in conn.execute("SELECT started_at FROM cycles ORDER BY started_at")]
        finally:
            conn.close()
    except sqlite3.Error:
        return []


def tree_cpu_s(proc: psutil.Process) -> float:
    """User + system of the process, its reaped children and its live descendants."""
    times = proc.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in proc.children(recursive=True):
        with suppress(psutil.Error):
            own = child.cpu_times()
            total += own.user + own.system
    return total


def high_water_mb(pid: int) -> float | None:
    """The kernel's peak RSS of a process (VmHWM), in MiB."""
    with suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def loop(tree: Path, folder: Path, window_s: float, ollama_url: str) -> dict[str, Any]:
    """The agent's loop: CPU per steady cycle, steady and peak RSS (the module's docstring)."""
    env = agent_env(folder, ollama_url)
    db = folder / "data" / "monitor.db"
    log = folder / "agent.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen([sys.executable, "monitor_agent.py"], cwd=tree, env=env,
                                 stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        proc = psutil.Process(popen.pid)
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(cycles_started(db)) < WARM_CYCLES:
            if popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the agent in {tree} did not run {WARM_CYCLES} cycles:\n"
                                   + log.read_text(errors="replace")[-2000:])
            time.sleep(0.2)
        time.sleep(1.0)                         # the second cycle's bookkeeping
        start_wall, start_cpu = time.time(), tree_cpu_s(proc)
        rss: list[float] = []
        while time.time() - start_wall < window_s:
            rss.append(proc.memory_info().rss / 2**20)
            time.sleep(1.0)
        end_wall, end_cpu = time.time(), tree_cpu_s(proc)
        in_window = [t for t in cycles_started(db) if start_wall <= t < end_wall]
        report = json.loads(sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute(
            "SELECT report FROM cycles ORDER BY started_at DESC LIMIT 1").fetchone()[0])
        return {"window_s": round(end_wall - start_wall, 1), "cycles": len(in_window),
                "cpu_s": round(end_cpu - start_cpu, 3),
                "cpu_per_cycle_ms": round(1000 * (end_cpu - start_cpu) / max(1, len(in_window)), 1),
                "cpu_per_10s_ms": round(10000 * (end_cpu - start_cpu) / (end_wall - start_wall), 1),
                "steady_rss_mb": round(statistics.median(rss), 1), "max_rss_mb": round(max(rss), 1),
                "peak_rss_mb": round(high_water_mb(popen.pid) or max(rss), 1),
                "findings_last_cycle": [f["kind"] for f in report.get("findings", [])],
                "reported_peak_rss_mb": report.get("peak_rss_mb"),
                "reported_rss_mb": report.get("rss_mb")}
    finally:
        if popen.poll() is None:
            popen.terminate()
            try:
                popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()


def once(tree: Path, folder: Path, runs: int, ollama_url: str) -> dict[str, Any]:
    """``--once`` on a store that already had a cycle: CPU of the process and its waited children."""
    env = agent_env(folder, ollama_url)
    subprocess.run([sys.executable, "monitor_agent.py", "--once"], cwd=tree, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, timeout=300)
    cpu, peak = [], []
    for _ in range(runs):
        popen = subprocess.Popen([sys.executable, "monitor_agent.py", "--once"], cwd=tree, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(popen.pid, 0)
        popen.returncode = os.waitstatus_to_exitcode(status)
        cpu.append(usage.ru_utime + usage.ru_stime)
        peak.append(usage.ru_maxrss / 1024)
    return {"once_cpu_s": round(statistics.median(cpu), 3), "once_cpu_runs_s": [round(c, 3) for c in cpu],
            "once_peak_rss_mb": round(statistics.median(peak), 1)}


def measure(tree: Path, window_s: float, runs: int) -> dict[str, Any]:
    """Both measurements of one tree, each in a fresh temporary folder."""
    from tests.fakes.ollama_server import FakeOllama

    with tempfile.TemporaryDirectory(prefix="footprint-") as tmp, FakeOllama() as ollama:
        figures = loop(tree, Path(tmp) / "loop", window_s, ollama.url)
        figures.update(once(tree, Path(tmp) / "once", runs, ollama.url))
    return figures


def before_tree() -> Path:
    """A worktree at BEFORE_COMMIT (detached), with the C auth scanner when its source is ours."""
    remove_before_tree()
    subprocess.run(["git", "worktree", "add", "--detach", str(BEFORE_TREE), BEFORE_COMMIT],
                   cwd=ROOT, check=True, capture_output=True)
    same = subprocess.run(["git", "diff", "--quiet", BEFORE_COMMIT, "--",
                           "collectors/auth/_authscan.c"], cwd=ROOT, check=False).returncode == 0
    if same:
        for built in (ROOT / "collectors" / "auth").glob("_authscan*.so"):
            shutil.copy2(built, BEFORE_TREE / "collectors" / "auth" / built.name)
    return BEFORE_TREE


def remove_before_tree() -> None:
    """Remove the worktree (and git's record of it) if it is there."""
    if BEFORE_TREE.exists():
        subprocess.run(["git", "worktree", "remove", "--force", str(BEFORE_TREE)], cwd=ROOT,
                       check=False, capture_output=True)
    shutil.rmtree(BEFORE_TREE, ignore_errors=True)
    subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False, capture_output=True)


def line(name: str, f: dict[str, Any]) -> str:
    return (f"{name:7} CPU per steady cycle {f['cpu_per_cycle_ms']:6.1f} ms ({f['cycles']} cycles in "
            f"{f['window_s']:.0f} s; {f['cpu_per_10s_ms']:.1f} ms per 10 s)  steady RSS "
            f"{f['steady_rss_mb']:5.1f} MB  peak RSS {f['peak_rss_mb']:5.1f} MB  --once CPU "
            f"{f['once_cpu_s']:.3f} s (median of {len(f['once_cpu_runs_s'])}, peak RSS "
            f"{f['once_peak_rss_mb']:.1f} MB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=120.0, help="measured seconds (120)")
    parser.add_argument("--once-runs", type=int, default=5, help="--once runs (median; 5)")
    parser.add_argument("--skip-before", action="store_true", help="measure this tree only")
    args = parser.parse_args()
    results: dict[str, Any] = {"interval_s": INTERVAL_S, "bars": BARS,
                               "load1_at_start": round(os.getloadavg()[0], 2)}
    if not args.skip_before:
        try:
            results["before"] = {"commit": BEFORE_COMMIT,
                                 **measure(before_tree(), args.window, args.once_runs)}
        finally:
            remove_before_tree()
    results["after"] = measure(ROOT, args.window, args.once_runs)
    results["load1_at_end"] = round(os.getloadavg()[0], 2)
    after = results["after"]
    results["met"] = {key: after[key] <= bar for key, bar in BARS.items()}
    print("The agent's steady footprint: loop at a 10 s interval, default collectors, quiet machine")
    if "before" in results:
        print(line("before", results["before"]) + f"  [{BEFORE_COMMIT}]")
    print(line("after", after))
    for name in ("before", "after"):
        if results.get(name, {}).get("findings_last_cycle"):
            print(f"{name}: NOT the quiet machine of issue 20, the last cycle had findings: "
                  f"{results[name]['findings_last_cycle']}")
    print("bars: " + "; ".join(f"{key} <= {bar:g}: {'met' if results['met'][key] else 'NOT met'}"
                               f" ({after[key]:g})" for key, bar in BARS.items()))
    if "before" in results:
        b = results["before"]
        print("after / before: CPU per cycle {:.2f}x, steady RSS {:.2f}x, --once CPU {:.2f}x".format(
            after["cpu_per_cycle_ms"] / b["cpu_per_cycle_ms"],
            after["steady_rss_mb"] / b["steady_rss_mb"], after["once_cpu_s"] / b["once_cpu_s"]))
    print(f"load average at start / end: {results['load1_at_start']} / {results['load1_at_end']}")
    save("footprint", results)
    return 0 if all(results["met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
