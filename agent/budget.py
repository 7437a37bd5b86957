"""How long a cycle may take: each collector's bound, the judge's, and whether they fit.

The collectors run in parallel, each within its own bound; then the judge runs within its bound;
then the deliveries and the bookkeeping. ``check_fits`` refuses settings whose worst cycle is
longer than their interval; ``cycle_budget_s`` is the point past which a cycle counts as stuck.
"""
from __future__ import annotations

from typing import Any

import collectors
from foundation.settings import Settings, check_cycle_fits

JUDGE_GRACE_S = 5.0     # beyond the judge's own timeout, before the rules take over
DELIVERY_BUDGET_S = 60.0  # a cycle's deliveries stop after this; the rest wait for the next one
BOOKKEEPING_S = 30.0      # detect, commit, report and trim, generously (they take milliseconds)
EVENT_JUDGE_S = 2.0       # an event cycle waits this long for the LLM; then the rules decide


def judge_limit_s(settings: Settings) -> float:
    """How long a cycle waits for the judge before the rules decide."""
    return settings.OLLAMA_TIMEOUT_SECONDS * 2 + JUDGE_GRACE_S


def collector_bound(module: Any, settings: Settings) -> float:
    """A collector's time bound in a cycle: its own, capped by COLLECTOR_TIMEOUT_SECONDS if set."""
    own = float(module.timeout_s(settings))
    cap = settings.COLLECTOR_TIMEOUT_SECONDS
    return min(own, cap) if cap > 0 else own


def collector_bounds(settings: Settings) -> dict[str, float]:
    """Each enabled collector's time bound in a cycle (one that cannot load takes no time)."""
    bounds: dict[str, float] = {}
    for name in settings.COLLECTORS:
        try:
            bounds[name] = collector_bound(collectors.load(name), settings)
        except collectors.CollectorUnavailable:
            continue  # reported as failed at once by every cycle
    return bounds


def check_fits(settings: Settings) -> None:
    """ConfigError when COLLECTORS names no registered collector, or when the worst cycle of these
    settings is longer than their interval."""
    collectors.check_names(settings.COLLECTORS)
    check_cycle_fits(settings, collector_bounds(settings), judge_limit_s(settings))


def cycle_budget_s(settings: Settings) -> float:
    """The longest a healthy cycle can take: the slowest collector (they run in parallel), the
    judge's bound, the deliveries' budget and the bookkeeping; past it the cycle is stuck."""
    slowest = max(collector_bounds(settings).values(), default=0.0)
    return slowest + judge_limit_s(settings) + DELIVERY_BUDGET_S + BOOKKEEPING_S
