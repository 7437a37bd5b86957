"""When the next cycle is due, on the monotonic clock, and whether the loop is keeping to it.

Cycles are paced by ``time.monotonic`` (CLOCK_MONOTONIC), which neither an NTP step, a VM snapshot
restore nor a DST change moves; wall time is left to what is truly local (the daily recap, quiet
hours). The same object decides whether systemd's watchdog may be fed: only while a cycle runs
within its budget, or while the loop waits for a deadline that is neither passed nor absurdly far
away. A loop or a cycle that stops making progress therefore stops feeding, and systemd restarts
the service after WatchdogSec.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

LATE_S = 5.0      # an idle loop wakes at its deadline: this much past it is stuck


class Pacer:
    """Monotonic deadlines for cycles every ``interval_s``, and the watchdog's proof of progress."""

    def __init__(self, interval_s: float, budget_s: float, feed: Callable[[], None] = lambda: None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = float(interval_s)
        self.budget_s = float(budget_s)
        self._feed = feed
        self._monotonic = monotonic
        self.next_due = monotonic()          # the first cycle runs at once
        self.running_since: float | None = None

    def due(self) -> bool:
        """True when the next cycle should start now."""
        return self.running_since is None and self._monotonic() >= self.next_due

    def wait_s(self) -> float:
        """Seconds until the next cycle is due (0 when it is)."""
        return max(0.0, self.next_due - self._monotonic())

    def started(self) -> None:
        """A cycle starts now."""
        self.running_since = self._monotonic()

    def finished(self, scheduled: bool = True) -> None:
        """The cycle that started ends now; after a scheduled one, the next is due one interval
        after its start (an event cycle, started by new log lines, moves no deadline).

        A cycle that overran its interval drops the slots it missed instead of running back to
        back, so an overloaded machine gets a pause between cycles rather than a pile-up.
        """
        now = self._monotonic()
        start = self.running_since if self.running_since is not None else now
        self.running_since = None
        if not scheduled:
            return
        self.next_due = start + self.interval_s
        if self.next_due <= now:
            skipped = int((now - start) // self.interval_s)
            log.warning("the cycle took %.1f s, over the %g s interval; %d slot(s) skipped",
                        now - start, self.interval_s, skipped)
            self.next_due = now + self.interval_s

    def on_time(self) -> bool:
        """True while the loop is making progress: a cycle within its budget, or an idle wait
        for a deadline that is neither overdue nor further than one interval away."""
        now = self._monotonic()
        if self.running_since is not None:
            return now - self.running_since <= self.budget_s
        return -LATE_S <= self.next_due - now <= self.interval_s + LATE_S

    def beat(self) -> None:
        """Feed the watchdog if, and only if, the loop is on time (the cycle's heartbeat too)."""
        if self.on_time():
            self._feed()
