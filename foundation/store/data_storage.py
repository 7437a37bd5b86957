"""The SQLite store: samples, baselines, collector state (log cursors), findings, the outbox, recaps.

The only module that touches the database. A cycle's writes go through one ``CycleWrite`` and
commit in one transaction, so a crash replays a whole cycle and never half of one.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundation.baseline import WINDOW_HOURLY, WINDOW_OVERALL, Baseline
from foundation.model import Sample
from foundation.store import files
from foundation.store.connect import connect, immediate
from foundation.store.connections import ConnectionHistory, record_traffic
from foundation.store.connections import record as record_connections
from foundation.store.dashboard_reads import DashboardReads
from foundation.store.files import StoreDamaged, StoreError, quick_check
from foundation.store.files import reading as _reading
from foundation.store.finding_reads import FindingReads, FindingRow
from foundation.store.operator_state import DependencyRow, OperatorState, SilenceRow, UnknownTarget
from foundation.store.schema import MIGRATIONS

__all__ = ["ALL_HOURS", "MIGRATIONS", "CycleWrite", "DependencyRow", "FindingRow", "OutboxMessage",
           "SilenceRow", "Store", "StoreDamaged", "StoreError", "UnknownTarget"]

log = logging.getLogger(__name__)

ADD_BATCH = 5000   # samples written per executemany when a history is bulk-loaded

ALL_HOURS = -1  # the baseline row that covers every hour of the day


@dataclass(frozen=True)
class OutboxMessage:
    """One queued alert for one channel."""

    id: int
    created_at: float
    channel: str
    purpose: str
    fingerprint: str | None
    severity: str
    payload: Mapping[str, Any]
    attempts: int
    status: str
    possible_repeat: bool = False   # an earlier attempt started and its outcome is unknown


class Store(OperatorState, ConnectionHistory, FindingReads, DashboardReads):
    """One SQLite database in WAL mode; open with ``Store.open``.

    Silences (ack, snooze, maintenance) and the dependencies' states are read and written through
    the methods of ``foundation.store.operator_state.OperatorState``; findings one at a time, filtered
    and over time (the dashboard) through ``foundation.store.finding_reads.FindingReads``; the
    dashboard's bucketed samples, connection history and outbox list through
    ``foundation.store.dashboard_reads.DashboardReads``.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path,
                 lock: files.StoreLock | None = None) -> None:
        self._conn = conn
        self.path = path
        self._lock = lock
        self._series: dict[str, int] = {}
        # the baselines as last written (the agent is the store's only writer): a sample folds
        # into them without reading them back each cycle
        self._baselines: dict[tuple[int, int], Baseline] = {}
        self._states: dict[str, str] = {}   # collector states this store wrote, as JSON

    @classmethod
    def open(cls, path: Path, timeout_s: float = 10.0, check: bool = True) -> Store:
        """Open (creating and migrating as needed) the database at ``path``; refuse a damaged one.

        The folder is made 0700 and the files 0600; symbolic links are refused, a file that is
        empty, missing or not SQLite where a store was is StoreDamaged, and so is one that fails
        ``PRAGMA quick_check`` (skipped with ``check=False``).
        """
        conn, lock = connect(path, timeout_s, check)
        return cls(conn, path, lock)

    def close(self) -> None:
        """Checkpoint the WAL and close."""
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as err:
            log.warning("WAL checkpoint at close failed: %s", err)
        self._conn.close()
        if self._lock is not None:
            self._lock.release()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return immediate(self._conn)

    @contextmanager
    def transaction(self) -> Iterator[CycleWrite]:
        """All writes of one cycle; committed together or not at all."""
        try:
            with self._tx():
                yield CycleWrite(self)
        except sqlite3.Error as err:
            self._forget_written()
            raise StoreError(f"writing the store failed: {err}") from err
        except BaseException:
            self._forget_written()
            raise

    def _forget_written(self) -> None:
        """Drop what a rolled-back transaction wrote from the caches: its series ids, its
        baselines, its collector states."""
        self._series.clear()
        self._baselines.clear()
        self._states.clear()

    @contextmanager
    def snapshot(self) -> Iterator[Store]:
        """Reads that all see one committed state: a read transaction, which in WAL mode neither
        blocks the agent's writes nor waits for them (agent/watch.py refreshes through it)."""
        try:
            self._conn.execute("BEGIN DEFERRED")
        except sqlite3.Error as err:
            raise StoreError(f"reading the store {self.path} failed: {err}") from err
        try:
            yield self
        finally:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")  # nothing was written: only the snapshot ends

    # -- reads ------------------------------------------------------------------------------------

    def integrity_check(self) -> str:
        """SQLite's PRAGMA integrity_check answer ("ok" when sound)."""
        return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])

    def quick_check(self) -> list[str]:
        """PRAGMA quick_check's problems ([] when sound): O(pages), no index cross-check."""
        return quick_check(self._conn)

    def backup_to(self, target: Path) -> None:
        """Copy the live store into ``target`` with SQLite's online backup API, as one file."""
        dest = sqlite3.connect(str(target), isolation_level=None)
        try:
            self._conn.backup(dest)
            dest.execute("PRAGMA journal_mode=DELETE")  # a backup is one self-contained file
        finally:
            dest.close()

    @_reading
    def collector_state(self, name: str) -> dict[str, Any]:
        """The persistent state a collector (or detector) returned last time, {} at first."""
        text = self._states.get(name)   # what this store wrote: no read back
        if text is None:
            row = self._conn.execute("SELECT state FROM collector_state WHERE name = ?",
                                     (name,)).fetchone()
            text = row[0] if row else None
        return json.loads(text) if text is not None else {}

    @_reading
    def baseline(self, series: str, hour: int = ALL_HOURS) -> Baseline | None:
        """The baseline of a series (for one hour of the day, or all hours), None if never seen."""
        row = self._conn.execute(
            "SELECT b.n, b.centre, b.spread, b.minimum, b.maximum, b.last FROM baselines b "
            "JOIN series s ON s.id = b.series_id WHERE s.name = ? AND b.hour = ?",
            (series, hour)).fetchone()
        return Baseline(*row) if row else None

    @_reading
    def samples_since(self, series: str, since: float) -> list[tuple[float, float]]:
        """(ts, value) of one series since a time, oldest first (for recaps and charts)."""
        return self._conn.execute(
            "SELECT ts, value FROM samples WHERE series_id = (SELECT id FROM series WHERE name=?)"
            " AND ts >= ? ORDER BY ts", (series, since)).fetchall()

    @_reading
    def series_names(self, prefix: str = "") -> list[str]:
        """Stored series names starting with ``prefix``."""
        return [r[0] for r in self._conn.execute(
            "SELECT name FROM series WHERE name >= ? AND name < ? ORDER BY name",
            (prefix, prefix + "\U0010ffff"))]

    @_reading
    def is_seen(self, namespace: str, key: str) -> bool:
        """True when ``key`` was remembered in ``namespace`` before."""
        return self._conn.execute("SELECT 1 FROM seen WHERE namespace = ? AND key = ?",
                                  (namespace, key)).fetchone() is not None

    @_reading
    def seen_keys(self, namespace: str) -> set[str]:
        """Every key remembered in a namespace (a known set: open ports, login sources)."""
        return {r[0] for r in self._conn.execute("SELECT key FROM seen WHERE namespace = ?",
                                                 (namespace,))}

    @_reading
    def findings(self, open_only: bool = True) -> dict[str, FindingRow]:
        """Stored findings by fingerprint (the open ones by default)."""
        cur = self._conn.execute("SELECT * FROM findings WHERE open = 1" if open_only
                                 else "SELECT * FROM findings")
        names = [d[0] for d in cur.description]
        rows = {}
        for raw in cur:
            rec = dict(zip(names, raw, strict=True))
            rec["open"] = bool(rec["open"])
            rec["details"] = json.loads(rec["details"])
            rec.pop("resolved_at")
            rows[rec["fingerprint"]] = FindingRow(**rec)
        return rows

    @_reading
    def finding_events_since(self, since: float) -> list[dict[str, Any]]:
        """Every finding occurrence since a time, oldest first (for the daily recap)."""
        cur = self._conn.execute("SELECT ts, fingerprint, source, kind, severity, summary "
                                 "FROM finding_events WHERE ts >= ? ORDER BY ts", (since,))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur]

    @_reading
    def due_messages(self, now: float, limit: int = 50) -> list[OutboxMessage]:
        """Queued outbox messages whose next attempt is due, oldest first."""
        cur = self._conn.execute(
            "SELECT id, created_at, channel, purpose, fingerprint, severity, payload, attempts, "
            "status, possible_repeat OR attempt_started_at IS NOT NULL FROM outbox "
            "WHERE status = 'queued' AND next_attempt_at <= ? ORDER BY id LIMIT ?", (now, limit))
        return [OutboxMessage(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], r[8],
                              bool(r[9])) for r in cur]

    @_reading
    def outbox_counts(self) -> dict[str, int]:
        """Number of outbox messages by status."""
        return dict(self._conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status"))

    @_reading
    def last_cycle(self, scheduled: bool = False) -> dict[str, Any] | None:
        """The report of the last committed cycle (``scheduled``: the last that ran every
        collector, not an event cycle of the log collectors alone)."""
        row = self._conn.execute(
            "SELECT report FROM cycles WHERE json_extract(report, '$.trigger') IS NOT 'event' "
            "ORDER BY id DESC LIMIT 1" if scheduled
            else "SELECT report FROM cycles ORDER BY id DESC LIMIT 1").fetchone()
        return json.loads(row[0]) if row else None

    @_reading
    def first_cycle_at(self) -> float | None:
        """When the oldest cycle the store holds started; None before the first cycle."""
        row = self._conn.execute("SELECT MIN(started_at) FROM cycles").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    @_reading
    def meta(self, key: str) -> str | None:
        """A bookkeeping value."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @_reading
    def recap_sent(self, day: str) -> bool:
        """True when the recap of a day (YYYY-MM-DD) has been queued."""
        return self._conn.execute("SELECT 1 FROM recaps WHERE day = ?",
                                  (day,)).fetchone() is not None

    # -- outbox updates (outside a cycle's transaction: one per delivery attempt) -----------------

    def mark_started(self, message_id: int, now: float) -> None:
        """Record, durably, that an attempt is about to start (an attempt left open is a repeat)."""
        with self._tx() as conn:
            conn.execute("UPDATE outbox SET possible_repeat = (possible_repeat OR "
                         "attempt_started_at IS NOT NULL), attempt_started_at=? WHERE id=?",
                         (now, message_id))

    def mark_sent(self, message_id: int, now: float) -> None:
        """Record that a message was delivered."""
        with self._tx() as conn:
            conn.execute("UPDATE outbox SET status='sent', sent_at=?, attempts=attempts+1, "
                         "last_error=NULL, attempt_started_at=NULL WHERE id=?", (now, message_id))

    def mark_retry(self, message_id: int, next_at: float, error: str, give_up: bool = False,
                   possible_repeat: bool = False) -> None:
        """Record a failed attempt and when to try again (or that it failed for good)."""
        with self._tx() as conn:
            conn.execute("UPDATE outbox SET status=?, attempts=attempts+1, next_attempt_at=?, "
                         "last_error=?, attempt_started_at=NULL, "
                         "possible_repeat = (possible_repeat OR ?) WHERE id=?",
                         ("failed" if give_up else "queued", next_at, error[:500],
                          int(possible_repeat), message_id))

    def trim(self, now: float, retention_days: int) -> int:
        """Delete samples, finding events and old cycles/outbox rows past retention; rows deleted."""
        cutoff = now - retention_days * 86400
        with self._tx() as conn:
            deleted = conn.execute("DELETE FROM samples WHERE ts < ?", (cutoff,)).rowcount
            deleted += conn.execute("DELETE FROM finding_events WHERE ts < ?", (cutoff,)).rowcount
            deleted += conn.execute("DELETE FROM cycles WHERE started_at < ?", (cutoff,)).rowcount
            deleted += conn.execute("DELETE FROM outbox WHERE status != 'queued' AND created_at < ?",
                                    (cutoff,)).rowcount
            deleted += conn.execute("DELETE FROM findings WHERE open = 0 AND last_seen < ?",
                                    (cutoff,)).rowcount
            deleted += conn.execute("DELETE FROM silences WHERE COALESCE(ended_at, until) < ?",
                                    (cutoff,)).rowcount
            deleted += conn.execute("DELETE FROM llm_connections WHERE last_seen < ?",
                                    (cutoff,)).rowcount
            deleted += conn.execute("DELETE FROM llm_traffic WHERE last_seen < ?",
                                    (cutoff,)).rowcount
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('last_trim', ?)", (str(now),))
        return deleted

    def _series_id(self, name: str, by_hour: bool) -> int:
        found = self._series.get(name)
        if found is not None:
            return found
        row = self._conn.execute("SELECT id FROM series WHERE name = ?", (name,)).fetchone()
        if row is None:
            row = self._conn.execute("INSERT INTO series (name, by_hour) VALUES (?, ?) RETURNING id",
                                     (name, int(by_hour))).fetchone()
        series_id = self._series[name] = int(row[0])
        return series_id


class CycleWrite:
    """The writes of one cycle, inside the store's open transaction."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conn = store._conn

    def add_samples(self, ts: float, samples: Iterable[Sample]) -> int:
        """Store samples and fold each into its baselines (all hours, and its hour when by_hour)."""
        return self._add((sample.series, sample.by_hour, ts, float(sample.value))
                         for sample in samples)

    def add_history(self, rows: Iterable[tuple[str, float, float]], by_hour: bool = False) -> int:
        """Bulk-load (series, ts, value) rows oldest first, folding them into baselines."""
        return self._add((series, by_hour, ts, float(value)) for series, ts, value in rows)

    def _add(self, rows: Iterable[tuple[str, bool, float, float]]) -> int:
        """Insert the samples and their baselines in batches (one executemany a table), in the
        order given, so each baseline is folded in sample order and written once a batch."""
        count = 0
        samples: list[tuple[int, float, float]] = []
        folded: dict[tuple[int, int], tuple[Baseline, float]] = {}
        for series, by_hour, ts, value in rows:
            sid = self._store._series_id(series, by_hour)
            samples.append((sid, ts, value))
            self._fold(folded, sid, ALL_HOURS, value, ts, WINDOW_OVERALL)
            if by_hour:
                self._fold(folded, sid, time.localtime(ts).tm_hour, value, ts, WINDOW_HOURLY)
            count += 1
            if len(samples) >= ADD_BATCH:
                self._write(samples, folded)
        self._write(samples, folded)
        return count

    def _fold(self, folded: dict[tuple[int, int], tuple[Baseline, float]], sid: int, hour: int,
              value: float, ts: float, window: int) -> None:
        key = (sid, hour)
        known = self._store._baselines.get(key)
        if known is None:
            row = self._conn.execute("SELECT n, centre, spread, minimum, maximum, last FROM "
                                     "baselines WHERE series_id = ? AND hour = ?",
                                     (sid, hour)).fetchone()
            known = Baseline(*row) if row else Baseline()
        new = self._store._baselines[key] = known.update(value, window)
        folded[key] = (new, ts)

    def _write(self, samples: list[tuple[int, float, float]],
               folded: dict[tuple[int, int], tuple[Baseline, float]]) -> None:
        if samples:
            self._conn.executemany("INSERT INTO samples (series_id, ts, value) VALUES (?, ?, ?)",
                                   samples)
        if folded:
            self._conn.executemany(
                "INSERT OR REPLACE INTO baselines VALUES (?,?,?,?,?,?,?,?,?)",
                [(sid, hour, b.n, b.centre, b.spread, b.minimum, b.maximum, b.last, ts)
                 for (sid, hour), (b, ts) in folded.items()])
        samples.clear()
        folded.clear()

    def set_collector_state(self, name: str, state: Mapping[str, Any], now: float) -> None:
        """Replace a collector's persistent state (its log cursors among others)."""
        text = json.dumps(state, sort_keys=True)
        if self._store._states.get(name) == text:
            return      # what this store wrote last (most states on a quiet cycle): no statement
        self._conn.execute("INSERT OR REPLACE INTO collector_state VALUES (?, ?, ?)",
                           (name, text, now))
        self._store._states[name] = text

    def record_llm_connections(self, runtimes: Iterable[Mapping[str, Any]], now: float) -> int:
        """Add a cycle's LLM runtime connections to their history (foundation/store/connections)."""
        return record_connections(self._conn, runtimes, now)

    def record_llm_traffic(self, clients: Iterable[Mapping[str, Any]], now: float) -> int:
        """Add a cycle's llm_traffic rows to their history (foundation/store/connections)."""
        return record_traffic(self._conn, clients, now)

    def remember(self, namespace: str, keys: Iterable[str], now: float) -> None:
        """Add keys to a known set (or refresh their last_seen)."""
        self._conn.executemany(
            "INSERT INTO seen VALUES (?, ?, ?, ?) ON CONFLICT (namespace, key) "
            "DO UPDATE SET last_seen = excluded.last_seen",
            [(namespace, k, now, now) for k in keys])

    def forget(self, namespace: str, keys: Iterable[str]) -> None:
        """Remove keys from a known set."""
        self._conn.executemany("DELETE FROM seen WHERE namespace = ? AND key = ?",
                               [(namespace, k) for k in keys])

    def upsert_finding(self, fingerprint: str, source: str, kind: str, key: str, severity: str,
                       floor: str, summary: str, now: float, details: Mapping[str, Any]) -> None:
        """Record that a finding is present this cycle (opening it if new or resolved)."""
        self._conn.execute(
            "INSERT INTO findings (fingerprint, source, kind, key, severity, floor, summary, "
            "first_seen, last_seen, open, details) VALUES (?,?,?,?,?,?,?,?,?,1,?) "
            "ON CONFLICT (fingerprint) DO UPDATE SET severity=excluded.severity, "
            "floor=excluded.floor, summary=excluded.summary, last_seen=excluded.last_seen, "
            "details=excluded.details, "
            "first_seen=CASE WHEN findings.open THEN findings.first_seen ELSE excluded.first_seen END,"
            " alerted_severity=CASE WHEN findings.open THEN findings.alerted_severity END, "
            "alerted_at=CASE WHEN findings.open THEN findings.alerted_at END, "
            "open=1, resolved_at=NULL",
            (fingerprint, source, kind, key, severity, floor, summary, now, now,
             json.dumps(details, sort_keys=True, default=str)))
        self._conn.execute("INSERT INTO finding_events (ts, fingerprint, source, kind, severity, "
                           "summary) VALUES (?,?,?,?,?,?)",
                           (now, fingerprint, source, kind, severity, summary))

    def mark_alerted(self, fingerprint: str, severity: str, now: float) -> None:
        """Record the severity and time of the last alert for a finding; an ack of it in force is
        spent (an acked finding is alerted only when it got worse than it was acknowledged at)."""
        self._conn.execute("UPDATE findings SET alerted_severity=?, alerted_at=? "
                           "WHERE fingerprint=?", (severity, now, fingerprint))
        self._conn.execute("UPDATE silences SET ended_at=?, ended_why='alerted' WHERE type='ack' "
                           "AND target=? AND ended_at IS NULL AND (until IS NULL OR until > ?)",
                           (now, fingerprint, now))

    def resolve_finding(self, fingerprint: str, now: float) -> None:
        """Close a finding that is no longer present; an ack of it without a duration ends."""
        self._conn.execute("UPDATE findings SET open=0, resolved_at=? WHERE fingerprint=?",
                           (now, fingerprint))
        self._conn.execute("UPDATE silences SET ended_at=?, ended_why='resolved' WHERE type='ack' "
                           "AND target=? AND ended_at IS NULL AND until IS NULL", (now, fingerprint))

    def enqueue(self, channel: str, purpose: str, severity: str, payload: Mapping[str, Any],
                now: float, fingerprint: str | None = None,
                dedupe_key: str | None = None) -> int | None:
        """Queue a message for a channel; a repeated ``dedupe_key`` is ignored (returns None)."""
        row = self._conn.execute(
            "INSERT INTO outbox (created_at, channel, purpose, fingerprint, severity, payload, "
            "next_attempt_at, dedupe_key) VALUES (?,?,?,?,?,?,?,?) "
            "ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
            (now, channel, purpose, fingerprint, severity,
             json.dumps(payload, sort_keys=True, default=str), now, dedupe_key)).fetchone()
        return row[0] if row else None

    def mark_recap(self, day: str, now: float, outbox_id: int | None) -> None:
        """Record that a day's recap was queued."""
        self._conn.execute("INSERT OR REPLACE INTO recaps VALUES (?, ?, ?)", (day, now, outbox_id))

    def save_cycle(self, started_at: float, duration_s: float, severity: str, by: str,
                   report: Mapping[str, Any]) -> None:
        """Keep a cycle's report (for `status` and the recap)."""
        self._conn.execute("INSERT INTO cycles (started_at, duration_s, severity, by, report) "
                           "VALUES (?,?,?,?,?)", (started_at, duration_s, severity, by,
                                                  json.dumps(report, default=str)))

    def set_meta(self, key: str, value: str) -> None:
        """Set a bookkeeping value."""
        self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
