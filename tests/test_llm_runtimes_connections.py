"""LLM runtime connections: the /proc/net parser, attribution, the allowlist and its findings."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from analysis import detect_llm_runtimes
from collectors import llm_runtimes, netclass
from collectors.llm_runtimes import scan
from foundation.context import DetectContext
from foundation.model import CollectResult, Severity
from foundation.store.data_storage import Store
from tests.llm_runtime_fixtures import RUNTIME_SCRIPT, start_runtime
from tests.procs import stop


def _runtime(conns: list[dict[str, Any]]) -> dict[str, Any]:
    return {"pid": 42, "name": "ollama", "runtime": "ollama", "score": 5, "signals": {},
            "cmdline": "ollama serve", "connections": conns, "listening": []}


def _conn(ip: str, port: int = 443) -> dict[str, Any]:
    return {"local": "10.0.0.5:50000", "remote": f"{ip}:{port}",
            "ip": netclass.parse_ip(ip).compressed, "port": port,
            "proto": "tcp", "status": "ESTABLISHED", "class": netclass.classify(ip)}


def test_external_connections_are_annotated_and_judged_against_the_allowlist(
        make_settings: Any, store: Store) -> None:
    # addresses are only classified and looked up through injected resolvers: nothing is sent
    rdns = {"8.8.8.8": "dns.google", "203.0.113.50": None, "198.51.100.7": "edge.cdn.example",
            "192.0.2.200": None}
    forward = {"registry.ollama.ai": ["192.0.2.200"], "ollama.com": [],
               "edge.cdn.example": ["198.51.100.7"]}   # forward-confirms its reverse name
    runtimes = [_runtime([_conn("8.8.8.8"), _conn("::ffff:8.8.8.8", 853),
                          _conn("198.51.100.7"), _conn("192.168.1.10", 8080),
                          _conn("192.0.2.200")])]
    for conn in runtimes[0]["connections"]:     # TEST-NET ranges stand in for internet hosts
        if conn["ip"] in ("198.51.100.7", "192.0.2.200"):
            conn["class"] = "external"
    resolver = netclass.Resolver(None, 0.0, 1.0, reverse=rdns.get, forward=forward.get)
    allow = netclass.Allowlist.parse(["registry.ollama.ai", "ollama.com", "*.cdn.example"])
    llm_runtimes.annotate(runtimes, allow, resolver)
    conns = runtimes[0]["connections"]
    assert conns[0]["rdns"] == "dns.google" and conns[0]["provider"] == "Google Public DNS"
    assert conns[0]["allowed_by"] is None
    assert conns[2]["allowed_by"] == "*.cdn.example"
    assert "allowed_by" not in conns[3]                      # private: not looked up at all
    assert conns[4]["allowed_by"] == "registry.ollama.ai"    # by the name's forward address

    result = CollectResult(observations={"runtimes": runtimes, "ollama": {"problem": None}})
    findings = detect_llm_runtimes.detect(result, DetectContext(make_settings(), 0.0, store))
    assert len(findings) == 1
    f = findings[0]
    assert (f.kind, f.key, f.severity, f.floor) == (
        "llm_external_connection", "ollama|8.8.8.8", Severity.HIGH, Severity.HIGH)
    assert "dns.google" in f.summary and "443, 853" in f.summary
    assert f.labels["provider"] == "Google Public DNS" and len(f.evidence) == 2

    # allowing the network silences it
    runtimes = [_runtime([_conn("8.8.8.8")])]
    llm_runtimes.annotate(runtimes, netclass.Allowlist.parse(["8.8.8.0/24"]), resolver)
    assert runtimes[0]["connections"][0]["allowed_by"] == "8.8.8.0/24"
    result = CollectResult(observations={"runtimes": runtimes, "ollama": {"problem": None}})
    assert detect_llm_runtimes.detect(result, DetectContext(make_settings(), 0.0, store)) == []


def _judge_peer(make_settings: Any, store: Store, ip: str, ptr: str | None,
                forward: Any, timeout_s: float = 1.0) -> tuple[dict[str, Any], list[Any]]:
    """Annotate one external connection with injected resolvers and run the detector."""
    runtimes = [_runtime([_conn(ip)])]
    runtimes[0]["connections"][0]["class"] = "external"   # TEST-NET stands in for the internet
    resolver = netclass.Resolver(None, 0.0, timeout_s, reverse={ip: ptr}.get, forward=forward)
    allow = netclass.Allowlist.parse(make_settings().LLM_CONNECTION_ALLOWLIST)  # the default
    llm_runtimes.annotate(runtimes, allow, resolver)
    result = CollectResult(observations={"runtimes": runtimes, "ollama": {"problem": None}})
    findings = detect_llm_runtimes.detect(result, DetectContext(make_settings(), 0.0, store))
    return runtimes[0]["connections"][0], findings


def test_a_reverse_name_that_its_forward_lookup_does_not_confirm_allows_nothing(
        make_settings: Any, store: Store) -> None:
    # whoever owns 203.0.113.7 can make its PTR record say registry.ollama.ai; the name's real
    # A/AAAA records do not hold that address, so the default allowlist must not silence it
    forward = {"registry.ollama.ai": ["192.0.2.10", "2001:db8::10"], "ollama.com": ["192.0.2.11"]}
    conn, findings = _judge_peer(make_settings, store, "203.0.113.7", "registry.ollama.ai.",
                                 forward.get)
    assert conn["allowed_by"] is None
    assert [(f.kind, f.severity, f.floor) for f in findings] == [
        ("llm_external_connection", Severity.HIGH, Severity.HIGH)]
    assert ("reverse name registry.ollama.ai., unconfirmed: its A/AAAA records do not include "
            "203.0.113.7") in findings[0].summary


def test_a_forward_confirmed_reverse_name_allows_the_peer(make_settings: Any,
                                                          store: Store) -> None:
    asked: list[str] = []

    def forward(name: str) -> list[str]:
        asked.append(name)
        return {"registry.ollama.ai": ["192.0.2.10", "203.0.113.7"]}.get(name, [])

    conn, findings = _judge_peer(make_settings, store, "203.0.113.7", "Registry.Ollama.AI.",
                                 forward)
    assert conn["allowed_by"] == "registry.ollama.ai" and conn["rdns_unconfirmed"] is None
    assert findings == []
    assert "registry.ollama.ai" in asked      # the PTR name itself was resolved forward

    # a subdomain of an entry is confirmed by its own records, not by the entry's
    conn, findings = _judge_peer(make_settings, store, "198.51.100.20", "edge-3.ollama.com",
                                 {"edge-3.ollama.com": ["198.51.100.20"]}.get)
    assert conn["allowed_by"] == "ollama.com" and findings == []


def test_a_forward_lookup_that_times_out_leaves_the_finding_standing(
        make_settings: Any, store: Store) -> None:
    release = threading.Event()

    def stuck(name: str) -> list[str]:
        release.wait(30)      # a resolver that never answers within the deadline
        return ["203.0.113.7"]

    try:
        started = time.monotonic()
        conn, findings = _judge_peer(make_settings, store, "203.0.113.7", "registry.ollama.ai",
                                     stuck, timeout_s=0.2)
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert conn["allowed_by"] is None
    assert len(findings) == 1 and findings[0].severity == Severity.HIGH
    assert "unconfirmed: its forward lookup gave no answer in time" in findings[0].summary
    assert elapsed < 20          # bounded by the deadline, not by the stuck resolver (30 s)



def test_proc_net_parser_agrees_with_psutil_on_a_real_process(
        tmp_path: Path, listener: socket.socket) -> None:
    proc, _, _ = start_runtime(tmp_path, listener.getsockname()[1], model_in_argv=True)
    try:
        ours = set(netclass.namespace_sockets(proc.pid))
        theirs, attribution = llm_runtimes.socket_records(proc.pid)
        assert attribution == "process" and len(ours) == 2
        assert ours == set(theirs)
    finally:
        stop(proc)


def test_a_runtime_in_another_network_namespace_still_shows_its_connections(
        tmp_path: Path) -> None:
    # unshare(1) gives the process a private network namespace, as a container has
    prefix = ("unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh")
    proc, name, _ = start_runtime(tmp_path, 0, model_in_argv=True, prefix=prefix)
    try:
        assert psutil.Process(proc.pid).name() == name
        assert psutil.Process(proc.pid).net_connections(kind="inet") == []   # psutil: blind
        found, _ = scan()
        mine = [c for c in found if c.pid == proc.pid]
        assert len(mine) == 1
        entry = llm_runtimes._with_connections(mine[0])
        assert entry["attribution"] == "namespace"
        assert [(c["class"], c["status"]) for c in entry["connections"]] == [
            ("loopback", "ESTABLISHED")]      # to its own listener (never accepted: no 2nd fd)
        assert [s["class"] for s in entry["listening"]] == ["loopback"]
    finally:
        stop(proc)


def test_proc_net_parser_on_written_tables() -> None:
    tcp6 = ("  sl  local_address remote_address st tx rx tr tm retr uid timeout inode\n"
            "   0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000808A8C0:01BB 01 "
            "00000000:00000000 00:00000000 00000000 0 0 777 1 0 20 4 30 10 -1\n"
            "   1: 00000000000000000000000000000000:2CAA 00000000000000000000000000000000:0000 0A "
            "00000000:00000000 00:00000000 00000000 0 0 778 1 0 20 4 30 10 -1\n"
            "   2: garbage line\n")
    records = netclass.parse_proc_net(tcp6, "tcp6", {"777", "778"}, little_endian=True)
    assert [(str(netclass.parse_ip(r.local_ip)), r.local_port, r.remote_port, r.status)
            for r in records] == [("127.0.0.1", 8080, 443, "ESTABLISHED"),
                                  ("::", 11434, 0, "LISTEN")]
    assert netclass.classify(records[0].remote_ip) == "private" and records[1].remote_ip == ""
    assert netclass.parse_proc_net(tcp6, "tcp6", {"999"}) == []
    udp = ("sl local rem st\n 0: 0100007F:0035 00000000:0000 07 0:0 0:0 0 0 0 55 2\n")
    big = netclass.parse_proc_net(udp.replace("0100007F", "7F000001"), "udp", None,
                                  little_endian=False)
    assert big == [netclass.SocketRecord("udp", "127.0.0.1", 53, "", 0, "NONE")]


def test_inbound_peers_of_a_listening_runtime_are_told_apart(make_settings: Any,
                                                            store: Store) -> None:
    rec = netclass.SocketRecord
    remote, listening = llm_runtimes.classify_sockets([
        rec("tcp", "0.0.0.0", 11434, "", 0, "LISTEN"),
        rec("tcp", "192.168.1.5", 11434, "8.8.8.8", 51000, "ESTABLISHED"),
        rec("tcp", "192.168.1.5", 40000, "::ffff:1.1.1.1", 443, "ESTABLISHED"),
        rec("udp", "0.0.0.0", 5353, "", 0, "NONE")])
    assert [(c["ip"], c["direction"], c["class"]) for c in remote] == [
        ("8.8.8.8", "inbound", "external"), ("1.1.1.1", "outbound", "external")]
    assert [(s["address"], s["class"]) for s in listening] == [
        ("0.0.0.0:11434", "unspecified"), ("0.0.0.0:5353", "unspecified")]
    runtime = {**_runtime(remote), "listening": listening}
    result = CollectResult(observations={"runtimes": [runtime], "ollama": {"problem": None}})
    found = detect_llm_runtimes.detect(result, DetectContext(make_settings(), 0.0, store))
    summaries = {f.key: f.summary for f in found}
    assert "is being used by external 8.8.8.8" in summaries["ollama|8.8.8.8"]
    assert "is connected to external 1.1.1.1" in summaries["ollama|1.1.1.1"]


UNPRIVILEGED_AGENT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from collectors import llm_runtimes
found, _ = llm_runtimes.scan()
print(json.dumps([llm_runtimes._with_connections(c) for c in found if c.pid == int(sys.argv[2])]))
"""


