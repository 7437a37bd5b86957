"""The sshd patterns: the one definition of what auth_log counts (collectors.auth.scanner).

The C scanner (collectors/auth/_authscan.c) parses only lines whose shape makes these regexes' result
certain and hands every other line to them. None of them can match across a newline, so running
one on a single line (collectors.logreader.chunks.in_lines) finds what it finds in the whole chunk.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

LOGIN_METHODS = (b"password", b"keyboard-interactive", b"keyboard-interactive/pam")
_HOST = rb"(?:::ffff:)?([0-9A-Za-z:][\w.:%-]*)"
_TAIL = rb"(?: port \d+)?(?: on \S+)?(?: ssh\d*)?(?=: |\]|[ \t\r]*$)"
_SUFFIX = rb"(?: via \S+)?(?: (?:port \d+|on \S+|\[preauth\])){0,3}\s*$"
# A message counts only where sshd's tag sits in the syslog header, at the program position (a
# host named "sshd-gw", or a client's text holding "sshd[1]: ", is no tag): an optional <PRI>, a
# traditional ("Mmm dd hh:mm:ss") or ISO 8601 stamp (rsyslog's high precision, journal entries
# as collectors.logreader.journal renders them), one host token (no brackets, not ending in ":"), the tag;
# or RFC 5424's "<PRI>1 TS HOST APP PROCID MSGID SD". Every part is taken or left without
# backtracking (possessive, atomic), so collectors/auth/_authscan.c's program_pos reads it the same.
# The patterns start at their literal (CPython's re skips to it fast; a pattern anchored at
# every line start is tried at every byte) and at_message / at_program keep the matches that
# start where the line's header puts the message or the tag. Who a line is about is read from
# the end (collectors.auth.anchor).
_PREF = (rb"(?:kernel: ?\[ *\d+\.\d+\]:? )?(?:(?:error|fatal): (?:PAM: )?)?"   # fail2ban common.conf
         rb"(?:\[ID \d+ [\w.]+\] )?")
_SD = rb'(?:\[[^\]"\r\n]*(?:"(?:[^"\\\r\n]|\\.)*"[^\]"\r\n]*)*\])+'
_STAMP = (rb"(?:[A-Z][a-z]{2} {1,2}\d{1,2} \d\d:\d\d:\d\d"
          rb"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\S*) ")
HEAD = (rb"^(?><\d{1,3}>1 \S+ \S+ |(?:<\d{1,3}>)?+(?:" + _STAMP + rb")?+"
        rb"(?:[^\s\[\]]*[^\s\[\]:] )?+)")
_TAG = (rb"(?:\[sshd(?:-session|-auth)?\]:?|sshd(?:-session|-auth)?(?:\[(\d+)\]:"
        rb"| \d+ - (?:-|" + _SD + rb"))) " + _PREF)
# SSHD starts at the literal "sshd" (its "[" for "[sshd]" is checked by at_program)
_TAG_LITERAL = (rb"sshd(?:-session|-auth)?(?:\[(\d+)\]:|\]:?| \d+ - (?:-|" + _SD + rb")) " + _PREF)
PROGRAM = re.compile(HEAD, re.M)                  # its end: the program position
MESSAGE_HEAD = re.compile(HEAD + _TAG, re.M)      # its end: where sshd's message starts
FAILED = re.compile(rb"Failed (\S+) for (invalid user )?([^\r\n]*)")
INVALID = re.compile(rb"Invalid user ([^\r\n]*)")
# Pre-authentication probing (OpenSSH packet.c sshpkt_vfatal, sshd.c, srclimit.c; fail2ban's
# ddos/aggressive modes, CrowdSec's sshd-logs): counted per address apart from failures. The
# first two name the client's user before the address: the address is the last word before
# " port N" at the end. Samples with provenance: tests/fixtures/auth/preauth.log.
PROBE_KEYWORDS = (b"Connection closed by ", b"Connection reset by ", b"Disconnected from ",
                   b"Did not receive identification string from ",
                   b"banner exchange: Connection from ", b"Unable to negotiate with ",
                   b"Timeout before authentication for ", b"drop connection #",
                   b"srclimit_penalise: ")
PROBES = (
    re.compile(rb"(?:Connection (?:closed|reset) by|Disconnected from) (?:authenticating|invalid) "
               rb"user (?:.*) (\S+) port \d+(?: \[preauth\])?[ \t\r]*$"),
    re.compile(rb"Did not receive identification string from " + _HOST),
    re.compile(rb"banner exchange: Connection from " + _HOST + rb"(?: port \d+)?: invalid format"),
    re.compile(rb"Unable to negotiate with " + _HOST + rb"(?: port \d+)?: no matching "),
    re.compile(rb"Timeout before authentication for (?:connection from )?" + _HOST),
    re.compile(rb"drop connection #\d+ from \[([^\]\s]+)\]:\d+ on \[[^\]\s]*\]:\d+ penalty: "),
    re.compile(rb"srclimit_penalise: (?:ipv[46]: new ([0-9A-Fa-f.:]+)/(?:32|128) (?:active|deferred)"
               rb"|([0-9A-Fa-f.:]+)/(?:32|128): activating ipv[46]) penalty of "),
)
# "sshd[pid]: " (also sshd-session), or "[sshd]: " / "[sshd] " without a pid
SSHD = re.compile(_TAG_LITERAL + rb"(?:"
                  rb"message repeated (\d+) times: \[ Failed (\S+) for "
                  rb"|pam_unix\(sshd:auth\): authentication failure;[^\n]*? ruser=(\S*) "
                  rb"rhost=(\S+)(?:[ \t]+user=(\S*))?"
                  rb"|(Accepted|ROOT LOGIN REFUSED|maximum authentication attempts exceeded"
                  rb"|[aA]uthentication (?:failure|error|failed) for|User not known to"
                  rb"|User \S+ (?:from \S+ )?not allowed because|refused connect from"
                  rb"|Received disconnect from \S+(?: port \d+)?:[ \t]*3: "
                  rb"|Disconnecting: Too many authentication failures"
                  rb"|Disconnecting(?= (?:from )?(?:invalid|authenticating) user [^\r\n]*: "
                  rb"Change of username)|" + rb"|".join(re.escape(k) for k in PROBE_KEYWORDS)
                  + rb")([^\r\n]*))", re.M)
# One row per rare sshd message: the address it names (the last group), tried in order
RARE_MESSAGES = (
    re.compile(rb"ROOT LOGIN REFUSED FROM " + _HOST),
    re.compile(rb"maximum authentication attempts exceeded for (?:invalid user )?(.*?) from "
               + _HOST + rb"(?: port \d+)?(?: on \S+)?(?: ssh\d*)?" + _SUFFIX),
    re.compile(rb"[aA]uthentication (?:failure|error|failed) for (.*?) (?:from )?" + _HOST
               + _SUFFIX),
    re.compile(rb"User not known to the underlying authentication module for (.*?) (?:from )?"
               + _HOST + _SUFFIX),
    re.compile(rb"User (\S+|.*?) (?:from )?" + _HOST + rb" not allowed because"),
    re.compile(rb"refused connect from \S+ \((?:::ffff:)?([^)\s]+)\)"),
    re.compile(rb"Received disconnect from " + _HOST),
)
REPEATED_INNER = re.compile(rb"message repeated \d+ times: \[ Failed \S+ for (invalid user )?"
                            rb"([^\r\n]*?)\]?[ \t\r]*$", re.M)
# pam_unix before Linux-PAM 0.99 tagged its lines "sshd(pam_unix)[pid]" (loghub Linux_2k); such a
# log has no sshd "Failed ..." line beside them, so each failure (and each of "N more
# authentication failures", pam_unix support.c) is a failure event of the address
OLD_PAM = re.compile(rb"sshd\(pam_unix\)\[\d+\]: (?:authentication failure|"
                     rb"(\d+) more authentication failures?);[^\r\n]*? rhost=(\S+)")
SSHD_PID = re.compile(rb"sshd(?:-session)?\[(\d+)\]")
ACCEPTED_REST = re.compile(rb" (\S+) for ([^\r\n]*)")
RESOLVES = re.compile(rb"(?:Connection (?:closed|reset)|Disconnect(?:ed|ing)|Received disconnect)"
                      rb"(?: (?:by|from))?(?: (?:invalid|authenticating) user \S+)? " + _HOST)
ADDRESS_IN_LINE = re.compile(rb"(?:from|by|rhost=) " + _HOST)


def at_message(matches: Iterable[re.Match[bytes]], chunk: bytes) -> Iterator[re.Match[bytes]]:
    """The matches (of FAILED, INVALID) that start where their line's sshd message starts."""
    head, rfind = MESSAGE_HEAD.match, chunk.rfind
    for m in matches:
        start = m.start()
        found = head(chunk, rfind(b"\n", 0, start) + 1)
        if found is not None and found.end() == start:
            yield m


def at_program(matches: Iterable[re.Match[bytes]], chunk: bytes) -> Iterator[re.Match[bytes]]:
    """The matches (of SSHD, OLD_PAM: they start at "sshd") whose tag is at their line's program
    position: "sshd..." there, or "[sshd...]" there with its closing bracket."""
    program, rfind, startswith = PROGRAM.match, chunk.rfind, chunk.startswith
    for m in matches:
        start = m.start()
        pos = program(chunk, rfind(b"\n", 0, start) + 1).end()  # type: ignore[union-attr]
        if start != pos and (start != pos + 1 or chunk[pos] != 0x5B):
            continue
        end = start + 4                                   # after "sshd", "-session", "-auth"
        end += 8 if startswith(b"-session", end) else 5 if startswith(b"-auth", end) else 0
        if (start == pos + 1) == (chunk[end:end + 1] == b"]"):
            yield m
