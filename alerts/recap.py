"""The daily recap: the day's findings by kind, key metrics against baselines, and a chart.

Queued exactly once per day: the outbox inserts and the ``recaps`` row commit in one transaction,
so a restart neither loses nor repeats it; a recap missed while the agent was down is queued on
start within RECAP_GRACE_HOURS. Delivery goes through the same outbox as alerts. A recap needs a
real day behind it: none goes out before the store's first cycle is FIRST_RECAP_MIN_HOURS older
than the recap time (so none on the first start), and the first one says how many hours it covers.

What people read uses names and units: finding kinds by their short name (analysis.kinds), metrics
by the names and units of foundation.series; a series' key (a sensor, a ping target) is untrusted
and goes through foundation.untrusted.

The LLM summary is the one network call made while building: it runs bounded (foundation.bounded), so a
hung Ollama neither holds the loop past its timeout nor delays a stop. A stop during it queues the
recap with the plain summary (same transaction, so still once) and leaves it due in the outbox.
"""
from __future__ import annotations

import argparse
import base64
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from statistics import fmean
from typing import Any

from alerts import chart_plan
from alerts.channels import accepts, make_notifiers
from alerts.outbox import Notifier, deliver_due
from analysis.detectors import all_kinds
from foundation.bounded import Stopped, run_bounded
from foundation.model import Severity
from foundation.series import metric_spec, with_unit
from foundation.settings import Settings
from foundation.store.data_storage import Store, StoreError
from foundation.untrusted import for_chart, for_terminal

log = logging.getLogger(__name__)

WINDOW_S = 86400.0
FIRST_RECAP_MIN_HOURS = 12   # the store's first cycle this long before the recap time, or no recap
MAX_GROUPS = 20
MAX_METRICS = 15
SUMMARY_GRACE_S = 5.0   # beyond the Ollama client's own timeout, before the plain summary is used
Summariser = Callable[[str], "str | None"]
KEY_METRICS = ("system.load1", "system.memory_percent", "syslog.errors", "containers.running",
               "ollama.latency_ms")


def _metric_rank(metric: str) -> int | None:
    """Where a metric goes among the key metrics (the chart's panels first); None: not a key one."""
    for rank, panel in enumerate(chart_plan.PANELS):
        if panel.wants(metric):
            return rank
    return len(chart_plan.PANELS) + KEY_METRICS.index(metric) if metric in KEY_METRICS else None


def recap_slot(settings: Settings, now: float) -> tuple[str, float]:
    """The day (YYYY-MM-DD, local) and epoch of the latest DAILY_RECAP_TIME at or before ``now``."""
    hour, minute = (int(p) for p in settings.DAILY_RECAP_TIME.split(":"))
    local = datetime.fromtimestamp(now)
    slot = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if slot > local:
        slot -= timedelta(days=1)
    return slot.date().isoformat(), slot.timestamp()


def recap_due(store: Store, settings: Settings, now: float) -> str | None:
    """The day whose recap should be queued now, or None: sent already, missed for too long, or
    no real day behind it (the store's first cycle less than FIRST_RECAP_MIN_HOURS before)."""
    day, slot = recap_slot(settings, now)
    window = max(settings.RECAP_GRACE_HOURS * 3600.0, 2.0 * settings.MONITOR_INTERVAL_SECONDS)
    if now - slot > window or store.recap_sent(day):
        return None
    first = store.first_cycle_at()
    if first is None or slot - first < FIRST_RECAP_MIN_HOURS * 3600.0:
        return None
    return day


def _plural(count: float, word: str) -> str:
    return f"{count:g} {word}" if count == 1 else f"{count:g} {word}s"


def span_text(seconds: float) -> str:
    """A span for people: "18 hours", "1 hour", "25 minutes"."""
    if seconds < 3600 - 30:
        return _plural(max(1, round(seconds / 60)), "minute")
    return _plural(round(seconds / 3600), "hour")


def kind_names() -> dict[str, str]:
    """Each finding kind's short human name (analysis.kinds.KindSpec.name)."""
    return {spec.kind: spec.name or spec.kind for spec in all_kinds()}


