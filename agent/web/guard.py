"""The dashboard's gate, wrapped around every request: security headers on every response, and a
live session for everything but the login form and the static files.

A request without a session is sent to the login form (a page) or refused with 401 (the JSON
endpoints and every POST). State-changing requests also need the session's CSRF token
(``csrf_ok``, checked by each POST handler in agent/web/pages.py).
"""
from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from starlette.requests import Request, cookie_parser
from starlette.responses import JSONResponse, RedirectResponse, Response

from agent.web.sessions import Session
from agent.web.state import WebState

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "hm_session"
LOGIN_COOKIE = "hm_login"         # the login form's own CSRF token (double submit: cookie = field)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
PUBLIC_PATHS = frozenset({"/login"})
STATIC_PREFIX = "/static/"
# No inline script or style anywhere: every script and style sheet is a file under /static.
# require-trusted-types-for: a browser that knows Trusted Types refuses any HTML string written
# into the page (innerHTML and the like), so even a future mistake in the JS cannot inject markup.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'; object-src 'none'; require-trusted-types-for 'script'")
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
)
_OURS = {name for name, _ in SECURITY_HEADERS} | {b"cache-control"}


def cookie(scope: Scope, name: str) -> str | None:
    """One cookie of a request, None when it has none."""
    for key, value in scope.get("headers") or ():
        if key == b"cookie":
            found = cookie_parser(value.decode("latin-1")).get(name)
            if found:
                return found
    return None


def is_https(request: Request) -> bool:
    """True when the request came over HTTPS (its own scheme, or X-Forwarded-Proto from a proxy
    in WEB_TRUSTED_PROXIES, which uvicorn's ProxyHeadersMiddleware put in the scope)."""
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, name: str, value: str,
                       path: str = "/", max_age: int | None = None) -> None:
    """A cookie that scripts cannot read, that no other site's request carries, and that goes
    only over HTTPS when the dashboard is reached over HTTPS."""
    response.set_cookie(name, value, max_age=max_age, path=path, secure=is_https(request),
                        httponly=True, samesite="strict")


def clear_cookie(response: Response, request: Request, name: str, path: str = "/") -> None:
    """Tell the browser to drop a cookie."""
    response.delete_cookie(name, path=path, secure=is_https(request), httponly=True,
                           samesite="strict")


def safe_next(value: object) -> str:
    """A page of this dashboard to go to after the login: a local path, never another site."""
    target = str(value or "")
    if (not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(c) < 0x21 or ord(c) == 0x7F for c in target) or len(target) > 2000):
        return "/"
    return target


def tokens_match(given: object, expected: str) -> bool:
    """True when ``given`` is the expected token (compared in constant time)."""
    return isinstance(given, str) and bool(expected) and hmac.compare_digest(
        given.encode("utf-8", "replace"), expected.encode("utf-8"))


def csrf_ok(session: Session, given: object) -> bool:
    """True when ``given`` is the session's CSRF token."""
    return tokens_match(given, session.csrf)


class Guard:
    """The outermost ASGI layer: headers on every response, the login gate on every request."""

    def __init__(self, app: ASGIApp, state: WebState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":           # lifespan: the store is closed at the stop
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path") or "")
        static = path.startswith(STATIC_PREFIX)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers") or () if k.lower() not in _OURS]
                # pages hold what the agent saw: never kept by a browser or a proxy
                headers.extend(SECURITY_HEADERS)
                headers.append((b"cache-control", b"no-cache" if static else b"no-store"))
                message["headers"] = headers
            await send(message)

        if static or path in PUBLIC_PATHS:
            await self.app(scope, receive, send_with_headers)
            return
        session_id = cookie(scope, SESSION_COOKIE)
        session = self.state.session(session_id)
        if session is None:
            await self._refuse(scope)(scope, receive, send_with_headers)
            return
        scope.setdefault("state", {})
        scope["state"]["session"] = session
        scope["state"]["session_id"] = session_id
        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _refuse(scope: Scope) -> Response:
        path = str(scope.get("path") or "/")
        if scope.get("method") in ("GET", "HEAD") and not path.startswith("/api/"):
            query = scope.get("query_string") or b""
            target = path + ("?" + query.decode("latin-1") if query else "")
            return RedirectResponse("/login?next=" + quote(safe_next(target), safe="/"),
                                    status_code=303)
        return JSONResponse({"error": "login required", "login": "/login"}, status_code=401)
