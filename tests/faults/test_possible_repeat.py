"""A delivery whose outcome is unknown is re-sent marked as a possible repeat.

The agent used to die now and then between Discord posting a message and the outbox marking it
sent (a SIGKILL with a slow Discord doubled 8 of 23 alerts), and the re-sent copy looked like a
new alert. Here the fake Discord holds a killed run's POST (posting it, answering late) so the
kill always lands inside the window, whatever the load. Now the outbox records "attempt started"
durably before the network call; a message found with an attempt started and no outcome is
re-sent with "(possible repeat ...)" in the text the operator sees (Discord content, console line,
Home Assistant sentence). A read timeout (the POST went out, no answer came) counts as an unknown
outcome too.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from alerts.console import REPEAT_NOTE, ConsoleNotifier
from alerts.discord import DiscordNotifier, render
from alerts.home_assistant import announcement
from alerts.outbox import deliver_due
from foundation.store.data_storage import OutboxMessage, Store
from tests.conftest import ROOT
from tests.fakes.discord_server import FakeDiscord, Reply
from tests.procs import unique_name

pytestmark = pytest.mark.faults

HOLD_S = 15.0         # a killed run's POST: Discord posts it, but answers only this late
RUNS = 8              # agent runs; every other one is killed while its POST is in flight
WAIT_S = 120.0        # for an agent run to reach Discord or to end, even on a loaded machine
NOW = 1_800_000_000.0


def _payload(summary: str) -> dict[str, Any]:
    return {"purpose": "alert", "host": "nas", "created_at": NOW,
            "verdict": {"severity": "high", "reason": "r", "by": "rules"},
            "items": [{"fingerprint": "ab" * 16, "source": "processes", "kind": "process_missing",
                       "key": "nginx", "severity": "high", "floor": "high", "summary": summary,
                       "reason": "rule severity", "why": "new", "first_seen": NOW, "labels": {},
                       "metric": None, "value": None, "baseline": None}]}


def _enqueue(store: Store, summary: str = "process nginx is not running") -> int:
    with store.transaction() as tx:
        return tx.enqueue(channel="console", purpose="alert", severity="high",
                          payload=_payload(summary), now=NOW, dedupe_key=summary)


def test_an_attempt_left_open_is_a_possible_repeat_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    store = Store.open(path)
    cut, clean = _enqueue(store, "cut off"), _enqueue(store, "never tried")
    store.mark_started(cut, NOW)
    store._conn.close()                      # the process dies: no mark_sent, no clean close
    store = Store.open(path)
    try:
        flags = {m.id: m.possible_repeat for m in store.due_messages(NOW + 1)}
        assert flags == {cut: True, clean: False}
        store.mark_started(cut, NOW + 1)     # the re-send fails, with a known outcome ...
        store.mark_retry(cut, NOW + 2, "503")
        # ... yet the first attempt's outcome is still unknown: the marker stays
        assert {m.id: m.possible_repeat for m in store.due_messages(NOW + 3)}[cut] is True
        store.mark_started(clean, NOW + 3)
        store.mark_sent(clean, NOW + 4)      # a normal attempt leaves nothing behind
        assert store.outbox_counts() == {"queued": 1, "sent": 1}
    finally:
        store.close()


def test_every_channel_says_possible_repeat() -> None:
    message = OutboxMessage(1, NOW, "discord", "alert", None, "high",
                            _payload("process nginx is not running"), 1, "queued", True)
    fresh = OutboxMessage(2, NOW, "discord", "alert", None, "high",
                          _payload("process nginx is not running"), 0, "queued")
    assert "possible repeat" in render(message, NOW)["content"]
    assert "possible repeat" not in render(fresh, NOW)["content"]
    assert announcement(message.payload, 0.0, repeat=True).startswith("Possibly a repeat.")
    assert "repeat" not in announcement(fresh.payload, 0.0)

    class Out:
        text = ""

        def write(self, text: str) -> None:
            self.text += text

        def flush(self) -> None:
            return

    out = Out()
    ConsoleNotifier(out).send(message, NOW)  # type: ignore[arg-type]
    assert REPEAT_NOTE in out.text.splitlines()[0]


def test_a_read_timeout_makes_the_retry_a_possible_repeat(make_settings: Any) -> None:
    with FakeDiscord() as discord:
        settings = make_settings(DISCORD_WEBHOOK_URL=discord.url)
        store = Store.open(settings.db_path)
        try:
            with store.transaction() as tx:
                tx.enqueue(channel="discord", purpose="alert", severity="high",
                           payload=_payload("process nginx is not running"), now=NOW,
                           dedupe_key="x")
            # Discord posts the message but answers after the client's timeout (0.2 s)
            discord.script = [Reply(200, delay_s=10.0)]   # far past 0.2 s, on any load
            notifiers = {"discord": DiscordNotifier(settings, timeout_s=0.2)}
            [first] = deliver_due(store, notifiers, NOW, 60)
            assert first.status == "queued" and "did not answer" in (first.error or "")
            deadline = time.monotonic() + WAIT_S
            while not discord.accepted and time.monotonic() < deadline:
                time.sleep(0.05)
            [second] = deliver_due(store, notifiers, NOW + 3600, 60)
            assert second.status == "sent"
        finally:
            store.close()
    contents = [a.payload["content"] for a in discord.accepted]
    assert len(contents) == 2
    assert "possible repeat" not in contents[0] and "possible repeat" in contents[1]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _identity(payload: dict[str, Any]) -> tuple[str, ...]:
    """What tells alert messages apart: their creation time and findings (the embeds' footers)."""
    return tuple(sorted([payload["embeds"][0]["timestamp"],
                         *(e["footer"]["text"] for e in payload["embeds"])]))


def test_sigkill_during_a_slow_delivery_loses_nothing_and_marks_each_double(
        tmp_path: Path) -> None:
    names: list[str] = []
    killed = 0
    with FakeDiscord() as discord:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
               "MONITOR_DATA_DIR": str(tmp_path / "data"), "MONITOR_COLLECTORS": "processes",
               "MONITOR_DISCORD_WEBHOOK_URL": discord.url,
               "MONITOR_OLLAMA_HOST": f"http://127.0.0.1:{_closed_port()}"}
        for run in range(RUNS + 1):
            if run < RUNS:
                names.append(unique_name("never-runs"))   # a new high finding, a new alert
            env["MONITOR_PROCESSES_TO_MONITOR"] = ",".join(names)
            before = discord.requests
            kill = run % 2 == 0 and run < RUNS
            # the held answer leaves the kill all the time it needs, on any load
            discord.script = [Reply(200, delay_s=HOLD_S)] if kill else []
            proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py"), "--once"],
                                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            try:
                if kill:
                    deadline = time.monotonic() + WAIT_S
                    while discord.requests == before and time.monotonic() < deadline:
                        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                        time.sleep(0.005)
                    assert discord.requests > before, "the run never reached Discord"
                    os.kill(proc.pid, signal.SIGKILL)     # mid-POST: Discord will post it
                    killed += 1
                _, err = proc.communicate(timeout=WAIT_S)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            if not kill:
                assert proc.returncode == 0, err
        deadline = time.monotonic() + WAIT_S               # the held POSTs land too
        while len(discord.accepted) < discord.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        copies: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for accepted in discord.accepted:
            copies[_identity(accepted.payload)].append(accepted.payload["content"])

    conn = sqlite3.connect(tmp_path / "data" / "monitor.db")
    try:
        rows = conn.execute("SELECT status, payload FROM outbox WHERE channel = 'discord'").fetchall()
    finally:
        conn.close()
    assert {status for status, _ in rows} == {"sent"}                 # nothing left behind
    stored = {json.loads(p)["created_at"] for _, p in rows}
    assert len(copies) == len(stored) == RUNS                         # nothing lost
    doubled = {k: v for k, v in copies.items() if len(v) > 1}
    assert len(doubled) == killed                                     # each kill: one double
    for contents in copies.values():   # the held original may land after its repeat
        assert sum("possible repeat" not in c for c in contents) == 1, contents
    print(f"\npossible repeat: {RUNS} alerts, {killed} runs killed mid-POST, "
          f"{len(doubled)} doubled, each double's other copy marked")
