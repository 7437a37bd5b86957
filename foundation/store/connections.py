"""The history of the local LLM runtimes' connections, across cycles and restarts.

One row per runtime, peer address, port and direction (the peer's port for an outbound connection,
the runtime's own for an inbound one, where the peer's is only an ephemeral number): when it was
first and last seen, in how many cycles, its address class and organisation, the peer's reverse
name as resolved (untrusted text: shown only through the neutraliser). The dashboard's LLM page
and its insights read it; the agent writes it with each cycle's llm_runtimes observations.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from foundation.store.files import reading as _reading

_SELECT = ("SELECT runtime, remote, port, direction, class, organisation, rdns, first_seen, "
           "last_seen, cycles FROM llm_connections")


@dataclass(frozen=True)
class ConnectionRow:
    """One peer of one runtime over time."""

    runtime: str
    remote: str
    port: int
    direction: str          # outbound | inbound
    address_class: str      # loopback | private | external | ...
    organisation: str       # the provider of an external address, "" if unknown
    rdns: str               # the reverse name when one was resolved (untrusted), else ""
    first_seen: float
    last_seen: float
    cycles: int


def _port(conn: Mapping[str, Any]) -> int:
    """The port that names the service: the peer's, or for an inbound connection the runtime's."""
    if conn.get("direction") == "inbound":
        local = str(conn.get("local", ""))
        tail = local.rsplit(":", 1)[-1]
        return int(tail) if tail.isdigit() else 0
    return int(conn.get("port") or 0)


def connection_rows(runtimes: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, int, str],
                                                                    tuple[str, str, str]]:
    """Each connection of a cycle's runtimes by its key, with (class, organisation, rdns)."""
    out: dict[tuple[str, str, int, str], tuple[str, str, str]] = {}
    for runtime in runtimes:
        for conn in runtime.get("connections") or ():
            key = (str(runtime.get("runtime", "")), str(conn.get("ip", "")), _port(conn),
                   str(conn.get("direction", "outbound")))
            out[key] = (str(conn.get("class", "")), str(conn.get("provider") or ""),
                        str(conn.get("rdns") or ""))
    return out


def record(conn: sqlite3.Connection, runtimes: Iterable[Mapping[str, Any]], now: float) -> int:
    """Add one cycle's connections to the history (inside the cycle's transaction); rows written."""
    rows = connection_rows(runtimes)
    conn.executemany(
        "INSERT INTO llm_connections VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1) "
        "ON CONFLICT (runtime, remote, port, direction) DO UPDATE SET last_seen = excluded.last_seen, "
        "cycles = cycles + 1, class = excluded.class, "
        "organisation = COALESCE(NULLIF(excluded.organisation, ''), organisation), "
        "rdns = COALESCE(NULLIF(excluded.rdns, ''), rdns)",
        [(*key, *values, now, now) for key, values in rows.items()])
    return len(rows)


class ConnectionHistory:
    """The store's reading of the history (a mixin of foundation.store.data_storage.Store)."""

    _conn: sqlite3.Connection

    @_reading
    def llm_connections(self, since: float = 0.0) -> list[ConnectionRow]:
        """Every runtime's peers seen since ``since``, the most recently seen first."""
        cur = self._conn.execute(_SELECT + " WHERE last_seen >= ? ORDER BY last_seen DESC, "
                                 "cycles DESC", (since,))
        return [ConnectionRow(r[0], r[1], int(r[2]), r[3], r[4], r[5], r[6], float(r[7]),
                              float(r[8]), int(r[9])) for r in cur]
