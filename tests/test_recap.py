"""The daily recap: content, chart, exactly once per day across restarts, and the command."""
from __future__ import annotations

import base64
import io
import math
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import image as mpimg
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from agent.cycle import Agent
from alerts import chart
from alerts.discord import DiscordNotifier
from alerts.recap import build, chart_data, finding_groups, recap_due, recap_slot, run_due
from analysis.detectors import all_kinds
from analysis.rules import RulesJudge
from foundation.model import CollectResult, Sample
from foundation.series import METRICS
from foundation.store.data_storage import Store
from tests.fakes.discord_server import FakeDiscord, Reply
from tests.ha_server import free_port

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def local(day: int, hour: int, minute: int = 0) -> float:
    """Epoch of a local time in June 2026."""
    return time.mktime((2026, 6, day, hour, minute, 0, 0, 0, -1))


def fill_day(store: Store, now: float, step: float = 300.0, logins: bool = True,
             seed: int = 7) -> None:
    """A realistic day: temperatures with a daily rhythm and a hot spell, ping with a loss burst,
    a brute force in the failed logins, and the findings those produced; one cycle per step."""
    rng = random.Random(seed)
    ts = now - 86400 + step
    with store.transaction() as tx:
        while ts <= now:
            tx.save_cycle(ts, 0.4, "none", "rules", {"started_at": ts})
            ago_h = (now - ts) / 3600
            warm = math.sin((time.localtime(ts).tm_hour - 9) / 24 * 2 * math.pi)
            hot = 18.0 if 14.0 <= ago_h <= 14.5 else 0.0
            lossy = 3.0 <= ago_h <= 3.3
            samples = [
                Sample("sensor.temperature_c", 46 + 6 * warm + rng.gauss(0, 0.8) + hot,
                       key="coretemp/Package id 0", by_hour=True),
                Sample("sensor.temperature_c", 52 + 9 * warm + rng.gauss(0, 1.2) + hot * 1.4,
                       key="nvidia/GPU 0", by_hour=True),
                Sample("ping.rtt_avg_ms", 0.05 + abs(rng.gauss(0, 0.01)), key="127.0.0.1"),
                Sample("ping.rtt_avg_ms", 12 + abs(rng.gauss(0, 2)) + (25 if lossy else 0),
                       key="192.168.1.1"),
                Sample("ping.loss_percent", 0.0, key="127.0.0.1"),
                Sample("ping.loss_percent", 66.7 if lossy else 0.0, key="192.168.1.1"),
                Sample("system.load1", 0.4 + 0.3 * warm + abs(rng.gauss(0, 0.1)), by_hour=True)]
            if logins:
                samples.append(Sample("auth.failed_logins", float(
                    rng.choice([0, 0, 0, 1, 2]) + (40 if 8 <= ago_h <= 8.4 else 0)), by_hour=True))
            tx.add_samples(ts, samples)
            ts += step
        events = [(8.2, "auth_log", "ssh_bruteforce", "high", "a", "40 failed SSH logins from "
                   "203.0.113.9 in 10 minutes"),
                  (8.1, "auth_log", "ssh_bruteforce", "high", "b", "52 failed SSH logins from "
                   "198.51.100.4 in 10 minutes"),
                  (8.0, "auth_log", "ssh_bruteforce", "high", "b", "61 failed SSH logins from "
                   "198.51.100.4 in 10 minutes"),
                  (14.2, "sensors", "temperature_high", "medium", "c", "GPU 0 at 83 °C"),
                  (3.2, "ping", "ping_loss", "low", "d", "192.168.1.1 lost 67% of pings"),
                  (2.0, "processes", "process_missing", "none", "e", "muted by a known issue"),
                  (30.0, "ping", "ping_loss", "high", "f", "yesterday's, out of the window")]
        for ago_h, source, kind, severity, fp, summary in events:
            tx.upsert_finding(f"fp-{fp}", source, kind, fp, severity, "none", summary,
                              now - ago_h * 3600, {})


@pytest.fixture
def day_store(store: Store) -> Store:
    fill_day(store, local(15, 8))
    return store


