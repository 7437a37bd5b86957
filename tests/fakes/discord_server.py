"""A loopback HTTP server that behaves as Discord's webhook endpoint ``POST /api/webhooks/ID/TOKEN``.

It accepts JSON bodies and multipart bodies (``payload_json`` plus ``files[n]``/any file parts),
enforces Discord's documented message limits with the same 400 body shape Discord uses
(``{"code": 50035, "errors": {...}, "message": "Invalid Form Body"}``), answers 401/404 for a wrong
token or an unknown webhook, 429 with ``retry_after`` (JSON seconds, float; also ``Retry-After``)
with or without a ``Via`` header, and 5xx or slow answers on demand. With ``?wait=true`` it
answers 200 and the created message object, otherwise 204. Accepted messages are recorded.
"""
from __future__ import annotations

import contextlib
import email.parser
import email.policy
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

WEBHOOK_ID = "123456789012345678"
WEBHOOK_TOKEN = "fakeToken_abcDEF-0123456789"
LIMITS = {"content": 2000, "embeds": 10, "title": 256, "description": 4096, "fields": 25,
          "field_name": 256, "field_value": 1024, "footer": 2048, "author": 256, "total": 6000}
_LIVE_MENTION = re.compile(r"@(everyone|here)|<@[!&]?\d+>")


@dataclass
class Reply:
    """A scripted answer: an HTTP status, optional 429 wait and Via header, optional delay."""

    status: int
    retry_after: float | None = None
    via: bool = False
    delay_s: float = 0.0
    body: bytes | None = None


@dataclass
class Accepted:
    """A message the fake accepted (as Discord would have posted it)."""

    payload: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)
    live_mentions: list[str] = field(default_factory=list)
    received_at: float = 0.0


def _too_long(path: str, limit: int) -> dict[str, Any]:
    return {path: {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH",
                                "message": f"Must be {limit} or fewer in length."}]}}


def limit_errors(payload: dict[str, Any], has_files: bool = False) -> dict[str, Any]:
    """Discord's ``errors`` object for a payload over the limits ({} when it is within them)."""
    errors: dict[str, Any] = {}
    content = payload.get("content") or ""
    embeds = payload.get("embeds") or []
    if len(content) > LIMITS["content"]:
        errors.update(_too_long("content", LIMITS["content"]))
    if not content and not embeds and not has_files:
        errors["message"] = {"_errors": [{"code": "BASE_TYPE_REQUIRED",
                                          "message": "Cannot send an empty message"}]}
    if len(embeds) > LIMITS["embeds"]:
        errors.update(_too_long("embeds", LIMITS["embeds"]))
    total = 0
    for i, embed in enumerate(embeds[:LIMITS["embeds"]]):
        checks = [("title", embed.get("title") or "", LIMITS["title"]),
                  ("description", embed.get("description") or "", LIMITS["description"]),
                  ("footer.text", (embed.get("footer") or {}).get("text") or "", LIMITS["footer"]),
                  ("author.name", (embed.get("author") or {}).get("name") or "", LIMITS["author"])]
        fields = embed.get("fields") or []
        if len(fields) > LIMITS["fields"]:
            errors.update(_too_long(f"embeds.{i}.fields", LIMITS["fields"]))
        for j, f in enumerate(fields):
            checks.append((f"fields.{j}.name", f.get("name") or "", LIMITS["field_name"]))
            checks.append((f"fields.{j}.value", f.get("value") or "", LIMITS["field_value"]))
            if not f.get("name") or not f.get("value"):
                errors[f"embeds.{i}.fields.{j}"] = {"_errors": [{
                    "code": "BASE_TYPE_REQUIRED", "message": "This field is required"}]}
        for name, text, limit in checks:
            total += len(text)
            if len(text) > limit:
                errors.update(_too_long(f"embeds.{i}.{name}", limit))
    if total > LIMITS["total"]:
        errors["embeds"] = {"_errors": [{"code": "MAX_EMBED_SIZE_EXCEEDED",
                                         "message": "Embed size exceeds maximum size of 6000"}]}
    return errors


def live_mentions(payload: dict[str, Any]) -> list[str]:
    """Mentions that would notify someone, given the payload's allowed_mentions."""
    allowed = payload.get("allowed_mentions")
    parse = set(allowed.get("parse", [])) if isinstance(allowed, dict) else {"everyone", "users",
                                                                             "roles"}
    found = []
    for match in _LIVE_MENTION.finditer(payload.get("content") or ""):
        text = match.group(0)
        kind = "everyone" if match.group(1) else ("roles" if "&" in text else "users")
        if kind in parse:
            found.append(text)
    return found