def finding_groups(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Finding events (low and above) grouped by kind: counts, worst severity, first/last seen."""
    groups: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, set[str]] = defaultdict(set)
    for event in events:
        severity = Severity.parse(event["severity"])
        if severity is Severity.NONE:
            continue
        group = groups.setdefault(event["kind"], {
            "kind": event["kind"], "source": event["source"], "count": 0,
            "severity": severity.value, "first_seen": event["ts"], "last_seen": event["ts"],
            "example": event["summary"]})
        group["count"] += 1
        group["last_seen"] = max(group["last_seen"], event["ts"])
        group["first_seen"] = min(group["first_seen"], event["ts"])
        if severity.rank >= Severity.parse(group["severity"]).rank:
            group["severity"], group["example"] = severity.value, event["summary"]
        fingerprints[event["kind"]].add(event["fingerprint"])
    for kind, group in groups.items():
        group["distinct"] = len(fingerprints[kind])
    return sorted(groups.values(),
                  key=lambda g: (-Severity.parse(g["severity"]).rank, -g["count"], g["kind"]))


def finding_line(group: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """One kind's line: "HIGH SSH password guessing: 2 findings, seen in 3 cycles, ..."."""
    first, last = _hhmm(group["first_seen"]), _hhmm(group["last_seen"])
    when = f"at {first}" if first == last else f"{first}\u2013{last}"
    name = for_terminal(names.get(group["kind"], group["kind"]))
    return (f"{group['severity'].upper()} {name}: {_plural(group['distinct'], 'finding')}, seen "
            f"in {_plural(group['count'], 'cycle')}, {when}; e.g. {for_terminal(group['example'])}")


def series_label(series: str) -> str:
    """A stored series for people: its metric's name, and its key (neutralised) in parentheses."""
    key = chart_plan.key_of(series)
    name = metric_spec(chart_plan.metric_of(series)).name
    return f"{name} ({for_terminal(key)})" if key else name


def metric_line(series: str, values: Sequence[float], store: Store,
                cycle_s: float | None) -> str:
    """One series' line: the day against its baseline, every number with its unit."""
    metric = chart_plan.metric_of(series)

    def num(value: float) -> str:
        return with_unit(value, metric)

    if metric_spec(metric).per_cycle:
        per = chart_plan.per_cycle_text(cycle_s)
        text = (f"{series_label(series)}: {num(sum(values))} in all, at most {num(max(values))} "
                f"{per}")
    else:
        per = ""
        text = (f"{series_label(series)}: avg {num(fmean(values))} (min {num(min(values))}, "
                f"max {num(max(values))})")
    base = store.baseline(series)
    if base is not None and base.n > 1:
        text += f"; usual {num(base.centre)} \u00b1 {num(base.spread)} {per}".rstrip()
        if base.spread > 0 and max(values) > base.centre + 3 * base.spread:
            text += ", peaked above usual"
    return text


def metric_lines(store: Store, since: float, cycle_s: float | None = None) -> list[str]:
    """The day's key metrics against their baselines, one line each, the chart's panels first."""
    lines = []
    ranked = [(rank, name) for name in store.series_names()
              if (rank := _metric_rank(chart_plan.metric_of(name))) is not None]
    for _, name in sorted(ranked):
        values = [v for _, v in store.samples_since(name, since)]
        if not values:
            continue
        lines.append(metric_line(name, values, store, cycle_s))
        if len(lines) >= MAX_METRICS:
            lines.append("(more series in `monitor_agent.py status`)")
            break
    return lines


def coverage_note(first_cycle: float | None, now: float) -> str | None:
    """What a recap says when the store holds less than its 24 hours (the first after install)."""
    if first_cycle is None or now - first_cycle >= WINDOW_S - 1800:
        return None
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(first_cycle))
    return (f"This recap covers only {span_text(now - first_cycle)}, from the agent's first "
            f"cycle at {started}.")


