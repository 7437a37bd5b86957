"""nmap: the XML parser and diff on real captures, and real scans of listeners opened on 127.0.0.1.

Only 127.0.0.1 is ever scanned, and only the ports the tests opened or reserved themselves.
"""
from __future__ import annotations

import io
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cycle import Agent
from alerts.console import ConsoleNotifier
from analysis import detect_nmap
from analysis.rules import RulesJudge
from collectors import nmap as nmap_collector
from collectors.nmap import collect, summarize
from collectors.nmap_parse import NmapParseError, PortInfo, Scan, diff, key_host, parse_scan, port_key
from foundation.context import CollectContext, _children, kill_children, release_child
from foundation.model import CollectResult
from foundation.store.data_storage import Store

LOOPBACK = "127.0.0.1"


# -- helpers --------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _no_scan_left_behind() -> Iterator[None]:
    yield
    for proc in list(nmap_collector._RUNNING.values()):
        proc.kill()
        proc.wait()
        release_child(proc)
    nmap_collector._RUNNING.clear()


class Ports:
    """Loopback ports the test owns: listening ones and reserved (bound, not listening) ones."""

    def __init__(self) -> None:
        self.socks: dict[int, socket.socket] = {}

    def reserve(self) -> int:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((LOOPBACK, 0))
        port = sock.getsockname()[1]
        self.socks[port] = sock
        return port

    def listen(self, port: int | None = None) -> int:
        port = port if port is not None else self.reserve()
        self.socks[port].listen(8)
        return port

    def close(self, port: int) -> None:
        self.socks.pop(port).close()

    def close_all(self) -> None:
        for port in list(self.socks):
            self.close(port)


@pytest.fixture
def ports() -> Iterator[Ports]:
    owned = Ports()
    yield owned
    owned.close_all()


