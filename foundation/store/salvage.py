"""Copy every row that still reads from a damaged store into a new one, skipping damaged pages.

SQLite's own answer is the sqlite3 shell's ``.recover``, but it needs the ``sqlite_dbpage``
virtual table, which Debian 12's libsqlite3 is built without (``.recover`` fails there with "no
such table: sqlite_dbpage"). So the salvage reads through SQL: each table in rowid order, one row
at a time; when a read meets a damaged page it seeks past it (``rowid >= p`` descends to the next
sound leaf) and goes on. Indexes are rebuilt by the new store, so damaged index pages cost nothing.
The table and column names put into the SQL below come from the store's own schema (sqlite_master
of a file that passed the trust check), never from collected text: hence the S608 exemptions.
"""
from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from foundation.store.files import StoreError
from foundation.store.schema import apply_migration

log = logging.getLogger(__name__)

MAX_ROWID = 2 ** 62
PROBES = 200   # seeks tried to get past one damaged spot, whatever the rowids


@dataclass
class Salvaged:
    """Rows read back per table, and the damaged spots skipped per table."""

    rows: dict[str, int] = field(default_factory=dict)
    damaged: dict[str, int] = field(default_factory=dict)


def _new_store(target: Path, version: int) -> sqlite3.Connection:
    """An empty store at schema ``version`` (the damaged one's, so its rows fit)."""
    conn = sqlite3.connect(str(target), isolation_level=None)
    for number in range(version):
        apply_migration(conn, number)
    conn.execute(f"PRAGMA user_version={version}")
    return conn


def _tables(conn: sqlite3.Connection) -> dict[str, bool]:
    """Each table of the new store's schema, and whether it has rowids."""
    out = {}
    for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type='table'"):
        out[name] = "WITHOUT ROWID" not in sql.upper()
    return out


def _seek(src: sqlite3.Connection, table: str, rowid: int) -> tuple[bool, int | None]:
    """(readable, the first rowid >= ``rowid``) by one seek down the table's b-tree."""
    try:
        row = src.execute(f'SELECT rowid FROM "{table}" WHERE rowid >= ? ORDER BY rowid '  # noqa: S608
                          "LIMIT 1", (rowid,)).fetchone()
    except sqlite3.DatabaseError:
        return False, None
    return True, None if row is None else row[0]


def _next_readable(src: sqlite3.Connection, table: str, last: int) -> int | None:
    """The first rowid after ``last`` that a seek reaches past the damage (None: none left).

    Probes ahead in doubling steps until a seek succeeds, then bisects back to the first
    probe that succeeds, so the rows of the next sound page are not jumped over.
    """
    bad, step, tried = last, 1, 0
    while tried < PROBES and last + step < MAX_ROWID:
        tried += 1
        ok, found = _seek(src, table, last + step)
        if ok:
            good, answer = last + step, found
            while good - bad > 1 and tried < PROBES:
                tried += 1
                mid = (good + bad) // 2
                ok, found = _seek(src, table, mid)
                if ok:
                    good, answer = mid, found
                else:
                    bad = mid
            return answer
        bad = last + step
        step *= 2
    return None


def _copy_rowid_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str,
                      columns: list[str], result: Salvaged) -> None:
    names = ", ".join(f'"{c}"' for c in columns)
    insert = (f'INSERT OR IGNORE INTO "{table}" (rowid, {names}) '  # noqa: S608
              f'VALUES ({", ".join("?" * (len(columns) + 1))})')
    select = f'SELECT rowid, {names} FROM "{table}" WHERE rowid >= ? ORDER BY rowid'  # noqa: S608
    start, copied = 0, 0   # the store's rowids start at 1
    while True:
        last = start - 1
        try:
            for row in src.execute(select, (start,)):
                dst.execute(insert, row)
                copied += 1
                last = row[0]
            break
        except sqlite3.DatabaseError as err:
            result.damaged[table] = result.damaged.get(table, 0) + 1
            log.info("salvage: %s unreadable after rowid %d (%s)", table, last, err)
            following = _next_readable(src, table, max(last, start))
            if following is None:
                break
            start = following
    result.rows[table] = copied


def _copy_plain_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str,
                      columns: list[str], result: Salvaged) -> None:
    names = ", ".join(f'"{c}"' for c in columns)
    insert = (f'INSERT OR IGNORE INTO "{table}" ({names}) '  # noqa: S608
              f'VALUES ({", ".join("?" * len(columns))})')
    copied = 0
    try:  # no rowid to seek by: what reads before the first damaged page is kept
        for row in src.execute(f'SELECT {names} FROM "{table}"'):  # noqa: S608
            dst.execute(insert, row)
            copied += 1
    except sqlite3.DatabaseError as err:
        result.damaged[table] = 1
        log.info("salvage: %s unreadable after %d rows (%s)", table, copied, err)
    result.rows[table] = copied


def copy_readable_rows(damaged: Path, target: Path, version: int) -> Salvaged:
    """Build ``target`` at schema ``version`` from every row of ``damaged`` that still reads."""
    src = sqlite3.connect(str(damaged), isolation_level=None)
    dst = _new_store(target, version)
    result = Salvaged()
    try:
        try:
            present = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE "
                                                 "type='table'")}
        except sqlite3.DatabaseError as err:
            raise StoreError(f"the store's schema page is unreadable ({err}): nothing can be "
                             "salvaged; restore a backup instead") from err
        dst.execute("BEGIN")
        for table, has_rowid in _tables(dst).items():
            if table not in present:
                result.damaged[table] = 1
                result.rows[table] = 0
                continue
            columns = [r[1] for r in dst.execute(f'PRAGMA table_info("{table}")')]
            copy = _copy_rowid_table if has_rowid else _copy_plain_table
            copy(src, dst, table, columns, result)
        dst.execute("COMMIT")
    finally:
        src.close()
        dst.close()
    return result
