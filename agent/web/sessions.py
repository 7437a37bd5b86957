"""The dashboard's sessions (server-side, with idle and absolute expiry) and its login limiter.

A session id is 256 random bits (``secrets.token_urlsafe``) that only the browser's cookie holds:
the server keeps its SHA-256, so the table itself opens nothing. Sessions live in the dashboard's
memory: a restart, or a new password, logs everyone out. Times are monotonic (a clock step neither
ends nor stretches a session). Logins are limited per client address: after MAX_FAILURES failures
within WINDOW_S the address is refused for LOCKOUT_S, and the lockout is logged with the address.
"""
from __future__ import annotations

import hashlib
import ipaddress
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from foundation.durations import duration_text
from foundation.untrusted import for_terminal

log = logging.getLogger(__name__)

IDLE_S = 30 * 60               # a session unused this long ends
ABSOLUTE_S = 12 * 3600         # and any session ends this long after its login
MAX_SESSIONS = 64              # one operator: more are old tabs and phones; the oldest goes first
MAX_FAILURES = 5               # failed logins from one address ...
WINDOW_S = 15 * 60             # ... within this ...
LOCKOUT_S = 15 * 60            # ... refuse it this long
MAX_CLIENTS = 4096             # addresses remembered by the limiter (the oldest forgotten first)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Session:
    """One logged-in browser: its CSRF token, when it started and was last used, a message to
    show on the next page."""

    csrf: str
    created: float
    seen: float
    client: str
    flash: list[str] = field(default_factory=list)


class Sessions:
    """The open sessions, by the SHA-256 of their ids."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, idle_s: float = IDLE_S,
                 absolute_s: float = ABSOLUTE_S, limit: int = MAX_SESSIONS) -> None:
        self._clock = clock
        self._idle_s = idle_s
        self._absolute_s = absolute_s
        self._limit = limit
        self._open: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, client: str) -> tuple[str, Session]:
        """A new session (a fresh id, never one the browser offered) and its id for the cookie."""
        now = self._clock()
        session_id = secrets.token_urlsafe(32)
        session = Session(csrf=secrets.token_urlsafe(32), created=now, seen=now, client=client)
        with self._lock:
            self._open[_digest(session_id)] = session
            while len(self._open) > self._limit:
                self._open.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of this id (its use noted), None when unknown or expired."""
        if not session_id:
            return None
        key = _digest(session_id)
        now = self._clock()
        with self._lock:
            session = self._open.get(key)
            if session is None:
                return None
            if now - session.seen > self._idle_s or now - session.created > self._absolute_s:
                del self._open[key]
                return None
            session.seen = now
            self._open.move_to_end(key)
            return session

    def end(self, session_id: str | None) -> bool:
        """End a session (logout); False when there was none."""
        if not session_id:
            return False
        with self._lock:
            return self._open.pop(_digest(session_id), None) is not None

    def end_all(self) -> int:
        """End every session (the password changed); how many there were."""
        with self._lock:
            count = len(self._open)
            self._open.clear()
        return count

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)


def client_key(address: str) -> str:
    """The unit a limit counts by: the address, or for IPv6 its /64 (one host's whole block)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:64]
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


@dataclass
class _Tries:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class LoginLimiter:
    """Failed logins per client address, and the lockouts they earn."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S,
                 lockout_s: float = LOCKOUT_S, max_clients: int = MAX_CLIENTS) -> None:
        self._clock = clock
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self._max_clients = max_clients
        self._clients: OrderedDict[str, _Tries] = OrderedDict()
        self._lock = threading.Lock()

    def locked_for(self, address: str) -> float:
        """Seconds this address must still wait before it may try again (0: it may)."""
        with self._lock:
            tries = self._clients.get(client_key(address))
            return 0.0 if tries is None else max(0.0, tries.locked_until - self._clock())

    def failed(self, address: str) -> bool:
        """Count a failed login; True when it locks the address out (logged, with the address)."""
        key = client_key(address)
        now = self._clock()
        with self._lock:
            tries = self._clients.pop(key, None) or _Tries()
            self._clients[key] = tries
            while len(self._clients) > self._max_clients:
                self._clients.popitem(last=False)
            tries.failures = [t for t in tries.failures if now - t < self.window_s] + [now]
            if len(tries.failures) < self.max_failures:
                log.info("dashboard: failed login from %s (%d of %d before a lockout)",
                         for_terminal(address), len(tries.failures), self.max_failures)
                return False
            tries.failures.clear()
            tries.locked_until = now + self.lockout_s
        log.warning("dashboard: %d failed logins from %s within %s: its logins are refused for %s",
                    self.max_failures, for_terminal(address), duration_text(self.window_s),
                    duration_text(self.lockout_s))
        return True

    def succeeded(self, address: str) -> None:
        """A good login forgets the address's failures."""
        with self._lock:
            self._clients.pop(client_key(address), None)
