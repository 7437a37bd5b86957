"""The C scanner (collectors/auth/_authscan.c) against the regexes alone: the same results, always.

The C code only sorts lines: a line of a pattern's common shape is parsed in C, any other goes to
the pattern's regex. So every test here runs the auth extraction twice, with and without it, and
wants everything equal: counts, per-address totals, window events with their times, accepted
logins, pending multi-line connections. Two tests check the C side really takes the fast path
(else the comparisons would pass with the C code doing nothing).
"""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.auth import _authscan  # built by make (make native): missing is a failure here
from collectors.auth.scanner import AuthScanner
from collectors.auth.times import stamp_keys

NOW = time.mktime((2026, 11, 23, 12, 0, 0, 0, 0, -1))
STAMP = "Nov 23 10:00:{:02d} host "


def run(chunks: list[bytes], native: bool, now: float = NOW) -> tuple[Any, ...]:
    """Everything the scanner gives the collector, chunk by chunk."""
    scanner = AuthScanner(now, native=native)
    per_chunk = []
    for chunk in chunks:
        scanner.feed(chunk)
        per_chunk.append((scanner.fail_times, scanner.fail_hosts,
                          [(*login[:4], scanner.login_line(login)) for login in scanner.accepted]))
        scanner.fail_times, scanner.fail_hosts = [], []
    return scanner.counts, scanner.pending, per_chunk


def assert_same(chunks: list[bytes], now: float = NOW) -> None:
    native, python = run(chunks, True, now), run(chunks, False, now)
    assert native[0] == python[0]
    assert native[1:] == python[1:]


def chunked(data: bytes, size: int) -> list[bytes]:
    """Whole-line chunks of about ``size`` bytes, as the Tail hands them out."""
    out, start = [], 0
    while start < len(data):
        end = data.rfind(b"\n", start, start + size) + 1
        end = end if end > start else len(data)
        out.append(data[start:end])
        start = end
    return out


def test_real_logs_agree(corpus: Path) -> None:
    for path, now in ((corpus / "loghub" / "OpenSSH" / "OpenSSH_2k.log", NOW),
                      (corpus / "loghub" / "Linux" / "Linux_2k.log", NOW),
                      (corpus / "fail2ban" / "sshd", 1124013600.0),
                      (corpus / "fail2ban" / "sshd-journal", 1124013600.0)):
        data = path.read_bytes()
        data = data if data.endswith(b"\n") else data + b"\n"
        for size in (1 << 20, 4096, 300):
            assert_same(chunked(data, size), now)


def test_generated_log_agrees_and_takes_the_fast_path(tmp_path: Path) -> None:
    from bench.auth_ingest import generate
    generate(tmp_path / "auth.log", 3 << 20)
    data = (tmp_path / "auth.log").read_bytes()
    assert_same(chunked(data, 1 << 20), 1_793_000_000.0 + 200_000)
    (lines, clean), failed, invalid, sshd, commands, slow, _ = _authscan.scan(chunked(data, 1 << 20)[0])
    assert lines > 5000 and clean
    assert len(failed[2]) > 0.1 * lines and len(invalid[2]) > 0.02 * lines   # fields in C
    assert len(sshd[2]) > 0.05 * lines and len(commands) > 0
    assert sum(len(s) for s in slow) / 8 < 0.001 * lines          # almost nothing left to regexes


def test_fields_of_the_common_shapes() -> None:
    chunk = (b"Nov 23 10:00:01 h sshd[12]: Failed password for root from 1.2.3.4 port 22 ssh2\n"
             b"Nov 23 10:00:02 h sshd[12]: Failed none for invalid user x from 1.2.3.5 port 2 ssh2\n"
             b"Nov 23 10:00:03 h sshd[13]: Invalid user bob from 5.6.7.8 port 2\n"
             b"Nov 23 10:00:04 h sshd[14]: pam_unix(sshd:auth): authentication failure; logname= "
             b"uid=0 euid=0 tty=ssh ruser= rhost=9.9.9.9  user=root\n"
             b"Nov 23 10:00:05 h sshd[15]: Accepted publickey for al from 10.0.0.2 port 5 ssh2\n"
             b"Nov 23 10:00:06 h sudo:    al : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/ls\n"
             b"Nov 23 10:00:07 h sshd[16]: ROOT LOGIN REFUSED FROM 7.7.7.7\n")
    (lines, clean), failed, invalid, sshd, commands, slow, _ = _authscan.scan(chunk)
    assert (lines, clean) == (7, True)
    assert _authscan.scan(chunk + b"\x00\n")[0] == (8, False)
    assert _authscan.scan(b"\xc3\xa9\n")[0] == (1, False)
    assert failed[1:] == (bytes([0, 3]), [b"1.2.3.4", b"1.2.3.5"])
    assert invalid[1:] == ([b"bob"], [b"5.6.7.8"])
    assert sshd[1:] == (bytes([0, 1]), [b"14", b"15"], [b"root", b"al"], [b"9.9.9.9", b"10.0.0.2"],
                        [b"", b"publickey"])
    assert np.frombuffer(commands, np.int64).tolist() == [chunk.index(b"Nov 23 10:00:06")]
    assert [np.frombuffer(s, np.int64).tolist() for s in slow] == [
        [], [], [chunk.index(b"Nov 23 10:00:07")], [], []]
    assert_same([chunk])


