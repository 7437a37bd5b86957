"""The services the agent depends on, logged when they go down and when they come back, once each.

Ollama (the judge's calls, warm-up included), Discord and Home Assistant (the outbox's deliveries)
and Docker (the containers collector, when containers are watched) report their outcomes here,
once per cycle. A change is logged once: WARNING when one goes down (what, since when, the error,
what that means), INFO when it is back (after how long). The state is kept in the store, so
``status`` says how long each has been down and a restart does not log an outage again as new.
The parts themselves log their per-attempt failures at DEBUG only.
"""
from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alerts.outbox import ABANDONED, Delivery
from foundation.durations import duration_text, local_time
from foundation.model import CollectorStatus
from foundation.redact import redact
from foundation.settings import Settings
from foundation.store.data_storage import DependencyRow, Store, StoreError

log = logging.getLogger(__name__)

# each dependency, and what its being down means for the operator
MEANING = {
    "ollama": "the rules decide the severities until it answers",
    "discord": "alerts wait in the outbox and are sent when it is back",
    "home_assistant": "spoken alerts wait in the outbox and are said when it is back",
    "docker": "the watched containers' state is unknown",
    "apprise": "its messages wait in the outbox and are sent when it is back",
    "mqtt": "Home Assistant's entities keep their last states (unavailable if the agent stops)",
    "alertmanager": "the fleet's Alertmanager is told the findings when it is back; until then "
                    "it resolves their alerts by itself",
}
DELIVERED_BY = ("discord", "home_assistant", "alertmanager")
ERROR_MAX = 300


@dataclass(frozen=True)
class Health:
    """One outcome: the service answered, or the error why not."""

    up: bool
    error: str | None = None


def judge_health(judge: object) -> Health | None:
    """The outcome of the judge's calls to Ollama since the last cycle (None: it made none, or it
    is a judge without an LLM)."""
    take = getattr(judge, "take_health", None)
    found = take() if callable(take) else None
    if not isinstance(found, tuple) or len(found) != 2:
        return None
    return Health(bool(found[0]), None if found[1] is None else str(found[1]))


def delivery_health(deliveries: Sequence[Delivery], channels: Collection[str]
                    ) -> dict[str, Health]:
    """Per configured channel: up when a message got through, else down with the last error.

    A send abandoned on stop says nothing about the service.
    """
    out: dict[str, Health] = {}
    for d in deliveries:
        tracked = d.channel in DELIVERED_BY or d.channel.startswith("apprise:")  # each URL
        if not tracked or d.channel not in channels:
            continue
        if d.status == "sent":
            out[d.channel] = Health(True)
        elif d.error and d.error != ABANDONED and not out.get(d.channel, Health(False)).up:
            out[d.channel] = Health(False, d.error)
    return out


def docker_health(settings: Settings, statuses: Mapping[str, CollectorStatus],
                  observations: Mapping[str, Any]) -> Health | None:
    """Docker's state when containers are watched and the collector ran (None otherwise)."""
    status = statuses.get("containers")
    if not settings.DOCKER_CONTAINERS_TO_MONITOR or status is None or not status.ok:
        return None
    seen = observations.get("containers") or {}
    if seen.get("engine") is not None:
        return Health(True)
    return Health(False, status.note or "the Docker API did not answer")


def cycle_health(settings: Settings, judge: object, statuses: Mapping[str, CollectorStatus],
                 observations: Mapping[str, Any], deliveries: Sequence[Delivery],
                 channels: Collection[str]) -> dict[str, Health]:
    """Every dependency outcome one cycle gives (a dependency it did not use is left out)."""
    out: dict[str, Health] = {}
    ollama = judge_health(judge)
    if ollama is not None:
        out["ollama"] = ollama
    docker = docker_health(settings, statuses, observations)
    if docker is not None:
        out["docker"] = docker
    out.update(delivery_health(deliveries, channels))
    return out


def track(store: Store, seen: Mapping[str, Health], now: float) -> list[DependencyRow]:
    """Record the outcomes, logging each change once; the rows written ([] when nothing new).

    A store that cannot be written costs a warning, never the cycle.
    """
    if not seen:
        return []
    try:
        known = store.dependencies()
        rows = []
        for name, health in sorted(seen.items()):
            before = known.get(name)
            changed = before is None or before.up != health.up
            error = None if health.up else redact(health.error or "no answer")[:ERROR_MAX]
            since = before.since if before is not None and not changed else now
            row = DependencyRow(name, health.up, since, error, now)
            if changed:
                _log_change(row, before)
            rows.append(row)
        store.record_dependencies(rows)
    except StoreError as err:
        log.warning("could not record the dependencies' state: %s", err)
        return []
    return rows


def _log_change(row: DependencyRow, before: DependencyRow | None) -> None:
    if not row.up:
        log.warning("%s is down since %s: %s; %s", row.name, local_time(row.since), row.error,
                    MEANING.get(row.name.partition(":")[0], "it is not used until it is back"))
    elif before is not None:  # first seen up is not news
        log.info("%s is back after %s (down since %s)", row.name,
                 duration_text(row.since - before.since), local_time(before.since))
