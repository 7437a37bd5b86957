"""containers: the docker SDK against a real Docker-compatible engine (podman's API service).

The tests create their own containers (running, exited, killed, unhealthy, healthy, restarting)
from a busybox image built locally, watch them through the agent's cycle, and remove them.
"""
from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from agent.cycle import Agent
from alerts.console import ConsoleNotifier
from analysis.rules import RulesJudge
from collectors.containers import collect, container_facts, engine_url, explain
from foundation.context import CollectContext
from foundation.store.data_storage import Store
from tests.podman_engine import IMAGE, PodmanEngine

SECOND = 1_000_000_000  # the Docker API counts health-check intervals in nanoseconds
ROOT = Path(__file__).resolve().parent.parent


class Fleet:
    """The containers one test module created, by role."""

    def __init__(self, engine: PodmanEngine) -> None:
        self.engine = engine
        self.client = docker.DockerClient(base_url=engine.url, timeout=30)
        tag = uuid.uuid4().hex[:6]
        self.names = {role: f"mt-{role}-{tag}" for role in (
            "running", "exited", "killed", "unhealthy", "healthy", "restarting", "missing")}

    def run(self, role: str, command: list[str], **options: Any) -> Any:
        return self.client.containers.run(IMAGE, command, name=self.names[role], detach=True,
                                          network_mode="none", **options)

    def inspect(self, role: str) -> dict[str, Any]:
        return self.client.api.inspect_container(self.names[role])

    def wait_for(self, role: str, test: Any, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            attrs = self.inspect(role)
            if test(attrs):
                return attrs
            assert time.monotonic() < deadline, f"{role} never reached the state: {attrs['State']}"
            time.sleep(0.1)

    def remove(self) -> None:
        for name in self.names.values():
            with contextlib.suppress(docker.errors.NotFound):
                self.client.api.remove_container(name, force=True)
        self.client.close()


@pytest.fixture(scope="module")
def fleet(podman_engine: PodmanEngine) -> Iterator[Fleet]:
    made = Fleet(podman_engine)
    try:
        made.run("running", ["sleep", "3600"])
        made.run("exited", ["sh", "-c", "exit 3"])
        # a memory-limited container that buffers 200 MiB dies by SIGKILL (exit 137)
        made.run("killed", ["sh", "-c", "head -c 200m /dev/zero | tail"], mem_limit="16m")
        made.run("unhealthy", ["sleep", "3600"], healthcheck={
            "test": ["CMD", "/bin/false"], "interval": SECOND, "timeout": SECOND, "retries": 1})
        made.run("healthy", ["sleep", "3600"], healthcheck={
            "test": ["CMD", "/bin/true"], "interval": SECOND, "timeout": SECOND, "retries": 1})
        made.run("restarting", ["sh", "-c", "sleep 0.5; exit 1"],
                 restart_policy={"Name": "on-failure", "MaximumRetryCount": 10_000})
        # podman schedules health checks with systemd timers, absent here: run them by hand
        for role in ("unhealthy", "healthy"):
            podman_engine.podman("healthcheck", "run", made.names[role])
        made.wait_for("exited", lambda a: a["State"]["Status"] == "exited")
        made.wait_for("killed", lambda a: a["State"]["Status"] == "exited")
        yield made
    finally:
        made.remove()


def _agent(settings: Any, store: Store) -> Agent:
    return Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(io.StringIO())})


def _by_container(store: Store, fleet: Fleet) -> dict[str, set[tuple[str, str, str]]]:
    """The open findings of each container, by its role: {(kind, severity, floor)}."""
    roles = {name: role for role, name in fleet.names.items()}
    out: dict[str, set[tuple[str, str, str]]] = {role: set() for role in fleet.names}
    for row in store.findings(open_only=True).values():
        out[roles[row.key]].add((row.kind, row.severity, row.floor))
    return out


