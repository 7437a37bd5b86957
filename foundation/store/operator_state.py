"""The store's rows of what the operator decided (silences) and of the services the agent needs.

A mixin of ``foundation.store.data_storage.Store`` (kept apart so that each module stays small):
the ``ack``, ``snooze`` and ``maintenance`` commands, ``status`` and the dashboard all go through
these methods. A silence is one row: an ack of a finding (by fingerprint, with the severity it had
when acknowledged), a snooze of a finding kind, or a maintenance window. Ended rows are kept (with
when and why) until retention trims them.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from foundation.store.connect import immediate
from foundation.store.files import StoreError
from foundation.store.files import reading as _reading

SILENCE_TYPES = ("ack", "snooze", "maintenance")
_SELECT = "SELECT id, type, target, severity, created_at, until, ended_at, ended_why FROM silences"


@dataclass(frozen=True)
class SilenceRow:
    """One ack, snooze or maintenance window."""

    id: int
    type: str                 # ack | snooze | maintenance
    target: str               # the fingerprint (ack), the finding kind (snooze), "" (maintenance)
    severity: str | None      # ack: the finding's severity when it was acknowledged
    created_at: float
    until: float | None       # None: an ack that lasts until its finding resolves
    ended_at: float | None    # set when it ended before ``until``
    ended_why: str | None     # resolved | alerted (it got worse) | replaced | off

    def in_force(self, now: float) -> bool:
        """True while it silences: not ended, and not past ``until``."""
        return self.ended_at is None and (self.until is None or now < self.until)


@dataclass(frozen=True)
class DependencyRow:
    """The last known state of a service the agent depends on."""

    name: str                 # ollama | discord | home_assistant | docker
    up: bool
    since: float              # in this state since
    error: str | None         # why it is down (secrets redacted by the caller)
    checked_at: float         # when this state was last confirmed


class UnknownTarget(LookupError):
    """An ack of a fingerprint that is not an open finding."""


class OperatorState:
    """Silences and dependency states; mixed into Store, which provides the connection."""

    _conn: sqlite3.Connection
    path: Path

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        try:
            with immediate(self._conn) as conn:
                yield conn
        except sqlite3.Error as err:
            raise StoreError(f"writing the store {self.path} failed: {err}") from err

    # -- silences ---------------------------------------------------------------------------------

    @_reading
    def silences(self, now: float, include_ended: bool = False) -> list[SilenceRow]:
        """The silences in force at ``now`` (with ``include_ended``: every row kept), oldest first."""
        if include_ended:
            cur = self._conn.execute(_SELECT + " ORDER BY id")
        else:
            cur = self._conn.execute(_SELECT + " WHERE ended_at IS NULL "
                                     "AND (until IS NULL OR until > ?) ORDER BY id", (now,))
        return [SilenceRow(*row) for row in cur]

    def add_silence(self, what: str, target: str, now: float, until: float | None,
                    severity: str | None = None) -> SilenceRow:
        """Start a silence; one already in force on the same target is ended as ``replaced``."""
        if what not in SILENCE_TYPES:
            raise ValueError(f"{what!r} is not one of {', '.join(SILENCE_TYPES)}")
        with self._write() as conn:
            return self._insert(conn, what, target, now, until, severity)

    def acknowledge(self, fingerprint: str, now: float, until: float | None) -> SilenceRow:
        """Ack an open finding at its current severity; UnknownTarget when it is not open."""
        with self._write() as conn:
            row = conn.execute("SELECT severity FROM findings WHERE fingerprint = ? AND open = 1",
                               (fingerprint,)).fetchone()
            if row is None:
                raise UnknownTarget(fingerprint)
            return self._insert(conn, "ack", fingerprint, now, until, str(row[0]))

    @staticmethod
    def _insert(conn: sqlite3.Connection, what: str, target: str, now: float,
                until: float | None, severity: str | None) -> SilenceRow:
        conn.execute("UPDATE silences SET ended_at = ?, ended_why = 'replaced' WHERE type = ? "
                     "AND target = ? AND ended_at IS NULL", (now, what, target))
        row = conn.execute(
            "INSERT INTO silences (type, target, severity, created_at, until) VALUES (?,?,?,?,?) "
            "RETURNING id, type, target, severity, created_at, until, ended_at, ended_why",
            (what, target, severity, now, until)).fetchone()
        return SilenceRow(*row)

    def end_silences(self, what: str, now: float, target: str | None = None,
                     why: str = "off") -> int:
        """End the silences of a type in force (on one target, or all); how many ended."""
        query = ("UPDATE silences SET ended_at = ?, ended_why = ? WHERE type = ? "
                 "AND ended_at IS NULL AND (until IS NULL OR until > ?)")
        args: tuple[object, ...] = (now, why, what, now)
        if target is not None:
            query, args = query + " AND target = ?", (*args, target)
        with self._write() as conn:
            return conn.execute(query, args).rowcount

    # -- dependencies -----------------------------------------------------------------------------

    @_reading
    def dependencies(self) -> dict[str, DependencyRow]:
        """The last known state of each dependency seen so far, by name."""
        cur = self._conn.execute("SELECT name, up, since, error, checked_at FROM dependencies "
                                 "ORDER BY name")
        return {r[0]: DependencyRow(r[0], bool(r[1]), r[2], r[3], r[4]) for r in cur}

    def record_dependencies(self, rows: Iterable[DependencyRow]) -> None:
        """Replace the state of each dependency given."""
        with self._write() as conn:
            conn.executemany("INSERT OR REPLACE INTO dependencies VALUES (?, ?, ?, ?, ?)",
                             [(r.name, int(r.up), r.since, r.error, r.checked_at) for r in rows])
