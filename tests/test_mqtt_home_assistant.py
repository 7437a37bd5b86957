"""The MQTT commands (`check`, `test-alert`), the broker's password kept out of everything, and
the entities in a real Home Assistant 2024.3.3 (tests/ha_server.py) fed by a real Mosquitto."""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from alerts.mqtt import CONNECTED, publisher_of
from foundation.mqtt_names import plain_id
from tests import procs
from tests.ha_server import HomeAssistant
from tests.mosquitto_broker import PASSWORD, USER, Mosquitto
from tests.mqtt_support import (  # the broker, watcher and sleeper fixtures: conftest.py
    START,
    WAIT_S,
    Clock,
    close_agent,
    kill,
    open_agent,
    wait_state,
)

pytestmark = pytest.mark.slow   # the broker fixture fails, never skips, without mosquitto




# -- the password, check and test-alert -------------------------------------------------------------

def test_the_password_appears_nowhere(broker, tmp_path):
    wrong = "wr0ng-pw-" + uuid.uuid4().hex
    url = f"mqtt://{USER}:{wrong}@127.0.0.1:{broker.port}"
    once = procs.run_agent(tmp_path, "--once", "--json", MQTT_URL=url, LOG_LEVEL="DEBUG",
                           PROCESSES_TO_MONITOR="sshd")
    report = json.loads(once.stdout)
    assert report["mqtt"]["state"] == "down", report["mqtt"]
    assert "refused the login" in report["mqtt"]["error"]
    status = procs.run_agent(tmp_path, "status", MQTT_URL=url)
    assert "mqtt" in status.stdout
    good = procs.run_agent(tmp_path, "--once", "--json", MQTT_URL=broker.url(), LOG_LEVEL="DEBUG")
    assert json.loads(good.stdout)["mqtt"]["state"] == "connected"
    bad = procs.run_agent(tmp_path, "--once", MQTT_URL=f"mqtt://{USER}:{wrong}@10.0.0.9:1883")
    assert bad.returncode == 2 and "MQTT_URL: plain mqtt://" in bad.stderr
    check = procs.run_agent(tmp_path, "check", MQTT_URL=url)
    assert "\u2718 mqtt: the broker refused the login" in check.stdout
    stored = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())
    for secret in (wrong, PASSWORD):
        for text in (once.stdout, once.stderr, status.stdout, good.stdout, good.stderr,
                     bad.stderr, check.stdout, broker.log_tail()):
            assert secret not in text
        assert secret.encode() not in stored


def test_check_and_test_alert_use_a_client_of_their_own(broker, watcher, tmp_path):
    check = procs.run_agent(tmp_path, "check", MQTT_URL=broker.url(), HOST_NAME="nas")
    line = next(x for x in check.stdout.splitlines() if "mqtt:" in x)
    assert line.startswith(f"\u2714 mqtt: MQTT broker 127.0.0.1:{broker.port} accepts the login")
    assert watcher.wait("homelab-monitor/nas/check") == "ok"
    assert "homelab-monitor/nas/availability" not in watcher.latest   # check speaks for no agent
    sent = procs.run_agent(tmp_path, "test-alert", MQTT_URL=broker.url(), HOST_NAME="nas")
    assert "\u2714 mqtt: test message sent" in sent.stdout, sent.stdout + sent.stderr
    event = json.loads(watcher.wait("homelab-monitor/nas/findings"))
    assert event["event_type"] == "test"
    assert len(watcher.received("homelab-monitor/nas/findings")) == 1
    assert "homelab-monitor/nas/availability" not in watcher.latest


# -- a real Home Assistant --------------------------------------------------------------------------

def mqtt_entry(hass: HomeAssistant, broker: Mosquitto) -> str:
    """Set up Home Assistant's MQTT integration through its config flow; the entry's id."""
    flow = hass.api("POST", "/api/config/config_entries/flow",
                    json={"handler": "mqtt", "show_advanced_options": False})
    assert flow.status_code == 200, flow.text
    step = hass.api("POST", f"/api/config/config_entries/flow/{flow.json()['flow_id']}",
                    json={"broker": "127.0.0.1", "port": broker.port, "username": USER,
                          "password": PASSWORD}).json()
    assert step["type"] == "create_entry", step
    return str(step["result"]["entry_id"])


def ha_state(hass: HomeAssistant, entity_id: str, ok: Callable[[dict[str, Any]], bool],
             timeout_s: float = WAIT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = hass.state(entity_id)
        if found is not None and ok(found):
            return found
        assert time.monotonic() < deadline, (entity_id, found, hass._log_tail())
        time.sleep(0.3)


def test_home_assistant_shows_the_entities_and_a_stopped_process(hass, broker, make_settings,
                                                                 sleeper):
    entry = mqtt_entry(hass, broker)
    host = "ha-" + uuid.uuid4().hex[:6]
    node = f"homelab_monitor_{plain_id(host)}"
    settings = make_settings(MQTT_URL=broker.url(), HOST_NAME=host, COLLECTORS=["processes"],
                             PROCESSES_TO_MONITOR=[sleeper.name])
    proc = sleeper()
    clock = Clock(START)
    agent = open_agent(settings, clock)
    try:
        publisher = publisher_of(agent.notifiers)
        assert publisher is not None
        wait_state(publisher, CONNECTED)
        agent.run_cycle()
        problem = f"binary_sensor.{node}_process_{plain_id(sleeper.name)}"
        found = ha_state(hass, problem, lambda s: s["state"] == "off")
        assert found["attributes"]["device_class"] == "problem"
        assert found["attributes"]["friendly_name"] == f"homelab-monitor on {host} Process {sleeper.name}"
        assert ha_state(hass, f"binary_sensor.{node}_any_high", lambda s: True)["state"] == "off"
        assert ha_state(hass, f"sensor.{node}_severity", lambda s: True)["state"] == "none"
        ha_state(hass, f"event.{node}_findings", lambda s: True)

        kill(proc)
        clock.now += 300
        agent.run_cycle()
        ha_state(hass, problem, lambda s: s["state"] == "on")
        ha_state(hass, f"binary_sensor.{node}_any_high", lambda s: s["state"] == "on")
        assert ha_state(hass, f"sensor.{node}_severity", lambda s: s["state"] == "high")
        event = ha_state(hass, f"event.{node}_findings",
                         lambda s: s["attributes"].get("event_type") == "high_finding")
        assert event["attributes"]["kind"] == "process_missing"
        publisher.close()   # the agent stops: Home Assistant shows its entities unavailable
        ha_state(hass, problem, lambda s: s["state"] == "unavailable")
    finally:
        close_agent(agent)
        hass.api("DELETE", f"/api/config/config_entries/entry/{entry}")
