"""The dashboard's pages and their JSON twins: what each shows (from a real cycle too), every
injection payload shown as inert text, the first render agreeing with the live refresh, and an
acknowledgement from a finding's page holding back the next real cycle's repeat."""
from __future__ import annotations

import hashlib
import io
import json
import re
import unicodedata
from html import unescape
from html.parser import HTMLParser
from typing import Any

import pytest

from agent.cycle import Agent
from agent.web.app import make_app, pick
from alerts.console import ConsoleNotifier
from alerts.discord import DiscordNotifier
from analysis.rules import RulesJudge
from foundation.model import CollectResult, Finding, Severity
from foundation.store.data_storage import DependencyRow, Store
from tests.fakes.discord_server import FakeDiscord
from tests.injection_payloads import HIDDEN_TEXT, MARKUP, PAYLOADS
from tests.procs import unique_name
from tests.web_support import (
    FINGERPRINT,
    START,
    Clock,
    Dashboard,
    TestClient,
    add_finding,
    dashboard,
    login,
    save_cycle,
    set_password,
    structure,
    token_of,
)

__all__ = ["dashboard"]   # the fixture, used by name

EVERY_PAYLOAD = PAYLOADS + HIDDEN_TEXT + MARKUP
# what the neutraliser removes: controls, format (bidi, zero-width), tags, variation selectors
INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff"
                       "\ufe00-\ufe0f\U000e0000-\U000e0fff]")


class Fields(HTMLParser):
    """The live fields of a page outside its lists: (data-field path, the text it shows)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []
        self._stack: list[tuple[str, str | None, bool]] = []   # tag, field, inside a list
        self._text: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        inside = bool(self._stack and self._stack[-1][2]) or "data-list" in values or \
            tag == "template"
        self._stack.append((tag, values.get("data-field"), inside))
        self._text.append([])

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            open_tag, field, inside = self._stack.pop()
            text = "".join(self._text.pop())
            if self._text:
                self._text[-1].append(text)
            if field and not inside:
                self.found.append((field, text))
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._text:
            self._text[-1].append(data)


def live_fields(html: str) -> list[tuple[str, str]]:
    """(path, text) of every live field a page shows outside its lists."""
    parser = Fields()
    parser.feed(html)
    return parser.found


def ping_facts(target: str, loss: float) -> dict[str, Any]:
    """The facts the ping detector gives a ping_loss finding."""
    return {"target": target, "target_spoken": f"The ping target {target}", "loss": loss}


def logged_in(dash: Dashboard) -> TestClient:
    """The dashboard's client, logged in."""
    assert login(dash.client).status_code == 303
    return dash.client


# -- what the pages show --------------------------------------------------------------------------

def test_the_overview_shows_the_host_cycle_collectors_findings_outbox_and_ollama(
        dashboard: Dashboard) -> None:
    with dashboard.state.store.writing() as store:
        store.record_dependencies([DependencyRow("ollama", False, START - 1200,
                                                 "connection refused", START - 60)])
        store.add_silence("maintenance", "", START, START + 7200)
    client = logged_in(dashboard)
    html = client.get("/").text
    data = client.get("/api/overview").json()
    assert data["host"] == "nas" and data["store"] is True
    assert data["last_cycle"]["ago"] == "1 min" and data["last_cycle"]["late"] is False
    assert data["last_cycle"]["verdict"] == {"severity": "high", "by": "rules", "model": "",
                                             "reason": "nothing unusual"}
    assert data["collectors"] == [
        {"name": "processes", "state": "up", "note": "", "duration": "0.010 s"},
        {"name": "sensors", "state": "unavailable", "note": "no hwmon sensors",
         "duration": "0.001 s"}]
    assert data["open"] == {"high": 1, "medium": 0, "low": 0, "none": 0, "total": 1}
    assert data["outbox"] == {"queued": 0, "sent": 0, "failed": 0}
    assert data["ollama"]["state"] == "down"
    assert "down for 20 min" in data["ollama"]["detail"] and "connection refused" in \
        data["ollama"]["detail"]
    assert data["maintenance"]["left"] == "2 h"
    for shown in ("Overview of", "no hwmon sensors", "connection refused", "Start maintenance",
                  "End it now"):
        assert shown in html, shown
    # a cycle older than two intervals is late
    dashboard.wall.now += 3 * dashboard.settings.MONITOR_INTERVAL_SECONDS
    assert client.get("/api/overview").json()["last_cycle"]["late"] is True


