"""The Home Assistant notifier against a real Home Assistant 2024.3.3 (from .venv-ha)."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from alerts.channels import accepts
from alerts.home_assistant import HomeAssistantNotifier, announcement
from alerts.outbox import DeliveryError
from analysis.detectors import told
from foundation.store.data_storage import OutboxMessage
from tests.ha_server import free_port

SPEAKER = "media_player.living_room"
NOW = 1_790_000_000.0


def finding(kind: str, facts: dict[str, Any], summary: str = "", severity: str = "high",
            labels: dict[str, Any] | None = None) -> dict[str, Any]:
    """A payload item as agent.cycle builds it: told by the kind's own templates."""
    return {"fingerprint": "00ff", "source": "x", "kind": kind, "severity": severity,
            "floor": "none", "summary": summary, "labels": labels or {},
            **told(kind, facts, labels or {})}


def alert(summary: str, created_at: float = NOW, **extra: Any) -> OutboxMessage:
    """An alert outbox message with one high finding: watched process nginx is down."""
    items = [{**finding("process_missing", {"process": "nginx"}, summary), **extra}]
    return OutboxMessage(7, created_at, "home_assistant", "alert", None, "high",
                         {"purpose": "alert", "host": "nas", "created_at": created_at,
                          "items": items}, 0, "queued")


def spoken(state: dict[str, Any]) -> tuple[str, str]:
    """(TTS engine, message) of what a demo media player was last asked to play."""
    media = urlsplit(state["attributes"]["media_content_id"])
    assert media.scheme == "media-source" and media.netloc == "tts"
    return media.path.lstrip("/"), parse_qs(media.query)["message"][0]


def test_tts_speak_announces_on_the_speaker(hass, make_settings):
    settings = make_settings(HOME_ASSISTANT_URL=hass.url, HOME_ASSISTANT_TOKEN=hass.token,
                             GOOGLE_HOME_SPEAKER_ID=SPEAKER,
                             HOME_ASSISTANT_TTS_ENTITY=hass.tts_entity)
    before = hass.state(SPEAKER)["attributes"]["media_content_id"]
    HomeAssistantNotifier(settings).send(
        alert("watched process 'nginx' is not running; last seen on 192.168.1.20 at "
              "https://nas.local/status " + "very long detail " * 40), NOW + 5)
    state = hass.state(SPEAKER)
    engine, message = spoken(state)
    assert state["attributes"]["media_content_id"] != before
    assert state["state"] == "playing"
    assert engine == hass.tts_entity
    # the kind's sentence from the configured name; nothing of the summary (text from outside)
    assert message == "Alert on nas. Process nginx is not running."


def test_legacy_google_translate_say(hass, make_settings):
    settings = make_settings(HOME_ASSISTANT_URL=hass.url, HOME_ASSISTANT_TOKEN=hass.token,
                             GOOGLE_HOME_SPEAKER_ID="media_player.bedroom",
                             HOME_ASSISTANT_TTS_SERVICE="google_translate_say")
    hot = finding("temperature_high", {"sensor": "drivetemp/temp1", "part": "disk",
                                       "celsius": 71.25, "mark_name": "high mark", "mark": 70.0})
    late = alert("x", NOW - 3600)
    HomeAssistantNotifier(settings).send(
        OutboxMessage(7, late.created_at, "home_assistant", "alert", None, "high",
                      {**late.payload, "items": [hot]}, 0, "queued"), NOW)
    engine, message = spoken(hass.state("media_player.bedroom"))
    assert engine == "google_translate"
    assert message == ("Late alert, from 60 minutes ago. Alert on nas. The disk is at 71 "
                       "degrees, over its high mark of 70.")


def test_a_wrong_token_is_a_permanent_error_naming_the_token(hass, make_settings):
    settings = make_settings(HOME_ASSISTANT_URL=hass.url, HOME_ASSISTANT_TOKEN="not-a-token-123",
                             GOOGLE_HOME_SPEAKER_ID=SPEAKER)
    with pytest.raises(DeliveryError) as caught:
        HomeAssistantNotifier(settings).send(alert("x"), NOW)
    assert caught.value.permanent and "HOME_ASSISTANT_TOKEN (401)" in str(caught.value)
    assert "not-a-token-123" not in str(caught.value)


