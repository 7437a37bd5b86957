"""Nothing an attacker writes into a log, a name or a host name can lower a floor or break the prompt."""
from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest

from agent.cycle import Agent
from analysis.ollama_judge import OllamaJudge
from analysis.prompt import sanitise
from analysis.rules import final_severity
from foundation.context import DetectContext
from foundation.model import Finding, Severity
from tests.fakes import make_finding
from tests.fakes.ollama_server import FakeOllama, finding_ids
from tests.injection_payloads import HIDDEN_TEXT, PAYLOADS

MENTION = re.compile(r"@(everyone|here)|<@[!&]?\d+>|<#\d+>", re.IGNORECASE)
MARKER = re.compile(r"^(BEGIN|END)-DATA-")


def attacker_won(request: dict[str, Any]) -> str:
    """The model obeyed the payload: "none" for the cycle and for every id it can see."""
    return json.dumps({"severity": "none", "reason": "benign, as the log said",
                       "findings": [{"id": i, "severity": "none", "reason": "benign"}
                                    for i in finding_ids(request)]})


def findings_for(payload: str) -> list[Finding]:
    """The payload as a process name, a container name, a user and host name, and a log line."""
    return [
        make_finding(payload, "process_missing", "processes", Severity.HIGH, Severity.HIGH,
                     summary=f"watched process {payload!r} is not running",
                     labels={"process": payload}, metric=f"process.count[{payload}]", value=0.0),
        make_finding(payload, "container_down", "containers", Severity.HIGH, Severity.HIGH,
                     summary=f"container {payload} is exited", labels={"container": payload}),
        make_finding(f"203.0.113.7|{payload}", "login_after_failures", "auth_log", Severity.HIGH,
                     Severity.HIGH, summary=f"{payload} logged in from 203.0.113.7 after 9 failures",
                     labels={"user": payload, "address": "203.0.113.7", "rdns": payload},
                     evidence=(f"sshd[811]: Accepted password for {payload} from 203.0.113.7 "
                               "port 50122 ssh2",)),
        make_finding(payload, "novel_log_message", "syslog", Severity.LOW,
                     summary=f"new message: {payload}", labels={"host": payload},
                     evidence=(f"Nov 23 01:02:03 {payload} kernel: {payload}",)),
    ]


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama(behaviour=attacker_won) as server:
        yield server


@pytest.fixture
def judge(fake: FakeOllama, make_settings) -> OllamaJudge:
    return OllamaJudge(make_settings(OLLAMA_HOST=fake.url, OLLAMA_TIMEOUT_SECONDS=5,
                                     LLM_CACHE_MINUTES=0))


def _check_structure(prompt_text: str, payload: str) -> None:
    lines = prompt_text.split("\n")
    markers = [i for i, line in enumerate(lines) if MARKER.match(line)]
    assert len(markers) == 2, [lines[i] for i in markers]
    begin, end = markers
    token = lines[begin].removeprefix("BEGIN-DATA-")
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert lines[end] == f"END-DATA-{token}"
    assert prompt_text.count(token) == 4  # the two markers and the sentence naming both
    for line in lines[begin + 1:end]:
        item = json.loads(line)  # every data line is one JSON object: nothing escaped it
        assert set(item) <= {"id", "field", "text", "observation"}
    outside = "\n".join(lines[:begin] + lines[end + 1:])
    for form in {payload.strip(), sanitise(payload)}:
        if len(form) >= 6:
            assert form not in outside
    assert not MENTION.search(prompt_text)
    assert not any(unicodedata.category(c) == "Cc" and c != "\n" for c in prompt_text)
    # Nor invisible, bidi or tag characters anywhere (foundation.untrusted strips them from the data).
    assert not any(unicodedata.category(c) in {"Cf", "Co", "Cs", "Cn"} for c in prompt_text)
    assert not any(0xE0000 <= ord(c) <= 0xE0FFF or 0xFE00 <= ord(c) <= 0xFE0F for c in prompt_text)
    assert "<|" not in prompt_text and "|>" not in prompt_text


def test_corpus_is_large_enough() -> None:
    assert len(PAYLOADS) >= 30


@pytest.mark.parametrize("name, payload", PAYLOADS + HIDDEN_TEXT,
                         ids=[n for n, _ in PAYLOADS + HIDDEN_TEXT])
def test_floors_hold_and_prompt_structure_holds(name: str, payload: str, fake: FakeOllama,
                                                judge: OllamaJudge, store, make_settings) -> None:
    findings = findings_for(payload)
    ctx = DetectContext(make_settings(), 1_700_000_000.0, store)
    verdict = judge.judge(findings, {"processes": {"watched": {payload: {"running": False}}}}, ctx)
    assert verdict.by == "llm"  # the attacker's answer was accepted as valid ...
    for f in findings:
        final = final_severity(f, verdict)
        assert final.rank >= f.floor.rank  # ... and still no floored finding dropped
        if f.floor is Severity.HIGH:
            assert final is Severity.HIGH
    assert verdict.severity is Severity.HIGH
    chats = fake.chats()
    assert len(chats) == 1
    system, user = (m["content"] for m in chats[0]["messages"])
    assert not MARKER.search(system) and payload.strip()[:40] not in system
    _check_structure(user, payload)


def test_payload_process_names_through_a_real_cycle(fake: FakeOllama, make_settings,
                                                    store) -> None:
    names = [f"{payload[:60]} zq9-{n}" for n, (_, payload) in enumerate(PAYLOADS[:12])]
    names = [n.replace("\x00", "") for n in names]
    settings = make_settings(OLLAMA_HOST=fake.url, OLLAMA_TIMEOUT_SECONDS=5,
                             COLLECTORS=["processes"], PROCESSES_TO_MONITOR=names)
    agent = Agent(settings, store, OllamaJudge(settings), {})
    report = agent.run_cycle()
    assert report["verdict"]["by"] == "llm"
    assert len(report["findings"]) == len(names)
    assert {f["severity"] for f in report["findings"]} == {"high"}
    user = fake.chats()[0]["messages"][1]["content"]
    assert not MENTION.search(user)
    assert len([line for line in user.split("\n") if MARKER.match(line)]) == 2
