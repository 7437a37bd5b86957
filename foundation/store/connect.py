"""Opening the store's database: the files' checks, the connection's pragmas, the health check, the
migrations.

foundation.store.data_storage.Store.open calls ``connect``; everything that can refuse a store at
start (a link, a vanished or empty file, a failed quick_check, a schema newer than the agent)
happens here, and a refusal closes the connection and releases the lock before it is raised.
"""
from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from foundation.store import files
from foundation.store.files import StoreDamaged, StoreError, quick_check
from foundation.store.schema import MIGRATIONS, apply_migration

log = logging.getLogger(__name__)


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (BEGIN IMMEDIATE), rolled back if the body raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def connect(path: Path, timeout_s: float, check: bool
            ) -> tuple[sqlite3.Connection, files.StoreLock]:
    """A checked, migrated connection to the store at ``path`` and the shared lock it holds."""
    lock = files.prepare(path)
    try:
        with files.private_umask():  # -wal and -shm are created by SQLite
            conn = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None,
                                   check_same_thread=False)
            _setup(conn, path, timeout_s, check)
        try:
            files.after_open(path)
        except BaseException:
            conn.close()
            raise
    except BaseException as err:
        lock.release()
        if isinstance(err, (sqlite3.Error, OSError)):
            raise files.open_error(path, err) from err
        raise
    return conn, lock


def _setup(conn: sqlite3.Connection, path: Path, timeout_s: float, check: bool) -> None:
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        problems = quick_check(conn) if check else []
        if problems:
            raise StoreDamaged(path, "quick_check found: " + "; ".join(problems[:3]))
        _migrate(conn, path)
    except BaseException:
        conn.close()
        raise


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise StoreError(f"{path} has schema version {version}, newer than this agent "
                         f"({len(MIGRATIONS)}): upgrade the agent")
    for number in range(version, len(MIGRATIONS)):
        with immediate(conn):
            apply_migration(conn, number)
            conn.execute(f"PRAGMA user_version={number + 1}")
        log.info("store %s migrated to schema version %d", path, number + 1)
