"""The MQTT settings, ids and states, without a broker (tests/test_mqtt.py has the real ones)."""
from __future__ import annotations

import json

import pytest

from alerts.mqtt_entities import Device, new_high
from foundation.model import Sample
from foundation.mqtt_names import entity_ids, parse_broker
from foundation.settings import ConfigError

SECRET = "pa55-w0rd-never-shown"


@pytest.mark.parametrize(("url", "says"), [
    (f"mqtt://u:{SECRET}@192.168.1.5:1883", "plain mqtt:// to a host other than this machine"),
    (f"http://u:{SECRET}@127.0.0.1", "must be mqtt://"),
    (f"mqtt://u:{SECRET}@127.0.0.1:port", "malformed port"),
    (f"mqtt://u:{SECRET}@127.0.0.1/topic?x=1", "no path, query or fragment"),
])
def test_a_bad_broker_url_is_refused_without_quoting_it(make_settings, url, says):
    with pytest.raises(ConfigError) as caught:
        make_settings(MQTT_URL=url)
    assert says in str(caught.value) and "MQTT_URL" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_broker_urls_that_keep_the_password_safe_are_accepted(make_settings):
    for url in (f"mqtts://u:{SECRET}@broker.lan", f"mqtt://u:{SECRET}@localhost:1884",
                "mqtt://broker.lan"):
        assert make_settings(MQTT_URL=url).MQTT_URL.get_secret_value() == url
    assert make_settings(MQTT_URL=f"mqtt://u:{SECRET}@10.1.2.3", MQTT_ALLOW_PLAIN_PASSWORD=True)
    broker = parse_broker(f"mqtts://me%40home:{SECRET}@[::1]")
    assert (broker.address, broker.tls, broker.username) == ("[::1]:8883", True, "me@home")
    assert SECRET not in repr(broker)


@pytest.mark.parametrize(("name", "value"), [
    ("MQTT_DISCOVERY_PREFIX", "home/+"), ("MQTT_BASE_TOPIC", "a//b"), ("MQTT_BASE_TOPIC", "/a"),
    ("MQTT_BASE_TOPIC", "#"), ("MQTT_CLIENT_ID", "two words"), ("MQTT_DISCOVERY_PREFIX", "")])
def test_topics_and_client_ids_are_checked(make_settings, name, value):
    with pytest.raises(ConfigError, match=name):
        make_settings(**{name: value})


def test_ids_are_plain_unique_and_stable():
    ids = entity_ids(["nginx", "nginx.1", "nginx_1", "cmdline:python -m x", "x" * 80])
    assert ids["nginx"] == "nginx" and ids["cmdline:python -m x"] == "cmdline_python_m_x"
    assert ids["nginx.1"] != ids["nginx_1"] and ids["nginx.1"].startswith("nginx_1_")
    assert len(set(ids.values())) == 5
    assert all(set(i) <= set("abcdefghijklmnopqrstuvwxyz0123456789_") for i in ids.values())
    assert ids == entity_ids(list(reversed(list(ids))))


def test_the_event_carries_the_kind_and_a_neutralised_headline(make_settings):
    device = Device(make_settings(HOST_NAME="nas"))
    item = {"kind": "login_after_failures", "severity": "high", "why": "new",
            "fingerprint": "00ff", "headline": "root\u200b logged in \u202efrom "
            "https://evil.example/x <@everyone>\n" + "x" * 400}
    event = json.loads(device.event(item))
    assert event["event_type"] == "high_finding" and event["kind"] == "login_after_failures"
    assert "\u200b" not in event["headline"] and "\u202e" not in event["headline"]
    assert "https://" not in event["headline"] and "hxxps[://]evil[.]example" in event["headline"]
    assert "\n" not in event["headline"] and len(event["headline"]) <= 255
    assert new_high([item, {**item, "why": "repeat"}, {**item, "severity": "medium"}]) == [item]


def test_states_after_a_cycle(make_settings):
    settings = make_settings(HOST_NAME="nas", COLLECTORS=["processes", "containers", "auth_log"],
                             PROCESSES_TO_MONITOR=["nginx"],
                             DOCKER_CONTAINERS_TO_MONITOR=["db", "web"])
    device = Device(settings)
    report = {"collectors": {"processes": {"ok": False}, "containers": {"ok": True}},
              "observations": {"containers": {"watched": {"web": {"health": "unhealthy"}}}},
              "verdict": {"severity": "medium", "by": "llm"}, "findings": [{}]}
    samples = [("containers", Sample("container.up", 1.0, "db")),
               ("containers", Sample("container.up", 1.0, "web"))]
    states = {e.key: v for e, v in device.states(report, samples, {})}
    assert states["process_nginx"] == "None"           # its collector failed: unknown
    assert states["container_db"] == "OFF" and states["container_web"] == "ON"   # unhealthy
    assert "failed_logins" not in states               # a count per cycle: only when counted
    assert json.loads(states["severity"]) == {"severity": "medium", "by": "llm", "findings": 1}
    event_cycle = {"collectors": {"auth_log": {"ok": True}}, "verdict": {}, "findings": []}
    states = {e.key: v for e, v in device.states(event_cycle, [], {})}
    assert "process_nginx" not in states and "container_db" not in states   # did not run


def test_paho_is_imported_only_when_mqtt_url_is_set(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from foundation.settings import load_settings; "
            "from alerts.channels import make_notifiers; import agent.cycle; "
            "make_notifiers(load_settings()); print('paho' in sys.modules)")
    env = {"PATH": "/usr/bin:/bin", "MONITOR_DATA_DIR": str(tmp_path)}
    without = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=120, check=True)
    with_url = subprocess.run([sys.executable, "-c", code.replace(
        "print(", "[n.publisher.start() for n in make_notifiers(load_settings()).values() "
                  "if n.channel == 'mqtt']; print(")], capture_output=True, text=True,
        env={**env, "MONITOR_MQTT_URL": "mqtt://127.0.0.1:1"}, timeout=120, check=True)
    assert (without.stdout.strip(), with_url.stdout.strip()) == ("False", "True")
