"""LLM runtime detection on real processes the tests start, scoring and the agent's cycle."""
from __future__ import annotations

import io
import socket
import time
import types
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.cycle import Agent
from alerts.console import ConsoleNotifier
from analysis import detect_llm_runtimes
from analysis.rules import RulesJudge
from collectors import llm_runtimes
from collectors.llm_runtimes import cheap_signals, scan
from foundation.context import CollectContext, DetectContext
from foundation.store.data_storage import Store
from tests.llm_runtime_fixtures import start_runtime
from tests.procs import stop


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]



def settings_for(make_settings: Any, **extra: Any) -> Any:
    return make_settings(OLLAMA_HOST=f"http://127.0.0.1:{closed_port()}", **extra)


def test_a_process_holding_a_gguf_is_detected_with_signals_and_loopback_connection(
        tmp_path: Path, listener: socket.socket, make_settings: Any, store: Store) -> None:
    proc, name, model = start_runtime(tmp_path, listener.getsockname()[1], model_in_argv=True)
    try:
        settings = settings_for(make_settings)
        result = llm_runtimes.collect(CollectContext(settings, time.time(), {}))
        mine = [r for r in result.observations["runtimes"] if r["pid"] == proc.pid]
        assert len(mine) == 1, result.observations["runtimes"]
        rt = mine[0]
        assert rt["name"] == name and rt["runtime"] == f"unknown ({name})"
        assert rt["signals"]["model_arg"].endswith("tiny-q4_0.gguf")
        assert rt["signals"]["model_files"] == [str(model)]
        assert rt["signals"]["libraries"] == ["ggml"]
        assert rt["score"] == 1 + 3 + 2 >= llm_runtimes.THRESHOLD
        assert [(c["remote"], c["class"], c["status"]) for c in rt["connections"]] == [
            (f"127.0.0.1:{listener.getsockname()[1]}", "loopback", "ESTABLISHED")]
        assert rt["connections"][0]["direction"] == "outbound"
        assert len(rt["listening"]) == 1 and rt["listening"][0]["class"] == "loopback"
        assert rt["exposed"] is False
        assert result.state["runtimes"][str(proc.pid)] == pytest.approx(
            psutil.Process(proc.pid).create_time())

        findings = detect_llm_runtimes.detect(result, DetectContext(settings, time.time(), store))
        assert [f.kind for f in findings] == ["llm_unavailable"]
    finally:
        stop(proc)


def test_a_renamed_binary_with_no_hint_is_found_by_its_open_model_file(
        tmp_path: Path, listener: socket.socket) -> None:
    proc, _, model = start_runtime(tmp_path, listener.getsockname()[1], model_in_argv=False)
    try:
        # small and nameless: the cheap pass leaves it alone at the default memory threshold
        found, counts = scan()
        assert proc.pid not in [c.pid for c in found]
        found, counts = scan(known={str(proc.pid): "garbage", "x": None})   # a damaged state
        assert proc.pid not in [c.pid for c in found]
        # big enough (threshold lowered) or seen last cycle: its files are read and it is found
        for kwargs in ({"candidate_rss": 1},
                       {"known": {str(proc.pid): psutil.Process(proc.pid).create_time()}}):
            found, counts = scan(**kwargs)
            mine = [c for c in found if c.pid == proc.pid]
            assert len(mine) == 1
            assert mine[0].signals["model_files"] == [str(model)]
            assert "model_arg" not in mine[0].signals and mine[0].score == 3 + 2
            assert counts["candidates_checked"] >= 1
    finally:
        stop(proc)


class FakeProc:
    """A psutil-like process of the cheap pass."""

    def __init__(self, pid: int, name: str, cmdline: list[str], rss: int = 10 * 2**20) -> None:
        self.info = {"pid": pid, "name": name, "cmdline": cmdline,
                     "memory_info": types.SimpleNamespace(rss=rss),
                     "create_time": 1000.0 + pid}


def test_only_candidates_are_read_and_errors_stay_per_process() -> None:
    procs = [FakeProc(1, "bash", ["bash"]), FakeProc(2, "sshd", ["sshd: root"]),
             FakeProc(3, "ollama", ["/usr/bin/ollama", "serve"]),
             FakeProc(4, "python3", ["python3", "app.py"], rss=3 * 2**30),
             FakeProc(5, "llama-server", ["llama-server", "-m", "/m/x.gguf"]),
             FakeProc(6, "koboldcpp", ["koboldcpp"])]
    read: list[int] = []

    def mapped(pid: int) -> set[str]:
        read.append(pid)
        if pid == 3:
            raise psutil.AccessDenied(pid)
        if pid == 6:
            raise psutil.NoSuchProcess(pid)
        return {"/usr/lib/libtorch_cuda.so", "/usr/lib/libcudart.so.12"} if pid == 4 else set()

    def opened(pid: int) -> set[str]:
        return {"/m/x.gguf"} if pid == 5 else set()

    found, counts = scan(procs, mapped=mapped, opened=opened, own_pid=999)
    assert read == [3, 4, 5, 6]                      # bash and sshd never read
    assert counts == {"processes_seen": 6, "candidates_checked": 4}
    by_pid = {c.pid: c for c in found}
    assert sorted(by_pid) == [3, 4, 5]               # 6 vanished mid-scan: skipped
    assert by_pid[3].signals["errors"] == ["memory maps: access denied"] and by_pid[3].score == 5
    assert by_pid[4].runtime is None and by_pid[4].signals["libraries"] == ["cuda", "torch"]
    assert by_pid[4].score == 1 + 1 + 1              # libraries + large memory
    assert by_pid[5].runtime == "llama.cpp" and by_pid[5].score == 3 + 1 + 3


