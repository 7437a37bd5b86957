"""sudo, su and account events (useradd, groupadd, passwd, chpasswd, usermod) from auth log chunks.

A mixin of collectors.auth.scanner.AuthScanner: the same chunk, scanned for the lines of these
programs, which are rare, so each found line may cost a little Python.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from collectors.auth.counts import MAX_EVENTS, MAX_LINE_KEPT, AuthCounts, keep, safe_text
from collectors.auth.regexes import PROGRAM
from collectors.logreader.chunks import matches_at, pair_positions

# sudo and su (the literal "su" starts both); useradd, groupadd, passwd, chpasswd ("d["); both
# are tried only where their first two bytes occur (collectors.logreader.chunks)
SU = re.compile(rb"su(?<![\w-]su)(do)?(?:\(pam_unix\))?(?:\[(\d+)\])?: +([^\r\n]*)")
ADMIN_LAST_LETTERS = np.frombuffer(b"dwo", dtype=np.uint8)   # the letter before their "d["
ADMIN = re.compile(rb"d\[(?:(?<=useradd\[)|(?<=groupadd\[)|(?<=passwd\[)|(?<=usermod\[))"
                   rb"\d+\]: ([^\r\n]*)")

SUDO_CMD = re.compile(rb"^(\S+) : (?:((?:(?!TTY=|PWD=)[^;])*?) ; )?(?:TTY=\S* ; )?(?:PWD=.*? ; )?"
                      rb"USER=(\S+) ;.*?COMMAND=(.*)$")
SUDO_FAIL_REASONS = (b"incorrect password attempt", b"NOT in sudoers", b"command not allowed")
SUDO_REFUSED = re.compile(b"|".join(map(re.escape, SUDO_FAIL_REASONS)))   # one search, not three
PAM_AUTH_FAIL = re.compile(rb"pam_unix\((sudo|sudo-i):auth\): authentication failure;"
                           rb".*?ruser=(\S*).*?user=(\S+)")
SU_FAILED = re.compile(rb"^FAILED SU \(to (\S+)\) (\S+)")
# su's refusals of other systems and eras (tests/fixtures/auth/su.log, with provenance): BSD su
# ("BAD SU %s to %s%s": the caller's login, the target, " on TTY"), AIX ("BAD SU from USER to
# TARGET at TTY"), and PAM's pam_unix record, old ("su(pam_unix)[pid]: authentication failure;")
# or new ("pam_unix(su:auth): ..."), read from its own fields: ruser= (the caller, set by su
# from its uid; logname= when empty) and user= (the target). The user names are the programs'.
SU_BAD = re.compile(rb"^BAD SU (?:from (\S+) to (\S+)(?: at \S+)?|(\S+) to (\S+)(?: on \S+)?)"
                    rb"[ \t\r]*$")
SU_PAM_FAILED = re.compile(rb"^(?:pam_unix\(su(?:-l)?:auth\): )?authentication failure; "
                           rb"logname=(\S*) uid=\d+ euid=\d+ tty=\S* ruser=(\S*) rhost=\S*"
                           rb"[ \t]+user=(\S+)")
# util-linux su ("(to T) U on"), and the old pam_unix form "su(pam_unix)[pid]: session opened ..."
SU_OK = re.compile(rb"^(?:\(to (\S+)\) (\S+) on|session opened for user ([^\s(]+)"
                   rb"(?:\(uid=\d+\))? by ([^\s(]*))")
NEW_USER = re.compile(rb"^new user: name=([^,\s]+)")
NEW_GROUP = re.compile(rb"^new group: name=([^,\s]+)")
PASSWORD_CHANGED = re.compile(rb"^(?:pam_unix\([\w-]+:chauthtok\): password changed for "
                              rb"|change user ')([^\s']+)(?:' password$)?")


def _admin_starts(chunk: bytes) -> list[int]:
    """Where ADMIN can start: a "d[" after "d", "w" or "o" (useradd, passwd, usermod), not sshd's."""
    at = pair_positions(chunk, b"d[")
    before = np.frombuffer(chunk, dtype=np.uint8)[np.maximum(at - 1, 0)]
    starts: list[int] = at[(at > 0) & np.isin(before, ADMIN_LAST_LETTERS)].tolist()
    return starts


