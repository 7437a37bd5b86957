"""The real agent loop under libfaketime: a DST change and a backward wall-clock step stop nothing.

Cycles are paced on CLOCK_MONOTONIC, so they keep coming at MONITOR_INTERVAL_SECONDS when local
time repeats an hour (TZ=Europe/Berlin, 2026-10-25 03:00 CEST -> 02:00 CET) or the wall clock is
stepped back an hour (an NTP step, a VM snapshot restore). libfaketime fakes the wall clock only
(FAKETIME_DONT_FAKE_MONOTONIC=1), which is what such a step does to a real machine. The loop's
cycles are counted from its own log lines, timed by the test's real monotonic clock.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.procs import unique_name

pytestmark = pytest.mark.faults

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
INTERVAL_S = 10                  # the smallest interval the settings accept
BEFORE_S = 12.0                  # real seconds the agent runs before the change
AFTER_S = 36.0                   # and after it: three intervals and a bit
MIN_CYCLES_AFTER = 2             # three are expected; the bug gave none (an hour of silence)
DST_CHANGE = datetime(2026, 10, 25, 1, 0, 0, tzinfo=UTC).timestamp()  # 03:00 CEST


def agent_env(tmp_path: Path, fake: dict[str, str]) -> dict[str, str]:
    """The environment of a loop that runs fast cycles (one process collector, rules only)."""
    assert LIBFAKETIME.exists(), "libfaketime is installed by make test (Debian package faketime)"
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TZ": "Europe/Berlin",
            "LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_DONT_FAKE_MONOTONIC": "1", **fake,
            "MONITOR_DATA_DIR": str(tmp_path / "data"), "MONITOR_COLLECTORS": "processes",
            "MONITOR_PROCESSES_TO_MONITOR": unique_name(), "MONITOR_OLLAMA_HOST":
            "http://127.0.0.1:9", "MONITOR_INTERVAL_SECONDS": str(INTERVAL_S),
            # a cycle must fit its interval: 3 s for the collector, 2 x 1 s + 5 s for the judge
            "MONITOR_COLLECTOR_TIMEOUT_SECONDS": "3", "MONITOR_OLLAMA_TIMEOUT_SECONDS": "1"}


class Agent:
    """The agent's loop in a child process; the real monotonic time of each cycle's log line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.cycles: list[float] = []
        self.lines: list[str] = []
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py")], cwd=ROOT,
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.started = time.monotonic()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if "monitor_agent: cycle:" in line:
                self.cycles.append(time.monotonic())

    def stop(self) -> int:
        """SIGTERM, and the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(5)

    def cycles_between(self, start: float, end: float) -> int:
        """Cycles whose log line came within [start, end) of real monotonic time."""
        return sum(start <= t < end for t in self.cycles)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Agent, float]]:
    """Both agents run at the same time (the DST change, the backward step): each with the real
    monotonic moment of its change."""
    dst_dir, step_dir = tmp_path_factory.mktemp("dst"), tmp_path_factory.mktemp("step")
    offset = int(DST_CHANGE - BEFORE_S - time.time())      # the fake wall clock, BEFORE_S early
    stamp = step_dir / "faketime"
    stamp.write_text("+0s\n")
    dst = Agent(agent_env(dst_dir, {"FAKETIME": f"{offset:+d}s"}))
    step = Agent(agent_env(step_dir, {"FAKETIME_TIMESTAMP_FILE": str(stamp),
                                      "FAKETIME_CACHE_DURATION": "1"}))
    change_at = step.started + BEFORE_S
    time.sleep(max(0.0, change_at - time.monotonic()))
    stamp.write_text("-3600s\n")                            # the step: one hour back
    time.sleep(max(0.0, change_at + AFTER_S - time.monotonic()))
    for agent in (dst, step):
        assert agent.stop() == 0, "".join(agent.lines[-20:])
    # the step is read within FAKETIME_CACHE_DURATION: the first second after it is left out
    return {"dst": (dst, dst.started + BEFORE_S), "step": (step, change_at + 1.0)}


@pytest.mark.parametrize("change", ["dst", "step"], ids=["october_dst_change",
                                                         "wall_clock_one_hour_back"])
def test_cycles_go_on_across_a_change_of_wall_time(runs, change: str) -> None:
    agent, change_at = runs[change]
    before = agent.cycles_between(agent.started, change_at)
    after = agent.cycles_between(change_at, change_at + AFTER_S)
    assert before >= 1, "".join(agent.lines[-20:])
    assert after >= MIN_CYCLES_AFTER, (before, after, "".join(agent.lines[-20:]))


def test_faketime_really_moves_the_agents_wall_clock(tmp_path: Path) -> None:
    """The premise of the tests above: under this environment the child's local time is the
    faked one, in CEST before the change and CET after it."""
    assert shutil.which("faketime")
    offset = int(DST_CHANGE - 2 - time.time())
    env = agent_env(tmp_path, {"FAKETIME": f"{offset:+d}s"})
    code = ("import time, threading; e = threading.Event()\n"
            "a = time.strftime('%H:%M %Z'); e.wait(3); print(a, time.strftime('%H:%M %Z'))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["02:59", "CEST", "02:00", "CET"]
