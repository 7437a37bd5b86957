"""The dashboard as the operator runs it: `web-password` from standard input (a pipe and a
terminal), `web` refusing a reachable address without a password, a real uvicorn on loopback
(real HTTP, its memory, a clean stop on SIGTERM), the agent's own start without the web stack,
and the systemd unit and its install."""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from agent.web import password
from agent.web.command import BindRefused, check_bind
from foundation.settings import load_settings
from tests.conftest import ROOT
from tests.procs import agent_env, run_agent, stop
from tests.web_support import PASSWORD, token_of

UNIT = ROOT / "deploy" / "monitor-agent-web.service"
AGENT_UNIT = ROOT / "deploy" / "monitor-agent.service"
RSS_BAR_MB = 60.0          # the bar for the dashboard's process
WEB_MODULES = ("starlette", "jinja2", "uvicorn", "multipart", "python_multipart", "agent.web")


def web_password(home: Path, given: str | bytes, *args: str) -> subprocess.CompletedProcess[str]:
    """`web-password` with ``given`` on its standard input (a pipe)."""
    data = given.encode() if isinstance(given, str) else given
    proc = subprocess.run([sys.executable, str(ROOT / "monitor_agent.py"), "web-password", *args],
                          cwd=ROOT, env=agent_env(home), input=data, capture_output=True,
                          timeout=120, check=False)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(),
                                       proc.stderr.decode())


def record_of(home: Path) -> dict[str, Any]:
    """The password file web-password wrote."""
    return dict(json.loads((home / "data" / password.FILE_NAME).read_text()))


# -- web-password ---------------------------------------------------------------------------------

def test_web_password_reads_standard_input_and_stores_a_salted_scrypt_hash(
        tmp_path: Path) -> None:
    done = web_password(tmp_path, PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "data" / password.FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record = record_of(tmp_path)
    assert record["scheme"] == "scrypt" and record["n"] >= 2**14 and record["r"] >= 8
    assert record["p"] >= 1 and len(record["salt"]) >= 22 and record["dklen"] == 64
    assert password.verify(PASSWORD, record) and not password.verify(PASSWORD + "x", record)
    for text in (done.stdout, done.stderr, path.read_text()):
        assert PASSWORD not in text
    # a second run: another salt, the file replaced whole, no temporary file left behind
    assert web_password(tmp_path, PASSWORD + "\r\n").returncode == 0
    assert record_of(tmp_path)["salt"] != record["salt"]
    assert password.verify(PASSWORD, record_of(tmp_path))
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [password.FILE_NAME]
    # the settings table of no store holds it: no store was even made
    assert not (tmp_path / "data" / "monitor.db").exists()


@pytest.mark.parametrize(("given", "says"), [
    ("", "empty"), ("\n", "empty"), ("short\n", "shorter than 8"),
    ("x" * 2000 + "\n", "longer than 1024"), (b"\xff\xfe bad utf-8 \n", "not UTF-8"),
])
def test_web_password_refuses_what_is_no_password(tmp_path: Path, given: str | bytes,
                                                  says: str) -> None:
    done = web_password(tmp_path, given)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert not (tmp_path / "data" / password.FILE_NAME).exists()


def test_web_password_never_takes_it_from_the_command_line(tmp_path: Path) -> None:
    done = web_password(tmp_path, "", PASSWORD)
    assert done.returncode == 2 and "unrecognized arguments" in done.stderr
    assert not (tmp_path / "data" / password.FILE_NAME).exists()


def _on_a_terminal(home: Path, entries: list[str]) -> tuple[int, str]:
    """`web-password` on a pseudo-terminal (its controlling terminal), typing ``entries`` at its
    prompts; (exit status, what the terminal showed)."""
    master, slave = pty.openpty()

    def controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py"), "web-password"],
                            cwd=ROOT, env=agent_env(home), stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True,
                            preexec_fn=controlling_terminal)   # the pty is its terminal
    os.close(slave)
    shown = b""
    try:
        for entry, prompt in zip(entries, (b"Dashboard password:", b"The same again:"),
                                 strict=False):
            # type only once it asks: getpass flushes what was typed before its prompt
            deadline = time.monotonic() + 60
            while prompt not in shown and time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 0.5)
                if ready:
                    shown += os.read(master, 4096)
            os.write(master, entry.encode() + b"\r")
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    shown += os.read(master, 4096)
                except OSError:
                    break
        proc.wait(30)
    finally:
        stop(proc)
        os.close(master)
    return proc.returncode, shown.decode(errors="replace")


