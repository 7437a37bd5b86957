"""The dashboard's request handlers: the login, each page and its JSON twin, and the operator's
actions (acknowledge a finding, snooze a kind, a maintenance window).

The actions are the command line's own (agent/silence_commands.py: the same checks, the same
store API, the same words back); each needs the session's CSRF token, in the form or in the
X-CSRF-Token header of a fetch. A page's data comes from agent/web/views.py, so the HTML and the
JSON that refreshes it never disagree.
"""
from __future__ import annotations

import argparse
import logging
import re
import secrets
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from agent import silence_commands
from agent.web import alerts_view, llm_view, metrics_view, views
from agent.web.guard import (
    CSRF_FIELD,
    CSRF_HEADER,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    clear_cookie,
    cookie,
    csrf_ok,
    safe_next,
    set_session_cookie,
    tokens_match,
)
from agent.web.password import CLI as PASSWORD_CLI
from agent.web.sessions import Session
from agent.web.state import WebState
from foundation.durations import duration_text
from foundation.store.data_storage import Store, StoreError, UnknownTarget
from foundation.untrusted import for_terminal

log = logging.getLogger(__name__)

FINGERPRINT = re.compile(r"^[0-9a-f]{4,64}$")
LOGIN_FORM_S = 3600          # the login form's token lives this long
FORM_LIMITS = {"max_files": 0, "max_fields": 20, "max_part_size": 8192}
# the pages in the navigation, in order; a later page is one more row (and its route)
NAV = (("overview", "/", "Overview"), ("findings", "/findings", "Findings"),
       ("metrics", "/metrics", "Metrics"), ("llm", "/llm", "LLM runtimes"),
       ("alerts", "/alerts", "Alerts"))


def web_state(request: Request) -> WebState:
    """The dashboard's shared state."""
    state: WebState = request.app.state.web
    return state


def templates(request: Request) -> Jinja2Templates:
    """The page templates."""
    found: Jinja2Templates = request.app.state.templates
    return found


def _session(request: Request) -> Session:
    session: Session = request.state.session   # the guard let only live sessions through
    return session


def render(request: Request, name: str, data: dict[str, Any], page: str, title: str,
           live_src: str | None = None, status_code: int = 200) -> Response:
    """A page: the layout, the page's data, the session's CSRF token and any message for it."""
    session: Session | None = getattr(request.state, "session", None)
    flash = list(session.flash) if session is not None else []
    if session is not None:
        session.flash.clear()
    state = web_state(request)
    context = {"data": data, "page": page, "title": title, "live_src": live_src,
               "session": session, "flash": flash,
               "nav": [{"id": i, "href": h, "label": label} for i, h, label in NAV],
               "host": views.text(state.settings.host_name, 120)}
    return templates(request).TemplateResponse(request, name, context, status_code=status_code)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# -- login and logout -----------------------------------------------------------------------------

def _login_page(request: Request, message: str = "", status_code: int = 200) -> Response:
    state = web_state(request)
    token = secrets.token_urlsafe(32)
    data = {"next": safe_next(request.query_params.get("next")), "message": message,
            "password_set": state.password.is_set(), "password_cli": PASSWORD_CLI,
            "login_token": token}
    response = render(request, "login.html", data, "login", "Log in", status_code=status_code)
    set_session_cookie(response, request, LOGIN_COOKIE, token, path="/login",
                       max_age=LOGIN_FORM_S)
    return response


async def login_form(request: Request) -> Response:
    """GET /login: the form (a browser already logged in goes on to its page)."""
    state = web_state(request)
    if state.session(cookie(request.scope, SESSION_COOKIE)) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return _login_page(request)


