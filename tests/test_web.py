"""The dashboard's security, through Starlette's TestClient on a real store and a real password
file: login required everywhere, passwords, lockouts, sessions, CSRF, cookies and headers."""
from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from starlette.routing import Mount, Route

from agent.web import sessions as web_sessions
from agent.web.guard import CSP, safe_next
from tests.web_support import (
    FINGERPRINT,
    PASSWORD,
    Dashboard,
    dashboard,
    login,
    session_cookie,
    set_cookie_header,
    set_password,
    structure,
    token_of,
)

__all__ = ["dashboard"]   # the fixture, used by name

PAGE_HEADERS = {"x-frame-options": "DENY", "x-content-type-options": "nosniff",
                "referrer-policy": "no-referrer"}


def routes(dash: Dashboard) -> list[tuple[str, str]]:
    """(method, path) of every route of the dashboard, path parameters filled in."""
    out = []
    for route in dash.app.routes:
        if isinstance(route, Mount):
            continue
        assert isinstance(route, Route)
        path = route.path.replace("{fingerprint}", FINGERPRINT)
        assert "{" not in path, f"a new path parameter: fill it in here ({route.path})"
        out.extend((method, path) for method in sorted(route.methods or ()) if method != "HEAD")
    return out


def logged_in(dash: Dashboard) -> Any:
    """The dashboard's client, logged in."""
    answer = login(dash.client)
    assert answer.status_code == 303, answer.text
    return dash.client


def csrf(dash: Dashboard) -> str:
    """The CSRF token of the logged-in session (as every page carries it)."""
    return token_of(dash.client.get("/").text)


# -- login required -------------------------------------------------------------------------------

def test_every_page_and_api_needs_a_login_but_the_login_form_and_static_files(
        dashboard: Dashboard) -> None:
    every = routes(dashboard)
    assert ("GET", "/") in every and ("POST", f"/findings/{FINGERPRINT}/ack") in every
    for method, path in every:
        if path == "/login":
            continue
        answer = dashboard.client.request(method, path, data={"csrf_token": "x"})
        if method == "GET" and not path.startswith("/api/"):
            assert answer.status_code == 303, (method, path)
            assert answer.headers["location"] == "/login?next=" + path, (method, path)
        else:
            assert answer.status_code == 401, (method, path, answer.status_code)
            assert answer.json() == {"error": "login required", "login": "/login"}
        assert FINGERPRINT not in answer.text and "nginx" not in answer.text
    # what is public: the form, and the static files it needs
    assert dashboard.client.get("/login").status_code == 200
    for name in ("app.css", "theme.js", "live.js"):
        assert dashboard.client.get(f"/static/{name}").status_code == 200
    # an unknown page is not even said to be unknown before a login
    assert dashboard.client.get("/admin").status_code == 303
    assert dashboard.client.get("/static/%2e%2e/config.py").status_code == 404   # no way out


def test_the_next_page_after_a_login_is_always_on_this_site() -> None:
    assert safe_next("/findings?kind=x") == "/findings?kind=x"
    for hostile in ("https://evil.example/", "//evil.example/", "/\\evil.example", "evil",
                    "/\r\nSet-Cookie: x=1", "", None, "/" + "a" * 3000):
        assert safe_next(hostile) == "/", hostile


def test_a_login_goes_on_to_the_page_asked_for(dashboard: Dashboard) -> None:
    first = dashboard.client.get(f"/findings/{FINGERPRINT}")
    assert first.headers["location"] == f"/login?next=/findings/{FINGERPRINT}"
    form = dashboard.client.get(first.headers["location"])
    assert f'name="next" value="/findings/{FINGERPRINT}"' in form.text
    answer = dashboard.client.post("/login", data={
        "csrf_token": token_of(form.text), "password": PASSWORD,
        "next": f"/findings/{FINGERPRINT}"})
    assert answer.status_code == 303 and answer.headers["location"] == f"/findings/{FINGERPRINT}"
    assert dashboard.client.get(answer.headers["location"]).status_code == 200
    hostile = login(dashboard.new_client(), next_page="https://evil.example/")
    assert hostile.headers["location"] == "/"


# -- passwords and lockouts -----------------------------------------------------------------------

