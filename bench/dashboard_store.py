"""A store as a home server's agent leaves it after ``days`` of 5-minute cycles (bench.web_dashboard).

Written through the store's own API, as bench/history.py fills its store: the samples of 21 series
a typical configuration keeps (temperatures with a daily rhythm, ping round trip and loss to the
router and the internet, failed and accepted logins, probes, syslog lines and errors, memory, load,
processes, sshd, containers, the LLM runtime), folded into their baselines; one cycle report
(about 4 KB, every collector up) every 5 minutes, with a few event cycles; findings of every common
kind starting about once a day and lasting from one cycle to days, each present in every cycle
of its run (finding_events), alerted and resolved with their outbox messages (Discord, and Home
Assistant for high ones), a daily recap; acks, snoozes and maintenance windows over the period;
the dependencies' states. Six findings are open now, the same in a store of any length (one of
them open for 90 days, fewer when the store is shorter). Seeded: the same days give the same store.
"""
from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analysis.detectors import kind_specs
from foundation.store.data_storage import DependencyRow, Store

STEP_S = 300
DAY_CYCLES = 86400 // STEP_S
PER_DAY = 1.2            # findings that start per day, on average (resolved ones)
Value = Callable[[random.Random, int], float]   # (rng, local hour) -> a sample


def _daily(hour: int, low: float, high: float) -> float:
    """A daily rhythm: ``low`` at 4 in the morning, ``high`` at 4 in the afternoon."""
    return low + (high - low) * (0.5 - 0.5 * math.cos(2 * math.pi * (hour - 4) / 24))


def _sometimes(r: random.Random, p: float, value: float) -> float:
    return value if r.random() < p else 0.0


SERIES: tuple[tuple[str, bool, Value], ...] = (
    ("sensor.temperature_c[coretemp-isa-0000/Package id 0]", True,
     lambda r, h: _daily(h, 38, 52) + r.gauss(0, 2)),
    ("sensor.temperature_c[nvme-pci-0100/Composite]", True,
     lambda r, h: _daily(h, 33, 41) + r.gauss(0, 1)),
    ("sensor.temperature_c[nvidia/GPU 0]", True, lambda r, h: _daily(h, 38, 61) + r.gauss(0, 3)),
    ("ping.rtt_avg_ms[192.168.1.1]", False, lambda r, h: 0.35 + r.expovariate(6)),
    ("ping.loss_percent[192.168.1.1]", False, lambda r, h: _sometimes(r, 0.002, 33.3)),
    ("ping.rtt_avg_ms[1.1.1.1]", False, lambda r, h: 10.5 + r.expovariate(0.4)),
    ("ping.loss_percent[1.1.1.1]", False, lambda r, h: _sometimes(r, 0.004, 33.3)),
    ("syslog.lines", True, lambda r, h: max(0, round(r.gauss(_daily(h, 150, 420), 40)))),
    ("syslog.errors", True, lambda r, h: int(r.expovariate(1.2))),
    ("auth.failed_logins", True, lambda r, h: _sometimes(r, 0.3, int(r.expovariate(0.2)) + 1)),
    ("auth.accepted_logins", True, lambda r, h: _sometimes(r, 0.01 if 8 <= h <= 23 else 0.001, 1)),
    ("auth.invalid_users", True, lambda r, h: _sometimes(r, 0.2, int(r.expovariate(0.3)) + 1)),
    ("auth.preauth_probes", True, lambda r, h: int(r.expovariate(0.4))),
    ("system.memory_percent", False, lambda r, h: 48 + 6 * math.sin(h / 3.8) + r.gauss(0, 1.5)),
    ("system.load1", True, lambda r, h: _daily(h, 0.15, 1.1) + r.expovariate(5)),
    ("processes.count", False, lambda r, h: 180 + r.randint(-6, 6)),
    ("process.count[sshd]", False, lambda r, h: 1.0),
    ("process.memory_rss_mb[sshd]", False, lambda r, h: 7.8 + r.gauss(0, 0.05)),
    ("containers.running", False, lambda r, h: 5.0 if r.random() > 0.001 else 4.0),
    ("llm_runtimes.count", False, lambda r, h: 1.0),
    ("llm_runtimes.external_connections", False, lambda r, h: 0.0),
)
# the resolved findings: how often each kind starts (relative) and the metric it carries
PAST_KINDS: dict[str, tuple[float, str | None]] = {
    "ssh_bruteforce": (30, "auth.failed_logins"), "ssh_preauth_probing": (25, None),
    "ping_loss": (10, "ping.loss_percent[1.1.1.1]"), "rtt_high": (10, "ping.rtt_avg_ms[1.1.1.1]"),
    "syslog_errors": (10, "syslog.errors"), "novel_log_message": (8, None),
    "container_restarting": (3, None), "temperature_high": (3, "sensor.temperature_c[nvidia/GPU 0]"),
    "new_login_source": (3, None), "llm_unavailable": (3, None), "process_missing": (2, None),
    "host_appeared": (2, None), "host_disappeared": (2, None), "sudo_failure": (2, None),
    "kernel_event": (1, None), "container_unhealthy": (1, None), "new_open_port": (1, None),
    "login_after_failures": (0.5, None),
}
# open now: (kind, open for how long, facts over the kind's example, metric)
OPEN: tuple[tuple[str, float, dict[str, Any], str | None], ...] = (
    ("host_disappeared", 90 * 86400, {"host": "192.168.1.40"}, None),
    ("container_unhealthy", 40 * 86400, {"container": "paperless", "failing": 3}, None),
    ("rtt_high", 3 * 3600, {"target": "1.1.1.1", "target_spoken": "The ping target 1.1.1.1",
                            "rtt": 48.2, "usual": 12.9}, "ping.rtt_avg_ms[1.1.1.1]"),
    ("syslog_errors", 3600, {"errors": 96, "usual": 1.0}, "syslog.errors"),
    ("ssh_preauth_probing", 1200, {"count": 31, "minutes": 10, "address": "198.51.100.23"}, None),
    ("temperature_high", 1800, {"sensor": "nvidia/GPU 0", "part": "GPU", "celsius": 86.0,
                                "mark_name": "high mark", "mark": 83.0},
     "sensor.temperature_c[nvidia/GPU 0]"),
)
KEY_FACTS = ("address", "target", "process", "container", "sensor", "host", "program", "user")


