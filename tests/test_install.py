"""`make install` into a DESTDIR: the code, its own venv, the unit, the env file and the
`monitor-agent` command, and it runs."""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_systemd import render_wrapper


@pytest.mark.slow
def test_make_install_into_destdir_gives_a_working_agent_and_a_valid_unit(tmp_path: Path) -> None:
    dest = tmp_path / "root"
    proc = subprocess.run(["make", "install", f"DESTDIR={dest}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    prefix = dest / "opt" / "monitor-agent"
    assert (prefix / "monitor_agent.py").is_file() and (prefix / "config.py").is_file()
    assert not (prefix / "tests").exists()
    env_file = dest / "etc" / "monitor-agent" / "env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640
    unit = (dest / "etc" / "systemd" / "system" / "monitor-agent.service").read_text()
    assert "ExecStart=/opt/monitor-agent/.venv/bin/python /opt/monitor-agent/monitor_agent.py" in unit
    run = subprocess.run([str(prefix / ".venv" / "bin" / "python"), "monitor_agent.py", "--once",
                          "--json"], cwd=prefix, capture_output=True, text=True, timeout=120,
                         env={"PATH": os.environ["PATH"], "MONITOR_DATA_DIR": str(tmp_path / "d"),
                              "MONITOR_COLLECTORS": "processes"})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["collectors"]["processes"]["ok"] is True
    scanner = subprocess.run([str(prefix / ".venv" / "bin" / "python"), "-c",
                              "from collectors.auth import _authscan; print(_authscan.scan(b'x\\n')[0])"],
                             cwd=prefix, capture_output=True, text=True, timeout=60)
    assert scanner.stdout.strip() == "(1, True)", scanner.stderr      # the C scanner came along
    rendered = tmp_path / "monitor-agent.service"
    rendered.write_text(unit.replace("/opt/monitor-agent", str(prefix)))
    verify = subprocess.run([shutil.which("systemd-analyze") or "systemd-analyze", "verify",
                             str(rendered)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # the command line as the service runs it: rendered as tests/test_systemd.py tests it
    wrapper = dest / "usr" / "local" / "bin" / "monitor-agent"
    assert stat.S_IMODE(wrapper.stat().st_mode) == 0o755
    assert wrapper.read_text() == render_wrapper("/opt/monitor-agent")
    if os.geteuid() == 0:
        _run_the_staged_wrapper(wrapper.read_text(), prefix, env_file, tmp_path)


def _run_the_staged_wrapper(text: str, prefix: Path, env_file: Path, tmp_path: Path) -> None:
    """`monitor-agent --once --json` through the staged wrapper, venv and env file. Only a real
    install creates the service user, so root stands in for it (still without new privileges and
    with CAP_NET_RAW alone in its bounding set); tests/test_systemd.py switches users for real."""
    text = text.replace("/opt/monitor-agent", str(prefix))
    text = re.sub(r"(?m)^SERVICE_USER=.*$", "SERVICE_USER=root", text)
    text = re.sub(r"(?m)^ENV_FILE=.*$", f"ENV_FILE={env_file}", text)
    runnable = tmp_path / "monitor-agent"
    runnable.write_text(text)
    runnable.chmod(0o755)
    with env_file.open("a") as env:
        env.write(f"MONITOR_DATA_DIR={tmp_path / 'wrapped'}\nMONITOR_COLLECTORS=processes\n")
    run = subprocess.run([str(runnable), "--once", "--json"], capture_output=True, text=True,
                         timeout=120, cwd="/", env={"PATH": os.environ["PATH"],
                                                    "MONITOR_COLLECTORS": "not-from-the-caller"})
    assert run.returncode == 0, run.stderr
    assert set(json.loads(run.stdout)["collectors"]) == {"processes"}
    assert (tmp_path / "wrapped" / "monitor.db").is_file()
