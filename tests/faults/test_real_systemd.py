"""The shipped unit under a real systemd: a Debian 12 container booted with systemd as PID 1.

The agent is installed as docs/operations.md says (`make install` from a copy of this checkout, which
installs the Debian packages and the pinned venv from the registries, renders the unit, enables and
starts it), configured through /etc/monitor-agent/env, and then checked: cycles in its journal,
collectors working under the unit's hardening, a frozen loop restarted by the watchdog, and
`systemctl stop` finishing quickly and cleanly. Everything the agent watches is the container's own
loopback. The container is removed by the name this module generated.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.container_image import SYSTEMD, Podman, SystemdContainer, ensure_image, scratch_folder

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(1500)]

UNIT = "monitor-agent.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
CHECKOUT = "/root/monitor-agent"
PYTHON = "/opt/monitor-agent/.venv/bin/python"
AGENT = "/opt/monitor-agent/monitor_agent.py"
PING_CONF = "/etc/sysctl.d/60-monitor-agent-ping.conf"
LISTEN_PORT = 8080  # in nmap's top 1000, so the default scan must see it
COLLECTORS = ("syslog", "auth_log", "ping", "nmap", "processes")
SETTINGS = {
    "MONITOR_MONITOR_INTERVAL_SECONDS": "20",
    "MONITOR_COLLECTOR_TIMEOUT_SECONDS": "10",  # with the judge's 2 x 2 s + 5 s, a cycle fits 20 s
    "MONITOR_COLLECTORS": ",".join(COLLECTORS),
    "MONITOR_PING_TARGETS": "127.0.0.1",
    "MONITOR_NMAP_TARGETS": "127.0.0.1",
    "MONITOR_NMAP_INTERVAL_SECONDS": "0",
    "MONITOR_PROCESSES_TO_MONITOR": "systemd-journald",
    "MONITOR_OLLAMA_TIMEOUT_SECONDS": "2",  # no Ollama here: the rules decide; keeps the fit check
}
# [Service] lines that make the long-running service what it is; a one-shot run under the same
# sandbox takes every other line (user, groups, hardening, environment)
SERVICE_ONLY = {"Type", "NotifyAccess", "WatchdogSec", "Restart", "RestartSec", "TimeoutStopSec",
                "ExecStart"}


def wait_for(what: str, check: Callable[[], object], timeout: float, every: float = 1.0) -> object:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def show(box: SystemdContainer, *props: str) -> dict[str, str]:
    """`systemctl show` of the agent's unit, as a dict."""
    out = box.exec("systemctl", "show", UNIT, *[f"--property={p}" for p in props]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def cycles_logged(box: SystemdContainer) -> list[str]:
    """The cycle summary lines of the unit's current run, from its journal."""
    invocation = show(box, "InvocationID")["InvocationID"]
    out = box.exec("journalctl", "-u", UNIT, f"_SYSTEMD_INVOCATION_ID={invocation}", "-o", "cat",
                   "--no-pager").stdout
    return [line for line in out.splitlines() if re.search(r"\bINFO monitor_agent: cycle: ", line)]


def restart_and_wait(box: SystemdContainer) -> None:
    """Restart the agent and wait for its first cycle of the new run."""
    box.exec("systemctl", "restart", UNIT)
    wait_for("a first cycle after the restart", lambda: cycles_logged(box), 90)


@pytest.fixture(scope="module")
def box() -> Iterator[SystemdContainer]:
    """A booted container with the agent installed by `make install` and configured."""
    podman = Podman(scratch_folder())
    container = SystemdContainer(podman, ensure_image(podman, SYSTEMD))
    try:
        # Debian 12's own setting: no group may open ICMP datagram sockets until make install
        # allows the service's group
        container.start(extra=("--sysctl", "net.ipv4.ping_group_range=1 0"))
        container.trust_like_host()
        container.copy_checkout(ROOT, CHECKOUT)
        install = container.sh(f"cd {CHECKOUT} && make install", timeout=900)
        assert "installed and started" in install.stdout, install.stdout
        _boot_time_sysctl(container)
        env = "".join(f"{k}={v}\n" for k, v in SETTINGS.items())
        container.exec("bash", "-c", "cat >> /etc/monitor-agent/env", stdin=env.encode())
        restart_and_wait(container)
        yield container
    finally:
        container.stop()
        podman.clean()


def _boot_time_sysctl(box: SystemdContainer) -> None:
    """Apply make install's sysctl file as systemd-sysctl does at boot.

    /proc/sys is read-only inside a container, so make install could only write the file; the
    host applies it in the container's own network namespace (the setting is per namespace).
    """
    text = box.exec("cat", PING_CONF).stdout
    gid = box.exec("getent", "group", "monitor-agent").stdout.split(":")[2]
    assert f"net.ipv4.ping_group_range = {gid} {gid}" in text, text
    subprocess.run(["nsenter", "-t", str(box.pid), "-n", "sysctl", "-q", "-w",
                    f"net.ipv4.ping_group_range={gid} {gid}"], check=True, timeout=30)
    assert box.exec("cat", "/proc/sys/net/ipv4/ping_group_range").stdout.split() == [gid, gid]


def test_the_installed_unit_runs_cycles_that_reach_its_journal(box: SystemdContainer) -> None:
    state = show(box, "ActiveState", "SubState", "UnitFileState", "User")
    assert state["ActiveState"] == "active" and state["SubState"] == "running", state
    assert state["UnitFileState"] == "enabled" and state["User"] == "monitor-agent", state
    lines = wait_for("two cycles 10 s apart", lambda: len(cycles_logged(box)) >= 2 and
                     cycles_logged(box), 90)
    assert all("verdict" in line for line in lines), lines
    status = show(box, "StatusText")["StatusText"]          # sd_notify STATUS= reached systemd
    assert status.startswith("last cycle"), status


def service_properties(box: SystemdContainer) -> list[str]:
    """``-p`` arguments for systemd-run: the installed unit's sandbox, user and environment."""
    unit = box.exec("cat", UNIT_PATH).stdout
    service = unit.split("[Service]", 1)[1].split("\n[", 1)[0]
    args = []
    for line in service.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and line.split("=", 1)[0] not in SERVICE_ONLY:
            args += ["-p", line]
    return args


def test_every_collector_works_under_the_units_hardening(box: SystemdContainer) -> None:
    box.exec("systemctl", "stop", UNIT)  # one writer on the store at a time
    try:
        box.exec("systemd-run", "--unit", "monitor-test-listener", "--collect", "python3", "-m",
                 "http.server", "--bind", "127.0.0.1", str(LISTEN_PORT))
        wait_for("the test listener", lambda: box.exec(
            "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{LISTEN_PORT}", check=False).returncode == 0,
            30, every=0.2)
        # a real PAM session line in the auth facility, for the auth_log collector's journal read
        box.exec("runuser", "-u", "nobody", "--", "true")
        run = box.exec("systemd-run", "--wait", "--pipe", "--quiet", "--collect",
                       *service_properties(box), PYTHON, AGENT, "--once", "--json", timeout=300,
                       check=False)
    finally:
        box.exec("systemctl", "stop", "monitor-test-listener", check=False)
        box.exec("systemctl", "start", UNIT)
    assert run.stdout.strip(), run.stderr
    report = json.loads(run.stdout)
    bad = {name: status for name, status in report["collectors"].items()
           if not (status["ok"] and status["available"] and status["error"] is None)}
    assert set(report["collectors"]) == set(COLLECTORS) and not bad, (bad, run.stderr[-3000:])
    seen = report["observations"]
    assert seen["syslog"]["backend"] == "journal" and seen["syslog"]["lines_read"] > 0
    assert seen["auth_log"]["backend"] == "journal" and seen["auth_log"]["lines_read"] > 0
    ping = seen["ping"]["targets"]["127.0.0.1"]
    assert ping["ok"] and ping["received"] > 0, ping                  # ICMP, no capability held
    assert seen["nmap"]["status"] == "scan finished", seen["nmap"]
    assert LISTEN_PORT in _open_ports(seen["nmap"]["scan"]), seen["nmap"]
    journald = seen["processes"]["watched"]["systemd-journald"]
    assert journald["running"], seen["processes"]                     # another user's process


def _open_ports(scan: object) -> set[int]:
    """Every port that an nmap observation lists with state "open", wherever it nests them."""
    if isinstance(scan, dict):
        found = {int(scan["port"])} if scan.get("state") == "open" and "port" in scan else set()
        return found.union(*(_open_ports(v) for v in scan.values()))
    if isinstance(scan, list):
        return set().union(*(_open_ports(v) for v in scan))
    return set()


def test_a_frozen_loop_is_killed_by_the_watchdog_and_restarted(box: SystemdContainer) -> None:
    # the shipped 120 s would make a slow test slower; the mechanism is the same at 20 s
    dropin = f"/etc/systemd/system/{UNIT}.d/50-test-watchdog.conf"
    box.sh(f"mkdir -p {Path(dropin).parent} && printf '[Service]\\nWatchdogSec=20\\n"
           f"RestartSec=2\\n' > {dropin} && systemctl daemon-reload")
    try:
        restart_and_wait(box)
        before = show(box, "MainPID", "NRestarts", "WatchdogUSec")
        assert before["WatchdogUSec"] == "20s", before
        frozen = before["MainPID"]
        box.exec("kill", "-STOP", frozen)
        after = wait_for("a new MainPID after the watchdog fired", lambda: (
            lambda s: s if s["MainPID"] not in ("0", frozen) and s["ActiveState"] == "active"
            else None)(show(box, "MainPID", "NRestarts", "ActiveState")), 150)
        assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1, (before, after)
        journal = box.exec("journalctl", "-u", UNIT, "-o", "cat", "--no-pager").stdout
        assert "Watchdog timeout" in journal, journal[-3000:]
        wait_for("a cycle of the restarted agent", lambda: cycles_logged(box), 90)
    finally:
        box.sh(f"rm -f {dropin} && systemctl daemon-reload")
        restart_and_wait(box)


def test_systemctl_stop_is_quick_and_clean(box: SystemdContainer) -> None:
    wait_for("the agent running", lambda: show(box, "ActiveState")["ActiveState"] == "active", 60)
    wait_for("a cycle", lambda: cycles_logged(box), 60)
    box.exec("systemctl", "stop", UNIT, timeout=60)
    times = show(box, "ActiveExitTimestampMonotonic", "InactiveEnterTimestampMonotonic",
                 "Result", "ExecMainCode", "ExecMainStatus")
    stop_s = (int(times["InactiveEnterTimestampMonotonic"])
              - int(times["ActiveExitTimestampMonotonic"])) / 1e6
    print(f"systemctl stop took {stop_s:.3f} s (systemd's own timestamps)")
    box.exec("systemctl", "start", UNIT)
    # it left on its own, with status 0, not killed at TimeoutStopSec (15 s)
    assert times["Result"] == "success" and times["ExecMainCode"] == "1", times  # 1 = CLD_EXITED
    assert times["ExecMainStatus"] == "0", times
    assert 0 < stop_s < 10, f"stop took {stop_s:.2f} s (docs/operations.md promises 2 s)"
