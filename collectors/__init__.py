"""The collectors, one module per source, listed explicitly. Importing this package runs nothing.

Each module exposes ``collect(ctx: CollectContext) -> CollectResult`` and ``timeout_s(settings)``.
A collector reads one source and returns plain data; it never alerts, sleeps or writes the store.
"""
from __future__ import annotations

import importlib
from types import ModuleType

# name -> module; the names are a contract (DESIGN.md), the order is the report's order.
REGISTRY: dict[str, str] = {
    "syslog": "collectors.syslog",
    "auth_log": "collectors.auth_log",
    "sensors": "collectors.sensors",
    "ping": "collectors.ping",
    "nmap": "collectors.nmap",
    "processes": "collectors.processes",
    "containers": "collectors.containers",
    "llm_runtimes": "collectors.llm_runtimes",
}


class CollectorUnavailable(Exception):
    """A collector's module is not part of this build (or failed to import)."""


def load(name: str) -> ModuleType:
    """Import the module of a registered collector."""
    try:
        return importlib.import_module(REGISTRY[name])
    except ModuleNotFoundError as err:
        raise CollectorUnavailable(f"collector {name} is not available: {err}") from err
