"""The dashboard's metrics, LLM runtimes and alerts pages and their JSON twins: a month of samples
bucketed into a bounded number of points (a real ping cycle on top), a real LLM runtime stand-in
seen by real cycles and its connection history across its restart, the outbox of real cycles
against a Discord that fails, the vendored uPlot served from /static, and every page refreshing
through the live mechanism."""
from __future__ import annotations

import io
import itertools
import math
import re
import socket
import time
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from agent.cycle import Agent
from agent.web import metrics_view
from agent.web.app import make_app, pick
from agent.web.bucket_cache import BucketCache
from alerts.console import ConsoleNotifier
from alerts.discord import DiscordNotifier
from analysis.rules import RulesJudge
from foundation.model import CollectResult, Finding, Severity
from foundation.store.data_storage import Store
from tests.conftest import ROOT
from tests.fakes.discord_server import WEBHOOK_TOKEN, FakeDiscord, Reply
from tests.llm_runtime_fixtures import start_runtime
from tests.procs import stop
from tests.test_web_pages import live_fields
from tests.web_support import TestClient, login, set_password, structure

STATIC = ROOT / "agent" / "web" / "static"
DAY = 86400
STEP = 300          # the store's samples: one every 5 minutes, as the default interval writes
SENSORS = ("coretemp/Package id 0", "nvme/Composite")