def test_before_the_first_cycle_the_pages_say_so_and_create_no_store(
        make_settings: Any) -> None:
    settings = make_settings()
    set_password(settings)
    asgi, _ = make_app(settings)
    with TestClient(asgi, follow_redirects=False) as client:
        assert login(client).status_code == 303
        assert "No cycle has run yet" in client.get("/").text
        assert client.get("/api/overview").json()["last_cycle"] is None
        assert client.get("/api/findings").json()["open"] is None
        assert client.get(f"/findings/{FINGERPRINT}").status_code == 404
        answer = client.post("/maintenance", data={"duration": "1h",
                                                   "csrf_token": token_of(client.get("/").text)},
                             headers={"accept": "application/json"})
        assert answer.status_code == 409
    assert not settings.db_path.exists()


def test_the_findings_page_filters_by_state_kind_severity_and_source(
        dashboard: Dashboard) -> None:
    with dashboard.state.store.writing() as store:
        add_finding(store, START - 30, fingerprint="aaaa000000000001", kind="ping_loss",
                    source="ping", key="10.0.0.1", severity="medium", summary="loss 40 %",
                    details={"facts": ping_facts("10.0.0.1", 40.0), "labels": {}})
        add_finding(store, START - 30, fingerprint="aaaa000000000002", kind="ping_loss",
                    source="ping", key="10.0.0.2", severity="low", summary="loss 25 %",
                    details={"facts": ping_facts("10.0.0.2", 25.0), "labels": {}})
        with store.transaction() as tx:
            tx.resolve_finding("aaaa000000000002", START - 10)
    client = logged_in(dashboard)

    def shown(query: str) -> dict[str, list[str]]:
        data = client.get("/api/findings" + query).json()
        return {state: [i["fingerprint"] for i in data[state]["items"]]
                for state in ("open", "past") if data[state] is not None}

    assert shown("") == {"open": ["aaaa000000000001", FINGERPRINT]}
    assert shown("?state=past") == {"past": ["aaaa000000000002"]}
    assert shown("?state=all&kind=ping_loss") == {"open": ["aaaa000000000001"],
                                                  "past": ["aaaa000000000002"]}
    assert shown("?state=all&severity=high") == {"open": [FINGERPRINT], "past": []}
    assert shown("?state=all&source=processes&kind=process_missing") == {
        "open": [FINGERPRINT], "past": []}
    assert shown("?severity=bogus&state=bogus") == shown("")        # unknown values: ignored
    assert shown("?kind=%27%20OR%201%3D1%20--") == {"open": []}      # values are bound, never SQL
    page = client.get("/findings?state=all&kind=ping_loss").text
    assert 'data-live-src="/api/findings?state=all&amp;kind=ping_loss"' in page
    assert 'option value="ping_loss" selected' in page
    assert "/findings/aaaa000000000001" in page


