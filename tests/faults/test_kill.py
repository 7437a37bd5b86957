"""The agent killed with SIGKILL at random points: the store stays sound and accounts for every line.

Each run is the real CLI (`monitor_agent.py --once`) on a store in a temporary folder, reading log
files the test appends numbered lines to between runs (rotating syslog in create mode now and then,
at most twice before a run commits); most runs are killed after a random delay.
A cycle's samples and its log cursors commit in one transaction, so whatever the kill hits, the
committed ``syslog.lines`` (and auth failure) samples add up to exactly the lines written.
"""
from __future__ import annotations

import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT

SEED = 20261123
RUNS = 48
MAX_DELAY_S = 1.5
RUN_TIMEOUT_S = 60.0
TOTAL_BUDGET_S = 150.0
AUTH_MODULE = ROOT / "collectors" / "auth_log.py"
# the sample the auth_log collector commits with its cursor: failed logins read this cycle
AUTH_FAILED_SERIES = "auth.failed_logins"

pytestmark = pytest.mark.faults


def closed_port() -> int:
    """A loopback port nothing listens on (Ollama absent: the rules decide quickly)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Logs:
    """The log files the runs read and what was written to them."""

    syslog: Path
    auth: Path
    lines: int = 0            # complete syslog lines written
    failures: int = 0         # complete "Failed password" auth lines written
    partial: dict[Path, str] = field(default_factory=dict)   # a line written without its newline

    def append(self, path: Path, texts: list[str], rng: random.Random | None = None) -> None:
        """Append whole lines (finishing a pending partial one first); maybe leave one half-written."""
        out = self.partial.pop(path, "")
        out += "".join(t + "\n" for t in texts)
        if rng is not None and rng.random() < 0.2:
            line = f"{self._stamp()} host cron[1]: half-written line {uuid.uuid4().hex}"
            cut = rng.randint(1, len(line) - 1)
            out += line[:cut]
            self.partial[path] = line[cut:] + "\n"
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(out)

    def flush(self) -> None:
        """Finish every half-written line."""
        self.lines += self.syslog in self.partial
        for path, rest in list(self.partial.items()):
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(rest)
        self.partial.clear()

    @staticmethod
    def _stamp() -> str:
        return time.strftime("%b %e %H:%M:%S")


def write_round(logs: Logs, rng: random.Random, number: int) -> None:
    """One round of new lines: usually a few hundred, now and then a burst that makes a slow cycle."""
    count = rng.choice([0, rng.randint(1, 50), rng.randint(50, 800), rng.randint(5000, 30000)])
    stamp = logs._stamp()
    texts = [f"{stamp} host app{n % 7}[{1000 + n % 13}]: round {number} line {n}"
             for n in range(count)]
    had_partial = logs.syslog in logs.partial
    logs.append(logs.syslog, texts, rng)
    logs.lines += count + (1 if had_partial else 0)
    fails = rng.randint(0, 30)
    texts = [f"{stamp} host sshd[{2000 + n}]: Failed password for invalid user u{n} from "
             f"192.0.2.{n % 200 + 1} port {40000 + n} ssh2" for n in range(fails)]
    logs.append(logs.auth, texts)
    logs.failures += fails


def rotate(path: Path, keep: int = 9) -> None:
    """logrotate's create mode: path.N -> path.N+1, path -> path.1, a new empty path."""
    for n in range(keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{n + 1}"))
    os.rename(path, path.with_name(path.name + ".1"))
    path.touch()


def committed(db: Path, series: str) -> tuple[float, int]:
    """The sum and number of the committed samples of one series."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        row = conn.execute("SELECT COALESCE(SUM(x.value), 0), COUNT(*) FROM samples x JOIN "
                           "series s ON s.id = x.series_id WHERE s.name = ?", (series,)).fetchone()
        return float(row[0]), int(row[1])
    finally:
        conn.close()


def fingerprints(db: Path) -> set[str]:
    """Every fingerprint in the findings table."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        return {r[0] for r in conn.execute("SELECT fingerprint FROM findings")}
    finally:
        conn.close()


def integrity(db: Path) -> str:
    """PRAGMA integrity_check of the store."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def agent_env(tmp_path: Path, logs: Logs, with_auth: bool) -> dict[str, str]:
    """The environment of one agent run: everything in tmp_path, no network beyond loopback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update({
        "MONITOR_DATA_DIR": str(tmp_path / "data"),
        "MONITOR_COLLECTORS": "processes,syslog" + (",auth_log" if with_auth else ""),
        "MONITOR_SYSLOG_PATH": str(logs.syslog), "MONITOR_SYSLOG_BACKEND": "file",
        "MONITOR_AUTH_LOG_PATH": str(logs.auth), "MONITOR_AUTH_LOG_BACKEND": "file",
        "MONITOR_LOG_START_AT": "start",
        "MONITOR_PROCESSES_TO_MONITOR": f"monitor-never-runs-{uuid.uuid4().hex[:8]}",
        "MONITOR_OLLAMA_HOST": f"http://127.0.0.1:{closed_port()}",
        "MONITOR_OLLAMA_TIMEOUT_SECONDS": "2",
        "MONITOR_LOG_LEVEL": "WARNING",
    })
    return env


def run_agent(env: dict[str, str], delay_s: float | None) -> tuple[bool, int | None, str]:
    """One `--once` run, SIGKILLed after delay_s unless done by then: (killed, exit status, stderr)."""
    proc = subprocess.Popen([sys.executable, "monitor_agent.py", "--once"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    killed = False
    try:
        if delay_s is not None:
            try:
                proc.wait(delay_s)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
        _, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    return killed, proc.returncode, err.decode("utf-8", "replace")


def test_sigkill_at_random_points_loses_and_doubles_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    rot_rng = random.Random(SEED + 1)
    with_auth = AUTH_MODULE.is_file()
    logs = Logs(tmp_path / "syslog", tmp_path / "auth.log")
    logs.syslog.touch()
    logs.auth.touch()
    env = agent_env(tmp_path, logs, with_auth)
    db = tmp_path / "data" / "monitor.db"
    # first run on empty logs, not killed: a first run's backlog is never a sample (by design)
    killed, status, err = run_agent(env, None)
    assert status == 0, err
    seen = fingerprints(db)
    assert seen, "the watched process that never runs must give a finding"
    kills = completes = late_kills = rotations = 0
    unread_rotations = 0          # rotations since the last run that committed its cursor
    started = time.monotonic()
    for number in range(RUNS):
        assert time.monotonic() - started < TOTAL_BUDGET_S, f"budget exceeded after {number} runs"
        write_round(logs, rng, number)
        # its own generator: whether a rotation is allowed depends on which runs committed,
        # and the kill delays drawn from rng must not depend on that
        if rot_rng.random() < 0.4 and unread_rotations < 2:
            logs.flush()          # the writer ends its line before logrotate moves the file
            rotate(logs.syslog)   # between runs, and so also during the killed ones' reads
            write_round(logs, rot_rng, number)
            rotations += 1
            unread_rotations += 1
        roll = rng.random()
        delay = rng.uniform(0.0, 0.25) if roll < 0.3 else (
            rng.uniform(0.25, 0.7) if roll < 0.85 else rng.uniform(0.7, MAX_DELAY_S))
        cycles_before = committed(db, "syslog.lines")[1]
        killed, status, err = run_agent(env, delay)
        assert killed or status == 0, f"run {number} failed ({status}): {err[-2000:]}"
        assert "Traceback" not in err or killed, err[-2000:]
        kills += killed
        completes += not killed
        assert integrity(db) == "ok", f"run {number}"
        now_seen = fingerprints(db)
        assert seen <= now_seen, f"run {number} lost committed findings {seen - now_seen}"
        if not killed:
            seen = now_seen
        lines, cycles = committed(db, "syslog.lines")
        late_kills += killed and cycles > cycles_before   # killed after its commit
        if cycles > cycles_before:
            unread_rotations = 0
        assert lines <= logs.lines, f"run {number} counted lines twice"
    logs.flush()
    killed, status, err = run_agent(env, None)
    assert status == 0, err
    assert integrity(db) == "ok"
    assert seen <= fingerprints(db)
    lines = committed(db, "syslog.lines")[0]
    print(f"\nkill test: seed={SEED} runs={RUNS + 2} killed={kills} (of which after their "
          f"commit: {late_kills}) completed={completes + 2} syslog rotations={rotations} "
          f"syslog lines written={logs.lines} counted={lines:.0f} "
          f"auth failures written={logs.failures if with_auth else 'n/a'} counted="
          f"{committed(db, AUTH_FAILED_SERIES)[0]:.0f} "
          f"in {time.monotonic() - started:.1f} s")
    # 8 of the seeded delays are under 0.15 s: no run gets through its imports that fast
    assert kills >= 8, "too few runs were killed to prove anything"
    assert lines == logs.lines
    if with_auth:
        assert committed(db, AUTH_FAILED_SERIES)[0] == logs.failures
