"""How long SIGTERM takes while something the loop waits on hangs (docs/operations.md: within 2 s).

Each scenario starts the real agent loop (`monitor_agent.py`) on a fresh store with one watched
process missing (a high finding every cycle), waits until the hang is reached, sends SIGTERM and
times the exit: a Discord webhook, Home Assistant and Ollama that accept the request and never
answer (loopback servers), Ollama hung while the daily recap asks it for its summary, and a
`ping` that hangs with a child holding its output open; and, as the reference, the idle loop
after its first committed cycle (tests/test_cli.py checks that path with a wide bound).
Writes bench/results/stop_time.json.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from foundation.store.data_storage import Store
from tests.fakes.hung import HungServer, hanging_command
from tests.procs import unique_name

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "stop_time.json"
PROMISE_S = 2.0
REACH_S = 60.0


def _marked(marker: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"])
            if marker in " ".join(p.info["cmdline"] or ())]


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


def scenario(folder: Path, name: str) -> tuple[dict[str, str], Callable[[], bool], Callable[[], None]]:
    """The environment of one scenario, a test that its hang was reached, and its cleanup."""
    env = {"MONITOR_COLLECTORS": "processes", "MONITOR_OLLAMA_HOST": "http://127.0.0.1:9"}
    if name == "idle loop (after a committed cycle)":
        return env, lambda: committed(folder / "data" / "monitor.db"), lambda: None
    if name == "hung child (ping)":
        _, marker = hanging_command(folder / "bin")
        env.update(PATH=f"{folder / 'bin'}:{os.environ['PATH']}", MONITOR_COLLECTORS="ping",
                   MONITOR_PING_TARGETS="127.0.0.1", MONITOR_PING_TIMEOUT_SECONDS="60")
        return env, lambda: bool(_marked(marker)), lambda: [p.kill() for p in _marked(marker)]
    server = HungServer()
    if name == "hung Discord":
        env["MONITOR_DISCORD_WEBHOOK_URL"] = f"{server.url}/api/webhooks/1/token"
    elif name == "hung Home Assistant":
        env.update(MONITOR_HOME_ASSISTANT_URL=server.url, MONITOR_HOME_ASSISTANT_TOKEN="token",
                   MONITOR_GOOGLE_HOME_SPEAKER_ID="media_player.kitchen")
    elif name == "hung Ollama (recap summary)":
        due_at = time.time() - 60              # today's recap slot passed a minute ago, no finding
        store = Store.open(folder / "data" / "monitor.db")   # installed two days ago: a real
        with store.transaction() as tx:                      # day behind the recap
            tx.save_cycle(due_at - 2 * 86400, 0.4, "none", "rules", {})
        store.close()
        env.update(MONITOR_OLLAMA_HOST=server.url, MONITOR_OLLAMA_TIMEOUT_SECONDS="60", TZ="UTC",
                   MONITOR_PROCESSES_TO_MONITOR="",
                   MONITOR_DAILY_RECAP_TIME=time.strftime("%H:%M", time.gmtime(due_at)))
    else:
        env.update(MONITOR_OLLAMA_HOST=server.url, MONITOR_OLLAMA_TIMEOUT_SECONDS="60")
    return env, server.requests.is_set, server.close


def stop_time(name: str) -> float:
    """Seconds from SIGTERM to exit with the scenario's hang in progress."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        extra, reached, cleanup = scenario(folder, name)
        env = {"PATH": os.environ["PATH"], "HOME": tmp, "MONITOR_DATA_DIR": str(folder / "data"),
               "MONITOR_PROCESSES_TO_MONITOR": unique_name(), "MONITOR_INTERVAL_SECONDS": "300",
               **extra}    # a scenario may clear the watched process (no finding, no verdict)
        proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py")], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + REACH_S
            while not reached() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not reached():
                raise RuntimeError(f"{name}: the hang was never reached")
            time.sleep(0.5)                       # well inside the hung call
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
            return time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            cleanup()


def main() -> int:
    """Measure every scenario; 1 if any broke the 2 s promise."""
    names = ["idle loop (after a committed cycle)", "hung Discord", "hung Home Assistant",
             "hung Ollama", "hung Ollama (recap summary)",
             "hung child (ping)"]
    figures = {}
    for name in names:
        figures[name] = round(stop_time(name), 3)
        print(f"SIGTERM, {name}: {figures[name]:.2f} s to exit "
              f"(promise {PROMISE_S:g} s, ratio {figures[name] / PROMISE_S:.2f})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"promise_s": PROMISE_S, "stop_s": figures}, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0 if max(figures.values()) <= PROMISE_S else 1


if __name__ == "__main__":
    sys.exit(main())
