"""Syslog header parsing: loghub ground truth, the three formats, timestamps, New Year, garbage."""
from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest

from collectors.logreader.formats import LINE_HEADER, parse_line, parse_timestamp

NOW = time.mktime((2026, 11, 23, 12, 0, 0, 0, 0, -1))


def local(*fields: int) -> float:
    """Epoch seconds of a local time (traditional stamps are local time)."""
    return time.mktime((*fields, 0, 0, -1))


def test_every_loghub_linux_line_matches_its_structured_csv_row(corpus: Path) -> None:
    """All 2000 lines of Linux_2k.log: host, program, pid, message and stamp as loghub split them."""
    folder = corpus / "loghub" / "Linux"
    lines = (folder / "Linux_2k.log").read_bytes().split(b"\r\n")
    rows = list(csv.DictReader((folder / "Linux_2k.log_structured.csv").open(encoding="utf-8")))
    assert len(rows) == 2000
    now = local(2005, 12, 31, 23, 0, 0)
    for row in rows:
        line = lines[int(row["LineId"]) - 1]
        header = parse_line(line, now)
        assert header is not None, line
        assert header.host == row["Level"], line
        assert header.program == row["Component"], line
        assert header.pid == (int(row["PID"]) if row["PID"] else None), line
        assert header.message.strip() == row["Content"].strip(), line
        stamp = time.localtime(header.ts)
        assert time.strftime("%b", stamp) == row["Month"] and stamp.tm_mday == int(row["Date"])
        assert time.strftime("%H:%M:%S", stamp) == row["Time"]


@pytest.mark.parametrize("line_id, program, pid", [
    (1, "sshd(pam_unix)", 19939), (146, "syslogd 1.4.1", None), (899, "-- root", 2421),
    (1941, "kernel", None), (1828, "xinetd", 26482)])
def test_odd_loghub_programs(corpus: Path, line_id: int, program: str, pid: int | None) -> None:
    lines = (corpus / "loghub" / "Linux" / "Linux_2k.log").read_bytes().split(b"\r\n")
    header = parse_line(lines[line_id - 1], NOW)
    assert header is not None and (header.program, header.pid) == (program, pid)


def test_traditional_year_is_inferred_across_new_year() -> None:
    jan_first = local(2027, 1, 1, 0, 0, 30)
    assert parse_timestamp(b"Dec 31 23:59:59", jan_first) == local(2026, 12, 31, 23, 59, 59)
    assert parse_timestamp(b"Jan  1 00:00:10", jan_first) == local(2027, 1, 1, 0, 0, 10)
    # a little clock skew ahead is still this year
    assert parse_timestamp(b"Jan  1 00:05:00", jan_first) == local(2027, 1, 1, 0, 5, 0)
    assert parse_timestamp(b"Nov 23 10:00:01", NOW) == local(2026, 11, 23, 10, 0, 1)
    # 29 February belongs to the last leap year when this year has none
    assert parse_timestamp(b"Feb 29 10:00:00", local(2029, 1, 1, 0, 0, 0)) == local(
        2028, 2, 29, 10, 0, 0)


@pytest.mark.parametrize("raw, expected", [
    (b"2026-11-23T10:00:01.123456+00:00", 1795428001.123456),
    (b"2026-11-23T10:00:01Z", 1795428001.0),
    (b"2026-11-23T11:00:01.5+01:00", 1795428001.5),
    (b"2026-11-23T10:00:01.123456789Z", 1795428001.123456),
    (b"2026-11-23T11:00:01+0100", 1795428001.0),
])
def test_rfc3339_stamps(raw: bytes, expected: float) -> None:
    assert parse_timestamp(raw, NOW) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("raw", [b"Foo 23 10:00:01", b"Nov 99 10:00:01", b"2026-13-45T99:00:00Z",
                                 b"-", b"", b"\xff\xfe", b"Nov 23 25:61:61"])
def test_invalid_stamps_are_none(raw: bytes) -> None:
    assert parse_timestamp(raw, NOW) is None


def test_rsyslog_high_precision_line() -> None:
    header = parse_line(b"2026-11-23T01:35:37.866581+00:00 vm myprog[29844]: hello error 1\n", NOW)
    assert header is not None
    assert (header.host, header.program, header.pid, header.message) == (
        "vm", "myprog", 29844, "hello error 1")
    assert header.ts == pytest.approx(1795397737.866581)


def test_rfc5424_plain_and_with_structured_data() -> None:
    plain = parse_line(b"<27>1 2026-11-23T01:35:37.866581+00:00 vm myprog 29844 - -  hello", NOW)
    assert plain is not None and (plain.severity, plain.program, plain.pid, plain.message) == (
        3, "myprog", 29844, "hello")
    sd = parse_line(b'<12>1 2026-11-23T01:35:37.868837+00:00 vm app2 - - [timeQuality '
                    b'tzKnown="1" isSynced="0"][ex@32473 k="v"] with sd', NOW)
    assert sd is not None and (sd.severity, sd.program, sd.pid, sd.message) == (
        4, "app2", None, "with sd")
    broken_sd = b"<13>1 2026-11-23T01:35:37Z vm app - - [unterminated sd"
    assert parse_line(broken_sd, NOW) is None


def test_a_pri_prefix_on_a_traditional_line_gives_the_severity() -> None:
    header = parse_line(b"<34>Nov 23 10:00:01 host su[7]: 'su root' failed for lonvick", NOW)
    assert header is not None and header.severity == 2 and header.program == "su"


@pytest.mark.parametrize("line", [
    b"", b"\x00\x00\x00", b"Nov 23 10:00:01 host sshd[1]: nul \x00 inside",
    b"random binary \x89PNG\r\n\x1a\n", b"Nov 23 10:00:01", b"<999>1 - - - - - - x",
    b"just some words without a header"])
def test_garbage_is_malformed(line: bytes) -> None:
    assert parse_line(line, NOW) is None


def test_invalid_utf8_in_the_message_is_replaced_not_fatal() -> None:
    header = parse_line(b"Nov 23 10:00:01 host app: caf\xe9 \xff", NOW)
    assert header is not None and header.message == "caf\ufffd \ufffd"


def test_line_header_yields_one_match_per_line_of_a_blob() -> None:
    blob = b"Nov 23 10:00:01 h a[1]: x\njunk\n\n<13>1 - h app - - - m"
    found = [(m.group("prog"), m.group("app")) for m in LINE_HEADER.finditer(blob)]
    assert found == [(b"a", None), (None, None), (None, None), (None, b"app")]
