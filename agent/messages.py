"""What a cycle sends and says: the payload of each alert or resolved message, and the report."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from alerts.outbox import Delivery
from alerts.policy import IMMEDIATE
from analysis.detectors import told
from analysis.known_issues import KnownMatch, report_fields
from foundation.model import CollectorStatus, Decision, Finding, Judged, Verdict, max_severity
from foundation.settings import Settings

SUPPRESSED = 0        # outbox ids start at 1: this marks a message a channel did not take


def payload(host: str, purpose: str, chosen: list[Decision], by_fp: Mapping[str, Judged],
            open_rows: Mapping[str, Any], verdict: Verdict, now: float) -> dict[str, Any]:
    """The message of a purpose ("alert" or "resolved") for the chosen findings, told in their
    kinds' words (analysis.detectors.told); what the outbox stores and every channel renders."""
    items = []
    for d in chosen:
        if d.fingerprint in by_fp:
            j = by_fp[d.fingerprint]
            f = j.finding
            row = open_rows.get(d.fingerprint)
            items.append({"fingerprint": f.fingerprint, "source": f.source, "kind": f.kind,
                          "key": f.key, "severity": j.severity.value, "floor": f.floor.value,
                          "summary": f.summary, "reason": j.reason, "why": d.why,
                          "first_seen": row.first_seen if row else now,
                          "labels": dict(f.labels), "metric": f.metric, "value": f.value,
                          "baseline": dict(f.baseline) if f.baseline else None,
                          **told(f.kind, f.facts, f.labels)})
        else:
            row = open_rows[d.fingerprint]
            facts, labels = row.details.get("facts") or {}, row.details.get("labels") or {}
            items.append({"fingerprint": row.fingerprint, "source": row.source,
                          "kind": row.kind, "key": row.key, "severity": "none",
                          "floor": row.floor, "summary": row.summary, "reason": "",
                          "why": "resolved", "first_seen": row.first_seen, "labels": {},
                          "metric": row.details.get("metric"), "value": None,
                          "baseline": None, "down_s": now - row.first_seen,
                          **told(row.kind, facts, labels, resolved=True)})
    return {"purpose": purpose, "host": host, "created_at": now,
            "verdict": {"severity": verdict.severity.value, "reason": verdict.reason,
                        "by": verdict.by}, "items": items}


def report(settings: Settings, channels: Iterable[str], notes: list[str], now: float,
           duration: float, statuses: Mapping[str, CollectorStatus],
           observations: Mapping[str, Any], judged: list[Judged], verdict: Verdict,
           decisions: list[Decision], queued: Mapping[tuple[str, str], int | None],
           deliveries: list[Delivery], known: Mapping[str, KnownMatch]) -> dict[str, Any]:
    """The cycle report (DESIGN.md's contract, the --json document)."""
    delivered = {d.id: d for d in deliveries}
    alerts = []
    for (channel, purpose), msg_id in queued.items():
        chosen = chosen_for(decisions, purpose)
        outcome = delivered.get(msg_id) if msg_id is not None else None
        alerts.append({"channel": channel, "purpose": purpose,
                       "severity": max_severity(*(d.severity for d in chosen)).value,
                       "status": outcome.status if outcome else (
                           "suppressed" if msg_id == SUPPRESSED else "queued"),
                       "findings": [d.fingerprint for d in chosen],
                       **({"reason": "quiet_hours"} if msg_id == SUPPRESSED else {})})
    for d in decisions:
        if d.why == "cooldown":
            alerts.extend({"channel": c, "purpose": "alert", "severity": d.severity.value,
                           "status": "suppressed", "reason": "cooldown",
                           "findings": [d.fingerprint]} for c in channels)
    for fp, match in known.items():
        if match.action == "mute" and match.before.rank >= IMMEDIATE.rank:
            alerts.extend({"channel": c, "purpose": "alert", "severity": match.before.value,
                           "status": "suppressed", "reason": "known_issue", "findings": [fp],
                           "known_issue": match.id}
                          for c in channels)
    retried = [d for d in deliveries if d.id not in queued.values()]
    report = {
        "started_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        "duration_s": round(duration, 3),
        "host": settings.host_name,
        "collectors": {n: {"ok": s.ok, "error": s.error, "duration_s": round(s.duration_s, 3),
                           "available": s.available, "note": s.note}
                       for n, s in statuses.items()},
        "observations": observations,
        "findings": [{"id": j.finding.fingerprint, "source": j.finding.source,
                      "kind": j.finding.kind, "severity": j.severity.value,
                      "floor": j.finding.floor.value,
                      "rule_severity": j.finding.severity.value,
                      "summary": j.finding.summary, "reason": j.reason,
                      **report_fields(known, j.finding.fingerprint)} for j in judged],
        "verdict": {"severity": verdict.severity.value, "reason": verdict.reason,
                    "by": verdict.by, "model": verdict.model, "note": verdict.note},
        "alerts": alerts,
        "redelivered": [asdict(d) for d in retried],
        "notes": list(notes),
    }
    return report


def chosen_for(decisions: list[Decision], purpose: str) -> list[Decision]:
    """The decisions that go into this cycle's message of a purpose ("alert" or "resolved")."""
    return [d for d in decisions if d.alert and (d.why == "resolved") == (purpose == "resolved")]


def details(finding: Finding, item: Judged) -> dict[str, Any]:
    """What the store keeps of a finding beside its columns (facts and labels for its messages)."""
    return {"labels": dict(finding.labels), "facts": dict(finding.facts),
            "metric": finding.metric, "value": finding.value,
            "baseline": dict(finding.baseline) if finding.baseline else None,
            "rule_severity": finding.severity.value, "reason": item.reason,
            "evidence": list(finding.evidence[:5])}


def peek_report(now: float, duration: float, statuses: Mapping[str, CollectorStatus],
                findings: list[Finding]) -> dict[str, Any]:
    """The report of an event cycle that found nothing to alert at once: nothing was committed,
    and the next scheduled cycle reads the same lines again."""
    return {"trigger": "event", "committed": False,
            "started_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
            "duration_s": round(duration, 3),
            "collectors": {n: {"ok": s.ok, "error": s.error, "duration_s": round(s.duration_s, 3),
                               "available": s.available, "note": s.note}
                           for n, s in statuses.items()},
            "findings": [{"id": f.fingerprint, "source": f.source, "kind": f.kind,
                          "rule_severity": f.severity.value} for f in findings],
            "alerts": []}

