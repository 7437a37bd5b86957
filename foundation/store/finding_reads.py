"""Reads of the findings for people who browse them (the dashboard): one finding, a filtered list,
the values to filter by, and one finding's timeline.

A mixin of foundation.store.data_storage.Store, which provides the connection. Every list is
bounded (``limit``), so a page costs the same with a year of history as with a day; the
timeline reads finding_events through its (fingerprint, ts) index (migration 5), a list the
findings through (open, last_seen) and the facets through (kind, source, severity) (migration 6).
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundation.store.files import reading as _reading

_COLUMNS = ("fingerprint, source, kind, key, severity, floor, summary, first_seen, last_seen, open, "
            "alerted_severity, alerted_at, details")


@dataclass(frozen=True)
class FindingRow:
    """A finding as stored: what was last seen and last alerted."""

    fingerprint: str
    source: str
    kind: str
    key: str
    severity: str
    floor: str
    summary: str
    first_seen: float
    last_seen: float
    open: bool
    alerted_severity: str | None
    alerted_at: float | None
    details: Mapping[str, Any]


@dataclass(frozen=True)
class FindingEvent:
    """One cycle in which a finding was present: when, at which severity, saying what."""

    ts: float
    severity: str
    summary: str


def _row(raw: Sequence[Any]) -> FindingRow:
    return FindingRow(raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], float(raw[7]),
                      float(raw[8]), bool(raw[9]), raw[10], raw[11], json.loads(raw[12]))


class FindingReads:
    """Findings one at a time, filtered, and over time; mixed into Store."""

    _conn: sqlite3.Connection
    path: Path

    @_reading
    def finding(self, fingerprint: str) -> FindingRow | None:
        """The stored finding with this fingerprint (open or past), None when there is none."""
        raw = self._conn.execute(f"SELECT {_COLUMNS} FROM findings WHERE fingerprint = ?",  # noqa: S608 - constant columns
                                 (fingerprint,)).fetchone()
        return None if raw is None else _row(raw)

    @_reading
    def findings_where(self, is_open: bool | None = None, kind: str | None = None,
                       severity: str | None = None, source: str | None = None,
                       limit: int = 200) -> tuple[list[FindingRow], int]:
        """Findings that match every filter given (None: any), the most recently seen first, at
        most ``limit`` of them; and how many match in all."""
        where, args = ["1"], []
        for column, value in (("open", None if is_open is None else int(is_open)),
                              ("kind", kind), ("severity", severity), ("source", source)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        condition = " AND ".join(where)   # column names from the tuple above, values bound
        total = self._conn.execute(f"SELECT COUNT(*) FROM findings WHERE {condition}",  # noqa: S608
                                   args).fetchone()[0]
        cur = self._conn.execute(f"SELECT {_COLUMNS} FROM findings WHERE {condition} "  # noqa: S608
                                 "ORDER BY last_seen DESC, fingerprint LIMIT ?", (*args, limit))
        return [_row(raw) for raw in cur], int(total)

    @_reading
    def finding_facets(self) -> dict[str, list[str]]:
        """The kinds, severities and sources the stored findings have, each sorted."""
        # one scan of the (kind, source, severity) index (migration 6), not three of the table
        rows = self._conn.execute("SELECT DISTINCT kind, source, severity FROM findings").fetchall()
        return {column: sorted({str(r[i]) for r in rows})
                for i, column in ((0, "kind"), (2, "severity"), (1, "source"))}

    @_reading
    def finding_timeline(self, fingerprint: str, limit: int = 2000) -> list[FindingEvent]:
        """The cycles in which a finding was present, newest first, at most ``limit``."""
        cur = self._conn.execute("SELECT ts, severity, summary FROM finding_events "
                                 "WHERE fingerprint = ? ORDER BY ts DESC LIMIT ?",
                                 (fingerprint, limit))
        return [FindingEvent(float(r[0]), r[1], r[2]) for r in cur]
