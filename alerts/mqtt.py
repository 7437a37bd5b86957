"""Home Assistant entities over MQTT: a bounded, non-blocking publisher and the event notifier.

paho-mqtt is imported only when MQTT_URL is set. Its network loop runs in its own thread; a cycle
only hands it messages (qos 1, at most QUEUE_MAX waiting for the broker's answer) and never waits
for the broker: while the broker is down the latest state of each entity is kept (one value per
entity, nothing grows) and everything is published again when the connection comes back, paho
reconnecting with a backoff of RECONNECT_MIN_S doubling up to RECONNECT_MAX_S. Discovery configs
and states are retained; the availability topic says ``online`` (retained, on every connect) and
the broker says ``offline`` for us when the agent dies (its last will) or stops.

New high findings fire the event entity through the outbox (``MqttNotifier``, channel ``mqtt``):
an event that cannot go out now is retried like any alert. The broker's URL holds a password: it
is registered with foundation.redact and never quoted; the broker is named ``host:port``.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from alerts.mqtt_entities import OFFLINE, ONLINE, Device, new_high
from alerts.outbox import DeliveryError, Notifier
from foundation.model import Sample
from foundation.mqtt_names import Broker, parse_broker
from foundation.redact import redact, register_secret
from foundation.settings import Settings
from foundation.store.data_storage import OutboxMessage
from foundation.untrusted import strip

if TYPE_CHECKING:
    from paho.mqtt.client import Client, MQTTMessageInfo

log = logging.getLogger(__name__)

QOS = 1
QUEUE_MAX = 1000          # messages handed to paho and not yet acknowledged; past it, dropped
KEEPALIVE_S = 60
CONNECT_TIMEOUT_S = 5.0   # one TCP (and TLS) connect, in paho's thread
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 120
CLOSE_WAIT_S = 3.0        # on stop: for the connection (a --once run), then for the last acks
ONE_SHOT_S = 10.0         # `check` and `test-alert`: connect, publish, acknowledged
CONNECTED, CONNECTING, DOWN, STOPPED = "connected", "connecting", "down", "stopped"
ERR_SUCCESS, ERR_NO_CONN = 0, 4   # paho's MQTTErrorCode: queued (NO_CONN: until it reconnects)


def make_client(broker: Broker, client_id: str, ca_file: str | None,
                will_topic: str | None = None) -> Client:
    """A paho client for the broker: MQTT 3.1.1, clean session, qos-1 queue bounded, our last
    will on ``will_topic`` (the agent's own client only: `check` must not speak for it)."""
    import paho.mqtt.client as mqtt  # noqa: PLC0415 - paho (~2 MB) only when MQTT_URL is set
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415 - likewise

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id[:64],
                         protocol=mqtt.MQTTv311, clean_session=True)
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set(ca_certs=ca_file)
    if will_topic is not None:
        client.will_set(will_topic, OFFLINE, qos=QOS, retain=True)
    client.max_queued_messages_set(QUEUE_MAX)
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    client.connect_timeout = CONNECT_TIMEOUT_S
    return client


def refusal(reason: object) -> str:
    """What a refused CONNECT means, with the setting to fix."""
    text = str(reason)
    if "authori" in text.lower() or "password" in text.lower():
        return (f"the broker refused the login ({text}): check the user and password in MQTT_URL "
                "and the broker's password file")
    if "identifier" in text.lower():
        return f"the broker refused the client id ({text}): set MQTT_CLIENT_ID"
    return f"the broker refused the connection ({text})"


