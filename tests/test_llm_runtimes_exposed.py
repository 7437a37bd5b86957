"""llm_exposed on real processes: a fake Ollama under the name "ollama" listening on every
interface (the probe itself asks 127.0.0.1), on loopback only, or behind a password; and a
model server that is no runtime, on a well-known port. Every request goes to 127.0.0.1."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cycle import Agent
from alerts.console import ConsoleNotifier
from analysis import detect_llm_runtimes
from analysis.rules import RulesJudge
from collectors import llm_exposure, llm_runtimes
from foundation.context import CollectContext, DetectContext
from foundation.model import Severity
from foundation.store.data_storage import Store
from tests.procs import stop

SERVER = Path(__file__).resolve().parent / "fakes" / "llm_servers.py"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Start = Callable[..., tuple[subprocess.Popen, int, Path]]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Start]:
    """A fake model server in its own process, named ``name`` (a runtime's name, or not)."""
    started: list[subprocess.Popen] = []

    def start(kind: str, host: str, name: str = "ollama") -> tuple[subprocess.Popen, int, Path]:
        folder = tmp_path / f"bin{len(started)}"
        folder.mkdir()
        link = folder / name
        link.symlink_to(os.path.realpath(sys.executable))
        log = tmp_path / f"requests{len(started)}.log"
        proc = subprocess.Popen([str(link), str(SERVER), kind, host, "0", str(log)],
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[:1] == [b"ready"], line
        return proc, int(line[1]), log

    yield start
    for proc in started:
        stop(proc)


def _requests(log: Path) -> list[tuple[str, str, str]]:
    if not log.exists():
        return []
    return [tuple(line.split(" ", 2)) for line in log.read_text().splitlines()]  # type: ignore[misc]


def _settings(make_settings: Any, **extra: Any) -> Any:
    return make_settings(OLLAMA_HOST=f"http://127.0.0.1:{closed_port()}", **extra)


def _mine(result: Any, pid: int) -> dict[str, Any]:
    [entry] = [r for r in result.observations["runtimes"] if r["pid"] == pid]
    return entry


def test_an_ollama_on_every_interface_is_llm_exposed(
        start_server: Start, make_settings: Any, store: Store) -> None:
    proc, port, log = start_server("ollama", "0.0.0.0")
    settings = _settings(make_settings)
    result = llm_runtimes.collect(CollectContext(settings, time.time(), {}))
    entry = _mine(result, proc.pid)
    assert entry["runtime"] == "ollama" and entry["exposed"] is True
    [slot] = entry["exposures"]
    assert (slot["endpoint"], slot["port"], slot["probed"]) == (f"0.0.0.0:{port}", port,
                                                                "127.0.0.1")
    assert (slot["api"], slot["unauthenticated"], slot["models"]) == ("ollama", True, 2)
    assert slot["model_names"] == ["codellama:13b", "llama3:latest"]
    # the probe asked loopback only, and only its GETs
    assert _requests(log) == [("GET", "/api/tags", "127.0.0.1"),
                              ("GET", "/api/version", "127.0.0.1")]

    findings = detect_llm_runtimes.detect(result, DetectContext(settings, time.time(), store))
    [finding] = [f for f in findings if f.kind == "llm_exposed" and f.labels["pid"] == str(proc.pid)]
    assert (finding.key, finding.severity, finding.floor) == (f"0.0.0.0:{port}", Severity.HIGH,
                                                              Severity.HIGH)
    assert finding.facts == {"api": "ollama", "api_name": "Ollama",
                             "endpoint": f"0.0.0.0:{port}", "port": port}
    assert finding.labels["model_names"] == "codellama:13b, llama3:latest"
    assert finding.labels["server"] == "Ollama 0.5.7"
    assert "runtime Ollama" in finding.summary and "codellama" not in finding.summary


def test_the_whole_cycle_tells_it_with_its_port(
        start_server: Start, make_settings: Any, store: Store) -> None:
    _, port, _ = start_server("ollama", "0.0.0.0")
    settings = _settings(make_settings, COLLECTORS=["llm_runtimes"])
    out = io.StringIO()
    report = Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(out)}).run_cycle()
    assert report["collectors"]["llm_runtimes"]["ok"]
    ours = [f for f in report["findings"]
            if f["kind"] == "llm_exposed" and f"0.0.0.0:{port}" in f["summary"]]
    assert [(f["severity"], f["floor"]) for f in ours] == [("high", "high")]
    assert f"Ollama on 0.0.0.0:{port} answers anyone without authentication" in out.getvalue()
    assert f"ufw deny {port}/tcp" in out.getvalue()