class AdminEvents:
    """The sudo, su and account-administration part of the scanner (see AuthScanner)."""

    counts: AuthCounts
    _chunk: bytes
    _su_pam: dict[tuple[str, str], dict[str, Any]]   # this chunk's PAM su failures

    def stamp(self, start: int) -> float | None:
        """Epoch seconds of the line starting at ``start`` (AuthScanner's)."""
        raise NotImplementedError

    def _line_at(self, pos: int) -> tuple[int, int]:
        raise NotImplementedError

    @staticmethod
    def su_matches(chunk: bytes) -> list[re.Match[bytes]]:
        """SU's matches in a chunk (tried only where "su" occurs)."""
        return matches_at(SU, chunk, pair_positions(chunk, b"su").tolist())

    @staticmethod
    def admin_matches(chunk: bytes) -> list[re.Match[bytes]]:
        """ADMIN's matches in a chunk (tried only where its "d[" can start)."""
        return matches_at(ADMIN, chunk, _admin_starts(chunk))

    def _su(self, matches: Iterable[re.Match[bytes]]) -> None:
        c, chunk = self.counts, self._chunk
        for m in matches:
            is_sudo, _pid, message = m.groups()
            if is_sudo:
                self._sudo(m.start(), message)
                continue
            start, end = self._line_at(m.start())
            head = PROGRAM.match(chunk, start)    # su's tag counts there only, as sshd's
            if head is None or head.end() != m.start():
                continue                      # "su: ..." inside another program's message
            failed = SU_FAILED.match(message) or SU_BAD.match(message)
            pam = None if failed else self._su_pam_failure(m, message)
            ok = None if failed or pam else SU_OK.match(message)
            if failed is None and pam is None and ok is None:
                continue
            event = {"ts": self.stamp(start),
                     "line": safe_text(chunk[start:end].rstrip(b"\r"), MAX_LINE_KEPT)}
            if failed:
                target, user = (failed.group(1, 2) if failed.re is SU_FAILED
                                else (failed.group(2, 1) if failed.group(1) else failed.group(4, 3)))
                who = (safe_text(user, 64), safe_text(target, 64))
                event.update(user=who[0], target=who[1])
                # su's verdict on an attempt PAM logged just before (Debian 12 writes PAM's
                # under "su:" without a pid, su's own under "su[pid]:"): the same failure
                earlier = self._su_pam.pop(who, None)
                if earlier is not None:
                    earlier.update(event)
                else:
                    keep(c.su_failures, event)
            elif pam:
                logname, ruser, target = pam.groups()
                who = (safe_text(ruser or logname, 64), safe_text(target, 64))
                event.update(user=who[0], target=who[1])
                keep(c.su_failures, event)
                self._su_pam[who] = event
            elif ok:
                target, user = ok.group(1, 2) if ok.group(1) else ok.group(3, 4)
                event.update(user=safe_text(user or b"", 64), target=safe_text(target or b"", 64))
                keep(c.su_sessions, event)

    @staticmethod
    def _su_pam_failure(m: re.Match[bytes], message: bytes) -> re.Match[bytes] | None:
        """PAM's su authentication failure: "pam_unix(su:auth): ..." after su's tag, or the bare
        message after the old tag "su(pam_unix)"."""
        found = SU_PAM_FAILED.match(message)
        if found is None or message.startswith(b"pam_unix("):
            return found
        return found if m.group(0).startswith(b"su(pam_unix)") else None

    def _sudo(self, pos: int, message: bytes) -> None:
        """A sudo line: a command (counted; a few kept) or a refusal (all counted, kept)."""
        c = self.counts
        if message.startswith(b"pam_"):
            pam = PAM_AUTH_FAIL.match(message)
            if pam is None:
                return                            # sessions, limits: not events
            user, reason = pam.group(2), b"authentication failure"
        else:
            if b"COMMAND=" not in message:
                return
            refused = SUDO_REFUSED.search(message) is not None
            if not refused and len(c.sudo_commands) >= MAX_EVENTS:
                c.sudo_command_count += 1         # the common case: count, parse nothing
                return
            cmd = SUDO_CMD.match(message.strip())
            if cmd is None:
                return
            if not refused:
                c.sudo_command_count += 1
                keep(c.sudo_commands, {"user": safe_text(cmd.group(1), 64),
                                       "run_as": safe_text(cmd.group(3), 64),
                                       "command": safe_text(cmd.group(4), 200),
                                       "ts": self.stamp(self._line_at(pos)[0])})
                return
            user, reason = cmd.group(1), cmd.group(2) or b"refused"
        start, end = self._line_at(pos)
        c.sudo_failure_count += 1
        keep(c.sudo_failures, {"user": safe_text(user, 64), "reason": safe_text(reason, 80),
                               "ts": self.stamp(start),
                               "line": safe_text(self._chunk[start:end].rstrip(b"\r"),
                                                 MAX_LINE_KEPT)})

    def _admin(self, matches: Iterable[re.Match[bytes]]) -> None:
        c, chunk = self.counts, self._chunk
        table = ((NEW_USER, c.users_created), (NEW_GROUP, c.groups_created),
                 (PASSWORD_CHANGED, c.password_changes))
        for m in matches:
            message = m.group(1)
            for pattern, items in table:
                found = pattern.match(message)
                if found:
                    start, end = self._line_at(m.start())
                    program = chunk[chunk.rfind(b" ", start, m.start() + 1) + 1:m.start() + 1]
                    keep(items, {"name": safe_text(found.group(1), 64),
                                 "program": safe_text(program, 16), "ts": self.stamp(start),
                                 "line": safe_text(chunk[start:end].rstrip(b"\r"),
                                                   MAX_LINE_KEPT)})
                    break
