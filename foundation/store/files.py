"""The store's files on disk: private modes, no symbolic links, a marker that a store existed, a lock.

foundation/store/connect.py opens the database; this module decides whether the files it is about to open
are safe and plausible. The folder is created 0700 and every file 0600, because the store holds auth
log lines and user names. A symlinked ``monitor.db``, ``-wal`` or ``-shm`` is refused rather than
followed. A marker file remembers that a store existed, so a ``monitor.db`` that vanished or shrank
to 0 bytes is reported as damaged instead of being silently replaced by an empty store.
"""
from __future__ import annotations

import fcntl
import functools
import json
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

SQLITE_MAGIC = b"SQLite format 3\x00"
SIDE_SUFFIXES = ("-wal", "-shm")
MARKER_SUFFIX = ".marker"
LOCK_SUFFIX = ".lock"
FILE_MODE = 0o600
DIR_MODE = 0o700
PRIVATE_UMASK = 0o077
CLI = "python monitor_agent.py"
CORRUPT_CODES = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
R = TypeVar("R")
FIX_DAMAGED = (f"stop the agent, then run `{CLI} store restore` (the latest verified backup) or "
               f"`{CLI} store salvage` (what is still readable); both keep the damaged file aside. "
               f"`{CLI} store reset` starts an empty store instead")


class StoreError(Exception):
    """The store cannot be opened, migrated or written (disk full, corrupt file, locked)."""


class StoreDamaged(StoreError):
    """The store's file is damaged, empty or missing where a store was; says how to recover."""

    def __init__(self, path: Path, what: str) -> None:
        super().__init__(f"the store {path} is damaged: {what}. Fix: {FIX_DAMAGED}")
        self.path = path
        self.what = what


def is_corruption(err: BaseException) -> bool:
    """True when SQLite says the file itself is damaged (not busy, full or unreadable)."""
    return getattr(err, "sqlite_errorname", "") in CORRUPT_CODES


def open_error(db: Path, err: BaseException) -> StoreError:
    """The StoreError (StoreDamaged for a corrupt file) for an error met while opening ``db``."""
    if is_corruption(err):
        return StoreDamaged(db, str(err))
    return StoreError(f"cannot open the store {db}: {err}")


def quick_check(conn: sqlite3.Connection) -> list[str]:
    """PRAGMA quick_check's problems on a connection; [] when the file is sound."""
    try:
        rows = [r[0] for r in conn.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as err:  # a damaged b-tree header can stop the check itself
        return [str(err)]
    return [] if rows == ["ok"] else rows


def reading(method: Callable[..., R]) -> Callable[..., R]:
    """A store read that meets damage raises StoreDamaged (else StoreError), never sqlite3's own."""
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as err:
            if is_corruption(err):
                raise StoreDamaged(self.path, f"reading it failed ({err})") from err
            raise StoreError(f"reading the store {self.path} failed: {err}") from err
    return wrapper


def prepare(db: Path) -> StoreLock:
    """Make the folder, refuse links, take the shared lock and refuse a store that vanished."""
    try:
        make_private_dir(db.parent)
        files = side_files(db)
        refuse_links([*files, marker_path(db)])
        lock = StoreLock(db, exclusive=False)
    except OSError as err:
        raise StoreError(f"cannot open the store {db}: {err.strerror or err}") from err
    try:
        damage = damage_before_open(db)
        if damage:
            raise StoreDamaged(db, damage)
        create_private(db)  # 0600, and never through a link that SQLite would follow
        tighten_modes(files)
    except BaseException as err:
        lock.release()
        if isinstance(err, OSError):
            raise StoreError(f"cannot open the store {db}: {err.strerror or err}") from err
        raise
    return lock


def after_open(db: Path) -> None:
    """Refuse a link swapped in while SQLite opened the files; remember that a store exists."""
    refuse_links(side_files(db))
    write_marker(db)


def side_files(db: Path) -> list[Path]:
    """``monitor.db`` and the files SQLite keeps beside it (-wal, -shm)."""
    return [db] + [db.with_name(db.name + s) for s in SIDE_SUFFIXES]


def marker_path(db: Path) -> Path:
    """The sidecar that records that a store exists at ``db``."""
    return db.with_name(db.name + MARKER_SUFFIX)


def store_present(db: Path) -> bool:
    """True when a store is (or, by its marker, was) at ``db``: its absence is then damage."""
    return db.exists() or marker_path(db).exists()


@contextmanager
def private_umask() -> Iterator[None]:
    """Files and folders created inside are private to the agent's user."""
    old = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def make_private_dir(folder: Path) -> None:
    """Create ``folder`` (and missing parents) 0700; an existing folder's mode is left alone."""
    if folder.is_dir():
        return
    with private_umask():
        folder.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(folder, DIR_MODE)


def refuse_links(paths: list[Path]) -> None:
    """Refuse a path that is a symbolic link or not a regular file, naming it and the fix."""
    for path in paths:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as err:
            raise StoreError(f"cannot open the store: {path}: {err.strerror}") from err
        if stat.S_ISLNK(info.st_mode):
            raise StoreError(f"the store cannot be opened: {path} is a symbolic link, which the "
                             f"agent never follows. Fix: replace it with the real file "
                             f"(mv \"$(readlink -f {path})\" {path}) or set DATA_DIR to the "
                             f"folder that holds it")
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"the store cannot be opened: {path} is not a regular file. Fix: "
                             f"move it away or set DATA_DIR to another folder")


