"""The log follower (real inotify) and event cycles through the real agent: a break-in alerted
the moment its line is written, every line still counted once, nothing found lost."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import EVENT, SCHEDULED
from agent.cycle import Agent
from alerts.console import ConsoleNotifier
from analysis.rules import RulesJudge
from collectors.logreader.follow import Follower, Targets, targets
from foundation.store.data_storage import Store
from tests.conftest import ROOT
from tests.test_journal import build, sshd

WAIT_S = 20.0          # generous: the suite runs beside stress-ng; a wake takes milliseconds
ADDRESS = "203.0.113.7"


class Wakes:
    """Counts the follower's calls, and waits for the next one."""

    def __init__(self) -> None:
        self.count = 0
        self._event = threading.Event()

    def __call__(self) -> None:
        self.count += 1
        self._event.set()

    def wait(self) -> bool:
        """True when a call came within WAIT_S (and arms for the next one)."""
        got = self._event.wait(WAIT_S)
        self._event.clear()
        return got

    def quiet(self, seconds: float = 0.5) -> bool:
        """True when no call comes for ``seconds``."""
        got = self._event.wait(seconds)
        self._event.clear()
        return not got


@pytest.fixture
def follow(tmp_path: Path) -> Iterator[Any]:
    """Start a follower on targets; every one started is stopped at the end."""
    started: list[Follower] = []

    def start(wanted: Targets) -> Wakes:
        wakes = Wakes()
        follower = Follower(wanted, wakes)
        assert follower.start()
        started.append(follower)
        return wakes

    yield start
    for follower in started:
        follower.stop()


# -- the follower -----------------------------------------------------------------------------

def test_an_append_wakes_it_and_a_quiet_file_does_not(tmp_path: Path, follow: Any) -> None:
    log = tmp_path / "auth.log"
    log.write_text("old line\n")
    other = tmp_path / "daemon.log"
    wakes = follow(Targets(files=(log,)))
    assert wakes.quiet()
    other.write_text("another log in the same folder\n")   # not followed: no wake
    assert wakes.quiet()
    with log.open("a") as f:
        f.write("new line\n")
    assert wakes.wait()


@pytest.mark.parametrize("how", ["create", "copytruncate", "delete and recreate"])
def test_it_follows_a_file_through_rotation(tmp_path: Path, follow: Any, how: str) -> None:
    log = tmp_path / "auth.log"
    log.write_text("first\n")
    wakes = follow(Targets(files=(log,)))
    if how == "create":                      # logrotate's default: rename, then a new file
        log.rename(tmp_path / "auth.log.1")
        assert wakes.wait()
        log.write_text("")
        assert wakes.wait()
    elif how == "copytruncate":              # same inode, cut to nothing
        shutil.copy(log, tmp_path / "auth.log.1")
        with log.open("r+") as f:
            f.truncate(0)
        assert wakes.wait()
    else:
        log.unlink()
        assert wakes.wait()
        log.write_text("")
        assert wakes.wait()
    assert wakes.quiet()
    with log.open("a") as f:                 # the new file is followed as the old one was
        f.write("after the rotation\n")
    assert wakes.wait()


def test_real_logrotate_in_both_modes(tmp_path: Path, follow: Any) -> None:
    log = tmp_path / "auth.log"
    log.write_text("x\n")
    wakes = follow(Targets(files=(log,)))
    for mode in ("create", "copytruncate"):
        conf = tmp_path / f"{mode}.conf"
        conf.write_text(f"{log} {{\n  rotate 3\n  {mode}\n  missingok\n}}\n")
        subprocess.run(["logrotate", "-f", "-s", str(tmp_path / "state"), str(conf)],
                       check=True, capture_output=True, timeout=60)
        assert wakes.wait()
        with log.open("a") as f:
            f.write(f"after {mode}\n")
        assert wakes.wait()


def test_a_journal_folder_wakes_it_when_written_rotated_or_vacuumed(tmp_path: Path,
                                                                     follow: Any) -> None:
    folder = tmp_path / "journal"
    build(folder, "a", [sshd(0, "Accepted publickey for alice from 192.0.2.1 port 1 ssh2")])
    wakes = follow(targets(tmp_path / "none.log", "journal", str(folder)))
    build(folder, "b", [sshd(1, "Failed password for root from 203.0.113.7 port 2 ssh2")])
    assert wakes.wait()                      # written (a new file: journald's rotation too)
    (folder / "a.journal").unlink()          # vacuumed
    assert wakes.wait()