def plain_summary(host: str, groups: Sequence[Mapping[str, Any]], open_count: int,
                  names: Mapping[str, str] | None = None, span: str = "24 hours") -> str:
    """A plain-language summary written without the LLM."""
    if not groups:
        return f"A quiet day on {host}: no findings in the last {span}."
    counts: defaultdict[str, int] = defaultdict(int)
    for group in groups:
        counts[group["severity"]] += group["distinct"]
    parts = [f"{counts[s]} {s}" for s in ("high", "medium", "low") if counts[s]]
    top = max(groups, key=lambda g: g["count"])
    name = for_terminal((names or {}).get(top["kind"], top["kind"]))
    text = (f"{host} had {', '.join(parts)} finding(s) in the last {span}; the most frequent "
            f"was {name} (seen in {_plural(top['count'], 'cycle')}).")
    if open_count:
        text += f" {open_count} finding(s) are still open."
    return text


def _hhmm(ts: float) -> str:
    return time.strftime("%H:%M", time.localtime(ts))


def chart_data(store: Store, since: float) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """The chart's input: panel title -> stored series name -> its points since ``since``."""
    names = store.series_names()
    return {p.title: {n: store.samples_since(n, since) for n in chart_plan.panel_series(p, names)}
            for p in chart_plan.PANELS}


def _summarise(summariser: Summariser, facts: str) -> str | None:
    """The LLM's summary made inert, or None (failed, or abandoned on stop)."""
    try:
        written = summariser(facts)
    except Stopped:  # queued all the same (plain): it then stays due, sent after the restart
        log.info("the LLM summary of the recap was abandoned on stop; the plain one is used")
        return None
    except Exception as err:  # noqa: BLE001 - the LLM must never cost the recap
        log.warning("the LLM summary failed, using the plain one: %s", err)
        return None
    return for_terminal(written)[:1500] if written else None


def build(store: Store, settings: Settings, now: float,
          summariser: Summariser | None = None) -> dict[str, Any]:
    """The recap payload (text, sections, chart PNG as base64) for the 24 hours before ``now``,
    or the hours since the store's first cycle when that is less."""
    first = store.first_cycle_at()
    since = now - WINDOW_S if first is None else max(now - WINDOW_S, first)
    span = span_text(now - since)
    host, names, cycle_s = settings.host_name, kind_names(), settings.MONITOR_INTERVAL_SECONDS
    groups = finding_groups(store.finding_events_since(since))
    open_count = sum(1 for row in store.findings(open_only=True).values()
                     if Severity.parse(row.severity) is not Severity.NONE)
    finding_lines = [finding_line(g, names) for g in groups[:MAX_GROUPS]]
    if len(groups) > MAX_GROUPS:
        finding_lines.append(f"and {len(groups) - MAX_GROUPS} more kind(s)")
    metrics = metric_lines(store, since, cycle_s)
    data = chart_data(store, since)
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(now))
    title = f"Daily recap for {host}, {stamp}"
    # drawn in a child process (matplotlib stays out of the agent); None: the recap goes without
    png, notes = chart_plan.render_png(data, f"{for_chart(host[:24])}, {span} to {stamp}", since,
                                       now, cycle_s)
    note = coverage_note(first, now)
    summary, by = plain_summary(host, groups, open_count, names, span), "plain"
    if summariser is not None:
        written = _summarise(summariser, "\n".join([*filter(None, [note]), summary,
                                                     *finding_lines, *metrics]))
        if written:
            summary, by = written, "llm"
    if note:
        summary = f"{note} {summary}"
    worst = max((Severity.parse(g["severity"]) for g in groups), key=lambda s: s.rank,
                default=Severity.NONE)
    payload = {"purpose": "recap", "host": host, "created_at": now, "title": title,
               "summary": summary, "summary_by": by, "severity": worst.value, "items": [],
               "sections": [{"title": f"Findings, last {span}", "lines": finding_lines or ["none"]},
                            {"title": "Key metrics against baselines",
                             "lines": metrics or ["no samples in this recap"]},
                            {"title": "Chart notes", "lines": notes or ["every panel has data"]}]}
    if png is not None:
        payload.update(chart_png_b64=base64.b64encode(png).decode("ascii"), chart_name="recap.png")
    payload["text"] = recap_text(payload)
    return payload