# --- generated lines: every shape the C code tells apart, and the ones beside them ---------------
HEADS = ["sshd[123]: ", "sshd]: ", "sshd] ", "sshd-session[9]: ", "sshd[12] ", "sshd[]: ",
         "sudo: ", "sudo:    ", "su[4]: ", "su(pam_unix)[5]: ", "su: ", "pseudo: ", "-su: ",
         "useradd[7]: ", "groupadd[8]: ", "passwd[1]: ", "chpasswd[2]: ", "usermod[3]: ", ""]
PREFIXES = ["", "", "", "error: ", "fatal: ", "error: PAM: ", "PAM: ", "error: error: "]
HOSTS = ["1.2.3.4", "::ffff:1.2.3.4", "::1", "2001:db8::1", "host-a.example", "1.2.3.4:",
         "x", "", "1.2.3.4%eth0", "-bad"]
USERS = ["root", "invalid user x", "invalid user", "", "a b", "Failed", "from", "ü", "x\t"]
TAILS = ["", " port 22", " port 22 ssh2", " ssh2", " port x", " port 22 ssh2: RSA SHA256:ab",
         " port 22 ssh2]", " on eth0", " port 22 ssh2 extra", "  \r", " port 22 sshd", ":11: Bye",
         ":3: x: Auth fail", " [preauth]", "\t", " port 22:3: ", "\x00", "\xff"]
MESSAGES = [
    "Failed {m} for {u} from {h}{t}", "Invalid user {u} from {h}{t}",
    "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser={u} "
    "rhost={h}{t}", "pam_unix(sshd:auth): authentication failure; ruser={u} rhost={h}  user={u}",
    "Accepted {m} for {u} from {h}{t}", "message repeated 3 times: [ Failed {m} for {u} from {h}{t}]",
    "Received disconnect from {h}{t}", "ROOT LOGIN REFUSED FROM {h}",
    "maximum authentication attempts exceeded for {u} from {h}{t}",
    "Authentication failure for {u} from {h}", "User {u} from {h} not allowed because none",
    "refused connect from {h} ({h})", "Disconnecting: Too many authentication failures{t}",
    "Disconnecting invalid user {u} {h}{t}: Change of username", "Connection closed by {h}{t}",
    "{u} : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/{u}",
    "{u} : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/ls",
    "pam_unix(sudo:auth): authentication failure; logname={u} uid=1 ruser={u} rhost= user={u}",
    "pam_unix(sudo:session): session opened for user root", "FAILED SU (to root) {u} on pts/0",
    "(to root) {u} on pts/1", "new user: name={u}, UID=1001", "new group: name={u}, GID=1001",
    "password changed for {u}", "{h}", "sshd[5]: {m}"]
HOST_NAMES = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=10)
METHODS = ["password", "publickey", "none", "keyboard-interactive", "keyboard-interactive/pam",
           "hostbased", ""]


@st.composite
def auth_line(draw: st.DrawFn) -> str:
    message = draw(st.sampled_from(MESSAGES)).format(
        m=draw(st.sampled_from(METHODS)), u=draw(st.sampled_from(USERS)),
        h=draw(st.sampled_from(HOSTS)), t=draw(st.sampled_from(TAILS)))
    stamp = STAMP.format(draw(st.integers(0, 59)))
    if draw(st.booleans()):                   # another host name, or none, or other stamps
        stamp = draw(st.sampled_from(["Nov 23 10:00:01 ", "2026-11-23T10:00:01.5+00:00 ",
                                      "<38>1 2026-11-23T10:00:01Z ", "<38>Nov  3 10:00:01 "]))
        stamp += draw(st.sampled_from(["", "sshd ", "sshd-gw ", "mysshd ", "box.sshd.lan ",
                                       "a: ", "[x] ", "::1 "]) | HOST_NAMES.map(lambda h: h + " "))
    line = (draw(st.sampled_from(["", stamp, "<38>"]))
            + draw(st.sampled_from(HEADS)) + draw(st.sampled_from(PREFIXES)) + message)
    if draw(st.booleans()):                   # a second message in the same line
        line += " " + draw(st.sampled_from(HEADS)) + draw(st.sampled_from(MESSAGES)).format(
            m="password", u="root", h="9.8.7.6", t=" port 1 ssh2")
    return line + draw(st.sampled_from(["", "", "\r", " ", "\t"]))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(auth_line(), min_size=1, max_size=12))