async def login(request: Request) -> Response:
    """POST /login: check the password (per address, at most MAX_FAILURES tries per window)."""
    state = web_state(request)
    form = await request.form(**FORM_LIMITS)
    client = _client(request)
    if not tokens_match(form.get(CSRF_FIELD), request.cookies.get(LOGIN_COOKIE) or ""):
        return _login_page(request, "The login form had expired: log in again.", 403)
    wait = state.limiter.locked_for(client)
    if wait > 0:
        return _login_page(request, "Too many failed logins from your address: try again in "
                                    f"{duration_text(wait)}.", 429)
    given = form.get("password")
    good = isinstance(given, str) and bool(given) and await run_in_threadpool(
        state.password.check, given)
    if not good:
        locked = state.limiter.failed(client)
        if locked:
            message = ("Too many failed logins from your address: try again in "
                       f"{duration_text(state.limiter.lockout_s)}.")
        elif not state.password.is_set():
            message = f"No password is set yet: set one on the server with `{PASSWORD_CLI}`."
        else:
            message = "Wrong password."
        return _login_page(request, message, 429 if locked else 401)
    state.limiter.succeeded(client)
    state.sessions.end(cookie(request.scope, SESSION_COOKIE))   # never carry an old id over
    session_id, _ = state.sessions.create(client)
    log.info("dashboard: login from %s", for_terminal(client))
    response = RedirectResponse(safe_next(form.get("next")), status_code=303)
    set_session_cookie(response, request, SESSION_COOKIE, session_id)
    clear_cookie(response, request, LOGIN_COOKIE, path="/login")
    return response


async def checked_form(request: Request) -> FormData:
    """The form of a state-changing request, once its CSRF token (field or header) is the
    session's; 403 otherwise."""
    form = await request.form(**FORM_LIMITS)
    given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
    if not csrf_ok(_session(request), given):
        log.warning("dashboard: %s %s from %s refused: missing or wrong CSRF token",
                    request.method, request.url.path, for_terminal(_client(request)))
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return form


async def logout(request: Request) -> Response:
    """POST /logout: end the session."""
    await checked_form(request)
    web_state(request).sessions.end(request.state.session_id)
    response = RedirectResponse("/login", status_code=303)
    clear_cookie(response, request, SESSION_COOKIE)
    return response


# -- pages and their data -------------------------------------------------------------------------

def _read(request: Request, build: Callable[[Store | None, float], Any]) -> Any:
    state = web_state(request)
    with state.store.reading() as store:
        return build(store, state.clock())


def overview_data(request: Request) -> dict[str, Any]:
    """The overview's data (agent/web/views.py)."""
    settings = web_state(request).settings
    data: dict[str, Any] = _read(request, lambda store, now: views.overview(store, settings, now))
    return data


def overview_page(request: Request) -> Response:
    """GET /: the overview."""
    data = overview_data(request)
    data["choices"] = {"maintenance": views.MAINTENANCE_CHOICES}
    return render(request, "overview.html", data, "overview", "Overview", "/api/overview")


def overview_api(request: Request) -> Response:
    """GET /api/overview."""
    return JSONResponse(overview_data(request))


def findings_data(request: Request) -> dict[str, Any]:
    """The findings page's data for the request's filters."""
    filters = views.Filters.parse(request.query_params)
    data: dict[str, Any] = _read(request, lambda store, now: views.findings(store, filters, now))
    return data


def findings_page(request: Request) -> Response:
    """GET /findings: open and past findings, filtered by kind, severity and source."""
    data = findings_data(request)
    query = data["query"]
    return render(request, "findings.html", data, "findings", "Findings",
                  "/api/findings" + (f"?{query}" if query else ""))


def findings_api(request: Request) -> Response:
    """GET /api/findings."""
    return JSONResponse(findings_data(request))


def _fingerprint(request: Request) -> str:
    fingerprint = str(request.path_params["fingerprint"])
    if not FINGERPRINT.match(fingerprint):
        raise HTTPException(404, "no such finding")
    return fingerprint


def finding_data(request: Request) -> dict[str, Any]:
    """One finding's data; 404 when there is none."""
    fingerprint = _fingerprint(request)
    data: dict[str, Any] | None = _read(request,
                                        lambda store, now: views.finding(store, fingerprint, now))
    if data is None:
        raise HTTPException(404, "no such finding")
    return data


def finding_page(request: Request) -> Response:
    """GET /findings/{fingerprint}: one finding."""
    data = finding_data(request)
    data["choices"] = {"ack": views.ACK_CHOICES, "snooze": views.SNOOZE_CHOICES}
    return render(request, "finding.html", data, "findings", data["name"],
                  f"/api/findings/{data['fingerprint']}")


def finding_api(request: Request) -> Response:
    """GET /api/findings/{fingerprint}."""
    return JSONResponse(finding_data(request))


