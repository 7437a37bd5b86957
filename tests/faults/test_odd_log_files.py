"""Log paths that are not regular files: refused at once, saying what they are, never opened.

Before, a FIFO as SYSLOG_PATH blocked the syslog collector in open() for its whole timeout every
cycle, and the auth_log collector called the same FIFO, and /dev/zero, "does not exist". Each
collector runs here in a daemon thread joined with a bound, so a blocking open fails the test
instead of hanging it.
"""
from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import collectors
from collectors.logreader.tail import Tail
from foundation.context import CollectContext
from foundation.files import NotRegularFile, open_regular

pytestmark = pytest.mark.faults

BOUND_S = 20.0        # a refusal takes milliseconds; the blocking open took the 90 s timeout
SETTING = {"syslog": ("SYSLOG_PATH", "SYSLOG_BACKEND"),
           "auth_log": ("AUTH_LOG_PATH", "AUTH_LOG_BACKEND")}


def make_fifo(folder: Path) -> tuple[Path, Callable[[], None]]:
    path = folder / "fifo.log"
    os.mkfifo(path)
    return path, lambda: None


def make_socket(folder: Path) -> tuple[Path, Callable[[], None]]:
    path = folder / "socket.log"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen()
    return path, sock.close


def make_directory(folder: Path) -> tuple[Path, Callable[[], None]]:
    path = folder / "dir.log"
    path.mkdir()
    return path, lambda: None


def dev_zero(_folder: Path) -> tuple[Path, Callable[[], None]]:
    return Path("/dev/zero"), lambda: None


def symlink_to_fifo(folder: Path) -> tuple[Path, Callable[[], None]]:
    target, done = make_fifo(folder)
    link = folder / "link.log"
    link.symlink_to(target)
    return link, done


ODD = {"fifo": (make_fifo, "FIFO (named pipe)"), "char_device": (dev_zero, "character device"),
       "socket": (make_socket, "socket"), "directory": (make_directory, "directory"),
       "symlink_to_fifo": (symlink_to_fifo, "FIFO (named pipe)")}


def bounded(fn: Callable[[], Any]) -> Any:
    """fn's result, or a test failure if it has not returned within BOUND_S."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(BOUND_S)
    if thread.is_alive():
        pytest.fail(f"blocked for more than {BOUND_S:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


@pytest.mark.parametrize("backend", ["file", "auto"])
@pytest.mark.parametrize("collector", sorted(SETTING))
@pytest.mark.parametrize("odd", sorted(ODD))
def test_a_log_path_that_is_not_a_regular_file_is_refused_at_once(
        tmp_path: Path, make_settings, collector: str, odd: str, backend: str) -> None:
    maker, kind = ODD[odd]
    path, cleanup = maker(tmp_path)
    try:
        path_key, backend_key = SETTING[collector]
        settings = make_settings(**{path_key: str(path), backend_key: backend,
                                    "JOURNAL_DIRECTORY": str(tmp_path / "no-journal")})
        module = collectors.load(collector)
        state: dict[str, Any] = {}
        for _ in range(2):            # the first cycle, and a second one with its state
            t0 = time.monotonic()
            result = bounded(lambda state=state: module.collect(CollectContext(settings, time.time(), state)))
            state = dict(result.state or {})
            assert time.monotonic() - t0 < BOUND_S
            assert result.available is False
            assert f"{path} is a {kind}, not a regular file" in (result.note or "")
            assert "does not exist" not in (result.note or "")
    finally:
        cleanup()


@pytest.mark.parametrize("odd", sorted(ODD))
def test_the_tail_itself_never_opens_a_non_regular_file(tmp_path: Path, odd: str) -> None:
    maker, kind = ODD[odd]
    path, cleanup = maker(tmp_path)
    try:
        with pytest.raises(NotRegularFile, match=re.escape(f"is a {kind}")):
            bounded(lambda: list(Tail(path, None, start_at="start").chunks()))
        with pytest.raises(NotRegularFile, match=re.escape(f"is a {kind}")):
            bounded(lambda: open_regular(path))
    finally:
        cleanup()


def test_open_regular_reads_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "plain.log"
    path.write_bytes(b"one\ntwo\n")
    with open_regular(path) as handle:
        assert handle.read() == b"one\ntwo\n"
