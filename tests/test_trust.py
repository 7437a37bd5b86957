"""Steering files are trusted only when only root or the agent's user can write them (StrictModes).

The tests run as root, so "someone else" is made real: files and folders chown'ed to nobody
(65534), or chmod'ed group- and world-writable.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.known_issues import load_known_issues
from analysis.ollama_judge import load_constraints
from foundation import trust
from foundation.settings import ConfigError, load_settings
from foundation.trust import UnsafeFileError, check_folder, read_trusted
from tests.conftest import ROOT

NOBODY = 65534
KNOWN = '{"known_issues": []}\n'


@pytest.fixture
def safe_dir(tmp_path: Path) -> Path:
    """A folder only root can write, under pytest's own 0700 temporary folders."""
    folder = tmp_path / "etc"
    folder.mkdir(mode=0o755)
    return folder


def _file(folder: Path, name: str = "site.py", text: str = "X = 1\n", mode: int = 0o644) -> Path:
    path = folder / name
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_file_only_root_can_write_is_read(safe_dir: Path) -> None:
    assert read_trusted(_file(safe_dir), "--config file") == b"X = 1\n"
    assert read_trusted(_file(safe_dir, mode=0o600), "--config file") == b"X = 1\n"


@pytest.mark.parametrize(("mode", "who"), [(0o664, "group"), (0o646, "others"),
                                           (0o666, "group and others")])
def test_a_group_or_world_writable_file_is_refused_with_the_chmod_that_fixes_it(
        safe_dir: Path, mode: int, who: str) -> None:
    path = _file(safe_dir, mode=mode)
    with pytest.raises(UnsafeFileError) as caught:
        read_trusted(path, "--config file")
    message = str(caught.value)
    assert message.startswith(f"--config file {path}: is writable by {who} (mode {mode:04o})")
    assert message.endswith(f"Fix: chmod go-w {path}")


def test_a_foreign_owned_file_is_refused_with_the_chown_that_fixes_it(safe_dir: Path) -> None:
    path = _file(safe_dir)
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(UnsafeFileError) as caught:
        read_trusted(path, "KNOWN_ISSUES_PATH")
    assert f"is owned by nobody (uid {NOBODY}), not by root" in str(caught.value)
    assert str(caught.value).endswith(f"Fix: chown root {path}")


def test_every_problem_is_named_with_its_fix(safe_dir: Path) -> None:
    path = _file(safe_dir, mode=0o666)
    os.chown(path, NOBODY, NOBODY)
    safe_dir.chmod(0o775)
    with pytest.raises(UnsafeFileError) as caught:
        read_trusted(path, "--config file")
    assert str(caught.value).endswith(
        f"Fix: chown root {path}; chmod go-w {path}; chmod go-w {safe_dir}")


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_a_folder_others_can_write_makes_the_file_unsafe(safe_dir: Path, mode: int) -> None:
    inner = safe_dir / "conf.d"
    inner.mkdir()
    path = _file(inner)
    safe_dir.chmod(mode)   # two levels up: anyone could rename conf.d and put their own there
    with pytest.raises(UnsafeFileError, match=f"its folder {safe_dir} is writable by") as caught:
        read_trusted(path, "--config file")
    assert str(caught.value).endswith(f"Fix: chmod go-w {safe_dir}")


def test_a_foreign_owned_folder_makes_the_file_unsafe(safe_dir: Path) -> None:
    path = _file(safe_dir)
    os.chown(safe_dir, NOBODY, NOBODY)
    with pytest.raises(UnsafeFileError, match=f"its folder {safe_dir} is owned by nobody"):
        read_trusted(path, "--config file")


def test_a_root_owned_sticky_folder_is_fine_as_a_parent_but_not_a_foreign_one(
        safe_dir: Path) -> None:
    shared = safe_dir / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)                      # like /tmp
    path = _file(shared)
    assert read_trusted(path, "--config file") == b"X = 1\n"
    os.chown(shared, NOBODY, NOBODY)          # sticky, but its owner may replace any entry
    with pytest.raises(UnsafeFileError, match="is owned by nobody"):
        read_trusted(path, "--config file")
    os.chown(shared, 0, 0)
    shared.chmod(0o777)                       # world-writable without the sticky bit
    with pytest.raises(UnsafeFileError, match=f"its folder {shared} is writable"):
        read_trusted(path, "--config file")