def test_web_password_on_a_terminal_asks_twice_without_echo(tmp_path: Path) -> None:
    code, shown = _on_a_terminal(tmp_path, [PASSWORD, PASSWORD])
    assert code == 0, shown
    assert "Dashboard password:" in shown and "The same again:" in shown
    assert PASSWORD not in shown                      # no echo
    assert password.verify(PASSWORD, record_of(tmp_path))
    code, shown = _on_a_terminal(tmp_path, ["first password", "second password"])
    assert code == 2 and "differ" in shown
    assert password.verify(PASSWORD, record_of(tmp_path))   # unchanged


def test_an_unsafe_password_file_is_refused_with_its_fix(tmp_path: Path, make_settings: Any
                                                         ) -> None:
    settings = make_settings(DATA_DIR=tmp_path / "data", WEB_BIND="0.0.0.0")
    assert web_password(tmp_path, PASSWORD + "\n").returncode == 0
    path = password.password_path(settings)
    assert check_bind(settings) is True                      # set: a LAN bind is allowed
    path.chmod(0o644)
    with pytest.raises(BindRefused, match="chmod 600"):
        check_bind(settings)
    path.chmod(0o600)
    path.write_text(json.dumps({**record_of(tmp_path), "n": 1024}))
    path.chmod(0o600)
    with pytest.raises(BindRefused, match="n must be"):       # weaker than the floor
        check_bind(settings)
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(BindRefused, match="symbolic link"):
        check_bind(settings)


# -- web: the refusal, and a real server ----------------------------------------------------------

