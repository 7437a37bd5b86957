"""Home Assistant entities over MQTT against a real Mosquitto (tests/mosquitto_broker.py):
discovery, states after real cycles, the last will, events, TLS, and a broker that is down or
silent. tests/test_mqtt_home_assistant.py has the commands, the password and a real Home Assistant."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from alerts.mqtt import CONNECTED, MqttPublisher
from foundation.mqtt_names import plain_id
from tests import procs
from tests.mosquitto_broker import PASSWORD, USER, Mosquitto, free_port
from tests.mqtt_support import (  # the broker, watcher and sleeper fixtures: conftest.py
    START,
    Clock,
    Watcher,
    base,
    close_agent,
    config_topic,
    kill,
    open_agent,
    wait_state,
)

pytestmark = pytest.mark.slow   # the broker fixture fails, never skips, without mosquitto
ROOT = Path(__file__).resolve().parent.parent




# -- discovery and states ---------------------------------------------------------------------------

def test_discovery_configs_are_retained_with_home_assistants_schema(broker, watcher, make_settings):
    from foundation.model import Sample

    settings = make_settings(MQTT_URL=broker.url(), HOST_NAME="nas.lan",
                             COLLECTORS=["processes", "containers", "sensors", "ping", "auth_log"],
                             PROCESSES_TO_MONITOR=["nginx", "cmdline:python -m app", "a/+#b"],
                             DOCKER_CONTAINERS_TO_MONITOR=["paperless"],
                             PING_TARGETS=["router.lan"])
    publisher = MqttPublisher(settings)
    publisher.start()
    wait_state(publisher, CONNECTED)
    ok = {"ok": True, "available": True}
    report = {"collectors": dict.fromkeys(settings.COLLECTORS, ok), "findings": [],
              "verdict": {"severity": "none", "by": "rules"}}
    samples = [("sensors", Sample("sensor.temperature_c", 41.5, "coretemp/Package id 0")),
               ("ping", Sample("ping.rtt_avg_ms", 1.25, "router.lan")),
               ("ping", Sample("ping.loss_percent", 0.0, "router.lan")),
               ("auth_log", Sample("auth.failed_logins", 3.0)),
               ("processes", Sample("process.count", 1.0, "nginx")),
               ("containers", Sample("container.up", 1.0, "paperless"))]
    publisher.after_cycle(report, samples, {})
    publisher.close()

    # a subscriber that comes later gets every config: they are retained
    late = Watcher(broker)
    try:
        nginx = json.loads(late.wait(config_topic("nas.lan", "binary_sensor", "process_nginx")))
        temp = json.loads(late.wait(config_topic("nas.lan", "sensor",
                                                 "temperature_coretemp_package_id_0")))
        rtt = json.loads(late.wait(config_topic("nas.lan", "sensor", "ping_rtt_router_lan")))
        event = json.loads(late.wait(config_topic("nas.lan", "event", "findings")))
        logins = json.loads(late.wait(config_topic("nas.lan", "sensor", "failed_logins")))
        assert late.wait(f"{base('nas.lan')}/availability") == "offline"   # stopped cleanly
        topics = [t for t in late.latest if t.startswith("homeassistant/")]
    finally:
        late.close()
    assert nginx == {
        "name": "Process nginx", "unique_id": "homelab_monitor_nas_lan_process_nginx",
        "object_id": "homelab_monitor_nas_lan_process_nginx",
        "device": {"identifiers": ["homelab_monitor_nas_lan"], "name": "homelab-monitor on nas.lan",
                   "manufacturer": "homelab-monitor", "model": "monitoring agent"},
        "origin": {"name": "homelab-monitor"},
        "availability_topic": "homelab-monitor/nas_lan/availability",
        "payload_available": "online", "payload_not_available": "offline",
        "state_topic": "homelab-monitor/nas_lan/process_nginx", "qos": 1,
        "device_class": "problem", "payload_on": "ON", "payload_off": "OFF"}
    assert (temp["device_class"], temp["unit_of_measurement"], temp["state_class"]) == (
        "temperature", "°C", "measurement")
    assert temp["name"] == "Temperature coretemp/Package id 0"
    assert (rtt["device_class"], rtt["unit_of_measurement"]) == ("duration", "ms")
    assert logins["unit_of_measurement"] == "logins"
    assert event["event_types"] == ["high_finding", "test"]
    # operator's names are made ids of [a-z0-9_]: no wildcard or level reaches a topic
    odd = [t for t in topics if "process_a_b" in t]
    assert len(odd) == 1 and "+" not in odd[0] and "#" not in odd[0]
    assert any("process_cmdline_python_m_app" in t for t in topics)


def test_an_entity_no_longer_in_the_settings_is_removed(broker, watcher, make_settings):
    from foundation.model import Sample

    def publish(watched: list[str]) -> MqttPublisher:
        settings = make_settings(MQTT_URL=broker.url(), HOST_NAME="nas", COLLECTORS=["processes"],
                                 PROCESSES_TO_MONITOR=watched)
        publisher = MqttPublisher(settings)
        publisher.start()
        wait_state(publisher, CONNECTED)
        publisher.after_cycle({"collectors": {"processes": {"ok": True}}, "findings": [],
                               "verdict": {"severity": "none", "by": "rules"}},
                              [("processes", Sample("process.count", 1.0, n)) for n in watched], {})
        return publisher

    redis = config_topic("nas", "binary_sensor", "process_redis")
    first = publish(["nginx", "redis"])
    assert json.loads(watcher.wait(redis))["name"] == "Process redis"
    assert watcher.wait(f"{base('nas')}/process_redis") == "OFF"
    first.close()
    second = publish(["nginx"])
    try:
        assert watcher.wait(redis, lambda v: v == "") == ""     # deleted: HA removes the entity
        assert watcher.wait(f"{base('nas')}/process_redis", lambda v: v == "") == ""
        assert json.loads(watcher.latest[config_topic("nas", "binary_sensor", "process_nginx")])
    finally:
        second.close()


def test_states_follow_the_cycles_and_the_event_fires_once(broker, watcher, make_settings,
                                                          sleeper):
    settings = make_settings(MQTT_URL=broker.url(), HOST_NAME="nas", COLLECTORS=["processes"],
                             PROCESSES_TO_MONITOR=[sleeper.name], ALERT_COOLDOWN_MINUTES=10)
    proc = sleeper()
    clock = Clock(START)
    agent = open_agent(settings, clock)
    try:
        assert agent.publisher is not None
        wait_state(agent.publisher, CONNECTED)
        state = f"{base('nas')}/process_{plain_id(sleeper.name)}"
        report = agent.run_cycle()
        assert report["mqtt"]["state"] == "connected" and report["mqtt"]["broker"].startswith("127.")
        assert watcher.wait(state) == "OFF"
        assert json.loads(watcher.wait(f"{base('nas')}/any_high"))["state"] == "OFF"
        assert watcher.wait(f"{base('nas')}/availability") == "online"

        kill(proc)
        clock.now += 300
        report = agent.run_cycle()
        assert any(a["channel"] == "mqtt" and a["status"] == "sent" for a in report["alerts"])
        assert watcher.wait(state, lambda v: v == "ON") == "ON"
        high = json.loads(watcher.wait(f"{base('nas')}/any_high", lambda v: '"ON"' in v))
        assert high == {"state": "ON", "count": 1, "kinds": ["process_missing"]}
        assert json.loads(watcher.wait(f"{base('nas')}/severity"))["severity"] == "high"
        event = json.loads(watcher.wait(f"{base('nas')}/findings"))
        assert event["event_type"] == "high_finding" and event["kind"] == "process_missing"
        assert event["headline"] == f"Process {sleeper.name} is not running"

        for step in range(3):   # still missing: cooldown, then a repeat after it: no new event
            clock.now += 300 if step < 2 else 700
            agent.run_cycle()
        sleeper()
        clock.now += 300
        agent.run_cycle()
        assert watcher.wait(state, lambda v: v == "OFF") == "OFF"
        assert json.loads(watcher.wait(f"{base('nas')}/any_high", lambda v: '"OFF"' in v))["count"] == 0
        events = watcher.received(f"{base('nas')}/findings")
        assert len(events) == 1, events
        assert not any(retain for t, _, retain in watcher.messages if t.endswith("/findings"))
    finally:
        close_agent(agent)


# -- the last will, and a broker that is down -------------------------------------------------------

CHILD = """
import time
from foundation.settings import load_settings
from alerts.mqtt import MqttPublisher
publisher = MqttPublisher(load_settings())
publisher.start()
while publisher.state != "connected":
    time.sleep(0.05)
