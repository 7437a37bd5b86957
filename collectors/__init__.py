"""The collectors, one module per source, listed explicitly. Importing this package runs nothing.

Each module exposes ``collect(ctx: CollectContext) -> CollectResult`` and ``timeout_s(settings)``.
A collector reads one source and returns plain data; it never alerts, sleeps or writes the store.
Adding one is a module, its fixture test and one line below (docs/development.md, "Adding a
collector").
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING

from foundation.errors import ConfigError, did_you_mean

if TYPE_CHECKING:   # the registry stays light: nothing of a collector is imported with it
    from collectors.logreader.follow import Targets
    from foundation.settings import Settings

# name -> module; the names are a contract (DESIGN.md), the order is the report's order. This is
# the one list of collector names: COLLECTORS is checked against it when the agent starts.
REGISTRY: dict[str, str] = {
    "syslog": "collectors.syslog",
    "auth_log": "collectors.auth_log",
    "sensors": "collectors.sensors",
    "ping": "collectors.ping",
    "nmap": "collectors.nmap",
    "processes": "collectors.processes",
    "containers": "collectors.containers",
    "llm_runtimes": "collectors.llm_runtimes",
    "llm_traffic": "collectors.llm_traffic.collector",
}


class CollectorUnavailable(Exception):
    """A collector's module is not part of this build (or failed to import), or is not registered."""


def check_names(names: Iterable[str]) -> None:
    """ConfigError naming the first of ``names`` that is no registered collector."""
    for name in names:
        if name not in REGISTRY:
            raise ConfigError(f"COLLECTORS: {name!r} is not a collector{did_you_mean(name, REGISTRY)}; "
                              f"the collectors are {', '.join(REGISTRY)}")


def followed(names: Iterable[str], settings: Settings) -> dict[str, Targets]:
    """The collectors among ``names`` whose new lines start an event cycle (their module declares
    ``follows(settings)``: the log collectors), with what the follower watches for each."""
    out: dict[str, Targets] = {}
    for name in names:
        try:
            module = load(name)
        except CollectorUnavailable:
            continue
        if hasattr(module, "follows"):
            out[name] = module.follows(settings)
    return out


def load(name: str) -> ModuleType:
    """Import the module of a registered collector (sys.modules first: no import machinery on
    the cycle's path)."""
    if name not in REGISTRY:
        raise CollectorUnavailable(f"{name!r} is not a registered collector")
    path = REGISTRY[name]
    loaded = sys.modules.get(path)   # a dict look-up: every cycle asks for each collector twice
    if loaded is not None:
        return loaded
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as err:
        raise CollectorUnavailable(f"collector {name} is not available: {err}") from err
