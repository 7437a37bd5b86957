"""When not to alert: the operator's acks, snoozes and maintenance windows.

Applied to the alert policy's decisions before anything is queued. A silenced decision sends
nothing on any channel, but the finding is still stored, judged and recapped, and the cycle report
lists the alert as ``suppressed`` with the silence as its reason. The stored finding is not marked
alerted, so a finding that is still open when its silence ends is alerted at the next cycle.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from foundation.model import Decision, Judged, Severity
from foundation.store.data_storage import FindingRow, SilenceRow

# the reasons, strongest first: a maintenance window silences everything, a snooze a whole kind
REASONS = ("maintenance", "snooze", "ack")


@dataclass(frozen=True)
class Silenced:
    """A message a silence held back: for which finding, of which purpose, and why."""

    fingerprint: str
    purpose: str          # alert | resolved
    severity: Severity
    reason: str           # maintenance | snooze | ack


def silenced_by(fingerprint: str, kind: str | None, severity: Severity,
                silences: Sequence[SilenceRow], resolved: bool = False) -> str | None:
    """Which silence holds back a message about this finding now (None: none does)."""
    for silence in sorted(silences, key=lambda s: REASONS.index(s.type)):
        if silence.type == "maintenance":
            return "maintenance"
        if silence.type == "snooze" and silence.target == kind:
            return "snooze"
        if silence.type == "ack" and silence.target == fingerprint:
            acked = Severity.parse(silence.severity or "high")
            # a finding that got worse than it was acknowledged at is alerted again
            if resolved or severity.rank <= acked.rank:
                return "ack"
    return None


def apply_silences(decisions: Iterable[Decision], judged: Iterable[Judged],
                   open_rows: Mapping[str, FindingRow], silences: Sequence[SilenceRow]
                   ) -> tuple[list[Decision], list[Silenced]]:
    """The decisions with the silenced ones turned off (``why`` says which silence), and those."""
    kinds = {fp: row.kind for fp, row in open_rows.items()}
    kinds.update({j.finding.fingerprint: j.finding.kind for j in judged})
    out: list[Decision] = []
    held: list[Silenced] = []
    for decision in decisions:
        # a repeat the cooldown holds back anyway is reported under the silence too
        held_back = decision.alert or decision.why == "cooldown"
        reason = silenced_by(decision.fingerprint, kinds.get(decision.fingerprint),
                             decision.severity, silences, decision.why == "resolved") \
            if held_back and silences else None
        if reason is None:
            out.append(decision)
            continue
        out.append(replace(decision, why=reason, alert=False))
        held.append(Silenced(decision.fingerprint,
                             "resolved" if decision.why == "resolved" else "alert",
                             decision.severity, reason))
    return out, held


def suppressed_entries(held: Iterable[Silenced], channels: Iterable[str]) -> list[dict[str, Any]]:
    """The cycle report's ``alerts`` entries for held messages: one per finding and channel that
    would have taken it (speech never says "resolved")."""
    names = list(channels)
    return [{"channel": channel, "purpose": item.purpose, "severity": item.severity.value,
             "status": "suppressed", "reason": item.reason, "findings": [item.fingerprint]}
            for item in held for channel in names
            if item.purpose == "alert" or channel != "home_assistant"]