class FakeDiscord:
    """Run with ``with FakeDiscord() as discord:``; ``discord.url`` is the webhook URL."""

    def __init__(self) -> None:
        self.accepted: list[Accepted] = []
        self.requests = 0
        self.rejected: list[dict[str, Any]] = []
        self.script: list[Reply] = []      # answered first, in order
        self.default: Reply | None = None  # answered when the script is empty (None: accept)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fake-discord")

    @property
    def url(self) -> str:
        """The webhook URL, as Discord hands it out."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/webhooks/{WEBHOOK_ID}/" \
               f"{WEBHOOK_TOKEN}"

    def __enter__(self) -> FakeDiscord:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _next(self) -> Reply | None:
        with self._lock:
            self.requests += 1
            if self.script:
                return self.script.pop(0)
            return self.default

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                return

            def _send(self, status: int, body: dict[str, Any] | bytes | None,
                      headers: dict[str, str] | None = None) -> None:
                data = body if isinstance(body, bytes) else (
                    json.dumps(body).encode() if body is not None else b"")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                # the client may have timed out and left, as the notifier's timeout test makes it
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            def do_GET(self) -> None:
                # Discord answers GET on a webhook URL with the webhook object, posting nothing.
                found = re.fullmatch(r"/api/webhooks/(\d+)/([^/]+)", urlsplit(self.path).path)
                if not found or found.group(1) != WEBHOOK_ID:
                    self._send(404, {"message": "Unknown Webhook", "code": 10015})
                elif found.group(2) != WEBHOOK_TOKEN:
                    self._send(401, {"message": "Invalid Webhook Token", "code": 50027})
                else:
                    self._send(200, {"id": WEBHOOK_ID, "type": 1, "name": "homelab-monitor",
                                     "avatar": None, "channel_id": "1", "guild_id": "2",
                                     "application_id": None, "token": WEBHOOK_TOKEN})

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                found = re.fullmatch(r"/api/webhooks/(\d+)/([^/]+)", parts.path)
                if not found or found.group(1) != WEBHOOK_ID:
                    self._send(404, {"message": "Unknown Webhook", "code": 10015})
                    return
                if found.group(2) != WEBHOOK_TOKEN:
                    self._send(401, {"message": "Invalid Webhook Token", "code": 50027})
                    return
                reply = fake._next()
                if reply is not None:
                    time.sleep(reply.delay_s)
                    if reply.status != 200:
                        self._scripted(reply)
                        return
                try:
                    payload, files = self._parse(raw)
                except ValueError as err:
                    self._send(400, {"message": f"Cannot parse the body: {err}", "code": 50109})
                    return
                errors = limit_errors(payload, bool(files))
                if errors:
                    fake.rejected.append(errors)
                    self._send(400, {"code": 50035, "errors": errors,
                                     "message": "Invalid Form Body"})
                    return
                accepted = Accepted(payload, files, live_mentions(payload), time.time())
                with fake._lock:
                    fake.accepted.append(accepted)
                    number = len(fake.accepted)
                if parse_qs(parts.query).get("wait", ["false"])[0].lower() == "true":
                    self._send(200, {"id": str(10**17 + number), "type": 0,
                                     "content": payload.get("content") or "",
                                     "channel_id": "1", "embeds": payload.get("embeds") or [],
                                     "attachments": [{"id": str(i), "filename": n}
                                                     for i, n in enumerate(files)],
                                     "mention_everyone": "@everyone" in accepted.live_mentions,
                                     "webhook_id": WEBHOOK_ID})
                else:
                    self._send(204, None)

            def _scripted(self, reply: Reply) -> None:
                if reply.status == 429:
                    wait = reply.retry_after if reply.retry_after is not None else 1.0
                    headers = {"Retry-After": str(max(1, round(wait))),
                               "X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0",
                               "X-RateLimit-Reset-After": str(wait),
                               "X-RateLimit-Scope": "user"}
                    if reply.via:
                        headers["Via"] = "1.1 google"
                    self._send(429, reply.body or {"message": "You are being rate limited.",
                                                   "retry_after": wait, "global": False},
                               headers)
                    return
                self._send(reply.status, reply.body if reply.body is not None else
                           {"message": "Internal Server Error", "code": 0})

            def _parse(self, raw: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
                ctype = self.headers.get("Content-Type", "")
                if ctype.startswith("application/json"):
                    return json.loads(raw), {}
                if not ctype.startswith("multipart/form-data"):
                    raise ValueError(f"unsupported content type {ctype!r}")
                message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                    b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
                payload: dict[str, Any] | None = None
                files: dict[str, bytes] = {}
                for part in message.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    data = part.get_payload(decode=True) or b""
                    if name == "payload_json":
                        payload = json.loads(data)
                    elif part.get_filename():
                        files[part.get_filename()] = data
                if payload is None:
                    raise ValueError("multipart body without payload_json")
                return payload, files

        return Handler
