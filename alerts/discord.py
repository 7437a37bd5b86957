"""The Discord notifier: one webhook message per outbox message, findings batched into embeds.

Every piece of text an attacker can influence (summaries, labels, reasons) is escaped, every
Discord limit is respected, mentions are disabled, and a 429 goes back to the outbox with the
server's own wait instead of sleeping inside the cycle.
"""
from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from alerts.console import delivery_note
from alerts.outbox import DeliveryError
from alerts.text import ELLIPSIS, escape, inline, truncate
from alerts.wording import comparison, count_words, footer, headline, judged, metric_name, recovered
from foundation.model import Severity
from foundation.redact import redact, register_secret
from foundation.settings import Settings
from foundation.store.data_storage import OutboxMessage
from foundation.untrusted import neutralise

if TYPE_CHECKING:   # the HTTP clients (~36 MB) load with the first message actually sent
    import requests

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
CONTENT_MAX = 2000
EMBEDS_MAX = 10
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
AUTHOR_MAX = 256
TOTAL_MAX = 6000
MIN_DESCRIPTION = 200           # an embed is only worth sending with this much of its summary
REASON_MAX = 600
ACTION_MAX = 900
SLACK = 64                      # kept free under TOTAL_MAX for rounding and the "more" line

COLOURS = {"high": 0xE74C3C, "medium": 0xE67E22, "low": 0xF1C40F, "none": 0x2ECC71}
ICONS = {"high": "\U0001F534", "medium": "\U0001F7E0", "low": "\U0001F7E1", "none": "\U0001F7E2"}
PERMANENT = {400: "Discord rejected the message as malformed (400)",
             401: "Discord refused the webhook token (401): create a new webhook URL",
             403: "Discord forbids this webhook (403): check its channel permissions",
             404: "the Discord webhook does not exist any more (404): create a new webhook URL"}
NO_MENTIONS: dict[str, list[str]] = {"parse": []}


