"""systemd integration: notifications on a socket the test provides, the unit file verified and
scored, and the `monitor-agent` command (deploy/monitor-agent) run without systemd."""
from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
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
                 "SupplementaryGroups=adm systemd-journal", "User=monitor-agent",
                 "PrivateDevices=yes", "MemoryDenyWriteExecute=yes",
                 "SystemCallFilter=@system-service",
                 # nvidia-smi: the GPU nodes in the private /dev, and the driver's device group
                 "BindReadOnlyPaths=-/dev/nvidiactl -/dev/nvidia0", "DeviceAllow=char-nvidia rw",
                 "DeviceAllow=char-nvidia-frontend rw"):
        assert line in text, line
    # nothing held: CAP_NET_RAW only bounds (Debian's ping is cap_net_raw=ep and cannot be
    # executed otherwise; NoNewPrivileges keeps it from gaining it), no ambient capability
    assert "\nCapabilityBoundingSet=CAP_NET_RAW\n" in text and "\nAmbientCapabilities=\n" in text


def unit_values(name: str) -> list[str]:
    """The values of every ``NAME=`` line of the shipped unit, in order."""
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines()
            if line.startswith(f"{name}=")]


def test_unit_exposure_is_at_most_2(tmp_path: Path) -> None:
    rendered = tmp_path / "monitor-agent.service"
    rendered.write_text(render_unit(ROOT))
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(rendered)],
                          capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for monitor-agent\.service: (\d+\.\d+)", proc.stdout)
    assert found, proc.stdout + proc.stderr
    assert float(found.group(1)) <= 2.0, proc.stdout
    # what it leaves open is what the collectors need: every user's processes, all of /proc
    assert not unit_values("ProtectProc") and not unit_values("ProcSubset")


