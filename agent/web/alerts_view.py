"""The alerts page's data: the outbox, newest first, each message with its channel, status,
attempts and what it says (the headline of its first finding, or a recap's title).

A headline is told from a finding's facts (user names, addresses, process names: untrusted), and
a delivery error may quote a channel's answer: both go through the one neutraliser. The store
keeps errors redacted already (no webhook token in them), so nothing secret reaches the page.
"""
from __future__ import annotations

from typing import Any

from agent.web.views import severity, text, when
from alerts.wording import count_words
from foundation.store.dashboard_reads import OutboxRow
from foundation.store.data_storage import Store

LIMIT = 100               # messages listed (the newest first)
STATUSES = ("queued", "sent", "failed")
PURPOSES = {"alert": "alert", "resolved": "resolved", "recap": "daily recap",
            "test": "test message"}


def _says(row: OutboxRow) -> str:
    if row.headline:
        return text(row.headline, 300)
    if row.title:
        return text(row.title, 300)
    return text(row.summary or "", 300)


def _message(row: OutboxRow, now: float) -> dict[str, Any]:
    status = row.status if row.status in STATUSES else "unknown"
    return {"id": row.id, "created": when(row.created_at, now),
            "channel": text(row.channel, 40),
            "purpose": PURPOSES.get(row.purpose, text(row.purpose, 40)),
            "severity": severity(row.severity), "status": status,
            "attempts": row.attempts, "error": text(row.last_error or "", 500),
            "repeat": "possible repeat" if row.possible_repeat else "",
            "next": when(row.next_attempt_at, now) if status == "queued" else None,
            "sent": when(row.sent_at, now),
            "headline": _says(row),
            "more_items": max(0, row.items - 1)}


def alerts(store: Store | None, now: float) -> dict[str, Any]:
    """The alerts page: the outbox's counts by status and its newest messages."""
    out: dict[str, Any] = {"store": store is not None,
                           "counts": dict.fromkeys(STATUSES, 0) | {"total": 0},
                           "said": count_words(0, "message"), "messages": [], "more": 0,
                           "older": ""}
    if store is None:
        return out
    counts = store.outbox_counts()
    total = sum(int(n) for n in counts.values())
    out["counts"] = {s: int(counts.get(s, 0)) for s in STATUSES} | {"total": total}
    out["said"] = count_words(total, "message")
    rows = store.outbox_recent(LIMIT)
    out["messages"] = [_message(r, now) for r in rows]
    out["more"] = max(0, total - len(rows))
    out["older"] = count_words(out["more"], "older one")
    return out
