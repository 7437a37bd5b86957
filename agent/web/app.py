"""The dashboard as one ASGI application: routes, templates, static files, the gate around them.

``make_app(settings)`` builds it; agent/web/server.py serves it with uvicorn, and the tests call
it through Starlette's TestClient or a real uvicorn on loopback. A new page is a view function in
agent/web/views.py, a handler pair in agent/web/pages.py (the page and its /api twin), a template
that binds its live fields (``data-field``, ``data-list``: agent/web/static/live.js), one row of
``ROUTES`` and one of ``pages.NAV``.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, cast

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from agent.web import pages
from agent.web.guard import ASGIApp, Guard
from agent.web.state import WebState
from foundation.settings import Settings
from foundation.store.data_storage import StoreError

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
MAX_BODY = 64 * 1024            # no form of the dashboard comes near it

ROUTES: tuple[BaseRoute, ...] = (
    Route("/login", pages.login_form, methods=["GET"], name="login_form"),
    Route("/login", pages.login, methods=["POST"], name="login"),
    Route("/logout", pages.logout, methods=["POST"], name="logout"),
    Route("/", pages.overview_page, methods=["GET"], name="overview"),
    Route("/api/overview", pages.overview_api, methods=["GET"], name="api_overview"),
    Route("/findings", pages.findings_page, methods=["GET"], name="findings"),
    Route("/api/findings", pages.findings_api, methods=["GET"], name="api_findings"),
    Route("/findings/{fingerprint}", pages.finding_page, methods=["GET"], name="finding"),
    Route("/api/findings/{fingerprint}", pages.finding_api, methods=["GET"], name="api_finding"),
    Route("/findings/{fingerprint}/ack", pages.acknowledge, methods=["POST"], name="ack"),
    Route("/snooze", pages.snooze, methods=["POST"], name="snooze"),
    Route("/maintenance", pages.maintenance, methods=["POST"], name="maintenance"),
    Route("/metrics", pages.metrics_page, methods=["GET"], name="metrics"),
    Route("/api/metrics", pages.metrics_api, methods=["GET"], name="api_metrics"),
    Route("/llm", pages.llm_page, methods=["GET"], name="llm"),
    Route("/api/llm", pages.llm_api, methods=["GET"], name="api_llm"),
    Route("/alerts", pages.alerts_page, methods=["GET"], name="alerts"),
    Route("/api/alerts", pages.alerts_api, methods=["GET"], name="api_alerts"),
)


def pick(data: Any, path: str) -> str:
    """The text at a dotted path of a page's data ("" when absent), exactly as live.js puts it
    into a ``data-field`` element, so the first render and each refresh agree."""
    value = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return ""
        value = value[part]
    if value is None or isinstance(value, (Mapping, list)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def truthy(data: Any, path: str) -> bool:
    """Whether the value at a dotted path is there and not empty, zero or false (live.js's
    ``data-show-if`` and ``data-hide-if``)."""
    value = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return bool(value)


def make_templates() -> Jinja2Templates:
    """The page templates: autoescaped, every one (no ``|safe`` on data anywhere)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.globals.update(pick=pick, truthy=truthy)
    return Jinja2Templates(env=env)


def _error(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/") or "application/json" in request.headers.get(
            "accept", ""):
        return JSONResponse({"error": message}, status_code=status)
    return pages.render(request, "error.html", {"status": status, "message": message}, "error",
                        f"Error {status}", status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return _error(request, status, str(getattr(exc, "detail", "internal error")))


async def _store_error(request: Request, exc: Exception) -> Response:
    log.error("dashboard: %s", exc)
    return _error(request, 503, f"The store cannot be read: {exc}")


def make_app(settings: Settings, clock: Callable[[], float] = time.time,
             monotonic: Callable[[], float] = time.monotonic) -> tuple[ASGIApp, Starlette]:
    """The dashboard: (the ASGI application to serve, the Starlette app inside for its routes
    and state)."""
    state = WebState(settings, clock=clock, monotonic=monotonic)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        state.store.close()

    app = Starlette(routes=[*ROUTES, Mount("/static", StaticFiles(directory=HERE / "static"),
                                           name="static")],
                    exception_handlers={HTTPException: _http_error, StoreError: _store_error},
                    lifespan=lifespan, max_body_size=MAX_BODY)
    app.state.web = state
    app.state.templates = make_templates()
    outer: ASGIApp = Guard(app, state)
    if settings.WEB_TRUSTED_PROXIES:
        # only then are X-Forwarded-For and -Proto believed, and only from those addresses
        outer = cast(ASGIApp, ProxyHeadersMiddleware(
            outer, trusted_hosts=list(settings.WEB_TRUSTED_PROXIES)))  # type: ignore[arg-type]
    return outer, app
