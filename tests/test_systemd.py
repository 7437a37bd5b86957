"""systemd integration: notifications on a socket the test provides, and the unit file verified."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.systemd import Watchdog, notify
from tests.conftest import ROOT
from tests.procs import unique_name

UNIT = ROOT / "deploy" / "monitor-agent.service"
DEFAULT_PREFIX = "/opt/monitor-agent"


@pytest.fixture
def notify_socket(tmp_path: Path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    yield path, sock
    sock.close()


def drain(sock: socket.socket, seconds: float,
          enough: Callable[[list[str]], bool] = lambda messages: False) -> list[str]:
    messages: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not enough(messages):
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return messages


def test_notify_speaks_the_datagram_protocol(notify_socket) -> None:
    path, sock = notify_socket
    assert notify("READY=1", {"NOTIFY_SOCKET": str(path)}) is True
    assert sock.recv(100) == b"READY=1"
    assert notify("READY=1", {}) is False                       # not under systemd
    assert notify("READY=1", {"NOTIFY_SOCKET": str(path) + ".absent"}) is False


def test_watchdog_feeds_at_half_the_interval(notify_socket) -> None:
    path, sock = notify_socket
    dog = Watchdog({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"})
    assert dog.interval_s == pytest.approx(0.1)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.55:
        dog.feed()
        time.sleep(0.01)
    fed = drain(sock, 0.3)
    assert 4 <= fed.count("WATCHDOG=1") <= 7
    assert Watchdog({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}).interval_s is None


def test_the_agent_loop_notifies_ready_status_watchdog_and_stopping(
        tmp_path: Path, notify_socket) -> None:
    path, sock = notify_socket
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "NOTIFY_SOCKET": str(path),
           "WATCHDOG_USEC": "400000", "MONITOR_DATA_DIR": str(tmp_path / "data"),
           "MONITOR_COLLECTORS": "processes", "MONITOR_PROCESSES_TO_MONITOR": unique_name(),
           "MONITOR_INTERVAL_SECONDS": "30", "MONITOR_OLLAMA_TIMEOUT_SECONDS": "5"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # until the first cycle's status and five feeds after it: a loaded machine starts slowly
        messages = drain(sock, 60.0, lambda got: any(m.startswith("STATUS=") for m in got)
                         and got[[m.startswith("STATUS=") for m in got].index(True):].count(
                             "WATCHDOG=1") >= 5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        messages += drain(sock, 0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert messages[0] == "READY=1"
    assert any(m.startswith("STATUS=last cycle") and "1 finding(s)" in m for m in messages)
    assert messages.count("WATCHDOG=1") >= 5  # fed every 0.2 s while idle
    assert messages[-1] == "STOPPING=1"


def render_unit(prefix: Path) -> str:
    """The unit as `make install PREFIX=...` renders it."""
    return UNIT.read_text().replace(DEFAULT_PREFIX, str(prefix))


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is installed by make test (Debian package systemd)"
    assert (ROOT / ".venv" / "bin" / "python").exists()
    rendered = tmp_path / "monitor-agent.service"
    rendered.write_text(render_unit(ROOT))
    proc = subprocess.run([analyze, "verify", str(rendered)], capture_output=True, text=True,
                          timeout=60)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if "monitor-agent.service" in line]
    assert proc.returncode == 0 and not problems, proc.stdout + proc.stderr


def test_unit_declares_what_the_operator_relies_on() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ReadWritePaths=/var/lib/monitor-agent",
                 "ProtectHome=yes", "PrivateTmp=yes", "EnvironmentFile=-/etc/monitor-agent/env",
                 "SupplementaryGroups=adm systemd-journal", "User=monitor-agent"):
        assert line in text, line
    # nothing held: CAP_NET_RAW only bounds (Debian's ping is cap_net_raw=ep and cannot be
    # executed otherwise; NoNewPrivileges keeps it from gaining it), no ambient capability
    assert "\nCapabilityBoundingSet=CAP_NET_RAW\n" in text and "\nAmbientCapabilities=\n" in text