def month_of_samples(store: Store, now: float, skip: tuple[float, float] | None = None) -> int:
    """30 days of 5-minute samples of every charted metric (``skip``: a span with none)."""
    rows = []
    for i in range(30 * DAY // STEP):
        ts = now - 30 * DAY + i * STEP
        if skip and skip[0] <= ts < skip[1]:
            continue
        for n, sensor in enumerate(SENSORS):
            rows.append((f"sensor.temperature_c[{sensor}]", ts, 40.0 + 10 * n + (i % 2)))
        rows += [("ping.rtt_avg_ms[10.0.0.1]", ts, 2.0), ("ping.loss_percent[10.0.0.1]", ts, 0.0),
                 ("auth.failed_logins", ts, 3.0), ("syslog.errors", ts, float(i % 2))]
    with store.transaction() as tx:
        return tx.add_history(rows)


def client_for(settings: Any, clock: Any = time.time) -> Any:
    set_password(settings)
    asgi, _ = make_app(settings, clock=clock)
    client = TestClient(asgi, follow_redirects=False)
    client.__enter__()
    assert login(client).status_code == 303
    return client


@pytest.fixture
def open_client() -> Any:
    opened: list[Any] = []

    def make(settings: Any, clock: Any = time.time) -> Any:
        opened.append(client_for(settings, clock))
        return opened[-1]

    yield make
    for client in opened:
        client.__exit__(None, None, None)


# -- metrics ----------------------------------------------------------------------------------------

def test_sample_buckets_average_a_level_and_sum_a_count_in_sql(store: Store) -> None:
    with store.transaction() as tx:
        tx.add_history([("x", 1000.0 + 60 * i, float(i)) for i in range(10)])   # 1000 .. 1540
    buckets = store.sample_buckets("x", 0, 2000, 300)
    assert [(b.start, b.count, b.low, b.high, b.total) for b in buckets] == [
        (900.0, 4, 0.0, 3.0, 6.0), (1200.0, 5, 4.0, 8.0, 30.0), (1500.0, 1, 9.0, 9.0, 9.0)]
    assert [b.mean for b in buckets] == [1.5, 6.0, 9.0]
    assert store.sample_buckets("x", 1100, 1400, 300)[0].count == 2   # the bounds hold
    assert store.sample_buckets("nothing", 0, 2000, 300) == []
    assert store.sample_count("x", 1000, 1120) == 2
    with pytest.raises(ValueError, match="positive"):
        store.sample_buckets("x", 0, 1, 0)


def test_a_month_of_samples_is_a_bounded_number_of_points_per_range(
        make_settings: Any, open_client: Any) -> None:
    now = time.time()
    settings = make_settings()
    store = Store.open(settings.db_path)
    try:
        written = month_of_samples(store, now)
    finally:
        store.close()
    assert written == 30 * DAY // STEP * 6
    client = open_client(settings, lambda: now)
    for rng, width, most in (("1h", 300, 13), ("24h", 300, 289), ("7d", 1800, 337),
                             ("30d", 7200, 361)):
        data = client.get(f"/api/metrics?range={rng}").json()
        assert data["range"] == rng and data["bucket"] == metrics_view.duration_text(width)
        assert metrics_view.point_count(data) <= most, rng
        assert metrics_view.point_count(data) >= most - 2, rng
        temps = data["panels"]["temperature"]
        assert [s["label"] for s in temps["series"]] == list(SENSORS)
        assert all(len(s["values"]) == len(temps["x"]) for s in temps["series"])
        assert temps["x"] == sorted(temps["x"]) and all(t % width == 0 for t in temps["x"])
        assert temps["how"] == f"mean per {data['bucket']}" and temps["unit"] == "°C"
        # a level is averaged: 40 and 41 alternate, so a bucket of several samples is 40.5
        inner = temps["series"][0]["values"][1:-1]
        assert set(inner) == ({40.5} if width > 300 else {40.0, 41.0}), rng
        assert temps["series"][1]["high"] == "51 °C" and temps["series"][1]["low"] == "50 °C"
        # a count is summed: 3 failed logins a cycle, width / 300 cycles a bucket
        logins = data["panels"]["failed_logins"]
        assert logins["how"] == f"sum per {data['bucket']}" and logins["overall"] == "in all"
        assert set(logins["series"][0]["values"][1:-1]) == {3.0 * width / STEP}, rng
        assert logins["series"][0]["label"] == "Failed logins"
        assert data["panels"]["ping_rtt"]["series"][0]["latest"] == "2 ms"
        assert data["panels"]["ping_loss"]["series"][0]["latest"] == "0 %"
        assert data["panels"]["syslog_errors"]["name"] == "Log errors"
        assert all(not s["breaks"] for p in data["panels"].values() for s in p["series"])
    page = client.get("/metrics?range=7d").text
    assert 'data-live-src="/api/metrics?range=7d"' in page and "data-live-eager" in page
    assert '<a href="/metrics?range=7d" aria-current="page">7 days</a>' in page
    assert client.get("/api/metrics?range=bogus").json()["range"] == "24h"


def test_the_bucket_is_never_shorter_than_the_cycle_interval(make_settings: Any,
                                                              open_client: Any) -> None:
    now = time.time()
    settings = make_settings(MONITOR_INTERVAL_SECONDS=900)
    store = Store.open(settings.db_path)
    try:
        with store.transaction() as tx:
            tx.add_history([("syslog.errors", now - 3600 + 900 * i, 1.0) for i in range(4)])
    finally:
        store.close()
    data = open_client(settings, lambda: now).get("/api/metrics?range=1h").json()
    assert data["bucket"] == "15 min"
    values = data["panels"]["syslog_errors"]["series"][0]["values"]
    assert None not in values and len(values) in (4, 5)    # every bucket holds its cycle


def test_a_span_without_samples_is_a_gap_not_a_line(make_settings: Any, open_client: Any) -> None:
    now = time.time()
    settings = make_settings()
    store = Store.open(settings.db_path)
    try:
        month_of_samples(store, now, skip=(now - 3 * DAY, now - 2 * DAY))
        with store.transaction() as tx:      # one sensor missed a single cycle: no gap for that
            tx.add_history([("sensor.temperature_c[late]", now - 600 + 300 * i, 30.0)
                            for i in (0, 2)])
    finally:
        store.close()
    data = open_client(settings, lambda: now).get("/api/metrics?range=7d").json()
    x = data["panels"]["ping_rtt"]["x"]
    [series] = data["panels"]["ping_rtt"]["series"]
    [gap] = series["breaks"]
    assert series["values"][gap] is None
    assert x[gap - 1] < now - 3 * DAY + 1800 and x[gap + 1] >= now - 2 * DAY - 1800
    assert all(b - a <= data["gap_s"] for a, b in itertools.pairwise(x[:gap]))
    late = next(s for s in data["panels"]["temperature"]["series"] if s["label"] == "late")
    assert late["breaks"] == []


def test_kept_buckets_read_as_the_store_does_after_new_samples_and_a_trim(store: Store) -> None:
    now = 40 * DAY + 123.0
    month_of_samples(store, now)
    cache, settings_range = BucketCache(), metrics_view.pick_range("30d")
    series = "sensor.temperature_c[coretemp/Package id 0]"
    for step in range(6):
        clock = now + step * STEP
        since = clock - settings_range.span_s
        kept = cache.buckets(store, series, since, clock + 1, 7200)
        assert kept == store.sample_buckets(series, since, clock + 1, 7200), step
        with store.transaction() as tx:
            tx.add_history([(series, clock + 1, 99.0)])
            if step == 2:    # a sample written late into a bucket that was already kept
                tx.add_history([(series, clock - 5 * DAY, 1000.0)])
        if step == 4:
            store.trim(clock, 20)
    assert cache.hits == 3       # kept at steps 1, 2 and 4; read again after the late sample and the trim


def test_a_real_ping_cycle_on_top_of_a_month_is_charted(make_settings: Any,
                                                          open_client: Any) -> None:
    settings = make_settings(COLLECTORS=["ping"], PING_TARGETS=["127.0.0.1"], PING_COUNT=2)
    store = Store.open(settings.db_path)
    try:
        month_of_samples(store, time.time() - 600)
        report = Agent(settings, store, RulesJudge(),
                       {"console": ConsoleNotifier(io.StringIO())}).run_cycle()
        [(ts, measured)] = store.samples_since("ping.rtt_avg_ms[127.0.0.1]", 0)
    finally:
        store.close()
    assert report["collectors"]["ping"]["ok"]
    client = open_client(settings)
    data = client.get("/api/metrics?range=1h").json()
    rtt = {s["label"]: s for s in data["panels"]["ping_rtt"]["series"]}
    assert set(rtt) == {"127.0.0.1", "10.0.0.1"}
    assert rtt["127.0.0.1"]["samples"] == 1 and rtt["127.0.0.1"]["latest"].endswith(" ms")
    assert float(rtt["127.0.0.1"]["latest"].split()[0]) == pytest.approx(measured, rel=1e-2)
    loss = {s["label"]: s["latest"] for s in data["panels"]["ping_loss"]["series"]}
    assert loss == {"127.0.0.1": "0 %", "10.0.0.1": "0 %"}
    assert int(ts) // 300 * 300 in data["panels"]["ping_rtt"]["x"]


# -- uPlot, vendored ------------------------------------------------------------------------------

def test_uplot_is_vendored_served_from_static_and_loaded_from_nowhere_else(
        make_settings: Any, open_client: Any) -> None:
    vendored = (STATIC / "vendor" / "uPlot.iife.min.js").read_text(encoding="utf-8")
    banner = re.match(r"/\*! https://github\.com/leeoniya/uPlot \(v(\d+\.\d+\.\d+)\) \*/\n",
                      vendored)
    assert banner, vendored[:100]
    version = banner.group(1)
    assert f"uPlot {version}" in (ROOT / "docs" / "dashboard.md").read_text(encoding="utf-8")
    assert "MIT License" in (STATIC / "vendor" / "uPlot.LICENSE").read_text(encoding="utf-8")
    body = vendored[banner.end():]
    # no address it could load, and none of the sinks Trusted Types or the CSP would refuse
    assert re.search(r"https?:|//[a-z]", body) is None
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "Function(", "setAttribute", "cssText", "importScripts", "sourceMappingURL"):
        assert sink not in body, sink
    assert ".textContent=" in body           # its labels and legend are text
    ours = (STATIC / "charts.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "setAttribute(\"style", "http"):
        assert sink not in ours, sink
    css = (STATIC / "vendor" / "uPlot.min.css").read_text(encoding="utf-8")
    assert "url(" not in css and "@import" not in css

    settings = make_settings()
    Store.open(settings.db_path).close()
    client = open_client(settings)
    page = client.get("/metrics")
    parsed = structure(page.text)
    assert parsed.problems == []       # no inline script or style, every src and href local
    scripts = re.findall(r'<script src="([^"]+)"', page.text)
    assert scripts == ["/static/theme.js", "/static/live.js", "/static/vendor/uPlot.iife.min.js",
                       "/static/charts.js"]
    assert '<link rel="stylesheet" href="/static/vendor/uPlot.min.css">' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for path, kind in (("/static/vendor/uPlot.iife.min.js", "javascript"),
                       ("/static/vendor/uPlot.min.css", "text/css"),
                       ("/static/charts.js", "javascript")):
        served = client.get(path)
        assert served.status_code == 200 and kind in served.headers["content-type"], path
        assert served.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/vendor/uPlot.iife.min.js").text == vendored
    anonymous = TestClient(client.app, follow_redirects=False)     # static files need no login
    assert anonymous.get("/static/vendor/uPlot.iife.min.js").status_code == 200


# -- the LLM runtimes -----------------------------------------------------------------------------

def _cycle(settings: Any, store: Store) -> dict[str, Any]:
    return Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(io.StringIO())}
                 ).run_cycle()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_llm_page_of_a_real_runtime_and_its_history_across_a_restart(
        tmp_path: Path, listener: socket.socket, make_settings: Any, open_client: Any) -> None:
    port = listener.getsockname()[1]
    settings = make_settings(COLLECTORS=["llm_runtimes"],
                             OLLAMA_HOST=f"http://127.0.0.1:{_closed_port()}")
    store = Store.open(settings.db_path)
    first, name, _ = start_runtime(tmp_path, port, model_in_argv=True)
    try:
        for _ in range(2):
            assert _cycle(settings, store)["collectors"]["llm_runtimes"]["ok"]
    finally:
        stop(first)
    client = open_client(settings)
    data = client.get("/api/llm").json()
    [runtime] = [r for r in data["runtimes"] if r["pid"] == first.pid]
    assert runtime["runtime"] == f"unknown ({name})" and runtime["name"] == name
    assert runtime["score"] >= 3 and "model file open" in runtime["signals"]
    assert re.fullmatch(r"\d+ MB", runtime["memory"]) and runtime["exposed"] == "no"
    assert runtime["listening"].startswith("127.0.0.1:") and runtime["started"]["at"]
    assert re.fullmatch(r"\d+ s|\d+ min( \d+ s)?", runtime["age"]), runtime["age"]
    mine = [c for c in data["connections"] if c["pid"] == first.pid]
    assert {(c["remote"], c["port"], c["class"], c["direction"], c["state"]) for c in mine} == {
        ("127.0.0.1", port, "loopback", "outbound", "ESTABLISHED")}
    assert mine[0]["rdns"] == "" and mine[0]["rdns_state"] == ""
    insights = data["insights"]
    assert {"runtime": runtime["runtime"], "pid": first.pid, "age": runtime["age"],
            "since": runtime["started"]["at"]} in insights["sessions"]
    assert insights["destinations"]["loopback"] >= 1 and insights["destinations"]["live"] >= 1
    top = next(h for h in insights["top_hosts"] if h["remote"] == "127.0.0.1")
    assert top["cycles"] == 2 and str(port) in top["ports"].split(", ")
    assert {"state": "ESTABLISHED", "count": len(
        [c for c in data["connections"] if c["state"] == "ESTABLISHED"])} in insights["phases"]
    [kept] = [h for h in data["history"]["items"] if h["runtime"] == runtime["runtime"]]
    assert (kept["remote"], kept["port"], kept["cycles"]) == ("127.0.0.1", port, 2)

    # the runtime restarts (a new process, a new name in this test) and connects elsewhere: the
    # history keeps both, the live tables only the new one
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        other_port = other.getsockname()[1]
        (tmp_path / "again").mkdir()
        second, second_name, _ = start_runtime(tmp_path / "again", other_port, model_in_argv=True)
        try:
            _cycle(settings, store)
        finally:
            stop(second)
            store.close()
        after = client.get("/api/llm").json()
    assert [r["pid"] for r in after["runtimes"] if r["pid"] in (first.pid, second.pid)] == [
        second.pid]
    history = {(h["runtime"], h["port"]): h for h in after["history"]["items"]}
    assert history[(f"unknown ({name})", port)]["cycles"] == 2
    assert history[(f"unknown ({second_name})", other_port)]["cycles"] == 1
    assert after["history"]["total"] >= 2
    page = client.get("/llm").text
    for shown in ("Insights", "Running for", "Unique destinations", "Most contacted hosts",
                  "Connection phases now", "Connection history", second_name):
        assert shown in page, shown


