"""Who an sshd line is about (issue 13): the address sshd wrote, whatever the client sent.

Property tests: user names of arbitrary text (a fake `` from ADDR port N ssh2``, colons, brackets,
a fake ``sshd[1]: Accepted ...``, non-ASCII), any real client address; every message type is
attributed to the real address (or, where sshd's text itself is ambiguous, to nobody), and the
C scanner gives what the regexes give. Then the attack of the issue end to end, pre-auth probing,
and address validation.
"""
from __future__ import annotations

import ipaddress
import itertools
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis import detect_auth
from collectors import auth_log
from collectors.auth.anchor import address_key
from collectors.auth.scanner import AuthScanner
from foundation.context import CollectContext, DetectContext

NOW = time.mktime((2026, 11, 23, 12, 0, 0, 0, 0, -1))
LAN, ATTACKER = "192.168.1.50", "203.0.113.7"
FIXTURES = Path(__file__).parent / "fixtures" / "auth"
FP = "ED25519 SHA256:0mQ3N0kBmX7Tb2sQfYq1T1hW9Jkq0u0m6jz7c6mCq2E"

# every sshd message that names a client-chosen user, as OpenSSH formats it (auth.c auth_log,
# auth.c "Invalid user %.100s from %.100s port %d", packet.c with the log preamble, auth2.c)
TEMPLATES = [
    "Failed password for invalid user {u} from {a} port {p} ssh2",
    "Failed keyboard-interactive/pam for invalid user {u} from {a} port {p} ssh2",
    "Failed none for invalid user {u} from {a} port {p} ssh2",
    "Failed publickey for invalid user {u} from {a} port {p} ssh2: " + FP,
    "message repeated 3 times: [ Failed password for invalid user {u} from {a} port {p} ssh2]",
    "Invalid user {u} from {a} port {p}",
    "Connection closed by invalid user {u} {a} port {p} [preauth]",
    "Connection reset by authenticating user {u} {a} port {p} [preauth]",
    "Disconnected from invalid user {u} {a} port {p} [preauth]",
    "error: maximum authentication attempts exceeded for invalid user {u} from {a} port {p} ssh2 "
    "[preauth]",
    "Disconnecting invalid user {u} {a} port {p}: Change of username or service not allowed: "
    "({u},ssh-connection) -> (root,ssh-connection) [preauth]",
]
HEAD = "Nov 23 10:00:{s:02d} host sshd[{pid}]: "
ATTACK_WORDS = [" from ", "from ", " port ", "22", " ssh2", ": ", "ssh2: ", "[preauth]", "]", "[",
                LAN, "203.0.113.9", "::1", " invalid user ", "sshd[9]: ", "Accepted password for ",
                "root", FP, "é", "ü", "\u202e", "x", " "]
user_names = st.lists(st.sampled_from(ATTACK_WORDS) | st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), max_size=6), max_size=10).map("".join)
client_addresses = st.ip_addresses().map(str).filter(lambda a: not a.startswith("::ffff:"))


def scan(data: bytes, native: bool) -> AuthScanner:
    scanner = AuthScanner(NOW, native=native)
    scanner.feed(data)
    return scanner


def attributed(scanner: AuthScanner) -> set[bytes]:
    """Every address any event of the scan was counted for."""
    c = scanner.counts
    return (set(scanner.fail_hosts) | set(scanner.probe_hosts) | set(c.failed_by_ip)
            | set(c.probes_by_ip) | {login.host for login in scanner.accepted})


def same(native: AuthScanner, python: AuthScanner) -> None:
    assert native.counts == python.counts
    assert (native.fail_times, native.fail_hosts) == (python.fail_times, python.fail_hosts)
    assert (native.probe_times, native.probe_hosts) == (python.probe_times, python.probe_hosts)
    assert native.accepted == python.accepted


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TEMPLATES), user_names, client_addresses, st.integers(1, 65535),
       st.integers(0, 59))
def test_every_message_is_attributed_to_the_real_address(template: str, user: str, address: str,
                                                         port: int, second: int) -> None:
    user = user[:100]                              # sshd: %.100s
    line = (HEAD.format(s=second, pid=4242) + template.format(u=user, a=address, p=port)) + "\n"
    data = line.encode("utf-8", "surrogatepass")
    native, python = scan(data, True), scan(data, False)
    same(native, python)
    real = address_key(address.encode())
    got = attributed(python)
    assert got <= {real}, (line, got)
    if "publickey" not in template and "Change of" not in template:
        assert got == {real}, line            # (a fake key extra or change of user: nobody)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(user_names, client_addresses, st.sampled_from(["root", "alice", "git-backup"]))
