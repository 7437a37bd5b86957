"""The llm_traffic collector: which local process sends what to which LLM provider (issue 19).

eBPF uprobes on OpenSSL 3 (trace.py and bpf.py, libbpf in this process) run between cycles; each cycle
drains the exchanges they saw, classifies them (providers.py), scans the prompts for secrets in
memory (secrets.py) and reports a summary per process and provider. Prompt and response text are
never kept: only sizes, counts, the provider, endpoint and model, and the detectors' verdicts
(docs/llm-traffic.md).
"""
from __future__ import annotations

import atexit
import hashlib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from collectors.llm_traffic import providers, secrets, trace
from foundation.context import CollectContext
from foundation.model import CollectResult, Sample
from foundation.settings import Settings

if TYPE_CHECKING:
    from collectors.llm_traffic.exchange import Exchange
    from collectors.llm_traffic.providers import Classified
    from collectors.llm_traffic.trace import Tracer

log = logging.getLogger(__name__)

MAX_CLIENTS = 50          # (process, provider) rows in one cycle's report
MAX_SECRET_EVENTS = 20    # requests with a secret, each reported (the rest counted)
MAX_NAMES = 5             # models, endpoints, pids listed per row
START_S = 5.0             # libbpf loads and attaches the probes within this

_lock = threading.Lock()
_tracer: Tracer | None = None
_starts = 0


def timeout_s(settings: Settings) -> float:
    """Loading the probes (first cycle, or after the reader failed), then classifying a cycle's
    exchanges."""
    return START_S + 10.0


def _running_tracer(settings: Settings) -> tuple[Tracer | None, str | None]:
    """The tracer, started (or restarted) when it is not running; or why it cannot run."""
    global _tracer, _starts
    with _lock:
        if _tracer is not None and _tracer.running:
            return _tracer, None
        reason = trace.unavailable_reason()
        if reason is not None:
            return _tracer, reason
        if _tracer is None:
            _tracer = trace.Tracer(capture_bytes=settings.LLM_TRAFFIC_CAPTURE_BYTES)
            atexit.register(stop)
        elif _starts:
            log.warning("llm_traffic: the capture had stopped; attaching the uprobes again")
        try:
            _tracer.start()
        except trace.TracerUnavailable as err:
            return _tracer, str(err)
        _starts += 1
        return _tracer, None


def stop() -> None:
    """Detach the uprobes (the agent's exit; tests)."""
    global _tracer, _starts
    with _lock:
        if _tracer is not None:
            _tracer.stop()
        _tracer, _starts = None, 0


@dataclass
class Row:
    """One process (by executable and container) and one provider, over a cycle."""

    exe: str
    container: str
    provider: str
    provider_key: str
    comm: str = ""
    hosts: dict[str, int] = field(default_factory=dict)
    pids: set[int] = field(default_factory=set)
    endpoints: dict[str, int] = field(default_factory=dict)
    models: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    streaming: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    token_counts: int = 0              # responses that stated their tokens
    errors: int = 0                    # responses with a status >= 400
    no_response: int = 0
    secrets: dict[str, int] = field(default_factory=dict)
    first_at: float = 0.0
    last_at: float = 0.0

    def add(self, ex: Exchange, cl: Classified, found: list[str]) -> None:
        """Count one exchange into the row."""
        self.comm = ex.comm
        self.pids.add(ex.pid)
        for counts, key in ((self.hosts, ex.host[:253]), (self.endpoints, cl.endpoint),
                            (self.models, cl.model)):
            if key:
                counts[key] = counts.get(key, 0) + 1
        self.requests += 1
        self.streaming += cl.streaming
        self.request_bytes += ex.request_bytes
        self.response_bytes += ex.response_bytes
        if cl.input_tokens is not None or cl.output_tokens is not None:
            self.token_counts += 1
            self.input_tokens += cl.input_tokens or 0
            self.output_tokens += cl.output_tokens or 0
        if ex.status is None:
            self.no_response += 1
        elif ex.status >= 400:
            self.errors += 1
        for kind in found:
            self.secrets[kind] = self.secrets.get(kind, 0) + 1
        self.first_at = min(self.first_at or ex.started_at, ex.started_at)
        self.last_at = max(self.last_at, ex.ended_at or ex.started_at)

    def report(self) -> dict[str, Any]:
        """The row as the cycle report has it (names untrusted: labels wherever shown)."""
        def top(counts: dict[str, int]) -> dict[str, int]:
            return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_NAMES])
        return {"exe": self.exe, "comm": self.comm, "container": self.container,
                "client": client_key(self.exe, self.container, self.comm),
                "provider": self.provider, "provider_key": self.provider_key,
                "hosts": top(self.hosts), "pids": sorted(self.pids)[:MAX_NAMES],
                "endpoints": top(self.endpoints), "models": top(self.models),
                "requests": self.requests, "streaming": self.streaming,
                "request_bytes": self.request_bytes, "response_bytes": self.response_bytes,
                "input_tokens": self.input_tokens if self.token_counts else None,
                "output_tokens": self.output_tokens if self.token_counts else None,
                "errors": self.errors, "no_response": self.no_response,
                "secrets": dict(sorted(self.secrets.items())),
                "first_at": round(self.first_at, 3), "last_at": round(self.last_at, 3)}


