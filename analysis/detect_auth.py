"""Findings from the auth log: brute force, a login after failures, new login sources, sudo, users.

The window arithmetic is done by the collector (it holds the failure times across cycles); the
rows here turn its observations into findings. User names, addresses and lines are untrusted text:
they go into labels and evidence only, never into a kind or an instruction.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from analysis.kinds import KindSpec
from foundation.context import DetectContext
from foundation.model import CollectResult, Finding, Severity

SOURCE = "auth_log"
SOURCES_NAMESPACE = "auth.login_source"
MAX_EVIDENCE = 5
MAX_FINDINGS_PER_KIND = 20

KINDS = (
    KindSpec("ssh_bruteforce", SOURCE, Severity.MEDIUM, Severity.NONE,
             "Repeated failed SSH logins from one address",
             "Background noise for a server on the internet: check that password logins are off "
             "(PasswordAuthentication no) or that fail2ban bans the address; mute it in "
             "known_issues.json if it is expected.",
             name="SSH password guessing",
             says="{count} failed SSH logins from {address} in {minutes:g} min",
             speaks="{count} failed SSH logins from one address in {minutes:g} minutes.",
             cleared="No more failed SSH logins from {address}",
             example={"count": 40, "minutes": 10, "address": "203.0.113.7"}),
    KindSpec("ssh_preauth_probing", SOURCE, Severity.MEDIUM, Severity.NONE,
             "Repeated SSH connections from one address that gave up or were cut off before "
             "authenticating",
             "What bots do to a server with password logins off: usually background noise. Check "
             "that PasswordAuthentication is no and that the address is banned (fail2ban's "
             "aggressive mode, CrowdSec ssh-bf) or PerSourcePenalties is on; mute it in "
             "known_issues.json if it is expected.",
             name="SSH probing",
             says="{count} SSH connections from {address} ended before logging in, in "
                  "{minutes:g} min",
             speaks="{count} SSH connections from one address in {minutes:g} minutes, none "
                    "logged in.",
             cleared="The SSH probing from {address} stopped",
             example={"count": 25, "minutes": 10, "address": "198.51.100.23"}),
    KindSpec("login_after_failures", SOURCE, Severity.HIGH, Severity.HIGH,
             "A successful login from an address that had just failed repeatedly",
             "Treat as a possible break-in: check `last`/`who`, the user's sessions and processes, "
             "change that user's password or keys, and block the address.", event=True,
             name="Login after failed attempts",
             says="{user} logged in from {address} after {failures:plural:failed attempt}",
             speaks="Someone logged in after {failures:plural:failed attempt} from the same "
                    "address.",
             example={"failures": 12, "user": "root", "address": "203.0.113.7"}),
    KindSpec("new_login_source", SOURCE, Severity.MEDIUM, Severity.NONE,
             "A user logged in from an address never seen before",
             "Confirm with the user that the login was theirs (travel, new network); if not, "
             "treat as a compromised account.", event=True,
             name="Login from a new address",
             says="{user} logged in from {address}, an address never seen before",
             speaks="A user logged in from an address never seen before.",
             example={"user": "alice", "address": "198.51.100.4"}),
    KindSpec("sudo_failure", SOURCE, Severity.MEDIUM, Severity.NONE,
             "sudo refused a user (wrong password, not in sudoers, command not allowed)",
             "Ask the user; repeated refusals for an account that should not use sudo suggest "
             "someone is trying to escalate privileges.", event=True,
             name="sudo refused", says="sudo refused {user} {times:plural:time}",
             speaks="sudo refused a user {times:plural:time}.",
             example={"user": "www-data", "times": 3}),
    KindSpec("user_created", SOURCE, Severity.MEDIUM, Severity.NONE,
             "A user account was created",
             "Confirm the account was created on purpose (a package install or an admin); an "
             "unexpected account is a classic persistence step: lock it and investigate.", event=True,
             name="New user account", says="A user account {user} was created",
             speaks="A new user account was created.", example={"user": "backdoor"}),
)


def _lines(*groups: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for group in groups:
        out.extend(line for line in group if line and line not in out)
    return tuple(out[:MAX_EVIDENCE])


# (kind, observations list, its count field, metric, summary): one row per burst kind
BURSTS = (
    ("ssh_bruteforce", "bruteforce", "failures_in_window", "auth.failed_logins",
     "{n} failed SSH logins from one address within {minutes:g} minutes"),
    ("ssh_preauth_probing", "preauth_probing", "probes_in_window", "auth.preauth_probes",
     "{n} SSH connections from one address ended before authentication within {minutes:g} "
     "minutes"),
)


def _bursts(obs: Mapping[str, Any], window: Mapping[str, Any]) -> list[Finding]:
    minutes = window["findtime_s"] / 60
    return [Finding(
        source=SOURCE, kind=kind, key=item["address"], severity=Severity.MEDIUM,
        summary=summary.format(n=item[field], minutes=minutes),
        labels={"address": item["address"]}, evidence=_lines(item["evidence"]),
        facts={"count": int(item[field]), "minutes": minutes},   # what the agent counted
        metric=metric, value=float(item[field]))
        for kind, name, field, metric, summary in BURSTS
        for item in obs.get(name, [])[:MAX_FINDINGS_PER_KIND]]


def _after_failures(obs: Mapping[str, Any], window: Mapping[str, Any]) -> list[Finding]:
    found = []
    for login in obs["accepted_logins"]:
        if login["failures_before"] < window["max_retry"]:
            continue
        found.append(Finding(
            source=SOURCE, kind="login_after_failures", key=f"{login['user']}@{login['address']}",
            severity=Severity.HIGH, floor=Severity.HIGH,
            summary=(f"successful {login['method']} login after {login['failures_before']} "
                     f"failures from the same address"),
            labels={"user": login["user"], "address": login["address"],
                    "method": login["method"]},
            facts={"failures": int(login["failures_before"])},
            evidence=_lines([login["line"]], login["failure_evidence"]),
            value=float(login["failures_before"])))
    return found[:MAX_FINDINGS_PER_KIND]


def _new_sources(obs: Mapping[str, Any], ctx: DetectContext) -> list[Finding]:
    state = ctx.state(SOURCE)
    sources = list(obs["login_sources"])
    if not state.get("learned"):
        ctx.remember(SOURCES_NAMESPACE, *sources)    # the first run learns what is normal
        state["learned"] = True
        return []
    lines = {f"{a['user']}@{a['address']}": a["line"] for a in obs["accepted_logins"]}
    found = []
    for key in sources:
        if ctx.is_known(SOURCES_NAMESPACE, key):
            continue
        ctx.remember(SOURCES_NAMESPACE, key)
        user, _, address = key.rpartition("@")
        found.append(Finding(
            source=SOURCE, kind="new_login_source", key=key, severity=Severity.MEDIUM,
            summary="a user logged in from an address never seen before",
            labels={"user": user, "address": address}, evidence=_lines([lines.get(key, "")])))
    return found[:MAX_FINDINGS_PER_KIND]


def _by_name(items: Iterable[Mapping[str, Any]], field: str) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for item in items:
        grouped.setdefault(item[field], []).append(item["line"])
    return grouped


def _sudo(obs: Mapping[str, Any]) -> list[Finding]:
    return [Finding(source=SOURCE, kind="sudo_failure", key=user, severity=Severity.MEDIUM,
                    summary=f"sudo refused a user {len(lines)} time(s)", labels={"user": user},
                    facts={"times": len(lines)},
                    evidence=_lines(lines), value=float(len(lines)))
            for user, lines in _by_name(obs["sudo_failure_events"], "user").items()
            ][:MAX_FINDINGS_PER_KIND]


def _users(obs: Mapping[str, Any]) -> list[Finding]:
    return [Finding(source=SOURCE, kind="user_created", key=name, severity=Severity.MEDIUM,
                    summary="a user account was created", labels={"user": name},
                    evidence=_lines(lines))
            for name, lines in _by_name(obs["users_created"], "name").items()
            ][:MAX_FINDINGS_PER_KIND]


def detect(result: CollectResult, ctx: DetectContext) -> list[Finding]:
    """Findings for one cycle of auth log observations."""
    obs = result.observations
    window = obs["window"]
    return (_bursts(obs, window) + _after_failures(obs, window) + _new_sources(obs, ctx)
            + _sudo(obs) + _users(obs))
