"""One neutraliser (foundation.untrusted) for untrusted text on every channel: Discord, console, recap,
status, speech, chart labels and the LLM prompt.

What Discord makes clickable (the LINK regex below): scheme URLs ``http(s)://...`` in content and
embed text, ``<https://...>`` (linked, preview suppressed) and masked links ``[text](url)`` in
webhook messages and embed descriptions/fields (discord/discord-api-docs issues #6088 and #7721);
only http(s) (discordjs/discord.js #3646: "the Discord API only supports http(s) for its URLs");
``discord.gg/CODE`` and ``discord.com/invite/CODE`` invites. Terminals also link ``www.`` names.
"""
from __future__ import annotations

import contextlib
import io
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

import foundation.untrusted as untrusted
from agent import status
from alerts import console, discord, home_assistant, recap
from alerts.text import speakable
from analysis.prompt import build_prompt, sanitise
from foundation.store.data_storage import OutboxMessage, Store
from tests.fakes import make_finding
from tests.injection_payloads import HIDDEN_TEXT, PAYLOADS

NOW = 1_790_000_000.0
LINK = re.compile(r"(?i)(?:https?|ftp)://|\bwww\d{0,3}\.[a-z0-9]|\bdiscord(?:app)?\.(?:gg|com)\b")
MENTION = re.compile(r"(?i)@(everyone|here)|<@[!&]?\d+>|<#\d+>")
EVIL = ("Ж @everyone <@123456789012345678> <@&98765432109876543> <#112233445566778899> "
        "[click](https://evil.example/m) see https://evil.example/a and <https://evil.example/b> "
        "www.evil.example discord.gg/abcdef adm\u200bin \u202eenon\u202c \u2066x\u2069 "
        "\U000E0041\U000E0042 **bold** `code` [red]red[/red] :smile: $\\frac{$ \x1b[31m\r\n"
        "FAKE [ALERT] line")


def hidden(text: str, newlines: bool = False) -> list[str]:
    """Characters a reader cannot see or that reorder text (what the neutraliser must remove)."""
    out = []
    for c in text:
        if c == "\n" and newlines:
            continue
        if (unicodedata.category(c) in {"Cc", "Cf", "Cs", "Co", "Cn"}
                or untrusted._ignorable(ord(c))):
            out.append(f"U+{ord(c):04X}")
    return out


def item(text: str) -> dict[str, Any]:
    """A payload item whose every untrusted field is ``text``."""
    return {"fingerprint": "0123456789abcdef", "source": "processes", "kind": "process_missing",
            "key": text, "severity": "high", "floor": "high", "summary": text, "reason": text,
            "why": "new", "first_seen": NOW - 600, "labels": {"process": text, text[:50]: text},
            "metric": f"process.count[{text}]", "value": 0.0,
            # as agent.cycle tells it: the headline holds a label (untrusted); the spoken
            # sentence and what to do hold the process from the operator's own configuration
            "name": "Process not running", "headline": f"Process {text} is not running",
            "spoken": f"Process {text} is not running.",
            "action": f"Check the service (`systemctl status {text}`) and restart it."}


def outbox(payload: dict[str, Any], purpose: str = "alert") -> OutboxMessage:
    return OutboxMessage(1, NOW, "discord", purpose, None, "high",
                         {"purpose": purpose, "created_at": NOW, **payload}, 0, "queued")


def discord_texts(body: dict[str, Any]) -> list[str]:
    """Every string of a webhook body that Discord renders."""
    texts = [body["content"]]
    for embed in body["embeds"]:
        texts += [embed.get("title", ""), embed.get("description", ""),
                  embed.get("footer", {}).get("text", ""), embed.get("author", {}).get("name", "")]
        texts += [part for f in embed.get("fields", []) for part in (f["name"], f["value"])]
    return texts


def render_discord(text: str) -> str:
    alert = discord.render(outbox({"host": text, "items": [item(text)],
                                   "verdict": {"reason": text, "by": "llm"}}), NOW)
    resolved = discord.render(outbox({"host": text, "items": [item(text)]}, "resolved"), NOW)
    recap_msg = discord.render(outbox({"title": text, "summary": text, "severity": "high",
                                       "sections": [{"title": text, "lines": [text, text]}]},
                                      "recap"), NOW)
    return "\n".join(t for body in (alert, resolved, recap_msg) for t in discord_texts(body))


def render_console(text: str) -> str:
    return console.render({"purpose": "alert", "host": text, "items": [item(text or "x")]})


def render_console_recap(text: str) -> str:
    return console.render({"purpose": "recap", "text": text})


