"""What the dashboard's tests share: a dashboard on a real store with a real password file, driven
through Starlette's TestClient, and the helpers to log in and to fill the store."""
from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():   # Starlette 1.10 would rather drive httpx2; httpx is what we pin
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from agent.web import password
from agent.web.app import make_app
from foundation.store.data_storage import Store

PASSWORD = "correct horse battery"
START = time.mktime((2026, 6, 15, 12, 0, 0, 0, 0, -1))   # local noon
FINGERPRINT = "0123456789abcdef"


class Clock:
    """A settable clock (the wall clock and the monotonic one of the dashboard)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Dashboard:
    """A dashboard under test: its client, the Starlette app inside, its clocks and settings."""

    client: TestClient
    app: Any
    wall: Clock
    mono: Clock
    settings: Any

    @property
    def state(self) -> Any:
        """The dashboard's shared state (sessions, limiter, store)."""
        return self.app.state.web

    def new_client(self, **kwargs: Any) -> TestClient:
        """Another browser on the same dashboard."""
        return TestClient(self.client.app, follow_redirects=False, **kwargs)


def set_password(settings: Any, secret: str = PASSWORD) -> Path:
    """Write the dashboard's password file as web-password does."""
    path = password.password_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    password.write_record(path, password.make_record(secret))
    return path


def save_cycle(store: Store, now: float, collectors: Mapping[str, Any] | None = None,
               host: str = "nas", reason: str = "nothing unusual", trigger: str = "schedule",
               ) -> None:
    """A cycle report as the agent saves it (the parts the dashboard reads)."""
    from datetime import UTC, datetime

    report = {"started_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
              "duration_s": 0.42, "host": host, "trigger": trigger,
              "collectors": collectors or {
                  "processes": {"ok": True, "error": None, "available": True, "note": None,
                                "duration_s": 0.01},
                  "sensors": {"ok": True, "error": None, "available": False,
                              "note": "no hwmon sensors", "duration_s": 0.001}},
              "findings": [], "alerts": [],
              "verdict": {"severity": "high", "by": "rules", "reason": reason, "model": None}}
    with store.transaction() as tx:
        tx.save_cycle(now, 0.42, "high", "rules", report)


def add_finding(store: Store, now: float, *, fingerprint: str = FINGERPRINT,
                kind: str = "process_missing", source: str = "processes", key: str = "nginx",
                severity: str = "high", summary: str = "nginx is not running",
                details: Mapping[str, Any] | None = None) -> None:
    """A finding present in a cycle, as the cycle stores it."""
    with store.transaction() as tx:
        tx.upsert_finding(fingerprint, source, kind, key, severity, "high", summary, now,
                          details if details is not None else
                          {"facts": {"process": "nginx"}, "labels": {}, "reason": "rule severity",
                           "rule_severity": severity, "evidence": []})


def token_of(html: str, name: str = "csrf_token") -> str:
    """The value of the first hidden field ``name`` of a page."""
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert found, html[:2000]
    return found.group(1)


def login(client: TestClient, secret: str = PASSWORD, next_page: str = "/") -> Any:
    """Log in through the form, as a browser does; the POST's response."""
    form = client.get("/login")
    assert form.status_code == 200, form.text
    return client.post("/login", data={"csrf_token": token_of(form.text), "password": secret,
                                       "next": next_page})


def session_cookie(response: Any) -> str | None:
    """The session id a response's Set-Cookie gives, if any."""
    for header in response.headers.get_list("set-cookie"):
        found = re.match(r"hm_session=([^;]*)", header)
        if found:
            return found.group(1) or None
    return None


def set_cookie_header(response: Any, name: str) -> str:
    """The Set-Cookie header of one cookie."""
    return next(h for h in response.headers.get_list("set-cookie") if h.startswith(name + "="))


@pytest.fixture
def dashboard(make_settings: Callable[..., Any]) -> Iterator[Dashboard]:
    """A dashboard on a store with one open finding and one cycle, its password set."""
    settings = make_settings()
    store = Store.open(settings.db_path)
    try:
        save_cycle(store, START - 60)
        add_finding(store, START - 60)
    finally:
        store.close()
    set_password(settings)
    wall, mono = Clock(START), Clock(1000.0)
    asgi, app = make_app(settings, clock=wall, monotonic=mono)
    with TestClient(asgi, follow_redirects=False) as client:
        yield Dashboard(client, app, wall, mono, settings)


class Structure(HTMLParser):
    """A page's elements in order, each as its tag and attribute names; and what breaks the
    rules of the dashboard's pages (inline script or style, event handler attributes)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[str, ...]]] = []
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = tuple(sorted(name for name, _ in attrs))
        self.tags.append((tag, names))
        values = dict(attrs)
        if tag == "script" and not values.get("src"):
            self.problems.append("an inline <script>")
        if tag == "style":
            self.problems.append("a <style> element")
        if tag == "script":
            self._in_script = True
        for name, value in attrs:
            if name.startswith("on"):
                self.problems.append(f"an event handler attribute {name}")
            if name == "style":
                self.problems.append("a style attribute")
            if name in ("href", "src", "action") and value and not value.startswith("/"):
                self.problems.append(f"a {name} that leaves the site: {value[:60]}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("script text inside a <script>")


def structure(html: str) -> Structure:
    """The parsed structure of a page."""
    parsed = Structure()
    parsed.feed(html)
    parsed.close()
    return parsed
