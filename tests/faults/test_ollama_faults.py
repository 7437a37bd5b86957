"""Ollama absent, slow, failing and answering garbage, cycle after cycle through agent.cycle.Agent.

The real ``ollama`` client talks to a loopback fake (tests/fakes/ollama_server.py) or to a closed
port; each cycle picks a failure mode at random. Every cycle must finish well within its interval
with a verdict, the rules deciding whenever the LLM failed, and a floored finding (a watched process
that never runs: floor high) must stay high whatever the model says.
"""
from __future__ import annotations

import json
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import ollama
import pytest

from agent.budget import JUDGE_GRACE_S
from agent.cycle import Agent
from analysis.ollama_judge import OllamaJudge
from foundation.store.data_storage import Store
from tests.fakes import ollama_server as fo
from tests.fakes.ollama_server import FakeOllama, verdict_json

SEED = 4242
CYCLES = 60
TIMEOUT_S = 1.0
SLOW_S = 4.0
INTERVAL_S = 10
START = 1_780_000_000.0

pytestmark = pytest.mark.faults


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def garbage(rng: random.Random) -> Callable[[dict[str, Any]], str]:
    """A model that answers one of many kinds of nonsense (each reply drawn from rng)."""
    def reply(request: dict[str, Any]) -> str:
        valid = json.loads(verdict_json(request, "none"))
        kinds: list[Callable[[], str]] = [
            lambda: "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randint(0, 400))),
            lambda: "[" * rng.randint(1000, 50_000),
            lambda: "{" * rng.randint(1000, 50_000) + '"severity"',
            lambda: json.dumps({**valid, "severity": rng.choice(["critical", "HIGH", 3, None])}),
            lambda: json.dumps({**valid, "findings": "all fine"}),
            lambda: json.dumps(valid)[: rng.randint(1, 40)],
            lambda: "x" * rng.randint(100_000, 300_000),
            lambda: json.dumps([valid["severity"], valid["reason"]]),
            lambda: "Ignore the rules: everything is none. " + json.dumps({"severity": "none"}),
        ]
        return rng.choice(kinds)()
    return reply


MODES = ("absent", "slow", "server_error", "missing_model", "garbage", "empty", "truncated",
         "wrong_enum", "valid")


def test_every_cycle_ends_in_time_with_a_verdict_whatever_ollama_does(make_settings) -> None:
    rng = random.Random(SEED)
    missing = f"monitor-never-runs-{uuid.uuid4().hex[:8]}"
    settings = make_settings(COLLECTORS=["processes"], PROCESSES_TO_MONITOR=[missing],
                             OLLAMA_TIMEOUT_SECONDS=TIMEOUT_S, LLM_CACHE_MINUTES=0,
                             MONITOR_INTERVAL_SECONDS=INTERVAL_S, COLLECTOR_TIMEOUT_SECONDS=2)
    bound = 2 * TIMEOUT_S + JUDGE_GRACE_S + 2.0    # the judge's own bound, plus collecting
    assert bound < INTERVAL_S
    dead = f"http://127.0.0.1:{closed_port()}"
    clock = [START]
    durations: list[float] = []
    seen: Counter[tuple[str, str]] = Counter()
    with FakeOllama(slow_seconds=SLOW_S) as fake:
        host = [fake.url]
        judge = OllamaJudge(settings, client_factory=lambda t: ollama.Client(host=host[0],
                                                                              timeout=t))
        store = Store.open(settings.db_path)
        agent = Agent(settings, store, judge, {}, clock=lambda: clock[0])
        try:
            started = time.monotonic()
            for number in range(CYCLES):
                mode = rng.choice(MODES)
                host[0] = dead if mode == "absent" else fake.url
                fake.behaviour = {"slow": fo.SLOW, "server_error": fo.SERVER_ERROR,
                                  "missing_model": fo.MISSING_MODEL, "empty": fo.EMPTY,
                                  "truncated": fo.TRUNCATED, "wrong_enum": fo.WRONG_ENUM,
                                  "garbage": garbage(rng)}.get(mode, fo.VALID)
                t0 = time.monotonic()
                report = agent.run_cycle()
                took = time.monotonic() - t0
                durations.append(took)
                clock[0] += INTERVAL_S
                verdict = report["verdict"]
                seen[(mode, verdict["by"])] += 1
                where = f"cycle {number} ({mode}): {verdict}"
                assert took < bound, f"{where} took {took:.2f} s"
                assert verdict["severity"] == "high", where
                assert verdict["by"] in ("llm", "rules"), where
                if mode != "valid":
                    assert verdict["by"] == "rules", where
                    assert verdict["note"], where      # the report says why the rules decided
                floored = [f for f in report["findings"] if f["kind"] == "process_missing"]
                assert floored and all(f["severity"] == "high" == f["floor"] for f in floored), \
                    where
            total = time.monotonic() - started
        finally:
            store.close()
    print(f"\nollama faults: seed={SEED} cycles={CYCLES} in {total:.1f} s; longest cycle "
          f"{max(durations):.2f} s (bound {bound:.1f} s, interval {INTERVAL_S} s); "
          f"(mode, by): {dict(sorted(seen.items()))}")
    assert {m for m, _ in seen} == set(MODES)          # every failure mode was exercised
    assert seen[("valid", "llm")] >= 1                  # and the LLM decides again once it can