def _runtime(name: str, connections: list[dict[str, Any]]) -> dict[str, Any]:
    return {"pid": 4242, "name": name, "runtime": "ollama", "score": 6, "cmdline": "ollama serve",
            "signals": {"name": "ollama", "rss_mb": 5120.0, "libraries": ["ggml"]},
            "connections": connections, "connections_total": len(connections) + 3,
            "listening": [{"address": "0.0.0.0:11434", "proto": "tcp", "class": "unspecified"}],
            "exposed": True}


def save_llm_cycle(store: Store, now: float, runtimes: list[dict[str, Any]],
                   traffic: dict[str, Any] | None = None) -> None:
    """A cycle whose llm_runtimes observations are ``runtimes`` (and llm_traffic's ``traffic``),
    written as the agent does."""
    from datetime import UTC, datetime

    report = {"started_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
              "duration_s": 0.5, "host": "nas", "trigger": "schedule",
              "collectors": {"llm_runtimes": {"ok": True, "error": None, "available": True,
                                              "note": None, "duration_s": 0.2}},
              "observations": {"llm_runtimes": {"runtimes": runtimes}},
              "findings": [], "alerts": [],
              "verdict": {"severity": "none", "by": "rules", "reason": "", "model": None}}
    if traffic is not None:
        report["collectors"]["llm_traffic"] = {"ok": True, "error": None,  # type: ignore[index]
                                               "available": traffic.get("available", True),
                                               "note": None, "duration_s": 0.1}
        report["observations"]["llm_traffic"] = traffic  # type: ignore[index]
    with store.transaction() as tx:
        tx.save_cycle(now, 0.5, "none", "rules", report)
        tx.record_llm_connections(runtimes, now)
        if traffic is not None:
            tx.record_llm_traffic(traffic.get("clients", ()), now)
        tx.set_collector_state("llm_runtimes", {"runtimes": {
            str(r["pid"]): now - 7260 for r in runtimes}}, now)


