"""The sshd patterns: the one definition of what auth_log counts (collectors.auth_patterns).

The C scanner (collectors/_authscan.c) parses only lines whose shape makes these regexes' result
certain and hands every other line to them. None of them can match across a newline, so running
one on a single line (collectors.chunkscan.in_lines) finds what it finds in the whole chunk.
"""
from __future__ import annotations

import re

LOGIN_METHODS = (b"password", b"keyboard-interactive", b"keyboard-interactive/pam")
_HOST = rb"(?:::ffff:)?([0-9A-Za-z][\w.:%-]*)"
_TAIL = rb"(?: port \d+)?(?: on \S+)?(?: ssh\d*)?(?=: |\]|[ \t\r]*$)"
_SUFFIX = rb"(?: via \S+)?(?: (?:port \d+|on \S+|\[preauth\])){0,3}\s*$"
# the user is a single word for real accounts; an invalid user's name is whatever the client
# sent, so the lazy fallback finds the first " from HOST port N ssh2" that ends the message
FAILED = re.compile(rb"Failed (\S+) for (invalid user )?(\S+|.*?) from " + _HOST + _TAIL, re.M)
INVALID = re.compile(rb"Invalid user (\S*|.*?) from " + _HOST +
                     rb"(?: port \d+)?[ \t\r]*$", re.M)
# "sshd[pid]: " (also sshd-session), or "[sshd]: " / "[sshd] " without a pid
_SSHD_HEAD = rb"sshd(?:-session)?(?:\[(\d+)\]:|\]:?) (?:(?:error|fatal): (?:PAM: )?)?"
SSHD = re.compile(_SSHD_HEAD + rb"(?:"
                  rb"message repeated (\d+) times: \[ Failed (\S+) for "
                  rb"|pam_unix\(sshd:auth\): authentication failure;[^\n]*? ruser=(\S*) "
                  rb"rhost=(\S+)(?:[ \t]+user=(\S*))?"
                  rb"|(Accepted|ROOT LOGIN REFUSED|maximum authentication attempts exceeded"
                  rb"|[aA]uthentication (?:failure|error|failed) for|User not known to"
                  rb"|User \S+ (?:from \S+ )?not allowed because|refused connect from"
                  rb"|Received disconnect from \S+(?: port \d+)?:[ \t]*3: "
                  rb"|Disconnecting: Too many authentication failures"
                  rb"|Disconnecting(?= (?:from )?(?:invalid|authenticating) user [^\r\n]*: "
                  rb"Change of username))([^\r\n]*))", re.M)
# One row per rare sshd message: the address it names (the last group), tried in order
RARE_MESSAGES = (
    re.compile(rb"ROOT LOGIN REFUSED FROM " + _HOST),
    re.compile(rb"maximum authentication attempts exceeded for (?:invalid user )?(.*?) from "
               + _HOST + rb"(?: port \d+)?(?: on \S+)?(?: ssh\d*)?" + _SUFFIX),
    re.compile(rb"[aA]uthentication (?:failure|error|failed) for (.*?) (?:from )?" + _HOST
               + _SUFFIX),
    re.compile(rb"User not known to the underlying authentication module for (.*?) (?:from )?"
               + _HOST + _SUFFIX),
    re.compile(rb"Disconnecting(?: from)? (?:invalid|authenticating) user \S+ " + _HOST),
    re.compile(rb"User (\S+|.*?) (?:from )?" + _HOST + rb" not allowed because"),
    re.compile(rb"refused connect from \S+ \((?:::ffff:)?([^)\s]+)\)"),
    re.compile(rb"Received disconnect from " + _HOST),
)
SSHD_PID = re.compile(rb"sshd(?:-session)?\[(\d+)\]")
ACCEPTED_REST = re.compile(rb" (\S+) for (\S+) from " + _HOST)
RESOLVES = re.compile(rb"(?:Connection (?:closed|reset)|Disconnect(?:ed|ing)|Received disconnect)"
                      rb"(?: (?:by|from))?(?: (?:invalid|authenticating) user \S+)? " + _HOST)
ADDRESS_IN_LINE = re.compile(rb"(?:from|by|rhost=) " + _HOST)
