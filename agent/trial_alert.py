"""`python monitor_agent.py test-alert`: a test message through every configured channel, now.

It goes through the same notifiers as real alerts (console, Discord, Home Assistant), but not
through the outbox: the operator wants each channel's answer now, not a retry an hour later, and a
test must never count as an alert. So nothing is stored: no outbox row (the recap and `status`
never see it), no finding (the cooldown never sees it).
"""
from __future__ import annotations

import argparse
import functools
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from alerts.channels import make_notifiers, missing_channels
from alerts.outbox import SEND_LIMIT_S, DeliveryError, Notifier
from foundation.bounded import Stopped, run_bounded
from foundation.redact import redact
from foundation.settings import Settings
from foundation.store.data_storage import OutboxMessage
from foundation.untrusted import strip

PURPOSE = "test"
HEADLINE = "Test message from homelab-monitor: this channel works"
SUMMARY = "Sent by the test-alert command; nothing is wrong."
SPOKEN = "This is a test of the alerts. Nothing is wrong."


def test_payload(host: str, now: float) -> dict[str, Any]:
    """A message every notifier renders (as an alert of one harmless item), plainly a test."""
    item = {"fingerprint": "test-alert", "source": "test-alert", "kind": "test_alert",
            "key": "", "severity": "none", "floor": "none", "summary": SUMMARY,
            "reason": "the operator asked for a test message", "why": "test",
            "first_seen": now, "labels": {}, "metric": None, "value": None, "baseline": None,
            "name": "Test alert", "headline": HEADLINE, "spoken": SPOKEN,
            "action": "nothing: this only tests the channel"}
    return {"purpose": PURPOSE, "host": host, "created_at": now, "test": True,
            "verdict": {"severity": "none", "reason": "a test message: nothing is wrong",
                        "by": "test-alert"},
            "items": [item]}


def send_test(notifiers: Mapping[str, Notifier], host: str, now: float,
              stop: threading.Event | None = None, limit_s: float = SEND_LIMIT_S
              ) -> dict[str, str | None]:
    """Each channel's outcome: None when it took the message, else the error (secrets redacted)."""
    results: dict[str, str | None] = {}
    for channel, notifier in notifiers.items():
        message = OutboxMessage(id=0, created_at=now, channel=channel, purpose=PURPOSE,
                                fingerprint=None, severity="none",
                                payload=test_payload(host, now), attempts=0, status="queued")
        try:
            finished, _ = run_bounded(functools.partial(notifier.send, message, now), limit_s,
                                      stop, name=f"test-{channel}")
            results[channel] = None if finished else f"no answer within {limit_s:.0f} s"
        except DeliveryError as err:
            results[channel] = redact(strip(str(err)))
        except Stopped:
            results[channel] = "interrupted"
            break
        except Exception as err:  # noqa: BLE001 - a notifier's bug is this channel's failure
            results[channel] = redact(strip(f"{type(err).__name__}: {err}"))
    return results


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Send the test message and print each channel's result; 1 when a configured one failed."""
    # the console channel prints the message itself on stdout, before the results
    notifiers = make_notifiers(settings, sys.stdout)
    results = send_test(notifiers, settings.host_name, time.time())
    for channel, error in results.items():
        label = getattr(notifiers[channel], "label", None)   # an Apprise URL: ntfys://ntfy.sh/…
        channel = f"{channel} ({label})" if label else channel
        print(f"\u2714 {channel}: test message sent" if error is None
              else f"\u2718 {channel}: {error}")
    for channel, hint in missing_channels(settings).items():
        print(f"- {channel}: not configured ({hint})")
    return 1 if any(error is not None for error in results.values()) else 0