@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "192.0.2.10"])
def test_web_refuses_a_reachable_address_without_a_password(tmp_path: Path, bind: str) -> None:
    done = run_agent(tmp_path, "web", WEB_BIND=bind)
    assert done.returncode == 2, done.stderr
    assert "WEB_BIND" in done.stderr and bind in done.stderr
    assert "web-password" in done.stderr and "Traceback" not in done.stderr


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    """Until the dashboard answers (or fail with what it logged)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the dashboard exited with {proc.returncode}: "
                        f"{proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(url + "/login", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail("the dashboard did not answer within a minute")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """`monitor_agent.py web` on a free loopback port, over the store of one real cycle."""
    cycle = run_agent(tmp_path, "--once", "--json", PROCESSES_TO_MONITOR="mt-not-running-web")
    assert cycle.returncode == 0, cycle.stderr
    assert web_password(tmp_path, PASSWORD + "\n").returncode == 0
    port = free_port()
    # every collector enabled, as by default: the dashboard loads none of them
    everything = json.dumps(list(load_settings(environ={}).COLLECTORS))
    proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py"), "web"], cwd=ROOT,
                            env=agent_env(tmp_path, WEB_PORT=str(port), COLLECTORS=everything,
                                          PROCESSES_TO_MONITOR="mt-not-running-web"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc)
        yield url, proc, tmp_path
    finally:
        stop(proc)


def test_a_real_dashboard_over_http_and_its_memory(served: Any) -> None:
    url, proc, _ = served
    with httpx.Client(base_url=url, timeout=30, follow_redirects=False) as client:
        assert client.get("/").status_code == 303
        form = client.get("/login")
        answer = client.post("/login", data={"csrf_token": token_of(form.text),
                                             "password": PASSWORD, "next": "/"})
        assert answer.status_code == 303, answer.text
        overview = client.get("/api/overview").json()
        assert overview["collectors"][0] == {**overview["collectors"][0], "name": "processes",
                                             "state": "up"}
        [item] = client.get("/api/findings").json()["open"]["items"]
        assert item["kind"] == "process_missing"
        for _ in range(10):                  # a few minutes of an open page, compressed
            for path in ("/", "/findings", item["href"], "/api/overview", "/api/findings",
                         "/api" + item["href"], "/static/live.js", "/static/app.css"):
                assert client.get(path).status_code == 200, path
        page = client.get(item["href"])
        assert "mt-not-running-web" in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
    process = psutil.Process(proc.pid)
    loaded = {Path(m.path).name for m in process.memory_maps()}
    assert not any(name.startswith(("_multiarray", "libopenblas")) for name in loaded)  # numpy
    rss_mb = process.memory_info().rss / 2**20
    peak_mb = int(re.search(r"VmHWM:\s+(\d+) kB",
                            Path(f"/proc/{proc.pid}/status").read_text()).group(1)) / 1024
    print(f"\ndashboard RSS after serving pages: {rss_mb:.1f} MB (peak {peak_mb:.1f} MB)")
    assert rss_mb <= RSS_BAR_MB, f"RSS {rss_mb:.1f} MB over the {RSS_BAR_MB} MB bar"
    assert process.num_threads() <= 50


def test_sigterm_stops_the_dashboard_cleanly(served: Any) -> None:
    url, proc, _ = served
    with httpx.Client(base_url=url, timeout=30) as client:   # a browser's open connection
        client.get("/login")
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert "dashboard on http://127.0.0.1:" in err and "Traceback" not in err
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/login", timeout=2)


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = run_agent(tmp_path, "web", WEB_PORT=str(port))
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "WEB_PORT" in done.stderr


def test_the_agent_s_own_start_never_loads_the_web_stack(tmp_path: Path) -> None:
    code = ("import sys; from agent.cli import main; rc = main(['--once', '--json']); "
            f"names = {WEB_MODULES!r}; "
            "print('LOADED=' + ','.join(sorted(m for m in sys.modules "
            "if any(m == n or m.startswith(n + '.') for n in names))), file=sys.stderr); "
            "sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=agent_env(tmp_path),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "LOADED=\n" in done.stderr, done.stderr[-500:]


# -- the systemd unit and its install -------------------------------------------------------------

def unit_lines(path: Path) -> list[str]:
    """The setting lines of a unit file."""
    return [line for line in path.read_text().splitlines() if "=" in line
            and not line.startswith("#")]


def test_the_dashboard_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is installed by make test (Debian package systemd)"
    rendered = tmp_path / "monitor-agent-web.service"
    rendered.write_text(UNIT.read_text().replace("/opt/monitor-agent", str(ROOT)))
    verify = subprocess.run([analyze, "verify", str(rendered)], capture_output=True, text=True,
                            timeout=60, check=False)
    problems = [line for line in (verify.stdout + verify.stderr).splitlines()
                if "monitor-agent-web.service" in line]
    assert verify.returncode == 0 and not problems, verify.stdout + verify.stderr
    scored = subprocess.run([analyze, "security", "--offline=yes", str(rendered)],
                            capture_output=True, text=True, timeout=60, check=False)
    found = re.search(r"Overall exposure level for monitor-agent-web\.service: (\d+\.\d+)",
                      scored.stdout)
    assert found, scored.stdout + scored.stderr
    assert float(found.group(1)) <= 1.5, scored.stdout
    lines = unit_lines(UNIT)
    for wanted in ("ExecStart=/opt/monitor-agent/.venv/bin/python "
                   "/opt/monitor-agent/monitor_agent.py web",
                   "ReadWritePaths=/var/lib/monitor-agent", "ProtectSystem=strict",
                   "NoNewPrivileges=yes", "CapabilityBoundingSet=", "PrivateUsers=yes",
                   "MemoryDenyWriteExecute=yes", "ProtectProc=invisible"):
        assert wanted in lines, wanted
    # the agent's user, data folder and secrets file: the store and password are its files
    shared = ("User=", "Group=", "EnvironmentFile=", "StateDirectory=")
    assert [x for x in lines if x.startswith(shared)] == \
        [x for x in unit_lines(AGENT_UNIT) if x.startswith(shared)]
    assert "MONITOR_DATA_DIR=/var/lib/monitor-agent" in UNIT.read_text()


def test_make_install_renders_the_dashboard_unit(tmp_path: Path) -> None:
    dry = subprocess.run(["make", "-n", "install", f"DESTDIR={tmp_path}", "PREFIX=/srv/agent",
                          "SERVICE_USER=watcher"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=False)
    assert dry.returncode == 0, dry.stderr
    line = next(x for x in dry.stdout.splitlines() if "monitor-agent-web.service" in x
                and x.lstrip().startswith("deploy/"))
    assert f'"{tmp_path}/etc/systemd/system/monitor-agent-web.service"' in line
    render = dry.stdout[:dry.stdout.index(line)].splitlines()[-1]
    assert "s#/opt/monitor-agent#/srv/agent#g" in render and "=watcher#" in render
    assert "try-restart monitor-agent-web.service" in dry.stdout
    assert "enable monitor-agent-web" not in dry.stdout       # a password comes first


def test_the_listening_socket_says_tcp_so_responses_skip_nagles_wait() -> None:
    """asyncio sets TCP_NODELAY on an accepted socket only when its proto is TCP: with proto 0 each
    response's body waited ~40 ms for the client's delayed ACK (bench/web_dashboard.py)."""
    from agent.web.server import listen

    sock = listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()