@pytest.mark.parametrize(("name", "argv", "runtime", "score"), [
    ("ollama", ["/usr/local/bin/ollama", "serve"], "ollama", 5),
    ("ollama", ["/usr/local/bin/ollama", "runner", "--model",
                "/root/.ollama/models/blobs/sha256-ab"],
     "ollama", 5),
    ("llama-server", ["/opt/llama.cpp/build/bin/llama-server", "-m", "/m/q.gguf"], "llama.cpp", 6),
    ("python3", ["python3", "-m", "vllm.entrypoints.openai.api_server"], "vLLM", 2),
    ("text-generation", ["text-generation-launcher", "--model-id", "x"],
     "text-generation-inference", 5),
    ("koboldcpp", ["./koboldcpp", "--model", "m.gguf"], "koboldcpp", 6),
    ("python", ["python", "server.py", "--listen"], None, 0),
    ("grep", ["grep", "vllm"], "vLLM", 2),             # a mention alone is not a runtime
    ("local-ai", ["local-ai", "run"], "LocalAI", 5),
    ("bash", ["bash"], None, 0),
])
def test_cheap_signals_table(name: str, argv: list[str], runtime: str | None, score: int) -> None:
    cand = cheap_signals(1, name, argv, 5 * 2**20, 0.0)
    assert cand.runtime == runtime
    assert cand.score == score


def test_model_file_patterns() -> None:
    hits = ["/srv/m/x.gguf", "/data/y.SAFETENSORS", "/root/.ollama/models/blobs/sha256-1f",
            "/usr/share/ollama/.ollama/models/blobs/sha256-2",
            "/srv/models/llama/pytorch_model.bin",
            "/home/u/.cache/huggingface/hub/models--meta/snapshots/x/config.json"]
    misses = ["/usr/lib/x86_64-linux-gnu/libc.so.6", "/var/lib/dpkg/status", "/srv/firmware.bin",
              "/tmp/notes.txt"]
    assert all(llm_runtimes.MODEL_FILE.search(p) for p in hits)
    assert not any(llm_runtimes.MODEL_FILE.search(p) for p in misses)



def test_one_cycle_through_the_agent_reports_ollama_unavailable(
        make_settings: Any, store: Store) -> None:
    settings = settings_for(make_settings, COLLECTORS=["llm_runtimes"])
    agent = Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(io.StringIO())})
    report = agent.run_cycle()
    status = report["collectors"]["llm_runtimes"]
    assert status["ok"] and status["duration_s"] < 5
    kinds = {(f["kind"], f["severity"]) for f in report["findings"]}
    assert kinds == {("llm_unavailable", "medium")}
    obs = report["observations"]["llm_runtimes"]
    assert obs["ollama"]["reachable"] is False and "not reachable" in obs["ollama"]["problem"]



def test_the_connections_history_survives_cycles_and_restarts(
        tmp_path: Path, listener: socket.socket, make_settings: Any) -> None:
    """A real runtime stand-in connected to a loopback listener: two cycles, then the store closed
    and opened again (a restart), then a third: one row, first and last seen, three cycles."""
    proc, name, _ = start_runtime(tmp_path, listener.getsockname()[1], model_in_argv=True)
    db = tmp_path / "store" / "monitor.db"
    try:
        settings = settings_for(make_settings, COLLECTORS=["llm_runtimes"])
        clock = [time.time()]
        for run in range(3):
            store = Store.open(db)
            try:
                agent = Agent(settings, store, RulesJudge(),
                              {"console": ConsoleNotifier(io.StringIO())}, clock=lambda: clock[0])
                agent.run_cycle()
                clock[0] += 300 if run == 0 else 600
            finally:
                store.close()
        store = Store.open(db)
        try:
            rows = [r for r in store.llm_connections() if r.runtime == f"unknown ({name})"]
        finally:
            store.close()
    finally:
        stop(proc)
    [row] = rows
    assert (row.remote, row.port, row.direction, row.address_class) == (
        "127.0.0.1", listener.getsockname()[1], "outbound", "loopback")
    assert row.cycles == 3 and row.last_seen - row.first_seen == pytest.approx(900)


def test_history_rows_keep_what_later_cycles_lack() -> None:
    from foundation.store.connections import connection_rows

    rows = connection_rows([{"runtime": "ollama", "connections": [
        {"ip": "203.0.113.5", "port": 443, "direction": "outbound", "class": "external",
         "provider": "Example Cloud", "rdns": "api.example.net"},
        {"ip": "192.168.1.9", "port": 51234, "local": "192.168.1.2:11434", "direction": "inbound",
         "class": "private"}]}])
    assert rows == {("ollama", "203.0.113.5", 443, "outbound"): ("external", "Example Cloud",
                                                                  "api.example.net"),
                    ("ollama", "192.168.1.9", 11434, "inbound"): ("private", "", "")}
