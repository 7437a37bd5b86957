"""Which alert channels are configured, and their notifiers, listed explicitly."""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from alerts.apprise_channel import channel_target, takes
from alerts.console import ConsoleNotifier
from alerts.outbox import Notifier
from foundation.settings import Settings


def configured_channels(settings: Settings) -> list[str]:
    """Channels that get immediate alerts: Discord and Home Assistant when set, else the console."""
    channels = []
    if settings.DISCORD_WEBHOOK_URL.get_secret_value():
        channels.append("discord")
    if (settings.HOME_ASSISTANT_URL and settings.HOME_ASSISTANT_TOKEN.get_secret_value()
            and settings.GOOGLE_HOME_SPEAKER_ID):
        channels.append("home_assistant")
    if settings.MQTT_URL.get_secret_value():   # Home Assistant entities and events (alerts/mqtt.py)
        channels.append("mqtt")
    # one channel per Apprise URL, apprise:1, apprise:2, ... (alerts/apprise_channel.py)
    channels.extend(f"apprise:{n}" for n in range(1, len(settings.APPRISE_URLS) + 1))
    if "discord" not in channels:
        channels.append("console")
    if settings.ALERTMANAGER_URL.get_secret_value():   # a state channel (STATE_CHANNELS)
        channels.append("alertmanager")
    return channels


def missing_channels(settings: Settings) -> dict[str, str]:
    """The channels that are not configured, each with the settings that would enable it."""
    missing: dict[str, str] = {}
    if not settings.DISCORD_WEBHOOK_URL.get_secret_value():
        missing["discord"] = "set DISCORD_WEBHOOK_URL"
    unset = [name for name, value in (
        ("HOME_ASSISTANT_URL", settings.HOME_ASSISTANT_URL),
        ("HOME_ASSISTANT_TOKEN", settings.HOME_ASSISTANT_TOKEN.get_secret_value()),
        ("GOOGLE_HOME_SPEAKER_ID", settings.GOOGLE_HOME_SPEAKER_ID)) if not value]
    if unset:
        missing["home_assistant"] = "set " + (", ".join(unset[:-1]) + " and " + unset[-1]
                                              if len(unset) > 1 else unset[0])
    if not settings.ALERTMANAGER_URL.get_secret_value():
        missing["alertmanager"] = "set ALERTMANAGER_URL"
    if not settings.MQTT_URL.get_secret_value():
        missing["mqtt"] = "set MQTT_URL"
    if not settings.APPRISE_URLS:
        missing["apprise"] = "set APPRISE_URLS"
    return missing


def make_notifiers(settings: Settings, console_stream: TextIO | None = None
                   ) -> dict[str, Notifier]:
    """A notifier for each configured channel whose module is part of this build."""
    notifiers: dict[str, Notifier] = {}
    for channel in configured_channels(settings):
        if channel == "console":
            notifiers[channel] = ConsoleNotifier(console_stream or sys.stdout)
        elif channel == "discord":
            from alerts.discord import DiscordNotifier  # noqa: PLC0415 - only when configured
            notifiers[channel] = DiscordNotifier(settings)
        elif channel == "home_assistant":
            from alerts.home_assistant import HomeAssistantNotifier  # noqa: PLC0415
            notifiers[channel] = HomeAssistantNotifier(settings)
        elif channel == "mqtt":
            from alerts.mqtt import MqttNotifier  # noqa: PLC0415 - paho only when configured
            notifiers[channel] = MqttNotifier(settings)
        elif channel == "alertmanager":
            from alerts.alertmanager import AlertmanagerNotifier  # noqa: PLC0415
            notifiers[channel] = AlertmanagerNotifier(settings)
        elif channel.startswith("apprise:"):
            from alerts.apprise_channel import AppriseNotifier  # noqa: PLC0415 - loads apprise
            number = int(channel.partition(":")[2])
            notifiers[channel] = AppriseNotifier(settings.APPRISE_URLS[number - 1], number,
                                                 settings.ALERT_RETRY_MAX_SECONDS)
    return notifiers


# Channels told the state of the open findings each cycle (agent/fleet_state.py), never sent
# the alert, resolved or recap messages of the others.
STATE_CHANNELS = frozenset({"alertmanager"})


def message_channels(channels: Iterable[str]) -> list[str]:
    """The channels that take messages: every one but the state channels."""
    return [c for c in channels if c not in STATE_CHANNELS]


def _quiet(spec: str, now: float) -> bool:
    """True when local time ``now`` falls inside ``HH:MM-HH:MM`` (which may wrap midnight)."""
    if not spec:
        return False
    start, end = ((int(h) * 60 + int(m)) for h, m in (p.strip().split(":") for p in spec.split("-")))
    local = time.localtime(now)
    minute = local.tm_hour * 60 + local.tm_min
    return start <= minute < end if start <= end else (minute >= start or minute < end)


def accepts(settings: Settings, channel: str, purpose: str, items: Sequence[Mapping[str, Any]],
            now: float) -> bool:
    """Whether a channel takes a message: speech only for alerts, and not in quiet hours unless a
    finding has a high floor and TTS_QUIET_HOURS_FLOOR_OVERRIDE is set."""
    if channel in STATE_CHANNELS:
        return purpose == "state"
    if channel == "mqtt":   # events of new high findings; states go out after each cycle
        return purpose == "alert"
    target = channel_target(channel, settings.APPRISE_URLS)
    if target is not None:   # by its purposes, and an alert by its min_severity
        return takes(target, purpose, items)
    if channel != "home_assistant":
        return True
    if purpose != "alert":
        return False
    if not _quiet(settings.TTS_QUIET_HOURS, now):
        return True
    return settings.TTS_QUIET_HOURS_FLOOR_OVERRIDE and any(
        str(item.get("floor")) == "high" for item in items)
