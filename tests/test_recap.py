"""The daily recap: content, chart, exactly once per day across restarts, and the command."""
from __future__ import annotations

import base64
import io
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from alerts.discord import DiscordNotifier
from alerts.recap import build, finding_groups, recap_due, recap_slot, run_due
from foundation.model import Sample
from foundation.store.data_storage import Store
from tests.fakes.discord_server import FakeDiscord, Reply

ROOT = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def local(day: int, hour: int, minute: int = 0) -> float:
    """Epoch of a local time in June 2026."""
    return time.mktime((2026, 6, day, hour, minute, 0, 0, 0, -1))


def fill_day(store: Store, now: float, step: float = 300.0, logins: bool = True,
             seed: int = 7) -> None:
    """A realistic day: temperatures with a daily rhythm and a hot spell, ping with a loss burst,
    a brute force in the failed logins, and the findings those produced."""
    rng = random.Random(seed)
    ts = now - 86400 + step
    with store.transaction() as tx:
        while ts <= now:
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
    assert findings[0].startswith("HIGH ssh_bruteforce: 3× in 2 finding(s), 23:48–00:00; e.g. "
                                  "61 failed SSH logins")
    assert findings[1].startswith("MEDIUM temperature_high: 1×")
    assert findings[2].startswith("LOW ping_loss: 1×") and len(findings) == 3
    assert any(m.startswith("auth.failed_logins: avg") and "peaked above usual" in m
               for m in metrics)
    assert any(m.startswith("sensor.temperature_c[nvidia/GPU 0]") and "vs usual" in m
               for m in metrics)
    assert notes == ["every panel has data"]
    assert payload["summary_by"] == "plain"
    assert payload["summary"].startswith("nas had 2 high, 1 medium, 1 low finding(s)")
    assert "Findings, last 24 hours:" in payload["text"]


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
    assert "HIGH ssh_bruteforce" in asked[0] and "sensor.temperature_c" in asked[0]
    fallback = build(day_store, settings, local(15, 8), broken)
    assert fallback["summary_by"] == "plain" and fallback["summary"].startswith("nas had")


def test_recap_png_is_produced_and_looks_right(day_store, make_settings, tmp_path):
    payload = build(day_store, make_settings(HOST_NAME="nas"), local(15, 8))
    png = base64.b64decode(payload["chart_png_b64"])
    assert png.startswith(PNG_MAGIC) and 20_000 < len(png) < 400_000
    pixels = mpimg.imread(io.BytesIO(png))
    assert pixels.shape[1] == 1000 and pixels.shape[0] >= 900      # four panels, 10 in wide
    coloured = np.abs(pixels[:, :, 0] - pixels[:, :, 2]) > 0.3      # the plotted lines
    rows = np.nonzero(coloured.any(axis=1))[0]
    assert coloured.sum() > 2000 and rows.max() - rows.min() > 600  # lines on every panel


def test_series_without_data_are_left_out_with_a_note(store, make_settings):
    fill_day(store, local(15, 8), logins=False)
    payload = build(store, make_settings(), local(15, 8))
    assert payload["sections"][2]["lines"] == [
        "Failed logins: no data today (left out of the chart)"]
    short = mpimg.imread(io.BytesIO(base64.b64decode(payload["chart_png_b64"])))
    assert short.shape[0] < 900                                    # three panels, not four


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


def test_recap_slot_and_grace(store, make_settings):
    settings = make_settings(DAILY_RECAP_TIME="08:00", RECAP_GRACE_HOURS=6)
    assert recap_slot(settings, local(15, 7, 59)) == ("2026-06-14", local(14, 8))
    assert recap_slot(settings, local(15, 8)) == ("2026-06-15", local(15, 8))
    assert recap_due(store, settings, local(15, 8, 1)) == "2026-06-15"
    assert recap_due(store, settings, local(15, 13, 59)) == "2026-06-15"   # down at 08:00
    assert recap_due(store, settings, local(15, 14, 1)) is None            # missed for too long


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
    assert "HIGH ssh_bruteforce: 3×" in done.stdout and f"chart written to {chart}" in done.stdout
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
    assert "HIGH ssh_bruteforce: 3×" in out.getvalue()
