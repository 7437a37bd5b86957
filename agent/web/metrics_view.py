"""The metrics page's data: temperatures, ping round trip and loss, failed logins and syslog errors
over one of four ranges, from the store's samples, as points a chart draws.

Each range has a bucket width (never below the cycle interval, so every bucket of a running agent
holds a sample): the store averages a level (a temperature, a round trip) over each bucket and sums
a per-cycle count (failed logins) into it, in SQL, so a month of 5-minute samples is at most 360
points a series. The series of a panel share one list of bucket times (uPlot's aligned data); a
series without a sample in a bucket has null there, and ``breaks`` says which of its nulls are real
gaps (the agent was not running) rather than a bucket it merely missed. Series keys (ping targets,
sensor names) come from outside the agent: they go through the one neutraliser like every other
untrusted string.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.web.bucket_cache import BucketCache
from agent.web.views import text, when
from foundation.durations import duration_text
from foundation.model import series_metric
from foundation.series import metric_spec, with_unit
from foundation.settings import Settings
from foundation.store.dashboard_reads import Bucket
from foundation.store.data_storage import Store

SERIES_CAP = 12       # series drawn per panel (the most recently sampled first); the rest counted
SERIES_READ = 48      # series read per panel at most (by name): a page's cost stays bounded
KEY_CAP = 80          # characters of a series key as shown
GAP_BUCKETS = 3       # more than this many bucket widths without a sample is a gap in the line


@dataclass(frozen=True)
class Range:
    """One choice of the page: how far back, and the bucket width it is averaged over."""

    id: str
    label: str
    span_s: int
    width_s: int


RANGES = (Range("1h", "1 hour", 3600, 60), Range("24h", "24 hours", 86400, 300),
          Range("7d", "7 days", 7 * 86400, 1800), Range("30d", "30 days", 30 * 86400, 7200))
DEFAULT_RANGE = "24h"


@dataclass(frozen=True)
class Panel:
    """One chart: a title and the stored metric whose series it draws."""

    id: str
    title: str
    metric: str


PANELS = (Panel("temperature", "Temperatures", "sensor.temperature_c"),
          Panel("ping_rtt", "Ping round trip", "ping.rtt_avg_ms"),
          Panel("ping_loss", "Ping loss", "ping.loss_percent"),
          Panel("failed_logins", "Failed logins", "auth.failed_logins"),
          Panel("syslog_errors", "Syslog errors", "syslog.errors"))


def pick_range(value: object) -> Range:
    """The range a query asks for; the default one for anything else."""
    return next((r for r in RANGES if r.id == value),
                next(r for r in RANGES if r.id == DEFAULT_RANGE))


def bucket_width(chosen: Range, settings: Settings) -> int:
    """The range's width, at least one cycle interval (a bucket shorter than the interval would
    be empty between two cycles)."""
    return max(chosen.width_s, settings.MONITOR_INTERVAL_SECONDS)


def _number(value: float) -> float | None:
    """A point as the chart gets it: four significant digits; None (no point) for what JSON
    cannot carry (an infinite reading)."""
    return float(f"{value:.4g}") if math.isfinite(value) else None


def _series_label(series: str) -> str:
    key = series[len(series_metric(series)) + 1:-1] if "[" in series else ""
    return text(key or metric_spec(series_metric(series)).name, KEY_CAP)


def _aligned(read: list[tuple[str, list[Bucket]]], counts: bool,
             width: int) -> tuple[list[int], list[dict[str, Any]]]:
    """The shared bucket times (with one empty row inside each gap) and each series' values on
    them, with the indexes of its nulls that are gaps."""
    times = sorted({int(b.start) for _, buckets in read for b in buckets})
    gap = GAP_BUCKETS * width
    x: list[int] = []
    for t in times:
        if x and t - x[-1] > gap:
            x.append(x[-1] + width)       # no series has a sample here: every line breaks
        x.append(t)
    index = {t: i for i, t in enumerate(x)}
    out = []
    for series, buckets in read:
        values: list[float | None] = [None] * len(x)
        for b in buckets:
            values[index[int(b.start)]] = _number(b.total if counts else b.mean)
        breaks, last = [], None
        for i, v in enumerate(values):
            if v is None:
                continue
            if last is not None and i - last > 1 and x[i] - x[last] > gap:
                breaks.append(last + 1)
            last = i
        out.append({"series": series, "values": values, "breaks": breaks})
    return x, out


def _panel(store: Store, panel: Panel, since: float, until: float, width: int,
           per: str, cache: BucketCache) -> dict[str, Any]:
    spec = metric_spec(panel.metric)
    every = [n for n in store.series_names(panel.metric) if series_metric(n) == panel.metric]
    names = every[:SERIES_READ]
    read = [(n, cache.buckets(store, n, since, until, width)) for n in names]
    read = [(n, b) for n, b in read if b]
    read.sort(key=lambda item: (-item[1][-1].start, item[0]))    # the most recently sampled first
    shown, more = read[:SERIES_CAP], len(read) - SERIES_CAP + len(every) - len(names)
    read = sorted(shown, key=lambda item: item[0])
    x, aligned = _aligned(read, spec.per_cycle, width)
    series = []
    for (name, buckets), line in zip(read, aligned, strict=True):
        level = [b.total if spec.per_cycle else b.mean for b in buckets]
        series.append({"label": _series_label(name),
                       "latest": with_unit(level[-1], panel.metric),
                       "low": with_unit(min(b.low for b in buckets) if not spec.per_cycle
                                        else min(level), panel.metric),
                       "high": with_unit(max(b.high for b in buckets) if not spec.per_cycle
                                         else max(level), panel.metric),
                       "overall": with_unit(sum(b.total for b in buckets) if spec.per_cycle
                                            else sum(b.total for b in buckets)
                                            / sum(b.count for b in buckets), panel.metric),
                       "samples": sum(b.count for b in buckets),
                       "values": line["values"], "breaks": line["breaks"]})
    return {"id": panel.id, "title": panel.title, "name": spec.name, "unit": spec.unit,
            "per": per if spec.per_cycle else "",
            "how": f"sum per {per}" if spec.per_cycle else f"mean per {per}",
            "overall": "in all" if spec.per_cycle else "mean",
            "empty": not series, "more": max(0, more), "x": x, "series": series}


def metrics(store: Store | None, settings: Settings, chosen: Range, now: float,
            cache: BucketCache | None = None) -> dict[str, Any]:
    """The metrics page: each panel's series over the chosen range, in buckets (the closed
    ones kept in ``cache`` between refreshes)."""
    cache = cache if cache is not None else BucketCache()
    width = bucket_width(chosen, settings)
    per = duration_text(width)
    since = now - chosen.span_s
    out: dict[str, Any] = {
        "store": store is not None, "range": chosen.id, "label": chosen.label,
        "bucket": per, "gap_s": GAP_BUCKETS * width,
        "from": when(since, now), "to": when(now, now),
        "ranges": [{"id": r.id, "label": r.label, "href": f"/metrics?range={r.id}",
                    "current": r.id == chosen.id} for r in RANGES],
        "order": [p.id for p in PANELS], "panels": {}}
    for panel in PANELS:
        out["panels"][panel.id] = (
            _panel(store, panel, since, now + 1, width, per, cache) if store is not None else
            {"id": panel.id, "title": panel.title, "name": metric_spec(panel.metric).name,
             "unit": metric_spec(panel.metric).unit, "per": "", "how": "", "overall": "",
             "empty": True, "more": 0, "x": [], "series": []})
    return out


def point_count(data: Mapping[str, Any]) -> int:
    """The most points any one series of a metrics page's data has (its chart's cost)."""
    return max((len(p["x"]) for p in data["panels"].values()), default=0)