def test_a_cycle_reports_each_watched_container_as_it_is(fleet: Fleet, make_settings: Any,
                                                         store: Store) -> None:
    settings = make_settings(COLLECTORS=["containers"], DOCKER_HOST=fleet.engine.url,
                             DOCKER_CONTAINERS_TO_MONITOR=list(fleet.names.values()))
    report = _agent(settings, store).run_cycle()
    status = report["collectors"]["containers"]
    assert status["ok"] and status["available"], status
    watched = report["observations"]["containers"]["watched"]
    facts = {role: watched[name] for role, name in fleet.names.items()}
    assert facts["running"]["running"] and facts["running"]["image"] == IMAGE
    assert facts["running"]["started_at"].startswith("20")
    assert (facts["exited"]["status"], facts["exited"]["exit_code"]) == ("exited", 3)
    assert facts["killed"]["exit_code"] == 137
    assert (facts["unhealthy"]["health"], facts["healthy"]["health"]) == ("unhealthy", "healthy")
    assert facts["missing"] == {"exists": False, "running": False, "status": "missing",
                                "health": None, "restart_count": 0, "restarts_since_last": 0}
    engine = report["observations"]["containers"]["engine"]
    assert engine["containers"] >= 6 and engine["running"] >= 3

    found = _by_container(store, fleet)
    high = ("high", "high")
    assert found["exited"] == {("container_down", *high)}
    assert found["missing"] == {("container_down", *high)}
    assert found["killed"] == {("container_down", *high)}
    assert found["unhealthy"] == {("container_unhealthy", *high)}
    assert found["running"] == set() and found["healthy"] == set()
    summaries = " ".join(f["summary"] for f in report["findings"])
    assert "exit code 3" in summaries and "exit code 137 (killed by SIGKILL)" in summaries
    assert "does not exist" in summaries
    assert report["verdict"]["severity"] == "high"


def test_a_climbing_restart_count_is_container_restarting(fleet: Fleet, make_settings: Any,
                                                          store: Store) -> None:
    name = fleet.names["restarting"]
    settings = make_settings(COLLECTORS=["containers"], DOCKER_HOST=fleet.engine.url,
                             DOCKER_CONTAINERS_TO_MONITOR=[name, fleet.names["running"]])
    agent = _agent(settings, store)
    first = agent.run_cycle()
    before = first["observations"]["containers"]["watched"][name]["restart_count"]
    assert not any(f["kind"] == "container_restarting" for f in first["findings"])
    fleet.wait_for("restarting", lambda a: a["RestartCount"] > before)
    second = agent.run_cycle()
    facts = second["observations"]["containers"]["watched"][name]
    assert facts["restarts_since_last"] == facts["restart_count"] - before > 0
    restarting = [f for f in second["findings"] if f["kind"] == "container_restarting"]
    assert [(f["severity"], f["floor"]) for f in restarting] == [("medium", "none")]
    assert name in restarting[0]["summary"]


def test_the_negotiated_api_version_is_remembered_and_dropped_when_the_engine_goes(
        fleet: Fleet, make_settings: Any, tmp_path: Path) -> None:
    settings = make_settings(DOCKER_HOST=fleet.engine.url,
                             DOCKER_CONTAINERS_TO_MONITOR=[fleet.names["running"]])
    first = collect(CollectContext(settings, time.time(), {}))
    api = first.state["api"]
    assert api["url"] == fleet.engine.url and api["version"] == first.observations["engine"][
        "api_version"]
    again = collect(CollectContext(settings, time.time(), dict(first.state)))
    assert again.available and again.observations["watched"][fleet.names["running"]]["running"]
    assert again.state["api"] == api
    gone = make_settings(DOCKER_HOST=f"unix://{tmp_path}/none.sock")
    lost = collect(CollectContext(gone, time.time(), dict(first.state)))
    assert not lost.available and lost.state["api"] is None
    assert lost.state["restarts"] == first.state["restarts"]  # restart counts survive an outage


def test_a_recreated_container_is_not_a_restart(fleet: Fleet) -> None:
    attrs = fleet.inspect("running")
    same = container_facts(attrs, {"id": attrs["Id"][:12], "restart_count": 0})
    other = container_facts(dict(attrs, RestartCount=4), {"id": "0123456789ab", "restart_count": 1})
    assert same["restarts_since_last"] == 0 and other["restarts_since_last"] == 0
    climbed = container_facts(dict(attrs, RestartCount=4), {"id": attrs["Id"][:12],
                                                            "restart_count": 1})
    assert climbed["restarts_since_last"] == 3


