"""The console notifier: prints alerts when no other channel is configured."""
from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from alerts.wording import comparison, count_words, footer, headline, judged, recovered
from foundation.store.data_storage import OutboxMessage
from foundation.untrusted import for_terminal

LATE_AFTER_S = 120.0
REPEAT_NOTE = " (possible repeat: an earlier attempt was cut off before it was confirmed)"
MARK = {"high": "!!", "medium": "! ", "low": ". ", "none": "  "}


def late_note(created_at: float, now: float) -> str:
    """" (late: queued N min ago)" when a message waited, "" otherwise."""
    waited = now - created_at
    if waited < LATE_AFTER_S:
        return ""
    queued_at = time.strftime("%H:%M", time.localtime(created_at))
    return f" (late: queued {waited / 60:.0f} min ago, at {queued_at})"


def delivery_note(message: OutboxMessage, now: float) -> str:
    """What the operator must know about this delivery: late, and/or possibly sent before."""
    return late_note(message.created_at, now) + (REPEAT_NOTE if message.possible_repeat else "")


def render(payload: Mapping[str, Any], late: str = "") -> str:
    """Plain-text lines for an alert or resolved payload: per finding its headline, what to do,
    who judged it and the ids; untrusted fields one line each, so none can forge a line."""
    if payload.get("purpose") == "recap":
        return f"[RECAP]{late}\n{for_terminal(payload.get('text', ''), multiline=True)}"
    items = payload.get("items", [])
    host = for_terminal(payload.get("host", ""))
    if payload.get("purpose") == "test":      # test-alert: plainly no alert
        return "\n".join([f"[TEST] {host}{late}"]
                         + [f"  {for_terminal(headline(i))}. {for_terminal(i.get('summary', ''))}"
                            for i in items])
    if payload.get("purpose") == "resolved":
        lines = [f"[RESOLVED] {host}: {count_words(len(items))}{late}"]
        lines.extend(f"  ok {for_terminal(recovered(item))}" for item in items)
        return "\n".join(lines)
    verdict = payload.get("verdict") or {}
    lines = [f"[ALERT] {host}: {count_words(len(items))}{late}"]
    for item in items:
        severity = str(item.get("severity", "none"))
        lines.append(f"  {MARK.get(severity, '  ')} {severity.upper():6} "
                     f"{for_terminal(headline(item))}")
        details = [for_terminal(item.get("summary", ""))]
        numbers = comparison(item)
        if numbers:
            details.append(numbers)
        lines.append(f"       {'; '.join(details)}")
        if item.get("action"):
            lines.append(f"       what to do: {for_terminal(item['action'])}")
        lines.append(f"       judged {for_terminal(judged(item, verdict))} · "
                     f"{for_terminal(footer(item))}")
    return "\n".join(lines)


class ConsoleNotifier:
    """Writes each message to a stream (stdout, or stderr when stdout carries the JSON report)."""

    channel = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def send(self, message: OutboxMessage, now: float) -> None:
        """Print the message."""
        stream = self._stream or sys.stdout
        stream.write(render(message.payload, delivery_note(message, now)) + "\n")
        stream.flush()