def test_recap_content_groups_findings_and_compares_metrics(day_store, make_settings):
    payload = build(day_store, make_settings(HOST_NAME="nas"), local(15, 8))
    findings, metrics, notes = (s["lines"] for s in payload["sections"])
    assert findings[0].startswith("HIGH SSH password guessing: 2 findings, seen in 3 cycles, "
                                  "23:48\u201300:00; e.g. 61 failed SSH logins")
    assert findings[1].startswith("MEDIUM High temperature: 1 finding, seen in 1 cycle, at 17:48")
    assert findings[2].startswith("LOW Packet loss: 1 finding") and len(findings) == 3
    assert metrics[0].startswith("Temperature (")                 # the chart's panels first
    assert any(m.startswith("Failed logins: ") and "peaked above usual" in m for m in metrics)
    assert any(m.startswith("Temperature (nvidia/GPU 0): avg ") and "; usual " in m
               for m in metrics)
    assert notes == ["every panel has data"]
    assert payload["summary_by"] == "plain"
    assert payload["summary"] == ("nas had 2 high, 1 medium, 1 low finding(s) in the last 24 "
                                  "hours; the most frequent was SSH password guessing (seen in "
                                  "3 cycles). 5 finding(s) are still open.")
    assert "Findings, last 24 hours:" in payload["text"]


UNITS = {"Temperature": "°C", "Ping round trip": "ms", "Ping loss": "%",
         "Failed logins": "logins?|min"}         # "per 5 min": the cycle, itself with its unit
NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def test_what_people_read_has_names_and_units_not_series_ids(day_store, make_settings):
    payload = build(day_store, make_settings(HOST_NAME="nas"), local(15, 8))
    text = payload["text"]
    assert "[" not in text and "]" not in text
    for metric in METRICS:                                      # sensor.temperature_c, ...
        assert metric not in text, metric
    for kind in all_kinds():                                    # ssh_bruteforce, ...
        assert kind.kind not in text, kind.kind
    assert not re.search(r"\w_(c|ms|percent|mb)\b", text)
    metrics = payload["sections"][1]["lines"]
    checked = set()
    for line in metrics:
        label, _, rest = line.partition(": ")
        name = label.split(" (", 1)[0]
        if name not in UNITS:
            continue
        checked.add(name)
        for number in NUMBER.finditer(rest):
            after = rest[number.end():]
            assert re.match(rf" (?:{UNITS[name]})(?!\w)", after), (line, number.group())
    assert checked == set(UNITS)


def test_the_llm_writes_the_summary_when_it_answers(day_store, make_settings):
    asked = []

    def summarise(facts: str) -> str:
        asked.append(facts)
        return "  A brute force at midnight, otherwise calm.  "

    def broken(facts: str) -> str:
        raise TimeoutError("ollama took too long")

    settings = make_settings(HOST_NAME="nas")
    payload = build(day_store, settings, local(15, 8), summarise)
    assert (payload["summary"], payload["summary_by"]) == (
        "A brute force at midnight, otherwise calm.", "llm")
    assert "HIGH SSH password guessing" in asked[0] and "Temperature (nvidia/GPU 0)" in asked[0]
    assert "sensor.temperature_c" not in asked[0]
    fallback = build(day_store, settings, local(15, 8), broken)
    assert fallback["summary_by"] == "plain" and fallback["summary"].startswith("nas had")


