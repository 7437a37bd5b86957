"""Detectors, one module per source, listed explicitly: ``detect(result, ctx) -> list[Finding]``.

Each module also declares ``KINDS``, the finding kinds it can produce (analysis.kinds.KindSpec).
A source is a collector's name (collectors.REGISTRY); one without a detector gives samples and
observations but no findings.
"""
from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from analysis.kinds import KindSpec

log = logging.getLogger(__name__)

DETECTORS: dict[str, str] = {
    "syslog": "analysis.detect_syslog",
    "auth_log": "analysis.detect_auth",
    "sensors": "analysis.detect_sensors",
    "ping": "analysis.detect_ping",
    "nmap": "analysis.detect_nmap",
    "processes": "analysis.detect_processes",
    "containers": "analysis.detect_containers",
    "llm_runtimes": "analysis.detect_llm_runtimes",
    "llm_traffic": "analysis.detect_llm_traffic",
}


def load(source: str) -> ModuleType:
    """Import the detector module of a source."""
    return importlib.import_module(DETECTORS[source])


def all_kinds() -> list[KindSpec]:
    """Every finding kind of every detector."""
    return [kind for source in DETECTORS for kind in load(source).KINDS]


@functools.cache
def kind_specs() -> dict[str, KindSpec]:
    """Every finding kind by its name."""
    return {spec.kind: spec for spec in all_kinds()}


def told(kind: str, facts: Mapping[str, Any], labels: Mapping[str, Any],
         resolved: bool = False) -> dict[str, str]:
    """How a finding is told (analysis.kinds): its name, the headline (or, resolved, what came
    back), the spoken sentence from its trusted facts alone, and what to do."""
    spec = kind_specs().get(kind)
    if spec is None:      # a kind this build does not know (an old row): its own name
        return {"name": kind, "headline": kind, "spoken": "", "action": ""}
    missing = spec.missing(facts, labels, resolved)
    if missing:           # a detector that gives less than its kind tells: a bug, said once
        log.log(logging.DEBUG if resolved else logging.WARNING,
                "finding kind %s: no %s to tell it with; its name is said instead", kind,
                ", ".join(sorted(missing)))
    return {"name": spec.name or kind,
            "headline": spec.recovered(facts, labels) if resolved
            else spec.headline(facts, labels),
            "spoken": spec.spoken(facts), "action": spec.todo(facts)}
