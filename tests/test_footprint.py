"""The agent's steady footprint (issue 20): what a quiet cycle leaves out of the process, the recap
chart drawn in a child process, and the memory figures in the cycle report. Behaviour only: the
timing and memory figures themselves are measured by bench/footprint.py.
"""
from __future__ import annotations

import base64
import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import config
from agent import status
from alerts import chart_plan
from alerts.discord import recap_body
from alerts.recap import build, recap_text
from analysis.ollama_judge import OllamaJudge
from collectors import llm_exposure, ping
from foundation.context import DetectContext
from foundation.model import CollectResult, Finding, Severity
from foundation.store.data_storage import Store
from tests.procs import agent_env
from tests.test_recap import fill_day, local

ROOT = Path(__file__).resolve().parent.parent
# what a quiet cycle with the defaults must not load (each costs 6 to 50 MB): the recap chart's
# plotting, numpy (large auth batches only), the HTTP clients and the other channels' libraries
# (only when configured), the Docker SDK (containers watched), pingparsing with the chardet its
# typepy pulls in (for output that is not iputils' own)
HEAVY = ("matplotlib", "numpy", "requests", "httpx", "ollama", "discord_webhook", "docker",
         "pingparsing", "chardet", "apprise", "paho")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_steady_cycle_with_the_defaults_loads_no_heavy_library(tmp_path: Path) -> None:
    """config.py's collectors, no webhook, no container watched, Ollama refused (so a finding the
    rules decide), logs without new lines: two cycles and the loop's own imports, then a look."""
    for name in ("syslog", "auth.log"):
        (tmp_path / name).write_text("")
    env = agent_env(tmp_path, COLLECTORS=json.dumps(config.COLLECTORS),
                    SYSLOG_PATH=str(tmp_path / "syslog"), SYSLOG_BACKEND="file",
                    AUTH_LOG_PATH=str(tmp_path / "auth.log"), AUTH_LOG_BACKEND="file",
                    OLLAMA_HOST=f"http://127.0.0.1:{closed_port()}")
    code = ("import sys; from agent.cli import main\n"
            "assert main(['--once']) == 0\n"                       # the first cycle
            "assert main(['--once', '--json']) == 0\n"             # a steady one
            "import alerts.recap, schedule, agent.follow\n"       # what the loop adds after it
            f"heavy = {HEAVY!r}\n"
            "print('LOADED=' + ','.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy)),"
            " file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOADED=\n" in done.stderr, done.stderr[-1000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(report["collectors"]) == set(config.COLLECTORS)
    assert report["verdict"]["by"] == "rules" and "LLM not asked" in report["verdict"]["note"]
    assert 5 < report["rss_mb"] <= report["peak_rss_mb"] < 1000


def test_the_report_s_memory_figures_reach_status_json(tmp_path: Path, make_settings: Any,
                                                       fake_collectors: Any) -> None:
    from agent.cycle import Agent
    from analysis.rules import RulesJudge
    fake_collectors["install"]("probe", lambda ctx: CollectResult(observations={}))
    settings = make_settings(COLLECTORS=["probe"])
    store = Store.open(settings.db_path)
    try:
        report = Agent(settings, store, RulesJudge(), {}).run_cycle()
        assert isinstance(report["peak_rss_mb"], float) and report["rss_mb"] > 0
        last = status.document(store)["last_cycle"]
        assert last["peak_rss_mb"] == report["peak_rss_mb"] and last["rss_mb"] == report["rss_mb"]
    finally:
        store.close()


# -- the judge does not load the Ollama client for nothing ------------------------------------------

def test_ollama_refused_at_this_cycle_s_health_check_is_not_asked_again(make_settings: Any,
                                                                         store: Store) -> None:
    asked: list[float] = []
    port = closed_port()
    settings = make_settings(OLLAMA_HOST=f"http://127.0.0.1:{port}")
    judge = OllamaJudge(settings, client_factory=lambda timeout: asked.append(timeout))
    finding = Finding(source="probe", kind="probe_down", key="a", severity=Severity.HIGH,
                      summary="probe a is down")
    refused = {"llm_runtimes": {"ollama": {"host": f"http://127.0.0.1:{port}", "reachable": False,
                                           "error": "connection refused or host unreachable"}}}
    verdict = judge.judge([finding], refused, DetectContext(settings, time.time(), store))
    assert verdict.by == "rules" and verdict.severity is Severity.HIGH and asked == []
    assert verdict.note is not None and verdict.note.startswith("LLM not asked: cannot reach Ollama")
    assert judge.take_health() == (False, verdict.note.removeprefix("LLM not asked: "))


# -- the recap chart, drawn in a child process --------------------------------------------------------

def _png_size(png: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", png[16:24])   # IHDR follows the 8-byte signature
    return width, height


def test_the_chart_child_draws_a_png_and_matplotlib_stays_out(tmp_path: Path) -> None:
    now = time.time()
    code = ("import json, sys; from alerts import chart_plan\n"
            f"now = {now!r}\n"
            "data = {'Temperatures': {'sensor.temperature_c[cpu]': "
            "[(now - 3600 + 60 * i, 40.0 + i % 7) for i in range(60)]}}\n"
            "png, notes = chart_plan.render_png(data, 'nas', now - 86400, now, 300)\n"
            "sys.stdout.buffer.write(png)\n"
            "print(json.dumps([notes, 'matplotlib' in sys.modules]), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    notes, loaded = json.loads(done.stderr.decode().strip().splitlines()[-1])
    png = done.stdout
    assert png.startswith(chart_plan.PNG_MAGIC) and 5_000 < len(png) < chart_plan.MAX_PNG_BYTES
    assert _png_size(png)[0] == 800 and loaded is False
    assert "Ping round trip: no data (left out of the chart)" in notes


@pytest.mark.parametrize(("command", "timeout_s", "said"), [
    ([sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"], 30.0,
     "the chart process failed (exit status 3): boom"),
    ([sys.executable, "-c", "print('<html>not a png</html>')"], 30.0,
     "the chart process failed (its output is not a PNG)"),
    ([sys.executable, "-c", "import time; time.sleep(60)"], 1.0, "did not finish within 1 s"),
    ([sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'\\x89PNG' * (3 << 20))"], 30.0,
     "printed more than"),
])
def test_a_broken_chart_child_costs_only_the_chart(command: list[str], timeout_s: float,
                                                   said: str) -> None:
    started = time.monotonic()
    png, notes = chart_plan.render_png({}, "nas", 0.0, 86400.0, 300, command=command,
                                       timeout_s=timeout_s)
    assert png is None and time.monotonic() - started < 20
    assert notes[-1].startswith("no chart this time: ") and said in notes[-1], notes


def test_a_recap_whose_chart_fails_goes_without_it_and_says_so(store: Store, make_settings: Any,
                                                               monkeypatch: Any) -> None:
    now = local(15, 8)
    fill_day(store, now)
    monkeypatch.setattr(chart_plan, "COMMAND", (sys.executable, "-c", "raise SystemExit(1)"))
    payload = build(store, make_settings(HOST_NAME="nas"), now)
    assert "chart_png_b64" not in payload and "chart_name" not in payload
    chart_notes = payload["sections"][2]
    assert chart_notes["title"] == "Chart notes"
    assert chart_notes["lines"][-1] == ("no chart this time: the chart process failed "
                                        "(exit status 1)")
    assert "no chart this time" in recap_text(payload)
    body = recap_body(payload, "")
    assert all("image" not in embed for embed in body["embeds"])
    assert payload["sections"][0]["lines"] != ["none"]       # the rest of the recap is all there

    monkeypatch.undo()
    drawn = build(store, make_settings(HOST_NAME="nas"), now)
    assert base64.b64decode(drawn["chart_png_b64"]).startswith(chart_plan.PNG_MAGIC)


# -- the quiet paths that keep libraries out -------------------------------------------------------

def test_iputils_summaries_read_as_pingparsing_reads_them(corpus: Path) -> None:
    """Every capture the quick path takes gives pingparsing's own figures; the rest go to it."""
    import pingparsing
    taken = []
    for capture in sorted((corpus / "ping").glob("*.txt")):
        text = capture.read_text()
        quick = ping.iputils_summary(text)
        if quick is None:
            continue
        theirs = pingparsing.PingParsing().parse(text)
        assert (quick.transmitted, quick.received, quick.loss_count, quick.loss_percent,
                quick.duplicates, quick.duplicate_percent, quick.rtt_min_ms, quick.rtt_avg_ms,
                quick.rtt_max_ms, quick.rtt_mdev_ms) == (
            theirs.packet_transmit, theirs.packet_receive, theirs.packet_loss_count,
            theirs.packet_loss_rate, theirs.packet_duplicate_count, theirs.packet_duplicate_rate,
            theirs.rtt_min, theirs.rtt_avg, theirs.rtt_max, theirs.rtt_mdev), capture.name
        taken.append(capture.name)
    assert {"DEBIAN_SUCCESS_0.txt", "DEBIAN_UNREACHABLE_0.txt", "UBUNTU_SUCCESS_0.txt",
            "IPV6_LINUX.txt"} <= set(taken)
    assert "UBUNTU_FAIL_0.txt" not in taken          # ping -D time stamps: pingparsing reads them
    assert not any(name.startswith(("MACOS", "WINDOWS", "ALPINE")) for name in taken)
    assert "LINUX_PIPE.txt" not in taken and "FEDORA_DUP_LOSS.txt" not in taken   # "pipe 2"


def test_a_real_loopback_ping_takes_the_quick_path() -> None:
    done = subprocess.run(ping.ping_args("127.0.0.1", 2, 3.0), capture_output=True, text=True,
                          timeout=10, check=False)
    stats = ping.iputils_summary(done.stdout)
    assert stats is not None and stats.transmitted == 2 and stats.received == 2
    assert stats.rtt_avg_ms is not None and stats.loss_percent == 0.0


def test_the_listener_check_asks_the_kernel_and_agrees_with_psutil() -> None:
    import psutil
    opened = []
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"),
                            (socket.AF_INET, "0.0.0.0")):
        sock = socket.socket(family)
        sock.bind((address, 0))
        sock.listen()
        opened.append(sock)
    try:
        ours = sorted(llm_exposure._diag_listeners())
        theirs = sorted((c.laddr.ip, c.laddr.port) for c in psutil.net_connections("tcp")
                        if c.status == psutil.CONN_LISTEN)
        mine = {s.getsockname()[1] for s in opened}
        assert {p for _, p in ours} >= mine and ours == theirs
        loopback, _, anywhere = (s.getsockname()[1] for s in opened)
        assert not llm_exposure._may_listen({loopback}) and llm_exposure._may_listen({anywhere})
        assert llm_exposure._proc_may_listen({anywhere}) and not \
            llm_exposure._proc_may_listen({loopback})
        assert llm_exposure.listeners({loopback}) == []
    finally:
        for sock in opened:
            sock.close()


def test_with_no_container_watched_the_engine_overview_needs_no_sdk(make_settings: Any,
                                                                      podman_engine: Any) -> None:
    """The standard library's GET of /containers/json gives what the SDK gave: how many
    containers, how many running, the engine's API version; nothing watched, nothing to find."""
    import docker

    from collectors import containers
    from foundation.context import CollectContext
    settings = make_settings(COLLECTORS=["containers"], DOCKER_HOST=podman_engine.url)
    result = containers.collect(CollectContext(settings, time.time(), {}))
    client = docker.DockerClient(base_url=podman_engine.url, timeout=30)
    try:
        listed = client.api.containers(all=True)
    finally:
        client.close()
    engine = result.observations["engine"]
    assert result.available and result.observations["watched"] == {}
    assert engine["containers"] == len(listed)
    assert engine["running"] == sum(1 for c in listed if c.get("State") == "running")
    assert engine["api_version"] and engine["api_version"][0].isdigit()
    assert [s.metric for s in result.samples] == ["containers.running"]