def _texts(fig: Figure) -> list[Text]:
    """Every text a drawn figure shows: titles, legends, labels, the tick labels in view."""
    texts = [*fig.texts, *([fig._suptitle] if fig._suptitle else [])]
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax.xaxis.label, ax.yaxis.label]
        for axis, along in ((ax.xaxis, 0), (ax.yaxis, 1)):     # a locator also places some out
            low, high = sorted(axis.get_view_interval())        # of view, never drawn
            texts += [t for t in axis.get_ticklabels() if low <= t.get_position()[along] <= high]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def assert_reads_at_400_px(fig: Figure) -> None:
    """Fonts of 11 px and lines of 2 px or more when shown 400 px wide, nothing cut at the
    sides, and every legend above its plot, not on the data."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    scale = 400 / (fig.get_figwidth() * fig.dpi)
    for text in _texts(fig):
        assert text.get_fontsize() / 72 * fig.dpi * scale >= 11, text.get_text()
        box = text.get_window_extent(renderer)
        assert box.x0 >= -1 and box.x1 <= fig.bbox.x1 + 1, text.get_text()
    for ax in fig.axes:
        assert all(line.get_linewidth() / 72 * fig.dpi * scale >= 2 for line in ax.get_lines())
        legend = ax.get_legend()
        if legend is not None:
            box = legend.get_window_extent(renderer)
            assert box.y0 >= ax.get_window_extent(renderer).y1 - 1
            assert box.x0 >= -1 and box.x1 <= fig.bbox.x1 + 1


def test_the_chart_reads_at_a_phones_width(day_store, make_settings):
    now = local(15, 8)
    payload = build(day_store, make_settings(HOST_NAME="nas"), now)
    png = base64.b64decode(payload["chart_png_b64"])
    assert png.startswith(PNG_MAGIC) and 20_000 < len(png) < 400_000
    pixels = mpimg.imread(io.BytesIO(png))
    assert pixels.shape[1] == chart.WIDTH_IN * chart.DPI == 800   # half size on a phone
    coloured = np.abs(pixels[:, :, 0] - pixels[:, :, 2]) > 0.3      # the plotted lines
    rows = np.nonzero(coloured.any(axis=1))[0]
    assert coloured.sum() > 2000 and rows.max() - rows.min() > 0.7 * pixels.shape[0]

    fig, notes = chart.draw(chart_data(day_store, now - 86400), "nas", now - 86400, now, 300)
    assert_reads_at_400_px(fig)
    assert [ax.get_title(loc="left") for ax in fig.axes] == [
        "Temperature, °C", "Ping round trip, ms", "Ping loss, %", "Failed logins per 5 min"]
    for ax in fig.axes:                                          # no empty panel
        lines = ax.get_lines()
        assert 1 <= len(lines) <= chart.MAX_LINES
        assert all(len(line.get_xdata()) > 200 for line in lines)
    labels = [t.get_text() for t in _texts(fig)]
    assert {"nvidia/GPU 0", "coretemp/Package id 0", "192.168.1.1", "127.0.0.1"} <= set(labels)
    for label in labels:
        assert "[" not in label and not re.search(r"_(c|ms|percent)\b|\w\.\w+_", label), label
    assert notes == []


def test_series_without_data_are_left_out_with_a_note(store, make_settings):
    now = local(15, 8)
    fill_day(store, now, logins=False)
    payload = build(store, make_settings(), now)
    assert payload["sections"][2]["lines"] == ["Failed logins: no data (left out of the chart)"]
    short = mpimg.imread(io.BytesIO(base64.b64decode(payload["chart_png_b64"])))
    full = mpimg.imread(io.BytesIO(chart.render_png(chart_data(store, now - 86400) | {
        "Failed logins": {"auth.failed_logins": [(now - 60, 3.0)]}}, "t", now - 86400, now)[0]))
    assert short.shape[0] < full.shape[0]                          # three panels, not four
    fig, _ = chart.draw(chart_data(store, now - 86400), "t", now - 86400, now)
    assert [ax.get_title(loc="left") for ax in fig.axes] == [
        "Temperature, °C", "Ping round trip, ms", "Ping loss, %"]


def _wave(since: float, until: float, base: float, amplitude: float) -> list[tuple[float, float]]:
    return [(t, base + amplitude * math.sin(t / 7200)) for t in np.arange(since + 300, until, 300)]


def test_a_chart_of_one_panel_and_one_of_every_panel(tmp_path):
    now, since = local(15, 8), local(14, 8)
    one, notes = chart.draw({"Temperatures": {"sensor.temperature_c[nvme/Composite]":
                                              _wave(since, now, 40, 5)}}, "nas", since, now, 300)
    assert len(one.axes) == 1 and len(one.axes[0].get_lines()) == 1
    assert notes == [f"{name}: no data (left out of the chart)"
                     for name in ("Ping round trip", "Ping loss", "Failed logins")]
    sensors = {f"sensor.temperature_c[{key}]": _wave(since, now, 40 + i, 5)
               for i, key in enumerate(["a/Core 0", "a/Core 1", "a/Core 2", "b/edge", "c/x"])}
    targets = {f"ping.rtt_avg_ms[{key}]": _wave(since, now, 3 + i, 1)
               for i, key in enumerate(["192.168.100.100", "10.0.0.254", "a-long-name.lan"])}
    every = {"Temperatures": sensors,
             "Ping round trip": targets,
             "Ping loss": {"ping.loss_percent[192.168.1.1]": _wave(since, now, 5, 5)},
             "Failed logins": {"auth.failed_logins": _wave(since, now, 2, 2)}}
    fig, notes = chart.draw(every, "a-rather-long-host-name.example.lan, 24 hours to "
                            "2026-06-15 08:00", since, now, 300)
    assert len(fig.axes) == 4
    assert_reads_at_400_px(fig)                                  # the title wraps, no overflow
    assert notes == ["Temperature: 2 more series not drawn (the 3 highest are)"]
    drawn = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert drawn == ["c/x", "b/edge", "a/Core 2"]                 # the highest peaks
    for data, panels in ((every, 4), (dict(list(every.items())[:1]), 1)):
        png, _ = chart.render_png(data, "nas", since, now, 300)
        image = mpimg.imread(io.BytesIO(png))
        assert png.startswith(PNG_MAGIC) and image.shape[1] == 800
        (tmp_path / f"{panels}.png").write_bytes(png)
    one_high = mpimg.imread(tmp_path / "1.png").shape[0]
    assert one_high < 800 < mpimg.imread(tmp_path / "4.png").shape[0]


def test_a_flat_zero_panel_and_no_data_at_all_leave_no_empty_panel():
    now, since = local(15, 8), local(14, 8)
    quiet = {"Temperatures": {"sensor.temperature_c[nvme/Composite]": _wave(since, now, 40, 5)},
             "Ping loss": {"ping.loss_percent[192.168.1.1]": _wave(since, now, 0, 0)},
             "Failed logins": {"auth.failed_logins": _wave(since, now, 0, 0)}}
    fig, notes = chart.draw(quiet, "nas", since, now, 300)
    assert len(fig.axes) == 1
    assert notes == ["Ping round trip: no data (left out of the chart)",
                     "Ping loss: 0 % throughout (left out of the chart)",
                     "Failed logins: 0 logins throughout (left out of the chart)"]
    empty, notes = chart.draw({}, "nas", since, now, 300)
    assert empty.axes == [] and len(notes) == 4
    assert "No chartable data in this recap" in [t.get_text() for t in _texts(empty)]
    png, _ = chart.render_png({}, "nas", since, now, 300)
    assert png.startswith(PNG_MAGIC)


def test_finding_groups_counts_first_and_last_seen():
    events = [{"ts": 10.0, "fingerprint": "a", "source": "s", "kind": "k", "severity": "low",
               "summary": "one"},
              {"ts": 20.0, "fingerprint": "b", "source": "s", "kind": "k", "severity": "high",
               "summary": "two"},
              {"ts": 30.0, "fingerprint": "a", "source": "s", "kind": "k", "severity": "low",
               "summary": "three"},
              {"ts": 40.0, "fingerprint": "c", "source": "s", "kind": "q", "severity": "none",
               "summary": "muted"}]
    (group,) = finding_groups(events)
    assert (group["kind"], group["count"], group["distinct"], group["severity"],
            group["first_seen"], group["last_seen"], group["example"]) == (
        "k", 3, 2, "high", 10.0, 30.0, "two")


def _cycle_at(store: Store, ts: float) -> None:
    with store.transaction() as tx:
        tx.save_cycle(ts, 0.4, "none", "rules", {"started_at": ts})


def test_recap_slot_and_grace(store, make_settings):
    settings = make_settings(DAILY_RECAP_TIME="08:00", RECAP_GRACE_HOURS=6)
    assert recap_slot(settings, local(15, 7, 59)) == ("2026-06-14", local(14, 8))
    assert recap_slot(settings, local(15, 8)) == ("2026-06-15", local(15, 8))
    assert recap_due(store, settings, local(15, 8, 1)) is None             # no cycle yet
    _cycle_at(store, local(14, 20, 1))                                      # under 12 h before
    assert recap_due(store, settings, local(15, 8, 1)) is None
    _cycle_at(store, local(14, 19, 59))                                     # 12 h before
    assert recap_due(store, settings, local(15, 8, 1)) == "2026-06-15"
    assert recap_due(store, settings, local(15, 13, 59)) == "2026-06-15"   # down at 08:00
    assert recap_due(store, settings, local(15, 14, 1)) is None            # missed for too long


class FirstStart:
    """The real agent's cycles on a fake clock, each followed by the recap check, as in the loop."""

    def __init__(self, settings: Any, notifiers: dict[str, Any]) -> None:
        self.settings, self.notifiers, self.now = settings, notifiers, 0.0
        self.store = Store.open(settings.db_path)
        self.agent = Agent(settings, self.store, RulesJudge(), notifiers, clock=lambda: self.now)

    def cycle_at(self, now: float) -> list[int]:
        self.now = now
        self.agent.run_cycle()
        return run_due(self.store, self.settings, self.notifiers, lambda: self.now)