def traffic_row(**extra: Any) -> dict[str, Any]:
    """One llm_traffic client row as the collector reports it."""
    return {"exe": "/usr/bin/node", "comm": "node", "container": "", "client": "/usr/bin/node",
            "provider": "OpenAI", "provider_key": "openai", "hosts": {"api.openai.com": 3},
            "pids": [4242], "endpoints": {"chat": 3}, "models": {"gpt-4o": 3}, "requests": 3,
            "streaming": 1, "request_bytes": 4096, "response_bytes": 20480,
            "input_tokens": 1200, "output_tokens": 300, "errors": 0, "no_response": 0,
            "secrets": {}, "first_at": 1.0, "last_at": 2.0, **extra}


def external(ip: str, rdns: str | None, **extra: Any) -> dict[str, Any]:
    return {"local": "192.168.1.5:40000", "remote": f"{ip}:443", "ip": ip, "port": 443,
            "proto": "tcp", "status": "ESTABLISHED", "direction": "outbound", "class": "external",
            "rdns": rdns, "provider": None, "allowed_by": None, "rdns_unconfirmed": None, **extra}


def test_reverse_names_are_confirmed_only_as_the_collector_confirmed_them(
        make_settings: Any, open_client: Any) -> None:
    now = time.time()
    settings = make_settings()
    store = Store.open(settings.db_path)
    conns = [
        external("203.0.113.7", "registry.ollama.ai", allowed_by="ollama.ai"),
        external("203.0.113.8", "registry.ollama.ai.evil.example",
                 rdns_unconfirmed="unconfirmed: its A/AAAA records do not include 203.0.113.8"),
        external("198.51.100.9", "cdn.example.net"),                        # no entry names it
        external("192.0.2.10", "ollama.ai", allowed_by="192.0.2.0/24"),     # allowed by network
        external("1.1.1.1", None, provider="Cloudflare DNS", status="TIME_WAIT"),
        {**external("10.0.0.2", None, status="SYN_SENT"), "class": "private"}]
    try:
        save_llm_cycle(store, now - 30, [_runtime("ollama", conns)])
    finally:
        store.close()
    data = open_client(settings, lambda: now).get("/api/llm").json()
    said = {c["remote"]: (c["rdns"], c["rdns_state"]) for c in data["connections"]}
    assert said == {"203.0.113.7": ("registry.ollama.ai", "confirmed"),
                    "203.0.113.8": ("registry.ollama.ai.evil.example", "unconfirmed"),
                    "198.51.100.9": ("cdn.example.net", "unconfirmed"),
                    "192.0.2.10": ("ollama.ai", "unconfirmed"),
                    "1.1.1.1": ("", ""), "10.0.0.2": ("", "")}
    notes = {c["remote"]: c["rdns_note"] for c in data["connections"]}
    assert notes["203.0.113.8"].startswith("unconfirmed: its A/AAAA records do not include")
    assert notes["198.51.100.9"].startswith("unconfirmed: not forward-checked")
    assert {c["remote"]: c["organisation"] for c in data["connections"]}["1.1.1.1"] == \
        "Cloudflare DNS"
    assert data["connections_more"] == 3
    [runtime] = data["runtimes"]
    assert (runtime["memory"], runtime["exposed"], runtime["age"]) == ("5.0 GB", "yes", "2 h 1 min")
    assert runtime["signals"] == "name, ggml" and runtime["listening"] == "0.0.0.0:11434"
    assert data["insights"]["phases"] == [{"state": "ESTABLISHED", "count": 4},
                                          {"state": "SYN_SENT", "count": 1},
                                          {"state": "TIME_WAIT", "count": 1}]
    assert data["insights"]["destinations"] == {"total": 6, "peers": "peers", "external": 5,
                                                "private": 1, "loopback": 0, "other": 0,
                                                "live": 6}
    history = {h["remote"]: h["rdns_state"] for h in data["history"]["items"]}
    assert history["203.0.113.7"] == "confirmed" and history["198.51.100.9"] == "unconfirmed"