def syscall_groups() -> dict[str, list[str]]:
    """systemd's system call groups (``systemd-analyze syscall-filter``), each with its items."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        item = line.strip()
        if line.startswith("@"):
            current = groups.setdefault(item, [])
        elif item and not item.startswith("#"):
            current.append(item)
    return groups


def allowed_syscalls(values: list[str]) -> set[str]:
    """The system calls a unit's ``SystemCallFilter=`` lines allow, merged as systemd merges
    them: the first line decides (an allow list here), later ones add or (``~``) take away."""
    groups = syscall_groups()

    def expand(name: str) -> set[str]:
        return set().union(*(expand(n) for n in groups[name])) if name.startswith("@") else {name}

    allowed: set[str] | None = None
    for value in values:
        names = set().union(*(expand(n) for n in value.removeprefix("~").split()))
        if allowed is None:
            assert not value.startswith("~"), "an allow list, not a deny list"
            allowed = names
        elif value.startswith("~"):
            allowed -= names
        else:
            allowed |= names
    assert allowed is not None
    return allowed


def test_the_system_call_filter_keeps_what_the_collectors_commands_call() -> None:
    allowed = allowed_syscalls(unit_values("SystemCallFilter"))
    needed = {"capset", "setuid",                       # ping drops its capabilities first
              "socket", "connect", "sendto", "recvmsg", "setsockopt",   # ping, nmap, sd_notify
              "clone3", "execve", "setsid", "setpgid", "kill", "wait4",  # child commands
              "prlimit64", "ioctl", "mmap", "inotify_add_watch", "getdents64"}
    assert needed <= allowed, needed - allowed
    refused = {"mount", "ptrace", "reboot", "init_module", "settimeofday", "swapon", "bpf",
               "setgroups", "chown", "setrlimit", "setpriority", "sched_setattr", "iopl"}
    assert not refused & allowed, refused & allowed
    assert unit_values("SystemCallErrorNumber") == ["EPERM"]   # refused, not killed


DROP_IN = ROOT / "deploy" / "llm-traffic.conf"


def drop_in_values(name: str) -> list[str]:
    return [line.split("=", 1)[1] for line in DROP_IN.read_text().splitlines()
            if line.startswith(f"{name}=")]


def test_the_llm_traffic_drop_in_verifies_and_adds_only_what_the_uprobes_need(
        tmp_path: Path) -> None:
    rendered = tmp_path / "monitor-agent.service"
    rendered.write_text(render_unit(ROOT))
    (tmp_path / "monitor-agent.service.d").mkdir()
    (tmp_path / "monitor-agent.service.d" / "llm-traffic.conf").write_text(DROP_IN.read_text())
    proc = subprocess.run(["systemd-analyze", "verify", str(rendered)], capture_output=True,
                          text=True, timeout=60)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if "monitor-agent.service" in line or "llm-traffic.conf" in line]
    assert proc.returncode == 0 and not problems, proc.stdout + proc.stderr
    # uid 0 (tracefs' uprobe_events without CAP_SYS_ADMIN), bounded to four capabilities
    assert drop_in_values("User") == ["root"]
    assert set(drop_in_values("CapabilityBoundingSet")[0].split()) == {
        "CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_NET_RAW"}
    assert "CAP_SYS_ADMIN" not in DROP_IN.read_text().split("#")[0]
    merged = allowed_syscalls(unit_values("SystemCallFilter") + drop_in_values("SystemCallFilter"))
    assert {"bpf", "perf_event_open"} <= merged
    assert not {"mount", "init_module", "reboot", "swapon"} & merged
    # the rest of the hardening is the unit's: the drop-in changes nothing else
    assert {line.split("=", 1)[0] for line in DROP_IN.read_text().splitlines()
            if "=" in line and not line.startswith("#")} == {
        "User", "Group", "CapabilityBoundingSet", "AmbientCapabilities", "SystemCallFilter",
        "ReadWritePaths"}
    assert drop_in_values("ReadWritePaths") == ["/sys/kernel/tracing"]


WRAPPER = ROOT / "deploy" / "monitor-agent"
ENV_FILE = "/etc/monitor-agent/env"


def wrapper_value(name: str) -> str:
    """A ``NAME=value`` assignment at the top of deploy/monitor-agent, unquoted."""
    found = re.search(rf'^{name}="?([^"\n]*)"?$', WRAPPER.read_text(), re.M)
    assert found, name
    return found.group(1)


def render_wrapper(prefix: Path | str, user: str = "monitor-agent", env_file: str = ENV_FILE) -> str:
    """deploy/monitor-agent as `make install PREFIX=... SERVICE_USER=...` renders it, with a test's
    own env file in place of /etc/monitor-agent/env when given."""
    text = WRAPPER.read_text().replace(DEFAULT_PREFIX, str(prefix))
    for name, value in (("SERVICE_USER", user), ("ENV_FILE", env_file)):
        text, count = re.subn(rf"^{name}=.*$", f"{name}={value}", text, flags=re.M)
        assert count == 1, name
    return text


def test_the_wrapper_mirrors_the_unit() -> None:
    assert wrapper_value("PREFIX") == DEFAULT_PREFIX == unit_values("WorkingDirectory")[0]
    assert unit_values("ExecStart") == [f"{DEFAULT_PREFIX}/.venv/bin/python "
                                        f"{DEFAULT_PREFIX}/monitor_agent.py"]
    assert [wrapper_value("SERVICE_USER")] * 2 == unit_values("User") + unit_values("Group")
    assert unit_values("EnvironmentFile") == ["-" + wrapper_value("ENV_FILE")]
    assert unit_values("SupplementaryGroups") == [wrapper_value("UNIT_GROUPS")]
    assert unit_values("Environment") == [wrapper_value("UNIT_ENVIRONMENT")]
    assert unit_values("UMask") == [wrapper_value("UNIT_UMASK")]
    bounding = ["+" + cap.lower().removeprefix("cap_")
                for cap in unit_values("CapabilityBoundingSet")[0].split()]
    assert wrapper_value("UNIT_BOUNDING_SET") == ",".join(["-all", *bounding])
    assert unit_values("NoNewPrivileges") == ["yes"] and "--no-new-privs" in WRAPPER.read_text()


# an env file with every form systemd's EnvironmentFile= reads, and two lines it skips
ENV_TEXT = """\
# a comment
; another

MONITOR_DATA_DIR=/var/tmp/replaced-by-the-test
  MONITOR_SPACED = "two words" \t
