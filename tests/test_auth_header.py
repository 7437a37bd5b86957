"""sshd's tag is read at the syslog header's program position, in the C scanner and the regexes.

A machine whose host name contains ``sshd`` (``sshd``, ``sshd-gw``, ``mysshd``, ``box.sshd.lan``)
logs its sshd lines like any other; text shaped like a tag anywhere else on the line (another
program's message, a client's user name) is not sshd's. Every header form the collector reads:
traditional syslog (two-digit, space-padded and one-space days), rsyslog's high-precision ISO
stamps, RFC 5424, and journal entries as collectors.logreader.journal renders them.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.auth.scanner import AuthScanner
from collectors.logreader.journal import render_entry

NOW = time.mktime((2026, 11, 23, 12, 0, 0, 0, 0, -1))
HOST_NAMES = ["sshd", "sshd-gw", "mysshd", "box.sshd.lan", "homeserver"]
ADDRESS = "203.0.113.7"


def journal(host: str, pid: int, message: str) -> str:
    """The line collectors.logreader.journal hands the collector for an sshd entry of ``host``."""
    line = render_entry({"MESSAGE": message, "__REALTIME_TIMESTAMP": str(int(NOW - 60) * 10**6),
                         "SYSLOG_IDENTIFIER": "sshd", "_PID": str(pid), "_HOSTNAME": host,
                         "_UID": "0"})  # sshd logs as root (journal.WRITERS)
    assert line is not None
    return line.decode().rstrip("\n")


FORMATS: dict[str, Callable[[str, int, str], str]] = {
    "traditional": lambda h, pid, m: f"Nov 23 10:00:01 {h} sshd[{pid}]: {m}",
    "space-padded day": lambda h, pid, m: f"Nov  3 10:00:01 {h} sshd[{pid}]: {m}",
    "one-space day": lambda h, pid, m: f"Nov 3 10:00:01 {h} sshd[{pid}]: {m}",
    "high precision": lambda h, pid, m: f"2026-11-23T10:00:01.250000+00:00 {h} sshd[{pid}]: {m}",
    "sshd-session": lambda h, pid, m: f"Nov 23 10:00:01 {h} sshd-session[{pid}]: {m}",
    "RFC 5424": lambda h, pid, m: f"<38>1 2026-11-23T10:00:01.250Z {h} sshd {pid} - - {m}",
    "journal": journal,
}
MESSAGES = {   # message -> what it must add: (failures, failed logins, probes, accepted)
    f"Failed password for root from {ADDRESS} port 40000 ssh2": (1, 1, 0, 0),
    f"Failed password for invalid user a b from {ADDRESS} port 40000 ssh2": (1, 1, 0, 0),
    f"Invalid user oracle from {ADDRESS} port 40001": (1, 0, 0, 0),
    f"Disconnected from authenticating user root {ADDRESS} port 40002 [preauth]": (0, 0, 1, 0),
    f"Accepted publickey for alice from {ADDRESS} port 40003 ssh2: ED25519 SHA256:abc": (0, 0, 0,
                                                                                       1),
}


def scan(data: bytes, native: bool) -> AuthScanner:
    scanner = AuthScanner(NOW, native=native)
    scanner.feed(data)
    return scanner


def outcome(scanner: AuthScanner) -> tuple[int, int, int, int]:
    c = scanner.counts
    return c.failures, c.failed_logins, c.probes, c.accepted_count


def both(data: bytes) -> AuthScanner:
    """The scan by the C scanner, checked equal to the regexes' alone."""
    native, python = scan(data, True), scan(data, False)
    assert native.counts == python.counts
    assert (native.fail_times, native.fail_hosts) == (python.fail_times, python.fail_hosts)
    assert (native.probe_times, native.probe_hosts) == (python.probe_times, python.probe_hosts)
    assert native.accepted == python.accepted
    return native


@pytest.mark.parametrize("host", HOST_NAMES)
@pytest.mark.parametrize("form", list(FORMATS))
@pytest.mark.parametrize("message", list(MESSAGES))
def test_host_names_holding_sshd_do_not_hide_sshd_lines(host: str, form: str,
                                                         message: str) -> None:
    line = FORMATS[form](host, 4242, message) + "\n"
    scanner = both(line.encode())
    assert outcome(scanner) == MESSAGES[message], line
    hosts = set(scanner.fail_hosts) | set(scanner.probe_hosts) | {a.host for a in scanner.accepted}
    assert hosts == {ADDRESS.encode()}