def _report(collector_notes: dict[str, Any]) -> dict[str, Any]:
    """A scheduled cycle's report with every collector up (its started_at and findings are set
    per cycle): the shape and size (about 4 KB) of a real one on a home server."""
    names = ("syslog", "auth_log", "sensors", "ping", "nmap", "processes", "containers",
             "llm_runtimes")
    top = [{"pid": 1000 + i, "name": n, "cpu_percent": round(9.5 / (i + 1), 2)} for i, n in
           enumerate(("ollama", "jellyfin", "python3", "postgres", "dockerd"))]
    mem = [{"pid": 1000 + i, "name": n, "memory_rss_mb": round(900 / (i + 1), 1)} for i, n in
           enumerate(("ollama", "jellyfin", "postgres", "immich-server", "python3"))]
    return {
        "started_at": "", "duration_s": 0.61, "host": "homeserver", "trigger": "schedule",
        "committed": True, "notes": [], "redelivered": [], "alerts": [], "findings": [],
        "collectors": {n: {"ok": True, "error": None, "duration_s": 0.02, "available": True,
                           "note": collector_notes.get(n)} for n in names},
        "observations": {
            "processes": {"process_count": 182, "watched": {"sshd": {"count": 1}},
                          "top_cpu": top, "top_memory": mem,
                          "system": {"memory_percent": 48.2, "load1": 0.61, "cpu_count": 8}},
            "sensors": {"readings": {s: {"celsius": 45.0, "high": 80.0, "critical": 100.0}
                                     for s, _, _ in SERIES[:3]}, "count": 3},
            "ping": {"targets": {t: {"rtt_avg_ms": 0.4, "loss_percent": 0.0, "sent": 3}
                                 for t in ("192.168.1.1", "1.1.1.1")}},
            "syslog": {"backend": "file", "path": "/var/log/syslog", "lines_read": 312,
                       "errors": 1, "malformed_lines": 0,
                       "severity_counts": {"info": 290, "notice": 15, "warning": 6, "err": 1},
                       "programs": dict.fromkeys(("kernel", "systemd", "dockerd", "smartd", "CRON",
                                                  "sshd", "ollama", "containerd"), 20),
                       "error_samples": ["dockerd[811]: level=error msg=\"Handler for GET "
                                         "/v1.43/containers/json returned error\""]},
            "auth_log": {"backend": "file", "failed_logins": 3, "accepted_logins": 0,
                         "invalid_users": 2, "probes": 4, "top_sources": {"203.0.113.9": 3}},
            "nmap": {"hosts_up": 9, "open_ports": {"127.0.0.1": [22, 80, 443, 8123, 11434]}},
            "containers": {"running": 5, "containers": [
                {"name": n, "status": "running", "health": "healthy", "restarts": 0}
                for n in ("home-assistant", "jellyfin", "immich-server", "paperless", "caddy")]},
            "llm_runtimes": {"runtimes": [{"name": "ollama", "pid": 1000, "connections": [],
                                           "models": ["llama3.1:8b"]}], "count": 1}},
        "verdict": {"severity": "none", "reason": "nothing unusual", "by": "llm",
                    "model": "llama3.1:8b"}}