def _ctx(make_settings: Any, url: str) -> CollectContext:
    settings = make_settings(DOCKER_HOST=url, DOCKER_CONTAINERS_TO_MONITOR=["web"])
    return CollectContext(settings, time.time(), {})


def test_no_socket_is_unavailable_with_the_fix_and_the_cycle_goes_on(
        make_settings: Any, store: Store, tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/docker.sock"
    settings = make_settings(COLLECTORS=["containers", "processes"], DOCKER_HOST=url,
                             DOCKER_CONTAINERS_TO_MONITOR=["web"])
    report = _agent(settings, store).run_cycle()
    status = report["collectors"]["containers"]
    assert status["ok"] and status["error"] is None
    assert "no Docker socket" in status["note"] and "DOCKER_HOST" in status["note"]
    assert report["collectors"]["processes"]["ok"]
    # a watched container nobody can see is a finding (tests/faults/test_docker_unreachable.py)
    assert [(f["kind"], f["severity"]) for f in report["findings"]] == [
        ("docker_unreachable", "high")]
    assert "no Docker socket" in report["findings"][0]["summary"]


def test_no_socket_with_nothing_watched_is_only_unavailable(make_settings: Any,
                                                             tmp_path: Path) -> None:
    settings = make_settings(DOCKER_HOST=f"unix://{tmp_path}/docker.sock")
    result = collect(CollectContext(settings, time.time(), {}))
    assert not result.available and "no Docker socket" in (result.note or "")
    assert "unreachable" not in result.observations


def test_nothing_listening_names_the_fix(make_settings: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        result = collect(_ctx(make_settings, f"tcp://127.0.0.1:{port}"))
    assert result.available and "nothing answers" in (result.note or "")
    assert result.observations["unreachable"]["containers"] == ["web"]


def test_permission_denied_names_the_docker_group(make_settings: Any, tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="mt-docker-"))
    try:
        folder.chmod(0o755)
        path = folder / "docker.sock"
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(path))
            server.listen(1)
            path.chmod(0o600)  # root's socket, as /var/run/docker.sock is to a non-member
            script = (
                "import json, sys, time; sys.path.insert(0, sys.argv[1])\n"
                "from foundation.settings import load_settings\n"
                "from foundation.context import CollectContext\n"
                "from collectors.containers import collect\n"
                "s = load_settings(environ={}, overrides={'DOCKER_HOST': sys.argv[2],"
                " 'DATA_DIR': sys.argv[3]})\n"
                "r = collect(CollectContext(s, time.time(), {}))\n"
                "print(json.dumps({'available': r.available, 'note': r.note}))\n")
            out = subprocess.run(
                ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                 sys.executable, "-c", script, str(ROOT), f"unix://{path}", str(folder / "data")],
                capture_output=True, text=True, timeout=60, cwd=str(folder))
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        assert result["available"] is False
        assert "permission denied" in result["note"] and "`docker` group" in result["note"]
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def test_engine_address_order(make_settings: Any) -> None:
    assert engine_url(make_settings(DOCKER_HOST="tcp://127.0.0.1:2375"),
                      {"DOCKER_HOST": "unix:///x"}) == "tcp://127.0.0.1:2375"
    assert engine_url(make_settings(), {"DOCKER_HOST": "unix:///x"}) == "unix:///x"
    assert engine_url(make_settings(), {}) == "unix:///var/run/docker.sock"


def test_explain_finds_the_cause_inside_the_sdk_error() -> None:
    try:
        docker.DockerClient(base_url="unix:///nonexistent/docker.sock", timeout=2)
    except docker.errors.DockerException as err:
        assert explain(err, "unix:///nonexistent/docker.sock").startswith("no Docker socket")
    else:
        pytest.fail("a missing socket must fail")
