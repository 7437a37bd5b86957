"""What Alertmanager is told after a cycle: the findings open at or above
ALERTMANAGER_MIN_SEVERITY, and those that stopped being so.

Alertmanager keeps an alert only as long as its ``endsAt``: the agent posts every open finding
again each cycle (``endsAt`` some intervals ahead, set when it is sent: alerts/alertmanager.py),
and a finding that closed, fell below the threshold or changed severity (a label, so another
alert) is posted once more with ``endsAt`` now. The message is queued in the cycle's own
transaction, through the same outbox as every channel. A cycle that changes nothing queues no
refresh while an earlier message of the channel still waits: that one refreshes when it is sent,
so an Alertmanager that is down for a day costs one waiting row, not one per cycle.
"""
from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alerts.alertmanager import CHANNEL
from alerts.outbox import Delivery
from alerts.wording import comparison
from analysis.detectors import told
from foundation.model import Judged, Severity, max_severity
from foundation.settings import Settings
from foundation.store.data_storage import FindingRow, Store

HORIZON_INTERVALS = 4     # as Prometheus: an alert not posted again lives four intervals more


@dataclass(frozen=True)
class Posted:
    """The state message a cycle queued: its outbox id and which findings it fires and ends."""

    id: int | None
    severity: str
    firing: tuple[str, ...]
    ended: tuple[str, ...]


def _item(fingerprint: str, source: str, kind: str, severity: str, summary: str,
          facts: Mapping[str, Any], labels: Mapping[str, Any], starts_at: float,
          ends_at: float | None, numbers: str | None = None,
          resolved: bool = False) -> dict[str, Any]:
    words = told(kind, facts, labels, resolved=resolved)
    description = f"{summary}. {numbers}" if numbers else summary
    return {"fingerprint": fingerprint, "source": source, "kind": kind, "severity": severity,
            "summary": summary, "description": description, "headline": words["headline"],
            "action": "" if resolved else words["action"], "name": words["name"],
            "starts_at": starts_at, "ends_at": ends_at}


def _from_row(row: FindingRow, severity: str, ends_at: float | None,
              resolved: bool = False) -> dict[str, Any]:
    return _item(row.fingerprint, row.source, row.kind, severity, row.summary,
                 row.details.get("facts") or {}, row.details.get("labels") or {},
                 row.first_seen, ends_at, resolved=resolved)


def state_items(threshold: Severity, judged: Sequence[Judged],
                open_rows: Mapping[str, FindingRow], resolved: Iterable[str], now: float
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    """(firing items, ended items, whether anything changed since the cycle before)."""
    def posted(severity: str) -> bool:
        return Severity.parse(severity).rank >= threshold.rank

    firing: list[dict[str, Any]] = []
    ended: list[dict[str, Any]] = []
    seen = {j.finding.fingerprint for j in judged}
    closed = set(resolved)
    before = {fp for fp, row in open_rows.items() if posted(row.severity)}
    now_firing: set[str] = set()
    for j in judged:
        f, severity = j.finding, j.severity.value
        row = open_rows.get(f.fingerprint)
        if row is not None and posted(row.severity) and row.severity != severity:
            ended.append(_from_row(row, row.severity, now))   # its old severity's alert ends
        if not posted(severity):
            continue
        now_firing.add(f.fingerprint)
        item = {"metric": f.metric, "value": f.value,
                "baseline": dict(f.baseline) if f.baseline else None}
        firing.append(_item(f.fingerprint, f.source, f.kind, severity, f.summary, f.facts,
                            f.labels, row.first_seen if row is not None else now, None,
                            comparison(item)))
    for fp, row in open_rows.items():
        if fp in seen or not posted(row.severity):
            continue
        if fp in closed:
            ended.append(_from_row(row, row.severity, now, resolved=True))
        else:       # open, not seen this cycle (its collector failed, or an event cycle)
            now_firing.add(fp)
            firing.append(_from_row(row, row.severity, None))
    return firing, ended, bool(ended) or now_firing != before


def waiting(store: Store) -> bool:
    """Whether a state message of the channel still waits in the outbox."""
    return any(m.channel == CHANNEL for m in store.due_messages(math.inf))


def queue_state(tx: Any, store: Store, settings: Settings, channels: Collection[str],
                judged: Sequence[Judged], open_rows: Mapping[str, FindingRow],
                resolved: Iterable[str], now: float) -> Posted | None:
    """Queue this cycle's state message in the cycle's transaction ``tx`` (None: Alertmanager is
    not configured, nothing is to be said, or nothing new while an earlier message waits)."""
    if CHANNEL not in channels:
        return None
    firing, ended, changed = state_items(Severity.parse(settings.ALERTMANAGER_MIN_SEVERITY),
                                         judged, open_rows, resolved, now)
    if (not firing and not ended) or (not changed and waiting(store)):
        return None
    severity = max_severity(*(Severity.parse(i["severity"]) for i in firing)).value
    payload = {"purpose": "state", "host": settings.host_name, "created_at": now,
               "horizon_s": HORIZON_INTERVALS * settings.MONITOR_INTERVAL_SECONDS,
               "dashboard": settings.ALERTMANAGER_DASHBOARD_URL, "items": firing + ended}
    found = tx.enqueue(channel=CHANNEL, purpose="state", severity=severity, payload=payload,
                       now=now, dedupe_key=f"{CHANNEL}:state:{now!r}")
    return Posted(found, severity, tuple(i["fingerprint"] for i in firing),
                  tuple(i["fingerprint"] for i in ended))


def report_entries(posted: Posted | None, deliveries: Sequence[Delivery]) -> list[dict[str, Any]]:
    """The cycle report's ``alerts`` entry for the state message it queued (none: [])."""
    if posted is None:
        return []
    outcome = next((d for d in deliveries if d.id == posted.id), None)
    return [{"channel": CHANNEL, "purpose": "state", "severity": posted.severity,
             "status": outcome.status if outcome is not None else "queued",
             "findings": list(dict.fromkeys(posted.firing + posted.ended)),
             "firing": len(posted.firing), "ended": len(posted.ended)}]
