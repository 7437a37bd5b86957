"""What the dashboard's requests share: the settings, the sessions, the login limiter, the
password file as last read, and the store behind one lock.

The store is opened once (when it exists: the dashboard never creates one) and kept open: every
read runs in one read transaction (``Store.snapshot``), which in WAL mode neither waits for the
agent's writes nor holds them up, and the few writes (acks, snoozes, maintenance) go through the
store's own API. One lock serialises the requests' use of the connection.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from agent.web import password
from agent.web.bucket_cache import BucketCache
from agent.web.sessions import LoginLimiter, Session, Sessions
from foundation.settings import Settings
from foundation.store.data_storage import Store
from foundation.store.files import store_present

log = logging.getLogger(__name__)


class StoreAccess:
    """The agent's store as the dashboard uses it: opened on first need, one request at a time."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self._store: Store | None = None
        self._lock = threading.Lock()

    def _opened(self) -> Store | None:
        if self._store is None and store_present(self.db_path):
            # the agent checks the store at its start; a damaged page still fails its read
            self._store = Store.open(self.db_path, check=False)
        return self._store

    @contextmanager
    def reading(self) -> Iterator[Store | None]:
        """The store in one read transaction (None before the agent made one)."""
        with self._lock:
            store = self._opened()
            if store is None:
                yield None
                return
            with store.snapshot():
                yield store

    @contextmanager
    def writing(self) -> Iterator[Store | None]:
        """The store for a write through its own API (None before the agent made one)."""
        with self._lock:
            yield self._opened()

    def close(self) -> None:
        """Close the store (at the dashboard's stop)."""
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


class PasswordFile:
    """The password file, read again when web-password replaced it; a change ends every session."""

    def __init__(self, path: Path, sessions: Sessions) -> None:
        self.path = path
        self._sessions = sessions
        self._identity = password.file_identity(path)
        self._lock = threading.Lock()
        self._verifying = threading.Lock()

    def is_set(self) -> bool:
        """True when a usable password is set."""
        try:
            return password.load_record(self.path) is not None
        except password.PasswordError:
            return False

    def watch(self) -> None:
        """End every session when the file changed since it was last seen (a new password)."""
        identity = password.file_identity(self.path)
        with self._lock:
            if identity == self._identity:
                return
            self._identity = identity
        ended = self._sessions.end_all()
        log.info("dashboard: the password file changed; %d session(s) ended", ended)

    def check(self, given: str) -> bool:
        """True when ``given`` is the password; one check at a time (each costs 16 MiB)."""
        with self._verifying:
            try:
                record = password.load_record(self.path)
            except password.PasswordError as err:
                log.error("dashboard: %s", err)
                return False
            return record is not None and password.verify(given, record)


@dataclass
class WebState:
    """Everything a request of the dashboard may need."""

    settings: Settings
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sessions: Sessions = field(init=False)
    limiter: LoginLimiter = field(init=False)
    password: PasswordFile = field(init=False)
    store: StoreAccess = field(init=False)
    buckets: BucketCache = field(init=False)    # the metrics page's closed buckets

    def __post_init__(self) -> None:
        self.sessions = Sessions(clock=self.monotonic)
        self.limiter = LoginLimiter(clock=self.monotonic)
        self.password = PasswordFile(password.password_path(self.settings), self.sessions)
        self.store = StoreAccess(self.settings.db_path)
        self.buckets = BucketCache()

    def session(self, session_id: str | None) -> Session | None:
        """The live session of a cookie's id (after ending all of them if the password changed)."""
        self.password.watch()
        return self.sessions.get(session_id)
