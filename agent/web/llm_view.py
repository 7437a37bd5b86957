"""The LLM runtimes page's data: the last cycle's runtimes and their connections, the connection
history the store keeps across restarts, and the insights drawn from both (how long each runtime
has run, how many distinct peers, the most contacted ones, the connections' TCP states).

Process names, command lines and reverse-DNS names are written by whoever runs the process or
owns the address: each goes through the one neutraliser. A reverse name is shown as confirmed only
when the collector forward-confirmed it (an allowlist entry naming it allowed the address through
its own A/AAAA records, collectors/netclass.py); every other name is marked unconfirmed.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agent.web.views import text, when
from alerts.wording import count_words, plural, size_words
from foundation.durations import duration_text
from foundation.store.connections import ConnectionRow, TrafficRow
from foundation.store.data_storage import Store

HISTORY_LIMIT = 200       # history rows shown (the most recently seen first)
TOP_HOSTS = 10
RUNTIME_LIMIT = 20        # as many as the collector keeps
CONNECTION_LIMIT = 500    # the collector keeps 50 a runtime
TCP_STATE = re.compile(r"^[A-Z0-9_]{1,16}$")
SIGNALS = (("name", "name"), ("cmdline", "command line"), ("model_arg", "model argument"),
           ("model_file", "model file open"), ("large_memory", "large memory"))
CLASSES = frozenset({"loopback", "private", "link-local", "multicast", "reserved", "external",
                     "unspecified", "invalid"})
NOT_CHECKED = "unconfirmed: not forward-checked (no allowlist entry names it)"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return int(value)
    except (ValueError, OverflowError):
        return None


def memory_text(mb: object) -> str:
    """A resident size in MB as people read it: "640 MB", "4.2 GB"."""
    try:
        size = float(mb)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return f"{size / 1024:.1f} GB" if size >= 1024 else f"{size:.0f} MB"


def _names_it(host: str, entry: str) -> bool:
    """Whether an allowlist name entry names a host (as collectors/netclass.Allowlist.match_name:
    ``x.com`` names it and its subdomains, ``*.x.com`` only subdomains)."""
    host, entry = host.lower().rstrip("."), entry.lower().rstrip(".")
    if entry.startswith("*."):
        return host.endswith(entry[1:])
    return host == entry or host.endswith("." + entry)


def reverse_name(conn: Mapping[str, Any]) -> dict[str, str]:
    """A connection's reverse name (neutralised), whether it was forward-confirmed, and why not."""
    raw = str(conn.get("rdns") or "")
    if not raw:
        return {"rdns": "", "rdns_state": "", "rdns_note": ""}
    why = conn.get("rdns_unconfirmed")
    allowed = str(conn.get("allowed_by") or "")
    if not why and allowed and "/" not in allowed and _names_it(raw, allowed):
        return {"rdns": text(raw, 253), "rdns_state": "confirmed",
                "rdns_note": text(f"forward-confirmed: allowed by {allowed}", 300)}
    return {"rdns": text(raw, 253), "rdns_state": "unconfirmed",
            "rdns_note": text(why or NOT_CHECKED, 300)}


def address_class(value: object) -> str:
    """An address class as collectors/netclass.py names them; "other" for anything else."""
    name = str(value or "")
    return name if name in CLASSES else "other"


def _state(value: object) -> str:
    name = str(value or "").upper()
    return name if TCP_STATE.match(name) else "OTHER"


def _exposed(exposed: object, probes: list[Any]) -> str:
    """Whether a runtime listens beyond loopback, and what the probe of that port found
    (collectors/llm_exposure.py): an API that answers without authentication is the finding."""
    if exposed is None:
        return "unknown"
    if not exposed:
        return "no"
    answers = [p for p in probes if isinstance(p, Mapping)]
    if any(p.get("unauthenticated") for p in answers):
        return "yes: its API answers without authentication"
    if any(p.get("unauthenticated") is False for p in answers):
        return "yes, and its API asks for credentials"
    return "yes"


