"""The Discord notifier against a loopback server that behaves as Discord's webhook endpoint."""
from __future__ import annotations

import base64
import logging
import socket
import time
from typing import Any

import pytest
import requests

from alerts.discord import COLOURS, DiscordNotifier, embed_size, render
from alerts.outbox import DeliveryError, deliver_due
from alerts.text import escape, speakable, truncate
from analysis.detectors import told
from foundation.redact import RedactingFilter
from foundation.store.data_storage import OutboxMessage
from tests.fakes.discord_server import LIMITS, WEBHOOK_TOKEN, FakeDiscord, Reply, limit_errors, live_mentions

NOW = 1_790_000_000.0


def item(i: int = 0, summary: str = "watched process 'nginx' is not running",
         **extra: Any) -> dict[str, Any]:
    """One payload item as agent.cycle builds it (told by the kind's own templates)."""
    base = {"fingerprint": f"{i:016x}", "source": "processes", "kind": "process_missing",
            "key": "nginx", "severity": "high", "floor": "high", "summary": summary,
            "reason": "a watched process is down", "why": "new", "first_seen": NOW - 600,
            "labels": {"process": "nginx"}, "metric": "process.count[nginx]", "value": 0.0,
            "baseline": {"n": 100, "centre": 1.0, "spread": 0.0, "min": 1.0, "max": 1.0},
            **told("process_missing", {"process": "nginx"}, {"process": "nginx"})}
    base.update(extra)
    return base


def message(items: list[dict[str, Any]], purpose: str = "alert", created_at: float = NOW,
            **payload: Any) -> OutboxMessage:
    """An outbox message holding a payload."""
    body = {"purpose": purpose, "host": "nas", "created_at": created_at,
            "verdict": {"severity": "high", "reason": "rules", "by": "rules"}, "items": items}
    body.update(payload)
    return OutboxMessage(1, created_at, "discord", purpose, None, "high", body, 0, "queued")


@pytest.fixture
def discord():
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def notifier(discord, make_settings):
    return DiscordNotifier(make_settings(DISCORD_WEBHOOK_URL=discord.url), timeout_s=2.0)


def test_hostile_findings_are_delivered_within_limits_and_mention_nobody(discord, notifier):
    evil = "@everyone @here <@123456789012345678> <@&98765432109876543> **free** [x](http://e) "
    items = [item(i, summary=evil + "A" * 10_000, reason=evil * 50,
                  labels={"user": "@everyone" * 200, "@here": evil}) for i in range(14)]
    notifier.send(message(items), NOW)
    assert len(discord.accepted) == 1 and discord.rejected == []
    sent = discord.accepted[0].payload
    assert limit_errors(sent) == {}
    assert sent["allowed_mentions"] == {"parse": []}
    assert discord.accepted[0].live_mentions == []
    # Even with mentions allowed, the escaped text holds no mention Discord would parse.
    assert live_mentions({**sent, "allowed_mentions": None}) == []
    text = sent["content"] + "".join(e["description"] + "".join(f["value"] for f in e["fields"])
                                     for e in sent["embeds"])
    assert "@everyone" not in text and "<@123456789012345678>" not in text
    assert "**free**" not in text and "](http" not in text
    assert sum(embed_size(e) for e in sent["embeds"]) <= LIMITS["total"]
    assert all(e["description"].endswith("…") for e in sent["embeds"])
    shown = len(sent["embeds"])
    assert 1 <= shown <= 10
    assert f"and {14 - shown} more findings not shown" in sent["content"]
    assert sent["content"].startswith("\U0001F534 **HIGH alert on nas**: 14 findings")