def test_an_ollama_on_loopback_only_is_not_exposed(
        start_server: Start, make_settings: Any, store: Store) -> None:
    proc, port, log = start_server("ollama", "127.0.0.1")
    settings = _settings(make_settings)
    result = llm_runtimes.collect(CollectContext(settings, time.time(), {}))
    entry = _mine(result, proc.pid)
    assert entry["exposed"] is False and "exposures" not in entry
    assert _requests(log) == []                     # nothing to ask: it is not on the network
    findings = detect_llm_runtimes.detect(result, DetectContext(settings, time.time(), store))
    assert not [f for f in findings if f.kind == "llm_exposed" and str(port) in f.key]


def test_a_runtime_behind_a_password_is_not_a_finding(
        start_server: Start, make_settings: Any, store: Store) -> None:
    proc, port, log = start_server("basic-auth", "0.0.0.0")
    settings = _settings(make_settings)
    result = llm_runtimes.collect(CollectContext(settings, time.time(), {}))
    [slot] = _mine(result, proc.pid)["exposures"]
    assert (slot["unauthenticated"], slot["status"]) == (False, 401)
    assert {client for _, _, client in _requests(log)} == {"127.0.0.1"}
    findings = detect_llm_runtimes.detect(result, DetectContext(settings, time.time(), store))
    assert not [f for f in findings if f.kind == "llm_exposed" and str(port) in f.key]


def test_a_model_server_that_is_no_runtime_on_a_well_known_port(
        start_server: Start, make_settings: Any, store: Store,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # a plain-named process (no runtime signal) serving LM Studio's API on all interfaces; its
    # random port stands in for a well-known one
    proc, port, log = start_server("lmstudio", "0.0.0.0", name="mtwebapp")
    monkeypatch.setattr(llm_exposure, "LLM_PORTS", (port,))
    settings = _settings(make_settings)
    result = llm_runtimes.collect(CollectContext(settings, time.time(), {}))
    assert not [r for r in result.observations["runtimes"] if r["pid"] == proc.pid]
    [slot] = [s for s in result.observations["exposed_servers"] if s["port"] == port]
    assert (slot["api"], slot["unauthenticated"], slot["probed"]) == ("lm-studio", True,
                                                                     "127.0.0.1")
    assert slot["pid"] == proc.pid and slot["process"] == "mtwebapp"
    findings = detect_llm_runtimes.detect(result, DetectContext(settings, time.time(), store))
    [finding] = [f for f in findings if f.kind == "llm_exposed" and f.key == f"0.0.0.0:{port}"]
    assert finding.facts["api_name"] == "LM Studio" and finding.labels["process"] == "mtwebapp"
    assert {client for _, _, client in _requests(log)} == {"127.0.0.1"}
    # the agent's own ports are never probed
    servers = llm_exposure.plan_exposure([], llm_exposure.listeners(), {port})
    assert [s for s in servers if s["port"] == port] == []


def test_a_foreign_bind_is_never_probed() -> None:
    runtime = {"pid": 7, "name": "ollama", "runtime": "ollama", "attribution": "process",
               "listening": [{"address": "203.0.113.9:11434", "ip": "203.0.113.9",
                              "port": 11434, "proto": "tcp", "class": "external"}]}
    asked: list[Any] = []
    llm_exposure.plan_exposure([runtime], [], set(), own={"192.168.1.5"})
    probed = llm_exposure.probe_exposure([runtime], [], prober=lambda t, **_: asked.append(t))
    assert probed == 0 and asked == []
    assert runtime["exposures"][0]["probed"] is None
    assert runtime["exposures"][0]["unauthenticated"] is None


def test_exposed_flag_of_a_listener_without_a_finding() -> None:
    result_obs = {"runtimes": [{"pid": 1, "name": "x", "runtime": "ollama", "connections": [],
                                "exposures": [{"endpoint": "0.0.0.0:1", "port": 1,
                                               "unauthenticated": None, "api": None}]}],
                  "ollama": {"problem": None}}
    assert detect_llm_runtimes._exposed(result_obs) == []
