"""`make install` into a DESTDIR: the code, its own venv, the unit and the env file, and it runs."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT


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
