"""Authentication events extracted from whole chunks of auth log lines (bytes), not line by line.

The patterns are collectors.auth.regexes'. With the C scanner built (collectors/auth/_authscan.c, the
mixin collectors.auth.native) a chunk is searched once and only lines of unusual shape reach the
regexes; without it each regex scans the chunk (it skips to its literal). Only the lines of events
are stamped, in bulk (collectors.auth.times). Where the time goes and what was tried:
docs/auth-log.md, "Speed".

Counting rules (issue 3, fail2ban's default ``normal`` mode):
- ``failed_logins``: password and keyboard-interactive attempts, ``message repeated N times:
  [ Failed password ...]`` counting N. Failed public-key offers and the ``none`` probe are
  counted apart (``publickey_failures``, ``none_probes``), other methods in ``other_failures``.
- ``failures`` (the brute-force window's events): what fail2ban's sshd filter counts in normal
  mode: failed attempts except public keys of valid users, invalid users, PAM authentication
  failures for a user from a host, root login refused, maximum authentication attempts,
  users not allowed, refused connects, and the multi-line cases linked by sshd's pid.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any, NamedTuple

from collectors.auth.admin import AdminEvents
from collectors.auth.anchor import KEYS, after_for, change_of_username, invalid_user
from collectors.auth.compiled import authscan as _authscan
from collectors.auth.counts import MAX_LINE_KEPT, AuthCounts, safe_text
from collectors.auth.native import NativeFeed
from collectors.auth.probes import ProbeEvents
from collectors.auth.regexes import (
    ACCEPTED_REST,
    ADDRESS_IN_LINE,
    FAILED,
    INVALID,
    LOGIN_METHODS,
    OLD_PAM,
    PROBE_KEYWORDS,
    RARE_MESSAGES,
    REPEATED_INNER,
    RESOLVES,
    SSHD,
    at_message,
    at_program,
)
from collectors.auth.times import LineClock, stamped_only
from collectors.logreader.chunks import count_lines, malformed_lines

MAX_NAMES = 1000         # invalid user names counted per cycle
MAX_REPEAT_EVENTS = 10_000  # window events from one "message repeated N times" line
MAX_PENDING = 256        # sshd pids waiting for their address (multi-line failures)
PENDING_TTL_S = 600.0

class Login(NamedTuple):
    """An accepted login, raw: user, address and method as logged; its time (None: unreadable)."""

    user: bytes
    host: bytes
    method: bytes
    ts: float | None
    start: int            # its line's offset in AuthScanner.last_chunk


class AuthScanner(NativeFeed, ProbeEvents, AdminEvents):
    """Feeds chunks of whole lines; collects counts, events and (time, address) failure events."""

    def __init__(self, now: float, pending: dict[str, Any] | None = None,
                 native: bool = True) -> None:
        self.now = now
        self.native = native and _authscan is not None   # False: the regexes alone (tests)
        self.clock = LineClock(now, self.native)
        self.counts = AuthCounts()
        self.pending: dict[str, dict[str, Any]] = dict(pending or {})   # sshd pid -> {"ts"}
        self.fail_times: list[float] = []
        self.fail_hosts: list[bytes] = []       # addresses as logged (bytes, decoded at the end)
        self._starts: list[int] = []            # this chunk's failure lines (start offsets)
        self._hosts: list[bytes] = []
        self.probe_times: list[float] = []      # pre-authentication probes (ProbeEvents)
        self.probe_hosts: list[bytes] = []
        self._probe_starts: list[int] = []
        self._probe_hosts: list[bytes] = []
        self._evidence_full: set[bytes] = set()
        self._logins: list[tuple[bytes, bytes, bytes, int]] = []  # user, host, method, line start
        self.accepted: list[Login] = []   # the last chunk's accepted logins (see Login)
        self.last_chunk = b""             # that chunk, for the lines of the logins kept
        self._chunk = b""
        self._su_pam: dict[tuple[str, str], dict[str, Any]] = {}

    def _line_at(self, pos: int) -> tuple[int, int]:
        chunk = self._chunk
        start = chunk.rfind(b"\n", 0, pos) + 1
        end = chunk.find(b"\n", pos)
        return start, len(chunk) if end < 0 else end

    def stamp(self, start: int) -> float | None:
        """Epoch seconds of the line of the current chunk starting at ``start``."""
        return self.clock.stamp(self._chunk, start)

    def _failure(self, pos: int, host: bytes) -> None:
        """One failure event of the brute-force window; its time is read when the chunk ends."""
        self._starts.append(self._chunk.rfind(b"\n", 0, pos) + 1)
        self._hosts.append(host)

    def _flush(self) -> None:
        """Stamp this chunk's failure events and probes (in bulk, in one pass) and keep sample
        lines per address."""
        starts, hosts = self._starts, self._hosts
        self._starts, self._hosts = [], []
        probe_starts, probe_hosts = self._take_probes()
        if not starts and not probe_starts:
            return
        stamps = self.clock.stamps(self._chunk, starts + probe_starts)
        if probe_starts:
            self._flush_probes(probe_starts, probe_hosts, stamps[len(starts):])
        c = self.counts
        c.failures += len(starts)
        if not starts:
            return
        c.unstamped += stamped_only(stamps[:len(starts)], hosts, self.fail_times, self.fail_hosts)
        self._sample(hosts, starts, last=True)

    # --- the scan --------------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        """Scan one chunk of whole lines (each ending in a newline)."""
        self._chunk = chunk
        self._su_pam = {}
        if self.native:
            self._feed_native(chunk)
        else:
            self.counts.malformed += malformed_lines(chunk)
            self.counts.lines += count_lines(chunk)
            # no "in" test before a literal-led scan: when absent it costs more than the scan
            self._failed(at_message(FAILED.finditer(chunk), chunk), self._starts, self._hosts)
            users: list[bytes] = []
            self._invalid(at_message(INVALID.finditer(chunk), chunk), self._starts,
                          self._hosts, users)
            self._count_invalid(users)
            if b"sshd" in chunk:
                self._sshd(at_program(SSHD.finditer(chunk), chunk), {})
                if b"sshd(pam_unix)" in chunk:
                    self._old_pam(at_program(OLD_PAM.finditer(chunk), chunk))
                if self.pending:
                    self._resolve_pending(chunk)
            self._su(self.su_matches(chunk))
            self._admin(self.admin_matches(chunk))
        self._flush()
        self._flush_logins(chunk)
        self._chunk = b""

    def _flush_logins(self, chunk: bytes) -> None:
        """This chunk's accepted logins, stamped in bulk, for the caller to check and keep."""
        rows, self._logins = self._logins, []
        self.last_chunk = chunk
        if not rows:
            self.accepted = []
            return
        stamps = self.clock.stamps(chunk, [row[3] for row in rows]).tolist()
        self.accepted = [Login(user, host, method, None if ts != ts else ts, start)
                         for (user, host, method, start), ts in zip(rows, stamps, strict=True)]

    def login_line(self, login: Login) -> str:
        """The log line of an accepted login of the last chunk (bounded, printable)."""
        chunk = self.last_chunk
        end = chunk.find(b"\n", login.start)
        return safe_text(chunk[login.start:len(chunk) if end < 0 else end].rstrip(b"\r"),
                         MAX_LINE_KEPT)

    # --- each pattern's matches ----------------------------------------------------------------
    def _failed(self, matches: Iterable[re.Match[bytes]], starts: list[int],
                hosts: list[bytes]) -> None:
        c = self.counts
        rfind = self._chunk.rfind
        logins: list[bytes] = []
        for m in matches:
            method, invalid, rest = m.groups()
            parsed = after_for(rest, invalid is not None)
            host = None if parsed is None else KEYS[parsed[1]]
            if host is None:                  # sshd's line, but who it is about is unclear
                c.unattributed += 1
                self._by_method(method, 1)
                continue
            if method in LOGIN_METHODS:
                logins.append(host)
            elif method == b"publickey":
                c.publickey_failures += 1
                if not invalid:
                    continue                  # a key offer of a real user: not a failure
            elif method == b"none":
                c.none_probes += 1
            else:
                c.other_failures += 1
            starts.append(rfind(b"\n", 0, m.start()) + 1)
            hosts.append(host)
        c.failed_logins += len(logins)
        c.failed_by_ip.update(logins)

    def _by_method(self, method: bytes, times: int) -> None:
        """Count failed attempts by their method (the counting rules above)."""
        c = self.counts
        if method in LOGIN_METHODS:
            c.failed_logins += times
        elif method == b"publickey":
            c.publickey_failures += times
        elif method == b"none":
            c.none_probes += times
        else:
            c.other_failures += times

    def _invalid(self, matches: Iterable[re.Match[bytes]], starts: list[int], hosts: list[bytes],
                 users: list[bytes]) -> None:
        rfind = self._chunk.rfind
        for m in matches:
            parsed = invalid_user(m.group(1))
            host = None if parsed is None else KEYS[parsed[1]]
            if parsed is None or host is None:
                self.counts.unattributed += 1
                continue
            user = parsed[0]
            users.append(user[:64])
            starts.append(rfind(b"\n", 0, m.start()) + 1)
            hosts.append(host)

    def _count_invalid(self, users: list[bytes]) -> None:
        c = self.counts
        c.invalid_users += len(users)
        names = c.invalid_user_names
        names.update(users if len(names) < MAX_NAMES else [u for u in users if u in names])
        if len(names) > 2 * MAX_NAMES:
            c.invalid_user_names = Counter(dict(names.most_common(MAX_NAMES)))

    def _sshd(self, matches: Iterable[re.Match[bytes]], pam_users: dict[bytes, set[bytes]]
              ) -> None:
        for m in matches:
            pid, rep, rep_method, ruser, rhost, puser, keyword, rest = m.groups()
            if rhost is not None:
                self.counts.pam_failures += 1
                self._pam(m.start(), pid, puser or ruser or b"", KEYS[rhost], pam_users)
            elif rep is not None:
                self._repeated(m, int(rep), rep_method)
            elif keyword == b"Accepted":
                self._accepted(m, pid, rest, pam_users)
            elif keyword in PROBE_KEYWORDS:
                self._probe(m.start(), keyword + rest)
            elif keyword is not None:
                self._rare(m, pid, keyword, rest)

    def _repeated(self, m: re.Match[bytes], times: int, method: bytes) -> None:
        """``message repeated N times: [ Failed M for ...]``: N failures of the inner line."""
        _, end = self._line_at(m.start())
        inner = REPEATED_INNER.search(self._chunk, m.start(), end)
        if inner is None or times < 1:
            return
        invalid, rest = inner.groups()
        if method == b"publickey" and not invalid:
            self.counts.publickey_failures += times
            return
        parsed = after_for(rest, invalid is not None)
        c, host = self.counts, None if parsed is None else KEYS[parsed[1]]
        self._by_method(method, times)
        if host is None:
            c.unattributed += 1
            return
        if method in LOGIN_METHODS:
            c.failed_by_ip[host] += times
        # N comes from the log: anyone who can write to syslog can claim 10**12 repeats
        for _ in range(min(times, MAX_REPEAT_EVENTS)):
            self._failure(m.start(), host)

    def _old_pam(self, matches: Iterable[re.Match[bytes]]) -> None:
        """Old pam_unix failures (collectors.auth.regexes.OLD_PAM): one event each, N for
        "N more"; the count comes from the log, so it is bounded as repeats are."""
        for m in matches:
            more, rhost = m.groups()
            host = KEYS[rhost]
            self.counts.pam_failures += 1
            if host is None:
                self.counts.unattributed += 1
                continue
            for _ in range(min(int(more) if more else 1, MAX_REPEAT_EVENTS)):
                self._failure(m.start(), host)

    def _pam(self, pos: int, pid: bytes | None, user: bytes, rhost: bytes | None,
             pam_users: dict[bytes, set[bytes]]) -> None:
        """A PAM failure counts (as in fail2ban) once the same connection tries another user."""
        if pid is None or not user or rhost is None:
            return
        seen = pam_users.setdefault(pid, set())
        if seen and user not in seen:
            self._failure(pos, rhost)
        seen.add(user)

    def _accepted(self, m: re.Match[bytes], pid: bytes | None, rest: bytes,
                  pam_users: dict[bytes, set[bytes]]) -> None:
        parts = ACCEPTED_REST.match(rest)
        parsed = None if parts is None else after_for(parts.group(2), False)
        if parts is None or parsed is None:
            return
        method, (user, raw) = parts.group(1), parsed
        host = KEYS[raw]
        if host is None:
            self.counts.unattributed += 1
            return
        self.counts.accepted_count += 1
        earlier = pam_users.get(pid or b"")
        if earlier and (len(earlier) > 1 or user not in earlier):   # failed as other users
            self._failure(m.start(), host)
        self._logins.append((user, host, method, self._line_at(m.start())[0]))

    def _rare(self, m: re.Match[bytes], pid: bytes | None, keyword: bytes, rest: bytes) -> None:
        """A rarer failure message; without an address, an earlier or later line of the pid."""
        message = keyword + rest
        host: bytes | None = None
        if keyword == b"Disconnecting":            # "... : Change of username ...", anchored
            host = change_of_username(rest)
            if host is None:
                self.counts.unattributed += 1
                return
        elif keyword != b"Disconnecting: Too many authentication failures":
            for pattern in RARE_MESSAGES:
                found = pattern.match(message)
                if found:
                    host = found.groups()[-1]
                    break
        if host is None:
            host = self._earlier_address(m.start(), pid)
        if host:
            key = KEYS[host]
            if key is None:
                self.counts.unattributed += 1
            else:
                self._failure(m.start(), key)
        elif pid is not None and len(self.pending) < MAX_PENDING:
            start, _ = self._line_at(m.start())
            self.pending[pid.decode()] = {"ts": self.stamp(start) or self.now, "after": m.end()}

    def _earlier_address(self, pos: int, pid: bytes | None) -> bytes | None:
        """The address on an earlier line of the same sshd connection in this chunk."""
        if pid is None:
            return None
        tag, chunk = b"[" + pid + b"]: ", self._chunk
        end = chunk.rfind(b"\n", 0, pos)
        for _ in range(50):
            at = chunk.rfind(tag, 0, end)
            if at < 0:
                return None
            start, stop = self._line_at(at)
            found = ADDRESS_IN_LINE.search(chunk, at, stop)
            if found:
                return found.group(1)
            end = start
        return None

    def _resolve_pending(self, chunk: bytes) -> None:
        for pid, info in list(self.pending.items()):
            tag, pos = f"[{pid}]: ".encode(), int(info.pop("after", 0))
            while True:
                at = chunk.find(tag, pos)
                if at < 0:
                    break
                _, end = self._line_at(at)
                found = RESOLVES.search(chunk, at, end)
                key = found and KEYS[found.group(1)]
                if key:
                    self._failure(at, key)
                    del self.pending[pid]
                    break
                pos = end
        for pid in [p for p, i in self.pending.items() if self.now - i["ts"] > PENDING_TTL_S]:
            del self.pending[pid]