def test_before_any_llm_cycle_the_page_says_why_it_is_empty(make_settings: Any,
                                                             open_client: Any) -> None:
    settings = make_settings(COLLECTORS=["processes"])
    store = Store.open(settings.db_path)
    try:
        _cycle(settings, store)
    finally:
        store.close()
    data = open_client(settings).get("/api/llm").json()
    assert data["note"] == "the llm_runtimes collector is not enabled (COLLECTORS)"
    assert data["runtimes"] == [] and data["history"]["total"] == 0


# -- alerts ---------------------------------------------------------------------------------------

def test_the_outbox_of_real_cycles_with_a_failing_discord(make_settings: Any, fake_collectors: Any,
                                                          open_client: Any) -> None:
    with FakeDiscord() as discord:
        discord.default = Reply(503)
        settings = make_settings(COLLECTORS=["probe"], DISCORD_WEBHOOK_URL=discord.url)
        fake_collectors["install"](
            "probe", lambda ctx: CollectResult(observations={}),
            detect=lambda result, ctx: [Finding(source="probe", kind="probe_down", key="a",
                                                severity=Severity.HIGH,
                                                summary="probe a is down")])
        store = Store.open(settings.db_path)
        try:
            Agent(settings, store, RulesJudge(),
                  {"console": ConsoleNotifier(io.StringIO()),
                   "discord": DiscordNotifier(settings, timeout_s=5.0)}).run_cycle()
            queued = store.due_messages(math.inf)
            [discord_id] = [m.id for m in queued if m.channel == "discord"]
            store.mark_started(discord_id, time.time())    # a send whose outcome is unknown
        finally:
            store.close()
        assert discord.requests >= 1
    client = open_client(settings)
    data = client.get("/api/alerts").json()
    assert data["counts"]["total"] == len(data["messages"]) == 2
    by_channel = {m["channel"]: m for m in data["messages"]}
    console, failed = by_channel["console"], by_channel["discord"]
    assert (console["status"], console["attempts"], console["error"]) == ("sent", 1, "")
    assert console["sent"]["at"] and console["purpose"] == "alert"
    assert console["severity"] == "high" and console["headline"]
    assert (failed["status"], failed["attempts"]) == ("queued", 1)
    assert "503" in failed["error"] and failed["next"]["at"]
    assert failed["repeat"] == "possible repeat" and failed["headline"] == console["headline"]
    assert [m["id"] for m in data["messages"]] == sorted((m["id"] for m in data["messages"]),
                                                         reverse=True)     # the newest first
    page = client.get("/alerts").text
    assert WEBHOOK_TOKEN not in page and WEBHOOK_TOKEN not in client.get("/api/alerts").text
    for shown in ("The outbox: ", "possible repeat", console["headline"][:20]):
        assert shown in unescape(page), shown