def test_targets_follow_the_backend() -> None:
    assert targets("/var/log/auth.log", "file", "") == Targets(files=(Path("/var/log/auth.log"),))
    assert targets("/var/log/auth.log", "journal", "/j") == Targets(
        journal=True, journal_directory=Path("/j"))
    both = targets("/var/log/auth.log", "auto", "") | targets("/var/log/syslog", "auto", "")
    assert both.files == (Path("/var/log/auth.log"), Path("/var/log/syslog")) and both.journal


def test_at_the_inotify_limit_it_warns_and_the_scheduled_cycles_go_on(tmp_path: Path) -> None:
    """A real limit: a user namespace whose max_inotify_watches is 0 (the kernel's own count)."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed for this test")
    log = tmp_path / "auth.log"
    log.write_text("")
    script = ("import logging, sys\n"
              "logging.basicConfig(level=logging.WARNING, stream=sys.stdout)\n"
              "from pathlib import Path\n"
              "from collectors.logreader.follow import Follower, Targets\n"
              f"print('started:', Follower(Targets(files=(Path({str(log)!r}),)), print).start())\n")
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "sh", "-c",
         'echo 0 > /proc/sys/user/max_inotify_watches && exec "$0" -c "$1"',
         sys.executable, script],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "started: False" in proc.stdout
    assert "the inotify limit fs.inotify.max_user_watches" in proc.stdout


# -- event cycles through the agent -------------------------------------------------------------

def stamp(at: float) -> str:
    return time.strftime("%b %e %H:%M:%S", time.localtime(at))


def failures(at: float, n: int, address: str = ADDRESS) -> str:
    return "".join(f"{stamp(at)} box sshd[{900 + i}]: Failed password for root from {address} "
                   f"port {40000 + i} ssh2\n" for i in range(n))


def accepted(at: float, address: str = ADDRESS) -> str:
    return f"{stamp(at)} box sshd[999]: Accepted password for root from {address} port 5 ssh2\n"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(tmp_path: Path, make_settings: Any, store: Store) -> Any:
    log = tmp_path / "auth.log"
    log.write_text("")
    settings = make_settings(COLLECTORS=["auth_log"], AUTH_LOG_PATH=log, AUTH_LOG_BACKEND="file",
                             OLLAMA_HOST="http://127.0.0.1:9")
    out = io.StringIO()
    clock = Clock()
    agent = Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(out)}, clock=clock)
    agent.run_cycle(SCHEDULED)              # the first cycle starts at the end of the file
    return agent, log, out, clock


def append(log: Path, text: str) -> None:
    with log.open("a") as f:
        f.write(text)


def stored_failed_logins(store: Store) -> float:
    """The failed logins of every sample the cycles stored."""
    return sum(value for _, value in store.samples_since("auth.failed_logins", 0.0))


def test_a_login_after_failures_is_alerted_by_the_event_cycle_and_counted_once(setup: Any
                                                                             ) -> None:
    agent, log, out, clock = setup
    append(log, failures(clock.now, 6) + accepted(clock.now))
    report = agent.run_cycle(EVENT)
    assert report["committed"] is True and report["trigger"] == "event"
    assert "login_after_failures" in {f["kind"] for f in report["findings"]}
    assert [a["status"] for a in report["alerts"]] == ["sent"]
    assert out.getvalue().count("[ALERT]") == 1
    assert stored_failed_logins(agent.store) == 0     # an event cycle's counts are carried
    clock.now += 300
    later = agent.run_cycle(SCHEDULED)               # the lines are not read again
    assert "login_after_failures" not in {f["kind"] for f in later["findings"]}
    assert out.getvalue().count("[ALERT]") == 1      # and not alerted again
    assert stored_failed_logins(agent.store) == 6    # the scheduled sample holds them, once


def test_lines_with_nothing_to_alert_at_once_wait_for_the_scheduled_cycle(setup: Any) -> None:
    agent, log, out, clock = setup
    append(log, failures(clock.now, 6))                # brute force: medium, the recap's
    report = agent.run_cycle(EVENT)
    assert report["committed"] is False
    assert {f["kind"] for f in report["findings"]} == {"ssh_bruteforce"}
    assert agent.store.findings() == {} and stored_failed_logins(agent.store) == 0
    assert agent.run_cycle(EVENT)["findings"] == []    # the next one goes on from where it read
    clock.now += 300
    scheduled = agent.run_cycle(SCHEDULED)             # and the scheduled one reads it all
    assert {f["kind"] for f in scheduled["findings"]} == {"ssh_bruteforce"}
    assert stored_failed_logins(agent.store) == 6
    assert "[ALERT]" not in out.getvalue()


def test_an_urgent_line_after_quiet_ones_commits_them_all(setup: Any) -> None:
    agent, log, out, clock = setup
    append(log, failures(clock.now, 6))
    assert agent.run_cycle(EVENT)["committed"] is False
    append(log, accepted(clock.now))                   # the failures were read by the peek
    report = agent.run_cycle(EVENT)
    kinds = {f["kind"] for f in report["findings"]}
    assert {"login_after_failures", "ssh_bruteforce"} <= kinds   # nothing read before is lost
    assert out.getvalue().count("[ALERT]") == 1
    clock.now += 300
    agent.run_cycle(SCHEDULED)
    assert stored_failed_logins(agent.store) == 6


def test_the_running_agent_alerts_within_seconds_at_the_default_interval(tmp_path: Path) -> None:
    """The loop as a service runs it: MONITOR_INTERVAL_SECONDS 300, a login after failures
    appended after the first cycle reaches the console long before the next scheduled cycle."""
    log = tmp_path / "auth.log"
    log.write_text("")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "MONITOR_DATA_DIR": str(tmp_path / "data"), "MONITOR_COLLECTORS": "auth_log",
           "MONITOR_AUTH_LOG_PATH": str(log), "MONITOR_AUTH_LOG_BACKEND": "file",
           "MONITOR_OLLAMA_HOST": "http://127.0.0.1:9", "MONITOR_INTERVAL_SECONDS": "300"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while not any("following auth_log" in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            time.sleep(0.1)
        while not any(line.startswith("2") and " cycle: " in line for line in lines):
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        written = time.monotonic()
        append(log, failures(time.time(), 6) + accepted(time.time()))
        while not any("event cycle:" in line for line in lines):   # the interval is 300 s
            assert time.monotonic() - written < 60, "".join(lines)
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert any("root logged in from 203.0.113.7 after 6 failed attempts" in line for line in lines)


def test_an_ollama_that_does_not_answer_does_not_delay_the_alarm(tmp_path: Path,
                                                                 make_settings: Any,
                                                                 store: Store) -> None:
    """The event cycle gives the judge EVENT_JUDGE_S (2 s), not the scheduled cycle's bound
    (2 x OLLAMA_TIMEOUT_SECONDS + 5 s): a hanging Ollama leaves the rules to decide, floors hold."""
    from analysis.judge import make_judge
    from tests.fakes import ollama_server as fo

    log = tmp_path / "auth.log"
    log.write_text("")
    with fo.FakeOllama(behaviour=fo.SLOW, slow_seconds=60) as ollama:
        settings = make_settings(COLLECTORS=["auth_log"], AUTH_LOG_PATH=log,
                                 AUTH_LOG_BACKEND="file", OLLAMA_HOST=ollama.url,
                                 OLLAMA_TIMEOUT_SECONDS=30, MONITOR_INTERVAL_SECONDS=300)
        out, clock = io.StringIO(), Clock()
        agent = Agent(settings, store, make_judge(settings), {"console": ConsoleNotifier(out)},
                      clock=clock)
        agent.run_cycle(SCHEDULED)
        append(log, failures(clock.now, 6) + accepted(clock.now))
        t0 = time.monotonic()
        report = agent.run_cycle(EVENT)
        took = time.monotonic() - t0
    assert report["verdict"]["by"] == "rules"
    assert "no answer within 2 s" in (report["verdict"]["note"] or "")
    login = next(f for f in report["findings"] if f["kind"] == "login_after_failures")
    assert login["severity"] == "high"                      # the floor, whatever the LLM says
    assert out.getvalue().count("[ALERT]") == 1
    assert took < 30, took    # 2 s, then the rules: far under the 65 s a scheduled cycle allows