@pytest.mark.parametrize(("runtime_uid", "attribution"), [
    (1, "user"),          # a system account (daemon): all its sockets are the runtime's
    (1500, None),         # a login user's runtime: its sockets cannot be told apart, none shown
    (65534, "process"),   # the agent's own user: everything is readable
])
def test_an_unprivileged_agent_attributes_sockets_of_a_service_account_only(
        listener: socket.socket, runtime_uid: int, attribution: str | None) -> None:
    # the agent runs as nobody without capabilities, as the shipped systemd unit runs it
    folder = Path(tempfile.mkdtemp(prefix="llmrt-"))
    folder.chmod(0o755)
    try:
        link = folder / "llama-server"
        link.symlink_to(os.path.realpath(sys.executable))
        model = folder / "m.gguf"
        model.write_bytes(b"GGUF")
        lib = folder / "libggml.so"
        lib.write_bytes(b"\x7fELF" + b"\0" * 4092)
        script = folder / "rt.py"
        script.write_text(RUNTIME_SCRIPT)
        env = {**os.environ, "MT_LIB": str(lib), "MT_PORT": str(listener.getsockname()[1])}
        drop = ["setpriv", f"--reuid={runtime_uid}", f"--regid={runtime_uid}", "--clear-groups"]
        proc = subprocess.Popen([*drop, str(link), str(script), str(model)], env=env,
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            agent = subprocess.run(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                 "-c", UNPRIVILEGED_AGENT, str(Path(__file__).resolve().parent.parent),
                 str(proc.pid)], capture_output=True, timeout=30, check=True)
            entries = json.loads(agent.stdout)
        finally:
            stop(proc)
    finally:
        shutil.rmtree(folder)
    assert len(entries) == 1
    entry = entries[0]
    assert entry["runtime"] == "llama.cpp"
    port = listener.getsockname()[1]
    ours = [c["class"] for c in entry["connections"] if c["remote"] == f"127.0.0.1:{port}"]
    if attribution == "process":
        assert entry["attribution"] == "process" and entry["signals"]["model_files"]
        assert ours == ["loopback"]
        return
    assert entry["signals"]["errors"] == ["memory maps: access denied",
                                          "open files: access denied"]
    if attribution is None:
        assert entry["connections_error"] == llm_runtimes.ACCESS_HINT and ours == []
    else:
        assert entry["attribution"] == "user" and ours == ["loopback"]
