"""The fast paths of the auth scan give exactly what the plain ones give.

collectors.logreader.chunks (numpy line counts, two-byte candidates, a regex tried only where it can
start) against bytes.count / str.find / re.finditer, and collectors.auth.times' per-hour cache
against logformats.parse_timestamp, across a DST change and a new year.
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.auth.admin import ADMIN, SU, _admin_starts
from collectors.auth.times import LineClock
from collectors.logreader.chunks import count_lines, matches_at, pair_positions
from collectors.logreader.formats import MONTHS, parse_timestamp

# pieces that make SU and ADMIN match, almost match, or overlap
PIECES = ["su", "sudo", "su:", "sudo: ", "su[12]: ", "sudo(pam_unix)[3]: x", "-su: ", "issu: ",
          "d[", "useradd[4]: new user", "sshd[5]: ", "passwd[6]: ", "usermod[7]: x", "od[", " ",
          "\n", "\r", "x", "é", "\x00", ":", "[", "]"]
texts = st.lists(st.sampled_from(PIECES), max_size=60).map(lambda p: "".join(p).encode())


@given(texts)
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
def test_candidates_find_what_finditer_finds(data: bytes) -> None:
    def spans(found: list[re.Match[bytes]]) -> list[tuple]:
        return [(m.span(), m.groups()) for m in found]

    su = matches_at(SU, data, pair_positions(data, b"su").tolist())
    assert spans(su) == spans(list(SU.finditer(data)))
    admin = matches_at(ADMIN, data, _admin_starts(data))
    assert spans(admin) == spans(list(ADMIN.finditer(data)))


@given(st.binary(max_size=300), st.sampled_from([b"su", b"d[", b"\n\n", b"aa"]))
@settings(max_examples=200, deadline=None, derandomize=True, database=None)
def test_pair_positions_and_line_count(data: bytes, pair: bytes) -> None:
    naive = [i for i in range(len(data) - 1) if data[i:i + 2] == pair]
    assert pair_positions(data, pair).tolist() == naive
    assert count_lines(data) == data.count(b"\n")


@pytest.fixture
def berlin() -> Iterator[None]:
    """Local time with DST (the stamps of a traditional syslog line are local time)."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def minutes(month: bytes, days: range, hours: range) -> Iterator[bytes]:
    for day in days:
        for hour in hours:
            for minute in range(0, 60, 7):
                yield b"%s %2d %02d:%02d" % (month, day, hour, minute)


@pytest.mark.parametrize("now_stamp,month,days", [
    ((2026, 3, 30, 12, 0, 0), b"Mar", range(28, 31)),        # DST starts 29 March, 02:00
    ((2026, 10, 26, 12, 0, 0), b"Oct", range(24, 27)),       # DST ends 25 October, 03:00
    ((2027, 1, 1, 0, 30, 0), b"Dec", range(30, 32)),         # read on New Year: last year's
    ((2027, 1, 1, 0, 30, 0), b"Jan", range(1, 4)),           # ahead of now: the future slack
])
def test_hour_cache_equals_parse_timestamp(berlin: None, now_stamp: tuple, month: bytes,
                                           days: range) -> None:
    now = time.mktime((*now_stamp, 0, 0, -1))
    clock = LineClock(now)
    assert month in MONTHS
    for minute in minutes(month, days, range(24)):
        assert clock.minute(minute) == parse_timestamp(minute + b":00", now), minute


def test_hour_cache_rejects_what_parse_rejects() -> None:
    now = time.time()
    clock = LineClock(now)
    for minute in (b"Feb 30 10:00", b"Nov 23 24:00", b"Nov 23 10:60", b"Nov 23 10x00",
                   b"Nov 23 10:5 ", b"Nov 23 1_:00"):
        assert clock.minute(minute) == parse_timestamp(minute + b":00", now), minute


def test_vectorised_stamps_equal_line_by_line() -> None:
    now = time.mktime((2026, 11, 23, 12, 0, 0, 0, 0, -1))
    lines = [b"Nov 23 10:00:01 h sshd[1]: x", b"Feb  7 16:01:07 h x", b"Feb 7 16:01:07 h x",
             b"<38>Nov 23 10:00:02 h x", b"2026-11-23T10:00:03.123456+01:00 h x", b"garbage",
             b"Nov 23 10:0a:01 h x", b""]
    chunk = b"\n".join(lines) + b"\n"
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    clock = LineClock(now)
    bulk = clock.stamps(chunk, starts).tolist()
    one = [LineClock(now).stamp(chunk, s) for s in starts]
    assert [None if v != v else v for v in bulk] == one
    assert one[0] is not None and one[1] is not None and one[5] is None
