"""What Home Assistant sees of the agent over MQTT: one device, its entities' discovery configs,
and their states after a cycle. Pure: no client and no network here (alerts/mqtt.py publishes).

Entity names and ids come from trusted names only: the settings (watched processes and
containers, ping targets), our metric names (foundation/series.py) and the sensors' own keys,
each made an id of ``[a-z0-9_]`` (foundation/mqtt_names.py). The one place untrusted text goes
out is an event's headline, neutralised first (foundation/untrusted.py).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from foundation.model import Sample
from foundation.mqtt_names import entity_ids, plain_id
from foundation.series import metric_spec
from foundation.settings import Settings
from foundation.untrusted import neutralise

ON, OFF, UNKNOWN = "ON", "OFF", "None"      # "None" is Home Assistant's payload for unknown
ONLINE, OFFLINE = "online", "offline"
HIGH_FINDING, TEST = "high_finding", "test"  # the event entity's event types
HEADLINE_MAX = 255
NAME_MAX = 60
ORIGIN = {"name": "homelab-monitor"}


@dataclass(frozen=True)
class Entity:
    """One entity of the device: its platform, its key (unique in the device, ``[a-z0-9_]``),
    its name for people and the platform's own discovery keys."""

    component: str                     # binary_sensor | sensor | event
    key: str
    name: str
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Family:
    """Entities of one stored metric, one per instance (a process, a target, a sensor)."""

    prefix: str                        # the key is PREFIX_INSTANCE: process_nginx
    component: str
    metric: str                        # foundation/series.py: its name and unit
    collector: str                     # the collector whose samples these are
    label: str                         # "Process": the entity is "Process nginx"
    instances: Callable[[Settings], Iterable[str]] | None   # None: the instances sampled
    extra: Mapping[str, Any] = field(default_factory=dict)


PROBLEM = {"device_class": "problem", "payload_on": ON, "payload_off": OFF}
MEASURED = {"state_class": "measurement"}

FAMILIES: tuple[Family, ...] = (
    Family("process", "binary_sensor", "process.count", "processes", "Process",
           lambda s: s.PROCESSES_TO_MONITOR, PROBLEM),
    Family("container", "binary_sensor", "container.up", "containers", "Container",
           lambda s: s.DOCKER_CONTAINERS_TO_MONITOR, PROBLEM),
    Family("temperature", "sensor", "sensor.temperature_c", "sensors", "Temperature", None,
           {**MEASURED, "device_class": "temperature"}),
    Family("ping_rtt", "sensor", "ping.rtt_avg_ms", "ping", "Ping round trip",
           lambda s: s.PING_TARGETS, {**MEASURED, "device_class": "duration"}),
    Family("ping_loss", "sensor", "ping.loss_percent", "ping", "Ping loss",
           lambda s: s.PING_TARGETS, MEASURED),
)
FAILED_LOGINS = Entity("sensor", "failed_logins", metric_spec("auth.failed_logins").name,
                       {**MEASURED, "unit_of_measurement": metric_spec("auth.failed_logins").unit,
                        "icon": "mdi:account-alert"})
ANY_HIGH = Entity("binary_sensor", "any_high", "High finding open",
                  {**PROBLEM, "value_template": "{{ value_json.state }}", "json_attributes": True})
SEVERITY = Entity("sensor", "severity", "Severity",
                  {"value_template": "{{ value_json.severity }}", "json_attributes": True,
                   "icon": "mdi:shield-alert-outline"})
FINDINGS = Entity("event", "findings", "High finding", {"event_types": [HIGH_FINDING, TEST]})


def display(text: object) -> str:
    """A name for people: one line, nothing hidden, no live link, at most NAME_MAX characters."""
    return neutralise(text)[:NAME_MAX]


