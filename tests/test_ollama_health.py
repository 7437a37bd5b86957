"""Health of the agent's own Ollama, against the loopback fake Ollama and closed or mute ports."""
from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from analysis import detect_llm_runtimes
from collectors import llm_runtimes, ollama_health
from foundation.context import CollectContext, DetectContext
from foundation.redact import redact
from foundation.store.data_storage import Store
from tests.fakes.ollama_server import FakeOllama


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mute_port() -> Iterator[int]:
    """A loopback port that accepts connections (backlog) but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def test_healthy_ollama_with_the_model_present_then_loaded() -> None:
    with FakeOllama(models=["llama3.1:8b", "qwen2.5:7b"]) as fake:
        facts = ollama_health.check(fake.url, "llama3.1:8b")
        assert facts["reachable"] and facts["version"] == "0.6.3"
        assert facts["model_present"] is True and facts["model_loaded"] is False
        assert 0 < facts["latency_ms"] < 2000
        assert ollama_health.problem(facts) is None
        # loading the model (an empty chat) makes /api/ps list it
        requests.post(f"{fake.url}/api/chat", json={"model": "llama3.1:8b", "messages": []},
                      timeout=5).raise_for_status()
        assert ollama_health.check(fake.url, "llama3.1:8b")["model_loaded"] is True
        assert [p for p, _ in fake.requests if p.startswith("/api/") and p != "/api/chat"] == [
            "/api/version", "/api/tags", "/api/ps"] * 2


def test_missing_model_says_how_to_pull_it() -> None:
    with FakeOllama(models=["qwen2.5:7b"]) as fake:
        facts = ollama_health.check(fake.url, "llama3.1:8b")
    assert facts["reachable"] and facts["model_present"] is False
    assert "`ollama pull llama3.1:8b`" in ollama_health.problem(facts)


def test_nothing_listening_is_unreachable_and_says_whether_ollama_is_installed() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    facts = ollama_health.check(url, "llama3.1:8b", which=lambda name: None)
    assert time.monotonic() - started < 2.5
    assert facts["reachable"] is False and facts["installed"] is False
    assert facts["error"] == "connection refused or host unreachable"
    assert "does not seem to be installed" in ollama_health.problem(facts)
    installed = ollama_health.check(url, "llama3.1:8b", which=lambda name: "/usr/bin/ollama")
    assert "systemctl start ollama" in ollama_health.problem(installed)


def test_a_mute_server_is_abandoned_within_the_timeout(mute_port: int) -> None:
    started = time.monotonic()
    facts = ollama_health.check(f"http://127.0.0.1:{mute_port}", "m", timeout_s=0.3)
    assert time.monotonic() - started < 10.0  # a few times 0.3 s; unbounded: forever
    assert facts["reachable"] is False and facts["error"] == "no answer in time"


@pytest.mark.parametrize(("answers", "present", "error"), [
    ({"/api/tags": {"models": [{"model": "llama3.1:latest"}]}}, False, None),
    ({"/api/tags": {"models": [{"name": "llama3.1:8b"}, "junk", {"name": 5}]}}, True, None),
    ({"/api/tags": ["not", "a", "dict"]}, False, None),
    ({"/api/tags": ollama_health.OllamaError("HTTP 500")}, None, "/api/tags: HTTP 500"),
])
def test_odd_answers_are_read_safely(answers: dict[str, Any], present: bool | None,
                                     error: str | None) -> None:
    def get(url: str, timeout: float) -> Any:
        path = url.split("11434", 1)[1]
        answer = answers.get(path, {"version": "0.5.1", "models": []})
        if isinstance(answer, Exception):
            raise answer
        return answer

    facts = ollama_health.check("http://127.0.0.1:11434/", "llama3.1:8b", get=get)
    assert facts["model_present"] is present and facts["error"] == error
    json.dumps(facts)


def test_model_names_without_a_tag_mean_latest() -> None:
    assert ollama_health.same_model("llama3.1", "llama3.1:latest")
    assert ollama_health.same_model("library/Llama3.1:8B", "library/llama3.1:8b")
    assert not ollama_health.same_model("llama3.1:8b", "llama3.1:70b")
    assert ollama_health.same_model("my.registry:5000/m", "my.registry:5000/m:latest")


def test_the_finding_key_and_report_carry_no_credentials(make_settings: Any, store: Store) -> None:
    port = closed_port()
    settings = make_settings(OLLAMA_HOST=f"http://admin:s3cr3t-pass@127.0.0.1:{port}/base?x=1")
    result = llm_runtimes.collect(CollectContext(settings, time.time(), {}))
    findings = detect_llm_runtimes.detect(result, DetectContext(settings, time.time(), store))
    down = [f for f in findings if f.kind == "llm_unavailable"]
    assert len(down) == 1
    assert down[0].key == f"http://127.0.0.1:{port}" and down[0].severity.value == "medium"
    assert "s3cr3t" not in json.dumps(result.observations) + repr(down[0])
    assert ollama_health.public_host("http://u:p@[::1]:11434/x") == "http://[::1]:11434"
    assert "tok3n" not in redact(str(ollama_health.OllamaError("token=tok3n")))


def test_collect_with_a_healthy_ollama_has_no_llm_finding(make_settings: Any, store: Store) -> None:
    with FakeOllama() as fake:
        settings = make_settings(OLLAMA_HOST=fake.url)
        result = llm_runtimes.collect(CollectContext(settings, time.time(), {}))
    health = result.observations["ollama"]
    assert health["reachable"] and health["model_present"] and health["problem"] is None
    # a cycle asks two things; whether the model is loaded is for `check` (model_loaded: None)
    assert [p for p, _ in fake.requests] == ["/api/version", "/api/tags"]
    assert health["model_loaded"] is None
    assert [s.metric for s in result.samples if s.metric == "ollama.latency_ms"] == [
        "ollama.latency_ms"]
    findings = detect_llm_runtimes.detect(result, DetectContext(settings, time.time(), store))
    assert not [f for f in findings if f.kind == "llm_unavailable"]
