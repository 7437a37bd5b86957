"""su refusals of other systems and eras (BSD and AIX ``BAD SU``, old and new pam_unix records),
counted as su failures for the user fields su and PAM write; real samples with provenance in
tests/fixtures/auth/su.log. Both scanner paths give the same."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from collectors.auth.scanner import AuthScanner

NOW = time.mktime((2026, 11, 23, 12, 0, 0, 0, 0, -1))
FIXTURE = Path(__file__).parent / "fixtures" / "auth" / "su.log"


def samples() -> list[tuple[str, tuple[str, str] | None]]:
    out, expected = [], None
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        if line.startswith("# su_failure: "):
            value = line.split(": ", 1)[1].split()
            expected = None if value == ["-"] else (value[0], value[1])
        elif line and not line.startswith("#"):
            out.append((line, expected))
    return out


def failures(data: bytes, native: bool) -> list[tuple[str, str]]:
    scanner = AuthScanner(NOW, native=native)
    scanner.feed(data)
    return [(e["user"], e["target"]) for e in scanner.counts.su_failures]


@pytest.mark.parametrize("native", [True, False])
def test_every_sample_alone(native: bool) -> None:
    for line, expected in samples():
        if expected is not None:
            assert failures(line.encode() + b"\n", native) == [expected], line


@pytest.mark.parametrize("native", [True, False])
def test_the_whole_file_counts_each_attempt_once(native: bool) -> None:
    """PAM's record and su's verdict on one attempt (same caller and target) are one failure."""
    data = "".join(line + "\n" for line, _ in samples()).encode()
    want = [e for _, e in samples() if e is not None]
    assert failures(data, native) == want
    assert len(want) == 7


def test_user_names_come_from_the_fields_not_from_text() -> None:
    """A target or tty carrying fake fields does not move who the failure is about."""
    line = (b"Nov 23 10:00:01 h su(pam_unix)[5]: authentication failure; logname= uid=1000 "
            b"euid=0 tty=pts/0 ruser=alice rhost=  user=root ruser=mallory\n"
            b"Nov 23 10:00:02 h logger: su: BAD SU mallory to root\n"
            b"Nov 23 10:00:03 h su[6]: session opened: BAD SU eve to root\n")
    assert failures(line, True) == failures(line, False) == [("alice", "root")]
