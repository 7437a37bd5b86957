"""The title and plain-text body of an Apprise message, told in the same words as every channel.

Apprise hands the text to ntfy, email, Telegram, Matrix, Slack and the rest, so it is sent as
plain text (Apprise escapes it where a service wants HTML) and everything an attacker can write
goes through the one neutraliser first (foundation.untrusted: no invisible or bidi characters, no
clickable links); then no ``@`` or ``<!`` can mention anyone on any of those services (Discord's
``@everyone``, Matrix's ``@room``, Slack's ``<!channel>``, Telegram's ``@user``): each becomes its
full-width twin, readable and parsed by no client.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from alerts.console import delivery_note
from alerts.text import truncate
from alerts.wording import comparison, count_words, footer, headline, judged, recovered
from foundation.durations import local_time
from foundation.model import Severity
from foundation.store.data_storage import OutboxMessage
from foundation.untrusted import neutralise

TITLE_MAX = 200
BODY_MAX = 3000          # ntfy takes 4096 bytes as a message (more becomes an attachment)
ITEMS_MAX = 10
LINE_MAX = 300
SUMMARY_MAX = 1000
ICONS = {"high": "\U0001F534", "medium": "\U0001F7E0", "low": "\U0001F7E1", "none": "\U0001F7E2"}
# Apprise's notify types, by what the message says
TYPES = {"high": "failure", "medium": "warning", "low": "info", "none": "info",
         "resolved": "success", "recap": "info", "test": "info"}
_SIGILS = re.compile(r"@|(?<=<)[!#]")
_FULL_WIDTH = {"@": "\uff20", "!": "\uff01", "#": "\uff03"}


def plain(text: object, multiline: bool = False) -> str:
    """Untrusted text for any Apprise service: neutralised, then no sigil left to mention with."""
    return _SIGILS.sub(lambda m: _FULL_WIDTH[m.group(0)], neutralise(text, multiline))


def _line(text: object, limit: int = LINE_MAX) -> str:
    return truncate(plain(text), limit)


def _worst(items: list[Mapping[str, Any]]) -> str:
    return max((Severity.parse(str(i.get("severity", "none"))) for i in items),
               key=lambda s: s.rank, default=Severity.NONE).value


def _finding(item: Mapping[str, Any], verdict: Mapping[str, Any]) -> str:
    """One finding: the headline with its fact, the detail, its number, what to do, since when,
    who judged it, and the ids."""
    lines = [f"{str(item.get('severity', 'none')).upper()}: {_line(headline(item))}",
             _line(item.get("summary", ""), SUMMARY_MAX)]   # one line: it cannot forge one
    numbers = comparison(item)
    if numbers:
        lines.append(_line(numbers))
    if item.get("action"):
        lines.append(f"What to do: {_line(str(item['action']).replace('`', ''), 600)}")
    if item.get("first_seen"):
        lines.append(f"Since {local_time(float(item['first_seen']))}")
    lines.append(f"Judged {_line(judged(item, verdict), 600)}")
    lines.append(_line(footer(item, series=False)))
    return "\n".join(line for line in lines if line)


def _fit(parts: list[str], total: int) -> str:
    """The parts joined by blank lines within BODY_MAX; what does not fit becomes "and N more"."""
    kept: list[str] = []
    used = 0
    for part in parts:
        if used + len(part) + 2 > BODY_MAX - 80 and kept:
            break
        kept.append(truncate(part, BODY_MAX - 80))
        used += len(part) + 2
    more = total - len(kept)
    if more:
        kept.append(f"…and {count_words(more, 'more finding')} not shown (see the agent's status)")
    return "\n\n".join(kept)


def alert(payload: Mapping[str, Any], note: str) -> tuple[str, str]:
    """Title and body of an alert: the worst severity and the count, then each finding."""
    items = list(payload.get("items", []))
    worst = _worst(items)
    host = _line(payload.get("host", ""), 100)
    title = f"{ICONS.get(worst, '')} {worst.upper()} alert on {host}: {count_words(len(items))}"
    verdict = payload.get("verdict") or {}
    return title + note, _fit([_finding(i, verdict) for i in items[:ITEMS_MAX]], len(items))


def resolved(payload: Mapping[str, Any], note: str) -> tuple[str, str]:
    """Title and body of a resolved message: what came back, and for how long it was away."""
    items = list(payload.get("items", []))
    host = _line(payload.get("host", ""), 100)
    lines = [f"\u2705 {_line(recovered(i))}\n{_line(footer(i, series=False))}"
             for i in items[:ITEMS_MAX]]
    return (f"\u2705 Resolved on {host}: {count_words(len(items))}{note}",
            _fit(lines, len(items)))


def recap(payload: Mapping[str, Any], note: str) -> tuple[str, str]:
    """Title and body of the daily recap: its plain text (the chart goes to Discord only)."""
    title = _line(payload.get("title", "Daily recap"), TITLE_MAX - 40)
    return (f"\U0001F4CB {title}{note}",
            truncate(plain(payload.get("text", ""), multiline=True), BODY_MAX))


def test(payload: Mapping[str, Any], note: str) -> tuple[str, str]:
    """Title and body of `test-alert`: plainly a test, no severity."""
    host = _line(payload.get("host", ""), 100)
    body = "\n".join(f"{_line(headline(i))}\n{_line(i.get('summary', ''))}"
                     for i in payload.get("items", []))
    return f"\U0001F9EA Test message from homelab-monitor on {host}{note}", body


BUILDERS = {"alert": alert, "resolved": resolved, "recap": recap, "test": test}


def render(message: OutboxMessage, now: float) -> tuple[str, str, str]:
    """(title, body, Apprise notify type) of an outbox message; late and possible-repeat notes in
    the title, as on every channel (alerts.console.delivery_note)."""
    purpose = message.purpose if message.purpose in BUILDERS else "alert"
    title, body = BUILDERS[purpose](message.payload, delivery_note(message, now))
    kind = TYPES.get(purpose, "info")
    if purpose == "alert":
        kind = TYPES.get(_worst(list(message.payload.get("items", []))), "info")
    return truncate(title, TITLE_MAX), body or title, kind
