"""`pip install` and `pipx install` of the project: the wheel's content, and the `homelab-monitor`
command of a fresh virtual environment, run from a folder that is not the checkout.

The wheel is built from a copy of the checkout (pip, with build isolation, as `pip install .` does);
the pinned dependencies come from a folder of wheels made once from the package index
(`pip wheel -r requirements.txt`), so each install is offline and the same as the pins. The
pipx test installs a wheel built with no C compiler (CC names no program): the optional C
scanner is left out and the Python path runs.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import agent
from foundation import locations
from foundation.settings import load_settings
from tests.conftest import ROOT
from tests.procs import agent_env, stop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]   # builds and installs: minutes when loaded

HAS_VECTORSCAN = Path("/usr/include/hs/hs.h").is_file() and shutil.which("gcc") is not None
HAS_CLANG_BPF = (Path("/usr/include/bpf/bpf_helpers.h").is_file()
                 and shutil.which("clang") is not None)
# not part of a wheel: the venvs, caches, tests, docs, builds (top level); bytecode and
# `make native`'s in-place scanner (anywhere)
SKIP_TOP = {".venv", ".venv-ha", ".git", ".ci", "data", "build", "dist", "tests", "bench", "docs",
            ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", ".import_linter_cache"}
AUTH_LINES = ("Dec  6 03:00:01 nas sshd[4242]: Failed password for root from 203.0.113.5 port 4242 ssh2\n"
              "Dec  6 03:00:02 nas sshd[4242]: Failed password for root from 203.0.113.5 port 4243 ssh2\n")
NO_OLLAMA = {"OLLAMA_HOST": "http://127.0.0.1:9", "OLLAMA_TIMEOUT_SECONDS": "5"}


def _ignore(folder: str, names: list[str]) -> set[str]:
    top = Path(folder) == ROOT
    return {n for n in names if (top and n in SKIP_TOP) or n == "__pycache__" or n.endswith(".so")
            or n.endswith((".egg-info", ".o"))}


def copy_checkout(dest: Path) -> Path:
    """What a fresh clone holds for the build (without the tests, docs and anything built)."""
    shutil.copytree(ROOT, dest, ignore=_ignore)
    return dest


def sh(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
       timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a command, failing the test with its output when it fails."""
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def build_wheel(source: Path, out: Path, **env: str) -> Path:
    """`pip wheel --no-deps` of ``source`` (build isolation: setuptools from the index)."""
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, source, cwd=source,
       env={**os.environ, **env})
    [wheel] = out.glob("homelab_monitor-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels of every pinned dependency (sdists built to wheels), from the package index."""
    out = tmp_path_factory.mktemp("wheelhouse")
    sh(sys.executable, "-m", "pip", "wheel", "-q", "-r", ROOT / "requirements.txt", "-w", out, cwd=out)
    return out


@pytest.fixture(scope="module")
def native_wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The wheel as `pip install .` builds it here, and the copy of the checkout it came from."""
    base = tmp_path_factory.mktemp("native")
    source = copy_checkout(base / "src")
    return build_wheel(source, base / "dist"), source


@pytest.fixture(scope="module")
def plain_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built where no C compiler runs: the optional scanner fails, the build goes on."""
    base = tmp_path_factory.mktemp("plain")
    return build_wheel(copy_checkout(base / "src"), base / "dist", CC="/nonexistent/cc")


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, native_wheel: tuple[Path, Path],
         wheelhouse: Path) -> Path:
    """A fresh virtual environment with the wheel and its dependencies, installed offline."""
    path = tmp_path_factory.mktemp("venv") / "env"
    sh(sys.executable, "-m", "venv", path, cwd=path.parent)
    sh(path / "bin" / "python", "-m", "pip", "install", "-q", "--no-index", "--find-links",
       wheelhouse, native_wheel[0], cwd=path.parent)
    return path


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A current folder with nothing of the checkout, and an auth log with two failed logins."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "auth.log").write_text(AUTH_LINES, encoding="utf-8")
    return folder