def test_a_finding_s_page_tells_what_to_do_its_numbers_and_its_timeline(
        dashboard: Dashboard) -> None:
    details = {"facts": ping_facts("10.0.0.1", 40.0), "labels": {"host": "router"},
               "metric": "ping.loss_percent[10.0.0.1]", "value": 40.0,
               "baseline": {"centre": 0.5, "spread": 0.4, "n": 300, "min": 0.0, "max": 3.0},
               "reason": "loss this high cuts the NAS off", "rule_severity": "medium",
               "evidence": ["3 packets transmitted, 1 received"]}
    with dashboard.state.store.writing() as store:
        for n, sev in enumerate(("medium", "medium", "high", "high", "high")):
            add_finding(store, START - 1500 + 300 * n, fingerprint="bbbb000000000001",
                        kind="ping_loss", source="ping", key="10.0.0.1", severity=sev,
                        summary="loss 40 %", details=details)
        with store.transaction() as tx:
            tx.add_history([("ping.loss_percent[10.0.0.1]", START - 3600 + i, 1.0)
                            for i in range(40)])
    client = logged_in(dashboard)
    data = client.get("/api/findings/bbbb000000000001").json()
    assert data["headline"].startswith("Ping loss") or "10.0.0.1" in data["headline"]
    assert data["action"] and data["title"]
    assert data["reason"] == "loss this high cuts the NAS off"
    assert data["rule_severity"] == "medium" and data["severity"] == "high"
    assert data["values"]["when_found"] == "Now 40 %, usually 0.5 % (0 % to 3 %)"
    assert data["values"]["baseline_now"].startswith("1 % ± ")
    assert [(s["severity"], s["cycles"]) for s in data["timeline"]] == [("high", 3),
                                                                        ("medium", 2)]
    assert data["labels"] == [{"name": "host", "value": "router"}]
    assert data["evidence"] == [{"line": "3 packets transmitted, 1 received"}]
    html = client.get("/findings/bbbb000000000001").text
    for shown in ("What to do", "Now 40 %, usually 0.5 %", "loss this high cuts the NAS off",
                  'id="ack-form"', 'id="snooze-form"', "Timeline"):
        assert shown in html, shown
    assert client.get("/findings/cccc000000000000").status_code == 404
    assert client.get("/api/findings/not-a-fingerprint").status_code == 404


def test_the_first_render_shows_what_the_live_refresh_writes(dashboard: Dashboard) -> None:
    client = logged_in(dashboard)
    for page, api in (("/", "/api/overview"), ("/findings?state=all", "/api/findings?state=all"),
                      (f"/findings/{FINGERPRINT}", f"/api/findings/{FINGERPRINT}")):
        html = client.get(page).text
        data = client.get(api).json()
        fields = live_fields(html)
        assert len(fields) >= 3, page
        for path, text in fields:
            assert unescape(text) == pick(data, path), (page, path)
        assert f'data-live-src="{api.replace("&", "&amp;")}"' in html
        for path in re.findall(r'data-list="([^"]+)"', html):
            rows = data
            for part in path.split("."):
                rows = rows.get(part) if isinstance(rows, dict) else None
            assert isinstance(rows, list), (page, path)


# -- untrusted text -------------------------------------------------------------------------------

def _plant(store: Store, text: str, fingerprint: str, source: str) -> None:
    details = {"facts": {"process": text}, "labels": {"user": text, "host": text},
               "metric": "process.count[x]", "value": 0.0,
               "baseline": {"centre": 1.0, "spread": 0.0, "n": 40},
               "reason": text, "rule_severity": "high", "evidence": [text, text]}
    add_finding(store, START - 60, fingerprint=fingerprint, source=source, key=text,
                summary=text, details=details)


def _inert(html: str, reference: str, payload: str) -> None:
    parsed, expected = structure(html), structure(reference)
    assert parsed.problems == []

    def shape(tags: list[tuple[str, tuple[str, ...]]]) -> list[tuple[str, tuple[str, ...]]]:
        # which filter option is selected differs between the two pages, and only that
        return [(tag, tuple(a for a in attrs if a != "selected")) for tag, attrs in tags]

    assert shape(parsed.tags) == shape(expected.tags)   # not one element or attribute more
    assert html.count("<script") == 2            # theme.js and live.js
    assert INVISIBLE.search(html) is None
    assert "hxxp" in html or "://" not in payload.replace("\u200b", "")