@pytest.fixture
def first_start(make_settings, fake_collectors):
    """An agent installed now: a temperature each cycle, Discord on a loopback fake."""
    fake_collectors["install"]("sensors", lambda ctx: CollectResult(
        observations={}, samples=(Sample("sensor.temperature_c", 45.0 + (ctx.now % 7),
                                         key="coretemp/Package id 0", by_hour=True),)))
    with FakeDiscord() as discord:
        settings = make_settings(COLLECTORS=["sensors"], DISCORD_WEBHOOK_URL=discord.url,
                                 DAILY_RECAP_TIME="08:00", RECAP_GRACE_HOURS=6, HOST_NAME="nas",
                                 OLLAMA_HOST=f"http://127.0.0.1:{free_port()}")
        started = FirstStart(settings, {"discord": DiscordNotifier(settings)})
        yield started, discord
        started.store.close()


def test_no_recap_on_the_first_start_just_after_the_recap_time(first_start):
    """Before, the first start within the grace hours sent a recap of a few minutes of data."""
    agent, discord = first_start
    for minute in (1, 6, 11):
        assert agent.cycle_at(local(15, 8, minute)) == []
    assert agent.store.outbox_counts() == {} and discord.accepted == []
    assert not agent.store.recap_sent("2026-06-15")
    assert agent.cycle_at(local(16, 8, 1)) != []                   # a real day later: the recap
    (sent,) = discord.accepted
    assert "covers only" not in sent.payload["embeds"][0]["description"]