class Clock:
    """A settable clock for the agent, so NMAP_INTERVAL_SECONDS and forgetting can be crossed."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _agent(settings: Any, store: Store, clock: Clock) -> Agent:
    return Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(io.StringIO())},
                 clock=clock)


def _scan_settings(make_settings: Any, port_list: list[int], **more: Any) -> Any:
    options = f"-sT -n -Pn -p {','.join(str(p) for p in port_list)}"
    return make_settings(COLLECTORS=["nmap"], NMAP_TARGETS=[LOOPBACK], NMAP_SCAN_OPTIONS=options,
                         **more)


def _kinds(report: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((f["kind"], f["severity"]) for f in report["findings"])


def _ctx(settings: Any, now: float, state: dict[str, Any]) -> CollectContext:
    return CollectContext(settings, now, state)


# -- the parser and the diff on real captures -----------------------------------------------------

def _scans(corpus: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    summary = json.loads((corpus / "nmap" / "summary.json").read_text())
    assert len(summary) == 24
    yield from summary.items()


def test_every_capture_parses_to_its_recorded_hosts_and_open_ports(corpus: Path) -> None:
    for name, facts in _scans(corpus):
        scan = parse_scan((corpus / "nmap" / name).read_bytes())
        assert len(scan.hosts_up) == int(facts["runstats_hosts"]["up"]), name
        assert scan.hosts_total == int(facts["runstats_hosts"]["total"]), name
        got = sorted(f"{p.addr}:{p.port}" for p in scan.open_ports.values())
        assert got == sorted(facts["open_ports"]), name


def test_banners_give_service_product_and_version(corpus: Path) -> None:
    scan = parse_scan((corpus / "nmap" / "1_hosts_banner.xml").read_bytes())
    ssh = scan.open_ports["127.0.0.1:22/tcp"]
    assert ssh.service == "ssh" and ssh.product == "OpenSSH" and ssh.version
    xmas = parse_scan((corpus / "nmap" / "1_hosts_banner_ports_xmas.xml").read_bytes())
    assert xmas.open_ports == {} and {p.state for p in xmas.ports.values()} == {
        "open|filtered", "closed"}


def test_sweep_counts_only_hosts_that_are_up(corpus: Path) -> None:
    scan = parse_scan((corpus / "nmap" / "full_sudo5.xml").read_bytes())
    assert scan.hosts_total == 256 and len(scan.hosts_up) == 4
    assert all(key_host(k) in scan.hosts_up for k in scan.open_ports)


def test_diff_of_the_hand_edited_scan(corpus: Path) -> None:
    before = parse_scan((corpus / "nmap" / "2_hosts.xml").read_bytes())
    after = parse_scan((corpus / "nmap" / "modified" / "2_hosts_achange.xml").read_bytes())
    changes = diff(before.hosts_up, before.open_ports, after)
    assert changes.opened == ("127.0.0.1:23/tcp",)
    assert dict(changes.closed) == {"127.0.0.1:25/tcp": "closed", "127.0.0.1:111/tcp": "not listed"}
    assert changes.hosts_appeared == () and changes.hosts_disappeared == ()
    assert after.open_ports["127.0.0.1:23/tcp"].service == "telnet"


def test_diff_of_a_port_turned_filtered(corpus: Path) -> None:
    before = parse_scan((corpus / "nmap" / "1_hosts.xml").read_bytes())
    after = parse_scan((corpus / "nmap" / "modified" / "1_hosts_diff.xml").read_bytes())
    changes = diff(before.hosts_up, before.open_ports, after)
    assert changes.opened == () and dict(changes.closed) == {"127.0.0.1:3306/tcp": "filtered"}


def test_a_host_that_is_down_closes_no_ports_it_disappears(corpus: Path) -> None:
    five = parse_scan((corpus / "nmap" / "os_scan5.xml").read_bytes())
    six = parse_scan((corpus / "nmap" / "os_scan6.xml").read_bytes())
    changes = diff(five.hosts_up, five.open_ports, six)
    gone = set(five.hosts_up) - set(six.hosts_up)
    assert gone and set(changes.hosts_disappeared) == gone
    assert not any(key_host(k) in gone for k in changes.closed)


@pytest.mark.parametrize("text", [b"", b"<nmaprun>", b"not xml at all",
                                  b'<?xml version="1.0"?><nmaprun args="nmap"></nmaprun>'])
def test_garbage_and_truncated_reports_are_a_clear_error(text: bytes, corpus: Path) -> None:
    with pytest.raises(NmapParseError):
        parse_scan(text)
    whole = (corpus / "nmap" / "1_hosts.xml").read_bytes()
    with pytest.raises(NmapParseError):
        parse_scan(whole[: len(whole) // 2])


def test_port_keys_round_trip_ipv6() -> None:
    assert port_key("::1", 22, "tcp") == "[::1]:22/tcp" and key_host("[::1]:22/tcp") == "::1"
    assert key_host(port_key(LOOPBACK, 80, "tcp")) == LOOPBACK


# -- the detector's memory, fed with real captures ------------------------------------------------

def test_hosts_appear_and_disappear_between_sweeps(corpus: Path, store: Store,
                                                   make_settings: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    before = parse_scan((corpus / "nmap" / "os_scan6.xml").read_bytes())
    after = parse_scan((corpus / "nmap" / "fullscan.xml").read_bytes())
    gone = set(before.hosts_up) - set(after.hosts_up)
    new = set(after.hosts_up) - set(before.hosts_up)
    assert gone == {"192.168.1.3", "192.168.1.5"} and new == {"192.168.1.4"}
    feed = iter([before, after, after])  # the captures stand in for nmap; the cycle is real
    monkeypatch.setattr(nmap_collector, "collect", lambda ctx: CollectResult(
        observations={"status": "scan finished", "scan": summarize(next(feed), ctx.now)}))
    clock = Clock()
    agent = _agent(make_settings(COLLECTORS=["nmap"]), store, clock)
    assert agent.run_cycle()["findings"] == []  # learns
    clock.now += 3600
    agent.run_cycle()

    def open_keys(kind: str) -> set[str]:
        return {r.key for r in store.findings(open_only=True).values() if r.kind == kind}

    assert open_keys("host_disappeared") == gone and open_keys("host_appeared") == new
    assert store.seen_keys(detect_nmap.HOSTS) == set(before.hosts_up) | new
    assert not any(key_host(k) in gone for k in open_keys("port_closed"))
    assert {key_host(k) for k in store.seen_keys(detect_nmap.OPEN)} >= gone  # ports kept
    # still missing a week later: forgotten, resolved, and its ports no longer expected
    clock.now += detect_nmap.FORGET_AFTER_S + 1
    agent.run_cycle()
    assert open_keys("host_disappeared") == set() and open_keys("host_appeared") == set()
    assert not (gone & store.seen_keys(detect_nmap.HOSTS))
    assert not any(key_host(k) in gone for k in store.seen_keys(detect_nmap.OPEN))


def test_a_truncated_report_closes_nothing(corpus: Path, store: Store, make_settings: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    scan = parse_scan((corpus / "nmap" / "1_hosts.xml").read_bytes())
    monkeypatch.setattr(nmap_collector, "collect", lambda ctx: CollectResult(
        observations={"status": "scan finished", "scan": summarize(scan, ctx.now)}))
    clock = Clock()
    agent = _agent(make_settings(COLLECTORS=["nmap"]), store, clock)
    agent.run_cycle()
    monkeypatch.setattr(nmap_collector, "MAX_OPEN_PORTS", 2)
    clock.now += 3600
    report = agent.run_cycle()
    assert report["observations"]["nmap"]["scan"]["truncated"]
    assert len(report["observations"]["nmap"]["scan"]["open_ports"]) == 2
    assert report["findings"] == [] and len(store.seen_keys(detect_nmap.OPEN)) == 5


# -- real scans of 127.0.0.1 ----------------------------------------------------------------------

def test_a_new_listener_is_one_new_open_port_and_a_closed_one_is_port_closed(
        make_settings: Any, store: Store, ports: Ports) -> None:
    a, b, c = ports.listen(), ports.listen(), ports.reserve()
    settings = _scan_settings(make_settings, [a, b, c], NMAP_INTERVAL_SECONDS=600)
    clock = Clock()
    agent = _agent(settings, store, clock)

    first = agent.run_cycle()
    scan = first["observations"]["nmap"]["scan"]
    assert {(p["port"], p["state"]) for p in scan["open_ports"]} == {(a, "open"), (b, "open")}
    assert scan["hosts_up"] == [LOOPBACK] and first["findings"] == []  # the first scan learns
    assert store.seen_keys("nmap.open") == {port_key(LOOPBACK, p, "tcp") for p in (a, b)}

    ports.listen(c)
    clock.now += 60  # not due yet: a partial look, nothing found, nothing resolved
    assert agent.run_cycle()["observations"]["nmap"]["status"] == "no scan due"
    clock.now += 600
    second = agent.run_cycle()
    [finding] = second["findings"]
    assert (finding["kind"], finding["severity"], finding["floor"]) == ("new_open_port", "high",
                                                                          "medium")
    assert finding["summary"].startswith(f"new open port {LOOPBACK}:{c}/tcp")

    ports.close(b)
    clock.now += 600
    third = agent.run_cycle()
    assert _kinds(third) == [("port_closed", "medium")]
    summary = third["findings"][0]["summary"]
    assert summary == f"port {LOOPBACK}:{b}/tcp is no longer open (now closed)"
    open_rows = store.findings(open_only=True)
    assert {r.kind for r in open_rows.values()} == {"port_closed"}  # new_open_port resolved

    clock.now += 60  # between scans the closed port stays an open finding
    agent.run_cycle()
    assert {r.kind for r in store.findings(open_only=True).values()} == {"port_closed"}
    clock.now += detect_nmap.FORGET_AFTER_S  # a week gone: no longer expected, finding resolved
    agent.run_cycle()
    assert store.findings(open_only=True) == {}
    assert port_key(LOOPBACK, b, "tcp") not in store.seen_keys("nmap.open")


def test_a_changed_scope_relearns_instead_of_alerting(make_settings: Any, store: Store,
                                                      ports: Ports) -> None:
    a, b = ports.listen(), ports.listen()
    clock = Clock()
    _agent(_scan_settings(make_settings, [a], NMAP_INTERVAL_SECONDS=0), store, clock).run_cycle()
    clock.now += 1
    report = _agent(_scan_settings(make_settings, [a, b], NMAP_INTERVAL_SECONDS=0), store,
                    clock).run_cycle()
    assert report["observations"]["nmap"]["status"] == "scan finished" and report["findings"] == []
    assert port_key(LOOPBACK, b, "tcp") in store.seen_keys("nmap.open")


def test_a_slow_scan_runs_in_the_background_and_is_picked_up_later(
        make_settings: Any, ports: Ports, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nmap_collector, "GRACE_S", 0.0)
    a = ports.listen()
    settings = _scan_settings(make_settings, [a], NMAP_INTERVAL_SECONDS=0)
    started = collect(_ctx(settings, 100.0, {}))
    assert not started.resolves and started.observations["status"] == "scan in progress"
    pid = started.state["scan"]["pid"]
    proc = nmap_collector._RUNNING[pid]
    assert proc in _children  # tracked, so shutdown kills it
    proc.wait(timeout=30)
    done = collect(_ctx(settings, 105.0, dict(started.state)))
    assert done.resolves and done.observations["status"] == "scan finished"
    assert [p["port"] for p in done.observations["scan"]["open_ports"]] == [a]
    assert done.state["scan"] is None and done.state["last"]["open_ports"] == 1
    assert pid not in nmap_collector._RUNNING and proc not in _children
    assert not (Path(settings.DATA_DIR) / nmap_collector.XML_NAME).exists()


def test_a_scan_past_its_timeout_is_killed(make_settings: Any, ports: Ports,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nmap_collector, "GRACE_S", 0.0)
    slow = [ports.reserve() for _ in range(4)]  # closed ports, probed 5 s apart: ~20 s
    settings = _scan_settings(make_settings, slow, NMAP_INTERVAL_SECONDS=0,
                              NMAP_TIMEOUT_SECONDS=30)
    settings = settings.model_copy(update={"NMAP_SCAN_OPTIONS": settings.NMAP_SCAN_OPTIONS
                                           + " --scan-delay 5s --max-retries 0"})
    started = collect(_ctx(settings, 100.0, {}))
    proc = nmap_collector._RUNNING[started.state["scan"]["pid"]]
    still = collect(_ctx(settings, 110.0, dict(started.state)))
    assert still.observations["status"] == "scan in progress" and proc.poll() is None
    killed = collect(_ctx(settings, 131.0, dict(still.state)))
    assert killed.observations["status"] == "scan abandoned" and not killed.resolves
    assert proc.poll() is not None and killed.state["scan"] is None
    assert "NMAP_TIMEOUT_SECONDS" in (killed.note or "")


def test_shutdown_kills_a_running_scan(make_settings: Any, ports: Ports,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nmap_collector, "GRACE_S", 0.0)
    settings = _scan_settings(make_settings, [ports.reserve(), ports.reserve()],
                              NMAP_INTERVAL_SECONDS=0)
    settings = settings.model_copy(update={"NMAP_SCAN_OPTIONS": settings.NMAP_SCAN_OPTIONS
                                           + " --scan-delay 5s"})
    started = collect(_ctx(settings, 100.0, {}))
    proc = nmap_collector._RUNNING[started.state["scan"]["pid"]]
    assert kill_children() >= 1
    assert proc.wait(timeout=10) != 0


def test_a_scan_of_an_earlier_run_is_replaced(make_settings: Any, ports: Ports) -> None:
    settings = _scan_settings(make_settings, [ports.listen()], NMAP_INTERVAL_SECONDS=3600)
    stale = {"scan": {"pid": 999_999_999, "started_at": 90.0}, "last_started_at": 90.0}
    result = collect(_ctx(settings, 100.0, stale))
    assert result.resolves and result.observations["status"] == "scan finished"
    assert result.state["last_started_at"] == 100.0


def test_nmap_missing_is_unavailable_with_the_fix(make_settings: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = collect(_ctx(make_settings(), 100.0, {}))
    assert not result.available and not result.resolves
    assert "apt install nmap" in (result.note or "")


@pytest.mark.parametrize("options, targets, words", [
    ("-sT -oX /tmp/x.xml", ["127.0.0.1"], "-oX"),
    ("-sT '", ["127.0.0.1"], "cannot be split"),
    ("-sT", ["-iR"], "NMAP_TARGETS"),
])
def test_unsafe_options_are_refused_with_a_clear_note(make_settings: Any, options: str,
                                                      targets: list[str], words: str) -> None:
    settings = make_settings(NMAP_SCAN_OPTIONS=options, NMAP_TARGETS=targets)
    result = collect(_ctx(settings, 100.0, {}))
    assert not result.available and words in (result.note or "")
    assert nmap_collector._RUNNING == {}


def test_a_failed_scan_reports_nmaps_own_error(make_settings: Any) -> None:
    settings = make_settings(NMAP_SCAN_OPTIONS="--no-such-option", NMAP_TARGETS=[LOOPBACK],
                             NMAP_INTERVAL_SECONDS=0)
    result = collect(_ctx(settings, 100.0, {}))
    assert result.observations["status"] == "scan failed" and not result.resolves
    assert "no-such-option" in (result.note or "") and result.state["scan"] is None


def test_the_background_command_is_really_nmap_against_loopback_only(
        make_settings: Any, ports: Ports) -> None:
    a = ports.listen()
    settings = _scan_settings(make_settings, [a])
    args = nmap_collector.build_command("/usr/bin/nmap", settings, Path("/x/scan.xml"))
    assert args[-1] == LOOPBACK and args[-3:-1] == ["-oX", "/x/scan.xml"]
    out = subprocess.run([*args[:-3], "-oX", "-", LOOPBACK], capture_output=True, timeout=30,
                         check=True).stdout
    assert port_key(LOOPBACK, a, "tcp") in parse_scan(out).open_ports


def test_the_agents_own_metrics_port_is_never_a_finding_of_its_own_scan(
        make_settings: Any, store: Store, ports: Ports) -> None:
    """The README's example: /metrics on a port, NMAP_TARGETS 127.0.0.1. A real exporter and a
    real nmap: the agent's port is neither a new open port nor, learnt by an older version, a
    closed one; another new listener still is."""
    from agent.metrics import MetricsExporter

    learnt_before, other = ports.listen(), ports.reserve()
    exporter = MetricsExporter("nas")
    metrics_port = exporter.start(0, LOOPBACK)
    try:
        settings = _scan_settings(make_settings, [learnt_before, metrics_port, other],
                                  NMAP_INTERVAL_SECONDS=600, METRICS_PORT=metrics_port)
        clock = Clock()
        agent = _agent(settings, store, clock)
        with store.transaction() as tx:   # an older version learnt the exporter's port as open
            tx.remember("nmap.open", [port_key(LOOPBACK, metrics_port, "tcp")], clock.now)
        agent.run_cycle()                 # the first scan learns
        assert port_key(LOOPBACK, metrics_port, "tcp") not in store.seen_keys("nmap.open")
        ports.listen(other)
        clock.now += 600
        report = agent.run_cycle()
        assert report["observations"]["nmap"]["scan"]["local_hosts"] == [LOOPBACK]
        [finding] = report["findings"]
        assert finding["kind"] == "new_open_port" and f":{other}/tcp" in finding["summary"]
        clock.now += 600
        assert agent.run_cycle()["findings"] == []   # nor is it ever port_closed
    finally:
        exporter.stop()


def test_own_ports_are_dropped_only_on_this_machine() -> None:
    scan = Scan(hosts_up=("127.0.0.1", "192.168.1.20"), hosts_total=2, ports={
        port_key(a, 9101, "tcp"): PortInfo(addr=a, port=9101, proto="tcp", state="open")
        for a in ("127.0.0.1", "192.168.1.20")})
    kept = detect_nmap.without_own(scan, frozenset({"127.0.0.1"}), frozenset({9101}))
    assert set(kept.ports) == {port_key("192.168.1.20", 9101, "tcp")}   # another host's 9101
    assert detect_nmap.without_own(scan, frozenset({"127.0.0.1"}), frozenset()) is scan
