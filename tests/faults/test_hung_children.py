"""A command that hangs while its own child keeps the output pipe open.

Before, only the direct child was killed on timeout and the read then waited forever for the
pipe's other writer: `--once` never exited, each cycle left a thread and an orphan behind. Now
every command leads its own process group, killed as a whole, and its reads are bounded.
The fake `ping` is a shell script found first on PATH; its child carries a unique marker in argv
so the test can find (and, on failure, stop) exactly the processes it caused.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from foundation.context import CommandError, kill_children, run_command
from tests.conftest import ROOT
from tests.fakes.hung import hanging_command
from tests.procs import unique_name

pytestmark = pytest.mark.faults

ONCE_BOUND_S = 60.0       # a --once with a 2 s ping budget takes about 3 s
CALL_BOUND_S = 15.0       # one run_command with a 0.5 s timeout


def marked(marker: str) -> list[psutil.Process]:
    """Processes whose argv carries the marker (what the fake command left behind)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or ()):
            found.append(proc)
    return found


def reap(marker: str) -> list[int]:
    """Stop (by pid) what the fake command left behind; their pids."""
    left = marked(marker)
    for proc in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    return [p.pid for p in left]


def test_once_with_a_hung_ping_and_its_child_exits_and_leaves_no_orphan(tmp_path: Path) -> None:
    _, marker = hanging_command(tmp_path / "bin")
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "MONITOR_DATA_DIR": str(tmp_path / "data"), "MONITOR_COLLECTORS": "ping",
           "MONITOR_PING_TARGETS": "127.0.0.1", "MONITOR_PING_TIMEOUT_SECONDS": "2",
           "MONITOR_OLLAMA_HOST": "http://127.0.0.1:9"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py"), "--once", "--json"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        out, err = proc.communicate(timeout=ONCE_BOUND_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.wait()
        left = reap(marker)
        pytest.fail(f"--once did not exit within {ONCE_BOUND_S:g} s (orphans: {left})")
    left = reap(marker)
    assert proc.returncode == 0, err[-2000:]
    assert left == [], "the hung ping's child was left running"
    import json

    ping = json.loads(out)["observations"]["ping"]["targets"]["127.0.0.1"]
    assert ping["ok"] is False and "within" in ping["error"], ping


def test_repeated_timeouts_leave_no_threads_and_no_processes(tmp_path: Path) -> None:
    script, marker = hanging_command(tmp_path / "bin", "hang")
    threads = threading.active_count()
    for _ in range(4):
        t0 = time.monotonic()
        with pytest.raises(CommandError, match=r"did not finish within 0\.5 s"):
            run_command([str(script)], 0.5)
        assert time.monotonic() - t0 < CALL_BOUND_S
        assert reap(marker) == []
    assert threading.active_count() == threads, threading.enumerate()


def test_output_is_read_up_to_a_cap_then_the_command_is_stopped() -> None:
    t0 = time.monotonic()
    with pytest.raises(CommandError, match="printed more than 1000000 bytes"):
        run_command(["yes", "a line of output"], 60, max_output=1_000_000)
    assert time.monotonic() - t0 < CALL_BOUND_S      # not the 60 s timeout
    done = run_command([sys.executable, "-c", "print('x' * 999)"], 30, max_output=1000)
    assert done.stdout == b"x" * 999 + b"\n"


def test_stop_kills_a_running_command_with_its_children(tmp_path: Path) -> None:
    script, marker = hanging_command(tmp_path / "bin", unique_name())
    box: dict[str, subprocess.CompletedProcess] = {}

    def run() -> None:
        box["done"] = run_command([str(script)], 600)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    deadline = time.monotonic() + CALL_BOUND_S
    while not marked(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marked(marker), "the fake command never started its child"
    assert kill_children() == 1
    worker.join(CALL_BOUND_S)
    assert not worker.is_alive()                  # the read ended: the pipe's writers died
    assert box["done"].returncode == -signal.SIGKILL
    assert reap(marker) == []


STUCK = 5                 # commands that outlive SIGKILL (a read stuck in the kernel, D state)


def test_stop_waits_once_for_commands_stuck_in_the_kernel_not_once_each(monkeypatch) -> None:
    """Before, each command left running cost KILL_WAIT_S (2 s) in turn, so five stuck ones
    held a stop for 10 s; now every group is signalled first and one shared wait follows."""
    import foundation.context as context

    procs = [context.start_background(["sleep", "1000"]) for _ in range(STUCK)]
    monkeypatch.setattr(context.os, "killpg", lambda pid, sig: None)   # SIGKILL does not take
    t0 = time.monotonic()
    try:
        assert kill_children() == STUCK
        took = time.monotonic() - t0
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
            context.release_child(proc)
    assert all(proc.returncode == -signal.SIGKILL for proc in procs)  # none had died before
    # one shared wait is KILL_WAIT_S (2 s); one wait each was STUCK times that (10 s): 4x margin
    assert took < context.KILL_WAIT_S * (STUCK - 1), f"{took:.1f} s for {STUCK} stuck commands"
