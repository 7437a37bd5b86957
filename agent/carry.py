"""Counts per cycle (log lines, errors, failed logins) belong to scheduled cycles.

A baseline of "errors per cycle" compares like with like only if every sample spans one interval.
An event cycle that commits (it alerted) reads part of an interval: its per-cycle samples
(foundation/series.py, ``per_cycle``) are not stored but carried, in the store with its cursors,
and the next scheduled cycle adds them to its own, so each of its samples spans the whole
interval again. Levels (temperatures, round trips, counts of things) are stored as they come.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import collectors
from agent import EVENT
from foundation.model import CollectorStatus, CollectResult, Sample
from foundation.series import metric_spec
from foundation.store.data_storage import Store


class Carrying(Protocol):
    """A collector's slot in a cycle (agent.cycle._Slot): its result and what to carry."""

    name: str
    result: CollectResult | None
    status: CollectorStatus | None
    carry: dict[str, Any] | None


def key(name: str) -> str:
    """The collector-state name a collector's carried counts are stored under."""
    return f"carry:{name}"


def _entry(sample: Sample) -> dict[str, Any]:
    return {"metric": sample.metric, "key": sample.key, "value": sample.value,
            "by_hour": sample.by_hour}


def add(carry: Mapping[str, Any], samples: Iterable[Sample]) -> dict[str, Any]:
    """``carry`` with ``samples`` added to it, series by series."""
    out = {series: dict(entry) for series, entry in carry.items()}
    for sample in samples:
        entry = out.setdefault(sample.series, {**_entry(sample), "value": 0.0})
        entry["value"] = float(entry["value"]) + sample.value
    return out


def merged(samples: Iterable[Sample], carry: Mapping[str, Any]) -> tuple[Sample, ...]:
    """A scheduled cycle's samples with the carried counts added (a series carried but not
    sampled this time becomes a sample of its own)."""
    out = list(samples)
    index = {s.series: i for i, s in enumerate(out)}
    for series, entry in carry.items():
        if series in index:
            mine = out[index[series]]
            out[index[series]] = dataclasses.replace(mine, value=mine.value + float(entry["value"]))
        else:
            out.append(Sample(entry["metric"], float(entry["value"]), entry.get("key", ""),
                              bool(entry.get("by_hour", False))))
    return tuple(out)


def _follows(name: str) -> bool:
    """Whether the collector runs in event cycles (collectors.followed: it declares follows)."""
    try:
        return hasattr(collectors.load(name), "follows")
    except collectors.CollectorUnavailable:
        return False


def carried(store: Store, slots: Mapping[str, Carrying], trigger: str) -> None:
    """Move per-cycle samples between event and scheduled cycles (see the module), in place:
    each slot's result gets the samples its cycle stores and ``carry`` what to write with it."""
    for name, slot in slots.items():
        result = slot.result
        if result is None or slot.status is None or not slot.status.ok or not _follows(name):
            continue   # only the followed collectors run in event cycles: no other has a carry
        stored = store.collector_state(key(name))
        if trigger == EVENT:
            counts = [s for s in result.samples if metric_spec(s.metric).per_cycle]
            if counts:
                slot.carry = add(stored, counts)
                slot.result = dataclasses.replace(result, samples=tuple(
                    s for s in result.samples if not metric_spec(s.metric).per_cycle))
        elif stored:
            slot.carry = {}
            slot.result = dataclasses.replace(result, samples=merged(result.samples, stored))