def test_generated_lines_agree(lines: list[str]) -> None:
    data = "\n".join(lines).encode("utf-8", "surrogateescape") + b"\n"
    assert_same([data])
    assert_same(chunked(data, 64))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_agree(data: bytes) -> None:
    assert_same([data + b"\n"])
    _authscan.scan(data)                      # no newline at the end: must not read past it


def test_stamp_keys_match_numpy() -> None:
    rng = random.Random(5)
    lines = [STAMP.format(rng.randint(0, 59)).encode() + b"sshd[1]: x" for _ in range(50)]
    lines += [b"Feb  7 16:01:07 h x", b"Nov 23 25:99:99 h y", b"2026-11-23T10:00:00 h z",
              b"Nov 23 10:0", b"<38>Nov 23 10:00:01 h", bytes(rng.randrange(256) for _ in range(20))]
    chunk = b"\n".join(lines)
    line_starts = [0] + [i + 1 for i, byte in enumerate(chunk) if byte == 10]
    starts = np.array(sorted({*line_starts, *(rng.randrange(len(chunk)) for _ in range(300)),
                              len(chunk) - 3}), dtype=np.int64)
    native = np.frombuffer(_authscan.stamp_keys(chunk, starts.tobytes()), dtype=np.int64)
    assert (native == stamp_keys(chunk, starts)).all()
    assert (native >= 0).sum() >= 51                  # the 50 stamps and "Feb  7", at least


def test_collector_without_the_c_scanner_gives_the_same(corpus: Path, tmp_path: Path,
                                                       make_settings: Any, monkeypatch: Any,
                                                       caplog: Any) -> None:
    """A machine where make native did not run: same observations, a warning, scanner "regex"."""
    from collectors import auth_log
    from collectors.auth import scanner
    from foundation.context import CollectContext
    log = tmp_path / "auth.log"
    log.write_bytes((corpus / "loghub" / "OpenSSH" / "OpenSSH_2k.log").read_bytes() + b"\n")
    settings = make_settings(AUTH_LOG_PATH=log, AUTH_LOG_BACKEND="file", LOG_START_AT="start")
    with_c = auth_log.collect(CollectContext(settings, NOW, {})).observations
    monkeypatch.setattr(scanner, "_authscan", None)
    monkeypatch.setattr(auth_log, "_WARNED", [])
    without = auth_log.collect(CollectContext(settings, NOW, {})).observations
    assert (with_c.pop("scanner"), without.pop("scanner")) == ("c", "regex")
    assert with_c == without and with_c["failed_logins"] == 528
    assert "make native" in caplog.text


def test_stamp_keys_bounds_any_start() -> None:
    """Found by make fuzz: a start near 2**63 wrapped the bounds check; unaligned starts are UB."""
    import struct
    chunk = b"Nov 23 10:00:01 h sshd[1]: x\n"
    starts = struct.pack("<5q", 0, -1, len(chunk) - 14, 2**63 - 1, -(2**63))
    assert np.frombuffer(_authscan.stamp_keys(chunk, starts), np.int64).tolist()[1:] == [-1] * 4
    unaligned = memoryview(b"\0" + struct.pack("<q", 0))[1:]
    assert np.frombuffer(_authscan.stamp_keys(chunk, unaligned), np.int64)[0] >= 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.ip_addresses(v=4).map(str) | st.from_regex(r"[0-9.]{1,17}", fullmatch=True)
                | st.text(max_size=12), max_size=20))
def test_plain_ipv4_tokens_are_their_own_key(tokens: list[str]) -> None:
    """The C scanner's odd_addresses: every token it leaves out is an address whose key is the
    token itself (so the collector need not key it), and every real IPv4 address is left out."""
    from collectors.auth.anchor import address_key
    raw = [t.encode("utf-8", "surrogatepass") for t in tokens]
    odd = set(_authscan.odd_addresses(raw))
    for i, token in enumerate(raw):
        if i not in odd:
            assert address_key(token) == token
    assert _authscan.odd_addresses([b"1.2.3.4", b"255.255.255.255", b"0.0.0.0", b"01.2.3.4",
                                    b"256.1.1.1", b"::1", b"1.2.3", b"1.2.3.4.5", b"1.2.3.4 ",
                                    b"host"]) == [3, 4, 5, 6, 7, 8, 9]