def _ts(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _field(name: str, value: str) -> dict[str, Any]:
    return {"name": truncate(name, FIELD_NAME_MAX), "value": truncate(value, FIELD_VALUE_MAX),
            "inline": False}


def _action(text: str) -> str:
    """The kind's "what to do", configured names inside: escaped like all the rest, without its
    command quotes (escaped, they would show as stray backticks)."""
    return truncate(escape(text.replace("`", "")), ACTION_MAX)


def finding_embed(item: Mapping[str, Any], host: str, created_at: float,
                  verdict: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One embed for one finding: the headline with the fact that matters, the detail, what to
    do, since when, the number against its usual with its unit, who judged it; ids in the footer."""
    severity = str(item.get("severity", "none"))
    description = escape(item.get("summary", ""))
    if item.get("action"):
        description += f"\n\n**What to do:** {_action(str(item['action']))}"
    fields = []
    if item.get("first_seen"):
        fields.append(_field("Since", f"<t:{int(item['first_seen'])}:R>"))
    numbers = comparison(item)
    if numbers:
        fields.append(_field(inline(metric_name(item) or "Value", 200), inline(numbers, 400)))
    fields.append(_field("Severity", truncate(escape(judged(item, verdict or {})), REASON_MAX)))
    return {"title": truncate(inline(headline(item), TITLE_MAX), TITLE_MAX),
            "description": truncate(description, DESCRIPTION_MAX),
            "color": COLOURS.get(severity, COLOURS["none"]),
            "fields": fields[:FIELDS_MAX],
            # plain text in Discord (no Markdown there): the ids alone, neutralised, not escaped
            "footer": {"text": truncate(neutralise(footer(item, series=False)), FOOTER_MAX)},
            "timestamp": _ts(created_at)}


def embed_size(embed: Mapping[str, Any]) -> int:
    """Characters Discord counts towards the 6000 limit of one message."""
    size = len(embed.get("title", "")) + len(embed.get("description", ""))
    size += len(embed.get("footer", {}).get("text", "")) + len(embed.get("author", {}).get("name", ""))
    return size + sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))


def _fixed_size(embed: Mapping[str, Any]) -> int:
    return embed_size(embed) - len(embed.get("description", ""))


def fit(content: str, embeds: list[dict[str, Any]], more: int = 0) -> dict[str, Any]:
    """A message body within every Discord limit; embeds that do not fit become "and N more"."""
    budget = TOTAL_MAX - SLACK
    kept: list[dict[str, Any]] = []
    for embed in embeds[:EMBEDS_MAX]:
        used = sum(_fixed_size(e) for e in kept) + _fixed_size(embed)
        if used + MIN_DESCRIPTION * (len(kept) + 1) > budget and kept:
            break
        kept.append(dict(embed))
    more += len(embeds) - len(kept)
    if kept and _fixed_size(kept[0]) > budget - MIN_DESCRIPTION:  # one huge embed: cut its fields
        kept[0]["fields"] = [{**f, "value": truncate(f["value"], 200)}
                             for f in kept[0].get("fields", [])]
    share = max(0, (budget - sum(_fixed_size(e) for e in kept)) // max(1, len(kept)))
    for embed in kept:
        embed["description"] = truncate(embed.get("description", ""), min(DESCRIPTION_MAX, share))
    while kept and sum(embed_size(e) for e in kept) > TOTAL_MAX:
        kept.pop()
        more += 1
    if more:
        line = f"\n…and {count_words(more, 'more finding')} not shown (see the agent's status)"
        content = truncate(content, CONTENT_MAX - len(line)) + line
    return {"content": truncate(content, CONTENT_MAX), "embeds": kept,
            "allowed_mentions": NO_MENTIONS}


def alert_body(payload: Mapping[str, Any], late: str) -> dict[str, Any]:
    """The message for purpose "alert": a headline and one embed per finding."""
    items = list(payload.get("items", []))
    host = str(payload.get("host", ""))
    worst = max((Severity.parse(str(i.get("severity", "none"))) for i in items),
                key=lambda s: s.rank, default=Severity.NONE).value
    created = float(payload.get("created_at", 0.0))
    head = (f"{ICONS.get(worst, '')} **{worst.upper()} alert on {inline(host, 100)}**: "
            f"{count_words(len(items))}{late}")
    verdict = payload.get("verdict") or {}
    return fit(head, [finding_embed(i, host, created, verdict) for i in items])


def resolved_body(payload: Mapping[str, Any], late: str) -> dict[str, Any]:
    """The message for purpose "resolved": short and green."""
    items = list(payload.get("items", []))
    host = inline(payload.get("host", ""), 100)
    lines = [f"\u2705 {inline(recovered(i), 300)}" for i in items]
    description = truncate("\n".join(lines), DESCRIPTION_MAX)
    embed = {"title": truncate(f"Resolved on {host}", TITLE_MAX), "description": description,
             "color": COLOURS["none"], "timestamp": _ts(float(payload.get("created_at", 0.0))),
             "footer": {"text": truncate(neutralise(" | ".join(footer(i, series=False)
                                                               for i in items)), FOOTER_MAX)}}
    return fit(f"\u2705 Resolved on {host}: {count_words(len(items))}{late}", [embed])


def recap_body(payload: Mapping[str, Any], late: str) -> dict[str, Any]:
    """The message for purpose "recap": text, sections as embed fields, the chart as image."""
    fields = [_field(inline(s["title"], 200), escape_block(s["lines"]))
              for s in payload.get("sections", [])][:FIELDS_MAX]
    embed: dict[str, Any] = {"title": truncate(inline(payload.get("title", "Daily recap"), 200),
                                               TITLE_MAX),
                             "description": truncate(escape(payload.get("summary", "")),
                                                     DESCRIPTION_MAX),
                             "color": COLOURS.get(str(payload.get("severity", "none")), 0x3498DB),
                             "fields": fields,
                             "timestamp": _ts(float(payload.get("created_at", 0.0)))}
    if payload.get("chart_png_b64"):
        embed["image"] = {"url": f"attachment://{payload.get('chart_name', 'recap.png')}"}
    return fit(f"\U0001F4CB {inline(payload.get('title', 'Daily recap'), 200)}{late}", [embed])


def escape_block(lines: list[str]) -> str:
    """Escaped lines joined for one field value, cut at whole lines with an ellipsis line."""
    out: list[str] = []
    used = 0
    for line in lines:
        text = inline(line, 300)
        if used + len(text) + 1 > FIELD_VALUE_MAX - 2:
            out.append(ELLIPSIS)
            break
        out.append(text)
        used += len(text) + 1
    return "\n".join(out) or "none"


def test_body(payload: Mapping[str, Any], late: str) -> dict[str, Any]:
    """The message of `test-alert`: grey, no severity, plainly a test."""
    host = inline(payload.get("host", ""), 100)
    lines = [f"{inline(headline(i), 300)}\n{escape(i.get('summary', ''))}"
             for i in payload.get("items", [])]
    embed = {"title": truncate(f"Test from {host}", TITLE_MAX),
             "description": truncate("\n".join(lines), DESCRIPTION_MAX), "color": 0x95A5A6,
             "timestamp": _ts(float(payload.get("created_at", 0.0)))}
    return fit(f"\U0001F9EA Test message from homelab-monitor on {host}{late}", [embed])


BODIES: dict[str, Callable[[Mapping[str, Any], str], dict[str, Any]]] = {
    "alert": alert_body, "resolved": resolved_body, "recap": recap_body, "test": test_body}


def render(message: OutboxMessage, now: float) -> dict[str, Any]:
    """The JSON body of the webhook message for an outbox message."""
    late = delivery_note(message, now)
    return BODIES.get(message.purpose, alert_body)(message.payload, late)


class DiscordNotifier:
    """Posts outbox messages to a Discord webhook (discord-webhook, no retries of its own)."""

    channel = "discord"

    def __init__(self, settings: Settings, timeout_s: float = TIMEOUT_S) -> None:
        self._url = settings.DISCORD_WEBHOOK_URL.get_secret_value()
        register_secret(self._url)
        self._timeout_s = timeout_s

    def send(self, message: OutboxMessage, now: float) -> None:
        """Deliver one message; raise DeliveryError (retry_after from a 429, permanent for 4xx)."""
        import requests  # noqa: PLC0415 - the HTTP clients only when a message is sent
        from discord_webhook import DiscordWebhook  # noqa: PLC0415 - as above

        body = render(message, now)
        # rate_limit_retry=False: discord-webhook would otherwise sleep inside the cycle (only when a
        # Via header is present) and resend; the outbox retries after retry_after instead.
        hook = DiscordWebhook(url=self._url, content=body["content"], embeds=body["embeds"],
                              allowed_mentions=body["allowed_mentions"], rate_limit_retry=False,
                              timeout=self._timeout_s, wait=True)
        chart = message.payload.get("chart_png_b64")
        if chart:
            hook.add_file(file=base64.b64decode(chart),
                          filename=str(message.payload.get("chart_name", "recap.png")))
        try:
            # api_post_request, not execute(): execute() parses every answer as JSON (a proxy's HTML
            # 502 or a plain-text 429 would raise) and logs bodies; we judge the answer ourselves.
            response = hook.api_post_request()
        # "from None": requests' exceptions quote the URL, whose path is the webhook's secret.
        except requests.Timeout as err:
            # a read timeout comes after the POST went out: Discord may have posted it
            raise DeliveryError(f"Discord did not answer within {self._timeout_s:.0f} s",
                                outcome_unknown=not isinstance(err, requests.ConnectTimeout)
                                ) from None
        except requests.RequestException as err:
            raise DeliveryError(f"Discord unreachable: {type(err).__name__}: "
                                f"{redact(str(err))}") from None
        _check(response)


def _retry_after(response: requests.Response) -> float | None:
    """Seconds to wait from a 429: the JSON body's retry_after, else the Retry-After header."""
    try:
        value = json.loads(response.content.decode("utf-8")).get("retry_after")
        if value is not None:
            return max(0.0, float(value))
    except (ValueError, AttributeError, TypeError):
        pass
    header = response.headers.get("Retry-After")
    try:
        return max(0.0, float(header)) if header is not None else None
    except ValueError:
        return None


def _check(response: requests.Response) -> None:
    """Raise the DeliveryError that a non-success answer means."""
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = redact(response.content.decode("utf-8", "replace"))[:300]
    if status == 429:
        wait = _retry_after(response)
        raise DeliveryError(f"Discord rate limit (429), retry after {wait} s", retry_after=wait)
    if status in PERMANENT:
        raise DeliveryError(f"{PERMANENT[status]}: {detail}", permanent=True)
    if 400 <= status < 500:
        raise DeliveryError(f"Discord refused the message ({status}): {detail}", permanent=True)
    raise DeliveryError(f"Discord server error ({status}); will retry")
