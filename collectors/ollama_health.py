"""Health of the Ollama this agent judges with: reachable, version, model present/loaded, latency.

Three GETs with short timeouts (/api/version, /api/tags, /api/ps); when the first fails the others
are skipped, so an absent Ollama costs one refused connection. Never calls /api/chat.
"""
from __future__ import annotations

import base64
import http.client
import json
import logging
import shutil
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from foundation.redact import redact

log = logging.getLogger(__name__)

TIMEOUT_S = 2.0
MAX_ANSWER_BYTES = 4 << 20   # /api/tags of a few hundred models is well under this
REFUSED = "connection refused or host unreachable"
INSTALL_HINT = ("Ollama does not seem to be installed here (no `ollama` on PATH): install it from "
                "https://ollama.com/download, or point OLLAMA_HOST at the machine that runs it")

Getter = Callable[[str, float], Any]   # (url, timeout) -> parsed JSON; raises OllamaError


class OllamaError(Exception):
    """Ollama could not be asked, or answered something that is not the expected JSON."""


def public_host(url: str) -> str:
    """OLLAMA_HOST without credentials, path or query: scheme://host:port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, "", "", ""))


def http_get_json(url: str, timeout_s: float) -> Any:
    """GET a URL and parse its JSON body; OllamaError on any failure (message without secrets).

    The standard library's http.client: requests and its charset detectors cost ~27 MB of every
    cycle's memory for three small GETs. No proxy (one from the environment must not sit before
    Ollama), no redirects; https is checked against the system's certificate authorities.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as err:
        raise OllamaError(f"malformed port ({err})") from err
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OllamaError("not an http:// or https:// URL with a host")
    headers = {"Accept": "application/json", "User-Agent": "homelab-monitor"}
    if parts.username is not None:   # user:password@host, as requests would send it
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        import ssl  # noqa: PLC0415 - only for an https OLLAMA_HOST (the default is plain http)

        connection = http.client.HTTPSConnection(parts.hostname, port, timeout=timeout_s,
                                                 context=ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(parts.hostname, port, timeout=timeout_s)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        body = response.read(MAX_ANSWER_BYTES + 1)
    except TimeoutError as err:
        raise OllamaError("no answer in time") from err
    except (http.client.HTTPException, ValueError) as err:
        raise OllamaError(redact(type(err).__name__)) from err
    except OSError as err:   # refused, unreachable, no such host, reset
        raise OllamaError(REFUSED) from err
    finally:
        connection.close()
    if response.status >= 400:
        raise OllamaError(f"HTTP {response.status}")
    if len(body) > MAX_ANSWER_BYTES:
        raise OllamaError(f"answer larger than {MAX_ANSWER_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError as err:
        raise OllamaError(f"answer is not JSON: {err}") from err


def model_names(payload: Any) -> list[str]:
    """Model names of an /api/tags or /api/ps answer ([] when it has none or is malformed)."""
    models = payload.get("models") if isinstance(payload, Mapping) else None
    names = []
    for item in models if isinstance(models, list) else []:
        if isinstance(item, Mapping):
            name = item.get("name") or item.get("model")
            if isinstance(name, str):
                names.append(name)
    return names


def same_model(wanted: str, name: str) -> bool:
    """True when an Ollama model name is the wanted one (a missing tag means ``:latest``)."""
    def norm(text: str) -> str:
        text = text.strip().lower()
        return text if ":" in text.rsplit("/", 1)[-1] else text + ":latest"
    return norm(wanted) == norm(name)


def check(host: str, model: str, get: Getter = http_get_json, timeout_s: float = TIMEOUT_S,
          clock: Callable[[], float] = time.monotonic,
          which: Callable[[str], str | None] = shutil.which, loaded: bool = True
          ) -> dict[str, Any]:
    """The health of Ollama at ``host`` for ``model``, as plain JSON-able facts. ``loaded``:
    ask /api/ps whether the model is loaded (`check` does; a cycle does not: nothing it decides
    reads it, and Ollama loads and unloads models by itself; model_loaded stays None)."""
    base = host.rstrip("/")
    facts: dict[str, Any] = {
        "host": public_host(host), "model": model, "reachable": False, "version": None,
        "model_present": None, "model_loaded": None, "latency_ms": None, "error": None,
        "installed": None}
    started = clock()
    try:
        version = get(f"{base}/api/version", timeout_s)
    except OllamaError as err:
        facts["error"] = str(err)
        if _is_local(facts["host"]):
            facts["installed"] = which("ollama") is not None
        return facts
    facts["latency_ms"] = round((clock() - started) * 1000.0, 1)
    facts["reachable"] = True
    facts["installed"] = True
    if isinstance(version, Mapping) and isinstance(version.get("version"), str):
        facts["version"] = version["version"][:40]
    asked = (("/api/tags", "model_present"), ("/api/ps", "model_loaded"))
    for path, field in asked if loaded else asked[:1]:
        try:
            names = model_names(get(f"{base}{path}", timeout_s))
        except OllamaError as err:
            facts["error"] = f"{path}: {err}"
            continue
        facts[field] = any(same_model(model, n) for n in names)
    return facts


def _is_local(public: str) -> bool:
    host = urlsplit(public).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


def problem(facts: Mapping[str, Any]) -> str | None:
    """Why the agent's LLM is unusable, in a sentence naming the fix; None when it is fine."""
    host, model = facts["host"], facts["model"]
    if not facts["reachable"]:
        text = f"Ollama at {host} is not reachable ({facts['error']})"
        if facts["installed"] is False:
            return f"{text}; {INSTALL_HINT}"
        return f"{text}: start it (`systemctl start ollama`) or fix OLLAMA_HOST"
    if facts["model_present"] is False:
        return f"model {model} is not present in Ollama at {host}: run `ollama pull {model}`"
    return None
