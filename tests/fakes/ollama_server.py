"""A loopback HTTP server that speaks Ollama's API (/api/chat, /api/tags, /api/ps, /api/version).

It follows the documented wire format: ``/api/chat`` answers one JSON object when ``stream`` is
false and NDJSON chunks (``message.content`` pieces, then a final ``done: true`` object with
``done_reason`` and eval counts) when ``stream`` is true or absent; a missing model is a 404 with
``{"error": "model 'X' not found, try pulling it first"}``; an empty ``messages`` list only loads
the model (``done_reason: "load"``). ``behaviour`` picks what the model "says"; it may also be a
callable ``(request_body) -> str`` returning the assistant's content.
"""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VALID = "valid"
FENCED = "fenced"
PROSE = "prose"
EMPTY = "empty"
WHITESPACE = "whitespace"
WRONG_ENUM = "wrong_enum"
EXTRA_FIELDS = "extra_fields"
TRUNCATED = "truncated"
SERVER_ERROR = "500"             # chat answers fail with 500 (loads succeed)
SLOW = "slow"                    # a chat answer that takes slow_seconds (loads are not slow)
MISSING_MODEL = "missing_model"  # answers 404 whatever model is asked for

Behaviour = str | Callable[[dict[str, Any]], str]


def verdict_json(request: dict[str, Any], severity: str = "low") -> str:
    """A valid verdict naming every finding id found in the request's prompt (``"id": "..."``)."""
    ids = finding_ids(request)
    return json.dumps({"severity": severity, "reason": "looks routine for a home server",
                       "findings": [{"id": i, "severity": severity, "reason": "seen before"}
                                    for i in ids]})


def finding_ids(request: dict[str, Any]) -> list[str]:
    """The 16-hex finding ids written as ``"id": "..."`` anywhere in the request's messages."""
    text = "\n".join(str(m.get("content", "")) for m in request.get("messages", []))
    found = re.findall(r'"id":\s*"([0-9a-f]{16})"', text)
    return list(dict.fromkeys(found))


def _content(behaviour: str, request: dict[str, Any]) -> str:
    """The assistant content for a named behaviour."""
    valid = verdict_json(request)
    table: dict[str, Callable[[], str]] = {
        VALID: lambda: valid,
        FENCED: lambda: f"```json\n{valid}\n```",
        PROSE: lambda: f"Sure! Here is my assessment of the findings:\n{valid}\nHope this helps.",
        EMPTY: lambda: "",
        WHITESPACE: lambda: "  \n\t \n",
        WRONG_ENUM: lambda: valid.replace('"low"', '"critical"'),
        EXTRA_FIELDS: lambda: json.dumps({**json.loads(valid), "confidence": 0.9,
                                          "action": "reboot"}),
        TRUNCATED: lambda: valid[: max(1, len(valid) // 2)],
    }
    return table[behaviour]()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode())

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(raw or b"{}")
        except ValueError:
            parsed = {"_unparsed": raw.decode("utf-8", "replace")}
        return parsed if isinstance(parsed, dict) else {"_body": parsed}

    def do_GET(self) -> None:
        """/api/tags, /api/ps, /api/version."""
        fake = self.server.fake
        fake.requests.append((self.path, {}))
        if self.path == "/api/version":
            self._json(200, {"version": fake.version})
        elif self.path == "/api/tags":
            self._json(200, {"models": [_model_entry(m) for m in fake.models]})
        elif self.path == "/api/ps":
            self._json(200, {"models": [{**_model_entry(m), "expires_at": _now(),
                                         "size_vram": 5_000_000_000} for m in fake.loaded]})
        elif self.path in ("/", ""):
            self._send(200, b"Ollama is running", "text/plain; charset=utf-8")
        else:
            self._send(404, b"404 page not found", "text/plain; charset=utf-8")

    def do_HEAD(self) -> None:
        """The root answers HEAD like the real server."""
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        """/api/chat (streaming or not)."""
        fake = self.server.fake
        body = self._body()
        fake.requests.append((self.path, body))
        if self.path != "/api/chat":
            self._send(404, b"404 page not found", "text/plain; charset=utf-8")
            return
        model = str(body.get("model", ""))
        behaviour = fake.behaviour
        if behaviour == MISSING_MODEL or model not in fake.models:
            self._json(404, {"error": f"model '{model}' not found, try pulling it first"})
            return
        if model not in fake.loaded:
            if fake._stopping.wait(fake.load_seconds):  # a cold load takes a while
                return
            fake.loaded.append(model)
        if not body.get("messages"):
            self._json(200, _final(model, "", "load"))
            return
        if behaviour == SERVER_ERROR:
            self._json(500, {"error": "llama runner process has terminated: signal: killed"})
            return
        if behaviour == SLOW:
            if fake._stopping.wait(fake.slow_seconds):
                return
            behaviour = VALID
        content = behaviour(body) if callable(behaviour) else _content(behaviour, body)
        if body.get("stream", True) is False:
            self._json(200, _final(model, content, "stop"))
            return
        self._stream(model, content)

    def _stream(self, model: str, content: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        pieces = [content[i:i + 7] for i in range(0, len(content), 7)]
        for piece in pieces:
            self._chunk({"model": model, "created_at": _now(),
                         "message": {"role": "assistant", "content": piece}, "done": False})
        self._chunk(_final(model, "", "stop"))
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _model_entry(name: str) -> dict[str, Any]:
    return {"name": name, "model": name, "modified_at": _now(), "size": 4_920_753_328,
            "digest": "46e0c10c039e019119339687c3c1757cc81b9da49709a3b3924863ba87ca666e",
            "details": {"parent_model": "", "format": "gguf", "family": "llama",
                        "families": ["llama"], "parameter_size": "8.0B",
                        "quantization_level": "Q4_K_M"}}


def _final(model: str, content: str, reason: str) -> dict[str, Any]:
    return {"model": model, "created_at": _now(),
            "message": {"role": "assistant", "content": content}, "done_reason": reason,
            "done": True, "total_duration": 1_200_000_000, "load_duration": 20_000_000,
            "prompt_eval_count": 900, "prompt_eval_duration": 600_000_000,
            "eval_count": max(1, len(content) // 4), "eval_duration": 500_000_000}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeOllama


class FakeOllama:
    """Context manager: a fake Ollama on 127.0.0.1 (port chosen by the system) in a daemon thread."""

    def __init__(self, models: list[str] | None = None, behaviour: Behaviour = VALID,
                 slow_seconds: float = 30.0, load_seconds: float = 0.0) -> None:
        self.models: list[str] = list(models) if models is not None else ["llama3.1:8b"]
        self.loaded: list[str] = []
        self.version = "0.6.3"
        self.behaviour: Behaviour = behaviour
        self.slow_seconds = slow_seconds    # how long a SLOW answer takes
        self.load_seconds = load_seconds    # how long loading a model that is not loaded takes
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def chats(self) -> list[dict[str, Any]]:
        """The bodies of /api/chat requests that carried messages (warm-ups excluded)."""
        return [b for p, b in self.requests if p == "/api/chat" and b.get("messages")]

    def start(self) -> FakeOllama:
        """Bind and serve in a daemon thread."""
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={
            "poll_interval": 0.05}, daemon=True, name="fake-ollama")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Wake slow answers, stop serving and close the socket."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