def tighten_modes(paths: list[Path]) -> None:
    """chmod 0600 each existing file that others could read (older versions made them 0644)."""
    for path in paths:
        try:
            fd = open_private(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        except OSError as err:
            raise StoreError(f"cannot open the store: {path}: {err.strerror}") from err
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
                os.fchmod(fd, FILE_MODE)
        except OSError as err:
            raise StoreError(f"the store cannot be opened: {path} is readable by others and "
                             f"cannot be made private ({err.strerror}). Fix: chmod 600 {path} "
                             f"as its owner") from err
        finally:
            os.close(fd)


def open_private(path: Path, flags: int) -> int:
    """os.open with ``flags``, never through a link; a file it creates is 0600 (whatever umask)."""
    with private_umask():
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)


def create_private(path: Path) -> bool:
    """Create an empty 0600 file without following links; False when it already exists."""
    try:
        fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def damage_before_open(db: Path) -> str | None:
    """Why ``db`` must not be opened as it is (missing, empty or not SQLite where a store was)."""
    had_store = marker_path(db).exists()
    try:
        size = os.lstat(db).st_size
    except FileNotFoundError:
        return ("monitor.db is missing, but a store existed here (its marker "
                f"{marker_path(db).name} says so)") if had_store else None
    if size == 0:
        return ("monitor.db is 0 bytes, but a store existed here (its marker "
                f"{marker_path(db).name} says so)") if had_store else None
    with open(db, "rb") as handle:
        head = handle.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        return f"monitor.db ({size} bytes) is not a SQLite database"
    return None


def header_user_version(db: Path) -> int:
    """The schema version in a SQLite file's header (bytes 60-63), readable even when damaged."""
    with open(db, "rb") as handle:
        head = handle.read(64)
    return int.from_bytes(head[60:64], "big") if len(head) == 64 else 0


def write_marker(db: Path) -> None:
    """Record that a store exists at ``db`` (once; the first time it is opened sound)."""
    marker = marker_path(db)
    if marker.exists():
        return
    text = json.dumps({"store": db.name, "created_at": time.time(),
                       "meaning": "a store exists here: if monitor.db goes missing or empty, the "
                                  "agent refuses to start over; see `store restore`"})
    fd = open_private(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")


def forget_marker(db: Path) -> None:
    """Remove the marker (an explicit `store reset`: the next start makes a new store)."""
    marker_path(db).unlink(missing_ok=True)


class StoreLock:
    """An flock beside the store: shared while the agent or a reader uses it, exclusive to repair."""

    def __init__(self, db: Path, exclusive: bool) -> None:
        path = db.with_name(db.name + LOCK_SUFFIX)
        refuse_links([path])
        self._fd = open_private(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(self._fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            if exclusive:
                raise StoreError(f"the store {db} is in use (the agent, the dashboard, `status`, "
                                 "`check` or `watch` has it open). Fix: stop the agent first (systemctl "
                                 "stop monitor-agent monitor-agent-web) and run this again"
                                 ) from None
            raise StoreError(f"the store {db} is being restored, salvaged or reset: wait for that "
                             "command to finish") from None

    def release(self) -> None:
        """Give the lock up (closing the file drops it)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fsync_path(folder, os.O_DIRECTORY)


def fsync_path(path: Path, flags: int = 0) -> None:
    """fsync a file (or, with O_DIRECTORY, a folder) by name."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
