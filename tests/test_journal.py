"""The journal backend on real journal files built by systemd-journal-remote, read by journalctl."""
from __future__ import annotations

import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from collectors.logreader.journal import JournalError, parse_output, read_journal, render_entry
from collectors.logreader.source import LogSource
from foundation.context import CollectContext, CommandError, run_command

JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
BOOT = "0123456789abcdef0123456789abcdef"
T0 = 1795428000_000000          # 2026-11-23T10:00:00Z in microseconds


def run(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
    """The real command runner."""
    return run_command(args, timeout)


def entry(i: int, message: str | bytes, **fields: str) -> bytes:
    """One entry of the journal export format (a bytes MESSAGE is written as a binary field)."""
    out = [f"__REALTIME_TIMESTAMP={T0 + i * 1_000_000}", f"__MONOTONIC_TIMESTAMP={1000 + i}",
           f"_BOOT_ID={BOOT}", "_HOSTNAME=box"]
    out += [f"{k}={v}" for k, v in fields.items()]
    blob = "\n".join(out).encode() + b"\n"
    if isinstance(message, bytes):
        blob += b"MESSAGE\n" + struct.pack("<Q", len(message)) + message + b"\n"
    elif message:
        blob += f"MESSAGE={message}\n".encode()
    return blob


def build(folder: Path, name: str, entries: list[bytes]) -> Path:
    """A real journal file from export-format entries."""
    folder.mkdir(parents=True, exist_ok=True)
    export = folder / f"{name}.export"
    export.write_bytes(b"\n".join(entries) + b"\n")
    target = folder / f"{name}.journal"
    subprocess.run([JOURNAL_REMOTE, f"--output={target}", str(export)], check=True,
                   capture_output=True, timeout=30)
    export.unlink()
    return target


def sshd(i: int, text: str, facility: str = "4", prio: str = "6") -> bytes:
    return entry(i, text, SYSLOG_IDENTIFIER="sshd", _PID=str(100 + i), PRIORITY=prio,
                 SYSLOG_FACILITY=facility, _UID="0")


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    """A journal with auth, daemon, kernel, binary and text-less entries."""
    build(tmp_path / "j", "first", [
        sshd(0, "Failed password for root from 203.0.113.7 port 22 ssh2", prio="5"),
        entry(1, "disk full", SYSLOG_IDENTIFIER="backup", _PID="7", PRIORITY="3",
              SYSLOG_FACILITY="3"),
        entry(2, "Out of memory: Killed process 15784 (python3) total-vm:11964kB",
              SYSLOG_IDENTIFIER="kernel", _TRANSPORT="kernel", PRIORITY="3",
              SYSLOG_FACILITY="0"),
        entry(3, b"bad \xff utf8\nsecond line\x1b[31m", SYSLOG_IDENTIFIER="weird app",
              _PID="9", PRIORITY="6", SYSLOG_FACILITY="3"),
        entry(4, "", _COMM="nomsg", PRIORITY="6"),
        sshd(5, "pam_unix(sshd:auth): authentication failure; rhost=203.0.113.7", "10"),
    ])
    return tmp_path / "j"


def test_entries_render_as_high_precision_syslog_lines(journal: Path) -> None:
    got = read_journal(run, None, start_at="start", directory=journal)
    assert got.lines.decode().splitlines() == [
        "2026-11-23T10:00:00.000000+00:00 box sshd[100]: Failed password for root from "
        "203.0.113.7 port 22 ssh2",
        "2026-11-23T10:00:01.000000+00:00 box backup[7]: disk full",
        "2026-11-23T10:00:02.000000+00:00 box kernel: Out of memory: Killed process 15784 "
        "(python3) total-vm:11964kB",
        "2026-11-23T10:00:03.000000+00:00 box weird_app[9]: bad \ufffd utf8#012second line#033[31m",
        "2026-11-23T10:00:05.000000+00:00 box sshd[105]: pam_unix(sshd:auth): authentication "
        "failure; rhost=203.0.113.7",
    ]
    assert (got.entries, got.malformed) == (6, 1)            # the entry without MESSAGE
    assert got.severities == {5: 1, 3: 2, 6: 2}
    assert got.cursor and got.cursor.startswith("s=")


def test_cursor_reads_each_entry_once_across_files(journal: Path) -> None:
    first = read_journal(run, None, start_at="start", directory=journal)
    assert read_journal(run, first.cursor, directory=journal).entries == 0
    build(journal, "second", [sshd(10, "Accepted publickey for alice from 198.51.100.2 port 5 ssh2")])
    again = read_journal(run, first.cursor, directory=journal)
    assert again.entries == 1 and b"Accepted publickey for alice" in again.lines
    assert read_journal(run, again.cursor, directory=journal).entries == 0


def test_auth_matches_pick_facilities_4_and_10(journal: Path) -> None:
    got = read_journal(run, None, start_at="start", directory=journal,
                       matches=["SYSLOG_FACILITY=4", "SYSLOG_FACILITY=10"])
    assert got.entries == 2 and all(b" sshd[" in line for line in got.lines.splitlines())


def test_first_run_at_end_skips_history(journal: Path) -> None:
    first = read_journal(run, None, start_at="end", directory=journal)
    assert first.entries == 0 and first.lines == b"" and first.cursor
    build(journal, "second", [sshd(10, "new one")])
    assert read_journal(run, first.cursor, directory=journal).lines.endswith(b"sshd[110]: new one\n")


def test_max_entries_stops_and_the_next_read_goes_on(journal: Path) -> None:
    part = read_journal(run, None, start_at="start", directory=journal, max_entries=2)
    rest = read_journal(run, part.cursor, directory=journal)
    whole = read_journal(run, None, start_at="start", directory=journal)
    assert part.entries == 2 and part.lines + rest.lines == whole.lines


def test_journal_file_option_reads_one_file(journal: Path) -> None:
    got = read_journal(run, None, start_at="start", journal_file=journal / "first.journal")
    assert got.entries == 6


def test_parse_output_counts_garbage_as_malformed() -> None:
    out = (b'{"__CURSOR":"c1","__REALTIME_TIMESTAMP":"1795428000000000","MESSAGE":"ok",'
           b'"SYSLOG_IDENTIFIER":"a"}\nnot json\n[1,2]\n{"MESSAGE":"no time"}\n'
           b'{"__REALTIME_TIMESTAMP":"x","MESSAGE":"bad time"}\n-- cursor: c1\n')
    got = parse_output(out, 100)
    assert (got.entries, got.malformed, got.cursor) == (3, 4, "c1")
    assert got.lines == b"2026-11-23T10:00:00.000000+00:00 localhost a: ok\n"


def test_render_entry_message_as_byte_array() -> None:
    line = render_entry({"__REALTIME_TIMESTAMP": "1795428000000000", "MESSAGE": [104, 105, 10, 255],
                         "SYSLOG_IDENTIFIER": "x", "SYSLOG_PID": "3"})
    assert line == b"2026-11-23T10:00:00.000000+00:00 localhost x[3]: hi#012\xef\xbf\xbd\n"


def test_a_failing_journalctl_is_a_journal_error(tmp_path: Path) -> None:
    def broken(args: Sequence[str], timeout: float) -> Any:
        raise CommandError("cannot run journalctl: No such file or directory")

    with pytest.raises(JournalError, match="cannot run journalctl"):
        read_journal(broken, None, start_at="start")


def source(make_settings: Any, state: dict, tmp_path: Path, journal: Path | None, **kw: Any
           ) -> LogSource:
    settings = make_settings(JOURNAL_DIRECTORY=str(journal) if journal else str(tmp_path / "none"),
                             **kw)
    ctx = CollectContext(settings, 1795428100.0, state, run)
    return LogSource(ctx, tmp_path / "auth.log", "auto", ["SYSLOG_FACILITY=4", "SYSLOG_FACILITY=10"])


def test_logsource_auto_uses_the_journal_when_the_file_is_absent(
        make_settings: Any, tmp_path: Path, journal: Path) -> None:
    first = source(make_settings, {}, tmp_path, journal, LOG_START_AT="start")
    data = b"".join(first.chunks())
    assert first.backend_used == "journal" and first.available and data.count(b"\n") == 2
    assert first.info()["lines_read"] == 2 and first.info()["backend"] == "journal"
    build(journal, "second", [sshd(10, "Invalid user bob from 192.0.2.1 port 4")])
    second = source(make_settings, first.new_state(), tmp_path, journal)
    assert b"".join(second.chunks()).endswith(b"Invalid user bob from 192.0.2.1 port 4\n")


def test_logsource_with_neither_file_nor_journal_says_why(make_settings: Any, tmp_path: Path
                                                          ) -> None:
    (tmp_path / "none").mkdir()
    src = source(make_settings, {}, tmp_path, None)
    assert list(src.chunks()) == []
    assert not src.available and src.backend_used == "none"
    assert "auth.log does not exist" in (src.note or "") and "JOURNAL_DIRECTORY" in (src.note or "")


def test_a_cursor_whose_file_was_vacuumed_loses_no_entry(tmp_path: Path) -> None:
    """journalctl --after-cursor skips one entry more when the cursor's entry is gone; reading
    from the cursor itself and leaving that entry out loses nothing (issue 17)."""
    folder = tmp_path / "j"
    build(folder, "old", [sshd(0, "Accepted publickey for alice from 192.0.2.1 port 1 ssh2")])
    first = read_journal(run, None, start_at="end", directory=folder)
    build(folder, "rotated", [sshd(i, f"Failed password for root from 203.0.113.7 port {i} ssh2")
                              for i in range(1, 7)])
    (folder / "old.journal").unlink()                     # vacuumed: the cursor's entry is gone
    after = read_journal(run, first.cursor, directory=folder)
    assert after.entries == 6 and b"port 1 ssh2" in after.lines
    assert read_journal(run, after.cursor, directory=folder).entries == 0   # read once