def test_a_symlink_in_a_folder_others_can_write_is_refused(safe_dir: Path) -> None:
    target = _file(safe_dir)
    open_dir = safe_dir / "drop"
    open_dir.mkdir()
    open_dir.chmod(0o777)                     # anyone may repoint the link
    link = open_dir / "site.py"
    link.symlink_to(target)
    with pytest.raises(UnsafeFileError, match=f"its folder {open_dir} is writable"):
        read_trusted(link, "--config file")
    safe_link = safe_dir / "link.py"          # a link in a safe folder to a safe file is fine
    safe_link.symlink_to(target)
    assert read_trusted(safe_link, "--config file") == b"X = 1\n"


def test_what_is_read_is_the_file_that_was_checked(safe_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = _file(safe_dir, text="X = 'checked'\n")
    swapped = _file(safe_dir, "other.py", text="X = 'swapped in'\n")
    real = trust._directory_problems

    def swap_during_the_check(p: Path, uid: int) -> list[trust.Problem]:
        os.replace(swapped, path)             # the path now names another file
        return real(p, uid)

    monkeypatch.setattr(trust, "_directory_problems", swap_during_the_check)
    assert read_trusted(path, "--config file") == b"X = 'checked'\n"


def test_a_fifo_is_refused_without_blocking(safe_dir: Path) -> None:
    fifo = safe_dir / "site.py"
    os.mkfifo(fifo, 0o600)                    # opening it for reading would wait for a writer
    with pytest.raises(UnsafeFileError, match="is not a regular file"):
        read_trusted(fifo, "--config file")


def test_an_absent_file_is_absent_only_when_nobody_else_could_plant_it(safe_dir: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_trusted(safe_dir / "absent.json", "KNOWN_ISSUES_PATH")
    safe_dir.chmod(0o777)
    with pytest.raises(UnsafeFileError, match=f"its folder {safe_dir} is writable"):
        read_trusted(safe_dir / "absent.json", "KNOWN_ISSUES_PATH")


def test_relaxed_reads_the_file_and_warns_once_per_file(
        safe_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    first, second = _file(safe_dir, "a.py", mode=0o666), _file(safe_dir, "b.py", mode=0o666)
    with caplog.at_level(logging.WARNING, logger="foundation.trust"):
        for _ in range(3):
            assert read_trusted(first, "--config file", relaxed=True) == b"X = 1\n"
        read_trusted(second, "--config file", relaxed=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert str(first) in warnings[0] and "development only" in warnings[0]
    assert str(second) in warnings[1]


def test_the_data_folder_and_its_parents_are_checked(safe_dir: Path) -> None:
    data = safe_dir / "data"
    check_folder(data, "DATA_DIR")            # not made yet: judged by where it will be made
    data.mkdir(mode=0o700)
    check_folder(data, "DATA_DIR")
    data.chmod(0o777)
    with pytest.raises(UnsafeFileError, match=f"DATA_DIR {data}: is writable by group and "):
        check_folder(data, "DATA_DIR")
    data.chmod(0o1777)                        # sticky excuses a parent, not the data folder
    with pytest.raises(UnsafeFileError, match="Fix: chmod go-w"):
        check_folder(data, "DATA_DIR")
    data.chmod(0o700)
    os.chown(data, NOBODY, NOBODY)
    with pytest.raises(UnsafeFileError, match=f"Fix: chown root {data}"):
        check_folder(data, "DATA_DIR")
    os.chown(data, 0, 0)
    safe_dir.chmod(0o777)
    with pytest.raises(UnsafeFileError, match=f"its folder {safe_dir} is writable"):
        check_folder(data / "deeper", "DATA_DIR")
    with pytest.raises(UnsafeFileError, match="is not a folder"):
        check_folder(_file(data, "monitor.db"), "DATA_DIR")


# -- the loaders refuse before they read or execute ------------------------------------------------


def test_an_unsafe_config_file_is_never_executed(safe_dir: Path) -> None:
    marker = safe_dir / "ran"
    cfg = _file(safe_dir, text=f"open({str(marker)!r}, 'w').close()\nPING_COUNT = 4\n",
                mode=0o666)
    with pytest.raises(ConfigError, match=f"--config file {cfg}: is writable by group and others"):
        load_settings(cfg, environ={})
    assert not marker.exists()
    cfg.chmod(0o644)
    assert load_settings(cfg, environ={}).PING_COUNT == 4 and marker.exists()


def test_config_py_itself_is_checked(safe_dir: Path) -> None:
    defaults = _file(safe_dir, "config.py", text=(ROOT / "config.py").read_text())
    os.chown(defaults, NOBODY, NOBODY)
    with pytest.raises(ConfigError, match=f"config file {defaults}: is owned by nobody"):
        load_settings(environ={}, defaults_path=defaults)


def test_the_relaxing_setting_comes_only_from_the_environment_or_the_flag(safe_dir: Path) -> None:
    cfg = _file(safe_dir, text="PING_COUNT = 4\n", mode=0o666)
    assert load_settings(cfg, environ={"MONITOR_ALLOW_UNSAFE_FILES": "1"}).ALLOW_UNSAFE_FILES
    assert load_settings(cfg, environ={}, allow_unsafe_files=True).ALLOW_UNSAFE_FILES
    with pytest.raises(ConfigError, match="is writable"):
        load_settings(cfg, environ={"MONITOR_ALLOW_UNSAFE_FILES": "0"})
    assert load_settings(environ={}).ALLOW_UNSAFE_FILES is False          # off by default
    vouching = _file(safe_dir, "vouch.py", text="ALLOW_UNSAFE_FILES = True\n")
    with pytest.raises(ConfigError, match="ALLOW_UNSAFE_FILES: cannot be set in"):
        load_settings(vouching, environ={})


def test_known_issues_and_constraints_are_refused_when_others_can_write_them(
        safe_dir: Path, make_settings: object) -> None:
    known = _file(safe_dir, "known_issues.json", text=KNOWN, mode=0o646)
    with pytest.raises(ConfigError, match=f"KNOWN_ISSUES_PATH {known}: is writable by others"):
        load_known_issues(known)
    assert load_known_issues(known, relaxed=True).entries == ()
    guidance = _file(safe_dir, "CONSTRAINTS.md", text="Brute force is noise.\n")
    os.chown(guidance, NOBODY, NOBODY)
    with pytest.raises(ConfigError, match=f"CONSTRAINTS_PATH {guidance}: is owned by nobody"):
        load_constraints(guidance)
    assert load_constraints(guidance, relaxed=True) == "Brute force is noise.\n"


# -- the command line: exit status 2, the file and the fix, no traceback ---------------------------


def _agent(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    return subprocess.run([sys.executable, str(ROOT / "monitor_agent.py"), *args], cwd=ROOT,
                          env={**base, **env}, capture_output=True, text=True, timeout=120)


def test_cli_exits_2_for_an_unsafe_config_file_and_the_flag_relaxes_it(safe_dir: Path) -> None:
    cfg = _file(safe_dir, text="PING_COUNT = 4\n", mode=0o664)
    data = str(safe_dir / "data")
    proc = _agent("--config", str(cfg), "status", MONITOR_DATA_DIR=data)
    assert proc.returncode == 2
    assert f"--config file {cfg}: is writable by group" in proc.stderr
    assert f"Fix: chmod go-w {cfg}" in proc.stderr and "Traceback" not in proc.stderr
    relaxed = _agent("--allow-unsafe-files", "--config", str(cfg), "status", MONITOR_DATA_DIR=data)
    assert relaxed.returncode == 1, relaxed.stderr      # past the check: status finds no store
    assert "No store at" in relaxed.stdout
    assert relaxed.stderr.count(f"--config file {cfg}") == 1 and "development only" in relaxed.stderr


@pytest.mark.parametrize("setting", ["DATA_DIR", "KNOWN_ISSUES_PATH", "CONSTRAINTS_PATH"])
def test_cli_exits_2_for_an_unsafe_steering_path(safe_dir: Path, setting: str) -> None:
    env = {"MONITOR_DATA_DIR": str(safe_dir / "data"), "MONITOR_COLLECTORS": "[]"}
    unsafe = safe_dir / "open"
    unsafe.mkdir()
    unsafe.chmod(0o777)
    env[f"MONITOR_{setting}"] = str(unsafe / ("data" if setting == "DATA_DIR" else "file"))
    proc = _agent("--once", **env)
    assert proc.returncode == 2, proc.stderr
    assert f"{setting} {unsafe}/" in proc.stderr and f"Fix: chmod go-w {unsafe}" in proc.stderr
    assert "Traceback" not in proc.stderr
    relaxed = _agent("--once", MONITOR_ALLOW_UNSAFE_FILES="1", **env)
    assert relaxed.returncode == 0, relaxed.stderr
    assert "development only" in relaxed.stderr