@pytest.mark.parametrize(("name", "payload"), EVERY_PAYLOAD, ids=[n for n, _ in EVERY_PAYLOAD])
def test_every_payload_is_shown_as_inert_text(dashboard: Dashboard, name: str,
                                              payload: str) -> None:
    fingerprint = hashlib.sha256(name.encode()).hexdigest()[:16]
    with dashboard.state.store.writing() as store:
        _plant(store, "benign", "feedfacefeedface", "reference")
        _plant(store, payload, fingerprint, "attacked")
        save_cycle(store, START - 30, host="nas", reason="benign", collectors={
            "processes": {"ok": False, "error": "benign", "available": True, "note": None,
                          "duration_s": 0.1}})
        store.record_dependencies([DependencyRow("docker", False, START - 600, "benign",
                                                 START)])
    client = logged_in(dashboard)
    reference = {"finding": client.get("/findings/feedfacefeedface").text,
                 "list": client.get("/findings?source=reference").text,
                 "overview": client.get("/").text}
    with dashboard.state.store.writing() as store:
        save_cycle(store, START - 20, host=payload, reason=payload, collectors={
            "processes": {"ok": False, "error": payload, "available": True, "note": None,
                          "duration_s": 0.1}})
        store.record_dependencies([DependencyRow("docker", False, START - 600, payload, START)])
    attacked = {"finding": client.get(f"/findings/{fingerprint}").text,
                "list": client.get("/findings?source=attacked").text,
                "overview": client.get("/").text}
    for page, html in attacked.items():
        _inert(html, reference[page], payload)
    if "<" in payload:
        assert "&lt;" in attacked["finding"]      # shown, escaped: not dropped
    for api in (f"/api/findings/{fingerprint}", "/api/findings?source=attacked",
                "/api/overview"):
        answer = client.get(api)
        assert answer.headers["content-type"] == "application/json"
        strings: list[str] = []

        def walk(value: Any, into: list[str] = strings) -> None:
            if isinstance(value, str):
                into.append(value)
            elif isinstance(value, dict):
                for item in value.values():
                    walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)

        walk(answer.json())
        for value in strings:
            assert INVISIBLE.search(value) is None, (api, value[:80])
            assert all(unicodedata.category(c) not in ("Cc", "Cf", "Co", "Cn")
                       for c in value), (api, value[:80])


class Todo(HTMLParser):
    """What a finding's page says to do: each element of its "What to do" paragraph (outside
    the row <template>) as (tag, attribute names, text), and any element nested in one."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[tuple[str, tuple[str, ...], str]] = []
        self.nested: list[str] = []
        self._depth = 0            # inside the paragraph: 1; inside one of its pieces: 2
        self._template = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if self._depth == 0:
            if tag == "p" and values.get("data-list") == "action_parts":
                self._depth = 1
            return
        if tag == "template" or self._template:
            self._template = True
            return
        if self._depth == 2:
            self.nested.append(tag)
            return
        self._depth = 2
        self.pieces.append((tag, tuple(sorted(values)), ""))

    def handle_endtag(self, tag: str) -> None:
        if self._depth == 0:
            return
        if tag == "template":
            self._template = False
        elif not self._template:
            self._depth = 1 if self._depth == 2 and tag != "p" else 0

    def handle_data(self, data: str) -> None:
        if self._depth == 2 and not self._template:
            tag, attrs, text = self.pieces[-1]
            self.pieces[-1] = (tag, attrs, text + data)
        elif self._depth == 1 and not self._template:
            assert not data.strip(), data       # every word is inside a piece


def todo_of(html: str) -> Todo:
    """The "What to do" paragraph of a finding's page."""
    parsed = Todo()
    parsed.feed(html)
    parsed.close()
    assert parsed.pieces, "no What to do"
    return parsed