def _facts(kind: str, r: random.Random) -> dict[str, Any]:
    facts = dict(kind_specs()[kind].example)
    if "address" in facts:
        facts["address"] = f"{r.choice((45, 61, 103, 185, 193, 203))}.{r.randint(0, 255)}." \
                           f"{r.randint(0, 255)}.{r.randint(1, 254)}"
    if "count" in facts and kind.startswith("ssh"):
        facts["count"] = r.randint(20, 600)
    return facts


class _Occurrence:
    """One run of a finding: from its first cycle to its last (the open ones reach now)."""

    def __init__(self, kind: str, facts: dict[str, Any], metric: str | None, first: int,
                 last: int, is_open: bool) -> None:
        spec = kind_specs()[kind]
        self.kind, self.spec, self.first, self.last, self.open = kind, spec, first, last, is_open
        self.key = next((str(facts[k]) for k in KEY_FACTS if k in facts), "")
        self.fingerprint = hashlib.sha256(f"{spec.source}|{kind}|{self.key}".encode()
                                          ).hexdigest()[:16]
        self.summary = spec.headline(facts, {})
        value = facts.get("rtt") or facts.get("celsius") or facts.get("errors") \
            or facts.get("loss") or facts.get("count")
        self.details = {
            "labels": {}, "facts": facts, "metric": metric, "value": value,
            "baseline": {"n": 20160, "centre": 12.9, "spread": 1.1, "min": 10.5, "max": 31.0}
            if metric else None, "rule_severity": spec.severity.value,
            "reason": "rules: " + spec.title,
            "evidence": [f"Dec  5 03:1{i}:0{i} homeserver sshd[2{i}11]: Failed password for root "
                         f"from {facts.get('address', '203.0.113.9')} port 4{i}122 ssh2"
                         for i in range(5)] if spec.source == "auth_log" else []}


