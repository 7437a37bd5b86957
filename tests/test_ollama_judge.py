"""The Ollama judge against a loopback server speaking Ollama's API: it always returns a verdict."""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ollama
import pytest

from agent.cycle import Agent
from analysis.judge import make_judge
from analysis.ollama_judge import OllamaJudge, keep_alive_seconds
from analysis.reply import VERDICT_SCHEMA, parse_reply
from analysis.rules import final_severity
from foundation.context import DetectContext
from foundation.model import Severity
from foundation.settings import ConfigError
from tests.fakes import make_finding
from tests.fakes import ollama_server as fo
from tests.fakes.ollama_server import FakeOllama, verdict_json

TIMEOUT = 1.0
FLOORED = make_finding("nginx", floor=Severity.HIGH, summary="nginx is not running")
PLAIN = make_finding("203.0.113.9", "ssh_bruteforce", "auth_log", Severity.MEDIUM,
                     summary="12 failed logins", labels={"address": "203.0.113.9"})
FINDINGS = [FLOORED, PLAIN]


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(slow_seconds=10) as server:
        yield server


@pytest.fixture
def new_judge(fake: FakeOllama, make_settings) -> Callable[..., OllamaJudge]:
    def make(**overrides: Any) -> OllamaJudge:
        overrides.setdefault("OLLAMA_HOST", fake.url)
        overrides.setdefault("OLLAMA_TIMEOUT_SECONDS", TIMEOUT)
        kw = overrides.pop("_kw", {})
        return OllamaJudge(make_settings(**overrides), **kw)
    return make


@pytest.fixture
def ctx(make_settings, store) -> DetectContext:
    return DetectContext(make_settings(), time.time(), store)


def answer(severity: str, overall: str | None = None, **per: str) -> Callable[[dict], str]:
    """A model that answers ``severity`` for every id it sees (``per`` overrides by id)."""
    def reply(request: dict) -> str:
        doc = json.loads(verdict_json(request, severity))
        doc["severity"] = overall or severity
        for item in doc["findings"]:
            item["severity"] = per.get(item["id"], severity)
        return json.dumps(doc)
    return reply


@pytest.mark.parametrize("behaviour, by, chats, note", [
    (fo.VALID, "llm", 1, None),
    (fo.FENCED, "llm", 1, None),
    (fo.PROSE, "llm", 1, None),
    (fo.EMPTY, "rules", 2, "the answer is empty"),
    (fo.WHITESPACE, "rules", 2, "the answer is empty"),
    (fo.WRONG_ENUM, "rules", 2, "is not one of"),
    (fo.EXTRA_FIELDS, "rules", 2, "unexpected field"),
    (fo.TRUNCATED, "rules", 2, "no JSON object"),
    (fo.MISSING_MODEL, "rules", 0, "not found, try pulling it first (run: ollama pull"),
    (fo.SERVER_ERROR, "rules", 1, "Ollama answered 500"),
    (fo.SLOW, "rules", 1, f"no answer from Ollama within {TIMEOUT:.0f} s"),
])
def test_every_behaviour_gives_a_verdict(behaviour: str, by: str, chats: int, note: str | None,
                                         fake: FakeOllama, new_judge, ctx) -> None:
    fake.behaviour = behaviour
    t0 = time.monotonic()
    verdict = new_judge().judge(FINDINGS, {}, ctx)
    assert time.monotonic() - t0 < 2 * TIMEOUT + 1
    assert verdict.by == by
    assert len(fake.chats()) == chats
    assert (verdict.note is None) if note is None else (note in verdict.note)
    assert set(verdict.per_finding) == {f.fingerprint for f in FINDINGS}
    assert final_severity(FLOORED, verdict) is Severity.HIGH
    if by == "llm":
        assert verdict.model == "llama3.1:8b"
        assert verdict.per_finding[PLAIN.fingerprint].severity is Severity.LOW
    else:
        assert verdict.per_finding[PLAIN.fingerprint].severity is Severity.MEDIUM