def test_what_to_do_shows_the_kind_s_commands_as_code_and_every_fact_as_text(
        dashboard: Dashboard) -> None:
    from agent.web.views import ACTION_PIECE_CAP
    from agent.web.views import text as shown_as

    with dashboard.state.store.writing() as store:
        add_finding(store, START - 60)               # process_missing, of "nginx"
        for name, payload in EVERY_PAYLOAD:
            add_finding(store, START - 60, fingerprint=hashlib.sha256(name.encode()).hexdigest()[:16],
                        key="x", summary="benign", details={
                            "facts": {"process": payload}, "labels": {}, "reason": "benign",
                            "rule_severity": "high", "evidence": []})
    client = logged_in(dashboard)
    html = client.get(f"/findings/{FINGERPRINT}").text
    todo = todo_of(html)
    # the kind's backticks are gone: its commands are <code> elements, its words text
    assert [(tag, text) for tag, _, text in todo.pieces if text] == [
        ("span", "Check the service ("), ("code", "systemctl status nginx"), ("span", ", "),
        ("code", "journalctl -u nginx"),
        ("span", ") and restart it; remove it from PROCESSES_TO_MONITOR if it was retired on "
                 "purpose.")]
    assert todo.nested == [] and "`" not in "".join(text for _, _, text in todo.pieces)
    data = client.get(f"/api/findings/{FINGERPRINT}").json()
    assert data["action"].startswith("Check the service (`systemctl status nginx`")
    # each piece of the JSON is a <span> and a <code>, one of them empty (hidden by CSS), as
    # live.js writes them at each refresh; the words are the whole action, neutralised
    assert [(p["text"], p["code"]) for p in data["action_parts"]] == \
        [(span[2], code[2]) for span, code in zip(todo.pieces[::2], todo.pieces[1::2],
                                                  strict=True)]
    assert {(span[0], code[0]) for span, code in zip(todo.pieces[::2], todo.pieces[1::2],
                                                     strict=True)} == {("span", "code")}
    assert "".join(text for _, _, text in todo.pieces) == data["action"].replace("`", "")
    shape = [(tag, attrs) for tag, attrs, _ in todo.pieces]
    for name, payload in EVERY_PAYLOAD:
        page = client.get(f"/findings/{hashlib.sha256(name.encode()).hexdigest()[:16]}").text
        todo = todo_of(page)
        # the same pieces as nginx's: a backtick, a tag or an entity in a fact makes none
        assert [(tag, attrs) for tag, attrs, _ in todo.pieces] == shape, name
        assert todo.nested == [], name
        assert [text for tag, _, text in todo.pieces if tag == "code" and text] == [
            shown_as(f"systemctl status {payload}", ACTION_PIECE_CAP),
            shown_as(f"journalctl -u {payload}", ACTION_PIECE_CAP)], name
        paragraph = page[page.index('data-list="action_parts"'):]
        paragraph = paragraph[:paragraph.index("</p>")]
        if "<" in payload:
            assert "&lt;" in paragraph, name          # shown, escaped: not dropped
        assert page.count("<script") == 2, name       # theme.js and live.js
        assert INVISIBLE.search(paragraph) is None, name


def test_templates_never_mark_data_safe() -> None:
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "agent" / "web" / "templates"
    for template in folder.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        assert "|safe" not in text.replace(" ", "") and "autoescape false" not in text, template
        assert "{% raw" not in text and "Markup(" not in text


# -- from the page to the next cycle --------------------------------------------------------------

def test_an_ack_from_the_finding_page_holds_back_the_next_cycle_s_repeat(
        make_settings: Any, fake_collectors: dict[str, Any]) -> None:
    with FakeDiscord() as discord:
        settings = make_settings(COLLECTORS=["probe"], ALERT_COOLDOWN_MINUTES=10,
                                 DISCORD_WEBHOOK_URL=discord.url)
        fake_collectors["install"](
            "probe", lambda ctx: CollectResult(observations={}),
            detect=lambda result, ctx: [Finding(source="probe", kind="probe_down", key="a",
                                                severity=Severity.HIGH,
                                                summary="probe a is down")])
        clock = Clock(START)
        out = io.StringIO()
        store = Store.open(settings.db_path)
        try:
            agent = Agent(settings, store, RulesJudge(),
                          {"console": ConsoleNotifier(out),
                           "discord": DiscordNotifier(settings, timeout_s=5.0)}, clock=clock)
            first = agent.run_cycle()
            [fingerprint] = [f["id"] for f in first["findings"]]
            assert len(discord.accepted) == 1
            clock.now += 300
            set_password(settings)
            asgi, _ = make_app(settings, clock=clock)
            with TestClient(asgi, follow_redirects=False) as web:
                assert login(web).status_code == 303
                page = web.get(f"/findings/{fingerprint}")
                assert 'id="ack-form"' in page.text and "probe a is down" in page.text
                answer = web.post(f"/findings/{fingerprint}/ack",
                                  data={"csrf_token": token_of(page.text), "duration": ""})
                assert answer.status_code == 303
                assert answer.headers["location"] == f"/findings/{fingerprint}"
                after = web.get(answer.headers["location"]).text
                assert f"acknowledged {fingerprint} at high until the finding resolves" in after
                data = web.get(f"/api/findings/{fingerprint}").json()
                assert data["ack"]["until"] == "until it resolves" and data["silenced"] == "ack"
                overview = web.get("/api/overview").json()
                assert [s["type"] for s in overview["silences"]] == ["ack"]
            clock.now += 600                                   # past the 10 min cooldown
            repeat = agent.run_cycle()
            assert {(a["channel"], a["status"], a.get("reason")) for a in repeat["alerts"]} == {
                ("console", "suppressed", "ack"), ("discord", "suppressed", "ack")}
            assert len(discord.accepted) == 1 and out.getvalue().count("[ALERT]") == 1
        finally:
            store.close()


