"""Does a listening port serve an LLM API that anyone can use? A few read-only GETs find out.

``probe(host, port, timeout_s)`` asks, in order and only as far as needed (docs/llm-runtimes.md,
"Exposed model servers"): Ollama's ``GET /api/tags`` (and ``GET /api/version`` once it answered),
the OpenAI-compatible ``GET /v1/models`` (vLLM, LM Studio, llama.cpp, LocalAI, koboldcpp, TGI...),
llama.cpp's ``GET /props`` (its model list is public even with ``--api-key``; /props is not),
Text Generation Inference's ``GET /info`` and Open WebUI's ``GET /api/config``. Plain HTTP first,
then HTTPS without certificate checks when the port only speaks TLS. Never anything but these
GETs: no generation, no redirects followed, bodies read up to ``MAX_BODY`` bytes, every probe
bounded by a deadline that closes its socket if the server drips.

An answer with the API's own shape and status 200 is "unauthenticated"; a 401 or 403 is
protected. What the server says (model names, its name and version) is untrusted text: kept as
labels only, printable, cut to ``MAX_TEXT`` characters.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from foundation.untrusted import strip

TIMEOUT_S = 2.0            # one request: connect, then each read
PROBE_BUDGET_S = 6.0       # one host and port, every request of it (HTTP then HTTPS) included
MAX_BODY = 64 * 1024       # bytes read of an answer; a longer one is not an API's small JSON
MAX_TEXT = 100             # characters kept of a model name or a server's name
MAX_NAMES = 5              # model names kept
MAX_WORKERS = 8            # probes run at once
MAX_TARGETS = 32           # probes per call; listeners beyond these are not asked
USER_AGENT = "homelab-monitor-probe"

# The API families this module can tell apart, and how each is named to people (trusted words:
# the family is decided here from the shape of an answer, never copied from it).
API_NAMES: dict[str, str] = {
    "ollama": "Ollama",
    "openai-compatible": "An OpenAI-compatible model server",
    "llama.cpp": "A llama.cpp server",
    "vllm": "vLLM",
    "lm-studio": "LM Studio",
    "koboldcpp": "KoboldCpp",
    "tgi": "Text Generation Inference",
    "open-webui": "Open WebUI",
    "unknown": "A protected web service",
}
# ``owned_by`` of /v1/models entries -> the family that writes it
OWNERS = {"llamacpp": "llama.cpp", "vllm": "vllm", "koboldcpp": "koboldcpp",
          "organization_owner": "lm-studio", "library": "ollama"}
PROTECTED = (401, 403)


@dataclass(frozen=True)
class ProbeResult:
    """What a port answered: which API, whether it asked for no credentials, what it holds."""

    api: str                       # a key of API_NAMES
    unauthenticated: bool          # True: it answered its API without asking who we are
    scheme: str                    # "http" or "https"
    status: int                    # the deciding answer's HTTP status
    evidence: str                  # e.g. "GET /api/tags -> 200" (our request, its status)
    model_count: int = 0
    models: tuple[str, ...] = ()   # untrusted: up to MAX_NAMES names, MAX_TEXT characters each
    server: str = ""               # untrusted: the name and version the server gives itself
    note: str = ""                 # trusted: why, when the answer alone does not say it

    def as_json(self) -> dict[str, Any]:
        """A small JSON-able record for the observations."""
        return {"api": self.api, "unauthenticated": self.unauthenticated, "scheme": self.scheme,
                "status": self.status, "evidence": self.evidence, "models": self.model_count,
                "model_names": list(self.models), "server": self.server, "note": self.note}


@dataclass(frozen=True)
class _Answer:
    status: int | None = None      # None: no HTTP answer (see ``failure``)
    body: bytes = b""
    location: str = ""
    failure: str = ""              # "refused", "timeout", "protocol" (not HTTP: TLS?), "too big"

    def json(self) -> Any:
        """The body as JSON when it is a complete 200 answer, else None."""
        if self.status != 200 or self.failure:
            return None
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            return None


def label(value: object) -> str:
    """Untrusted text as a label: what a reader sees, one line, at most MAX_TEXT characters."""
    return strip(value)[:MAX_TEXT]


class _Deadline:
    """A probe's time limit: bounds each socket operation and, past the end, closes the socket of
    the request in flight (a server dripping one byte a second never holds the probe)."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._expired = False
        self._timer = threading.Timer(max(0.0, seconds), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return self.end - time.monotonic()

    @property
    def expired(self) -> bool:
        return self._expired or self.remaining() <= 0

    def hold(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if sock is not None and self._expired:
                self._shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            if self._sock is not None:
                self._shut(self._sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):   # the plain socket's shutdown wakes a read, TLS or not
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()


def _tls_context() -> ssl.SSLContext:
    """TLS without certificate checks: a home server's model API has a self-signed certificate,
    and the question is whether it answers, not who it is."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _get(scheme: str, host: str, port: int, path: str, timeout_s: float,
         deadline: _Deadline) -> _Answer:
    """One GET, bounded in time and size; never raises for what a server does."""
    wait = min(timeout_s, deadline.remaining())
    if wait <= 0:
        return _Answer(failure="timeout")
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=wait, context=_tls_context())
    else:
        conn = http.client.HTTPConnection(host, port, timeout=wait)
    try:
        conn.connect()
        deadline.hold(conn.sock)
        conn.request("GET", path, headers={"User-Agent": USER_AGENT, "Accept": "application/json",
                                           "Connection": "close"})
        response = conn.getresponse()
        body = response.read(MAX_BODY + 1)
        too_big = len(body) > MAX_BODY
        return _Answer(status=response.status, body=body[:MAX_BODY],
                       location=response.getheader("Location") or "",
                       failure="too big" if too_big else "")
    except ConnectionRefusedError:
        return _Answer(failure="refused")
    except TimeoutError:
        return _Answer(failure="timeout")
    except (http.client.HTTPException, ssl.SSLError, OSError, ValueError):
        # not HTTP (a TLS port sent an alert or closed), a reset, or our own deadline's shutdown
        return _Answer(failure="timeout" if deadline.expired else "protocol")
    finally:
        deadline.hold(None)
        conn.close()


Getter = Callable[[str], _Answer]


def _names(items: Iterable[Any], *keys: str) -> tuple[int, tuple[str, ...]]:
    """How many entries a model list has and the first names, as labels."""
    entries = [item for item in items if isinstance(item, Mapping)]
    names: list[str] = []
    for item in entries:
        name = next((item[k] for k in keys if isinstance(item.get(k), str)), None)
        if name is not None and len(names) < MAX_NAMES:
            names.append(label(name))
    return len(entries), tuple(names)


def _ollama(tags: Mapping[str, Any], get: Getter, scheme: str) -> ProbeResult:
    count, names = _names(tags["models"], "name", "model")
    version = get("/api/version").json()
    server = ""
    if isinstance(version, Mapping) and isinstance(version.get("version"), str):
        server = label(f"Ollama {version['version']}")
    return ProbeResult("ollama", True, scheme, 200, "GET /api/tags -> 200", count, names, server)


def _openai(listing: Mapping[str, Any], get: Getter, scheme: str) -> ProbeResult:
    data: list[Any] = listing["data"] if isinstance(listing.get("data"), list) else []
    count, names = _names(data, "id")
    owners = {item.get("owned_by") for item in data if isinstance(item, Mapping)}
    api = next((OWNERS[o] for o in owners if isinstance(o, str) and o in OWNERS),
               "openai-compatible")
    if api != "llama.cpp":
        return ProbeResult(api, True, scheme, 200, "GET /v1/models -> 200", count, names)
    # llama.cpp lists its models to anyone even with --api-key; /props needs the key
    props = get("/props")
    if props.status in PROTECTED:
        return ProbeResult(api, False, scheme, props.status,
                           f"GET /props -> {props.status}", count, names,
                           note="its model list is public, the API asks for a key")
    build = props.json()
    server = ""
    if isinstance(build, Mapping) and isinstance(build.get("build_info"), str):
        server = label(f"llama.cpp {build['build_info']}")
    return ProbeResult(api, True, scheme, 200, "GET /v1/models -> 200", count, names, server)


def _tgi(info: Mapping[str, Any], scheme: str) -> ProbeResult:
    server = " ".join(str(info[k]) for k in ("router", "version") if isinstance(info.get(k), str))
    return ProbeResult("tgi", True, scheme, 200, "GET /info -> 200", 1,
                       (label(info["model_id"]),), label(server))


def _open_webui(config: Mapping[str, Any], scheme: str) -> ProbeResult:
    features: Mapping[str, Any] = config["features"] if isinstance(config.get("features"),
                                                                   Mapping) else {}
    server = label(f"{config.get('name', '')} {config.get('version', '')}")
    if features.get("auth") is False:
        return ProbeResult("open-webui", True, scheme, 200, "GET /api/config -> 200",
                           server=server, note="its authentication is off (WEBUI_AUTH=False)")
    if config.get("onboarding") is True:
        return ProbeResult("open-webui", True, scheme, 200, "GET /api/config -> 200",
                           server=server, note="it has no account yet: the first visitor to "
                                               "sign up becomes its administrator")
    return ProbeResult("open-webui", False, scheme, 200, "GET /api/config -> 200", server=server,
                       note="its sign-in is on")


def _is_open_webui(config: Any) -> bool:
    if not isinstance(config, Mapping):
        return False
    name = config.get("name")
    return (isinstance(name, str) and "Open WebUI" in name) or (
        config.get("status") is True and isinstance(config.get("features"), Mapping)
        and "auth" in config["features"])


def _protected(answer: _Answer, path: str, scheme: str) -> ProbeResult:
    return ProbeResult("unknown", False, scheme, answer.status or 0,
                       f"GET {path} -> {answer.status}")


def _same_port_tls(answer: _Answer, host: str, port: int) -> bool:
    """A redirect to HTTPS on this same host and port (followed by switching, never by URL)."""
    if answer.status is None or not 300 <= answer.status < 400 or not answer.location:
        return False
    try:
        target = urlsplit(answer.location)
        target_port = target.port or 443
    except ValueError:
        return False
    return (target.scheme == "https" and target_port == port
            and (target.hostname or "").lower() in (host.lower(), ""))


_TRY_TLS = "try https"


def _probe_scheme(scheme: str, host: str, port: int, get: Getter) -> ProbeResult | str | None:
    """The probe over one scheme: a result, _TRY_TLS, or None (no LLM API answered)."""
    tags = get("/api/tags")
    if tags.failure in ("refused", "timeout"):
        return None      # nothing listens, or it does not answer: nothing more to ask
    if scheme == "http" and (tags.failure == "protocol" or tags.status == 400
                             or _same_port_tls(tags, host, port)):
        return _TRY_TLS  # a TLS-only port: it refused plain HTTP
    if tags.failure == "protocol":
        return None      # it does not speak HTTP over TLS either
    listing = tags.json()
    if isinstance(listing, Mapping) and isinstance(listing.get("models"), list) \
            and "data" not in listing and "object" not in listing:
        return _ollama(listing, get, scheme)
    blocked = _protected(tags, "/api/tags", scheme) if tags.status in PROTECTED else None
    models = get("/v1/models")
    if models.failure == "timeout":
        return blocked
    listing = models.json()
    if isinstance(listing, Mapping) and (isinstance(listing.get("data"), list)
                                         or listing.get("object") == "list"):
        return _openai(listing, get, scheme)
    if models.status in PROTECTED:
        return _protected(models, "/v1/models", scheme)
    if blocked is not None:
        return blocked
    info = get("/info").json()
    if isinstance(info, Mapping) and isinstance(info.get("model_id"), str):
        return _tgi(info, scheme)
    config = get("/api/config").json()
    if _is_open_webui(config):
        return _open_webui(config, scheme)
    return None


def probe(host: str, port: int, timeout_s: float = TIMEOUT_S,
          budget_s: float = PROBE_BUDGET_S) -> ProbeResult | None:
    """Which LLM API answers at host:port and whether it asks for credentials; None when no LLM
    API answered (nothing listens, it is another service, or it did not answer in time)."""
    deadline = _Deadline(budget_s)
    try:
        for scheme in ("http", "https"):
            def get(path: str, scheme: str = scheme) -> _Answer:
                return _get(scheme, host, port, path, timeout_s, deadline)
            outcome = _probe_scheme(scheme, host, port, get)
            if outcome != _TRY_TLS:
                return outcome if isinstance(outcome, ProbeResult) else None
        return None
    finally:
        deadline.cancel()


Prober = Callable[[str, int, float, float], ProbeResult | None]


def probe_many(targets: Iterable[tuple[str, int]], timeout_s: float = TIMEOUT_S,
               budget_s: float = PROBE_BUDGET_S, prober: Prober = probe
               ) -> dict[tuple[str, int], ProbeResult | None]:
    """Probe (host, port) pairs in parallel daemon threads, all within ``budget_s``; a target
    missing from the answer did not finish in time (or was beyond MAX_TARGETS)."""
    todo = deque(list(dict.fromkeys(targets))[:MAX_TARGETS])
    results: dict[tuple[str, int], ProbeResult | None] = {}
    lock = threading.Lock()
    end = time.monotonic() + budget_s

    def work() -> None:
        while True:
            left = end - time.monotonic()
            try:
                target = todo.popleft()
            except IndexError:
                return
            if left <= 0:
                return
            answer = prober(target[0], target[1], timeout_s, left)
            with lock:
                results[target] = answer

    threads = [threading.Thread(target=work, daemon=True, name="llm-probe")
               for _ in range(min(MAX_WORKERS, len(todo)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()) + 0.5)
    with lock:        # a straggler past the budget adds nothing more to what is returned
        return dict(results)