def test_the_first_recap_says_it_covers_only_the_hours_since_the_first_cycle(first_start):
    agent, discord = first_start
    assert agent.cycle_at(local(14, 19, 0)) == []                  # installed in the evening
    assert agent.cycle_at(local(14, 23, 0)) == []
    assert len(agent.cycle_at(local(15, 8, 2))) == 1
    (sent,) = discord.accepted
    description = sent.payload["embeds"][0]["description"]
    assert description.startswith("This recap covers only 13 hours, from the agent's first "
                                  "cycle at 2026-06-14 19:00. A quiet day on nas: no findings "
                                  "in the last 13 hours.")
    fields = {f["name"]: f["value"] for f in sent.payload["embeds"][0]["fields"]}
    assert "Findings, last 13 hours" in fields
    assert fields["Key metrics against baselines"].startswith(   # Discord's escapes: \\(
        "Temperature \\(coretemp/Package id 0\\): avg ")
    assert sent.files["recap.png"].startswith(PNG_MAGIC)
    assert agent.cycle_at(local(15, 8, 7)) == []                   # once
    assert len(discord.accepted) == 1


def test_an_evening_too_late_for_a_real_day_waits_for_the_next_recap(first_start):
    agent, discord = first_start
    assert agent.cycle_at(local(14, 21, 0)) == []                  # 11 hours before 08:00
    assert agent.cycle_at(local(15, 8, 2)) == []
    assert agent.store.outbox_counts() == {} and discord.accepted == []
    assert len(agent.cycle_at(local(16, 8, 2))) == 1               # 35 hours: a whole day
    assert "covers only" not in discord.accepted[0].payload["embeds"][0]["description"]