def test_the_fast_path_takes_those_lines() -> None:
    """The C scanner parses them itself (the comparisons above would pass if it sent all slow)."""
    from collectors.auth import _authscan
    data = "".join(FORMATS["traditional"](h, 7, m) + "\n" for h in HOST_NAMES
                   for m in MESSAGES if not m.startswith("Failed password for invalid user a b"))
    _lines, failed, invalid, sshd, _sudo, slow, probes = _authscan.scan(data.encode())
    assert len(failed[2]) == len(invalid[2]) == len(HOST_NAMES)
    assert len(sshd[4]) == len(probes[1]) == len(HOST_NAMES)       # the login; the probe
    assert all(not raw for raw in slow)


TAG_ELSEWHERE = [   # sshd-shaped text not at the program position: no event
    "Nov 23 10:00:01 box cron[5]: sshd[1]: Failed password for root from 203.0.113.7 port 1 ssh2",
    "Nov 23 10:00:01 cron: sshd[1]: Failed password for root from 203.0.113.7 port 1 ssh2",
    "Nov 23 10:00:01 box mysshd[1]: Failed password for root from 203.0.113.7 port 1 ssh2",
    "Nov 23 10:00:01 box sshd-gw[1]: Invalid user x from 203.0.113.7 port 1",
    "Nov 23 10:00:01 box logger: [sshd] Invalid user x from 203.0.113.7 port 1",
    "2026-11-23T10:00:01.250000+00:00 box kernel: sshd[2]: Disconnected from authenticating user "
    "root 203.0.113.7 port 2 [preauth]",
    "<38>1 2026-11-23T10:00:01Z box cron 55 - - sshd[1]: Failed password for root from "
    "203.0.113.7 port 1 ssh2",
    "Nov 23 10:00:01 box sshd[7]: Invalid user Nov 23 10:00:02 box sshd[8]: Accepted password "
    "for root from 192.168.1.50 port 22 ssh2 from 203.0.113.7 port 3",
]


@pytest.mark.parametrize("line", TAG_ELSEWHERE)
def test_a_tag_elsewhere_on_the_line_is_text(line: str) -> None:
    scanner = both((line + "\n").encode())
    assert scanner.counts.accepted_count == 0
    if "Invalid user Nov" in line:            # the real message: attributed to its real address
        assert scanner.fail_hosts == [ADDRESS.encode()]
    else:
        assert outcome(scanner) == (0, 0, 0, 0), line


PAM_MESSAGES = ("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
                "rhost=203.0.113.7  user=root",
                "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=203.0.113.7")

# host tokens of any shape: real names, ones holding "sshd", and tokens that are no host
host_tokens = st.one_of(
    st.sampled_from([*HOST_NAMES, "sshd[1]:", "sshd:", "[sshd]", "a:", "::1", "fe80::", "x]", "<38>",
                     "Nov", "1", "sshd-session", "-"]),
    st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12))
stamps = st.sampled_from(["Nov 23 10:00:01 ", "Nov  3 10:00:01 ", "Nov 3 10:00:01 ",
                          "2026-11-23T10:00:01.250000+00:00 ", "2026-11-23 10:00:01 ",
                          "<38>Nov 23 10:00:01 ", "<38>1 2026-11-23T10:00:01Z ", "", "<38>"])
tags = st.sampled_from(["sshd[42]: ", "sshd-session[42]: ", "[sshd]: ", "[sshd] ", "sshd 42 - - ",
                        "sshd(pam_unix)[42]: ", "sshd: ", "sshd]: ", "cron[1]: ", ""])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(stamps, st.lists(host_tokens, max_size=2), tags,
                          st.sampled_from([*MESSAGES, *PAM_MESSAGES])), min_size=1, max_size=8))
def test_random_host_names_c_and_regexes_agree(rows: list[tuple[str, list[str], str, str]]
                                               ) -> None:
    data = "".join(stamp + "".join(h + " " for h in hosts) + tag + message + "\n"
                   for stamp, hosts, tag, message in rows)
    both(data.encode())


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,30}[A-Za-z0-9])?", fullmatch=True),
       st.sampled_from(list(FORMATS)), st.sampled_from(list(MESSAGES)))
def test_any_real_host_name_is_read(host: str, form: str, message: str) -> None:
    line = FORMATS[form](host, 99, message) + "\n"
    assert outcome(both(line.encode())) == MESSAGES[message], line
