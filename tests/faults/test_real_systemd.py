"""The shipped unit under a real systemd: a Debian 12 container booted with systemd as PID 1.

The agent is installed as docs/operations.md says (`make install` from a copy of this checkout, which
installs the Debian packages and the pinned venv from the registries, renders the unit, enables and
starts it), configured through /etc/monitor-agent/env, and then checked: cycles in its journal,
every collector working in the installed unit's own sandbox (read from its cycle reports), the
documented `monitor-agent check` and `--once` seeing what the service sees, a frozen loop restarted
by the watchdog, and `systemctl stop` finishing quickly and cleanly. Everything the agent watches is
the container's own loopback. The container is removed by the name this module generated.

The container gets CAP_SYS_ADMIN: without it systemd cannot build a unit's mount namespace and,
"assuming containerized execution", silently drops ProtectSystem=, PrivateTmp=, PrivateDevices=
and the rest, so the unit would run unsandboxed and prove nothing about its hardening.
"""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.container_image import SYSTEMD, Podman, SystemdContainer, ensure_image, scratch_folder

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(1500)]

UNIT = "monitor-agent.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT}"
CHECKOUT = "/root/monitor-agent"
PYTHON = "/opt/monitor-agent/.venv/bin/python"
PING_CONF = "/etc/sysctl.d/60-monitor-agent-ping.conf"
STORE = "/var/lib/monitor-agent/monitor.db"
LISTEN_PORT = 8080  # in nmap's top 1000, so the default scan must see it
RUNTIME_PORT = 8081
# every collector but the opt-in eBPF one: sensors and containers have no source here (no hwmon,
# no Docker) and must say so cleanly
COLLECTORS = ("syslog", "auth_log", "sensors", "ping", "nmap", "processes", "containers",
              "llm_runtimes")
UNAVAILABLE_HERE = {"sensors": "hwmon", "containers": "Docker socket"}
# stand-ins for a GPU's nodes (the NVIDIA major, 195): there is no driver, so opening one that the
# sandbox lets through fails with ENXIO, one it hides with ENOENT
NVIDIA_NODES = {"nvidia0": 0, "nvidiactl": 255}
# a llama.cpp server stand-in, run under a system account of its own as packaged runtimes are
FAKE_RUNTIME = "/usr/local/bin/llama-server"
FAKE_RUNTIME_SCRIPT = f"""#!/usr/bin/python3
import http.server
http.server.HTTPServer(("127.0.0.1", {RUNTIME_PORT}),
                       http.server.BaseHTTPRequestHandler).serve_forever()
"""
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
    """A booted container with the agent installed by `make install` and configured, a listener
    for nmap to find and an LLM runtime stand-in running."""
    podman = Podman(scratch_folder())
    container = SystemdContainer(podman, ensure_image(podman, SYSTEMD))
    try:
        # Debian 12's own setting: no group may open ICMP datagram sockets until make install
        # allows the service's group
        container.start(extra=("--sysctl", "net.ipv4.ping_group_range=1 0",
                               "--cap-add=SYS_ADMIN", *_fake_gpu(podman.folder)))
        container.trust_like_host()
        container.copy_checkout(ROOT, CHECKOUT)
        started = time.monotonic()
        install = container.sh(f"cd {CHECKOUT} && make install", timeout=900)
        print(f"make install took {time.monotonic() - started:.0f} s")
        assert "installed and started" in install.stdout, install.stdout
        _boot_time_sysctl(container)
        env = "".join(f"{k}={v}\n" for k, v in SETTINGS.items())
        container.exec("bash", "-c", "cat >> /etc/monitor-agent/env", stdin=env.encode())
        _start_watched_things(container)
        restart_and_wait(container)
        yield container
    finally:
        container.stop()
        podman.clean()


def _fake_gpu(folder: Path) -> list[str]:
    """``--device`` arguments for NVIDIA-like nodes made here (mode 0666, as the driver makes them)."""
    args = []
    for name, minor in NVIDIA_NODES.items():
        node = folder / name
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(195, minor))
        node.chmod(0o666)
        args += ["--device", f"{node}:/dev/{name}"]
    return args


