"""Durations as the operator types them (30m, 2h, 1d, 1h30m) and as the agent prints them."""
from __future__ import annotations

import re
import time

_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_S = 90 * 86400   # a silence longer than a quarter is a typo, not a plan


class DurationError(ValueError):
    """Text that is not a duration such as 30m, 2h, 1d or 1h30m."""


def parse_duration(text: str, max_s: int = MAX_S) -> int:
    """Seconds in ``text`` (number-unit pairs: s, m, h, d, w); DurationError otherwise."""
    spec = text.strip().lower()
    parts = _PART.findall(spec)
    if not spec or "".join(n + u for n, u in parts) != spec:
        raise DurationError(f"{text!r} is not a duration: write it as 30m, 2h, 1d or 1h30m "
                            "(s, m, h, d, w)")
    seconds = sum(int(n) * _UNIT_S[u] for n, u in parts)
    if seconds <= 0:
        raise DurationError(f"{text!r} is no time at all: give a duration such as 30m or 2h")
    if seconds > max_s:
        raise DurationError(f"{text!r} is longer than the {max_s // 86400} days allowed")
    return seconds


def duration_text(seconds: float) -> str:
    """A span for people: "45 s", "12 min", "2 h 5 min", "3 d 4 h"."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(s // 3600, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def local_time(ts: float) -> str:
    """An epoch time as local date and time, e.g. "2026-06-15 12:00"."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))
