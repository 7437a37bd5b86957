"""Event cycles under faults: rotation (create and copytruncate) and a deleted and recreated file
while following, the journal rotated and vacuumed, and a flood of 100,000 lines a second.

Whatever mix of event and scheduled cycles reads a line first, each line is counted once (the
syslog.lines samples add up to the lines written), and a flood costs bounded memory while the
scheduled cycles keep their interval.
"""
from __future__ import annotations

import io
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent import EVENT, SCHEDULED
from agent.cycle import Agent
from alerts.console import ConsoleNotifier
from analysis.rules import RulesJudge
from foundation.store.data_storage import Store
from tests.conftest import ROOT
from tests.test_journal import build, sshd

pytestmark = pytest.mark.faults

CRASH = "kernel: BUG: unable to handle page fault for address: ffffffffc0a1b2c3"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def stamp(at: float) -> str:
    return time.strftime("%b %e %H:%M:%S", time.localtime(at))


def syslog_agent(tmp_path: Path, make_settings: Any, store: Store) -> tuple[Agent, Path, Clock,
                                                                              io.StringIO]:
    log = tmp_path / "syslog"
    log.write_text("")
    settings = make_settings(COLLECTORS=["syslog"], SYSLOG_PATH=log, SYSLOG_BACKEND="file",
                             OLLAMA_HOST="http://127.0.0.1:9")
    out, clock = io.StringIO(), Clock()
    agent = Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(out)}, clock=clock)
    agent.run_cycle(SCHEDULED)
    return agent, log, clock, out