def _start_watched_things(box: SystemdContainer) -> None:
    """A listener for the scan, and a llama.cpp stand-in under its own system account."""
    box.exec("systemd-run", "--unit", "monitor-test-listener", "--collect", "python3", "-m",
             "http.server", "--bind", "127.0.0.1", str(LISTEN_PORT))
    box.exec("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "llmtest")
    box.exec("bash", "-c", f"cat > {FAKE_RUNTIME} && chmod 0755 {FAKE_RUNTIME}",
             stdin=FAKE_RUNTIME_SCRIPT.encode())
    box.exec("systemd-run", "--unit", "monitor-test-llm", "--collect", "--uid=llmtest",
             FAKE_RUNTIME, "--model", "/srv/models/tiny.gguf")
    for port in (LISTEN_PORT, RUNTIME_PORT):
        wait_for(f"a listener on {port}", partial(_listening, box, port), 30, every=0.2)


def _listening(box: SystemdContainer, port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` in the container."""
    return box.exec("bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}", check=False).returncode == 0


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
    lines = wait_for("two cycles", lambda: len(cycles_logged(box)) >= 2 and
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


LAST_CYCLE = f"""
import json, pathlib
from foundation.store.data_storage import Store
store = Store.open(pathlib.Path({STORE!r}), check=False)
try:
    print(json.dumps(store.last_cycle()))
finally:
    store.close()
"""


def last_cycle(box: SystemdContainer) -> dict[str, Any]:
    """The last cycle report the agent stored, read through its own store code as its own user
    (a root reader would leave root-owned files in the data folder)."""
    out = box.exec("setpriv", "--reuid=monitor-agent", "--regid=monitor-agent", "--clear-groups",
                   "env", "PYTHONPATH=/opt/monitor-agent", PYTHON, "-c", LAST_CYCLE).stdout
    return json.loads(out) or {}


def test_the_unit_runs_in_its_sandbox(box: SystemdContainer) -> None:
    main = show(box, "MainPID")["MainPID"]
    status = dict(line.split(":\t", 1) for line in box.exec(
        "cat", f"/proc/{main}/status").stdout.splitlines() if ":\t" in line)
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", status
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 1 << 13, status
    mounts = {fields[4]: fields for fields in (line.split() for line in box.exec(
        "cat", f"/proc/{main}/mountinfo").stdout.splitlines())}
    host = {line.split()[4]: line.split() for line in box.exec(
        "cat", "/proc/1/mountinfo").stdout.splitlines()}
    assert mounts["/"][5].startswith("ro"), mounts["/"]                     # ProtectSystem=strict
    assert mounts["/dev"][2] != host["/dev"][2], (mounts["/dev"], host["/dev"])  # PrivateDevices=
    assert mounts["/tmp"][3] != "/", mounts["/tmp"]                         # PrivateTmp=
    assert mounts["/var/lib/monitor-agent"][5].startswith("rw"), mounts.get("/var/lib/monitor-agent")


def test_every_collector_works_under_the_installed_unit(box: SystemdContainer) -> None:
    # a real PAM session line in the auth facility, for the auth_log collector's journal read
    since = float(box.exec("date", "+%s.%N").stdout)
    box.exec("runuser", "-u", "nobody", "--", "true")

    def complete() -> dict[str, Any] | None:
        report = last_cycle(box)
        seen = report.get("observations", {})
        if (report.get("started_at") and _epoch(report["started_at"]) >= int(since)
                and seen.get("auth_log", {}).get("lines_read", 0) > 0
                and LISTEN_PORT in _open_ports(seen.get("nmap", {}).get("scan"))
                and seen.get("llm_runtimes", {}).get("runtimes")):
            return report
        return None

    report = wait_for("a cycle that read the PAM line, saw the listener and the runtime", complete, 150,
                      every=2)
    assert isinstance(report, dict)
    assert set(report["collectors"]) == set(COLLECTORS), report["collectors"]
    bad = {name: status for name, status in report["collectors"].items()
           if not (status["ok"] and status["error"] is None
                   and status["available"] is (name not in UNAVAILABLE_HERE))}
    assert not bad, bad
    for name, source in UNAVAILABLE_HERE.items():                      # unavailable, and says why
        assert source in report["collectors"][name]["note"], report["collectors"][name]
    seen = report["observations"]
    assert seen["syslog"]["backend"] == "journal" and seen["syslog"]["lines_read"] > 0
    assert seen["auth_log"]["backend"] == "journal"                     # systemd-journal group
    ping = seen["ping"]["targets"]["127.0.0.1"]
    assert ping["ok"] and ping["received"] > 0, ping                   # ICMP, no capability held
    assert seen["nmap"]["status"] == "scan finished", seen["nmap"]
    journald = seen["processes"]["watched"]["systemd-journald"]
    assert journald["running"], seen["processes"]                       # another user's process
    runtime = seen["llm_runtimes"]["runtimes"][0]                       # another user's sockets
    assert runtime["runtime"] == "llama.cpp" and runtime["attribution"] == "user", runtime
    assert f"127.0.0.1:{RUNTIME_PORT}" in [s["address"] for s in runtime["listening"]], runtime


def test_the_unit_lets_nvidia_smi_reach_the_gpu_nodes(box: SystemdContainer) -> None:
    props = show(box, "DevicePolicy", "BindReadOnlyPaths", "PrivateDevices")
    assert props["PrivateDevices"] == "yes" and props["DevicePolicy"] == "closed", props
    assert "-/dev/nvidiactl:/dev/nvidiactl" in props["BindReadOnlyPaths"], props
    allowed = box.exec("systemctl", "show", UNIT, "--property=DeviceAllow").stdout
    assert "char-nvidia rw" in allowed and "char-nvidia-frontend rw" in allowed, allowed
    # This container's device cgroup is read-only, so systemd cannot apply the ACL itself here;
    # what is tested is that the private /dev of the unit's sandbox holds usable GPU nodes.
    probe = ("import errno, os\n"
             "for name in ('nvidia0', 'nvidiactl', 'nvidia1', 'sda'):\n"
             "    try:\n"
             "        os.close(os.open('/dev/' + name, os.O_RDWR)); print(name, 'opened')\n"
             "    except OSError as err:\n"
             "        print(name, errno.errorcode[err.errno])\n")
    run = box.exec("systemd-run", "--wait", "--pipe", "--quiet", "--collect",
                   *service_properties(box), "/usr/bin/python3", "-c", probe)
    result = dict(line.split() for line in run.stdout.splitlines())
    # reached the kernel (no driver here) as the service user, through a read-only bind mount
    assert result["nvidia0"] == "ENXIO" and result["nvidiactl"] == "ENXIO", result
    assert result["nvidia1"] == "ENOENT" and result["sda"] == "ENOENT", result   # absent: skipped


def documented_commands() -> list[str]:
    """The `monitor-agent ...` lines of docs/operations.md's "Running it as a service" block."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## Running it as a service", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines()
            if line.startswith("monitor-agent ")]


def test_the_documented_commands_see_what_the_service_sees(box: SystemdContainer) -> None:
    commands = documented_commands()
    check = next(c for c in commands if c.split()[1] == "check")
    run = box.exec("bash", "-c", f"cd / && {check}", check=False)       # as root, as written
    lines = run.stdout.splitlines()
    # the journal, the data folder and nmap as the service user with the service's groups and
    # settings; Ollama is not here, so check reports it and exits 1
    for part in ("data folder", "store", "nmap", "syslog", "auth log"):
        assert any(line.startswith(f"\u2714 {part}: ") for line in lines), (part, run.stdout)
    assert "DATA_DIR /var/lib/monitor-agent is writable" in run.stdout, run.stdout
    assert any(line.startswith("\u2718 ollama: ") for line in lines), run.stdout
    assert run.returncode == 1, (run.returncode, run.stdout, run.stderr)
    once = next(c for c in commands if "--once" in c.split())
    box.exec("systemctl", "stop", UNIT)  # one writer on the store at a time
    try:
        report = box.exec("bash", "-c", f"cd / && {once} --json", timeout=300)
        status = box.exec("bash", "-c", "cd / && " + next(c for c in commands
                                                          if c.split()[1] == "status"))
        strangers = box.exec("find", "/var/lib/monitor-agent", "!", "-user", "monitor-agent",
                             "-o", "!", "-group", "monitor-agent").stdout
    finally:
        box.exec("systemctl", "start", UNIT)
    collectors = json.loads(report.stdout)["collectors"]
    assert all(s["ok"] for s in collectors.values()) and set(collectors) == set(COLLECTORS), collectors
    assert collectors["auth_log"]["available"] and collectors["syslog"]["available"], collectors
    assert "Last cycle" in status.stdout, status.stdout
    assert strangers == "", strangers            # nothing the service could not use later


def _epoch(started_at: str) -> float:
    """A cycle report's ISO 8601 start (whole seconds) as seconds since the epoch."""
    return datetime.fromisoformat(started_at).timestamp()


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