class Device:
    """The topics, ids and entities of one host's device, and its states after each cycle."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.host = display(settings.host_name)
        self.node = plain_id(settings.host_name)
        self.prefix = settings.MQTT_DISCOVERY_PREFIX
        self.base = settings.MQTT_BASE_TOPIC or f"homelab-monitor/{self.node}"
        self.client_id = settings.MQTT_CLIENT_ID or f"homelab-monitor-{self.node}"
        self.availability = f"{self.base}/availability"
        self.event_topic = self.state_topic(FINDINGS)
        self.info = {"identifiers": [f"homelab_monitor_{self.node}"],
                     "name": f"homelab-monitor on {self.host}",
                     "manufacturer": "homelab-monitor", "model": "monitoring agent"}
        self._seen: dict[str, set[str]] = {f.prefix: set() for f in FAMILIES}  # sampled instances

    # -- ids, topics, discovery -------------------------------------------------------------------

    def object_id(self, entity: Entity) -> str:
        """The entity id Home Assistant makes: ``binary_sensor.homelab_monitor_nas_process_nginx``."""
        return f"homelab_monitor_{self.node}_{entity.key}"

    def state_topic(self, entity: Entity) -> str:
        """Where the entity's state is published (retained; an event's is not)."""
        return f"{self.base}/{entity.key}"

    def config_topic(self, entity: Entity) -> str:
        """``<prefix>/<component>/homelab_monitor_<node>/<key>/config``."""
        return f"{self.prefix}/{entity.component}/homelab_monitor_{self.node}/{entity.key}/config"

    def config(self, entity: Entity) -> dict[str, Any]:
        """The entity's discovery config (published retained)."""
        extra = dict(entity.extra)
        out: dict[str, Any] = {
            "name": entity.name, "unique_id": self.object_id(entity),
            "object_id": self.object_id(entity), "device": self.info, "origin": ORIGIN,
            "availability_topic": self.availability, "payload_available": ONLINE,
            "payload_not_available": OFFLINE, "state_topic": self.state_topic(entity), "qos": 1}
        if extra.pop("json_attributes", False):
            out["json_attributes_topic"] = self.state_topic(entity)
        out.update(extra)
        return out

    def own_configs(self) -> str:
        """The subscription that finds every config this device ever published (retained)."""
        return f"{self.prefix}/+/homelab_monitor_{self.node}/+/config"

    def stale(self, topic: str) -> str | None:
        """The state topic of a config published earlier for an entity the settings no longer
        have (a process no longer watched), to be removed; None for a current one. Sensors found
        by sampling are never stale: they are only known once their collector has run."""
        parts = topic.split("/")
        key = parts[-2] if len(parts) >= 3 else ""
        current = {self.config_topic(e) for e in self.entities()}
        if topic in current or not topic.endswith("/config") or key.startswith(
                tuple(f"{f.prefix}_" for f in FAMILIES if f.instances is None)):
            return None
        return f"{self.base}/{key}"

    def entities(self) -> list[Entity]:
        """Every entity known now: the fixed ones, those of the settings, the sensors sampled."""
        out = [ANY_HIGH, SEVERITY, FINDINGS]
        if "auth_log" in self.settings.COLLECTORS:
            out.append(FAILED_LOGINS)
        for family in FAMILIES:
            out.extend(self._family_entities(family).values())
        return out

    def _instances(self, family: Family) -> list[str]:
        if family.collector not in self.settings.COLLECTORS:
            return []
        if family.instances is not None:
            return list(family.instances(self.settings))
        return sorted(self._seen[family.prefix])

    def _family_entities(self, family: Family) -> dict[str, Entity]:
        spec = metric_spec(family.metric)
        extra = dict(family.extra)
        if family.component == "sensor" and spec.unit:
            extra["unit_of_measurement"] = spec.unit
        names = self._instances(family)
        return {name: Entity(family.component, f"{family.prefix}_{ident}",
                             f"{family.label} {display(name)}", extra)
                for name, ident in entity_ids(names).items()}

    # -- states -----------------------------------------------------------------------------------

    def states(self, report: Mapping[str, Any], samples: Iterable[tuple[str, Sample]],
               open_findings: Mapping[str, Any]) -> list[tuple[Entity, str]]:
        """The state of every entity this cycle tells something about (a collector that did not
        run this cycle leaves its entities as they were; one that failed makes them unknown)."""
        values: dict[str, dict[str, float]] = {}
        for _, sample in samples:
            values.setdefault(sample.metric, {})[sample.key] = sample.value
        for family in FAMILIES:
            if family.instances is None and family.collector in self.settings.COLLECTORS:
                self._seen[family.prefix].update(k for k in values.get(family.metric, {}) if k)
        out = [(ANY_HIGH, _any_high(open_findings)), (SEVERITY, _severity(report))]
        ran = report.get("collectors") or {}
        failed = values.get("auth.failed_logins", {})
        if "auth_log" in self.settings.COLLECTORS and "" in failed:   # a count per cycle: when counted
            out.append((FAILED_LOGINS, _number(failed[""])))
        watched = ((report.get("observations") or {}).get("containers") or {}).get("watched") or {}
        for family in FAMILIES:
            status = ran.get(family.collector)
            if status is None:
                continue
            ok = bool(status.get("ok")) and bool(status.get("available", True))
            sampled = values.get(family.metric, {}) if ok else {}
            for name, entity in self._family_entities(family).items():
                value = sampled.get(name)
                if value is None:
                    out.append((entity, UNKNOWN))
                elif family.component == "binary_sensor":
                    unhealthy = (watched.get(name) or {}).get("health") == "unhealthy"
                    out.append((entity, ON if value < 1 or (family.prefix == "container"
                                                            and unhealthy) else OFF))
                else:
                    out.append((entity, _number(value)))
        return out

    # -- events -----------------------------------------------------------------------------------

    def event(self, item: Mapping[str, Any]) -> str:
        """The event of one new high finding: its kind and headline (neutralised), never raw."""
        return json.dumps({
            "event_type": HIGH_FINDING, "kind": plain_id(str(item.get("kind", ""))),
            "severity": plain_id(str(item.get("severity", ""))),
            "headline": neutralise(item.get("headline") or item.get("summary") or "")[:HEADLINE_MAX],
            "fingerprint": plain_id(str(item.get("fingerprint", ""))), "host": self.host})

    def test_event(self) -> str:
        """The test-alert command's event."""
        return json.dumps({"event_type": TEST, "kind": "test_alert", "severity": "none",
                           "headline": "Test message from homelab-monitor: this channel works",
                           "fingerprint": "test_alert", "host": self.host})


def new_high(items: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The items of an alert message that are new high findings (new, or worse: newly high);
    a repeat after the cooldown fires no event."""
    return [i for i in items if i.get("why") in ("new", "worse") and i.get("severity") == "high"]


def _number(value: float) -> str:
    return f"{value:.6g}"


def _any_high(open_findings: Mapping[str, Any]) -> str:
    kinds = sorted({str(row.kind) for row in open_findings.values() if row.severity == "high"})
    count = sum(1 for row in open_findings.values() if row.severity == "high")
    return json.dumps({"state": ON if count else OFF, "count": count, "kinds": kinds})


def _severity(report: Mapping[str, Any]) -> str:
    verdict = report.get("verdict") or {}
    return json.dumps({"severity": plain_id(str(verdict.get("severity") or "none")),
                       "by": plain_id(str(verdict.get("by") or "rules")),
                       "findings": len(report.get("findings") or ())})