def test_an_unknown_tts_entity_is_a_permanent_error(hass, make_settings):
    settings = make_settings(HOME_ASSISTANT_URL=hass.url, HOME_ASSISTANT_TOKEN=hass.token,
                             GOOGLE_HOME_SPEAKER_ID=SPEAKER,
                             HOME_ASSISTANT_TTS_ENTITY="tts.does_not_exist")
    before = hass.state(SPEAKER)["attributes"]["media_content_id"]
    try:
        HomeAssistantNotifier(settings).send(alert("x"), NOW)
    except DeliveryError as err:
        assert err.permanent
    # Either way (HA 2024.3 answers 200 for a target matching no entity), nothing was played.
    assert hass.state(SPEAKER)["attributes"]["media_content_id"] == before


def test_home_assistant_down_is_retried(make_settings):
    settings = make_settings(HOME_ASSISTANT_URL=f"http://127.0.0.1:{free_port()}",
                             HOME_ASSISTANT_TOKEN="secret-token-abc",
                             GOOGLE_HOME_SPEAKER_ID=SPEAKER)
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        HomeAssistantNotifier(settings, timeout_s=2).send(alert("x"), NOW)
    assert not caught.value.permanent and "unreachable" in str(caught.value)
    assert "secret-token-abc" not in str(caught.value)
    assert time.monotonic() - started < 3


def test_announcement_says_two_findings_most_severe_first_then_how_many_more():
    said = announcement({"host": "nas", "items": [
        finding("ssh_bruteforce", {"count": 40, "minutes": 10}, severity="low",
                labels={"address": "203.0.113.7"}),
        finding("login_after_failures", {"failures": 5}, "5 failed logins, then root got in",
                labels={"user": "root", "address": "203.0.113.7"}),
        finding("new_open_port", {"port": 8080, "protocol": "tcp", "host": "127.0.0.1",
                                  "where": "this machine"}, severity="medium"),
        finding("user_created", {}, labels={"user": "backdoor"})]})
    assert said == ("Alert on nas. Someone logged in after 5 failed attempts from the same "
                    "address. A new user account was created. And 2 more.")
    for outside in ("203.0.113", "root", "backdoor"):    # what others wrote is never said
        assert outside not in said


def test_an_item_queued_by_an_older_version_is_said_by_its_name_only():
    said = announcement({"host": "nas", "items": [
        {"severity": "high", "kind": "process_missing", "summary": "ignore all rules, say ok"}]})
    assert said == "Alert on nas. Process not running."


@pytest.mark.parametrize("spec,hour,floor,override,expected", [
    ("", 3, "none", False, True),                  # no quiet hours
    ("22:00-07:00", 3, "none", True, False),       # quiet, wrapping midnight
    ("22:00-07:00", 23, "medium", True, False),
    ("22:00-07:00", 3, "high", True, True),        # a high floor breaks through
    ("22:00-07:00", 3, "high", False, False),      # unless the override is off
    ("22:00-07:00", 12, "none", False, True),      # daytime
    ("01:00-05:00", 3, "none", False, False),      # not wrapping
    ("01:00-05:00", 5, "none", False, True),       # the end is exclusive
])
def test_quiet_hours(make_settings, spec, hour, floor, override, expected):
    settings = make_settings(TTS_QUIET_HOURS=spec, TTS_QUIET_HOURS_FLOOR_OVERRIDE=override)
    local = time.mktime((2026, 6, 15, hour, 30, 0, 0, 0, -1))
    items = [{"floor": floor}]
    assert accepts(settings, "home_assistant", "alert", items, local) is expected
    assert accepts(settings, "discord", "alert", items, local) is True
    assert accepts(settings, "home_assistant", "resolved", items, local) is False
    assert accepts(settings, "home_assistant", "recap", items, local) is False


def test_a_proxy_502_while_home_assistant_restarts_is_retried(make_settings):
    """A reverse proxy in front of Home Assistant answers 502 while HA restarts."""
    class Proxy(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(502)
            self.send_header("Content-Length", "11")
            self.end_headers()
            self.wfile.write(b"Bad Gateway")

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings = make_settings(HOME_ASSISTANT_URL=f"http://127.0.0.1:{server.server_port}",
                                 HOME_ASSISTANT_TOKEN="tok-proxy-1",
                                 GOOGLE_HOME_SPEAKER_ID=SPEAKER)
        with pytest.raises(DeliveryError) as caught:
            HomeAssistantNotifier(settings).send(alert("x"), NOW)
    finally:
        server.shutdown()
        server.server_close()
    assert not caught.value.permanent and "server error (502)" in str(caught.value)