def recap_text(payload: Mapping[str, Any]) -> str:
    """The recap as plain text (console, --dry-run)."""
    lines = [payload["title"], "", f"{payload['summary']} ({payload['summary_by']} summary)"]
    for section in payload["sections"]:
        lines += ["", section["title"] + ":"] + [f"  {line}" for line in section["lines"]]
    return "\n".join(lines)


def queue(store: Store, settings: Settings, channels: Sequence[str], payload: Mapping[str, Any],
          now: float, day: str | None) -> list[int]:
    """Queue the recap for each channel that takes it; with ``day``, mark that day's recap sent
    in the same transaction (a repeated day is ignored)."""
    ids = []
    key = day or f"manual-{now!r}"
    with store.transaction() as tx:
        for channel in channels:
            if not accepts(settings, channel, "recap", [], now):
                continue
            found = tx.enqueue(channel=channel, purpose="recap", severity=payload["severity"],
                               payload=payload, now=now, dedupe_key=f"recap:{key}:{channel}")
            if found is not None:
                ids.append(found)
        if day is not None:
            tx.mark_recap(day, now, ids[0] if ids else None)
    return ids


def llm_summariser(settings: Settings, stop: threading.Event | None = None,
                   heartbeat: Callable[[], None] = lambda: None) -> Summariser:
    """The LLM's summary (``analysis.ollama_judge.summarise``) within OLLAMA_TIMEOUT_SECONDS plus
    a grace, whatever the client does; None means the plain one; Stopped when ``stop`` is set."""
    from analysis.ollama_judge import summarise  # noqa: PLC0415 - imports the ollama client

    limit = settings.OLLAMA_TIMEOUT_SECONDS + SUMMARY_GRACE_S

    def bounded(facts: str) -> str | None:
        finished, text = run_bounded(lambda: summarise(settings, facts), limit, stop, heartbeat,
                                     name="recap-summary")
        if not finished:
            log.warning("no LLM summary for the recap within %.0f s; the plain one is used", limit)
        return text if finished else None

    return bounded


def run_due(store: Store, settings: Settings, notifiers: Mapping[str, Notifier],
            clock: Callable[[], float] = time.time, stop: threading.Event | None = None,
            heartbeat: Callable[[], None] = lambda: None) -> list[int]:
    """Queue and try to deliver today's recap when it is due (called after each cycle)."""
    now = clock()
    day = recap_due(store, settings, now)
    if day is None:
        return []
    payload = build(store, settings, now, llm_summariser(settings, stop, heartbeat))
    ids = queue(store, settings, list(notifiers), payload, now, day)
    log.info("daily recap for %s queued (%d message(s))", day, len(ids))
    deliver_due(store, notifiers, clock(), settings.ALERT_RETRY_MAX_SECONDS, clock, stop=stop,
                heartbeat=heartbeat)
    return ids


def command(args: argparse.Namespace, settings: Settings) -> int:
    """`monitor_agent.py recap [--dry-run] [--chart PATH]`: send (or print) a recap now."""
    try:
        store = Store.open(settings.db_path)
    except StoreError as err:
        print(f"recap: {err}")
        return 1
    try:
        now = time.time()
        payload = build(store, settings, now, llm_summariser(settings))
        if args.dry_run:
            print(payload["text"])
            if payload.get("chart_png_b64"):
                args.chart.write_bytes(base64.b64decode(payload["chart_png_b64"]))
                print(f"\nchart written to {args.chart}")
            else:
                print("\nno chart (see the chart notes)")
            return 0
        notifiers = make_notifiers(settings)
        ids = queue(store, settings, list(notifiers), payload, now, None)
        results = deliver_due(store, notifiers, now, settings.ALERT_RETRY_MAX_SECONDS)
        failed = [r for r in results if r.id in ids and r.status != "sent"]
        for result in failed:
            print(f"recap: {result.channel} not delivered yet ({result.error}); "
                  f"the running agent retries it from the outbox")
        if not failed:
            print(f"recap sent to {', '.join(sorted({r.channel for r in results if r.id in ids}))}")
        return 1 if failed else 0
    finally:
        store.close()