def test_a_real_login_is_the_real_address_and_forged_ones_count_nothing(
        user: str, address: str, account: str) -> None:
    """An invalid user's name carrying a whole fake Accepted line is not a login."""
    forged = f"x sshd[9]: Accepted password for {account} from {LAN} port 22 ssh2 {user}"[:100]
    data = (HEAD.format(s=1, pid=7) + f"Invalid user {forged} from {address} port 5\n"
            + HEAD.format(s=2, pid=8)
            + f"Accepted publickey for {account} from {address} port 6 ssh2: {FP}\n"
            ).encode("utf-8", "surrogatepass")
    native, python = scan(data, True), scan(data, False)
    same(native, python)
    real = address_key(address.encode())
    assert [(login.user, login.host) for login in python.accepted] == [(account.encode(), real)]
    assert attributed(python) == {real}


def test_change_of_username_is_anchored_on_both_copies_of_the_user() -> None:
    """sshd writes the user twice (preamble and parentheses): a fake tail in the name does not
    move the address; a name that makes two readings name two addresses counts for nobody."""
    fake = ("x 192.168.1.50 port 22: Change of username or service not allowed: (y,s) -> (z,s)")
    tail = ": Change of username or service not allowed: ({u},ssh-connection) -> (root,s) [preauth]"
    line = (HEAD.format(s=1, pid=5) + f"Disconnecting invalid user {fake} {ATTACKER} port 40000"
            + tail.format(u=fake) + "\n").encode()
    native, python = scan(line, True), scan(line, False)
    same(native, python)
    assert python.fail_hosts == [ATTACKER.encode()]
    twice = "a 192.168.1.50 port 1: Change of username or service not allowed: (a,"
    line = (HEAD.format(s=2, pid=6) + f"Disconnecting invalid user {twice} {ATTACKER} port 2"
            + tail.format(u=twice) + "\n").encode()
    python = scan(line, False)
    assert python.fail_hosts == [] and python.counts.unattributed == 1


def issue_lines(start: float, user: str, address: str, count: int) -> list[str]:
    stamp = time.strftime("%b %e %H:%M:%S", time.localtime(start))
    return [f"{stamp} host sshd[{100 + i}]: Failed password for invalid user {user} from "
            f"{address} port {40000 + i} ssh2" for i in range(count)]


def cycle(tmp_path: Path, make_settings: Any, store: Any, lines: list[str]) -> list[Any]:
    log = tmp_path / "auth.log"
    log.write_text("\n".join(lines) + "\n")
    settings = make_settings(AUTH_LOG_PATH=log, AUTH_LOG_BACKEND="file", LOG_START_AT="start")
    result = auth_log.collect(CollectContext(settings, NOW, {}))
    return detect_auth.detect(result, DetectContext(settings, NOW, store))


def stamp(ts: float) -> str:
    return time.strftime("%b %e %H:%M:%S", time.localtime(ts))


def test_the_issue_attack_blames_the_attacker_not_the_lan(tmp_path: Path, make_settings: Any,
                                                          store: Any) -> None:
    """Issue 13's line, six times, then the operator's own login from the LAN address and the
    attacker's from theirs: only the attacker's is login_after_failures."""
    fake = f"x from {LAN} port 22 ssh2: y"
    t0 = NOW - 900
    lines = issue_lines(t0, fake, ATTACKER, 6)
    lines.append(f"{stamp(t0 + 60)} host sshd[300]: Accepted publickey for admin from {LAN} port "
                 f"50000 ssh2: {FP}")
    lines.append(f"{stamp(t0 + 90)} host sshd[301]: Accepted password for root from {ATTACKER} "
                 f"port 50001 ssh2")
    found = cycle(tmp_path, make_settings, store, lines)
    after = {f.labels["address"]: f for f in found if f.kind == "login_after_failures"}
    assert set(after) == {ATTACKER}
    assert after[ATTACKER].floor.value == "high"
    brute = {f.key for f in found if f.kind == "ssh_bruteforce"}
    assert brute == {ATTACKER}


def test_six_preauth_disconnects_then_a_key_login_is_login_after_failures(
        tmp_path: Path, make_settings: Any, store: Any) -> None:
    """The issue's acceptance example (password logins off: what bots write)."""
    t0, bot = NOW - 900, "198.51.100.23"
    lines = [f"{stamp(t0 + 10 * i)} host sshd[{500 + i}]: Disconnected from authenticating user "
             f"root {bot} port {41000 + i} [preauth]" for i in range(6)]
    lines.append(f"{stamp(t0 + 70)} host sshd[510]: Accepted publickey for root from {bot} port "
                 f"41010 ssh2: {FP}")
    found = cycle(tmp_path, make_settings, store, lines)
    kinds = {f.kind: f for f in found}
    assert kinds["login_after_failures"].labels["address"] == bot
    assert kinds["ssh_preauth_probing"].key == bot
    assert "ssh_bruteforce" not in kinds                  # no password failure at all