class Writer:
    """Numbered syslog lines, appended; each write counted."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.written = 0

    def lines(self, n: int, crash: bool = False) -> None:
        at = stamp(time.time())
        text = "".join(f"{at} box app[1]: line {self.written + i}\n" for i in range(n))
        if crash:
            text += f"{at} box {CRASH}\n"
        with self.log.open("a") as f:
            f.write(text)
        self.written += n + crash


def lines_stored(store: Store) -> float:
    return sum(v for _, v in store.samples_since("syslog.lines", 0.0))


def rotate(tmp_path: Path, log: Path, mode: str) -> None:
    conf = tmp_path / f"{mode}.conf"
    conf.write_text(f"{log} {{\n  rotate 5\n  {mode}\n  missingok\n}}\n")
    subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "lr.state"), str(conf)], check=True,
                   capture_output=True, timeout=60)


def test_rotation_and_a_recreated_file_between_event_and_scheduled_cycles(
        tmp_path: Path, make_settings: Any, store: Store) -> None:
    agent, log, clock, out = syslog_agent(tmp_path, make_settings, store)
    w = Writer(log)
    w.lines(50)
    assert agent.run_cycle(EVENT)["committed"] is False       # read, kept in memory only
    rotate(tmp_path, log, "create")
    w.lines(40, crash=True)                                   # urgent: this event cycle commits
    committed = agent.run_cycle(EVENT)
    assert committed["committed"] is True
    assert "kernel_crash" in {f["kind"] for f in committed["findings"]}
    w.lines(30)
    assert agent.run_cycle(EVENT)["committed"] is False
    rotate(tmp_path, log, "copytruncate")
    w.lines(20)
    clock.now += 300
    agent.run_cycle(SCHEDULED)
    assert lines_stored(store) == w.written                   # 141 lines, each counted once
    log.unlink()                                               # deleted and recreated
    log.write_text("")
    w.lines(25, crash=True)
    assert agent.run_cycle(EVENT)["committed"] is True
    clock.now += 300
    agent.run_cycle(SCHEDULED)
    assert lines_stored(store) == w.written
    assert out.getvalue().count("[ALERT]") == 2                # each crash alerted once


def test_the_journal_rotated_and_vacuumed_under_event_cycles(tmp_path: Path, make_settings: Any,
                                                             store: Store) -> None:
    folder = tmp_path / "journal"
    build(folder, "old", [sshd(0, "Accepted publickey for alice from 192.0.2.1 port 1 ssh2")])
    settings = make_settings(COLLECTORS=["auth_log"], AUTH_LOG_BACKEND="journal",
                             JOURNAL_DIRECTORY=str(folder), OLLAMA_HOST="http://127.0.0.1:9")
    out, clock = io.StringIO(), Clock()
    agent = Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(out)}, clock=clock)
    agent.run_cycle(SCHEDULED)                                 # starts at the journal's end
    fails = [sshd(i, f"Failed password for root from 203.0.113.7 port {i} ssh2", prio="5")
             for i in range(1, 7)]
    build(folder, "rotated", fails)                            # journald rotated to a new file
    assert agent.run_cycle(EVENT)["committed"] is False        # brute force: not urgent
    (folder / "old.journal").unlink()                          # vacuumed
    build(folder, "next", [sshd(7, "Accepted password for root from 203.0.113.7 port 9 ssh2")])
    report = agent.run_cycle(EVENT)
    assert report["committed"] is True
    assert "login_after_failures" in {f["kind"] for f in report["findings"]}
    clock.now += 300
    agent.run_cycle(SCHEDULED)
    assert sum(v for _, v in store.samples_since("auth.failed_logins", 0.0)) == 6
    assert out.getvalue().count("[ALERT]") == 1


def test_a_flood_of_100000_lines_a_second_costs_bounded_memory_and_no_scheduled_cycle(
        tmp_path: Path) -> None:
    """The agent as a service (interval 10 s, 1 MiB read per cycle) under a writer appending
    100,000 syslog lines a second for 12 s: its memory stays bounded and its scheduled cycles
    keep their interval while event cycles run in between."""
    log = tmp_path / "syslog"
    log.write_text("")
    data = tmp_path / "data"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "MONITOR_DATA_DIR": str(data), "MONITOR_COLLECTORS": "syslog",
           "MONITOR_SYSLOG_PATH": str(log), "MONITOR_SYSLOG_BACKEND": "file",
           "MONITOR_OLLAMA_HOST": "http://127.0.0.1:9", "MONITOR_OLLAMA_TIMEOUT_SECONDS": "1",
           "MONITOR_INTERVAL_SECONDS": "10", "MONITOR_COLLECTOR_TIMEOUT_SECONDS": "2",
           "MONITOR_LOG_MAX_BYTES_PER_CYCLE": str(1 << 20)}
    agent = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py")], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def watch_memory() -> None:
        proc = psutil.Process(agent.pid)
        while not done.is_set():
            try:
                peak[0] = max(peak[0], proc.memory_info().rss)
            except psutil.NoSuchProcess:
                return
            done.wait(0.2)

    threading.Thread(target=watch_memory, daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while not (data / "monitor.db").exists():
            assert time.monotonic() < deadline and agent.poll() is None
            time.sleep(0.2)
        time.sleep(2)
        line = f"{stamp(time.time())} box app[1]: flood " + "x" * 60 + "\n"
        chunk = line * 10_000
        written, t0 = 0, time.monotonic()
        with log.open("a") as f:
            while time.monotonic() - t0 < 12:
                f.write(chunk)
                f.flush()
                written += 10_000
                ahead = written / 100_000 - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        rate = written / (time.monotonic() - t0)
        time.sleep(12)                                         # a scheduled cycle after it
    finally:
        done.set()
        agent.terminate()
        _, err = agent.communicate(timeout=60)
    assert agent.returncode == 0, err[-2000:]
    with sqlite3.connect(data / "monitor.db") as db:
        cycles = [(started, json.loads(report).get("trigger", "schedule"))
                  for started, report in db.execute(
                      "SELECT started_at, report FROM cycles ORDER BY started_at")]
    scheduled = [s for s, trigger in cycles if trigger == "schedule"]
    gaps = [b - a for a, b in itertools.pairwise(scheduled)]
    print(f"\nflood: {rate:,.0f} lines/s written, {written:,} lines; peak RSS "
          f"{peak[0] / 2**20:.0f} MB; scheduled cycles every {gaps} s")
    assert rate > 30_000, "the writer itself could not keep up; the machine is too loaded"
    assert len(scheduled) >= 3
    assert all(gap < 10 + 15 for gap in gaps), gaps         # none starved (interval 10 s)
    assert peak[0] < 400 * 2**20                               # bounded: 1 MiB read a cycle
