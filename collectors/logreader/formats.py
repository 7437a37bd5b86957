"""Syslog line formats: traditional, rsyslog high-precision (RFC3339) and RFC5424; pure functions.

- traditional: ``Nov 23 10:00:01 host prog[pid]: msg`` (local time, no year: inferred against
  ``now``, so a December line read on 1 January belongs to last year);
- high-precision: ``2026-11-23T10:00:01.123456+01:00 host prog[pid]: msg``;
- RFC5424: ``<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG``; the header is parsed here and only
  a line whose SD is not ``-`` goes through ``syslog-rfc5424-parser`` (about 10,000 lines/s).
An optional ``<PRI>`` before a traditional or high-precision header gives the severity too.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime

log = logging.getLogger(__name__)

MONTHS = {m: i for i, m in enumerate(
    (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
     b"Dec"), start=1)}
FUTURE_SLACK_S = 2 * 86400   # a traditional stamp more than this ahead of "now" is last year's

_TRAD_TS = rb"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"
_HP_TS = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)"
# program: anything up to "[pid]:" or ":" (loghub keeps "syslogd 1.4.1" and "sshd(pam_unix)"), or
# one word without a colon (rsyslog's traditional form of an RFC5424 message: "host app2 msg")
_PROG = (rb"(?P<prog>[^\[\n:]{1,64}?(?=(?:\[\d{1,10}\])?:(?: |$))|[^\s\[:]{1,64}(?=(?:\[\d{1,10}\])? ))"
         rb"(?:\[(?P<pid>\d{1,10})\])?:?(?: |$)")

TRADITIONAL = re.compile(rb"(?:<(?P<pri>\d{1,3})>)?(?P<ts>" + _TRAD_TS + rb") +(?P<host>\S+) +" + _PROG)
HIGH_PRECISION = re.compile(rb"(?:<(?P<pri>\d{1,3})>)?(?P<ts>" + _HP_TS + rb") +(?P<host>\S+) +" + _PROG)
RFC5424 = re.compile(rb"<(\d{1,3})>1 (-|\S+) (\S+) (\S+) (\S+) (\S+) (-|\[)")
# any of the headers (re.M, so it also runs over a blob of lines): (traditional program, RFC5424
# app, rest); the header is optional, so every line yields one match (no program: malformed)
LINE_HEADER = re.compile(
    rb"^(?:(?:<\d{1,3}>)?(?:" + _TRAD_TS + rb"|" + _HP_TS + rb") +\S+ +" + _PROG +
    rb"|<\d{1,3}>1 \S+ \S+ (?P<app>\S+) \S+ \S+ (?:- |(?=\[)))?(?P<rest>[^\n]*)", re.M)


@dataclass(frozen=True)
class Header:
    """The common syslog header of one line, and the rest of it."""

    ts: float | None
    host: str
    program: str
    pid: int | None
    severity: int | None      # 0 emerg .. 7 debug, when the line carries it (PRI)
    message: str              # the rest of the line (decoded, replacement for invalid UTF-8)


def _traditional(raw: bytes, now: float) -> float | None:
    month = MONTHS.get(raw[:3])
    try:
        day, (hh, mm, ss) = int(raw[4:6]), (int(x) for x in raw[7:15].split(b":"))
    except ValueError:
        return None
    if month is None:
        return None
    year = time.localtime(now).tm_year
    for candidate in (year, year - 1):
        try:
            datetime(candidate, month, day, hh, mm, min(ss, 59))   # ValueError when impossible
            ts = time.mktime((candidate, month, day, hh, mm, ss, 0, 0, -1))
        except (ValueError, OverflowError):
            continue
        if ts <= now + FUTURE_SLACK_S:
            return ts
    return None


def parse_timestamp(raw: bytes, now: float) -> float | None:
    """Epoch seconds of a traditional, RFC3339 (high-precision) or RFC5424 stamp; None if invalid."""
    raw = raw.strip()
    if len(raw) == 15 and raw[:3] in MONTHS:
        return _traditional(raw, now)
    if raw == b"-":
        return None
    try:
        text = raw.decode("ascii")
        if len(text) > 6 and text[-5] in "+-" and text[-3] != ":":   # +0100 -> +01:00
            text = text[:-2] + ":" + text[-2:]
        frac = re.search(r"\.(\d{7,9})", text)
        if frac:                                  # fromisoformat takes at most microseconds
            text = text.replace(frac.group(0), "." + frac.group(1)[:6])
        stamp = datetime.fromisoformat(text)
    except (UnicodeDecodeError, ValueError):
        return None
    return stamp.timestamp()   # a stamp without an offset is local time, as rsyslog writes it


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _severity(pri: bytes | None) -> int | None:
    if pri is None:
        return None
    value = int(pri)
    return value & 7 if value <= 191 else None


def _rfc5424(line: bytes, m: re.Match[bytes], now: float) -> Header | None:
    pri, stamp, host, app, procid = m.group(1), m.group(2), m.group(3), m.group(4), m.group(5)
    if _severity(pri) is None:
        return None
    if m.group(7) == b"[":
        message = _structured_message(line)
        if message is None:
            return None
    else:
        message = _decode(line[m.end():].lstrip(b" "))
    return Header(ts=parse_timestamp(stamp, now), host=_decode(host),
                  program="" if app == b"-" else _decode(app),
                  pid=int(procid) if procid.isdigit() else None, severity=_severity(pri),
                  message=message)


def _structured_message(line: bytes) -> str | None:
    """MSG of an RFC5424 line with structured data, through syslog-rfc5424-parser."""
    from syslog_rfc5424_parser import ParseError, SyslogMessage  # noqa: PLC0415 - lark: rare lines only

    try:
        return SyslogMessage.parse(line.decode("utf-8", "replace")).msg or ""
    except (ParseError, ValueError) as err:
        log.debug("RFC5424 structured data not parsed: %s", err)
        return None


def parse_line(line: bytes, now: float) -> Header | None:
    """The header of one syslog line in any of the three formats; None when malformed."""
    line = line.rstrip(b"\r\n")
    if not line or b"\x00" in line:
        return None
    m5 = RFC5424.match(line)
    if m5:
        return _rfc5424(line, m5, now)
    for pattern in (TRADITIONAL, HIGH_PRECISION):
        m = pattern.match(line)
        if m:
            ts = parse_timestamp(m.group("ts"), now)
            if ts is None:
                return None
            pri, pid = m.group("pri"), m.group("pid")
            return Header(ts=ts, host=_decode(m.group("host")), program=_decode(m.group("prog")).strip(),
                          pid=int(pid) if pid else None, severity=_severity(pri),
                          message=_decode(line[m.end():]))
    return None
