"""The loop's follower: which logs to watch, and starting the watch (collectors/logreader/follow.py).

The log collectors declare what they read (``follows(settings)``); the follower watches the union
and sets the loop's flag when any of it changes. Event cycles run at most once a second
(EVENT_GAP_S), and never delay a scheduled cycle that is due: the loop runs that one first.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from functools import reduce

import collectors
from collectors.logreader.follow import Follower, Targets
from foundation.settings import Settings

log = logging.getLogger(__name__)

EVENT_GAP_S = 1.0      # at most one event cycle a second: a burst of lines is one cycle


def start_follower(settings: Settings, on_change: Callable[[], None]) -> Follower | None:
    """Watch the enabled log collectors' sources; None when there is nothing to follow, when
    FOLLOW_LOGS is off, or when inotify cannot be had (a warning says so)."""
    if not settings.FOLLOW_LOGS:
        return None
    wanted = collectors.followed(settings.COLLECTORS, settings)
    if not wanted:
        return None
    follower = Follower(reduce(Targets.__or__, wanted.values()), on_change)
    if not follower.start():
        return None
    log.info("following %s for event cycles", ", ".join(wanted))
    return follower
