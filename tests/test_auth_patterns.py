"""Every auth_log pattern against a real captured line, with its expected result."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from collectors.auth import evidence
from collectors.auth.scanner import AuthScanner

FIXTURES = Path(__file__).parent / "fixtures" / "auth_log"
NOW = time.mktime((2026, 11, 23, 12, 0, 0, 0, 0, -1))
F2B_NOW = 1124013600   # fail2ban's frozen "now" for its fixtures (2005-08-14)


def scanned(data: bytes, now: float = NOW) -> AuthScanner:
    scanner = AuthScanner(now)
    scanner.feed(data if data.endswith(b"\n") else data + b"\n")
    return scanner


def corpus_line(path: Path, needle: str) -> bytes:
    """The first line of a corpus file containing ``needle`` (the file is never copied)."""
    for raw in path.read_bytes().splitlines():
        if needle.encode() in raw and not raw.startswith(b"#"):
            return raw.rstrip(b"\r") + b"\n"
    raise AssertionError(f"no line with {needle!r} in {path}")


@pytest.fixture(scope="module")
def debian_tools() -> AuthScanner:
    return scanned((FIXTURES / "debian12_tools.log").read_bytes())


# --- sshd: the hot patterns, on loghub's real OpenSSH log ----------------------------------------
SSH_CASES = [
    # (needle, counter that must be 1 (or N), the address attributed)
    ("Failed password for root from 183.62.140.253", "failed_logins", 1, "183.62.140.253"),
    ("Failed password for invalid user", "failed_logins", 1, None),
    ("message repeated 5 times: [ Failed password", "failed_logins", 5, None),
    ("Failed none for invalid user", "none_probes", 1, None),
    ("Invalid user webmaster from 173.234.31.186", "invalid_users", 1, "173.234.31.186"),
    ("Accepted password for fztu", "accepted_count", 1, None),
]


@pytest.mark.parametrize("needle,counter,expected,address", SSH_CASES)
def test_loghub_sshd_lines(corpus: Path, needle: str, counter: str, expected: int,
                           address: str | None) -> None:
    line = corpus_line(corpus / "loghub" / "OpenSSH" / "OpenSSH_2k.log", needle)
    scanner = scanned(line)
    assert getattr(scanner.counts, counter) == expected
    if address:
        assert scanner.fail_hosts == [address.encode()] * len(scanner.fail_hosts)
    if counter == "failed_logins":
        assert sum(scanner.counts.failed_by_ip.values()) == expected
        assert len(scanner.fail_times) == expected      # each attempt is a window event


def test_accepted_login_fields(corpus: Path) -> None:
    line = corpus_line(corpus / "loghub" / "OpenSSH" / "OpenSSH_2k.log", "Accepted password")
    scanner = scanned(line)
    (login,) = scanner.accepted
    assert (login.user, login.host, login.method) == (b"fztu", b"119.137.62.142", b"password")
    assert time.localtime(login.ts)[1:6] == (12, 10, 9, 32, 20)   # Dec 10 09:32:20
    assert scanner.login_line(login).endswith("port 49116 ssh2")
    assert scanner.counts.failures == 0


# --- sshd: fail2ban's annotated lines for the rarer messages -------------------------------------
F2B_CASES = [
    ("Failed publickey for git from 192.0.2.1", None),              # a key offer: no failure
    ("Failed publickey for invalid user graysky from 127.0.0.1", "127.0.0.1"),
    ("Failed keyboard-interactive for james from 205.186.180.30", "205.186.180.30"),
    ("Failed keyboard-interactive/pam for invalid user", "205.186.180.77"),
    ("Failed hostbased for dan", "127.0.0.1"),
    ("Failed password for invalid user from 10.10.1.1 from 127.0.0.1", "127.0.0.1"),
    ("ROOT LOGIN REFUSED FROM ::ffff:1.2.3.4", "1.2.3.4"),
    ("maximum authentication attempts exceeded for root", "61.0.0.1"),
    ("error: PAM: Authentication failure for test-ipv6",
     "2606:2800:220:1:248:1893:25c8:1946"),
    ("authentication error for james from example.com via", "example.com"),
    ("User not known to the underlying authentication module", "10.215.4.227"),
    ("not allowed because listed in DenyUsers", "46.45.128.3"),
    ("[sshd] User root from 1.2.3.4 not allowed", "1.2.3.4"),
    ("refused connect from", "218.249.210.161"),
    ("Received disconnect from 89.24.13.192: 3:", "89.24.13.192"),
    ("Accepted publickey for git from 192.0.2.1", None),
    ("POSSIBLE BREAK-IN ATTEMPT!", None),
    ("Feb 7 16:01:07 linux-m899", "192.51.100.54"),                   # one-space day
]


@pytest.mark.parametrize("needle,address", F2B_CASES)
def test_fail2ban_single_lines(corpus: Path, needle: str, address: str | None) -> None:
    line = corpus_line(corpus / "fail2ban" / "sshd", needle)
    scanner = scanned(line, F2B_NOW)
    assert scanner.fail_hosts == ([address.encode()] if address else [])
    if address:
        assert scanner.fail_times and scanner.counts.unstamped == 0


def test_multiline_failure_takes_the_address_from_the_same_pid(corpus: Path) -> None:
    """``Disconnecting: Too many authentication failures`` has no address: sshd[pid] links it."""
    text = (corpus / "fail2ban" / "sshd").read_bytes()
    lines = [raw + b"\n" for raw in text.splitlines() if b"sshd[26713]" in raw][:2]
    assert b"Connection from 115.249.163.77" in lines[0]
    assert scanned(b"".join(lines), F2B_NOW).fail_hosts == [b"115.249.163.77"]
    assert scanned(lines[1], F2B_NOW).fail_hosts == []          # alone: nothing to link it to


def test_pending_failure_resolved_by_a_later_line(corpus: Path) -> None:
    """``account is locked`` then ``Received disconnect ...: 11:`` of the same pid is a failure."""
    text = (corpus / "fail2ban" / "sshd").read_bytes()
    lines = b"".join(raw + b"\n" for raw in text.splitlines() if b"sshd[3719]" in raw)
    scanner = scanned(lines, F2B_NOW)
    assert scanner.fail_hosts == [b"198.51.100.34"]
    assert scanner.pending == {}


def test_pam_user_switch_in_one_connection_is_a_failure(corpus: Path) -> None:
    text = (corpus / "fail2ban" / "sshd").read_bytes()
    lines = b"".join(raw + b"\n" for raw in text.splitlines() if b"sshd[1558]" in raw)
    scanner = scanned(lines, F2B_NOW)
    # second user tried, then an accepted login as a third: fail2ban counts both
    assert scanner.fail_hosts == [b"192.0.2.114", b"192.0.2.114"]
    assert scanner.counts.pam_failures == 2 and scanner.counts.accepted_count == 1


# --- other programs: the real Debian 12 capture --------------------------------------------------
def test_sudo_command_and_failures(debian_tools: AuthScanner) -> None:
    c = debian_tools.counts
    assert c.sudo_command_count == 1
    assert c.sudo_commands[0]["user"] == "carol" and c.sudo_commands[0]["run_as"] == "root"
    assert c.sudo_commands[0]["command"] == "/usr/bin/id"
    reasons = [f["reason"] for f in c.sudo_failures]
    assert reasons == ["authentication failure", "user NOT in sudoers", "user NOT in sudoers"]
    assert {f["user"] for f in c.sudo_failures} == {"carol"}
    assert c.sudo_failure_count == 3


def test_su_sessions_and_failure(debian_tools: AuthScanner) -> None:
    c = debian_tools.counts
    assert [(s["user"], s["target"]) for s in c.su_sessions] == [("root", "carol")] * 5
    assert [(f["user"], f["target"]) for f in c.su_failures] == [("carol", "root")]
    assert "FAILED SU (to root) carol on pts/8" in c.su_failures[0]["line"]


def test_accounts_and_passwords(debian_tools: AuthScanner) -> None:
    c = debian_tools.counts
    assert [(u["name"], u["program"]) for u in c.users_created] == [("carol", "useradd")]
    assert [(g["name"], g["program"]) for g in c.groups_created] == [
        ("staffers", "groupadd"), ("carol", "useradd")]
    assert [(p["name"], p["program"]) for p in c.password_changes] == [
        ("carol", "chpasswd"), ("carol", "passwd")]
    assert all(u["ts"] is not None for u in c.users_created)
    assert c.lines == 57 and c.malformed == 0 and c.failures == 0


def test_old_su_pam_session_form(corpus: Path) -> None:
    line = corpus_line(corpus / "loghub" / "Linux" / "Linux_2k.log",
                       "su(pam_unix)[21416]: session opened for user cyrus")
    sessions = scanned(line).counts.su_sessions
    assert [(s["target"], s["user"]) for s in sessions] == [("cyrus", "")]


# --- bad input and limits ------------------------------------------------------------------------
def test_malformed_lines_are_counted_and_nothing_is_lost() -> None:
    good = b"Nov 23 10:00:01 h sshd[1]: Failed password for root from 192.0.2.9 port 1 ssh2\n"
    data = (good + b"Nov 23 10:00:02 h x: \x00\x01binary\n" + b"\xff\xfe broken utf-8\n" + good
            + b"x" * 100_000 + b"\n")
    scanner = scanned(data)
    assert scanner.counts.lines == 5
    assert scanner.counts.malformed == 2
    assert scanner.counts.failed_logins == 2


def test_year_is_inferred_across_new_year() -> None:
    jan_1 = time.mktime((2027, 1, 1, 0, 5, 0, 0, 0, -1))
    line = b"Dec 31 23:59:50 h sshd[1]: Failed password for root from 192.0.2.9 port 1 ssh2\n"
    (ts,) = scanned(line, jan_1).fail_times
    assert time.localtime(ts)[:6] == (2026, 12, 31, 23, 59, 50)


def test_high_precision_and_journal_rendered_stamps() -> None:
    line = (b"2026-11-23T10:00:01.250000+00:00 h sshd[1]: Failed password for root from "
            b"192.0.2.9 port 1 ssh2\n")
    (ts,) = scanned(line).fail_times
    assert ts == pytest.approx(1795428001.25)


def test_evidence_is_bounded_per_address_and_in_addresses() -> None:
    lines = b"".join(
        b"Nov 23 10:00:%02d h sshd[1]: Failed password for root from 10.0.%d.%d port 1 ssh2\n"
        % (i % 60, i // 250, i % 250) for i in range(2 * evidence.MAX_EVIDENCE_HOSTS))
    again = b"Nov 23 10:00:01 h sshd[1]: Failed password for root from 10.0.0.0 port 1 ssh2\n" * 9
    scanner = scanned(lines + again)
    c = scanner.counts
    assert len(c.evidence) == evidence.MAX_EVIDENCE_HOSTS
    assert len(c.evidence["10.0.0.0"]) == 2          # the first and last line of the chunk
    scanner.feed(again)
    assert len(c.evidence["10.0.0.0"]) == evidence.EVIDENCE_PER_HOST
    assert c.failed_logins == 2 * evidence.MAX_EVIDENCE_HOSTS + 18


def test_user_name_with_injected_address_is_attributed_to_the_real_one() -> None:
    line = (b"Nov 23 10:00:01 h sshd[7]: Failed password for invalid user x from 6.6.6.6 port 1 "
            b"ssh2 from 192.0.2.50 port 40000 ssh2\n")
    scanner = scanned(line)
    assert scanner.fail_hosts == [b"192.0.2.50"]
    assert dict(scanner.counts.failed_by_ip) == {b"192.0.2.50": 1}


def test_sudo_refusals_without_a_tty_and_usermod_password() -> None:
    c = scanned((FIXTURES / "debian12_more.log").read_bytes()).counts
    assert [(f["user"], f["reason"]) for f in c.sudo_failures] == [
        ("dave", "authentication failure"), ("dave", "3 incorrect password attempts"),
        ("erin", "command not allowed")]
    assert c.sudo_command_count == 0
    assert [(p["name"], p["program"]) for p in c.password_changes] == [
        ("dave", "usermod"), ("dave", "chpasswd"), ("erin", "chpasswd")]
    assert [u["name"] for u in c.users_created] == ["dave", "erin"]
    assert [(s["user"], s["target"]) for s in c.su_sessions] == [("root", "dave"), ("root", "erin")]