def test_alert_embed_leads_with_the_fact_says_what_to_do_and_keeps_ids_in_the_footer(
        discord, notifier):
    notifier.send(message([item(0, severity="high")]), NOW + 30)
    sent = discord.accepted[0].payload
    embed = sent["embeds"][0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert embed["color"] == COLOURS["high"]
    assert embed["title"] == "Process nginx is not running"
    assert "**What to do:**" in embed["description"]
    assert "systemctl status nginx" in embed["description"]     # the fact filled in
    assert fields["Since"] == f"<t:{int(NOW - 600)}:R>"
    assert fields["Instances of a watched process"] == "Now 0 instances, usually 1 instance"
    assert fields["Severity"] == "high by the rules"
    assert embed["footer"]["text"] == "process_missing · process.count · 00000000 · new"
    seen = sent["content"] + embed["title"] + embed["description"] + "".join(fields.values())
    assert "process_missing" not in seen and "process.count" not in seen   # ids: footer only
    assert sent["content"].startswith("\U0001F534 **HIGH alert on nas**: 1 finding")
    assert "late" not in sent["content"]


def test_the_llm_reason_is_shown_with_who_judged(discord, notifier):
    notifier.send(message([item(0, reason="restarted twice, then stopped")],
                          verdict={"severity": "high", "reason": "x", "by": "llm"}), NOW)
    fields = {f["name"]: f["value"] for f in discord.accepted[0].payload["embeds"][0]["fields"]}
    assert fields["Severity"] == "high by the LLM: restarted twice, then stopped"


def test_late_message_says_it_is_late(discord, notifier):
    notifier.send(message([item()], created_at=NOW - 3600), NOW)
    assert "late: queued 60 min ago" in discord.accepted[0].payload["content"]


def test_resolved_message_is_short_and_green(discord, notifier):
    notifier.send(message([item(0, severity="none", why="resolved")], purpose="resolved"), NOW)
    sent = discord.accepted[0].payload
    assert len(sent["embeds"]) == 1 and sent["embeds"][0]["color"] == COLOURS["none"]
    assert sent["content"].startswith("\u2705 Resolved on nas: 1 finding")
    assert len(sent["content"]) + embed_size(sent["embeds"][0]) < 300


def test_resolved_says_what_came_back_and_how_long_it_was_down(discord, notifier):
    back = {**item(0, severity="none", why="resolved", first_seen=NOW - 14 * 60),
            **told("process_missing", {"process": "nginx"}, {}, resolved=True),
            "down_s": 14 * 60.0}
    notifier.send(message([back], purpose="resolved"), NOW)
    embed = discord.accepted[0].payload["embeds"][0]
    # parentheses escaped (no masked link can form); Discord shows them plain
    assert embed["description"] == "\u2705 Process nginx is running again \\(down 14 min\\)"
    assert "not running" not in embed["description"]


def test_recap_goes_as_multipart_with_the_png_attached(discord, notifier):
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 500
    recap = message([], purpose="recap", title="Daily recap for nas", summary="@everyone quiet",
                    summary_by="plain", severity="low", chart_name="recap.png",
                    chart_png_b64=base64.b64encode(png).decode(),
                    sections=[{"title": "Findings", "lines": ["LOW ping_loss: 2×"] * 200}])
    notifier.send(recap, NOW)
    accepted = discord.accepted[0]
    assert accepted.files == {"recap.png": png}
    embed = accepted.payload["embeds"][0]
    assert embed["image"]["url"] == "attachment://recap.png"
    assert len(embed["fields"][0]["value"]) <= LIMITS["field_value"]
    assert embed["fields"][0]["value"].endswith("…")
    assert accepted.live_mentions == []


def test_fake_rejects_payloads_over_the_limits_like_discord(discord):
    over = {"content": "x" * 2001, "embeds": [{"title": "t" * 257, "description": "d" * 4000,
                                               "fields": [{"name": "n", "value": "v" * 1025}]}]
            + [{"description": "d" * 10}] * 10}
    answer = requests.post(discord.url, json=over, timeout=5)
    body = answer.json()
    assert answer.status_code == 400 and body["code"] == 50035
    assert body["message"] == "Invalid Form Body"
    assert set(body["errors"]) >= {"content", "embeds", "embeds.0.title",
                                   "embeds.0.fields.0.value"}
    assert discord.accepted == []


def test_a_400_is_permanent_with_a_clear_message(discord, notifier, monkeypatch):
    monkeypatch.setattr("alerts.discord.fit", lambda content, embeds, more=0: {
        "content": "x" * 2500, "embeds": [], "allowed_mentions": {"parse": []}})
    with pytest.raises(DeliveryError) as caught:
        notifier.send(message([item()]), NOW)
    assert caught.value.permanent and "malformed (400)" in str(caught.value)
    assert "Must be 2000 or fewer" in str(caught.value)


@pytest.mark.parametrize("via", [False, True])
def test_429_returns_to_the_outbox_with_retry_after_and_never_sleeps(discord, notifier, via):
    discord.script = [Reply(429, retry_after=30.5, via=via)]
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        notifier.send(message([item()]), NOW)
    assert time.monotonic() - started < 10.0         # discord-webhook would sleep 30.65 s
    assert caught.value.retry_after == 30.5 and not caught.value.permanent
    assert discord.requests == 1 and discord.accepted == []   # no resend, so no double
    notifier.send(message([item()]), NOW)
    assert len(discord.accepted) == 1


def test_429_without_a_json_body_uses_the_retry_after_header(discord, notifier):
    discord.script = [Reply(429, retry_after=7.0, body=b"rate limited")]
    with pytest.raises(DeliveryError) as caught:
        notifier.send(message([item()]), NOW)
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize("reply", [Reply(500), Reply(502, body=b"<html>bad gateway</html>"),
                                   Reply(503)])
def test_server_errors_are_retried(discord, notifier, reply):
    discord.script = [reply]
    with pytest.raises(DeliveryError) as caught:
        notifier.send(message([item()]), NOW)
    assert not caught.value.permanent and caught.value.retry_after is None


def test_a_slow_discord_times_out_and_is_retried(discord, make_settings):
    quick = DiscordNotifier(make_settings(DISCORD_WEBHOOK_URL=discord.url), timeout_s=0.3)
    discord.script = [Reply(200, delay_s=20.0)]
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        quick.send(message([item()]), NOW)
    assert time.monotonic() - started < 10.0   # 0.3 s expected; waiting for the answer: 20 s
    assert "did not answer within" in str(caught.value) and not caught.value.permanent


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/webhooks/123456789012345678/{WEBHOOK_TOKEN}"


def test_the_webhook_url_never_appears_in_logs_errors_or_the_outbox(discord, make_settings,
                                                                    store, caplog):
    caplog.set_level(logging.DEBUG)
    # The agent's log handler carries this filter (monitor_agent.setup_logging); urllib3's own DEBUG
    # lines name the request path, so they are only safe through it.
    caplog.handler.addFilter(RedactingFilter())
    errors = []
    for url, script in ((_closed_port_url(), []), (discord.url, [Reply(500)]),
                        (discord.url, [Reply(429, retry_after=1, via=True)]),
                        (discord.url.replace(WEBHOOK_TOKEN, "wrongToken_0123"), []),
                        (discord.url.replace("123456789012345678", "1"), [])):
        discord.script = list(script)
        sender = DiscordNotifier(make_settings(DISCORD_WEBHOOK_URL=url), timeout_s=2.0)
        with pytest.raises(DeliveryError) as caught:
            sender.send(message([item()]), NOW)
        errors.append(caught.value)
        with store.transaction() as tx:
            tx.enqueue(channel="discord", purpose="alert", severity="high",
                       payload=message([item()]).payload, now=NOW)
        deliver_due(store, {"discord": sender}, NOW + 10_000, 900)
    texts = [str(e) for e in errors] + [str(e.__cause__) for e in errors if e.__cause__]
    texts.append(caplog.text)
    texts += [str(row) for row in store._conn.execute("SELECT last_error FROM outbox")]
    assert [e.permanent for e in errors] == [False, False, False, True, True]
    assert "token (401)" in str(errors[3]) and "does not exist any more (404)" in str(errors[4])
    for text in texts:
        assert WEBHOOK_TOKEN not in text and "wrongToken_0123" not in text


def test_escape_and_truncate_helpers():
    assert escape("@everyone <@1>") == "\uff20everyone \\<\uff201\\>"   # no zero-width (Cf) trick
    assert escape("a_b*c`d|e~f>g") == "a\\_b\\*c\\`d\\|e\\~f\\>g"
    assert escape("# head\n- item") == "\\# head\n\\- item"
    assert escape("bell\x07 rtl\u202e") == "bell rtl"
    assert escape("see https://x.example/a") == "see hxxps\\[://\\]x\\[.\\]example/a"
    assert truncate("abcdef", 4) == "abc…" and truncate("abc", 4) == "abc"
    assert truncate("ab\\*c", 4) == "ab…"          # never a dangling backslash before the ellipsis
    said = speakable("Login from 203.0.113.9 and 2001:db8::1, see https://x.example/a?b=1; "
                     "id 123456789, load 3.14159")
    assert "203" not in said and "db8" not in said and "http" not in said
    assert "a long number" in said and "3.1" in said and "3.14" not in said
    assert len(speakable("word " * 100)) <= 200


def test_render_of_an_unknown_purpose_falls_back_to_an_alert():
    body = render(message([item()], purpose="alert"), NOW)
    assert body["allowed_mentions"] == {"parse": []} and len(body["embeds"]) == 1


def test_deliver_due_waits_for_discords_retry_after(discord, notifier, store):
    discord.script = [Reply(429, retry_after=42.5, via=True)]
    with store.transaction() as tx:
        msg_id = tx.enqueue(channel="discord", purpose="alert", severity="high",
                            payload=message([item()]).payload, now=NOW)
    (first,) = deliver_due(store, {"discord": notifier}, NOW, 900)
    assert first.status == "queued"
    assert deliver_due(store, {"discord": notifier}, NOW + 42.0, 900) == []
    (second,) = deliver_due(store, {"discord": notifier}, NOW + 42.5, 900)
    assert second.id == msg_id and second.status == "sent" and len(discord.accepted) == 1


def test_a_test_message_is_plainly_a_test(discord, notifier):
    from agent.trial_alert import test_payload

    payload = test_payload("nas", NOW)
    notifier.send(OutboxMessage(1, NOW, "discord", "test", None, "none", payload, 0, "queued"),
                  NOW)
    sent = discord.accepted[0].payload
    assert sent["content"] == "\U0001F9EA Test message from homelab-monitor on nas"
    assert "alert" not in sent["content"].lower() and "NONE" not in str(sent)
    assert sent["embeds"][0]["title"] == "Test from nas"