MONITOR_SINGLE='no $expansion `here`'
MONITOR_EQUALS=a=b
not an assignment, and not shown: s3cr3t-line
9BAD=s3cr3t-value
MONITOR_LAST=no final newline"""


@pytest.fixture
def fake_install() -> Iterator[Path]:
    """A folder others can read, holding an install whose "agent" reports how it was started."""
    if os.geteuid() != 0:
        pytest.skip("the wrapper switches users: root only")
    folder = Path(tempfile.mkdtemp(prefix="monitor-wrapper-", dir="/var/tmp"))
    try:
        folder.chmod(0o755)
        (folder / "prefix" / ".venv" / "bin").mkdir(parents=True)
        (folder / "prefix" / ".venv" / "bin" / "python").symlink_to("/usr/bin/python3")
        (folder / "prefix" / "monitor_agent.py").write_text(
            "import json, os, sys\n"
            "status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read()"
            ".splitlines() if ':\\t' in l)\n"
            "umask = os.umask(0)\n"
            "print(json.dumps({'argv': sys.argv, 'uid': os.getuid(), 'gid': os.getgid(),"
            " 'groups': os.getgroups(), 'env': dict(os.environ), 'cwd': os.getcwd(),"
            " 'umask': umask, 'status': status}))\n")
        (folder / "env").write_text(ENV_TEXT.replace("/var/tmp/replaced-by-the-test",
                                                     str(folder / "data")))
        yield folder
    finally:
        shutil.rmtree(folder)


def run_wrapper(folder: Path, *args: str, user: str = "nobody",
                as_user: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """Render the wrapper for ``folder``'s install and run it with ``args``."""
    script = folder / "monitor-agent"
    script.write_text(render_wrapper(folder / "prefix", user, str(folder / "env")))
    script.chmod(0o755)
    caller = {"PATH": os.environ["PATH"], "TERM": "xterm-test", "HOME": "/root",
              "MONITOR_COLLECTORS": "bogus", "PYTHONPATH": "/nonexistent", "LANG": "C.UTF-8"}
    return subprocess.run([*as_user, str(script), *args], env=caller, cwd="/", capture_output=True,
                          text=True, timeout=60)


def test_the_wrapper_runs_the_agent_as_the_service_user_with_the_units_settings(
        fake_install: Path) -> None:
    run = run_wrapper(fake_install, "check", "two words", "$HOME", "")
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    prefix = fake_install / "prefix"
    assert seen["argv"] == [str(prefix / "monitor_agent.py"), "check", "two words", "$HOME", ""]
    nobody = pwd.getpwnam("nobody")
    assert (seen["uid"], seen["gid"]) == (nobody.pw_uid, nobody.pw_gid)
    unit_groups = {g.gr_gid for g in grp.getgrall() if g.gr_name in ("adm", "systemd-journal")}
    assert set(seen["groups"]) == set(os.getgrouplist("nobody", nobody.pw_gid)) | unit_groups
    env = seen["env"]
    assert {k: v for k, v in env.items() if k.startswith("MONITOR_")} == {
        "MONITOR_DATA_DIR": str(fake_install / "data"),   # the env file wins over Environment=
        "MONITOR_SPACED": "two words", "MONITOR_SINGLE": "no $expansion `here`",
        "MONITOR_EQUALS": "a=b", "MONITOR_LAST": "no final newline"}
    assert env["PYTHONUNBUFFERED"] == env["PYTHONFAULTHANDLER"] == "1"
    assert "PYTHONPATH" not in env and env["TERM"] == "xterm-test"       # the caller's: only TERM
    assert (env["HOME"], env["USER"]) == (nobody.pw_dir, "nobody")
    assert not {k for k in env if k.startswith("_") or k in ("PWD", "OLDPWD")}, env
    assert seen["cwd"] == str(prefix) and seen["umask"] == 0o077
    status = seen["status"]
    assert status["NoNewPrivs"] == "1" and int(status["CapBnd"], 16) == 1 << 13   # CAP_NET_RAW
    assert int(status["CapEff"], 16) == int(status["CapInh"], 16) == 0
    # the two skipped lines are named by their number, their text never shown
    assert "env line 8 has no" in run.stderr and "env line 9: not a variable" in run.stderr
    assert "s3cr3t" not in run.stderr


def test_the_wrapper_without_an_env_file_has_the_units_environment(fake_install: Path) -> None:
    (fake_install / "env").unlink()
    run = run_wrapper(fake_install, "status")
    assert run.returncode == 0, run.stderr
    env = json.loads(run.stdout)["env"]
    assert {k: v for k, v in env.items() if k.startswith("MONITOR_")} == {
        "MONITOR_DATA_DIR": "/var/lib/monitor-agent"}


def test_the_wrapper_refuses_anyone_but_root(fake_install: Path) -> None:
    run = run_wrapper(fake_install, "check", as_user=(
        "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"))
    assert run.returncode == 2 and run.stdout == "", run
    assert "run it as root" in run.stderr


def test_the_wrapper_names_a_missing_service_user(fake_install: Path) -> None:
    run = run_wrapper(fake_install, "check", user="no-such-user-here")
    assert run.returncode == 2 and run.stdout == "", run
    assert "there is no user no-such-user-here" in run.stderr
