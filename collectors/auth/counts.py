"""What one cycle's scan of auth log chunks yields: the counters and bounded event lists.

The scanner's mixins (admin, evidence, probes, native) and the scanner itself all fill one
AuthCounts, so it sits below all of them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_EVENTS = 50          # accepted logins, sudo commands, ... kept per kind and cycle
MAX_LINE_KEPT = 512      # bytes of a raw line kept as evidence


def safe_text(raw: bytes, limit: int = 128) -> str:
    """Untrusted bytes as bounded text (invalid UTF-8 replaced, control characters dropped)."""
    text = raw[:limit].decode("utf-8", "replace")
    return text if text.isprintable() else "".join(ch for ch in text if ch.isprintable())


def keep(items: list[dict[str, Any]], item: dict[str, Any]) -> None:
    """Append an event unless the list already holds MAX_EVENTS."""
    if len(items) < MAX_EVENTS:
        items.append(item)


@dataclass
class AuthCounts:
    """Everything extracted from the chunks of one cycle; bounded lists, plain counters."""

    lines: int = 0
    malformed: int = 0
    failed_logins: int = 0
    failed_by_ip: Counter[bytes] = field(default_factory=Counter)        # address (bytes) -> count
    publickey_failures: int = 0
    none_probes: int = 0
    other_failures: int = 0
    invalid_users: int = 0
    invalid_user_names: Counter[bytes] = field(default_factory=Counter)  # name (bytes) -> count
    failures: int = 0                     # fail2ban normal-mode failure events (window input)
    pam_failures: int = 0
    accepted_count: int = 0
    sudo_commands: list[dict[str, Any]] = field(default_factory=list)
    sudo_command_count: int = 0
    sudo_failures: list[dict[str, Any]] = field(default_factory=list)
    sudo_failure_count: int = 0
    su_sessions: list[dict[str, Any]] = field(default_factory=list)
    su_failures: list[dict[str, Any]] = field(default_factory=list)
    users_created: list[dict[str, Any]] = field(default_factory=list)
    groups_created: list[dict[str, Any]] = field(default_factory=list)
    password_changes: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, list[str]] = field(default_factory=dict)
    probes: int = 0                       # pre-authentication probing events (own window)
    probes_by_ip: Counter[bytes] = field(default_factory=Counter)
    unattributed: int = 0                 # events whose address is ambiguous or no address
    unstamped: int = 0                    # events whose line had no readable timestamp

