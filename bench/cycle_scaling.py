"""The steady cycle's cost and how it grows with 10, 100 and 1,000 watched processes and containers.

Every collector that needs no network runs (processes, sensors, syslog, auth_log, containers,
llm_runtimes) through agent.cycle.Agent on a temporary store with the rules judge. syslog and auth_log
read temporary files (file backend) to which a few hundred realistic lines are appended before
every cycle; containers talks to a real podman API service (tests/podman_engine.py, needs root).

The machine is the same in every scenario, only what is watched changes: 1,000 sleepers (symlinks
to /bin/sleep under unique names) and 1,000 containers (created; the first RUNNING of them running)
exist throughout. The process scenarios watch 10/100/1,000 of the sleepers and no container; the
container scenarios watch 10/100/1,000 containers (the running ones first, the rest created) and no
process. Each scenario runs in its own child interpreter: one warm-up cycle, then N measured ones;
CPU is time.process_time plus RUSAGE_CHILDREN (commands), peak memory the child's ru_maxrss.
Reference measured in the same run: the 10-watched scenario of the same kind.

Run: .venv/bin/python -m bench.cycle_scaling [--cycles 5] [--sizes 10,100,1000]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "cycle_scaling.json"
COLLECTORS = ["processes", "sensors", "syslog", "auth_log", "containers", "llm_runtimes"]
RUNNING = 10                 # containers actually running (each costs a conmon and a runc start)
SYSLOG_LINES = 300           # appended before every cycle
AUTH_LINES = 200
SYSLOG_TEMPLATES = (
    "CRON[{pid}]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
    "systemd[1]: Started session-{n}.scope - Session {n} of User admin.",
    "systemd[1]: session-{n}.scope: Deactivated successfully.",
    "kernel: [{n}.{pid}] usb 1-1: new high-speed USB device number {m} using xhci_hcd",
    "kernel: [{n}.{pid}] EXT4-fs (sda1): re-mounted. Opts: errors=remount-ro",
    "dockerd[{pid}]: time=\"2026-11-23T02:00:{m:02d}Z\" level=info msg=\"ignoring event\"",
    "rsyslogd[{pid}]: action 'action-1-builtin:omfile' resumed (module 'builtin:omfile')",
    "smartd[{pid}]: Device: /dev/sda [SAT], SMART Usage Attribute: 194 changed from {m} to {n}",
    "nginx[{pid}]: 127.0.0.1 - - GET /status HTTP/1.1 200 {n}",
    "app[{pid}]: error: connection to 127.0.0.1:{n} failed, retrying in {m} s",
)
AUTH_TEMPLATES = (
    "sshd[{pid}]: Failed password for invalid user admin{m} from 127.0.0.{h} port {n} ssh2",
    "sshd[{pid}]: Invalid user test{m} from 127.0.0.{h} port {n}",
    "sshd[{pid}]: Accepted publickey for admin from 127.0.0.1 port {n} ssh2: ED25519 SHA256:abc",
    "sshd[{pid}]: pam_unix(sshd:session): session opened for user admin(uid=1000) by (uid=0)",
    "sshd[{pid}]: pam_unix(sshd:session): session closed for user admin",
    "CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
    "sudo[{pid}]:    admin : TTY=pts/0 ; PWD=/home/admin ; USER=root ; COMMAND=/usr/bin/apt update",
    "sshd[{pid}]: Connection closed by authenticating user root 127.0.0.{h} port {n} [preauth]",
)


def log_lines(templates: tuple[str, ...], count: int, seq: int) -> str:
    """``count`` syslog-style lines stamped now, cycling through the templates with varying digits."""
    stamp = time.strftime("%b %d %H:%M:%S")
    out = []
    for i in range(count):
        k = seq * count + i
        body = templates[k % len(templates)].format(pid=1000 + k % 5000, n=k, m=k % 60,
                                                    h=2 + k % 7)
        out.append(f"{stamp} benchhost {body}\n")
    return "".join(out)


def cpu_now() -> float:
    """CPU seconds of this process plus those of its waited-for children (commands)."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """In a child interpreter: one warm-up cycle, then ``cycles`` measured ones."""
    sys.path.insert(0, str(ROOT))
    from agent.cycle import Agent
    from alerts.console import ConsoleNotifier
    from analysis.rules import RulesJudge
    from foundation.settings import load_settings
    from foundation.store.data_storage import Store

    folder = Path(spec["folder"])
    syslog, auth = folder / "syslog", folder / "auth.log"
    syslog.write_text(log_lines(SYSLOG_TEMPLATES, SYSLOG_LINES, 0))
    auth.write_text(log_lines(AUTH_TEMPLATES, AUTH_LINES, 0))
    settings = load_settings(environ={}, overrides={
        "DATA_DIR": folder / "data", "COLLECTORS": COLLECTORS,
        "SYSLOG_PATH": syslog, "AUTH_LOG_PATH": auth,
        "SYSLOG_BACKEND": "file", "AUTH_LOG_BACKEND": "file",
        "PROCESSES_TO_MONITOR": spec["processes"],
        "DOCKER_CONTAINERS_TO_MONITOR": spec["containers"], "DOCKER_HOST": spec["docker_host"],
        "OLLAMA_HOST": spec["ollama"]})
    store = Store.open(settings.db_path)
    cpu, wall = [], []
    with open(os.devnull, "w") as devnull:
        agent = Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(devnull)})
        for seq in range(spec["cycles"] + 1):
            with syslog.open("a") as fh:
                fh.write(log_lines(SYSLOG_TEMPLATES, SYSLOG_LINES, seq + 1))
            with auth.open("a") as fh:
                fh.write(log_lines(AUTH_TEMPLATES, AUTH_LINES, seq + 1))
            c0, w0 = cpu_now(), time.perf_counter()
            last = agent.run_cycle()
            if seq:                                   # cycle 0 is the warm-up
                cpu.append(cpu_now() - c0)
                wall.append(time.perf_counter() - w0)
    store.close()
    status = {n: {k: last["collectors"][n].get(k) for k in ("ok", "available", "duration_s")}
              for n in COLLECTORS}
    obs = last["observations"]
    watched_procs = obs.get("processes", {}).get("watched", {})
    watched_ctrs = obs.get("containers", {}).get("watched", {})
    return {"cpu_ms_median": 1000 * statistics.median(cpu), "cpu_ms_min": 1000 * min(cpu),
            "wall_ms_median": 1000 * statistics.median(wall),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "collectors": status,
            "process_table": obs.get("processes", {}).get("process_count"),
            "watched_processes_running": sum(1 for f in watched_procs.values() if f["running"]),
            "engine": obs.get("containers", {}).get("engine"),
            "watched_containers_running": sum(1 for f in watched_ctrs.values() if f["running"]),
            "watched_containers_existing": sum(1 for f in watched_ctrs.values() if f["exists"]),
            "log_lines_read_last_cycle": {n: obs.get(n, {}).get("lines_read")
                                          for n in ("syslog", "auth_log")}}


def start_sleepers(folder: Path, count: int) -> tuple[list[str], list[subprocess.Popen]]:
    """``count`` sleep processes, each under its own name (a symlink to /bin/sleep)."""
    folder.mkdir(parents=True, exist_ok=True)
    sleep = os.path.realpath(shutil.which("sleep") or "/bin/sleep")
    names, procs = [], []
    tag = os.getpid() % 10000
    for i in range(count):
        name = f"bsl{tag:04d}w{i:04d}"            # 13 characters: the kernel's comm holds 15
        link = folder / name
        link.symlink_to(sleep)
        procs.append(subprocess.Popen([str(link), "3600"], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        names.append(name)
    return names, procs


def stop_sleepers(procs: list[subprocess.Popen]) -> None:
    """Stop each sleeper by its own pid and reap it."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def create_containers(url: str, image: str, count: int, running: int) -> list[str]:
    """``count`` containers named bctr0000..., the first ``running`` of them started."""
    import docker

    client = docker.DockerClient(base_url=url, timeout=60)
    names = [f"bctr{i:04d}" for i in range(count)]
    try:
        host_config = client.api.create_host_config(network_mode="none")
        for name in names:
            client.api.create_container(image, ["sleep", "3600"], name=name,
                                        host_config=host_config)
        for name in names[:running]:
            client.api.start(name)
    finally:
        client.close()
    return names


def child(spec: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter and return its figures."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = dict(spec, folder=str(folder))
    out = subprocess.run([sys.executable, "-m", "bench.cycle_scaling", "--child", json.dumps(spec)],
                         cwd=ROOT, capture_output=True, text=True, check=False, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"scenario failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(cycles: int, sizes: list[int]) -> dict[str, Any]:
    """Set up sleepers and containers, run every scenario, clean everything up."""
    sys.path.insert(0, str(ROOT))
    from tests.podman_engine import IMAGE, EngineError, PodmanEngine

    biggest = max(sizes)
    scenarios: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        folder = Path(tmp)
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            ollama = f"http://127.0.0.1:{closed.getsockname()[1]}"
        engine = PodmanEngine(folder / "podman")
        procs: list[subprocess.Popen] = []
        try:
            t0 = time.perf_counter()
            names, procs = start_sleepers(folder / "sleepers", biggest)
            sleepers_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            kinds, containers = ["processes"], []
            try:
                engine.start()
                containers = create_containers(engine.url, IMAGE, biggest, min(RUNNING, biggest))
                kinds.append("containers")
            except (EngineError, OSError) as err:     # podman absent, or not root
                print(f"container scenarios skipped: {err}", flush=True)
            containers_s = time.perf_counter() - t0
            print(f"setup: {biggest} sleepers in {sleepers_s:.1f} s; {len(containers)} containers "
                  f"({min(RUNNING, len(containers))} running) in {containers_s:.1f} s", flush=True)
            base = {"cycles": cycles, "docker_host": engine.url, "ollama": ollama}
            for kind in kinds:
                for n in sizes:
                    spec = dict(base, processes=names[:n] if kind == "processes" else [],
                                containers=containers[:n] if kind == "containers" else [])
                    label = f"{n} watched {kind}"
                    figures = child(spec, folder / f"{kind}-{n}")
                    figures.update(kind=kind, watched=n)
                    scenarios[label] = figures
                    print(f"  measured {label}: {figures['cpu_ms_median']:.0f} ms CPU",
                          flush=True)
        finally:
            stop_sleepers(procs)
            if (engine.folder / "storage.conf").exists():  # never `podman rm --all` elsewhere
                engine.stop()
    for figures in scenarios.values():
        ref = scenarios[f"{min(sizes)} watched {figures['kind']}"]
        figures["cpu_ratio"] = figures["cpu_ms_median"] / max(ref["cpu_ms_median"], 1e-6)
        figures["wall_ratio"] = figures["wall_ms_median"] / max(ref["wall_ms_median"], 1e-6)
        figures["rss_ratio"] = figures["peak_rss_mb"] / max(ref["peak_rss_mb"], 1e-6)
    return {"benchmark": "cycle_scaling", "cycles": cycles, "collectors": COLLECTORS,
            "sleepers": biggest, "containers_created": len(containers),
            "containers_running": min(RUNNING, len(containers)),
            "log_lines_per_cycle": {"syslog": SYSLOG_LINES, "auth_log": AUTH_LINES},
            "load1_at_end": round(os.getloadavg()[0], 2), "scenarios": scenarios,
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}


def report(res: dict[str, Any]) -> None:
    """Print the table and what each scenario contained."""
    first = next(iter(res["scenarios"].values()))
    off = [n for n, s in first["collectors"].items() if not s["available"]]
    print(f"collectors: {', '.join(res['collectors'])} (unavailable here: {', '.join(off) or '-'}); "
          f"{res['log_lines_per_cycle']['syslog']} syslog + {res['log_lines_per_cycle']['auth_log']}"
          f" auth lines appended per cycle; median of {res['cycles']} cycles after a warm-up")
    print(f"machine: {res['sleepers']} sleepers and {res['containers_created']} containers "
          f"({res['containers_running']} running) exist in every scenario; load {res['load1_at_end']}")
    print(f"{'scenario':<24}{'CPU ms':>9}{'wall ms':>9}{'RSS MB':>8}{'CPU x':>7}{'wall x':>8}"
          f"{'RSS x':>7}  contents")
    for label, s in res["scenarios"].items():
        if s["kind"] == "processes":
            what = (f"{s['watched_processes_running']} watched running, "
                    f"table {s['process_table']} processes")
        else:
            eng = s["engine"] or {}
            what = (f"{s['watched_containers_existing']} watched exist "
                    f"({s['watched_containers_running']} running), engine lists "
                    f"{eng.get('containers')}")
        print(f"{label:<24}{s['cpu_ms_median']:>9.1f}{s['wall_ms_median']:>9.1f}"
              f"{s['peak_rss_mb']:>8.1f}{s['cpu_ratio']:>7.2f}{s['wall_ratio']:>8.2f}"
              f"{s['rss_ratio']:>7.2f}  {what}")


def main() -> None:
    """Run the scenarios (or one, as a child), print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return
    sizes = sorted({int(s) for s in args.sizes.split(",")})
    res = run(max(1, args.cycles), sizes)
    report(res)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
