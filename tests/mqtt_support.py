"""What the MQTT tests share: a subscriber of the test's own, a settable clock, an agent whose
notifiers are what the settings configure, and the topics of a host's device."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from agent.cycle import Agent
from alerts.channels import make_notifiers
from alerts.mqtt import MqttPublisher
from analysis.rules import RulesJudge
from foundation.mqtt_names import plain_id
from foundation.store.data_storage import Store
from tests.mosquitto_broker import PASSWORD, USER, Mosquitto

START = time.mktime((2026, 6, 15, 12, 0, 0, 0, 0, -1))
WAIT_S = 60.0     # generous: a loaded 2-core machine


class Clock:
    """A settable clock for the agent."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Watcher:
    """A subscriber of the test's own (paho): every message on ``#``, retained ones included."""

    def __init__(self, broker: Mosquitto) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.latest: dict[str, str] = {}
        self.messages: list[tuple[str, str, bool]] = []
        self._changed = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"w-{uuid.uuid4().hex}")
        self.client.username_pw_set(USER, PASSWORD)
        self.client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._changed:
            text = message.payload.decode("utf-8", "replace")
            self.latest[message.topic] = text
            self.messages.append((message.topic, text, bool(message.retain)))
            self._changed.notify_all()

    def wait(self, topic: str, ok: Callable[[str], bool] = lambda v: True,
             timeout_s: float = WAIT_S) -> str:
        """The topic's latest payload once ``ok`` holds for it."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not (topic in self.latest and ok(self.latest[topic])):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{topic}: {self.latest.get(topic)!r} after {timeout_s} s")
                self._changed.wait(left)
            return self.latest[topic]

    def received(self, topic: str) -> list[str]:
        """Every payload that arrived on the topic, in order."""
        with self._changed:
            return [text for t, text, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL by pid, and reap it."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


def open_agent(settings: Any, clock: Clock) -> Agent:
    """An Agent whose notifiers are what the settings configure (the console and MQTT here)."""
    agent = Agent(settings, Store.open(settings.db_path), RulesJudge(),
                  make_notifiers(settings, io.StringIO()), clock=clock)
    assert agent.publisher is not None
    return agent


def close_agent(agent: Agent) -> None:
    if agent.publisher is not None:
        agent.publisher.close()
    agent.store.close()


def wait_state(publisher: MqttPublisher, state: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while publisher.state != state:
        assert time.monotonic() < deadline, (publisher.state, publisher.error)
        time.sleep(0.05)


def base(host: str) -> str:
    return f"homelab-monitor/{plain_id(host)}"


def config_topic(host: str, component: str, key: str) -> str:
    return f"homeassistant/{component}/homelab_monitor_{plain_id(host)}/{key}/config"
