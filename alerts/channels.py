"""Which alert channels are configured, and their notifiers, listed explicitly."""
from __future__ import annotations

import sys
from typing import TextIO

from alerts.console import ConsoleNotifier
from alerts.outbox import Notifier
from core.settings import Settings


def configured_channels(settings: Settings) -> list[str]:
    """Channels that get immediate alerts: Discord and Home Assistant when set, else the console."""
    channels = []
    if settings.DISCORD_WEBHOOK_URL.get_secret_value():
        channels.append("discord")
    if (settings.HOME_ASSISTANT_URL and settings.HOME_ASSISTANT_TOKEN.get_secret_value()
            and settings.GOOGLE_HOME_SPEAKER_ID):
        channels.append("home_assistant")
    if "discord" not in channels:
        channels.append("console")
    return channels


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
    return notifiers