class MqttPublisher:
    """The agent's one connection: availability, discovery configs and states, and events."""

    def __init__(self, settings: Settings) -> None:
        url = settings.MQTT_URL.get_secret_value()
        register_secret(url)
        self.broker = parse_broker(url)
        if self.broker.password:
            register_secret(self.broker.password)
        self.device = Device(settings)
        self._ca_file = settings.MQTT_TLS_CA_FILE or None
        self._lock = threading.Lock()
        self._client: Client | None = None
        self._up = threading.Event()
        self.state, self.since = STOPPED, time.time()
        self.error: str | None = None
        self._retained: dict[str, str] = {}   # topic -> latest config or state: what HA must see
        self._sent: dict[str, str] = {}       # what this connection has published of them
        self._pending: list[MQTTMessageInfo] = []
        self.published = self.dropped = 0

    # -- the connection: paho's thread calls the _on_* methods ------------------------------------

    def start(self) -> None:
        """Connect in the background (never raises: a bad TLS file is this part's error)."""
        with self._lock:
            if self._client is not None:
                return
            try:
                client = make_client(self.broker, self.device.client_id, self._ca_file,
                                     self.device.availability)
                client.on_connect = self._on_connect
                client.on_disconnect = self._on_disconnect
                client.on_connect_fail = self._on_connect_fail
                client.on_message = self._on_message
                client.connect_async(self.broker.host, self.broker.port, KEEPALIVE_S)
                client.loop_start()
            except (OSError, ValueError) as err:
                self._set(DOWN, f"cannot set up the MQTT client: {type(err).__name__}: {err}")
                return
            self._client = client
            self._set(CONNECTING, None)

    def _set(self, state: str, error: str | None) -> None:
        if state != self.state:
            self.since = time.time()
            if state == DOWN:
                log.debug("MQTT broker %s: %s", self.broker.address, redact(error or ""))
        self.state, self.error = state, None if error is None else redact(strip(error))
        (self._up.set if state == CONNECTED else self._up.clear)()

    def _on_connect(self, client: Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        with self._lock:
            if reason.is_failure:
                self._set(DOWN, refusal(reason))
                return
            self._set(CONNECTED, None)
            self._sent.clear()   # a new session: the broker may have lost what was not retained
            self._publish(self.device.availability, ONLINE, retain=True)
            self._flush()
            # configs of entities no longer in the settings; an "offline" said for us by another
            # run of the agent (a --once beside the service, its last will)
            client.subscribe([(self.device.own_configs(), QOS), (self.device.availability, QOS)])

    def _on_message(self, client: Client, userdata: Any, message: Any) -> None:
        """An ``offline`` on our availability while we are connected: not so, say ``online``.
        A retained config of an entity the settings no longer have: remove it, and its
        retained state (an empty retained message deletes one, and the entity in HA)."""
        if message.topic == self.device.availability:
            if message.payload == OFFLINE.encode():
                with self._lock:
                    if self.state == CONNECTED:
                        self._publish(self.device.availability, ONLINE, retain=True)
            return
        if not message.retain or not message.payload:
            return
        with self._lock:   # the sampled sensors the device knows grow in the cycle's thread
            state_topic = self.device.stale(message.topic)
            if state_topic is not None:
                log.info("removing the MQTT entity %s: no longer in the settings", state_topic)
                self._publish(message.topic, "", retain=True)
                self._publish(state_topic, "", retain=True)

    def _on_disconnect(self, client: Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        with self._lock:
            if self.state not in (STOPPED, DOWN):   # DOWN: a refusal says more than this
                self._set(DOWN, f"the connection to the broker was lost ({reason}); reconnecting")

    def _on_connect_fail(self, client: Client, userdata: Any) -> None:
        with self._lock:
            self._set(DOWN, f"cannot connect to the broker at {self.broker.address} (refused, "
                            "unreachable or TLS failed); retrying with backoff")

    # -- publishing (under the lock; paho only queues, its thread sends) --------------------------

    def _publish(self, topic: str, payload: str, retain: bool) -> bool:
        if self._client is None:
            return False
        info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        if info.rc not in (ERR_SUCCESS, ERR_NO_CONN):   # the queue is full: the broker stopped
            self.dropped += 1                           # acknowledging; dropped, sent again later
            return False
        self.published += 1
        self._pending = [i for i in self._pending[-QUEUE_MAX:] if not done(i)]
        self._pending.append(info)
        return True

    def _flush(self) -> None:
        """Publish every config and state this connection has not published yet (configs
        first, so that Home Assistant knows an entity before its state)."""
        for topic in sorted(self._retained, key=lambda t: not t.endswith("/config")):
            payload = self._retained[topic]
            if self._sent.get(topic) != payload and self._publish(topic, payload, retain=True):
                self._sent[topic] = payload

    def after_cycle(self, report: dict[str, Any], samples: Iterable[tuple[str, Sample]],
                    open_findings: Mapping[str, Any]) -> tuple[bool, str | None] | None:
        """Hand a committed cycle's states to the connection and say how the broker is in the
        report (``mqtt``, and a note while it is not connected). Returns (up, error) for the
        dependencies' log, None while the first connection is still being made."""
        with self._lock:
            states = self.device.states(report, samples, open_findings)
            for entity in self.device.entities():
                self._retained[self.device.config_topic(entity)] = json.dumps(
                    self.device.config(entity), sort_keys=True)
            for entity, payload in states:
                self._retained[self.device.state_topic(entity)] = payload
            if self.state == CONNECTED:
                self._flush()
            status = self.status()
        report["mqtt"] = status
        if status["state"] != CONNECTED:
            report.setdefault("notes", []).append(
                f"MQTT broker {self.broker.address} is {status['state']}"
                + (f": {status['error']}" if status["error"] else "")
                + "; Home Assistant keeps the last states until it is back")
        return None if status["state"] in (CONNECTING, STOPPED) else (
            status["state"] == CONNECTED, status["error"])

    def fire(self, payload: str) -> None:
        """Fire the event entity (not retained: an event happens once); DeliveryError while
        not connected, so the outbox tries again later."""
        with self._lock:
            if self.state != CONNECTED:
                raise DeliveryError(f"MQTT broker {self.broker.address} not connected"
                                    + (f": {self.error}" if self.error else ""))
            if not self._publish(self.device.event_topic, payload, retain=False):
                raise DeliveryError(f"MQTT broker {self.broker.address}: {QUEUE_MAX} messages "
                                    "wait for its answer; will retry")

    def status(self) -> dict[str, Any]:
        """The broker's state for the report and `status`."""
        pending = sum(1 for i in self._pending if not done(i))
        return {"broker": self.broker.address, "state": self.state, "error": self.error,
                "since": datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds"),
                "published": self.published, "pending": pending, "dropped": self.dropped}

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Say ``offline`` (a clean stop fires no last will), wait a little for the last
        acknowledgements, disconnect; never more than about 3 x ``wait_s``."""
        with self._lock:
            client = self._client
        if client is None:
            return
        deadline = time.monotonic() + 2 * wait_s
        if self.state == CONNECTING:   # a --once run: its cycle's states go out on connect
            self._up.wait(wait_s)
        with self._lock:
            if self.state == CONNECTED:
                self._publish(self.device.availability, OFFLINE, retain=True)
            pending, self._client = list(self._pending), None
            self._set(STOPPED, None)
        while not all(done(i) for i in pending) and time.monotonic() < deadline:
            time.sleep(0.02)
        client.disconnect()
        stopper = threading.Thread(target=client.loop_stop, daemon=True, name="mqtt-stop")
        stopper.start()
        stopper.join(wait_s)


def done(info: MQTTMessageInfo) -> bool:
    """Acknowledged by the broker, or never to be (refused by paho's full queue)."""
    try:
        return info.is_published()
    except (ValueError, RuntimeError):
        return True


def publisher_of(notifiers: Mapping[str, Notifier]) -> MqttPublisher | None:
    """The MQTT channel's publisher, when the channel is configured."""
    notifier = notifiers.get("mqtt")
    return notifier.publisher if isinstance(notifier, MqttNotifier) else None


def one_shot(settings: Settings, role: str,
             act: Callable[[Client, Device], MQTTMessageInfo | None]) -> None:
    """Connect a short-lived client of its own (``<client id>-<role>-<pid>``, no last will:
    it never speaks for the agent), run ``act``, wait for its acknowledgement, disconnect.
    DeliveryError saying what failed."""
    broker = parse_broker(settings.MQTT_URL.get_secret_value())
    device = Device(settings)
    answered = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(c: Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        outcome["reason"] = reason
        answered.set()

    try:
        client = make_client(broker, f"{device.client_id}-{role}-{os.getpid()}",
                             settings.MQTT_TLS_CA_FILE or None)
        client.on_connect = on_connect
        client.connect(broker.host, broker.port, KEEPALIVE_S)
    except (OSError, ValueError) as err:
        raise DeliveryError(redact(f"cannot connect to the MQTT broker at {broker.address}: "
                                   f"{type(err).__name__}: {err}")) from None
    client.loop_start()
    try:
        if not answered.wait(ONE_SHOT_S):
            raise DeliveryError(f"the MQTT broker at {broker.address} did not answer the login "
                                f"within {ONE_SHOT_S:.0f} s")
        if outcome["reason"].is_failure:
            raise DeliveryError(refusal(outcome["reason"]), permanent=True)
        info = act(client, device)
        if info is not None:
            info.wait_for_publish(ONE_SHOT_S)
            if not info.is_published():
                raise DeliveryError(f"the MQTT broker at {broker.address} did not acknowledge "
                                    f"within {ONE_SHOT_S:.0f} s")
    finally:
        client.disconnect()
        client.loop_stop()


class MqttNotifier:
    """Channel ``mqtt``: fires the event entity once for each new high finding of an alert."""

    channel = "mqtt"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.publisher = MqttPublisher(settings)

    def send(self, message: OutboxMessage, now: float) -> None:
        """An alert: one event per new high finding (none for repeats); `test-alert`: one test
        event through a client of its own (the agent may be running with its own)."""
        if message.purpose == "test":
            one_shot(self.settings, "test", lambda client, device: client.publish(
                device.event_topic, device.test_event(), qos=QOS, retain=False))
            return
        if message.purpose != "alert":
            return   # recaps and resolved messages are not for this channel (alerts.channels)
        for item in new_high(message.payload.get("items", [])):
            self.publisher.fire(self.publisher.device.event(item))


def probe(settings: Settings) -> tuple[bool, str, str]:
    """`check`: log in with a client of its own, publish one message on ``<base>/check``
    (acknowledged), read the agent's availability (retained); (ok, what was seen, the fix)."""
    broker = parse_broker(settings.MQTT_URL.get_secret_value())
    seen: dict[str, str] = {}
    heard = threading.Event()

    def act(client: Client, device: Device) -> MQTTMessageInfo:
        def on_message(c: Client, userdata: Any, message: Any) -> None:
            seen["availability"] = bytes(message.payload[:20]).decode("utf-8", "replace")
            heard.set()

        client.on_message = on_message
        client.subscribe(device.availability, qos=QOS)
        info = client.publish(f"{device.base}/check", "ok", qos=QOS, retain=False)
        info.wait_for_publish(ONE_SHOT_S)
        heard.wait(1.0)   # a retained availability comes right after the subscription
        return info

    try:
        one_shot(settings, "check", act)
    except DeliveryError as err:
        return False, str(err), ("check MQTT_URL (host, port, user and password) and that the "
                                 "broker runs; with mqtts://, MQTT_TLS_CA_FILE")
    agent = {ONLINE: "the agent's entities are online",
             OFFLINE: "the agent's entities are offline (the agent is stopped)"}.get(
        seen.get("availability", ""), "the agent has published no availability yet")
    return True, (f"MQTT broker {broker.address} accepts the login and a message "
                  f"(discovery prefix {settings.MQTT_DISCOVERY_PREFIX}); {agent}"), ""