print("connected", flush=True)
time.sleep(600)
"""


def test_the_last_will_says_offline_when_the_agent_is_killed(broker, watcher, tmp_path):
    env = procs.agent_env(tmp_path, MQTT_URL=broker.url(), HOST_NAME="killed")
    child = subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"connected", child.stderr
        assert watcher.wait(f"{base('killed')}/availability", lambda v: v == "online")
        kill(child)
        assert watcher.wait(f"{base('killed')}/availability", lambda v: v == "offline")
    finally:
        if child.poll() is None:
            kill(child)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


class SilentBroker:
    """Accepts TCP connections and never answers a CONNECT (a hung broker)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_a_broker_that_is_down_never_holds_a_cycle(kind, make_settings, tmp_path):
    silent = SilentBroker() if kind == "silent" else None
    port = silent.port if silent else free_port()
    missing = procs.unique_name("gone")
    settings = make_settings(MQTT_URL=f"mqtt://{USER}:{PASSWORD}@127.0.0.1:{port}",
                             HOST_NAME="down", COLLECTORS=["processes"],
                             PROCESSES_TO_MONITOR=[missing])
    clock = Clock(START)
    agent = open_agent(settings, clock)
    broker: Mosquitto | None = None
    try:
        t0 = time.monotonic()
        report = agent.run_cycle()
        # a cycle that waited on the broker would take its 5 s connect timeout or its 60 s
        # keep-alive at least; the bound is generous for a loaded machine, never tight
        assert time.monotonic() - t0 < 30
        assert report["mqtt"]["state"] in ("down", "connecting")
        assert any(n.startswith("MQTT broker 127.0.0.1:") for n in report["notes"])
        mqtt_alert = [a for a in report["alerts"] if a["channel"] == "mqtt"]
        assert [a["status"] for a in mqtt_alert] == ["queued"]   # the event waits in the outbox
        if silent is not None:
            silent.close()
            return
        # the broker comes back on that port: the states and the waiting event go out
        broker = Mosquitto(tmp_path / "late", port=port).start()
        watcher = Watcher(broker)
        try:
            assert agent.publisher is not None
            wait_state(agent.publisher, CONNECTED, timeout_s=180)   # reconnect backoff
            assert watcher.wait(f"{base('down')}/process_{plain_id(missing)}") == "ON"
            clock.now += 600   # past the outbox's backoff
            agent.run_cycle()
            event = json.loads(watcher.wait(f"{base('down')}/findings"))
            assert event["kind"] == "process_missing"
        finally:
            watcher.close()
    finally:
        t0 = time.monotonic()
        close_agent(agent)
        assert time.monotonic() - t0 < 30
        if broker is not None:
            broker.stop()


def test_mqtts_with_the_brokers_own_ca(tmp_path, make_settings):
    from alerts.mqtt import probe

    broker = Mosquitto(tmp_path / "tls", tls=True).start()
    try:
        settings = make_settings(MQTT_URL=broker.url(), HOST_NAME="tls", COLLECTORS=["processes"],
                                 MQTT_TLS_CA_FILE=str(broker.ca_file))
        ok, detail, _ = probe(settings)
        assert ok, detail
        publisher = MqttPublisher(settings)
        publisher.start()
        wait_state(publisher, CONNECTED)
        publisher.close()
        # the system's CAs do not know the broker's: TLS fails, said without the password
        untrusted = make_settings(MQTT_URL=broker.url(), HOST_NAME="tls")
        ok, detail, fix = probe(untrusted)
        assert not ok and "SSL" in detail and PASSWORD not in detail and "MQTT_TLS_CA_FILE" in fix
        publisher = MqttPublisher(untrusted)
        publisher.start()
        wait_state(publisher, "down")
        assert "TLS" in (publisher.error or "")
        publisher.close()
    finally:
        broker.stop()
