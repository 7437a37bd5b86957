"""nmap_llm_open: a real nmap scan of 127.0.0.1, then the probe of what it found open. Only
127.0.0.1 is scanned and asked, and only on ports of servers this test started."""
from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from agent.cycle import Agent
from alerts.console import ConsoleNotifier
from analysis import detect_nmap
from analysis.rules import RulesJudge
from collectors import llm_exposure
from collectors import nmap as nmap_collector
from collectors.nmap import llm_candidates
from collectors.nmap_parse import PortInfo, Scan, port_key
from foundation.store.data_storage import Store
from tests.fakes.llm_servers import FakeServer
from tests.test_nmap import _no_scan_left_behind  # noqa: F401 - autouse: no scan left running

LOOPBACK = "127.0.0.1"



@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    started: list[FakeServer] = []
    yield started
    for server in started:
        server.stop()


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _agent(settings: Any, store: Store, clock: Clock) -> tuple[Agent, io.StringIO]:
    out = io.StringIO()
    return Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(out)},
                 clock=clock), out


def _open(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((f["kind"], f["severity"], f["floor"]) for f in report["findings"]
                  if f["kind"] == "nmap_llm_open")


def test_an_open_ollama_in_the_scan_is_nmap_llm_open_and_a_protected_one_is_not(
        make_settings: Any, store: Store, servers: list[FakeServer],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # listening on every interface, so reachable from the network; the scan and the probe still
    # go to 127.0.0.1 only. Their ports stand in for the well-known ones.
    ollama = FakeServer("ollama", "0.0.0.0").start()
    guarded = FakeServer("basic-auth", "0.0.0.0").start()
    local_only = FakeServer("ollama", LOOPBACK).start()    # not on the network: never a finding
    servers.extend([ollama, guarded, local_only])
    ports = [ollama.port, guarded.port, local_only.port]
    monkeypatch.setattr(llm_exposure, "LLM_PORTS", tuple(ports))
    monkeypatch.setattr(nmap_collector, "GRACE_S", 120.0)   # a loaded machine: wait for the scan
    settings = make_settings(COLLECTORS=["nmap"], NMAP_TARGETS=[LOOPBACK],
                             NMAP_SCAN_OPTIONS=f"-sT -n -Pn -p {','.join(map(str, ports))}",
                             NMAP_INTERVAL_SECONDS=600)
    clock = Clock()
    agent, out = _agent(settings, store, clock)

    first = agent.run_cycle()          # the first scan learns ports, but an open server is a state
    scan = first["observations"]["nmap"]["scan"]
    assert {p["port"] for p in scan["open_ports"]} == set(ports)
    assert scan["llm_probed"] == 2     # the loopback-only one is not asked at all
    probes = {p["port"]: p for p in scan["llm_probes"]}
    assert (probes[ollama.port]["api"], probes[ollama.port]["unauthenticated"]) == ("ollama", True)
    assert probes[guarded.port]["unauthenticated"] is False
    assert _open(first) == [("nmap_llm_open", "high", "high")]
    [finding] = [f for f in first["findings"] if f["kind"] == "nmap_llm_open"]
    assert finding["summary"].startswith(f"Ollama on {LOOPBACK}:{ollama.port} answered "
                                         "GET /api/tags -> 200")
    assert f"Ollama on {LOOPBACK}:{ollama.port} answers anyone without authentication" \
        in out.getvalue()
    assert local_only.requests == [] and {m for m, _ in guarded.requests} == {"GET"}

    ollama.stop()
    servers.remove(ollama)
    clock.now += 600
    second = agent.run_cycle()
    assert _open(second) == []
    assert {r.kind for r in store.findings(open_only=True).values()} >= {"port_closed"}
    assert "nmap_llm_open" not in {r.kind for r in store.findings(open_only=True).values()}


def test_service_detection_finds_an_http_port_off_the_list(
        make_settings: Any, store: Store, servers: list[FakeServer],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # -sV names the fake's port "http" (Python's BaseHTTPServer): asked although not listed
    server = FakeServer("lmstudio", "0.0.0.0").start()
    servers.append(server)
    monkeypatch.setattr(nmap_collector, "GRACE_S", 120.0)
    settings = make_settings(COLLECTORS=["nmap"], NMAP_TARGETS=[LOOPBACK],
                             NMAP_SCAN_OPTIONS=f"-sT -sV -n -Pn -p {server.port}")
    report, _ = _agent(settings, store, Clock())
    first = report.run_cycle()
    scan = first["observations"]["nmap"]["scan"]
    assert scan["open_ports"][0]["service"] == "http"
    assert [(p["api"], p["unauthenticated"]) for p in scan["llm_probes"]] == [("lm-studio", True)]
    assert _open(first) == [("nmap_llm_open", "high", "high")]


def _scan(*ports: PortInfo) -> Scan:
    return Scan(hosts_up=tuple(sorted({p.addr for p in ports})), hosts_total=1,
                ports={p.key: p for p in ports})


def test_which_open_ports_are_asked() -> None:
    http = PortInfo("192.168.1.20", 8443, "tcp", "open", service="https-alt")
    ollama = PortInfo("192.168.1.20", 11434, "tcp", "open")
    ssh = PortInfo("192.168.1.20", 22, "tcp", "open", service="ssh")
    udp = PortInfo("192.168.1.20", 8080, "udp", "open")
    mine = PortInfo("192.168.1.5", 8080, "tcp", "open", service="http-proxy")
    loop = PortInfo(LOOPBACK, 8000, "tcp", "open", service="http-alt")
    scan = _scan(http, ollama, ssh, udp, mine, loop)
    picked = llm_candidates(scan, {"192.168.1.5", LOOPBACK}, frozenset({8080}),
                            exposed=lambda: {8000})
    # well-known ports first; never ssh, udp, or the agent's own port on this machine
    assert picked == [(LOOPBACK, 8000), ("192.168.1.20", 11434), ("192.168.1.20", 8443)]
    assert llm_candidates(scan, {"192.168.1.5", LOOPBACK}, frozenset({8080}),
                          exposed=set) == [("192.168.1.20", 11434), ("192.168.1.20", 8443)]
    # a host that is not among the scan's hosts up is never asked
    stray = Scan(hosts_up=(), hosts_total=1, ports={ollama.key: ollama})
    assert llm_candidates(stray, set(), frozenset(), exposed=set) == []


def test_the_detector_skips_the_agents_own_port_and_protected_servers(
        make_settings: Any, store: Store) -> None:
    from foundation.context import DetectContext
    from foundation.model import CollectResult

    settings = make_settings(NMAP_TARGETS=[LOOPBACK], METRICS_PORT=9101)
    probes = [{"addr": LOOPBACK, "port": 9101, "api": "ollama", "unauthenticated": True,
               "scheme": "http", "evidence": "GET /api/tags -> 200", "models": 1,
               "model_names": ["x"], "server": "", "note": ""},
              {"addr": "192.168.1.20", "port": 8000, "api": "vllm", "unauthenticated": False,
               "scheme": "http", "evidence": "GET /v1/models -> 401", "models": 0,
               "model_names": [], "server": "", "note": ""},
              {"addr": "fd00::20", "port": 11434, "api": "ollama", "unauthenticated": True,
               "scheme": "https", "evidence": "GET /api/tags -> 200", "models": 3,
               "model_names": ["a", "b", "c"], "server": "Ollama 0.5.7", "note": ""}]
    obs = {"hosts_up": [LOOPBACK, "192.168.1.20", "fd00::20"], "hosts_total": 3,
           "local_hosts": [LOOPBACK], "open_ports": [], "other_ports": {}, "truncated": False,
           "llm_probes": probes}
    found = detect_nmap.detect(CollectResult(observations={"scan": obs}),
                               DetectContext(settings, 0.0, store))
    assert [(f.kind, f.key) for f in found] == [("nmap_llm_open", "[fd00::20]:11434")]
    assert found[0].facts == {"host": "fd00::20", "where": "another host", "port": 11434,
                              "protocol": "tcp", "api": "ollama", "api_name": "Ollama",
                              "endpoint": "[fd00::20]:11434"}
    assert found[0].labels["model_names"] == "a, b, c"
    assert port_key("fd00::20", 11434, "tcp") == "[fd00::20]:11434/tcp"


def test_probe_targets_are_only_scanned_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Any] = []

    def prober(targets: list[tuple[str, int]], **_: Any) -> dict[Any, Any]:
        asked.extend(targets)
        return {}

    ollama = PortInfo("192.168.1.20", 11434, "tcp", "open")
    found, probed = nmap_collector.probe_llm(_scan(ollama), set(), frozenset(), prober=prober,
                                             exposed=set)
    assert asked == [("192.168.1.20", 11434)] and found == [] and probed == 1


def test_loopback_socket_reserved_but_closed_is_skipped() -> None:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port = int(sock.getsockname()[1])
    scan = _scan(PortInfo(LOOPBACK, port, "tcp", "open", service="http"))
    assert llm_candidates(scan, {LOOPBACK}, frozenset(), exposed=set) == []
