"""Reads for the dashboard's metrics, LLM and alerts pages: samples averaged into time buckets, the
LLM runtimes' connection history bounded and summed up, and the newest outbox messages.

A mixin of foundation.store.data_storage.Store, which provides the connection. Every read is
bounded by its arguments, never by how much history the store holds: a month of 5-minute samples
comes back as at most ``(until - since) / width`` buckets per series, averaged in SQL through the
(series_id, ts) index, so a chart costs the same points whatever the cycle interval.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from foundation.store.connections import ConnectionRow
from foundation.store.files import reading as _reading

_HISTORY = ("SELECT runtime, remote, port, direction, class, organisation, rdns, first_seen, "
            "last_seen, cycles FROM llm_connections")


@dataclass(frozen=True, slots=True)
class Bucket:
    """The samples of one series in one time bucket: its start, how many, their mean, lowest,
    highest and sum."""

    start: float
    count: int
    mean: float
    low: float
    high: float
    total: float


@dataclass(frozen=True)
class Destination:
    """One peer address of the LLM runtimes over time, all its ports together."""

    remote: str
    address_class: str
    organisation: str
    rdns: str               # untrusted: shown only through the neutraliser
    ports: tuple[int, ...]  # the lowest few
    cycles: int             # the most cycles any one of its ports was seen in
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class OutboxRow:
    """One outbox message as the alerts page lists it (the payload's first item only)."""

    id: int
    created_at: float
    channel: str
    purpose: str
    severity: str
    status: str
    attempts: int
    last_error: str | None      # redacted when stored (alerts/outbox.py)
    possible_repeat: bool
    next_attempt_at: float
    sent_at: float | None
    items: int
    headline: str | None        # the first item's headline (untrusted facts inside)
    summary: str | None         # the first item's summary
    title: str | None           # a recap's title


class DashboardReads:
    """Bounded reads for the dashboard's pages; mixed into Store."""

    _conn: sqlite3.Connection
    path: Path

    @_reading
    def sample_buckets(self, series: str, since: float, until: float,
                       width: float) -> list[Bucket]:
        """The samples of ``series`` in [since, until) grouped into buckets of ``width`` seconds
        aligned on multiples of ``width`` (so a refresh moves no bucket), oldest first."""
        if width <= 0:
            raise ValueError("a bucket width must be positive")
        cur = self._conn.execute(
            "SELECT CAST(ts / ? AS INTEGER) AS b, COUNT(*), AVG(value), MIN(value), MAX(value), "
            "SUM(value) FROM samples WHERE series_id = (SELECT id FROM series WHERE name = ?) "
            "AND ts >= ? AND ts < ? GROUP BY b ORDER BY b", (width, series, since, until))
        return [Bucket(float(r[0]) * width, int(r[1]), float(r[2]), float(r[3]), float(r[4]),
                       float(r[5])) for r in cur]

    @_reading
    def sample_count(self, series: str, since: float, until: float) -> int:
        """How many samples ``series`` has in [since, until) (from the index alone: cheap)."""
        return int(self._conn.execute(
            "SELECT COUNT(*) FROM samples WHERE series_id = (SELECT id FROM series WHERE name = ?) "
            "AND ts >= ? AND ts < ?", (series, since, until)).fetchone()[0])

    @_reading
    def llm_connection_history(self, limit: int = 200) -> tuple[list[ConnectionRow], int]:
        """The most recently seen peers of every runtime, at most ``limit``; and how many the
        store holds in all."""
        total = self._conn.execute("SELECT COUNT(*) FROM llm_connections").fetchone()[0]
        cur = self._conn.execute(_HISTORY + " ORDER BY last_seen DESC, cycles DESC, remote "
                                 "LIMIT ?", (limit,))
        return [ConnectionRow(r[0], r[1], int(r[2]), r[3], r[4], r[5], r[6], float(r[7]),
                              float(r[8]), int(r[9])) for r in cur], int(total)

    @_reading
    def llm_destinations(self, limit: int = 10, ports: int = 5
                         ) -> tuple[list[Destination], dict[str, int]]:
        """The runtimes' outbound peers contacted in the most cycles (at most ``limit``), and how
        many distinct outbound peers the history holds by address class."""
        classes = {str(r[0]): int(r[1]) for r in self._conn.execute(
            "SELECT class, COUNT(DISTINCT remote) FROM llm_connections "
            "WHERE direction = 'outbound' GROUP BY class")}
        cur = self._conn.execute(
            "SELECT remote, MAX(class), MAX(organisation), MAX(rdns), GROUP_CONCAT(DISTINCT port), "
            "MAX(cycles), MIN(first_seen), MAX(last_seen) FROM llm_connections "
            "WHERE direction = 'outbound' GROUP BY remote "
            "ORDER BY MAX(cycles) DESC, MAX(last_seen) DESC, remote LIMIT ?", (limit,))
        found = []
        for r in cur:
            numbers = sorted({int(p) for p in str(r[4] or "").split(",") if p.isdigit()})
            found.append(Destination(r[0], r[1], r[2], r[3], tuple(numbers[:ports]), int(r[5]),
                                     float(r[6]), float(r[7])))
        return found, classes

    @_reading
    def outbox_recent(self, limit: int = 100) -> list[OutboxRow]:
        """The newest outbox messages first, at most ``limit``, with their first item's words
        (read inside SQLite: a recap's chart never leaves the database)."""
        cur = self._conn.execute(
            "SELECT id, created_at, channel, purpose, severity, status, attempts, last_error, "
            "possible_repeat OR attempt_started_at IS NOT NULL, next_attempt_at, sent_at, "
            "CASE WHEN json_valid(payload) THEN json_array_length(payload, '$.items') END, "
            # ->: the value as JSON text, so a NUL inside a string does not cut it short
            "CASE WHEN json_valid(payload) THEN payload -> '$.items[0].headline' END, "
            "CASE WHEN json_valid(payload) THEN payload -> '$.items[0].summary' END, "
            "CASE WHEN json_valid(payload) THEN payload -> '$.title' END "
            "FROM outbox ORDER BY id DESC LIMIT ?", (limit,))
        return [OutboxRow(int(r[0]), float(r[1]), r[2], r[3], r[4], r[5], int(r[6]), r[7],
                          bool(r[8]), float(r[9]), None if r[10] is None else float(r[10]),
                          int(r[11] or 0), _str(r[12]), _str(r[13]), _str(r[14]))
                for r in cur]


def _str(value: str | None) -> str | None:
    """A JSON value of the payload as text (None when absent or null)."""
    if value is None:
        return None
    found = json.loads(value)
    return None if found is None else found if isinstance(found, str) else json.dumps(found)