def _runtime(entry: Mapping[str, Any], created: Mapping[str, Any], now: float) -> dict[str, Any]:
    signals = _mapping(entry.get("signals"))
    pid = _int(entry.get("pid"))
    started = created.get(str(pid))
    start = float(started) if isinstance(started, (int, float)) and started > 0 else None
    said = [label for key, label in SIGNALS if signals.get(key)]
    said += [str(family) for family in _list(signals.get("libraries"))[:5]]
    exposed = entry.get("exposed")
    listening = [text(s.get("address"), 60) for s in _list(entry.get("listening"))[:5]
                 if isinstance(s, Mapping)]
    return {"runtime": text(entry.get("runtime"), 120), "pid": pid if pid is not None else "",
            "name": text(entry.get("name"), 80), "command": text(entry.get("cmdline"), 300),
            "score": _int(entry.get("score")) or 0, "signals": text(", ".join(said), 200),
            "memory": memory_text(signals.get("rss_mb")),
            "exposed": _exposed(exposed, _list(entry.get("exposures"))),
            "listening": ", ".join(listening),
            "started": when(start, now), "age": duration_text(now - start) if start else "",
            "connections": len(_list(entry.get("connections"))),
            "note": text(entry.get("connections_error") or "", 300)}


def _connections(runtimes: list[Any]) -> tuple[list[dict[str, Any]], int]:
    out: list[dict[str, Any]] = []
    cut = 0
    for entry in runtimes[:RUNTIME_LIMIT]:
        if not isinstance(entry, Mapping):
            continue
        conns = [c for c in _list(entry.get("connections")) if isinstance(c, Mapping)]
        cut += max(0, (_int(entry.get("connections_total")) or 0) - len(conns))
        for conn in conns:
            if len(out) == CONNECTION_LIMIT:
                cut += 1
                continue
            out.append({"runtime": text(entry.get("runtime"), 120),
                        "pid": _int(entry.get("pid")) or "",
                        "remote": text(conn.get("ip"), 60), "port": _int(conn.get("port")) or "",
                        "local": text(conn.get("local"), 60),
                        "class": address_class(conn.get("class")),
                        "organisation": text(conn.get("provider") or "", 80),
                        **reverse_name(conn),
                        "direction": text(conn.get("direction"), 10),
                        "state": _state(conn.get("status")),
                        "allowed_by": text(conn.get("allowed_by") or "", 120)})
    return out, cut


def _history(rows: list[ConnectionRow], confirmed: set[str], now: float) -> list[dict[str, Any]]:
    return [{"runtime": text(r.runtime, 120), "remote": text(r.remote, 60), "port": r.port,
             "direction": text(r.direction, 10), "class": address_class(r.address_class),
             "organisation": text(r.organisation, 80), "rdns": text(r.rdns, 253),
             "rdns_state": "" if not r.rdns else
             "confirmed" if text(r.remote, 60) in confirmed else "unconfirmed",
             "first_seen": when(r.first_seen, now), "last_seen": when(r.last_seen, now),
             "cycles": r.cycles} for r in rows]


def _started(report: Mapping[str, Any] | None) -> float | None:
    try:
        return datetime.fromisoformat(str((report or {})["started_at"])).timestamp()
    except (KeyError, ValueError):
        return None


def _last_cycle(store: Store) -> tuple[Mapping[str, Any] | None, str]:
    report = store.last_cycle(scheduled=True)
    if report is None:
        return None, "no cycle has run yet"
    if "llm_runtimes" not in _mapping(report.get("collectors")):
        return None, "the llm_runtimes collector is not enabled (COLLECTORS)"
    status = _mapping(_mapping(report.get("collectors")).get("llm_runtimes"))
    if not status.get("ok"):
        return None, text(f"the llm_runtimes collector failed: {status.get('error')}", 400)
    return report, ""


TRAFFIC_LIMIT = 100       # client and provider rows shown (the most requests first)