def client_key(exe: str, container: str, comm: str) -> str:
    """Who a client is across cycles and restarts: its executable (the kernel's /proc/PID/exe,
    not a name the process chose) and its container; the task name only when the executable
    could not be read."""
    who = exe or f"comm:{comm}"
    return f"{who}@{container}" if container else who


def summarise(exchanges: Iterable[Exchange], settings: Settings) -> dict[str, Any]:
    """The cycle's report: rows per (client, provider), the requests that carried a secret, and
    counts. Bodies are read here, in memory, and dropped with the exchanges."""
    rows: dict[tuple[str, str, str], Row] = {}
    events: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    counts = {"exchanges": 0, "llm_requests": 0, "local_requests": 0, "other_requests": 0,
              "secret_requests": 0, "truncated_prompts": 0, "unreadable_prompts": 0}
    for ex in exchanges:
        counts["exchanges"] += 1
        cl = providers.classify(ex)
        if cl is None:
            counts["other_requests"] += 1
            continue
        if cl.local:
            counts["local_requests"] += 1
            continue
        counts["llm_requests"] += 1
        counts["truncated_prompts"] += ex.request_truncated
        body = providers.decoded_request(ex)
        if body is None:               # br or zstd: scanned as sent, which finds nothing inside
            counts["unreadable_prompts"] += 1
            body = ex.request_body
        found = secrets.find_secrets(body)
        key = (ex.exe, ex.container, cl.provider_key)
        row = rows.get(key)
        if row is None:
            row = rows[key] = Row(ex.exe, ex.container, cl.provider, cl.provider_key)
        row.add(ex, cl, found)
        if found:
            counts["secret_requests"] += 1
            if len(events) < MAX_SECRET_EVENTS:
                events.append({"pid": ex.pid, "comm": ex.comm, "exe": ex.exe,
                               "container": ex.container,
                               "client": client_key(ex.exe, ex.container, ex.comm),
                               "provider": cl.provider, "provider_key": cl.provider_key,
                               "host": ex.host[:253], "endpoint": cl.endpoint,
                               "model": cl.model, "types": found,
                               # which prompt, without its text: a digest to match a re-send
                               "prompt_sha256": hashlib.sha256(body).hexdigest()[:16],
                               "at": round(ex.started_at, 3)})
        if settings.LLM_TRAFFIC_SAMPLE and len(samples) < MAX_CLIENTS:
            samples.append({"client": client_key(ex.exe, ex.container, ex.comm),
                            "provider": cl.provider,
                            "sample": secrets.redacted_sample(body)})
    ordered = sorted(rows.values(), key=lambda r: (-r.requests, r.exe, r.provider_key))
    out: dict[str, Any] = {**counts, "clients": [r.report() for r in ordered[:MAX_CLIENTS]],
                           "clients_total": len(rows), "secret_events": events}
    if settings.LLM_TRAFFIC_SAMPLE:
        out["samples"] = samples
    return out


def collect(ctx: CollectContext) -> CollectResult:
    """Drain what the uprobes saw since the last cycle, and summarise it."""
    tracer, reason = _running_tracer(ctx.settings)
    if tracer is None or reason is not None:
        # what was captured before the tracer died is still reported
        drained = tracer.drain() if tracer is not None else []
        obs = {"available": False, "unavailable": reason, **summarise(drained, ctx.settings)}
        return CollectResult(observations=obs, samples=_samples(obs), available=False,
                             note=f"llm_traffic: {reason}")
    obs = {"available": True, "unavailable": None, **summarise(tracer.drain(), ctx.settings),
           "tracer": tracer.stats(), "tracer_starts": _starts,
           # each libssl and how its reads and writes are probed (bpf.plan)
           "attached": dict(tracer.modes)}
    return CollectResult(observations=obs, samples=_samples(obs))


def _samples(obs: dict[str, Any]) -> tuple[Sample, ...]:
    rows = obs["clients"]
    return (Sample("llm_traffic.requests", float(obs["llm_requests"])),
            Sample("llm_traffic.request_bytes", float(sum(r["request_bytes"] for r in rows))),
            Sample("llm_traffic.response_bytes", float(sum(r["response_bytes"] for r in rows))),
            Sample("llm_traffic.secret_requests", float(obs["secret_requests"])))
