"""Detectors, one module per source, listed explicitly: ``detect(result, ctx) -> list[Finding]``.

Each module also declares ``KINDS``, the finding kinds it can produce (analysis.kinds.KindSpec).
A source is a collector's name (collectors.REGISTRY); one without a detector gives samples and
observations but no findings.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from analysis.kinds import KindSpec

DETECTORS: dict[str, str] = {
    "syslog": "analysis.detect_syslog",
    "auth_log": "analysis.detect_auth",
    "sensors": "analysis.detect_sensors",
    "ping": "analysis.detect_ping",
    "nmap": "analysis.detect_nmap",
    "processes": "analysis.detect_processes",
    "containers": "analysis.detect_containers",
    "llm_runtimes": "analysis.detect_llm_runtimes",
}


def load(source: str) -> ModuleType:
    """Import the detector module of a source."""
    return importlib.import_module(DETECTORS[source])


def all_kinds() -> list[KindSpec]:
    """Every finding kind of every detector."""
    return [kind for source in DETECTORS for kind in load(source).KINDS]