def test_exactly_once_per_day_across_restarts(make_settings):
    with FakeDiscord() as discord:
        settings = make_settings(DISCORD_WEBHOOK_URL=discord.url, DAILY_RECAP_TIME="08:00",
                                 RECAP_GRACE_HOURS=6, HOST_NAME="nas")
        notifiers = {"discord": DiscordNotifier(settings)}
        store = Store.open(settings.db_path)
        fill_day(store, local(15, 8))
        assert run_due(store, settings, notifiers, lambda: local(15, 7, 55)) == []
        assert len(run_due(store, settings, notifiers, lambda: local(15, 8, 2))) == 1
        assert run_due(store, settings, notifiers, lambda: local(15, 8, 7)) == []
        store.close()
        store = Store.open(settings.db_path)                    # restarted
        assert run_due(store, settings, notifiers, lambda: local(15, 9)) == []
        # Down over the next recap time, back within the grace hours: sent on start.
        assert len(run_due(store, settings, notifiers, lambda: local(16, 12, 30))) == 1
        # Down past the grace hours: that day's recap is skipped.
        assert run_due(store, settings, notifiers, lambda: local(17, 15)) == []
        assert store.outbox_counts() == {"sent": 2}
        store.close()
        assert len(discord.accepted) == 2
        for accepted in discord.accepted:
            assert accepted.files["recap.png"].startswith(PNG_MAGIC)
            assert accepted.payload["embeds"][0]["image"]["url"] == "attachment://recap.png"
            assert accepted.payload["content"].startswith("\U0001F4CB Daily recap for nas")


def _command(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    environ.update({"MONITOR_DATA_DIR": str(tmp_path / "data"), "MONITOR_HOST_NAME": "nas",
                    **env})
    return subprocess.run([sys.executable, "monitor_agent.py", "recap", *args], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=120, check=False)


def test_recap_command_dry_run_prints_and_writes_the_png(tmp_path):
    store = Store.open(tmp_path / "data" / "monitor.db")
    fill_day(store, time.time())
    store.close()
    chart = tmp_path / "out.png"
    done = _command(tmp_path, "--dry-run", "--chart", str(chart))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Daily recap for nas")
    assert "HIGH SSH password guessing: 2 findings, seen in 3 cycles" in done.stdout
    assert f"chart written to {chart}" in done.stdout
    assert chart.read_bytes().startswith(PNG_MAGIC)


def test_recap_command_sends_one_now_without_using_up_the_day(tmp_path):
    with FakeDiscord() as discord:
        done = _command(tmp_path, MONITOR_DISCORD_WEBHOOK_URL=discord.url)
        assert done.returncode == 0, done.stderr
        assert "recap sent to discord" in done.stdout
        assert len(discord.accepted) == 1 and "recap.png" in discord.accepted[0].files
        assert discord.url.rsplit("/", 1)[1] not in done.stdout + done.stderr
    store = Store.open(tmp_path / "data" / "monitor.db")
    assert not store.recap_sent(time.strftime("%Y-%m-%d"))
    store.close()


def test_recap_command_reports_a_failed_delivery(tmp_path: Path) -> None:
    with FakeDiscord() as discord:
        discord.default = Reply(503)
        done = _command(tmp_path, MONITOR_DISCORD_WEBHOOK_URL=discord.url)
    assert done.returncode == 1
    assert "not delivered yet" in done.stdout and "retries it from the outbox" in done.stdout


def test_console_prints_the_recap_text(day_store, make_settings):
    from alerts.console import ConsoleNotifier
    from foundation.store.data_storage import OutboxMessage

    payload = build(day_store, make_settings(HOST_NAME="nas"), local(15, 8))
    out = io.StringIO()
    ConsoleNotifier(out).send(OutboxMessage(1, local(15, 8), "console", "recap", None, "high",
                                            payload, 0, "queued"), local(15, 8, 1))
    assert out.getvalue().startswith("[RECAP]\nDaily recap for nas")
    assert "HIGH SSH password guessing: 2 findings" in out.getvalue()
