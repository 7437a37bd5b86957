"""How an alert is told, the same on every channel: the headline (the kind's words with the fact
that matters), what to do, since when, the number against its usual with its unit, who judged it,
and the internal ids for the footer. Each channel escapes what it shows (alerts.text,
foundation.untrusted); these functions only choose the words.

A payload item (agent.cycle builds them) carries ``headline``, ``spoken``, ``action``, ``name`` and,
for a resolved one, ``down_s``; an item queued by an older version may lack them, so each falls
back to what every version wrote (kind, summary).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from foundation.durations import duration_text
from foundation.model import series_metric
from foundation.series import metric_spec, with_unit


def plural(n: int, word: str = "finding") -> str:
    """The word for ``n`` of it: ``finding`` for 1, ``findings`` for any other count."""
    return word if n == 1 else f"{word}s"


def count_words(n: int, word: str = "finding") -> str:
    """``1 finding``, ``3 findings``."""
    return f"{n} {plural(n, word)}"


def size_words(n: int) -> str:
    """A byte count for people: ``512 B``, ``12.3 KiB``, ``4.0 MiB``, ``1.2 GiB``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def headline(item: Mapping[str, Any]) -> str:
    """The line that says what happened (untrusted parts inside: the channel escapes it)."""
    return str(item.get("headline") or f"{item.get('kind', '')}: {item.get('summary', '')}")


def recovered(item: Mapping[str, Any]) -> str:
    """What came back, and for how long it was away: ``Process nginx is running again (down
    14 min)``."""
    text = headline(item)
    down = item.get("down_s")
    return f"{text} (down {duration_text(float(down))})" if down is not None else text


def comparison(item: Mapping[str, Any]) -> str | None:
    """``Now 91 °C, usually 45 °C (40 °C to 60 °C)`` when the finding carries a value."""
    metric = series_metric(str(item.get("metric") or ""))
    if item.get("value") is None or not metric:      # a number without its metric has no unit
        return None
    try:
        now = with_unit(float(item["value"]), metric)
        base = item.get("baseline") or {}
        if not base:
            return f"Now {now}"
        usual = with_unit(float(base["centre"]), metric)
        low, high = base.get("min"), base.get("max")
        seen = (f" ({with_unit(float(low), metric)} to {with_unit(float(high), metric)})"
                if low is not None and high is not None and low != high else "")
    except (TypeError, ValueError, KeyError):
        return None
    return f"Now {now}, usually {usual}{seen}"


def judged(item: Mapping[str, Any], verdict: Mapping[str, Any]) -> str:
    """Who set the severity and why: the rules, or the LLM with its reason."""
    severity = str(item.get("severity", "none"))
    floor = str(item.get("floor", "none"))
    floored = f", never below {floor}" if floor not in ("none", severity) else ""
    if verdict.get("by") == "llm":
        reason = str(item.get("reason") or "")
        return f"{severity} by the LLM{floored}: {reason}" if reason else f"{severity} by the LLM"
    return f"{severity} by the rules{floored}"


def footer(item: Mapping[str, Any], series: bool = True) -> str:
    """The internal ids, for looking it up: kind, series (or, without ``series``, only its metric:
    a series' key is text from outside), fingerprint and why it was sent."""
    metric = str(item.get("metric") or "")
    parts = [str(item.get("kind", "")), metric if series else series_metric(metric),
             str(item.get("fingerprint", ""))[:8], str(item.get("why", ""))]
    return " · ".join(p for p in parts if p)


def metric_name(item: Mapping[str, Any]) -> str:
    """The name people know the item's metric by (``Ping round trip``), or ""."""
    metric = series_metric(str(item.get("metric") or ""))
    return metric_spec(metric).name if metric else ""