def env_for(folder: Path, **settings: str) -> dict[str, str]:
    """The agent's environment (tests/procs.py: a store in ``folder``/data) with the auth log."""
    return agent_env(folder, COLLECTORS="processes,auth_log", AUTH_LOG_PATH=str(folder / "auth.log"),
                     AUTH_LOG_BACKEND="file", LOG_START_AT="start", **NO_OLLAMA, **settings)


def run(command: Path, *args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The installed command as an operator runs it."""
    return subprocess.run([str(command), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def once(command: Path, folder: Path) -> dict[str, object]:
    """One cycle with --once --json; its report, after checking that the store holds it."""
    proc = run(command, "--once", "--json", cwd=folder, env=env_for(folder))
    assert proc.returncode == 0, proc.stderr
    report: dict[str, object] = json.loads(proc.stdout)
    with sqlite3.connect(folder / "data" / "monitor.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM cycles").fetchone()[0] == 1
    return report


# -- the wheel --------------------------------------------------------------------------------------

def test_the_wheel_carries_the_code_its_files_and_one_command(
        native_wheel: tuple[Path, Path], plain_wheel: Path) -> None:
    wheel, source = native_wheel
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in ("known_issues.json", "CONSTRAINTS.md"):
            assert zf.read(f"foundation/defaults/{name}") == (source / name).read_bytes()
        assert zf.read("config.py") == (source / "config.py").read_bytes()   # the embedded defaults
        info = f"homelab_monitor-{agent.__version__}.dist-info"
        assert "homelab-monitor = agent.cli:main" in zf.read(f"{info}/entry_points.txt").decode()
    web = source / "agent" / "web"
    pages = [p.relative_to(source).as_posix() for p in sorted((web / "templates").glob("*.html"))]
    static = [p.relative_to(source).as_posix() for p in sorted((web / "static").rglob("*"))
              if p.is_file()]
    assert pages and static and set(pages + static) <= names
    assert {"monitor_agent.py", "agent/cli.py", "foundation/locations.py",
            "collectors/auth/compiled.py"} <= names
    assert not any(n.endswith(".c") or n.startswith(("tests/", "bench/", "docs/")) for n in names)
    scanners = [n for n in names if n.startswith("collectors/auth/_authscan.") and n.endswith(".so")]
    assert len(scanners) == (1 if HAS_VECTORSCAN else 0)
    # llm_traffic's eBPF object, compiled by clang at the build when it is there (setup.py)
    assert ("collectors/llm_traffic/capture.bpf.o" in names) == HAS_CLANG_BPF
    with zipfile.ZipFile(plain_wheel) as zf:   # no compiler: no scanner, everything else
        plain = set(zf.namelist())
    assert not any(n.endswith(".so") for n in plain)
    assert plain == names - set(scanners)


# -- the installed command --------------------------------------------------------------------------

def test_the_installed_command_shows_the_one_version(venv: Path, elsewhere: Path) -> None:
    expected = f"homelab-monitor {agent.__version__}"
    proc = run(venv / "bin" / "homelab-monitor", "--version", cwd=elsewhere, env=env_for(elsewhere))
    assert (proc.returncode, proc.stdout.strip()) == (0, expected), proc.stderr
    wrapper = run(venv / "bin" / "python", "-m", "monitor_agent", "--version", cwd=elsewhere,
                  env=env_for(elsewhere))                  # monitor_agent.py: the same function
    assert wrapper.stdout.strip() == expected, wrapper.stderr
    usage = run(venv / "bin" / "homelab-monitor", "--help", cwd=elsewhere, env=env_for(elsewhere))
    assert usage.stdout.startswith("usage: homelab-monitor ")
    for command in ("recap", "check", "status", "store", "test-alert", "ack", "snooze",
                    "maintenance", "watch", "web", "web-password"):
        assert command in usage.stdout


def test_installed_check_without_ollama_says_which_auth_scanner(venv: Path, elsewhere: Path) -> None:
    proc = run(venv / "bin" / "homelab-monitor", "check", cwd=elsewhere, env=env_for(elsewhere))
    assert proc.returncode == 1, proc.stdout + proc.stderr   # a configured part fails: Ollama
    lines = proc.stdout.splitlines()
    assert "\u2718 ollama: the judge's LLM is not usable; the rules decide until it is" in lines
    assert f"\u2714 data folder: DATA_DIR {elsewhere / 'data'} is writable" in lines
    [scanner] = [line for line in lines if "auth scanner" in line]
    assert scanner.startswith("\u2714 auth scanner: ")
    assert ("is built" if HAS_VECTORSCAN else "is not built") in scanner


def test_installed_once_writes_the_store_and_reads_nothing_of_the_checkout(
        venv: Path, elsewhere: Path) -> None:
    report = once(venv / "bin" / "homelab-monitor", elsewhere)
    auth = report["observations"]["auth_log"]                     # type: ignore[index]
    assert auth["failed_logins"] == 2
    assert auth["scanner"] == ("c" if HAS_VECTORSCAN else "regex")
    assert report["verdict"]["by"] == "rules"                      # type: ignore[index]
    # where the code, the defaults and the steering files come from: the package, not the checkout
    probe = ("import json, agent, config, monitor_agent; from foundation.settings import load_settings; "
             f"s = load_settings(environ={{'HOME': {str(elsewhere)!r}}}); print(json.dumps(["
             "agent.__file__, config.__file__, monitor_agent.__file__, str(s.DATA_DIR), "
             "str(s.KNOWN_ISSUES_PATH), str(s.CONSTRAINTS_PATH)]))")
    proc = run(venv / "bin" / "python", "-c", probe, cwd=elsewhere, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    code, defaults, wrapper, data_dir, known, constraints = json.loads(proc.stdout)
    site = venv.resolve() / "lib"
    for path in (code, defaults, wrapper):
        assert Path(path).resolve().is_relative_to(site) and not Path(path).is_relative_to(ROOT)
    euid = os.geteuid()
    assert Path(data_dir) == (Path("/var/lib/homelab-monitor") if euid == 0
                              else elsewhere / ".local/state/homelab-monitor")
    own = locations.config_dir({"HOME": str(elsewhere)}, euid)
    for path, name in ((known, "known_issues.json"), (constraints, "CONSTRAINTS.md")):
        expected = (own / name if (own / name).exists()
                    else Path(defaults).parent / "foundation" / "defaults" / name)
        assert Path(path) == expected


def free_port() -> int:
    """A loopback port no one listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dashboard(venv: Path, elsewhere: Path) -> Iterator[str]:
    """The installed `homelab-monitor web` on a free loopback port, stopped by its pid."""
    port = free_port()
    proc = subprocess.Popen([str(venv / "bin" / "homelab-monitor"), "web"], cwd=elsewhere,
                            env=env_for(elsewhere, WEB_PORT=str(port)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(f"{url}/login", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the dashboard did not answer within two minutes"
            time.sleep(0.2)
        yield url
    finally:
        stop(proc)


def test_installed_dashboard_serves_its_pages_from_the_package(dashboard: str) -> None:
    with httpx.Client(base_url=dashboard, timeout=30) as client:
        login = client.get("/login")
        assert login.status_code == 200 and "<form" in login.text
        for asset in ("/static/app.css", "/static/vendor/uPlot.iife.min.js"):
            assert client.get(asset).status_code == 200, asset


# -- pipx --------------------------------------------------------------------------------------------

def test_pipx_installs_a_wheel_built_without_a_compiler_and_it_scans_in_python(
        tmp_path: Path, plain_wheel: Path, wheelhouse: Path, elsewhere: Path) -> None:
    pipx = shutil.which("pipx")
    if pipx is None:
        pytest.fail("pipx is not installed: make apt-test installs it (apt install pipx)")
    env = {**os.environ, "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin"),
           "PIPX_MAN_DIR": str(tmp_path / "man")}
    sh(pipx, "install", f"--pip-args=--no-index --find-links={wheelhouse}", plain_wheel,
       cwd=elsewhere, env=env)
    command = tmp_path / "bin" / "homelab-monitor"
    version = run(command, "--version", cwd=elsewhere, env=env_for(elsewhere))
    assert version.stdout.strip() == f"homelab-monitor {agent.__version__}", version.stderr
    check = run(command, "check", cwd=elsewhere, env=env_for(elsewhere))
    assert check.returncode == 1, check.stdout + check.stderr
    [scanner] = [line for line in check.stdout.splitlines() if "auth scanner" in line]
    assert scanner.startswith("\u2714 auth scanner: the C scanner is not built, so the auth log is "
                              "scanned in Python")
    report = once(command, elsewhere)
    auth = report["observations"]["auth_log"]                     # type: ignore[index]
    assert (auth["scanner"], auth["failed_logins"]) == ("regex", 2)


# -- where an installed agent keeps its files (foundation/locations.py) ----------------------------

EMBEDDED = {"DATA_DIR": "./data", "KNOWN_ISSUES_PATH": "known_issues.json",
            "CONSTRAINTS_PATH": "CONSTRAINTS.md"}


def test_a_checkout_keeps_its_relative_defaults() -> None:
    assert locations.in_checkout(ROOT) and locations.in_checkout()
    settings = load_settings(environ={})
    assert not settings.DATA_DIR.is_absolute() and settings.DATA_DIR.name == "data"
    assert str(settings.KNOWN_ISSUES_PATH) == "known_issues.json"


def test_installed_defaults_for_root_and_for_a_user(tmp_path: Path) -> None:
    assert not locations.in_checkout(tmp_path)
    home = {"HOME": str(tmp_path)}
    user = locations.installed_defaults(EMBEDDED, home, euid=1000)
    assert user["DATA_DIR"] == tmp_path / ".local/state/homelab-monitor"
    assert user["KNOWN_ISSUES_PATH"] == tmp_path / ".config/homelab-monitor/known_issues.json"
    xdg = locations.installed_defaults(EMBEDDED, {**home, "XDG_STATE_HOME": "/srv/state",
                                                  "XDG_CONFIG_HOME": "relative/ignored"}, euid=1000)
    assert xdg["DATA_DIR"] == Path("/srv/state/homelab-monitor")
    assert xdg["CONSTRAINTS_PATH"] == tmp_path / ".config/homelab-monitor/CONSTRAINTS.md"
    root = locations.installed_defaults(EMBEDDED, home, euid=0)
    assert root["DATA_DIR"] == Path("/var/lib/homelab-monitor")
    assert locations.config_dir(home, 0) == Path("/etc/homelab-monitor")
    # a value that is not relative is the operator's: left alone
    assert locations.installed_defaults({"DATA_DIR": "/srv/monitor"}, home, euid=1000) == {}


def test_the_operators_own_file_wins_over_the_shipped_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = tmp_path / "shipped" / "CONSTRAINTS.md"
    shipped.parent.mkdir()
    shipped.write_text("# shipped\n", encoding="utf-8")
    monkeypatch.setattr(locations, "shipped", lambda name: shipped if name == shipped.name else None)
    home = {"HOME": str(tmp_path)}
    assert locations.installed_defaults(EMBEDDED, home, euid=1000)["CONSTRAINTS_PATH"] == shipped
    own = tmp_path / ".config" / "homelab-monitor" / "CONSTRAINTS.md"
    own.parent.mkdir(parents=True)
    own.write_text("# mine\n", encoding="utf-8")
    assert locations.installed_defaults(EMBEDDED, home, euid=1000)["CONSTRAINTS_PATH"] == own
