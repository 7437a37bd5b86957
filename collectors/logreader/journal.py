"""Read the systemd journal through ``journalctl -o json`` from a cursor, as syslog-like lines.

Each entry becomes one line in rsyslog's high-precision format (UTC), so the same parsers read
files and the journal: ``2026-11-23T10:00:01.123456+00:00 HOST PROG[PID]: MESSAGE``. Control
characters in MESSAGE are escaped the way rsyslog does (``#012`` for a newline).

Any program may call itself anything (``logger -t sshd``), so the identifiers whose lines raise
findings are believed only when the fields journald itself records say who wrote them (WRITERS):
``kernel`` only from ``_TRANSPORT=kernel``, sshd only from a process of uid 0 (``_UID``). Otherwise the
program is rendered with a suffix (``kernel(not_kmsg)``, ``sshd(not_root)``) that no pattern matches.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from foundation.context import CommandError, Runner

log = logging.getLogger(__name__)

OUTPUT_FIELDS = ("MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "SYSLOG_PID", "_PID", "_COMM",
                 "_HOSTNAME", "_TRANSPORT", "_UID")
KERNEL = "kernel"


@dataclass(frozen=True)
class Writer:
    """Who may write lines under an identifier: a journald-set field, its value, the rename."""

    field: str
    value: str
    suffix: str


# journald sets _TRANSPORT=kernel only for what it read from /dev/kmsg, and _UID from the sender's
# socket credentials; sshd (and OpenSSH 9.8's sshd-session/sshd-auth, whose pre-auth lines the
# root monitor writes) always logs as root, so a non-root "sshd" is someone's logger.
_SSHD = Writer("_UID", "0", "(not_root)")
WRITERS: Mapping[str, Writer] = {
    KERNEL: Writer("_TRANSPORT", KERNEL, "(not_kmsg)"),
    "sshd": _SSHD, "sshd-session": _SSHD, "sshd-auth": _SSHD,
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN_BAD = re.compile(r"[\s\[\]:\x00-\x1f\x7f]+")


class JournalError(Exception):
    """journalctl could not be run or failed."""


@dataclass(frozen=True)
class JournalRead:
    """Entries read from the journal, rendered as lines, and the cursor after the last one."""

    lines: bytes
    cursor: str | None
    entries: int
    malformed: int
    severities: Mapping[int, int] = field(default_factory=dict)  # PRIORITY -> entries


def _escape(text: str) -> str:
    return _CONTROL.sub(lambda m: f"#{ord(m.group(0)):03o}", text)


def _token(value: Any, default: str) -> str:
    text = _TOKEN_BAD.sub("_", str(value)).strip("_") if value not in (None, "") else ""
    return text[:128] or default


def _message(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value).decode("utf-8", "replace")
    return None


def render_entry(entry: Mapping[str, Any]) -> bytes | None:
    """One journal JSON entry as a high-precision syslog line; None when it lacks time or text."""
    message = _message(entry.get("MESSAGE"))
    try:
        usec = int(entry["__REALTIME_TIMESTAMP"])
        stamp = datetime.fromtimestamp(usec / 1e6, UTC).isoformat(timespec="microseconds")
    except (KeyError, TypeError, ValueError, OverflowError, OSError):  # absent or out of range
        return None
    if message is None:
        return None
    program = _token(entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM"), "unknown")
    writer = WRITERS.get(program)
    if writer is not None and entry.get(writer.field) != writer.value:
        program += writer.suffix
    pid = entry.get("SYSLOG_PID") or entry.get("_PID")
    pid_part = f"[{pid}]" if isinstance(pid, str) and pid.isdigit() else ""
    host = _token(entry.get("_HOSTNAME"), "localhost")
    line = f"{stamp} {host} {program}{pid_part}: {_escape(message)}\n"
    return line.encode("utf-8", "replace")


def parse_output(output: bytes, max_entries: int, skip: str | None = None) -> JournalRead:
    """Parse ``journalctl -o json`` output (pure): lines, last cursor, counts; the entry whose
    cursor is ``skip`` (the one read last time) is left out."""
    lines: list[bytes] = []
    cursor: str | None = None
    entries = malformed = 0
    severities: dict[int, int] = {}
    for raw in output.splitlines():
        if not raw.strip() or raw.startswith(b"-- "):     # "-- cursor: ..." / "-- No entries --"
            continue
        if entries >= max_entries:
            break
        try:
            entry = json.loads(raw)
        except ValueError:
            malformed += 1
            continue
        if not isinstance(entry, dict):
            malformed += 1
            continue
        if skip is not None and entry.get("__CURSOR") == skip:
            continue
        entries += 1
        if isinstance(entry.get("__CURSOR"), str):
            cursor = entry["__CURSOR"]
        line = render_entry(entry)
        if line is None:
            malformed += 1
            continue
        lines.append(line)
        prio = entry.get("PRIORITY")
        if isinstance(prio, str) and prio.isdigit() and int(prio) <= 7:
            severities[int(prio)] = severities.get(int(prio), 0) + 1
    return JournalRead(b"".join(lines), cursor, entries, malformed, severities)


def source_args(directory: Path | None, journal_file: Path | None) -> list[str]:
    """journalctl arguments that pick the journal: a file, a directory, or the system's."""
    if journal_file is not None:
        return [f"--file={journal_file}"]
    if directory is not None:
        return [f"--directory={directory}"]
    return []


def _run(run: Runner, args: list[str], timeout_s: float) -> bytes:
    try:
        proc = run(args, timeout_s)
    except CommandError as err:
        raise JournalError(str(err)) from err
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip()[:300]
        raise JournalError(f"journalctl exited with {proc.returncode}: {detail}")
    return proc.stdout


def end_cursor(run: Runner, *, directory: Path | None = None, journal_file: Path | None = None,
               timeout_s: float = 30.0) -> str | None:
    """The cursor of the newest entry (None for an empty journal)."""
    out = _run(run, ["journalctl", "--no-pager", "-o", "json", "-n", "1",
                     "--output-fields=MESSAGE", *source_args(directory, journal_file)], timeout_s)
    return parse_output(out, 1).cursor


def read_journal(run: Runner, cursor: str | None, *, matches: Sequence[str] = (),
                 start_at: str = "end", max_entries: int = 100_000, directory: Path | None = None,
                 journal_file: Path | None = None, timeout_s: float = 30.0) -> JournalRead:
    """Entries after ``cursor`` (first run: none with start_at "end", all with "start")."""
    where = source_args(directory, journal_file)
    if cursor is None and start_at == "end":
        return JournalRead(b"", end_cursor(run, directory=directory, journal_file=journal_file,
                                           timeout_s=timeout_s), 0, 0)
    args = ["journalctl", "--no-pager", "-o", "json",
            "--output-fields=" + ",".join(OUTPUT_FIELDS), *where]
    if cursor is not None:
        # --cursor, not --after-cursor: when the cursor's entry is gone (its file vacuumed, the
        # journal rotated away), journalctl seeks to the next entry and --after-cursor would skip
        # that one too; from the cursor itself, the entry read last time is left out by its cursor
        args.append(f"--cursor={cursor}")
    args.extend(matches)
    got = parse_output(_run(run, args, timeout_s), max_entries, skip=cursor)
    if got.cursor is None:
        return JournalRead(got.lines, cursor, got.entries, got.malformed, got.severities)
    return got