def render_cycle_summary(text: str) -> str:
    """`--once` without --json: the cycle summary printed on the terminal."""
    from agent.cli import summary_text

    return summary_text({
        "started_at": "2026-06-15T08:00:00", "host": "nas", "duration_s": 0.1, "notes": [],
        "collectors": {"processes": {"ok": False, "available": True, "error": text,
                                     "note": None, "duration_s": 0.0}},
        "findings": [{"severity": "high", "floor": "high", "kind": "process_missing",
                      "summary": text}],
        "verdict": {"severity": "high", "by": "llm", "reason": text, "note": text},
        "alerts": []})


def render_check(text: str) -> str:
    """`check`: one line per part, a server's answer quoted in the detail and the fix."""
    from unittest import mock

    from agent import check

    out = io.StringIO()
    outcomes = [("ollama", check.Outcome(False, text, f"see {text}"))]
    with mock.patch.object(check, "run_checks", lambda settings: outcomes), \
            contextlib.redirect_stdout(out):
        check.command(None, None)  # type: ignore[arg-type]
    return out.getvalue()


def render_speech(text: str) -> str:
    return home_assistant.announcement({"host": text, "items": [item(text)]})


def render_prompt(text: str) -> str:
    finding = make_finding(text, summary=text, labels={"user": text}, evidence=(text,))
    return build_prompt([finding], {"processes": {text: text}}, budget_tokens=3000,
                        boundary="b" * 32).user


def render_status(store: Store, text: str) -> str:
    with store.transaction() as tx:
        tx.upsert_finding("fp-evil", "processes", "process_missing", "k", "high", "high", text,
                          NOW, {})
    out = io.StringIO()
    screen = Console(file=out, width=400, color_system=None)
    for part in status.tables(store):
        screen.print(part)
    return out.getvalue()


def render_recap(store: Store, settings: Any, text: str) -> str:
    """The recap's text (console and --dry-run) for a day with one finding summarised ``text``,
    the LLM's summary also ``text``."""
    with store.transaction() as tx:
        tx.upsert_finding("fp-recap", "processes", "process_missing", "k", "high", "high", text,
                          NOW - 60, {})
    return recap.build(store, settings, NOW, lambda facts: text)["text"]


# name -> (renderer, line breaks allowed, mentions matter, links matter)
RENDERERS: dict[str, tuple[Callable[[str], str], bool, bool, bool]] = {
    "discord": (render_discord, True, True, True),
    "console": (render_console, True, False, True),   # its own lines; see assert_inert
    "console recap": (render_console_recap, True, False, True),
    "cycle summary": (render_cycle_summary, True, False, True),
    "check": (render_check, True, False, False),       # links kept: the operator's own URLs
    "speech": (render_speech, False, True, False),     # heard, not clicked; see assert_inert
    "prompt": (render_prompt, True, True, True),
    "prompt sanitise": (sanitise, False, True, True),
    "chart label": (untrusted.for_chart, False, False, True),
}


def assert_inert(name: str, out: str, newlines: bool, mentions: bool, links: bool = True
                 ) -> None:
    assert hidden(out, newlines) == [], name
    if links:
        assert not LINK.search(out), (name, LINK.search(out))
    if mentions:
        assert not MENTION.search(out), (name, MENTION.search(out))
    if name == "discord":
        assert "](" not in out  # no masked link: every bracket is escaped
    if name == "speech":
        assert not re.search(r"[/@<>\\\[\]]", out)  # no symbol is read out
    if name == "console":
        # head; headline; detail; what to do; who judged and the ids: no field forged a line
        assert len(out.split("\n")) == 5, out
    if name == "cycle summary":
        assert len(out.split("\n")) == 6, out
    if name == "check":
        assert len(out.split("\n")) == 3, out  # the part, its fix, the final newline


FRAGMENTS = ["https://", "http://", "HTTPS://", "https:\\\\", "www.", "discord.gg/", "@everyone",
             "@HERE", "<@", "<@&", "<#", "<@!", ">", "[", "](", ")", "**", "`", "|", "$", "\\",
             "_", ".", "/", ":", "evil", "example", "123456789012345678", "\u202e", "\u202a",
             "\u2066", "\u2067", "\u2069", "\u200b", "\u200d", "\u2060", "\ufeff", "\u061c",
             "\u200e", "\U000E0041", "\U000E0001", "\U000E007F", "\ufe0f", "\U000E0100", "\u3164",
             "\uffa0", "\u00ad", "\n", "\r", "\x1b[2J", "\x00", "\u2028", "\u0301", "\ue000",
             "\uff48\uff54\uff54\uff50\uff53\uff1a\uff0f\uff0f", "\uff20everyone", "\ufe6b"]
TEXT = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=24
                ).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT)
def test_no_channel_shows_hidden_characters_links_or_mentions(text: str) -> None:
    for name, (render, *checks) in RENDERERS.items():
        assert_inert(name, render(text), *checks)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXT)
