"""The history of the local LLM runtimes' connections, and of what local processes sent to LLM
providers (llm_traffic), across cycles and restarts.

One row per runtime, peer address, port and direction (the peer's port for an outbound connection,
the runtime's own for an inbound one, where the peer's is only an ephemeral number): when it was
first and last seen, in how many cycles, its address class and organisation, the peer's reverse
name as resolved (untrusted text: shown only through the neutraliser). The dashboard's LLM page
and its insights read it; the agent writes it with each cycle's llm_runtimes observations.
"""
from __future__ import annotations

import json
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


@dataclass(frozen=True)
class TrafficRow:
    """What one client (executable and container) sent to one provider over time. The executable,
    task name, container and models are untrusted text: shown through the neutraliser only."""

    client: str
    provider_key: str
    provider: str
    exe: str
    comm: str
    container: str
    models: dict[str, int]        # the most used, with their request counts
    endpoints: dict[str, int]
    first_seen: float
    last_seen: float
    cycles: int
    requests: int
    streaming: int
    request_bytes: int
    response_bytes: int
    input_tokens: int
    output_tokens: int
    secret_requests: int


MAX_NAMES = 5


def _merged(old: str, new: Mapping[str, int]) -> str:
    """Two {name: count} maps added, the MAX_NAMES most used kept (a JSON object)."""
    counts: dict[str, int] = {}
    for source in (json.loads(old) if old else {}, new):
        for name, n in source.items():
            counts[str(name)] = counts.get(str(name), 0) + int(n)
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_NAMES]
    return json.dumps(dict(top), sort_keys=True)


def record_traffic(conn: sqlite3.Connection, clients: Iterable[Mapping[str, Any]],
                   now: float) -> int:
    """Add one cycle's llm_traffic rows (per client and provider) to the history; rows written."""
    written = 0
    for row in clients:
        key = (str(row["client"]), str(row["provider_key"]))
        old = conn.execute("SELECT models, endpoints FROM llm_traffic WHERE client = ? AND "
                           "provider_key = ?", key).fetchone()
        models = _merged(old[0] if old else "", row.get("models") or {})
        endpoints = _merged(old[1] if old else "", row.get("endpoints") or {})
        secrets = sum(int(n) for n in (row.get("secrets") or {}).values())
        conn.execute(
            "INSERT INTO llm_traffic VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (client, provider_key) DO UPDATE SET provider = excluded.provider, "
            "exe = excluded.exe, comm = excluded.comm, container = excluded.container, "
            "models = excluded.models, endpoints = excluded.endpoints, "
            "last_seen = excluded.last_seen, cycles = cycles + 1, "
            "requests = requests + excluded.requests, streaming = streaming + excluded.streaming, "
            "request_bytes = request_bytes + excluded.request_bytes, "
            "response_bytes = response_bytes + excluded.response_bytes, "
            "input_tokens = input_tokens + excluded.input_tokens, "
            "output_tokens = output_tokens + excluded.output_tokens, "
            "secret_requests = secret_requests + excluded.secret_requests",
            (*key, str(row["provider"]), str(row.get("exe") or ""), str(row.get("comm") or ""),
             str(row.get("container") or ""), models, endpoints,
             float(row.get("first_at") or now), now, int(row["requests"]),
             int(row.get("streaming") or 0), int(row.get("request_bytes") or 0),
             int(row.get("response_bytes") or 0), int(row.get("input_tokens") or 0),
             int(row.get("output_tokens") or 0), secrets))
        written += 1
    return written


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

    @_reading
    def llm_traffic(self, since: float = 0.0) -> list[TrafficRow]:
        """Every client and provider seen since ``since``, the most requests first."""
        cur = self._conn.execute(
            "SELECT client, provider_key, provider, exe, comm, container, models, endpoints, "
            "first_seen, last_seen, cycles, requests, streaming, request_bytes, response_bytes, "
            "input_tokens, output_tokens, secret_requests FROM llm_traffic WHERE last_seen >= ? "
            "ORDER BY requests DESC, last_seen DESC", (since,))
        return [TrafficRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]),
                           json.loads(r[7]), float(r[8]), float(r[9]), int(r[10]), int(r[11]),
                           int(r[12]), int(r[13]), int(r[14]), int(r[15]), int(r[16]), int(r[17]))
                for r in cur]