def test_a_snooze_and_a_maintenance_window_from_the_pages(dashboard: Dashboard) -> None:
    client = logged_in(dashboard)
    page = client.get(f"/findings/{FINGERPRINT}").text
    token = token_of(page)
    snoozed = client.post("/snooze", data={"csrf_token": token, "kind": "process_missing",
                                           "duration": "1d", "next": f"/findings/{FINGERPRINT}"})
    assert snoozed.status_code == 303 and snoozed.headers["location"] == f"/findings/{FINGERPRINT}"
    data = client.get(f"/api/findings/{FINGERPRINT}").json()
    assert data["snooze"]["left"] == "1 d" and data["silenced"] == "snooze"
    bad = client.post("/snooze", data={"csrf_token": token, "kind": "proces_missing"},
                      headers={"accept": "application/json"})
    assert bad.status_code == 400 and "did you mean process_missing" in bad.json()["message"]
    for duration, status in (("2h", 200), ("forever", 400), ("off", 200)):
        answer = client.post("/maintenance", data={"csrf_token": token, "duration": duration},
                             headers={"accept": "application/json"})
        assert answer.status_code == status, (duration, answer.text)
    assert client.get("/api/overview").json()["maintenance"] is None
    with dashboard.state.store.reading() as store:
        assert store is not None
        kinds = [(s.type, s.ended_why) for s in store.silences(START, include_ended=True)]
    assert kinds == [("snooze", None), ("maintenance", "off")]
    unknown = client.post("/findings/ffffffffffffffff/ack", data={"csrf_token": token},
                          headers={"accept": "application/json"})
    assert unknown.status_code == 400 and "no open finding" in unknown.json()["message"]


def test_the_pages_of_a_real_cycle(make_settings: Any) -> None:
    missing = unique_name()
    settings = make_settings(COLLECTORS=["processes"], PROCESSES_TO_MONITOR=[missing])
    store = Store.open(settings.db_path)
    try:
        report = Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(io.StringIO())}
                       ).run_cycle()
    finally:
        store.close()
    [finding] = report["findings"]
    set_password(settings)
    asgi, _ = make_app(settings)
    with TestClient(asgi, follow_redirects=False) as client:
        assert login(client).status_code == 303
        overview = client.get("/api/overview").json()
        assert overview["collectors"][0]["name"] == "processes"
        assert overview["collectors"][0]["state"] == "up"
        assert overview["open"]["total"] == 1 and overview["last_cycle"]["ago"] in ("0 s", "1 s",
                                                                                     "2 s")
        listed = client.get("/api/findings").json()["open"]["items"]
        assert [i["fingerprint"] for i in listed] == [finding["id"]]
        page = client.get(listed[0]["href"])
        assert page.status_code == 200
        assert f"Process {missing} is not running" in page.text
        assert f"systemctl status {missing}" in page.text
        assert json.loads(client.get("/api/findings/" + finding["id"]).text)["kind"] == \
            "process_missing"