def test_status_screen_is_inert(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    # SQLite cannot store a lone surrogate; the store's text never holds one.
    text = "".join(c for c in text if unicodedata.category(c) != "Cs")
    store = Store.open(tmp_path_factory.mktemp("status") / "monitor.db")
    try:
        out = render_status(store, text)
    finally:
        store.close()
    assert_inert("status", out, True, False)


@settings(max_examples=200, deadline=None)
@given(text=TEXT)
def test_neutralise_is_idempotent(text: str) -> None:
    once = untrusted.neutralise(text, multiline=True)
    assert untrusted.neutralise(once, multiline=True) == once


@pytest.mark.parametrize("name, payload", HIDDEN_TEXT + PAYLOADS,
                         ids=[n for n, _ in HIDDEN_TEXT + PAYLOADS])
def test_real_world_payloads_are_inert_everywhere(name: str, payload: str) -> None:
    for channel, (render, *checks) in RENDERERS.items():
        assert_inert(channel, render(payload), *checks)


def test_known_payloads_lose_exactly_what_hides() -> None:
    found = dict(HIDDEN_TEXT)
    n = untrusted.neutralise
    assert n(found["trojan_commenting_out"]) == ("if access_level != 'none': # Check if admin ' "
                                                 "and access_level != 'user")
    assert n(found["tag_smuggling"]) == "all good"           # the hidden instruction is gone
    assert n(found["variation_selector_smuggling"]) == "ok \U0001F600"
    assert n(found["zero_width_split_words"]) == "admin password root severity"
    assert n(found["zero_width_split_link"]) == "hxxps[://]evil[.]example/payload"
    assert n(found["fullwidth_link"]) == "hxxps[://]evil[.]example"
    assert n(found["bare_links"]) == ("banner: Apache see hxxps[://]evil[.]example/x and "
                                      "hxxp[://]203[.]0[.]113[.]7:8080/")
    assert n(found["invite_links"]) == ("join discord[.]gg/abcdef or discord[.]com/invite/abcdef "
                                        "or www[.]evil[.]example")
    assert n(found["forged_console_line"]) == "nginx [ALERT] nas: 0 finding(s) ok"
    assert n(found["forged_console_line"], multiline=True) == "nginx\n[ALERT] nas: 0 finding(s)\nok"
    assert n(found["hangul_filler_name"]) == ""
    # Ordinary text from real logs is left alone.
    line = "Failed password for invalid user admin from 203.0.113.7 port 40000 ssh2 (fe80::1%eth0)"
    assert n(line) == line
    assert n("Grüße, 東京, Ελληνικά, emoji \U0001F600") == "Grüße, 東京, Ελληνικά, emoji \U0001F600"


def test_discord_mentions_and_markdown_are_inert_but_readable() -> None:
    out = untrusted.for_discord("@everyone <@123> <@&7> <#9> **x** [a](https://e.example)")
    assert out == ("\uff20everyone \\<\uff20123\\> \\<\uff20&7\\> \\<\uff039\\> \\*\\*x\\*\\* "
                   "\\[a\\]\\(hxxps\\[://\\]e\\[.\\]example\\)")


def test_chart_labels_cannot_break_or_hide_in_the_chart() -> None:
    from alerts import chart

    assert untrusted.for_chart("$\\frac{$") == "\\$\\\\frac{\\$"
    assert untrusted.for_chart("_nolegend_") == " _nolegend_"
    # Before the neutraliser, this series key raised ParseSyntaxException and cost the recap.
    png, _ = chart.render_png({"Temperatures": {"sensor.temperature_c[$\\frac{$]": [(0.0, 1.0),
                                                                                  (60.0, 2.0)]}},
                              "t", 0.0, 100.0)
    assert png.startswith(b"\x89PNG")


def test_every_channel_goes_through_the_one_neutraliser(monkeypatch: pytest.MonkeyPatch,
                                                        store: Store, make_settings) -> None:
    """Teach foundation.untrusted one more character to drop: every channel drops it too, so each uses
    that very function object, not a copy."""
    renders = {name: spec[0] for name, spec in RENDERERS.items()}
    renders["status"] = lambda text: render_status(store, text)
    settings = make_settings(HOST_NAME="nas")
    renders["recap"] = lambda text: render_recap(store, settings, text)
    for name, render in renders.items():
        assert "Ж" in render(EVIL), name           # the marker is an ordinary letter ...
    original = untrusted._keep
    monkeypatch.setattr(untrusted, "_keep", lambda c, m: "" if c == "Ж" else original(c, m))
    for name, render in renders.items():
        assert "Ж" not in render(EVIL), name       # ... until the neutraliser drops it


def test_one_crafted_finding_on_every_channel(store: Store) -> None:
    defanged = "hxxps[://]evil[.]example/a"
    outputs = {"discord": render_discord(EVIL), "console": render_console(EVIL),
               "prompt": render_prompt(EVIL), "status": render_status(store, EVIL)}
    assert defanged.replace("[", "\\[").replace("]", "\\]") in outputs["discord"]
    for name in ("console", "prompt", "status"):
        assert defanged in outputs[name], name
    for name, out in outputs.items():
        checks = RENDERERS[name][1:] if name in RENDERERS else (True, False)
        assert_inert(name, out, *checks)
    # The attacker's line break forged no line, and rich read no markup or emoji code.
    assert not any(line.lstrip().startswith("FAKE") for line in outputs["console"].splitlines())
    assert "[red]red[/red]" in outputs["status"] and ":smile:" in outputs["status"]
    assert "adm" + "in" in outputs["console"]        # the zero-width split word is whole again


def test_trusted_text_is_not_mangled() -> None:
    body = discord.render(outbox({"host": "nas", "items": [item("nginx")],
                                  "verdict": {"reason": "rules", "by": "rules"}}), NOW)
    assert body["content"].startswith("\U0001F534 **HIGH alert on nas**")
    since = [f["value"] for f in body["embeds"][0]["fields"] if f["name"] == "Since"]
    assert since == [f"<t:{int(NOW - 600)}:R>"]      # Discord's timestamp markup still works
    assert body["embeds"][0]["footer"]["text"] == "process_missing · process.count · 01234567 · new"
    said = speakable("Watched process 'nginx' is not running.")
    assert said == "Watched process 'nginx' is not running."
    assert render_console("nginx").splitlines()[1].endswith("Process nginx is not running")


def test_recap_lines_are_neutralised_when_built(store: Store, make_settings) -> None:
    text = render_recap(store, make_settings(HOST_NAME="nas"), EVIL)
    assert_inert("recap", text, True, False)
    assert text.count("hxxps[://]evil[.]example/a") == 2      # the LLM summary and the example
    assert not any(line.lstrip().startswith("FAKE") for line in text.splitlines())


def test_the_neutraliser_is_linear_on_long_runs_without_a_separator() -> None:
    """300 kB of scheme characters (an LLM's garbage answer) took minutes with an unbounded scheme
    (each start re-scanned the run); the bound is several hundred times the ~0.3 s it takes now."""
    import time

    from analysis.prompt import sanitise
    from foundation.untrusted import neutralise

    for text in ("x" * 300_000, "a+b." * 75_000, "x" * 299_990 + "https://a.example/"):
        t0 = time.monotonic()
        out = neutralise(text)
        assert time.monotonic() - t0 < 60, f"{text[:8]}...: super-linear"
        assert "https://" not in out and len(out) <= len(text) + 16
    t0 = time.monotonic()
    assert len(sanitise("x" * 300_000, 500)) == 500
    assert time.monotonic() - t0 < 60


def test_a_server_answer_quoted_in_a_delivery_error_is_one_line_and_keeps_no_secret(
        store: Store) -> None:
    """Home Assistant echoes the sentence it refused (built from logs): the error the outbox logs
    and stores is one line without hidden characters, and an invisible inside a secret cannot
    keep it from being redacted."""
    from alerts.outbox import DeliveryError, deliver_due
    from foundation.redact import register_secret

    register_secret("hook-secret-5d41402abc")

    class Echoing:
        channel = "home_assistant"

        def send(self, message: OutboxMessage, now: float) -> None:
            raise DeliveryError(f"refused: hook-\u200bsecret-5d41402abc {EVIL}", permanent=True)

    with store.transaction() as tx:
        tx.enqueue("home_assistant", "alert", "high", {"items": []}, now=1.0, dedupe_key="echo")
    [result] = deliver_due(store, {"home_assistant": Echoing()}, 10.0, 900)
    assert result.status == "failed" and result.error is not None
    assert hidden(result.error) == [] and "\n" not in result.error, result.error
    assert "secret" not in result.error and "***" in result.error


def test_the_prompt_defangs_links_its_own_rewrites_would_form() -> None:
    """Found by hypothesis: "www.＠everyone" -> NFKC "www.@everyone" -> "www.at-everyone", a link."""
    from analysis.prompt import sanitise

    assert "www.at" not in sanitise("www.\uff20everyone")
    assert "www.a.example" not in sanitise("www.BOUNDARYa.example", forbidden="BOUNDARY")


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(max_codepoint=0x7F)), multiline=st.booleans())
def test_the_ascii_fast_path_keeps_what_the_character_rules_keep(text: str,
                                                                 multiline: bool) -> None:
    assert untrusted._drop(text, multiline) == "".join(
        untrusted._keep(c, multiline) for c in text)
