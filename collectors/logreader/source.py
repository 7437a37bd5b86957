"""One log, read from its file or from the journal, with its cursor kept in the collector's state.

Backend "auto": the file when it exists; while a file read before is missing (between a rotation's
rename and create, or for a while) the file backend waits for it up to FILE_GRACE_S; otherwise the
journal, when journalctl runs and the journal holds entries (Debian 12 has no /var/log/auth.log
unless rsyslog is installed). The state is ``{"log": {...}}``: merge it into the collector's state.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from collectors.logreader.journal import JournalError, end_cursor, read_journal
from collectors.logreader.tail import Tail, cut_long_lines, siblings
from foundation.context import CollectContext
from foundation.files import REGULAR, path_kind

log = logging.getLogger(__name__)

STATE_KEY = "log"
FILE_GRACE_S = 3600.0       # how long "auto" waits for a vanished file before trying the journal
JOURNAL_TIMEOUT_S = 30.0
JOURNAL_LINE_GUESS = 256    # bytes per entry, to turn LOG_MAX_BYTES_PER_CYCLE into an entry cap


class LogSource:
    """One log read from its file or the journal per backend 'auto' | 'file' | 'journal'."""

    def __init__(self, ctx: CollectContext, path: Path, backend: str,
                 journal_matches: Sequence[str], count_lines: bool = True) -> None:
        self.ctx = ctx
        self.count_lines = count_lines          # False: the caller counts (lines_read is 0 here)
        self.path = Path(path)
        self.matches = tuple(journal_matches)
        settings = ctx.settings
        self.start_at = settings.LOG_START_AT
        self.max_line = settings.LOG_MAX_LINE_BYTES
        self.max_bytes = settings.LOG_MAX_BYTES_PER_CYCLE
        self.directory = Path(settings.JOURNAL_DIRECTORY) if settings.JOURNAL_DIRECTORY else None
        prev = ctx.state.get(STATE_KEY) if ctx.state else None
        self._prev: dict[str, Any] = dict(prev) if isinstance(prev, Mapping) else {}
        self._state: dict[str, Any] = dict(self._prev)
        self._tail: Tail | None = None
        self._journal_stats: dict[str, Any] = {"lines": 0, "bytes": 0, "long_lines": 0,
                                               "events": [], "malformed": 0}
        self.severities: dict[int, int] = {}   # journal PRIORITY -> entries (journal backend)
        self.available = True
        self.note: str | None = None
        self.backend_used = self._choose(backend)

    # --- choosing the backend ------------------------------------------------------------------
    def _file_waiting(self) -> bool:
        """True while a file read before is missing but may come back (rotation, a short gap)."""
        cursor = self._prev.get("file")
        if not isinstance(cursor, dict) or cursor.get("ino") is None:
            return False
        if any(_inode(p) == (cursor["dev"], cursor["ino"]) for p in siblings(self.path)):
            return True
        since = self._prev.get("missing_since")
        return since is None or self.ctx.now - since < FILE_GRACE_S

    def _journal_ok(self) -> tuple[bool, str | None]:
        if self._prev.get("journal") or self._prev.get("journal_started"):
            return True, None
        try:
            cursor = end_cursor(self.ctx.run, directory=self.directory, timeout_s=JOURNAL_TIMEOUT_S)
        except JournalError as err:
            return False, f"journalctl cannot be used: {err}"
        if cursor is None:
            where = self.directory or "the system journal"
            return False, f"{where} holds no entries"
        return True, None

    def _choose(self, backend: str) -> str:
        try:
            kind = path_kind(self.path)
        except OSError:            # unreadable folder: as before, the path is not usable
            kind = None
        if kind is not None and kind != REGULAR and backend != "journal":
            self.available = False     # refused before anything opens it (a FIFO would block)
            self.note = (f"{self.path} is a {kind}, not a regular file: the agent reads only "
                         f"regular log files; point the path setting at the log file, or use "
                         f"the journal backend")
            return "none"
        exists = kind == REGULAR
        if backend == "file" or (backend == "auto" and (exists or self._file_waiting())):
            if not exists and not self._file_waiting():
                self.available = False
                self.note = (f"{self.path} does not exist: install rsyslog (apt install rsyslog), "
                             f"set the path setting, or use the journal backend")
            if not exists:
                self._state.setdefault("missing_since", self.ctx.now)
            else:
                self._state.pop("missing_since", None)
            return "file"
        ok, why = self._journal_ok()
        if ok:
            return "journal"
        self.available = False
        self.note = (f"{self.path} does not exist and the journal is not readable ({why}); "
                     f"install rsyslog, point the path setting at the log, or set JOURNAL_DIRECTORY")
        return "none"

    # --- reading ---------------------------------------------------------------------------------
    def chunks(self) -> Iterator[bytes]:
        """Whole lines (each ending in a newline) since the stored cursor."""
        if self.backend_used == "file":
            self._tail = Tail(self.path, self._prev.get("file"), start_at=self.start_at,
                              max_bytes=self.max_bytes, max_line_bytes=self.max_line,
                              count_lines=self.count_lines)
            yield from self._tail.chunks()
            self._state["file"] = self._tail.cursor
        elif self.backend_used == "journal":
            yield from self._journal_chunks()
        self._state["backend"] = self.backend_used

    def _journal_chunks(self) -> Iterator[bytes]:
        cursor = self._prev.get("journal")
        start_at = "start" if self._prev.get("journal_started") else self.start_at
        try:
            got = read_journal(self.ctx.run, cursor, matches=self.matches, start_at=start_at,
                               max_entries=max(1000, self.max_bytes // JOURNAL_LINE_GUESS),
                               directory=self.directory, timeout_s=JOURNAL_TIMEOUT_S)
        except JournalError as err:
            self.available = False
            self.note = f"reading the journal failed: {err}"
            return
        self._state["journal"] = got.cursor
        self._state["journal_started"] = True
        if cursor is None:
            self._journal_stats["events"].append(f"first_run_{start_at}")
        lines, cut = cut_long_lines(got.lines, self.max_line)
        self.severities = dict(got.severities)
        self._journal_stats.update(lines=lines.count(b"\n"), bytes=len(lines), long_lines=cut,
                                   malformed=got.malformed)
        if lines:
            yield lines

    def new_state(self) -> dict[str, Any]:
        """The state to return as CollectResult.state (merge with the collector's own keys)."""
        return {STATE_KEY: dict(self._state)}

    def info(self) -> dict[str, Any]:
        """Which backend ran and how much it read, for the observations."""
        stats = self._tail.stats if self._tail is not None else self._journal_stats
        out = {"backend": self.backend_used, "path": str(self.path),
               "lines_read": stats["lines"], "bytes_read": stats["bytes"],
               "long_lines": stats["long_lines"], "events": list(stats["events"])[:20]}
        if self.backend_used == "journal":
            out["journal_malformed"] = self._journal_stats["malformed"]
            out["journal_directory"] = str(self.directory) if self.directory else None
        return out


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino
