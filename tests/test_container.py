"""The container image (Containerfile) built with podman and run the way compose.yaml runs it.

The image is built from a Debian 12 base made here with debootstrap (the real-systemd test's
recipe, without systemd on top: no image registry is needed), with the repository's Containerfile
and a build context of exactly what it copies. Both images are cached in CACHE_DIR by a hash of
what decides them (tests/container_image.py), so an unchanged checkout loads in seconds.

The agent service's options are read from compose.yaml (its host network replaced by
`--network=none`). One `--once --json` cycle then sees this machine's process table (a process
this test started, by its host pid), the failed logins of an auth.log and the entries of a journal
file in a mounted /var/log (root:adm 0640, found through a mounted machine-id), ping's replies on
the container's loopback, as the non-root user 10001 that owns the data folder. The agent's loop
then runs as the container's command, passes the image's health check and stops on SIGTERM.
Containers are removed by the names this module generated.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.container_image import (
    CACHE_DIR,
    HOST_CA_BUNDLE,
    SYSTEMD,
    ULIMITS,
    ImageRecipe,
    Podman,
    ensure_image,
    scratch_folder,
)
from tests.test_journal import build as build_journal
from tests.test_journal import entry as journal_entry

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

CONTAINERFILE = ROOT / "Containerfile"
COMPOSE = ROOT / "compose.yaml"
# the real-systemd test's debootstrap base, without its systemd layer: a plain Debian 12
BOOKWORM = ImageRecipe(name="debian-bookworm", suite=SYSTEMD.suite,
                       debootstrap_args=SYSTEMD.debootstrap_args, containerfile="FROM {base}\n")
IMAGE_NAME = "homelab-monitor"
AGENT_UID = 10001
ADM_GID = 4              # Debian's adm group, the image user's supplementary group
DATA_DIR = "/var/lib/homelab-monitor"
AUTH_LOG = "/var/log/auth.log"
ATTACKER = "203.0.113.7"  # TEST-NET-3 (RFC 5737)
FAILURES = 6              # more than SSH_BRUTEFORCE_MAX_RETRY (5) within its window
# what works in a container without network (sensors runs, and says this machine has no hwmon)
COLLECTORS = ("syslog", "auth_log", "sensors", "ping", "processes")
JOURNAL_ENTRIES = [       # what journald keeps of a backup job and the kernel (export format)
    journal_entry(0, "backup started", SYSLOG_IDENTIFIER="backup", _PID="7", PRIORITY="6",
                  SYSLOG_FACILITY="3"),
    journal_entry(1, "disk full", SYSLOG_IDENTIFIER="backup", _PID="7", PRIORITY="3",
                  SYSLOG_FACILITY="3"),
    journal_entry(2, "Out of memory: Killed process 15784 (python3) total-vm:11964kB",
                  SYSLOG_IDENTIFIER="kernel", _TRANSPORT="kernel", PRIORITY="3",
                  SYSLOG_FACILITY="0"),
]


# --- the image -----------------------------------------------------------------------------------

def copy_sources(containerfile: str) -> list[str]:
    """The context paths the Containerfile's COPY instructions take (not those --from a stage)."""
    sources: list[str] = []
    for line in re.sub(r"\\\n", " ", containerfile).splitlines():
        words = line.split()
        if not words or words[0].upper() != "COPY" or any(w.startswith("--from") for w in words):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        sources.extend(args[:-1])                    # the last one is the destination
    return sources


def build_context(dest: Path) -> None:
    """The checkout's files (tracked, and new ones not ignored) that the Containerfile copies,
    under ``dest``: no caches, no host-built scanner, no venv."""
    text = CONTAINERFILE.read_text()
    wanted = copy_sources(text)
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, timeout=60, check=True).stdout
    names = sorted({n for n in out.decode().split("\0") if n and (ROOT / n).is_file()
                    and not (ROOT / n).is_symlink()
                    and any(n == w or n.startswith(w.rstrip("/") + "/") for w in wanted)})
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    (dest / "Containerfile").write_text(text)


def context_key(context: Path, base: str) -> str:
    """A hash of the base image and every name, mode and byte of the build context."""
    digest = hashlib.sha256(base.encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(f"\0{path.relative_to(context)}\0{path.stat().st_mode & 0o777:o}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def ensure_agent_image(podman: Podman) -> tuple[str, dict[str, float]]:
    """The agent's image in ``podman``'s storage, loaded from CACHE_DIR or built (and cached:
    one generation is kept); with the seconds each step took."""
    times: dict[str, float] = {}
    started = time.monotonic()
    base = ensure_image(podman, BOOKWORM)
    times["base"] = time.monotonic() - started
    context = podman.folder / "context"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir()
    build_context(context)
    key = context_key(context, base)
    tag = f"localhost/{IMAGE_NAME}:{key}"
    cached = CACHE_DIR / f"{IMAGE_NAME}-{key}.tar"
    with open(CACHE_DIR / f".{IMAGE_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = time.monotonic()
        if cached.is_file():
            podman.run("load", "-q", "-i", str(cached), timeout=600)
            times["load"] = time.monotonic() - started
        else:
            # host network for the build only (the Debian mirror and PyPI, as the base recipe's
            # build reaches them); this machine's CA bundle as the documented pip_ca secret.
            # --layers=false: one commit per stage, not one per instruction, each of which copies
            # the whole tree on the vfs driver (8 minutes instead of 80 s)
            podman.run("build", "--format", "docker", "--layers=false", "--pull=never",
                       "--network=host", *ULIMITS,
                       "--secret", f"id=pip_ca,src={HOST_CA_BUNDLE}",
                       "--build-arg", f"BASE={base}", "-t", tag, "-f",
                       str(context / "Containerfile"), str(context), timeout=900)
            times["build"] = time.monotonic() - started
            partial = cached.with_suffix(f".{os.getpid()}.tmp")
            podman.run("save", "-q", "-o", str(partial), tag, timeout=600)
            partial.replace(cached)
            for old in CACHE_DIR.glob(f"{IMAGE_NAME}-*.tar"):
                if old != cached:
                    old.unlink(missing_ok=True)
    shutil.rmtree(context, ignore_errors=True)
    if not podman.has_image(tag):
        pytest.fail(f"{cached} does not hold {tag}: delete it to rebuild")
    return tag, times


@pytest.fixture(scope="module")
def built() -> Iterator[tuple[Podman, str]]:
    """Private podman storage holding the agent's image."""
    podman = Podman(scratch_folder())
    try:
        tag, times = ensure_agent_image(podman)
        size = int(podman.run("image", "inspect", "--format", "{{.Size}}", tag).stdout)
        print(f"image {tag}: {size / 1e6:.0f} MB; "
              + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
        yield podman, tag
    finally:
        podman.clean()


# --- what it watches -----------------------------------------------------------------------------

def auth_lines(now: datetime) -> str:
    """Real sshd lines (OpenSSH 9.2's wording) in rsyslog's high-precision format, all recent."""
    lines = []
    for i in range(FAILURES):
        at = (now - timedelta(seconds=60 - 5 * i)).isoformat(timespec="microseconds")
        pid = 40100 + i
        user = ("invalid user admin", "root")[i % 2]
        lines.append(f"{at} web01 sshd[{pid}]: Failed password for {user} from {ATTACKER} "
                     f"port {51000 + i} ssh2")
        lines.append(f"{at} web01 sshd[{pid}]: Connection closed by authenticating user "
                     f"{'root' if i % 2 else 'admin'} {ATTACKER} port {51000 + i} [preauth]")
    at = (now - timedelta(seconds=10)).isoformat(timespec="microseconds")
    lines.append(f"{at} web01 sshd[40200]: Accepted publickey for alice from 192.0.2.10 port 50222 "
                 "ssh2: ED25519 SHA256:uFQqXyXrYKJ1m1cYdpD9HmZ0hK0cvE5zN1uRk1zq8xY")
    return "\n".join(lines) + "\n"


@pytest.fixture
def host_process(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A process on this machine with a name of its own (its comm), stopped by its pid."""
    name = f"hm-ctr-{uuid.uuid4().hex[:8]}"          # 15 characters: the kernel's comm whole
    program = tmp_path / name
    program.symlink_to(shutil.which("sleep") or "/bin/sleep")
    proc = subprocess.Popen([str(program), "600"], stdin=subprocess.DEVNULL)
    try:
        yield name, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def container_name() -> str:
    """A name of this module's own, by which its container is removed."""
    return f"monitor-ctr-{uuid.uuid4().hex[:10]}"


def compose_agent() -> dict[str, Any]:
    """compose.yaml's agent service."""
    return dict(yaml.safe_load(COMPOSE.read_text())["services"]["agent"])


def compose_args() -> list[str]:
    """``podman run`` options for compose.yaml's agent service: its process namespace, its
    capabilities and read-only root (its network, the host's, is replaced by none here)."""
    agent = compose_agent()
    args = [f"--pid={agent['pid']}", *(f"--cap-drop={c}" for c in agent["cap_drop"]),
            *(f"--cap-add={c}" for c in agent["cap_add"])]
    if agent.get("read_only"):
        args.append("--read-only")
    return args + [arg for target in agent.get("tmpfs", []) for arg in ("--tmpfs", target)]


def compose_mounts(replaced: dict[str, Path]) -> list[str]:
    """``-v`` options for compose.yaml's agent volumes, a host path taken from ``replaced`` by its
    target (named volumes too), else as written."""
    args = []
    for volume in compose_agent()["volumes"]:
        source, target, *mode = volume.split(":")
        args += ["-v", ":".join([str(replaced.get(target, source)), target, *mode])]
    return args


RUN_ARGS = ("--network=none", *ULIMITS, *compose_args())


def run_in_container(podman: Podman, image: str, args: list[str], *, timeout: float = 300,
                     check: bool = True) -> subprocess.CompletedProcess:
    """One ``podman run`` to its end, under a generated name (removed by it in any case); no
    health-check timer (it would need systemd here)."""
    name = container_name()
    try:
        return podman.run("run", "--rm", "--name", name, *RUN_ARGS, "--no-healthcheck", *args,
                          timeout=timeout, check=check)
    finally:
        podman.run("rm", "--force", "--time", "5", name, check=False, timeout=60)


def wait_for(what: str, check: Any, timeout: float, every: float = 1.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def healthcheck(podman: Podman, image: str) -> list[str]:
    """The image's HEALTHCHECK test (podman shows it beside the config, not in it)."""
    return list(json.loads(podman.run("image", "inspect", image).stdout)[0]["Healthcheck"]["Test"])


# --- the tests -----------------------------------------------------------------------------------

def test_the_image_runs_as_its_own_user_with_a_data_volume_and_a_healthcheck(
        built: tuple[Podman, str]) -> None:
    podman, image = built
    config = json.loads(podman.run("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "homelab-monitor", config
    assert DATA_DIR in config["Volumes"], config
    assert f"MONITOR_DATA_DIR={DATA_DIR}" in config["Env"], config
    assert config["Entrypoint"] == ["/opt/homelab-monitor/.venv/bin/homelab-monitor"], config
    check = healthcheck(podman, image)                  # kept: built with --format docker
    assert check[0] == "CMD-SHELL" and "homelab-monitor status --json" in check[1], check
    # who it runs as, and the health check before any cycle (in the image's own volume)
    run = run_in_container(podman, image, ["--entrypoint", "/bin/sh", image, "-c",
                                           f"id; ({check[1]}) 2>&1; echo health=$?"])
    out = run.stdout.decode()
    assert re.match(rf"uid={AGENT_UID}\(homelab-monitor\) gid={AGENT_UID}\(homelab-monitor\) "
                    rf"groups={AGENT_UID}\(homelab-monitor\),{ADM_GID}\(adm\)\n", out), out
    assert "no cycle yet" in out and out.rstrip().endswith("health=1"), out


def host_var_log(root: Path, machine_id: str) -> Path:
    """A /var/log as Debian keeps it: auth.log root:adm 0640 (rsyslog), and journald's files
    below journal/MACHINE-ID/, readable by adm (journald grants it by ACL; here by group)."""
    auth_log = root / "auth.log"
    auth_log.parent.mkdir(parents=True)
    auth_log.write_text(auth_lines(datetime.now(UTC)))
    folder = root / "journal" / machine_id
    build_journal(folder, "system", JOURNAL_ENTRIES)
    for path in (auth_log, folder / "system.journal", folder, folder.parent):
        os.chown(path, 0, ADM_GID)
        path.chmod(0o750 if path.is_dir() else 0o640)
    return root


def test_one_cycle_sees_the_hosts_processes_and_the_mounted_logs(
        built: tuple[Podman, str], host_process: tuple[str, int], tmp_path: Path) -> None:
    podman, image = built
    name, pid = host_process
    machine_id = uuid.uuid4().hex
    (tmp_path / "machine-id").write_text(machine_id + "\n")
    var_log = host_var_log(tmp_path / "var-log", machine_id)
    data = tmp_path / "data"
    data.mkdir(mode=0o750)
    os.chown(data, AGENT_UID, AGENT_UID)             # as the image's own volume is
    env = {"MONITOR_COLLECTORS": ",".join(COLLECTORS),
           "MONITOR_PING_TARGETS": "127.0.0.1",       # the container's own loopback
           "MONITOR_AUTH_LOG_PATH": AUTH_LOG,         # present: read as a file
           "MONITOR_SYSLOG_PATH": "/var/log/syslog",  # absent: the journal, found by machine-id
           "MONITOR_LOG_START_AT": "start",           # the lines were written before the first run
           "MONITOR_PROCESSES_TO_MONITOR": f"{name},hm-ctr-absent",
           "MONITOR_HOST_NAME": "container-test"}
    # compose.yaml's mounts: these logs, machine-id and data folder in place of the host's
    mounts = compose_mounts({"/var/log": var_log, "/etc/machine-id": tmp_path / "machine-id",
                             DATA_DIR: data})
    assert f"{var_log}:/var/log:ro" in mounts and f"{data}:{DATA_DIR}" in mounts, mounts
    env_args = [arg for k, v in env.items() for arg in ("-e", f"{k}={v}")]
    run = run_in_container(podman, image, [*mounts, *env_args, image, "--once", "--json"],
                           check=False)
    stderr = run.stderr.decode(errors="replace")
    assert run.returncode == 0, stderr[-3000:]
    report: dict[str, Any] = json.loads(run.stdout)
    statuses = report["collectors"]
    assert set(statuses) == set(COLLECTORS), statuses
    assert all(s["ok"] and s["error"] is None and s["available"] is (c != "sensors")
               for c, s in statuses.items()), statuses
    assert "hwmon" in statuses["sensors"]["note"], statuses["sensors"]   # none on this machine
    seen = report["observations"]
    ping = seen["ping"]["targets"]["127.0.0.1"]        # iputils' ping as uid 10001, NET_RAW only
    assert ping["ok"] and ping["received"] > 0, ping

    watched = seen["processes"]["watched"]            # this machine's process table, host pids
    assert watched[name]["running"] and watched[name]["pids"] == [pid], watched
    assert not watched["hm-ctr-absent"]["running"], watched
    assert seen["processes"]["process_count"] > 10, seen["processes"]

    auth = seen["auth_log"]                          # read through adm, the image user's group
    assert auth["backend"] == "file" and auth["scanner"] == "c", auth   # libhs in the image
    assert auth["failed_logins"] == FAILURES and auth["failed_by_ip"] == {ATTACKER: FAILURES}, auth
    assert auth["accepted_count"] == 1 and auth["login_sources"] == ["alice@192.0.2.10"], auth
    assert [b["address"] for b in auth["bruteforce"]] == [ATTACKER], auth["bruteforce"]
    syslog = seen["syslog"]                          # journalctl in the image, adm's access
    assert syslog["backend"] == "journal" and syslog["lines_read"] == len(JOURNAL_ENTRIES), syslog
    assert syslog["programs"] == {"backup": 2, "kernel": 1}, syslog["programs"]
    kinds = {f["kind"] for f in report["findings"]}
    assert "ssh_bruteforce" in kinds and "process_missing" in kinds, report["findings"]

    # it ran as the image's user: root would have refused a data folder owned by uid 10001
    # (foundation/trust.py), and everything it wrote there is that user's
    written = list(data.rglob("*"))
    assert any(p.name == "monitor.db" for p in written), written
    assert {(p.stat().st_uid, p.stat().st_gid) for p in written} == {(AGENT_UID, AGENT_UID)}, [
        (p, p.stat().st_uid) for p in written]

    # the image as compose runs it: the agent's loop as the container's command, on that data
    # folder; podman runs the image's HEALTHCHECK (healthy after a cycle of this run) and stops it
    box = container_name()
    try:
        podman.run("run", "-d", "--name", box, *RUN_ARGS, "--health-interval=disable",
                   *mounts, *env_args, image)
        once_at = report["started_at"]

        def new_cycle() -> str | None:
            status = podman.run("exec", box, "homelab-monitor", "status", "--json", check=False)
            last = (json.loads(status.stdout or b"{}").get("last_cycle") or {}) if \
                status.returncode == 0 else {}
            return last.get("started_at") if last.get("started_at", "") > once_at else None

        wait_for("a cycle of the agent's loop", new_cycle, 120, every=2)
        health = podman.run("healthcheck", "run", box, check=False)
        assert health.returncode == 0, (health.stdout, health.stderr)
        started = time.monotonic()
        podman.run("stop", "--time", "15", box, timeout=60)
        stop_s = time.monotonic() - started
        state = json.loads(podman.run("inspect", box).stdout)[0]["State"]
        assert state["ExitCode"] == 0 and stop_s < 10, (state, stop_s)   # SIGTERM, a clean exit
    finally:
        podman.run("rm", "--force", "--time", "5", box, check=False, timeout=60)


def test_the_dockerfile_is_the_containerfile() -> None:
    dockerfile = ROOT / "Dockerfile"                  # a copy: BuildKit refuses a symlink
    assert not dockerfile.is_symlink() and dockerfile.read_bytes() == CONTAINERFILE.read_bytes()


def test_copy_sources_reads_the_containerfile() -> None:
    sources = copy_sources(CONTAINERFILE.read_text())
    assert {"requirements.txt", "config.py", "pyproject.toml", "agent", "collectors"} <= set(sources)
    assert not any(s.startswith("/") for s in sources), sources       # COPY --from=build excluded
