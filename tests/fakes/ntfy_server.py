"""Loopback receivers for the Apprise tests: an ntfy server (its publish API) and a JSON webhook.

ntfy (docs.ntfy.sh/publish): ``POST /TOPIC`` with the message as the body and the ``X-Title``,
``X-Priority`` and ``X-Tags`` headers (or their aliases ``Title``/``ti``/``t``,
``Priority``/``prio``/``p``, ``Tags``/``tag``/``ta``), or ``POST /`` with a JSON object whose
``topic`` is required and whose ``title``, ``message``, ``priority`` and ``tags`` override the
headers (as ntfy's own JSON-to-headers step does; Apprise publishes that way). Priorities are
1-5 or min, low, default, high, max/urgent; anything else is ntfy's 400 40007. Answers: 200 with
the message object; scripted 429 (``{"code": 42901, "http": 429, "error": "limit reached: too
many requests, please be nice"}``), 5xx and slow answers; 401 for a wrong Basic login when
``login`` is set. ``FakeJsonReceiver`` records what any JSON POST carries (Apprise's json://).
"""
from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PRIORITIES = {"1": 1, "min": 1, "2": 2, "low": 2, "3": 3, "default": 3, "4": 4, "high": 4,
              "5": 5, "max": 5, "urgent": 5}
ALIASES = {"title": ("x-title", "title", "ti", "t"), "priority": ("x-priority", "priority", "prio",
                                                                     "p"),
           "tags": ("x-tags", "tags", "tag", "ta")}
ERRORS = {429: (42901, "limit reached: too many requests, please be nice"),
          500: (50001, "internal server error"), 401: (40101, "unauthorized"),
          400: (40007, "invalid priority parameter")}


@dataclass
class Reply:
    """A scripted answer: a status (200 accepts), and a delay before it."""

    status: int
    delay_s: float = 0.0


@dataclass
class Published:
    """A message the fake ntfy accepted."""

    topic: str
    title: str
    message: str
    priority: int
    tags: list[str]
    headers: dict[str, str] = field(default_factory=dict)
    received_at: float = 0.0


class _Server:
    """A threading loopback HTTP server run with ``with``; its handler is the subclass's."""

    def __init__(self) -> None:
        self.requests = 0
        self.script: list[Reply] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name=type(self).__name__)

    @property
    def port(self) -> int:
        """The loopback port it listens on."""
        return int(self._server.server_address[1])

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def next_reply(self) -> Reply | None:
        """The next scripted answer (None: answer normally)."""
        with self._lock:
            self.requests += 1
            return self.script.pop(0) if self.script else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError


def _send(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        handler.wfile.write(data)


def _error(handler: BaseHTTPRequestHandler, status: int) -> None:
    code, text = ERRORS.get(status, (status * 100 + 1, "error"))
    _send(handler, status, {"code": code, "http": status, "error": text,
                            "link": "https://ntfy.sh/docs/publish/#limitations"})


class FakeNtfy(_Server):
    """``with FakeNtfy() as ntfy:``; Apprise's URL is ``ntfy://127.0.0.1:{ntfy.port}/TOPIC``."""

    def __init__(self, login: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.login = login
        self.published: list[Published] = []

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def _header(self, what: str) -> str | None:
                for name in ALIASES[what]:
                    if self.headers.get(name) is not None:
                        return str(self.headers[name])
                return None

            def do_POST(self) -> None:   # PUT works the same in ntfy
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply = fake.next_reply()
                if reply is not None:
                    time.sleep(reply.delay_s)
                    if reply.status != 200:
                        _error(self, reply.status)
                        return
                if fake.login is not None:
                    expected = "Basic " + base64.b64encode(":".join(fake.login).encode()).decode()
                    if self.headers.get("Authorization") != expected:
                        _error(self, 401)
                        return
                topic = self.path.strip("/").split("?")[0]
                title, priority, tags = (self._header("title") or "", self._header("priority"),
                                         self._header("tags"))
                message = raw.decode("utf-8", "replace")
                if not topic:   # publish as JSON: the object's fields win over the headers
                    try:
                        body = json.loads(raw)
                        topic = str(body["topic"])
                    except (ValueError, KeyError, TypeError):
                        _send(self, 400, {"code": 40017, "http": 400,
                                          "error": "invalid request: request body must be "
                                                   "message JSON"})
                        return
                    message = str(body.get("message", ""))
                    title = str(body.get("title", title))
                    if body.get("priority") is not None:
                        priority = str(body["priority"])
                    if body.get("tags") is not None:
                        tags = ",".join(body["tags"])
                level = PRIORITIES.get((priority or "3").strip().lower())
                if level is None:
                    _error(self, 400)
                    return
                published = Published(topic, title, message or "triggered", level,
                                      [t.strip() for t in (tags or "").split(",") if t.strip()],
                                      dict(self.headers), time.time())
                with fake._lock:
                    fake.published.append(published)
                _send(self, 200, {"id": f"m{len(fake.published)}", "time": int(time.time()),
                                  "event": "message", "topic": topic, "title": title,
                                  "message": published.message, "priority": level})

        return Handler


class FakeJsonReceiver(_Server):
    """Records the JSON body of every POST (Apprise's ``json://127.0.0.1:{port}/PATH``)."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[str, dict[str, Any]]] = []

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply = fake.next_reply()
                if reply is not None:
                    time.sleep(reply.delay_s)
                    if reply.status != 200:
                        _error(self, reply.status)
                        return
                with fake._lock:
                    fake.received.append((self.path, json.loads(raw)))
                _send(self, 200, {"ok": True})

        return Handler