def test_a_wrong_password_gets_no_session(dashboard: Dashboard) -> None:
    answer = login(dashboard.client, secret="not the password")
    assert answer.status_code == 401 and "Wrong password" in answer.text
    assert session_cookie(answer) is None
    assert dashboard.client.get("/").status_code == 303
    for wrong in ("", PASSWORD.upper(), PASSWORD + " ", PASSWORD[:-1]):
        assert login(dashboard.new_client(client=("192.0.2.1", 1)), secret=wrong
                     ).status_code == 401
    assert login(dashboard.client).status_code == 303


def test_without_a_password_file_nobody_logs_in(dashboard: Dashboard) -> None:
    dashboard.settings.DATA_DIR.joinpath("web-password.json").unlink()
    form = dashboard.client.get("/login")
    assert "No password is set yet" in form.text and "web-password" in form.text
    answer = login(dashboard.client)
    assert answer.status_code == 401 and session_cookie(answer) is None


def test_five_failures_lock_the_address_out_and_the_lockout_is_logged(
        dashboard: Dashboard, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.web")
    attacker = dashboard.new_client(client=("203.0.113.9", 40000))
    statuses = [login(attacker, secret=f"guess-{n}").status_code
                for n in range(web_sessions.MAX_FAILURES)]
    assert statuses == [401] * (web_sessions.MAX_FAILURES - 1) + [429]
    right = login(attacker)                          # even the right password, while locked
    assert right.status_code == 429 and session_cookie(right) is None
    assert "try again in 15 min" in right.text
    # the lockout is logged with the address and never with a password
    [lockout] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "203.0.113.9" in lockout.getMessage() and "refused for 15 min" in lockout.getMessage()
    assert not any("guess-" in r.getMessage() or PASSWORD in r.getMessage()
                   for r in caplog.records)
    # another address is not locked out; this one is again once the lockout is over
    assert login(dashboard.new_client(client=("198.51.100.7", 1))).status_code == 303
    dashboard.mono.now += web_sessions.LOCKOUT_S + 1
    assert login(attacker).status_code == 303


def test_failures_spread_beyond_the_window_do_not_lock(dashboard: Dashboard) -> None:
    client = dashboard.new_client(client=("192.0.2.44", 1))
    for _ in range(2 * web_sessions.MAX_FAILURES):
        assert login(client, secret="nope").status_code == 401
        dashboard.mono.now += web_sessions.WINDOW_S / (web_sessions.MAX_FAILURES - 1) + 1
    assert login(client).status_code == 303


def test_ipv6_addresses_count_by_their_slash_64() -> None:
    limiter = web_sessions.LoginLimiter(max_failures=3)
    for host in ("2001:db8::1", "2001:db8::2", "2001:db8::ffff:3"):
        locked = limiter.failed(host)
    assert locked and limiter.locked_for("2001:db8::9") > 0
    assert limiter.locked_for("2001:db8:0:1::1") == 0 and limiter.locked_for("192.0.2.1") == 0


# -- sessions -------------------------------------------------------------------------------------

def test_a_login_always_makes_a_new_session_id(dashboard: Dashboard) -> None:
    planted = "attacker-chosen-session-id"
    dashboard.client.cookies.set("hm_session", planted)
    assert dashboard.client.get("/").status_code == 303          # a planted id opens nothing
    first = login(dashboard.client)
    first_id = session_cookie(first)
    assert first_id and first_id != planted and len(first_id) >= 43
    # a login sent while a live session's cookie is still there: a new id, and the old one ends
    browser = dashboard.new_client()
    form = browser.get("/login")
    browser.cookies.set("hm_session", first_id)
    second = browser.post("/login", data={"csrf_token": token_of(form.text),
                                          "password": PASSWORD})
    second_id = session_cookie(second)
    assert second.status_code == 303 and second_id and second_id != first_id
    assert dashboard.client.get("/").status_code == 303         # the old id is over
    fresh = dashboard.new_client()
    fresh.cookies.set("hm_session", second_id)
    assert fresh.get("/").status_code == 200
    assert len(dashboard.state.sessions) == 1


def test_logout_ends_the_session_on_the_server(dashboard: Dashboard) -> None:
    answer = login(dashboard.client)
    session_id = session_cookie(answer)
    token = csrf(dashboard)
    out = dashboard.client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    cleared = set_cookie_header(out, "hm_session")
    assert re.search(r"(?i)max-age=0|expires=thu, 01 jan 1970", cleared), cleared
    replay = dashboard.new_client()
    replay.cookies.set("hm_session", session_id or "")
    assert replay.get("/").status_code == 303 and replay.get("/api/overview").status_code == 401


def test_sessions_end_when_idle_and_after_the_absolute_limit(dashboard: Dashboard) -> None:
    logged_in(dashboard)
    dashboard.mono.now += web_sessions.IDLE_S - 5
    assert dashboard.client.get("/api/overview").status_code == 200   # in use: it lives on
    dashboard.mono.now += web_sessions.IDLE_S + 1
    assert dashboard.client.get("/api/overview").status_code == 401   # idle too long
    logged_in(dashboard)
    for _ in range(int(web_sessions.ABSOLUTE_S // (web_sessions.IDLE_S / 2)) + 2):
        dashboard.mono.now += web_sessions.IDLE_S / 2
        if dashboard.client.get("/api/overview").status_code == 401:
            break
    assert dashboard.client.get("/api/overview").status_code == 401
    assert dashboard.mono.now - 1000.0 >= web_sessions.ABSOLUTE_S - web_sessions.IDLE_S


def test_a_new_password_ends_every_session(dashboard: Dashboard) -> None:
    logged_in(dashboard)
    set_password(dashboard.settings, "a brand new password")
    assert dashboard.client.get("/api/overview").status_code == 401
    assert login(dashboard.client).status_code == 401
    assert login(dashboard.client, secret="a brand new password").status_code == 303


def test_the_session_cookie_is_httponly_strict_and_secure_over_https(
        dashboard: Dashboard) -> None:
    plain = set_cookie_header(login(dashboard.client), "hm_session")
    assert "HttpOnly" in plain and "SameSite=strict" in plain and "Path=/" in plain
    assert "Secure" not in plain and "Max-Age" not in plain and "Domain" not in plain
    tls = dashboard.new_client(base_url="https://testserver")
    secure = set_cookie_header(login(tls), "hm_session")
    assert "Secure" in secure and "HttpOnly" in secure and "SameSite=strict" in secure
    # the login form's own token cookie: as tight, and only for /login
    form_cookie = set_cookie_header(dashboard.new_client().get("/login"), "hm_login")
    assert "HttpOnly" in form_cookie and "SameSite=strict" in form_cookie
    assert "Path=/login" in form_cookie


def test_x_forwarded_proto_counts_only_from_a_trusted_proxy(make_settings: Any) -> None:
    from agent.web.app import make_app
    from tests.web_support import TestClient

    for proxies, secure in (([], False), (["127.0.0.1"], True)):
        settings = make_settings(WEB_TRUSTED_PROXIES=proxies)
        set_password(settings)
        asgi, _ = make_app(settings)
        with TestClient(asgi, follow_redirects=False, client=("127.0.0.1", 5000),
                        headers={"x-forwarded-proto": "https",
                                 "x-forwarded-for": "192.0.2.200"}) as client:
            form = client.get("/login")
            token = token_of(form.text)
            assert ("Secure" in set_cookie_header(form, "hm_login")) is secure
            # (httpx keeps a Secure cookie from a plain-http URL to itself: sent by hand here)
            answer = client.post("/login", data={"csrf_token": token, "password": PASSWORD},
                                 headers={"cookie": f"hm_login={token}"})
            header = set_cookie_header(answer, "hm_session")
            assert ("Secure" in header) is secure, (proxies, header)


def test_a_trusted_proxy_s_client_address_is_the_one_locked_out(make_settings: Any) -> None:
    from agent.web.app import make_app
    from tests.web_support import TestClient

    settings = make_settings(WEB_TRUSTED_PROXIES=["127.0.0.1"])
    set_password(settings)
    asgi, app = make_app(settings)

    def via_proxy(client_ip: str) -> Any:
        return TestClient(asgi, follow_redirects=False, client=("127.0.0.1", 5000),
                          headers={"x-forwarded-for": client_ip})

    with via_proxy("192.0.2.50") as attacker, via_proxy("192.0.2.60") as operator:
        for _ in range(web_sessions.MAX_FAILURES):
            login(attacker, secret="wrong")
        assert app.state.web.limiter.locked_for("192.0.2.50") > 0
        assert login(operator).status_code == 303        # the proxy's other client is not


# -- CSRF -----------------------------------------------------------------------------------------

def test_every_state_changing_request_needs_the_session_s_csrf_token(
        dashboard: Dashboard, caplog: pytest.LogCaptureFixture) -> None:
    logged_in(dashboard)
    token = csrf(dashboard)
    other = dashboard.new_client()
    login(other)
    other_token = token_of(other.get("/").text)
    posts = [path for method, path in routes(dashboard) if method == "POST" and path != "/login"]
    assert set(posts) >= {"/logout", f"/findings/{FINGERPRINT}/ack", "/snooze", "/maintenance"}
    fields = {"duration": "1h", "kind": "process_missing"}
    for path in posts:
        for given in ({}, {"csrf_token": ""}, {"csrf_token": "wrong"},
                      {"csrf_token": other_token}, {"csrf_token": token[:-1]}):
            answer = dashboard.client.post(path, data={**fields, **given})
            assert answer.status_code == 403, (path, given, answer.status_code)
        header = dashboard.client.post(path, data=fields, headers={"x-csrf-token": "wrong"})
        assert header.status_code == 403, path
    assert dashboard.state.store.writing  # nothing above reached the store:
    with dashboard.state.store.reading() as store:
        assert store is not None and store.silences(dashboard.wall.now) == []
    assert "CSRF" in caplog.text
    # the right token, in the form or in the header of a fetch
    ok = dashboard.client.post("/snooze", data={**fields, "csrf_token": token})
    assert ok.status_code == 303
    fetched = dashboard.client.post("/maintenance", data={"duration": "1h"},
                                    headers={"x-csrf-token": token, "accept": "application/json"})
    assert fetched.status_code == 200 and fetched.json()["ok"] is True
    assert dashboard.client.get("/").status_code == 200          # still logged in


def test_the_login_form_has_its_own_csrf_token(dashboard: Dashboard) -> None:
    form = dashboard.client.get("/login")
    for given in ({}, {"csrf_token": "forged"}):
        answer = dashboard.client.post("/login", data={"password": PASSWORD, **given})
        assert answer.status_code == 403 and session_cookie(answer) is None
    elsewhere = dashboard.new_client()                  # a token from another browser's form
    answer = elsewhere.post("/login", data={"password": PASSWORD,
                                            "csrf_token": token_of(form.text)})
    assert answer.status_code == 403


# -- headers --------------------------------------------------------------------------------------

def test_every_response_carries_the_security_headers(dashboard: Dashboard) -> None:
    assert "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP
    anonymous = [dashboard.client.get(p) for p in ("/login", "/", "/api/overview",
                                                   "/static/app.css")]
    anonymous.append(dashboard.client.post("/snooze"))
    logged_in(dashboard)
    pages = [dashboard.client.get(p) for p in ("/", "/findings", f"/findings/{FINGERPRINT}",
                                               "/api/overview", "/api/findings",
                                               f"/api/findings/{FINGERPRINT}", "/nope",
                                               "/findings/ffffffffffffffff", "/static/live.js")]
    pages.append(dashboard.client.post("/maintenance", data={"duration": "1h"}))   # 403
    assert {r.status_code for r in anonymous + pages} >= {200, 303, 401, 403, 404}
    for answer in anonymous + pages:
        csp = answer.headers["content-security-policy"]
        assert csp == CSP and "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "'unsafe-inline'" not in csp
        for name, value in PAGE_HEADERS.items():
            assert answer.headers[name] == value, (answer.url, name)
        static = answer.url.path.startswith("/static/")
        assert answer.headers["cache-control"] == ("no-cache" if static else "no-store")
        assert "server" not in answer.headers


def test_pages_have_no_inline_script_style_or_handler(dashboard: Dashboard) -> None:
    pages = [dashboard.client.get("/login").text]
    logged_in(dashboard)
    pages += [dashboard.client.get(p).text for p in ("/", "/findings", "/findings?state=all",
                                                     f"/findings/{FINGERPRINT}", "/nope")]
    for html in pages:
        parsed = structure(html)
        assert parsed.problems == [], parsed.problems
        assert html.count("<script") == 2      # theme.js and live.js, both files