def _occurrences(days: int, r: random.Random) -> list[_Occurrence]:
    cycles = days * DAY_CYCLES
    out = []
    kinds = list(PAST_KINDS)
    weights = [PAST_KINDS[k][0] for k in kinds]
    for _ in range(max(1, round(days * PER_DAY))):
        kind = r.choices(kinds, weights)[0]
        length = r.randint(1, 3) if kind_specs()[kind].event else int(math.exp(r.uniform(0, math.log(600))))
        first = r.randrange(0, max(1, cycles - length - 12))
        out.append(_Occurrence(kind, _facts(kind, r), PAST_KINDS[kind][1], first,
                               min(first + length - 1, cycles - 13), False))
    for kind, age_s, facts, metric in OPEN:
        first = max(0, cycles - 1 - int(age_s // STEP_S))
        out.append(_Occurrence(kind, {**_facts(kind, r), **facts}, metric, first, cycles - 1,
                               True))
    return out


def _samples(days: int, start: float, r: random.Random, value: Value
             ) -> Iterator[tuple[float, float]]:
    for i in range(days * DAY_CYCLES):
        ts = start + i * STEP_S
        yield ts, float(value(r, time.localtime(ts).tm_hour))


def fill(db: Path, days: int, seed: int = 18) -> dict[str, int]:
    """Write ``days`` of history ending now into a new store at ``db``; what it holds."""
    r = random.Random(seed)
    store = Store.open(db)
    end = time.time() - 60                      # the last cycle ran a minute ago
    start = end - (days * DAY_CYCLES - 1) * STEP_S
    counts = {"samples": 0, "cycles": 0, "findings": 0, "finding_events": 0, "outbox": 0,
              "silences": 0}
    for series, by_hour, value in SERIES:
        with store.transaction() as tx:
            counts["samples"] += tx.add_history(
                ((series, ts, v) for ts, v in _samples(days, start, r, value)), by_hour=by_hour)
    occurrences = _occurrences(days, r)
    counts["findings"] = len({o.fingerprint for o in occurrences})
    starts: dict[int, list[_Occurrence]] = {}
    for o in occurrences:
        starts.setdefault(o.first, []).append(o)
    active: list[_Occurrence] = []
    template = _report({})
    for day in range(days):
        sent: list[tuple[int, float]] = []
        with store.transaction() as tx:
            for i in range(day * DAY_CYCLES, (day + 1) * DAY_CYCLES):
                ts = start + i * STEP_S
                active += starts.get(i, [])
                for o in active:
                    tx.upsert_finding(o.fingerprint, o.spec.source, o.kind, o.key,
                                      o.spec.severity.value, o.spec.floor.value, o.summary, ts,
                                      o.details)
                    counts["finding_events"] += 1
                    if i == o.first:
                        tx.mark_alerted(o.fingerprint, o.spec.severity.value, ts)
                        sent += _alerts(tx, o, "alert", ts)
                ending = [o for o in active if o.last == i and not o.open]
                for o in ending:
                    tx.resolve_finding(o.fingerprint, ts + 1)
                    if not o.spec.event:
                        sent += _alerts(tx, o, "resolved", ts + 1)
                active = [o for o in active if o not in ending]
                report = {**template,
                          "started_at": datetime.fromtimestamp(ts, UTC).isoformat(
                              timespec="seconds"),
                          "findings": [{"id": o.fingerprint, "source": o.spec.source,
                                        "kind": o.kind, "severity": o.spec.severity.value,
                                        "floor": o.spec.floor.value, "summary": o.summary}
                                       for o in active]}
                tx.save_cycle(ts, 0.61, "none", "llm", report)
                counts["cycles"] += 1
                if any(o.first == i and o.spec.source == "auth_log" for o in active) \
                        or i == days * DAY_CYCLES - 1:
                    # an event cycle (new auth.log lines) right after it: the last cycle of the
                    # store is one too, so the overview's "last scheduled cycle" looks past it
                    tx.save_cycle(ts + 20, 0.05, "none", "rules",
                                  {**report, "trigger": "event", "started_at": datetime
                                   .fromtimestamp(ts + 20, UTC).isoformat(timespec="seconds")})
                    counts["cycles"] += 1
            day_name = time.strftime("%Y-%m-%d", time.localtime(start + day * 86400))
            recap = tx.enqueue("discord", "recap", "none", {"purpose": "recap", "day": day_name,
                                                            "text": "x" * 900},
                               start + day * 86400 + 8 * 3600, dedupe_key=f"recap:{day_name}")
            tx.mark_recap(day_name, start + day * 86400 + 8 * 3600, recap)
            if recap is not None:
                sent.append((recap, start + day * 86400 + 8 * 3600))
        for n, (message_id, ts) in enumerate(sent):
            if n % 97 == 96:       # about 1 %: Discord refused it for good
                store.mark_retry(message_id, ts + 600, "HTTP 400 from Discord", give_up=True)
            else:
                store.mark_sent(message_id, ts + 1)
        counts["outbox"] += len(sent)
    counts["silences"] = _silences(store, occurrences, start, end, r)
    store.record_dependencies([
        DependencyRow("ollama", True, end - 20 * 86400, None, end),
        DependencyRow("discord", True, end - 3 * 86400, None, end),
        DependencyRow("home_assistant", True, end - 60 * 86400, None, end)])
    store.close()
    return counts


def _alerts(tx: Any, o: _Occurrence, purpose: str, ts: float) -> list[tuple[int, float]]:
    channels = ("discord", "home_assistant") if o.spec.severity.value == "high" \
        and purpose == "alert" else ("discord",)
    out = []
    for channel in channels:
        payload = {"purpose": purpose, "host": "homeserver", "created_at": ts,
                   "items": [{"fingerprint": o.fingerprint, "kind": o.kind,
                              "summary": o.summary, "details": o.details}]}
        message_id = tx.enqueue(channel, purpose, o.spec.severity.value, payload, ts,
                                fingerprint=o.fingerprint,
                                dedupe_key=f"{purpose}:{channel}:{o.fingerprint}:{ts}")
        if message_id is not None:
            out.append((message_id, ts))
    return out


def _silences(store: Store, occurrences: list[_Occurrence], start: float, end: float,
              r: random.Random) -> int:
    """Acks, snoozes and maintenance windows over the period (ended), and two in force now."""
    count = 0
    for o in occurrences:
        if not o.open and r.random() < 0.08:
            at = start + o.first * STEP_S + 600
            store.add_silence("ack", o.fingerprint, at, at + 4 * 3600, o.spec.severity.value)
            count += 1
    for _ in range(max(1, round((end - start) / 86400 / 30))):   # one a month of each
        at = r.uniform(start, end - 86400)
        store.add_silence("snooze", "ssh_bruteforce", at, at + 4 * 3600)
        store.add_silence("maintenance", "", at + 3600, at + 7200)
        count += 2
    rtt = next(o for o in occurrences if o.open and o.kind == "rtt_high")
    store.acknowledge(rtt.fingerprint, end - 1800, None)
    store.add_silence("snooze", "ssh_preauth_probing", end - 600, end + 4 * 3600)
    return count + 2
