"""What each dashboard page shows, as plain JSON-ready data built from the store.

The same dictionaries render the HTML (Jinja2, autoescaped) and answer the page's JSON endpoint
(the live refresh). Every string that came from outside the agent (log lines, user and host
names, process and container names, banners, reverse-DNS names, the LLM's words, errors that may
quote them) goes through ``text``, the one neutraliser of foundation/untrusted.py, before it is
put here; the template's autoescape then makes it inert markup. Every list is bounded.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from alerts.silences import silenced_by
from alerts.wording import comparison
from analysis.detectors import kind_specs, told
from foundation.durations import duration_text, local_time
from foundation.model import Severity, series_metric
from foundation.series import with_unit
from foundation.settings import Settings
from foundation.store.data_storage import FindingRow, SilenceRow, Store
from foundation.store.finding_reads import FindingEvent
from foundation.untrusted import neutralise

SEVERITIES = ("high", "medium", "low", "none")
STATES = ("open", "past", "all")
LIST_LIMIT = 200          # findings shown per list (the newest seen first)
TIMELINE_EVENTS = 2000    # the newest cycles a finding's timeline reads
TIMELINE_SPANS = 100      # runs of equal cycles it shows
TEXT_CAP = 1000           # characters of one untrusted string
FILTER_CAP = 100          # characters of a filter value
ACTION_PIECE_CAP = 300    # characters of one piece of a finding's action (text or command)
ACK_CHOICES = (("", "until it resolves"), ("1h", "for 1 hour"), ("4h", "for 4 hours"),
               ("1d", "for 1 day"), ("1w", "for 1 week"))
SNOOZE_CHOICES = (("1h", "1 hour"), ("4h", "4 hours"), ("1d", "1 day"), ("1w", "1 week"))
MAINTENANCE_CHOICES = (("30m", "30 minutes"), ("1h", "1 hour"), ("2h", "2 hours"),
                       ("4h", "4 hours"), ("1d", "1 day"))


def text(value: object, cap: int = TEXT_CAP) -> str:
    """Untrusted text as the dashboard shows it: neutralised, then cut to ``cap`` characters."""
    clean = neutralise("" if value is None else value)
    return clean if len(clean) <= cap else clean[:cap - 1] + "…"


def severity(value: object) -> str:
    """A severity name the pages can style by; anything else is "none"."""
    name = str(value).strip().lower()
    return name if name in SEVERITIES else "none"


def when(ts: float | None, now: float) -> dict[str, str] | None:
    """A time as the pages show it: local date and time, and how long ago."""
    if ts is None:
        return None
    return {"at": local_time(ts), "ago": duration_text(now - ts)}


def finding_href(fingerprint: str) -> str:
    """The page of a finding."""
    return "/findings/" + quote(fingerprint, safe="")


# -- the overview ---------------------------------------------------------------------------------

def _cycle_ts(report: Mapping[str, Any]) -> float | None:
    try:
        return datetime.fromisoformat(str(report["started_at"])).timestamp()
    except (KeyError, ValueError):
        return None


def _last_cycle(report: Mapping[str, Any] | None, settings: Settings,
                now: float) -> dict[str, Any] | None:
    if report is None:
        return None
    ts = _cycle_ts(report)
    verdict = report.get("verdict") or {}
    age = None if ts is None else now - ts
    return {"at": local_time(ts) if ts is not None else text(report.get("started_at")),
            "ago": duration_text(age) if age is not None else "?",
            "late": age is None or age > 2 * settings.MONITOR_INTERVAL_SECONDS + 60,
            "duration": f"{float(report.get('duration_s') or 0):.2f} s",
            "trigger": text(report.get("trigger") or "schedule", 20),
            "verdict": {"severity": severity(verdict.get("severity")),
                        "by": text(verdict.get("by"), 20), "model": text(verdict.get("model"), 80),
                        "reason": text(verdict.get("reason"))}}


def _collectors(report: Mapping[str, Any] | None) -> list[dict[str, str]]:
    out = []
    for name, status in ((report or {}).get("collectors") or {}).items():
        state = ("up" if status.get("available", True) else "unavailable") if status.get("ok") \
            else "down"
        out.append({"name": text(name, 40), "state": state,
                    "note": text(status.get("error") or status.get("note") or ""),
                    "duration": f"{float(status.get('duration_s') or 0):.3f} s"})
    return out


def _silence(row: SilenceRow, now: float, findings: Mapping[str, FindingRow]) -> dict[str, Any]:
    target = row.target
    href = None
    if row.type == "ack":
        found = findings.get(row.target)
        href = finding_href(row.target)
        target = f"{row.target[:12]} ({found.kind if found else 'no longer open'})"
    return {"type": row.type, "target": text(target or "everything", 120), "href": href,
            "until": "until it resolves" if row.until is None else local_time(row.until),
            "left": None if row.until is None else duration_text(row.until - now),
            "set": when(row.created_at, now)}


def _dependencies(store: Store, now: float) -> list[dict[str, Any]]:
    return [{"name": text(row.name, 40), "state": "up" if row.up else "down",
             "since": when(row.since, now), "checked": when(row.checked_at, now),
             "error": text(row.error or "")} for row in store.dependencies().values()]


def overview(store: Store | None, settings: Settings, now: float) -> dict[str, Any]:
    """The overview: host, last cycle, collectors, open findings by severity, outbox, Ollama,
    the silences in force."""
    empty = {"store": False, "host": text(settings.host_name, 120), "last_cycle": None,
             "collectors": [], "open": {**dict.fromkeys(SEVERITIES, 0), "total": 0},
             "outbox": {"queued": 0, "sent": 0, "failed": 0},
             "ollama": {"state": "unknown", "detail": "no cycle has run yet",
                        "model": text(settings.OLLAMA_MODEL, 80)},
             "dependencies": [], "maintenance": None, "silences": []}
    if store is None:
        return empty
    last = store.last_cycle()
    scheduled = store.last_cycle(scheduled=True)   # the last that ran every collector
    open_rows = store.findings(open_only=True)
    counts = {**dict.fromkeys(SEVERITIES, 0), "total": len(open_rows)}
    for row in open_rows.values():
        counts[severity(row.severity)] += 1
    outbox = store.outbox_counts()
    dependencies = _dependencies(store, now)
    silences = store.silences(now)
    maintenance = next((s for s in silences if s.type == "maintenance"), None)
    return {**empty, "store": True,
            "host": text((last or {}).get("host") or settings.host_name, 120),
            "last_cycle": _last_cycle(last, settings, now),
            "collectors": _collectors(scheduled or last),
            "open": counts,
            "outbox": {k: int(outbox.get(k, 0)) for k in ("queued", "sent", "failed")},
            "ollama": _ollama(dependencies, last, settings),
            "dependencies": dependencies,
            "maintenance": None if maintenance is None else _silence(maintenance, now, open_rows),
            "silences": [_silence(s, now, open_rows) for s in silences
                         if s.type != "maintenance"]}


def _ollama(dependencies: Sequence[Mapping[str, Any]], last: Mapping[str, Any] | None,
            settings: Settings) -> dict[str, str]:
    row = next((d for d in dependencies if d["name"] == "ollama"), None)
    verdict = (last or {}).get("verdict") or {}
    judged = f"the last verdict by {text(verdict.get('by'), 20)}" if verdict else "no verdict yet"
    if row is None:
        detail = f"not asked yet ({judged})"
        state = "unknown"
    elif row["state"] == "up":
        detail = f"up since {row['since']['at']}; {judged}"
        state = "up"
    else:
        detail = (f"down for {row['since']['ago']} (since {row['since']['at']}): {row['error']}; "
                  "the rules decide the severities until it answers")
        state = "down"
    return {"state": state, "detail": detail, "model": text(settings.OLLAMA_MODEL, 80)}


# -- the findings ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Filters:
    """What the findings page shows: open, past or all, of a kind, severity and source."""

    state: str = "open"
    kind: str | None = None
    severity: str | None = None
    source: str | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filters:
        """Filters from a query string; an unknown state is "open", an unknown severity none."""
        def value(name: str) -> str | None:
            raw = str(query.get(name) or "").strip()[:FILTER_CAP]
            return raw or None

        state = value("state")
        sev = value("severity")
        return cls(state=state if state in STATES else "open", kind=value("kind"),
                   severity=sev if sev in SEVERITIES else None, source=value("source"))

    def query(self) -> str:
        """The query string of these filters (for the page's JSON endpoint)."""
        return urlencode({k: v for k, v in (("state", self.state), ("kind", self.kind),
                                            ("severity", self.severity), ("source", self.source))
                          if v})


def _told(row: FindingRow) -> dict[str, str]:
    facts = row.details.get("facts") or {}
    labels = row.details.get("labels") or {}
    return told(row.kind, facts if isinstance(facts, Mapping) else {},
                labels if isinstance(labels, Mapping) else {}, resolved=not row.open)


def action_parts(row: FindingRow) -> list[dict[str, str]]:
    """What to do, as a finding's page shows it: the kind's own words as text and its commands
    (the words it puts in backticks) as code, in order, each piece {"text": ..., "code": ""} or
    {"text": "", "code": ...}. The kind's action is split on its backticks before the finding's
    facts go in (KindSpec.todo_parts), so a fact cannot add, end or remove a command; each piece
    is neutralised like every other string, and the template shows it as text (autoescaped)."""
    spec = kind_specs().get(row.kind)
    if spec is None:
        return []
    facts = row.details.get("facts") or {}
    out = []
    for piece, code in spec.todo_parts(facts if isinstance(facts, Mapping) else {}):
        shown = text(piece, ACTION_PIECE_CAP)
        if not code:        # the space between a word and a command is the kind's: kept
            shown = (" " if piece[:1].isspace() else "") + shown + \
                (" " if piece[-1:].isspace() and shown else "")
        out.append({"text": "", "code": shown} if code else {"text": shown, "code": ""})
    return out


def _item(row: FindingRow, now: float, silences: Sequence[SilenceRow]) -> dict[str, Any]:
    said = _told(row)
    held = silenced_by(row.fingerprint, row.kind, Severity(severity(row.severity)), silences) \
        if row.open else None
    return {"fingerprint": row.fingerprint, "href": finding_href(row.fingerprint),
            "kind": text(row.kind, 80), "name": text(said["name"], 120),
            "source": text(row.source, 40), "severity": severity(row.severity),
            "floor": severity(row.floor), "headline": text(said["headline"], 300),
            "summary": text(row.summary, 300), "open": row.open,
            "first_seen": when(row.first_seen, now), "last_seen": when(row.last_seen, now),
            "silenced": held or ""}


def findings(store: Store | None, filters: Filters, now: float) -> dict[str, Any]:
    """The findings page: the open and the past findings that match the filters, newest first."""
    out: dict[str, Any] = {"filters": {"state": filters.state, "kind": text(filters.kind or ""),
                                       "severity": filters.severity or "",
                                       "source": text(filters.source or "")},
                           "query": filters.query(),
                           "choices": {"kind": [], "severity": list(SEVERITIES), "source": []},
                           "open": None, "past": None}
    if store is None:
        return out
    facets = store.finding_facets()
    out["choices"]["kind"] = [text(k, 80) for k in facets["kind"]]
    out["choices"]["source"] = [text(s, 40) for s in facets["source"]]
    silences = store.silences(now)
    for state, is_open in (("open", True), ("past", False)):
        if filters.state not in (state, "all"):
            continue
        rows, total = store.findings_where(is_open, filters.kind, filters.severity,
                                           filters.source, LIST_LIMIT)
        out[state] = {"total": total, "more": max(0, total - len(rows)),
                      "items": [_item(r, now, silences) for r in rows]}
    return out


# -- one finding ----------------------------------------------------------------------------------

def timeline(events: Sequence[FindingEvent], now: float) -> list[dict[str, Any]]:
    """Runs of consecutive cycles at one severity saying one thing, newest first: when the run
    started and ended, and how many cycles it spans."""
    spans: list[dict[str, Any]] = []
    for event in events:               # newest first
        last = spans[-1] if spans else None
        if last is not None and last["_key"] == (event.severity, event.summary):
            last["_from"] = event.ts
            last["cycles"] += 1
            continue
        if len(spans) == TIMELINE_SPANS:
            break
        spans.append({"_key": (event.severity, event.summary), "_from": event.ts,
                      "_to": event.ts, "cycles": 1})
    return [{"from": when(s["_from"], now), "to": when(s["_to"], now), "cycles": s["cycles"],
             "severity": severity(s["_key"][0]), "summary": text(s["_key"][1], 300)}
            for s in spans]


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _values(store: Store, details: Mapping[str, Any]) -> dict[str, Any] | None:
    """The finding's value against its baseline when detected, and the series' baseline now."""
    series = str(details.get("metric") or "")
    metric = series_metric(series)
    if not metric:
        return None
    said = comparison({"metric": series, "value": details.get("value"),
                       "baseline": details.get("baseline")})
    now = store.baseline(series)
    usual = None
    if now is not None and now.n:
        usual = (f"{with_unit(now.centre, metric)} ± {with_unit(now.spread, metric)} over "
                 f"{now.n} samples ({with_unit(now.minimum, metric)} to "
                 f"{with_unit(now.maximum, metric)})")
    if said is None and usual is None:
        return None
    return {"series": text(series, 200), "when_found": text(said or ""), "baseline_now": usual or ""}


def finding(store: Store | None, fingerprint: str, now: float) -> dict[str, Any] | None:
    """One finding's page: what it is, what to do, its numbers, the judge's reason, its
    timeline and the silences that concern it; None when the store has no such finding."""
    row = None if store is None else store.finding(fingerprint)
    if store is None or row is None:
        return None
    said = _told(row)
    spec = kind_specs().get(row.kind)
    details = row.details
    raw_labels, raw_evidence = details.get("labels"), details.get("evidence")
    labels: Mapping[str, Any] = raw_labels if isinstance(raw_labels, Mapping) else {}
    evidence: list[Any] = raw_evidence if isinstance(raw_evidence, list) else []
    every = store.silences(now, include_ended=True)
    in_force = [s for s in every if s.in_force(now)]
    mine = [s for s in every if (s.type == "ack" and s.target == row.fingerprint)
            or (s.type == "snooze" and s.target == row.kind)]
    ack = next((s for s in in_force if s.type == "ack" and s.target == row.fingerprint), None)
    snooze = next((s for s in in_force if s.type == "snooze" and s.target == row.kind), None)
    maintenance = next((s for s in in_force if s.type == "maintenance"), None)
    return {**_item(row, now, in_force),
            "key": text(row.key, 300),
            "title": text(spec.title if spec else "", 300),
            "action": text(said["action"], 600),
            "action_parts": action_parts(row),
            "reason": text(details.get("reason") or ""),
            "rule_severity": severity(details.get("rule_severity") or row.severity),
            "values": _values(store, details),
            "labels": [{"name": text(k, 40), "value": text(v, 300)}
                       for k, v in sorted(labels.items())[:20]],
            "evidence": [{"line": text(line, 500)} for line in evidence[:5]],
            "alerted": None if row.alerted_at is None else {
                "severity": severity(row.alerted_severity), **(when(row.alerted_at, now) or {})},
            "timeline": timeline(store.finding_timeline(row.fingerprint, TIMELINE_EVENTS), now),
            "silences": [{**_silence(s, now, {}), "ended": when(s.ended_at, now),
                          "why": text(s.ended_why or "", 20), "in_force": s.in_force(now)}
                         for s in reversed(mine[-20:])],
            "ack": None if ack is None else _silence(ack, now, {}),
            "snooze": None if snooze is None else _silence(snooze, now, {}),
            "maintenance": None if maintenance is None else _silence(maintenance, now, {})}