def test_a_recap_and_a_test_message_are_told_by_their_title_and_headline(
        make_settings: Any, open_client: Any) -> None:
    from agent.trial_alert import HEADLINE, test_payload

    now = time.time()
    settings = make_settings()
    store = Store.open(settings.db_path)
    try:
        with store.transaction() as tx:
            tx.enqueue("discord", "recap", "low", {"purpose": "recap", "title": "Daily recap of nas",
                                                   "items": [], "chart_png_b64": "A" * 200_000},
                       now - 60)
            tx.enqueue("console", "test", "none", test_payload("nas", now), now - 30)
            tx.enqueue("console", "alert", "high", {"items": [
                {"headline": "first"}, {"headline": "second"}, {"headline": "third"}]}, now)
        [recap_id] = [m.id for m in store.due_messages(now) if m.purpose == "recap"]
        store.mark_retry(recap_id, now + 60, "HTTP 400: too big", give_up=True)
    finally:
        store.close()
    data = open_client(settings, lambda: now).get("/api/alerts").json()
    said = [(m["purpose"], m["status"], m["headline"], m["more_items"]) for m in data["messages"]]
    assert said == [("alert", "queued", "first", 2), ("test message", "queued", HEADLINE, 0),
                    ("daily recap", "failed", "Daily recap of nas", 0)]
    assert data["counts"] == {"queued": 2, "sent": 0, "failed": 1, "total": 3}


