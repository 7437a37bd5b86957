"""Real processes with unique names, started and stopped by the tests themselves (by pid)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil


def unique_name(prefix: str = "mt") -> str:
    """A process name unique to this test run, within the kernel's 15-character comm limit."""
    return f"{prefix}{uuid.uuid4().hex}"[:15]


def start_named(folder: Path, name: str, seconds: float = 600) -> subprocess.Popen:
    """Start a sleeper whose process name (comm) and argv[0] are ``name``; wait until visible."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / name
    if not link.exists():
        link.symlink_to(os.path.realpath(sys.executable))
    proc = subprocess.Popen([str(link), "-c", f"import time; time.sleep({seconds})"],
                            stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if psutil.Process(proc.pid).name() == name:
                return proc
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    stop(proc)
    raise RuntimeError(f"process {name} did not show up under its name")


def stop(proc: subprocess.Popen) -> None:
    """Stop a process this test started, by its own pid."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def agent_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment the tests run the agent in: nothing of the caller's but PATH, a store in
    ``home``, the processes collector alone, and ``settings`` as MONITOR_<NAME> variables."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "COLUMNS": "200",
           "MONITOR_DATA_DIR": str(home / "data"), "MONITOR_COLLECTORS": "processes"}
    env.update({f"MONITOR_{k}": v for k, v in settings.items()})
    return env


def run_agent(home: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """``monitor_agent.py ARGS`` as an operator runs it, in the environment of ``agent_env``."""
    root = Path(__file__).resolve().parent.parent
    return subprocess.run([sys.executable, str(root / "monitor_agent.py"), *args], cwd=root,
                          env=agent_env(home, **settings), capture_output=True, text=True,
                          timeout=120, check=False)

