"""The metrics, LLM runtimes and alerts pages against attacker-chosen text, and the dashboard's
memory with them: every payload of tests/injection_payloads.py (the prompt injections, the hidden
text and the markup) in every untrusted field these pages show leaves each page's elements and
attributes exactly those of a benign one, and its JSON clean; then a real `web` process serving
every page over a month of samples stays under the issue's 60 MB."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from agent.web import metrics_view
from agent.web.views import text
from foundation.settings import load_settings
from foundation.store.data_storage import Store
from tests.conftest import ROOT
from tests.injection_payloads import HIDDEN_TEXT, MARKUP, PAYLOADS
from tests.procs import agent_env, run_agent, stop
from tests.test_web_pages import INVISIBLE
from tests.test_web_pages2 import external, month_of_samples, save_llm_cycle
from tests.web_support import PASSWORD, START, Clock, TestClient, login, set_password, structure, token_of

EVERY_PAYLOAD = PAYLOADS + HIDDEN_TEXT + MARKUP
PAGES = {"metrics": ("/metrics?range=24h", "/api/metrics?range=24h", 4),
         "llm": ("/llm", "/api/llm", 2), "alerts": ("/alerts", "/api/alerts", 2)}
RSS_BAR_MB = 60.0


def plant(store: Store, text: str) -> None:
    """``text`` in every untrusted field the three pages show."""
    with store.transaction() as tx:
        for i in range(12):       # an hour of samples under attacker-chosen keys
            ts = START - 3600 + 300 * i
            tx.add_history([(f"sensor.temperature_c[{text}]", ts, 40.0),
                            (f"ping.rtt_avg_ms[{text}]", ts, 1.0),
                            (f"ping.loss_percent[{text}]", ts, 0.0)])
    conn = {**external(text, text, provider=text, allowed_by=text, rdns_unconfirmed=text,
                       status=text, direction=text, local=text), "class": text}
    runtimes = [{"pid": 4242, "name": text, "runtime": f"unknown ({text})", "score": 4,
                 "cmdline": text, "signals": {"model_arg": text, "rss_mb": 900.0},
                 "connections": [conn, external("203.0.113.9", text)], "exposed": False,
                 "listening": [{"address": text, "proto": "tcp", "class": "loopback"}]},
                {"pid": 4343, "name": text, "runtime": text, "score": 3, "cmdline": text,
                 "signals": {}, "connections": [], "listening": [], "connections_error": text}]
    save_llm_cycle(store, START - 30, runtimes)
    with store.transaction() as tx:
        tx.enqueue("discord", "alert", "high", {"items": [
            {"headline": text, "summary": text}, {"headline": text}]}, START - 20)
        tx.enqueue("console", "recap", "low", {"title": text, "items": []}, START - 10)
        tx.enqueue("console", "alert", "low", {"items": [{"summary": text}]}, START - 5)
    [first, *_] = store.due_messages(START)
    store.mark_retry(first.id, START + 60, text)
    store.mark_started(first.id, START)


def pages_of(home: Path, text: str) -> dict[str, tuple[str, Any]]:
    """Each page's HTML and JSON over a store that holds ``text`` in every untrusted field."""
    from agent.web.app import make_app

    settings = load_settings(environ={}, overrides={"DATA_DIR": home / "data"})
    store = Store.open(settings.db_path)
    try:
        plant(store, text)
    finally:
        store.close()
    set_password(settings)
    asgi, _ = make_app(settings, clock=Clock(START))
    with TestClient(asgi, follow_redirects=False) as client:
        assert login(client).status_code == 303
        return {name: (client.get(page).text, client.get(api).json())
                for name, (page, api, _) in PAGES.items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Any]]:
    return pages_of(tmp_path_factory.mktemp("benign"), "benign")


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