def metrics_data(request: Request) -> dict[str, Any]:
    """The metrics page's data for the range asked for (?range=1h|24h|7d|30d)."""
    chosen = metrics_view.pick_range(request.query_params.get("range"))
    state = web_state(request)
    data: dict[str, Any] = _read(request, lambda store, now: metrics_view.metrics(
        store, state.settings, chosen, now, state.buckets))
    return data


def metrics_page(request: Request) -> Response:
    """GET /metrics: temperatures, ping, failed logins and syslog errors over a range."""
    data = metrics_data(request)
    return render(request, "metrics.html", data, "metrics", "Metrics",
                  f"/api/metrics?range={data['range']}")


def metrics_api(request: Request) -> Response:
    """GET /api/metrics."""
    return JSONResponse(metrics_data(request))


def llm_data(request: Request) -> dict[str, Any]:
    """The LLM runtimes page's data."""
    data: dict[str, Any] = _read(request, llm_view.llm)
    return data


def llm_page(request: Request) -> Response:
    """GET /llm: the runtimes, their connections now and over time, and the insights."""
    return render(request, "llm.html", llm_data(request), "llm", "LLM runtimes", "/api/llm")


def llm_api(request: Request) -> Response:
    """GET /api/llm."""
    return JSONResponse(llm_data(request))


def alerts_data(request: Request) -> dict[str, Any]:
    """The alerts page's data."""
    data: dict[str, Any] = _read(request, alerts_view.alerts)
    return data


def alerts_page(request: Request) -> Response:
    """GET /alerts: the outbox."""
    return render(request, "alerts.html", alerts_data(request), "alerts", "Alerts", "/api/alerts")


def alerts_api(request: Request) -> Response:
    """GET /api/alerts."""
    return JSONResponse(alerts_data(request))


# -- the operator's actions -----------------------------------------------------------------------

def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip()[:views.FILTER_CAP] if isinstance(value, str) else ""


def _act(request: Request, action: Callable[[Store, argparse.Namespace, float], str],
         args: argparse.Namespace) -> tuple[int, str]:
    """Run one of the command line's silence actions on the store: (HTTP status, what it said)."""
    state = web_state(request)
    try:
        with state.store.writing() as store:
            if store is None:
                return 409, "no cycle has run yet: there is nothing to silence"
            said = action(store, args, state.clock())
    except silence_commands.UsageError as err:
        return 400, str(err)
    except UnknownTarget:
        return 409, "that finding is no longer open"
    except StoreError as err:
        return 503, str(err)
    log.info("dashboard: %s from %s: %s", args.command, for_terminal(_client(request)),
             for_terminal(said))
    return 200, said


async def _answer(request: Request, status: int, said: str, back: str) -> Response:
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"ok": status == 200, "message": views.text(said)}, status_code=status)
    _session(request).flash.append(views.text(said))
    return RedirectResponse(back, status_code=303)


async def acknowledge(request: Request) -> Response:
    """POST /findings/{fingerprint}/ack: acknowledge it (``duration``: until it resolves when
    empty), or end its ack (``off``)."""
    fingerprint = _fingerprint(request)
    form = await checked_form(request)
    args = argparse.Namespace(command="ack", fingerprint=fingerprint,
                              duration=_field(form, "duration") or None,
                              off=bool(_field(form, "off")))
    status, said = await run_in_threadpool(_act, request, silence_commands.ack, args)
    return await _answer(request, status, said, views.finding_href(fingerprint))


async def snooze(request: Request) -> Response:
    """POST /snooze: snooze a finding kind (``kind``, ``duration``, default 4 h), or end it
    (``off``)."""
    form = await checked_form(request)
    args = argparse.Namespace(command="snooze", kind=_field(form, "kind"),
                              duration=_field(form, "duration") or None,
                              off=bool(_field(form, "off")))
    status, said = await run_in_threadpool(_act, request, silence_commands.snooze, args)
    return await _answer(request, status, said, safe_next(_field(form, "next")))


async def maintenance(request: Request) -> Response:
    """POST /maintenance: a maintenance window of ``duration``, or ``off`` to end it."""
    form = await checked_form(request)
    args = argparse.Namespace(command="maintenance", duration=_field(form, "duration") or "?")
    status, said = await run_in_threadpool(_act, request, silence_commands.maintenance, args)
    return await _answer(request, status, said, safe_next(_field(form, "next")))