def _names(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{text(name, 100)} ({n})" for name, n in counts.items())


def _traffic_row(row: TrafficRow, now: float) -> dict[str, Any]:
    tokens = ("" if not (row.input_tokens or row.output_tokens)
              else f"{row.input_tokens} in / {row.output_tokens} out")
    return {"process": text(row.comm, 64) or "?", "exe": text(row.exe, 200) or "unreadable",
            "container": text(row.container, 64), "provider": text(row.provider, 60),
            "models": _names(row.models), "endpoints": _names(row.endpoints),
            "requests": row.requests, "streaming": row.streaming,
            "sent": size_words(row.request_bytes), "received": size_words(row.response_bytes),
            "tokens": tokens, "secrets": row.secret_requests,
            "first_seen": when(row.first_seen, now), "last_seen": when(row.last_seen, now)}


def _traffic(store: Store, now: float) -> dict[str, Any]:
    """What local processes sent to LLM providers (llm_traffic), per process and provider, and
    why there is nothing when the collector is off or cannot run."""
    report = store.last_cycle(scheduled=True)
    status = _mapping(_mapping((report or {}).get("collectors")).get("llm_traffic"))
    observed = _mapping(_mapping((report or {}).get("observations")).get("llm_traffic"))
    if report is None:
        note = "no cycle has run yet"
    elif not status:
        note = ("the llm_traffic collector is not enabled (add it to COLLECTORS; "
                "docs/llm-traffic.md)")
    elif observed.get("unavailable"):
        note = text(f"llm_traffic cannot capture: {observed['unavailable']}", 400)
    elif not status.get("ok"):
        note = text(f"the llm_traffic collector failed: {status.get('error')}", 400)
    else:
        note = ""
    rows = store.llm_traffic()
    return {"note": note, "total": len(rows), "more": max(0, len(rows) - TRAFFIC_LIMIT),
            "items": [_traffic_row(r, now) for r in rows[:TRAFFIC_LIMIT]]}


def llm(store: Store | None, now: float) -> dict[str, Any]:
    """The LLM runtimes page: live tables, history and insights."""
    out: dict[str, Any] = {
        "store": store is not None, "note": "no cycle has run yet", "cycle": None,
        "runtimes": [], "connections": [], "connections_more": 0,
        "history": {"total": 0, "more": 0, "older": "", "items": []},
        "insights": {"sessions": [], "destinations": {"total": 0, "peers": plural(0, "peer"),
                                                      "external": 0, "private": 0,
                                                      "loopback": 0, "other": 0, "live": 0},
                     "top_hosts": [], "phases": []},
        "traffic": {"note": "", "total": 0, "more": 0, "items": []}}
    if store is None:
        return out
    out["traffic"] = _traffic(store, now)
    report, note = _last_cycle(store)
    observed = _mapping(_mapping((report or {}).get("observations")).get("llm_runtimes"))
    runtimes = _list(observed.get("runtimes"))
    created = _mapping(_mapping(store.collector_state("llm_runtimes")).get("runtimes"))
    out["runtimes"] = [_runtime(r, created, now) for r in runtimes[:RUNTIME_LIMIT]
                       if isinstance(r, Mapping)]
    out["connections"], out["connections_more"] = _connections(runtimes)
    if report is not None and not runtimes:
        note = "no LLM runtime was running at the last cycle"
    out["note"] = note
    out["cycle"] = when(_started(report), now)
    confirmed = {c["remote"] for c in out["connections"] if c["rdns_state"] == "confirmed"}
    rows, total = store.llm_connection_history(HISTORY_LIMIT)
    more = max(0, total - len(rows))
    out["history"] = {"total": total, "more": more, "older": count_words(more, "older one"),
                      "items": _history(rows, confirmed, now)}
    top, classes = store.llm_destinations(TOP_HOSTS)
    phases = Counter(c["state"] for c in out["connections"])
    known = ("external", "private", "loopback")
    peers = sum(classes.values())
    out["insights"] = {
        "sessions": [{"runtime": r["runtime"], "pid": r["pid"], "age": r["age"] or "unknown",
                      "since": (r["started"] or {}).get("at", "")} for r in out["runtimes"]],
        "destinations": {"total": peers, "peers": plural(peers, "peer"),
                         **{k: classes.get(k, 0) for k in known},
                         "other": sum(v for k, v in classes.items() if k not in known),
                         "live": len({c["remote"] for c in out["connections"]
                                      if c["direction"] == "outbound"})},
        "top_hosts": [{"remote": text(d.remote, 60), "class": address_class(d.address_class),
                       "organisation": text(d.organisation, 80), "rdns": text(d.rdns, 253),
                       "rdns_state": "" if not d.rdns else
                       "confirmed" if text(d.remote, 60) in confirmed else "unconfirmed",
                       "ports": ", ".join(str(p) for p in d.ports), "cycles": d.cycles,
                       "last_seen": when(d.last_seen, now)} for d in top],
        "phases": [{"state": state, "count": n}
                   for state, n in sorted(phases.items(), key=lambda kv: (-kv[1], kv[0]))]}
    return out