def test_the_request_is_what_the_brief_asks(fake: FakeOllama, new_judge, ctx) -> None:
    new_judge(OLLAMA_NUM_CTX=4096, OLLAMA_KEEP_ALIVE="10m").judge(FINDINGS, {}, ctx)
    warm, chat = [b for p, b in fake.requests if p == "/api/chat"]
    assert warm["messages"] == [] and warm["keep_alive"] == "10m"
    assert chat["model"] == "llama3.1:8b" and chat["stream"] is False
    assert chat["format"] == VERDICT_SCHEMA
    assert chat["options"] == {"temperature": 0, "num_ctx": 4096}
    assert chat["keep_alive"] == "10m"
    assert [m["role"] for m in chat["messages"]] == ["system", "user"]


def test_a_retry_with_a_firmer_reminder_can_succeed(fake: FakeOllama, new_judge, ctx) -> None:
    replies = iter(["I think it is fine.", None])
    fake.behaviour = lambda req: next(replies) or verdict_json(req)
    verdict = new_judge().judge(FINDINGS, {}, ctx)
    assert verdict.by == "llm"
    second = fake.chats()[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert "rejected" in second[-1]["content"] and "no JSON object" in second[-1]["content"]


def test_llm_can_raise_but_never_lower_below_a_floor(fake: FakeOllama, new_judge, ctx) -> None:
    fake.behaviour = answer("none", **{PLAIN.fingerprint: "high"})
    verdict = new_judge().judge(FINDINGS, {}, ctx)
    assert verdict.by == "llm"
    assert final_severity(FLOORED, verdict) is Severity.HIGH
    assert final_severity(PLAIN, verdict) is Severity.HIGH
    assert verdict.severity is Severity.HIGH


def test_unknown_ids_in_the_answer_are_ignored(fake: FakeOllama, new_judge, ctx) -> None:
    def reply(request: dict) -> str:
        doc = json.loads(verdict_json(request, "low"))
        doc["findings"].append({"id": "ffffffffffffffff", "severity": "high", "reason": "x"})
        return json.dumps(doc)
    fake.behaviour = reply
    verdict = new_judge().judge(FINDINGS, {}, ctx)
    assert verdict.by == "llm" and "ffffffffffffffff" not in verdict.per_finding
    assert verdict.note == "1 unknown finding id(s) ignored"


def test_identical_questions_are_answered_from_the_cache(fake: FakeOllama, new_judge,
                                                         ctx) -> None:
    clock = [1000.0]
    judge = new_judge(LLM_CACHE_MINUTES=30, _kw={"clock": lambda: clock[0]})
    first = judge.judge(FINDINGS, {}, ctx)
    again = judge.judge(FINDINGS, {}, ctx)
    assert len(fake.chats()) == 1 and again.by == "llm"
    assert again.per_finding == first.per_finding and "from cache" in again.note
    judge.judge([FLOORED], {}, ctx)
    assert len(fake.chats()) == 2
    clock[0] += 31 * 60
    judge.judge(FINDINGS, {}, ctx)
    assert len(fake.chats()) == 3


def test_rules_answers_are_not_cached(fake: FakeOllama, new_judge, ctx) -> None:
    fake.behaviour = fo.SERVER_ERROR
    judge = new_judge()
    assert judge.judge(FINDINGS, {}, ctx).by == "rules"
    fake.behaviour = fo.VALID
    assert judge.judge(FINDINGS, {}, ctx).by == "llm"


def test_no_findings_no_question_unless_always_ask(fake: FakeOllama, new_judge, ctx) -> None:
    assert new_judge().judge([], {}, ctx).by == "rules"
    assert fake.requests == []
    verdict = new_judge(ALWAYS_ASK_LLM=True).judge([], {"ping": {"loss": 0}}, ctx)
    assert verdict.by == "llm" and len(fake.chats()) == 1


def test_a_cold_load_never_blocks_the_cycle(fake: FakeOllama, new_judge, ctx) -> None:
    fake.load_seconds = 8.0
    judge = new_judge(OLLAMA_TIMEOUT_SECONDS=0.5, OLLAMA_WARMUP_TIMEOUT_SECONDS=30)
    t0 = time.monotonic()
    cold = judge.judge(FINDINGS, {}, ctx)
    assert time.monotonic() - t0 < 4.0   # 0.5 s expected; blocked by the load: 8 s
    assert cold.by == "rules" and "still loading" in cold.note
    assert fake.chats() == []  # no verdict request that would time out and abort the load
    deadline = time.monotonic() + 60
    while "llama3.1:8b" not in fake.loaded and time.monotonic() < deadline:
        time.sleep(0.05)
    assert judge.judge(FINDINGS, {}, ctx).by == "llm"
    assert sum(1 for p, b in fake.requests if p == "/api/chat" and not b["messages"]) == 1


def test_a_timeout_makes_the_next_cycle_warm_up_again(fake: FakeOllama, new_judge, ctx) -> None:
    fake.behaviour = fo.SLOW
    judge = new_judge(OLLAMA_TIMEOUT_SECONDS=0.5)
    assert judge.judge(FINDINGS, {}, ctx).by == "rules"
    fake.behaviour = fo.VALID
    assert judge.judge(FINDINGS, {}, ctx).by == "llm"
    warmups = [b for p, b in fake.requests if p == "/api/chat" and not b["messages"]]
    assert len(warmups) == 2


def test_ollama_down_gives_rules_with_the_reason(make_settings, ctx) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    judge = OllamaJudge(make_settings(OLLAMA_HOST=f"http://127.0.0.1:{port}",
                                      OLLAMA_TIMEOUT_SECONDS=TIMEOUT))
    verdict = judge.judge(FINDINGS, {}, ctx)
    assert verdict.by == "rules" and "cannot reach Ollama" in verdict.note


def test_the_fake_speaks_the_api_streaming_and_not(fake: FakeOllama) -> None:
    client = ollama.Client(host=fake.url, timeout=5)
    assert [m.model for m in client.list().models] == ["llama3.1:8b"]
    assert client.ps().models == []
    messages = [{"role": "user", "content": f'{{"id":"{FLOORED.fingerprint}"}}'}]
    whole = client.chat("llama3.1:8b", messages, stream=False)
    chunks = list(client.chat("llama3.1:8b", messages, stream=True))
    assert len(chunks) > 2 and chunks[-1].done and chunks[-1].done_reason == "stop"
    assert not any(c.done for c in chunks[:-1])
    streamed = "".join(c.message.content for c in chunks)
    assert streamed == whole.message.content
    assert parse_reply(streamed, [FLOORED.fingerprint]).findings
    assert [m.model for m in client.ps().models] == ["llama3.1:8b"]
    with pytest.raises(ollama.ResponseError) as err:
        client.chat("mistral:7b", messages)
    assert err.value.status_code == 404
    import httpx
    assert httpx.get(f"{fake.url}/api/version").json() == {"version": "0.6.3"}


@pytest.mark.parametrize("behaviour, by", [(fo.VALID, "llm"), (fo.TRUNCATED, "rules"),
                                           (fo.SERVER_ERROR, "rules"), (fo.SLOW, "rules"),
                                           (fo.MISSING_MODEL, "rules")])
def test_the_cycle_always_completes_with_a_verdict(behaviour: str, by: str, fake: FakeOllama,
                                                   make_settings, store) -> None:
    fake.behaviour = behaviour
    settings = make_settings(OLLAMA_HOST=fake.url, OLLAMA_TIMEOUT_SECONDS=TIMEOUT,
                             COLLECTORS=["processes"], PROCESSES_TO_MONITOR=["zq9-not-running"])
    judge = make_judge(settings)
    assert isinstance(judge, OllamaJudge)
    report = Agent(settings, store, judge, {}).run_cycle()
    assert report["verdict"]["by"] == by
    assert report["verdict"]["severity"] == "high"
    assert [f["severity"] for f in report["findings"]] == ["high"]
    json.dumps(report)


def test_bad_operator_files_stop_the_judge_at_start(tmp_path: Path, make_settings) -> None:
    bad = tmp_path / "known.json"
    bad.write_text('{"known_issues": [{"id": "x"}]}')
    with pytest.raises(ConfigError, match="entry 'x': field description"):
        OllamaJudge(make_settings(KNOWN_ISSUES_PATH=bad))
    big = tmp_path / "CONSTRAINTS.md"
    big.write_text("x" * 70_000)
    with pytest.raises(ConfigError, match=r"CONSTRAINTS\.md: larger than"):
        OllamaJudge(make_settings(CONSTRAINTS_PATH=big))


@pytest.mark.parametrize("text, seconds", [("30m", 1800.0), ("90s", 90.0), ("1h", 3600.0),
                                           ("300", 300.0), ("0", 0.0), ("-1", None),
                                           ("forever", None)])
def test_keep_alive_parsing(text: str, seconds: float | None) -> None:
    assert keep_alive_seconds(text) == seconds