def test_a_user_offering_two_wrong_keys_stays_quiet(tmp_path: Path, make_settings: Any,
                                                     store: Any) -> None:
    """A normal day: the client offers two keys sshd refuses, then the right one, 20 times."""
    t0, lines = NOW - 80_000, []
    for n in range(20):
        at = t0 + 3600 * n
        lines += [f"{stamp(at)} host sshd[{900 + n}]: Failed publickey for alice from 192.168.1.20 "
                  f"port {50000 + n} ssh2: RSA SHA256:AAAAB3NzaC1yc2EAAAADAQAB{k}"
                  for k in range(2)]
        lines.append(f"{stamp(at + 1)} host sshd[{900 + n}]: Accepted publickey for alice from "
                     f"192.168.1.20 port {50000 + n} ssh2: {FP}")
        lines.append(f"{stamp(at + 600)} host sshd[{900 + n}]: Disconnected from user alice "
                     f"192.168.1.20 port {50000 + n}")
    found = cycle(tmp_path, make_settings, store, lines)
    assert [f.kind for f in found if f.severity.value == "high"] == []
    assert not {"ssh_bruteforce", "ssh_preauth_probing"} & {f.kind for f in found}


def test_preauth_fixture_samples_both_paths() -> None:
    """Every sample of tests/fixtures/auth/preauth.log (real formats, provenance inside)."""
    expect, checked = None, 0
    for raw in (FIXTURES / "preauth.log").read_bytes().splitlines(keepends=True):
        if raw.startswith(b"# probe: "):
            expect = raw[9:].strip().decode()
            continue
        if raw.startswith(b"#") or expect is None:
            continue
        native, python = scan(raw, True), scan(raw, False)
        same(native, python)
        want = {} if expect == "-" else {expect.encode(): 1}
        assert dict(python.counts.probes_by_ip) == want, raw
        assert python.fail_hosts == []                   # probes are not password failures
        expect, checked = None, checked + 1
    assert checked >= 19


def test_fail2ban_preauth_lines_give_the_annotated_host(corpus: Path) -> None:
    """fail2ban's own annotations for the lines its ddos/aggressive modes count."""
    lines = (corpus / "fail2ban" / "sshd").read_text(encoding="utf-8").splitlines()
    import json
    checked = 0
    for note, line in itertools.pairwise(lines):
        if not note.startswith("# failJSON:") or line.startswith("#"):
            continue
        expect = json.loads(note[len("# failJSON:"):])
        scanner = scan(line.encode() + b"\n", False)
        if scanner.counts.probes and expect.get("host"):
            assert list(scanner.counts.probes_by_ip) == [expect["host"].encode()], line
            checked += 1
    assert checked >= 10


def test_addresses_are_validated_once_for_both_paths() -> None:
    assert address_key(b"2001:db8::a11:beef:7ac0%eth0") == b"2001:db8::a11:beef:7ac0"
    assert address_key(b"2001:DB8:0::1") == b"2001:db8::1"
    assert address_key(b"::ffff:1.2.3.4") == b"1.2.3.4"
    assert address_key(b"1.2.3.4:") == b"1.2.3.4"               # old "from ADDR: 3: ..."
    assert address_key(b"n219076184117.netvigator.com") == b"n219076184117.netvigator.com"
    for word in (b"183.106.179.x", b"1.2.3.4.5", b"999.1.1.1", b"x;rm", b"-bad", b"a..b",
                 b"host%eth0", b"fe80::1%", b"", b"1.2.3"):
        assert address_key(word) is None, word
    lines = b"".join(HEAD.format(s=i, pid=i).encode() + body for i, body in enumerate([
        b"Invalid user admin from 183.106.179.x port 22\n",
        b"Failed password for root from 183.106.179.x port 22 ssh2\n",
        b"Did not receive identification string from fe80::1%eth0\n",
        b"Did not receive identification string from fe80::1%wlan0\n"]))
    native, python = scan(lines, True), scan(lines, False)
    same(native, python)
    assert attributed(python) == {b"fe80::1"}                  # one key for both zones
    assert python.counts.probes_by_ip == {b"fe80::1": 2}
    assert python.counts.unattributed == 2 and python.counts.failed_logins == 1
    assert python.counts.evidence["fe80::1"][0].endswith("fe80::1%eth0")   # shown as written
    assert ipaddress.ip_address("fe80::1")                      # the key is an address


def test_old_pam_unix_failures_of_loghub_linux(corpus: Path) -> None:
    """loghub Linux_2k (2005): "sshd(pam_unix)[pid]: authentication failure; ... rhost=X" is the
    only failure record; each is an event of its rhost (DNS names as sshd wrote them)."""
    import re
    from collections import Counter
    data = (corpus / "loghub" / "Linux" / "Linux_2k.log").read_bytes() + b"\r\n"
    truth = Counter(m.group(1) for m in re.finditer(
        rb"sshd\(pam_unix\)\[\d+\]: authentication failure;[^\r\n]*? rhost=(\S+)", data))
    assert sum(truth.values()) == 489
    native, python = scan(data, True), scan(data, False)
    same(native, python)
    assert Counter(python.fail_hosts) == truth
    assert b"n219076184117.netvigator.com" in truth and python.counts.unattributed == 0