@pytest.mark.parametrize(("name", "payload"), EVERY_PAYLOAD, ids=[n for n, _ in EVERY_PAYLOAD])
def test_every_payload_in_every_field_of_the_new_pages_is_inert_text(
        tmp_path: Path, reference: dict[str, tuple[str, Any]], name: str, payload: str) -> None:
    attacked = pages_of(tmp_path, payload)
    for page, (html, data) in attacked.items():
        parsed, expected = structure(html), structure(reference[page][0])
        assert parsed.problems == [], (page, parsed.problems)
        assert parsed.tags == expected.tags, page          # not one element or attribute more
        assert html.count("<script") == PAGES[page][2], page
        assert INVISIBLE.search(html) is None, page
        assert "hxxp" in html or "://" not in payload.replace("\u200b", ""), page
        if "<" in payload:
            assert "&lt;" in html, page                     # shown, escaped: not dropped
        for value in strings(data):
            assert INVISIBLE.search(value) is None, (page, value[:80])
            assert all(unicodedata.category(c) not in ("Cc", "Cf", "Co", "Cn")
                       for c in value), (page, value[:80])
    # the text is there, neutralised, in the fields the payload was put into
    shown = text(payload, metrics_view.KEY_CAP)
    metrics = attacked["metrics"][1]["panels"]
    assert [s["label"] for s in metrics["temperature"]["series"]] == [shown]
    llm = attacked["llm"][1]
    assert llm["runtimes"][0]["name"] == text(payload, 80)
    assert llm["connections"][0]["rdns"] == text(payload, 253)
    assert {c["class"] for c in llm["connections"]} == {"other", "external"}
    assert {c["state"] for c in llm["connections"]} <= {"OTHER", "ESTABLISHED"}
    assert {c["rdns_state"] for c in llm["connections"]} <= {"unconfirmed", ""}
    outbox = attacked["alerts"][1]["messages"]
    assert [m["channel"] for m in outbox] == ["console", "console", "discord"]
    assert outbox[2]["headline"] == text(payload, 300)
    assert outbox[2]["error"] == text(payload[:500], 500)       # the store keeps 500 characters


# -- memory ---------------------------------------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_dashboard_serving_every_page_over_a_month_stays_under_60_mb(tmp_path: Path) -> None:
    cycle = run_agent(tmp_path, "--once", "--json", PROCESSES_TO_MONITOR="mt-not-running-web2")
    assert cycle.returncode == 0, cycle.stderr
    settings = load_settings(environ={}, overrides={"DATA_DIR": tmp_path / "data"})
    store = Store.open(settings.db_path)
    try:
        month_of_samples(store, time.time())
        save_llm_cycle(store, time.time() - 60, [{
            "pid": 4242, "name": "ollama", "runtime": "ollama", "score": 6, "cmdline": "ollama",
            "signals": {"rss_mb": 5000.0}, "exposed": False, "listening": [],
            "connections": [external(f"203.0.113.{i}", f"h{i}.example") for i in range(40)]}])
    finally:
        store.close()
    set_password(settings)
    port = free_port()
    # every collector enabled, as by default: the dashboard loads none of them
    everything = json.dumps(list(load_settings(environ={}).COLLECTORS))
    proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py"), "web"], cwd=ROOT,
                            env=agent_env(tmp_path, WEB_PORT=str(port), COLLECTORS=everything),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(url + "/login", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the dashboard did not answer in a minute"
                time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=60, follow_redirects=False) as client:
            form = client.get("/login")
            answer = client.post("/login", data={"csrf_token": token_of(form.text),
                                                 "password": PASSWORD, "next": "/"})
            assert answer.status_code == 303, answer.text
            paths = ["/", "/findings", "/llm", "/api/llm", "/alerts", "/api/alerts",
                     "/static/vendor/uPlot.iife.min.js", "/static/charts.js"]
            paths += [f"{p}?range={r}" for r in ("1h", "24h", "7d", "30d")
                      for p in ("/metrics", "/api/metrics")]
            for _ in range(10):                  # a few minutes of open pages, compressed
                for path in paths:
                    assert client.get(path).status_code == 200, path
            data = client.get("/api/metrics?range=30d").json()
            assert len(data["panels"]["temperature"]["x"]) >= 300
        process = psutil.Process(proc.pid)
        rss_mb = process.memory_info().rss / 2**20
        status = Path(f"/proc/{proc.pid}/status").read_text()
        peak = re.search(r"VmHWM:\s+(\d+) kB", status)
        peak_mb = int(peak.group(1)) / 1024 if peak else 0.0
    finally:
        stop(proc)
    print(f"\ndashboard RSS after serving every page: {rss_mb:.1f} MB (peak {peak_mb:.1f} MB)")
    assert rss_mb <= RSS_BAR_MB, f"RSS {rss_mb:.1f} MB over the {RSS_BAR_MB} MB bar"
