"""The auth scanner's C path: collectors/auth/_authscan.c's output merged with the regexes' (a mixin).

The C scanner returns the fields of the lines of common shape and the starts of every other line
it found a pattern in; those go through the pattern's own regex (collectors.auth.regexes), and
each pattern's events are merged back in line order, so the results equal the regexes' alone
(tests/test_auth_native.py).
"""
from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import compress
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from collectors.auth.admin import ADMIN, SU, AdminEvents
from collectors.auth.anchor import KEYS
from collectors.auth.compiled import required
from collectors.auth.counts import MAX_EVENTS
from collectors.auth.probes import ProbeEvents
from collectors.auth.regexes import FAILED, INVALID, OLD_PAM, SSHD, SSHD_PID, at_message, at_program
from collectors.logreader.chunks import in_lines, malformed_lines


class NativeFeed(ProbeEvents, AdminEvents):
    """AuthScanner.feed's path when the C scanner is built: a mixin of AuthScanner, whose state
    (counts, pending, the chunk's failure events and logins) and per-pattern methods it uses."""

    pending: dict[str, dict[str, Any]]
    _starts: list[int]
    _hosts: list[bytes]
    _logins: list[tuple[bytes, bytes, bytes, int]]

    if TYPE_CHECKING:  # the regex path's per-pattern methods, defined by AuthScanner
        def _failed(self, matches: Iterable[re.Match[bytes]], starts: list[int],
                    hosts: list[bytes]) -> None: ...
        def _invalid(self, matches: Iterable[re.Match[bytes]], starts: list[int],
                     hosts: list[bytes], users: list[bytes]) -> None: ...
        def _count_invalid(self, users: list[bytes]) -> None: ...
        def _sshd(self, matches: Iterable[re.Match[bytes]],
                  pam_users: dict[bytes, set[bytes]]) -> None: ...
        def _old_pam(self, matches: Iterable[re.Match[bytes]]) -> None: ...
        def _resolve_pending(self, chunk: bytes) -> None: ...

    def _feed_native(self, chunk: bytes) -> None:
        """AuthScanner.feed with the C scanner: its fast lines as fields, its slow lines through
        the regexes, each pattern's events merged back in line order."""
        (lines, clean), failed, invalid, sshd, sudo_commands, slow, probes = required().scan(chunk)
        slow_failed, slow_invalid, slow_sshd, slow_su, slow_admin = map(_offsets, slow)
        self.counts.lines += lines
        if not clean:
            self.counts.malformed += malformed_lines(chunk)
        self._native_failed(chunk, failed, slow_failed)
        hosts, starts, users = self._attributed(invalid[2], _offsets(invalid[0]), invalid[1])
        if slow_invalid:
            more: tuple[list[int], list[bytes], list[bytes]] = ([], [], [])
            self._invalid(at_message(in_lines(INVALID, chunk, slow_invalid), chunk), more[0],
                          more[2], more[1])
            starts, users, hosts = _merged((starts, users, hosts), more)
        self._count_invalid(users)
        self._starts += starts
        self._hosts += hosts
        self._native_probes(*probes)
        self._native_sshd(chunk, (_offsets(sshd[0]), *sshd[1:]), slow_sshd)
        self._native_su(chunk, _offsets(sudo_commands), slow_su)
        if slow_admin:
            self._admin(in_lines(ADMIN, chunk, slow_admin))

    def _native_failed(self, chunk: bytes, failed: tuple[bytes, bytes, list[Any]],
                       slow: list[int]) -> None:
        starts_raw, kinds_raw, hosts = failed
        c = self.counts
        kinds = np.frombuffer(kinds_raw, dtype=np.uint8)
        login, key, key_invalid, none, other = np.bincount(kinds, minlength=5).tolist()
        c.failed_logins += login
        c.publickey_failures += key + key_invalid
        c.none_probes += none
        c.other_failures += other
        starts = np.frombuffer(starts_raw, dtype=np.int64)
        if _keyed(hosts):                         # totals counted; no address (as _failed)
            known = np.array([h is not None for h in hosts], dtype=bool)
            c.unattributed += int(np.count_nonzero(~known))
            kinds, starts = kinds[known], starts[known]
            hosts = [h for h in hosts if h is not None]
            login = int(np.count_nonzero(kinds == 0))
        events: tuple[list[Any], ...]         # (line starts, addresses)
        if login == len(kinds):
            c.failed_by_ip.update(hosts)
            events = (starts.tolist(), hosts)
        else:          # kinds: login, publickey, publickey of an invalid user, none, other
            c.failed_by_ip.update(compress(hosts, (kinds == 0).tolist()))
            event = kinds != 1                    # a key offer of a real user: not a failure
            events = (starts[event].tolist(), list(compress(hosts, event.tolist())))
        if slow:
            more: tuple[list[int], list[bytes]] = ([], [])
            self._failed(at_message(in_lines(FAILED, chunk, slow), chunk), *more)
            events = _merged(events, more)
        self._starts += events[0]
        self._hosts += events[1]

    def _native_sshd(self, chunk: bytes, fields: tuple[Any, ...], slow: list[int]) -> None:
        """PAM failures and accepted logins (fields: line starts, kinds, pids, users, addresses,
        methods) and the other sshd lines (regex), in line order: a PAM failure counts once its
        connection tries another user, or logs in. Events of a pid seen once in the chunk (most)
        cannot meet another: they are taken in bulk."""
        starts, kinds, pids, users, hosts, methods = fields
        if _keyed(hosts):
            kinds, starts, pids, users, hosts, methods = self._native_unkeyed(
                kinds, starts, pids, users, hosts, methods)
        accepted = kinds.count(1)
        self.counts.pam_failures += len(kinds) - accepted
        self.counts.accepted_count += accepted
        pid_count = Counter(pids)
        for line in slow:                     # slow lines that name a pid meet its events too
            end = chunk.find(b"\n", line)
            pid_count.update(SSHD_PID.findall(chunk, line, len(chunk) if end < 0 else end) * 2)
        single = [pid_count[pid] == 1 for pid in pids]
        logins = [(user, host, method, start) for start, kind, user, host, method, alone
                  in zip(starts, kinds, users, hosts, methods, single, strict=True) if kind and alone]
        if not all(single):
            others = [not alone for alone in single]
            self._sshd_in_order(chunk, tuple(list(compress(column, others))
                                             for column in (starts, kinds, pids, users, hosts,
                                                            methods)), slow)
        elif slow:
            self._sshd(at_program(in_lines(SSHD, chunk, slow), chunk), {})
        if logins:                            # all of them, in line order
            self._logins = sorted(self._logins + logins, key=itemgetter(3))
        if slow:                              # old pam_unix lines are slow lines (their tag)
            self._old_pam(at_program(in_lines(OLD_PAM, chunk, slow), chunk))
        if self.pending and b"sshd" in chunk:
            self._resolve_pending(chunk)

    def _native_probes(self, starts_raw: bytes, hosts: list[bytes]) -> None:
        """The C scanner's pre-authentication probes: to the chunk's probes, in bulk."""
        hosts, starts = self._attributed(hosts, _offsets(starts_raw))
        self._probe_starts += starts
        self._probe_hosts += hosts

    def _attributed(self, hosts: list[Any], *columns: list[Any]
                    ) -> tuple[list[Any], ...]:
        """Parallel columns of events, addresses first, as keys (_keyed), without the events
        whose token is no address: those are counted as unattributed, not as events (as the
        regex path's _invalid and _probe do)."""
        if not _keyed(hosts):
            return (hosts, *columns)
        known = [h is not None for h in hosts]
        self.counts.unattributed += known.count(False)
        return tuple(list(compress(column, known)) for column in (hosts, *columns))

    def _native_unkeyed(self, kinds: bytes, *columns: list[Any]) -> tuple[Any, ...]:
        """Take out the logins without an address (as _accepted: not counted); the rest stays."""
        hosts = columns[3]
        kind = np.frombuffer(kinds, dtype=np.uint8)
        missing = np.array([h is None for h in hosts], dtype=bool)
        self.counts.unattributed += int(np.count_nonzero(missing & (kind != 0)))
        keep = ~(missing & (kind == 1))
        kept = keep.tolist()
        return (kind[keep].tobytes(), *(list(compress(c, kept)) for c in columns))

    def _sshd_in_order(self, chunk: bytes, fields: tuple[list[Any], ...], slow: list[int]
                       ) -> None:
        """The sshd events of pids seen more than once, with the slow sshd lines between them."""
        starts, kinds, pids, users, hosts, methods = fields
        pam_users: dict[bytes, set[bytes]] = {}
        done = 0                                  # slow lines handled so far
        for start, kind, pid, user, host, method in zip(starts, kinds, pids, users, hosts,
                                                        methods, strict=True):
            if done < len(slow) and slow[done] < start:
                stop = bisect_left(slow, start, done)
                self._sshd(at_program(in_lines(SSHD, chunk, slow[done:stop]), chunk), pam_users)
                done = stop
            seen = pam_users.get(pid)
            if kind:                              # _accepted()
                if seen and (len(seen) > 1 or user not in seen):
                    self._starts.append(start)
                    self._hosts.append(host)
                self._logins.append((user, host, method, start))
            elif not user or host is None:
                continue
            elif seen is None:                    # _pam(), inline
                pam_users[pid] = {user}
            elif user not in seen:
                seen.add(user)
                self._starts.append(start)
                self._hosts.append(host)
        if done < len(slow):
            self._sshd(at_program(in_lines(SSHD, chunk, slow[done:]), chunk), pam_users)

    def _native_su(self, chunk: bytes, commands: list[int], slow: list[int]) -> None:
        """sudo commands beyond the kept ones are only counted; the rest through the regex."""
        c = self.counts
        if not slow:
            kept = 0
            while kept < len(commands) and len(c.sudo_commands) < MAX_EVENTS:
                self._su(in_lines(SU, chunk, commands[kept:kept + 1]))
                kept += 1
            c.sudo_command_count += len(commands) - kept
            return
        command = set(commands)
        for start in sorted(commands + slow):
            if start in command and len(c.sudo_commands) >= MAX_EVENTS:
                c.sudo_command_count += 1
            else:
                self._su(in_lines(SU, chunk, [start]))


def _keyed(hosts: list[Any]) -> bool:
    """Raw address tokens made their keys in place (collectors.auth.anchor.address_key, cached;
    a plain IPv4 address, most of them, is its own key: the C scanner tells which are not);
    True when some token is no address (its key None)."""
    missing = False
    for i in required().odd_addresses(hosts):
        key = hosts[i] = KEYS[hosts[i]]
        missing = missing or key is None
    return missing


def _offsets(raw: bytes) -> list[int]:
    """Line starts from the C scanner (native int64)."""
    offsets: list[int] = np.frombuffer(raw, dtype=np.int64).tolist()
    return offsets


def _merged(fast: Sequence[Sequence[Any]], slow: Sequence[list[Any]]) -> tuple[list[Any], ...]:
    """Two sets of parallel columns (line start first) as one, in line order (stable)."""
    columns = [list(f) + s for f, s in zip(fast, slow, strict=True)]
    order = sorted(range(len(columns[0])), key=columns[0].__getitem__)
    return tuple([column[i] for i in order] for column in columns)