# -- live, every new page -------------------------------------------------------------------------

def test_each_new_page_refreshes_from_its_json_twin_and_is_in_the_navigation(
        make_settings: Any, open_client: Any) -> None:
    now = time.time()
    settings = make_settings()
    store = Store.open(settings.db_path)
    try:
        month_of_samples(store, now)
        save_llm_cycle(store, now - 30, [_runtime("ollama", [external("203.0.113.7", "x.example")])],
                       {"available": True, "clients": [traffic_row()]})
        with store.transaction() as tx:
            tx.enqueue("console", "alert", "high", {"items": [{"headline": "a finding"}]}, now)
    finally:
        store.close()
    client = open_client(settings, lambda: now)
    for page, api in (("/metrics?range=24h", "/api/metrics?range=24h"), ("/llm", "/api/llm"),
                      ("/alerts", "/api/alerts")):
        html = client.get(page).text
        data = client.get(api).json()
        assert f'data-live-src="{api}"' in html and "data-live-interval" not in html  # 5 s
        fields = live_fields(html)
        assert len(fields) >= 5, page
        for path, shown in fields:
            assert unescape(shown) == pick(data, path), (page, path)
        lists = re.findall(r'data-list="([^"]+)"', html)
        assert lists, page
        for path in lists:
            rows: Any = data
            for part in path.split("."):
                rows = rows.get(part) if isinstance(rows, dict) else None
            assert isinstance(rows, list) and rows, (page, path)
        nav = re.findall(r'<nav aria-label="Pages">(.*?)</nav>', html, re.S)[0]
        assert re.findall(r'href="([^"]+)"', nav) == ["/", "/findings", "/metrics", "/llm",
                                                       "/alerts"]
    live = (STATIC / "live.js").read_text(encoding="utf-8")
    assert 'hasAttribute("data-live-eager")) refresh()' in live


def test_the_llm_page_says_what_the_exposure_probe_found() -> None:
    from agent.web.llm_view import _exposed

    assert _exposed(None, []) == "unknown" and _exposed(False, []) == "no"
    assert _exposed(True, []) == "yes"
    open_api = [{"port": 11434, "api": "ollama", "unauthenticated": True}]
    assert "without authentication" in _exposed(True, open_api)
    assert "asks for credentials" in _exposed(True, [{"api": "openai-compatible",
                                                      "unauthenticated": False}])
