"""When to alert: a finding that starts, worsens, or lasts past the cooldown; and when it resolves."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from foundation.model import Decision, Judged, Severity

IMMEDIATE = Severity.HIGH  # lower severities wait for the daily recap


def decide(judged: Iterable[Judged], open_rows: Mapping[str, object], resolved: Iterable[str],
           now: float, cooldown_s: float) -> list[Decision]:
    """Decisions for present findings and for findings that cleared this cycle.

    ``open_rows`` maps fingerprints of findings open before this cycle to rows with
    ``alerted_severity`` and ``alerted_at``; ``resolved`` lists open fingerprints that cleared.
    """
    out = []
    for item in judged:
        fp = item.finding.fingerprint
        row = open_rows.get(fp)
        alerted = getattr(row, "alerted_severity", None)
        alerted_at = getattr(row, "alerted_at", None)
        prior = getattr(row, "severity", None)
        if item.severity.rank < IMMEDIATE.rank:
            out.append(Decision(fp, "below_threshold", item.severity, False))
        elif alerted is None:
            # open before at a lower severity (recap only) and now high: it worsened
            worse = prior is not None and Severity.parse(prior).rank < item.severity.rank
            out.append(Decision(fp, "worse" if worse else "new", item.severity, True))
        elif item.severity.rank > Severity.parse(alerted).rank:
            out.append(Decision(fp, "worse", item.severity, True))
        elif alerted_at is None or now - alerted_at >= cooldown_s:
            out.append(Decision(fp, "repeat", item.severity, True))
        else:
            out.append(Decision(fp, "cooldown", item.severity, False))
    for fp in resolved:
        row = open_rows[fp]
        if getattr(row, "alerted_severity", None) is not None:
            out.append(Decision(fp, "resolved", Severity.NONE, True))
    return out
