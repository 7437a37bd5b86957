"""Side by side with four peers (issue 20, point 2): CPU per 10 s and steady RSS, the same window.

Five processes run at once, each doing its own job at a 10 s cycle on loopback only:

- this agent: ``monitor_agent.py`` in loop mode (bench.time_to_alert.Agent), MONITOR_INTERVAL_SECONDS
  10, collectors syslog, auth_log, sensors, ping, processes, containers, llm_runtimes; ping
  127.0.0.1; syslog and auth_log on the temporary files below; a temporary DATA_DIR; no Discord
  webhook; Ollama absent (a closed loopback port: the rules decide); COLLECTOR_TIMEOUT_SECONDS 3
  and OLLAMA_TIMEOUT_SECONDS 1, without which the agent refuses a 10 s interval; the rest as
  shipped (FOLLOW_LOGS on: a new line starts an event cycle).
- Glances (Debian's): quiet export mode, ``glances -q --export csv -t 10``: every enabled plugin is
  updated and every one exported to a CSV file each 10 s (``--stdout cpu,mem,load`` updates the
  same plugins but prints three; the export is the closer to "collect everything"). Config: the
  Debian file with the update check off, the ports plugin pinging 127.0.0.1 every 10 s instead of
  the default gateway, the cloud plugin off; HTTP(S)_PROXY a closed loopback port, so nothing
  (the cloud plugin's metadata thread starts whatever the config says) leaves the machine.
- fail2ban-server (Debian's): bench.time_to_alert.Fail2ban, foreground, private socket, pid file,
  log and config folder, an sshd jail on the temporary auth.log, backend polling.
- prometheus-node-exporter (Debian's): its default collectors on a loopback port, scraped every
  10 s by this bench with a plain HTTP GET (the scrape's cost in this process is not counted).
- monit (Debian's): ``monit -I`` on a private control file: a 10 s cycle, a process check (the
  agent, by a pid file), a file check (the auth.log: size, timestamp and a content match), a ping
  of 127.0.0.1 and the system check; its state, id and pid files in the temporary folder.

A background writer appends one benign syslog line and one benign auth.log line every 10 s to the
files they read. After a warm-up (30 s, and for the agent its first two cycles) the window
(120 s) is measured: CPU time = user + system of each process tree (psutil: the process's
cpu_times with children_user/children_system, plus its live descendants'), per 10 s; RSS of the
tree every 5 s: the median (steady) and the max (peak). The 1-minute load average is read every
10 s during the window and reported (another engineer's work may load this machine).

A peer that cannot start is said so in the output and the JSON, and the others go on; the exit code
is non-zero only if the agent fails. Processes are stopped by their pid (the peers' by the process
group started for them), the temporary folder is removed.

Run: .venv/bin/python -m bench.peers [--window 120] [--warmup 30]; a quick run: --window 20
"""
from __future__ import annotations

import argparse
import configparser
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import psutil

from bench import save
from bench.time_to_alert import (
    STOP_TIMEOUT_S,
    Agent,
    Fail2ban,
    closed_port_url,
    file_lines,
    machine_load,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent
INTERVAL_S = 10
SAMPLE_S = 5.0
LOAD_NOTE = 1.5
COLLECTORS = "syslog,auth_log,sensors,ping,processes,containers,llm_runtimes"
LINES = (("syslog", "CRON", "(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)"),
         ("auth.log", "CRON", "pam_unix(cron:session): session opened for user root(uid=0) by "
                              "(uid=0)"))
# a 10 s interval must hold the worst cycle (agent/budget.py): collectors capped at 3 s, the judge
# at 2 x 1 s + 5 s grace (Ollama is absent: refused at once, so neither bound changes the work)
COLLECTOR_CAP_S, OLLAMA_TIMEOUT_S = 3, 1
PEERS = ("glances", "fail2ban-server", "prometheus-node-exporter", "monit")
MONITRC = """set daemon {interval}
set log {folder}/monit.log
set pidfile {folder}/monit.pid
set idfile {folder}/monit.id
set statefile {folder}/monit.state
set eventqueue basedir {folder}/events slots 100

check system bench_system
  if loadavg (1min) per core > 8 then alert
  if memory usage > 95% then alert
  if cpu usage > 95% for 10 cycles then alert

check process bench_agent with pidfile {folder}/agent.pid
  if cpu > 80% for 3 cycles then alert
  if totalmem > 500 MB then alert

check file bench_auth_log with path {auth_log}
  if size > 100 MB then alert
  if timestamp > 1 hour then alert
  if content = "Accepted password" then alert

check host bench_loopback with address 127.0.0.1
  if failed ping count 3 then alert
"""


class Running:
    """One measured process: what it is, how to stop it, and whether it started."""

    def __init__(self, name: str, mode: str) -> None:
        self.name, self.mode = name, mode
        self.pid: int | None = None
        self.error: str | None = None
        self.stop: Callable[[], Any] = lambda: None
        self.evidence: dict[str, Any] = {}

    def alive(self) -> bool:
        try:
            return self.pid is not None and psutil.Process(self.pid).status() != \
                psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False


def stop_group(proc: subprocess.Popen[Any]) -> int | None:
    """SIGTERM the process group this bench created for ``proc``, SIGKILL it after a timeout."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            return proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.returncode


def spawn(run: Running, argv: list[str], folder: Path, env: dict[str, str] | None = None) -> \
        subprocess.Popen[Any]:
    """Start a peer in its own process group (its output in the folder); ``run`` learns its pid."""
    with open(folder / "out.log", "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=folder,
                                start_new_session=True)
    run.pid, run.stop = proc.pid, lambda: stop_group(proc)
    return proc


def tail(path: Path, chars: int = 400) -> str:
    return path.read_text(errors="replace")[-chars:].strip() if path.exists() else ""


# --- the peers -----------------------------------------------------------------------------------
def start_glances(folder: Path) -> Running:
    run = Running("glances", "quiet export mode: glances -q --export csv -t 10 (every enabled plugin "
                             "updated and exported each 10 s); ports plugin pings 127.0.0.1")
    conf = configparser.RawConfigParser()
    conf.read("/etc/glances/glances.conf")
    conf.set("global", "check_update", "false")
    for key, value in (("refresh", str(INTERVAL_S)), ("port_default_gateway", "False"),
                       ("port_1_host", "127.0.0.1"), ("port_1_description", "loopback")):
        conf.set("ports", key, value)
    if not conf.has_section("cloud"):
        conf.add_section("cloud")
    conf.set("cloud", "disable", "True")
    with open(folder / "glances.conf", "w") as out:
        conf.write(out)
    closed = closed_port_url()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder),
           "XDG_CACHE_HOME": str(folder), "HTTP_PROXY": closed, "HTTPS_PROXY": closed,
           "http_proxy": closed, "https_proxy": closed, "LANG": "C.UTF-8"}
    csv = folder / "glances.csv"
    proc = spawn(run, ["glances", "-C", str(folder / "glances.conf"), "-q", "--export", "csv",
                       "--export-csv-file", str(csv), "-t", str(INTERVAL_S),
                       "--disable-check-update", "--disable-plugin", "cloud,ip"], folder, env)
    time.sleep(3)
    if proc.poll() is not None:
        run.error = f"exited at start with code {proc.returncode}: {tail(folder / 'out.log')}"
    run.evidence["csv"] = csv
    return run


def start_fail2ban(folder: Path, auth_log: Path, max_retry: int, findtime_s: int) -> Running:
    run = Running("fail2ban-server", "foreground (-f), private socket/pid file/log/config folder, "
                                     "sshd jail on the shared auth.log, backend polling")
    f2b = Fail2ban(folder, "polling", auth_log, max_retry, findtime_s)
    run.pid, run.stop = f2b.proc.pid, f2b.stop
    run.evidence["log"] = f2b.log
    return run


def start_node_exporter(folder: Path) -> Running:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = Running("prometheus-node-exporter", f"default collectors on 127.0.0.1:{port}, GET "
                                              "/metrics by the bench every 10 s")
    proc = spawn(run, ["prometheus-node-exporter", f"--web.listen-address=127.0.0.1:{port}"],
                 folder)
    run.evidence.update(url=f"http://127.0.0.1:{port}/metrics", scrapes=0, failed_scrapes=0,
                        bytes=0)
    if not wait_for(lambda: proc.poll() is not None or scrape(run), 20) or proc.poll() is not None:
        run.error = f"did not answer /metrics (exit {proc.poll()}): {tail(folder / 'out.log')}"
    run.evidence["failed_scrapes"] = 0     # those before it listened
    return run


def scrape(run: Running) -> bool:
    """One plain GET of the exporter's /metrics, no proxy; counted in its evidence."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(run.evidence["url"], timeout=5) as answer:
            run.evidence["bytes"] = len(answer.read())
    except OSError:
        run.evidence["failed_scrapes"] += 1
        return False
    run.evidence["scrapes"] += 1
    return True


def start_monit(folder: Path, auth_log: Path, agent_pid: int) -> Running:
    run = Running("monit", "monit -I, private control file: 10 s cycle; checks: system, process "
                           "(the agent, by pid file), file (the shared auth.log: size, timestamp, "
                           "content), host 127.0.0.1 (ping count 3)")
    (folder / "events").mkdir()
    (folder / "agent.pid").write_text(f"{agent_pid}\n")
    rc = folder / "monitrc"
    rc.write_text(MONITRC.format(interval=INTERVAL_S, folder=folder, auth_log=auth_log))
    rc.chmod(0o600)
    proc = spawn(run, ["monit", "-I", "-c", str(rc), "-p", str(folder / "monit.pid"),
                       "-s", str(folder / "monit.state")], folder)
    run.evidence["log"] = folder / "monit.log"
    if not wait_for(lambda: proc.poll() is not None or "started" in tail(folder / "monit.log",
                                                                         2000), 20) \
            or proc.poll() is not None:
        run.error = (f"did not start (exit {proc.poll()}): {tail(folder / 'out.log')} "
                     f"{tail(folder / 'monit.log')}")
    return run


def start_agent(folder: Path, syslog: Path, auth_log: Path) -> tuple[Running, Agent]:
    run = Running("this agent", "monitor_agent.py loop mode, MONITOR_INTERVAL_SECONDS=10, collectors "
                                f"{COLLECTORS}, ping 127.0.0.1, rules (Ollama absent), FOLLOW_LOGS on, "
                                f"COLLECTOR_TIMEOUT_SECONDS={COLLECTOR_CAP_S}, "
                                f"OLLAMA_TIMEOUT_SECONDS={OLLAMA_TIMEOUT_S} (to fit 10 s)")
    agent = Agent(folder, "", MONITOR_INTERVAL_SECONDS=str(INTERVAL_S), COLLECTORS=COLLECTORS,
                  PING_TARGETS="127.0.0.1", SYSLOG_BACKEND="file", SYSLOG_PATH=str(syslog),
                  AUTH_LOG_BACKEND="file", AUTH_LOG_PATH=str(auth_log),
                  COLLECTOR_TIMEOUT_SECONDS=str(COLLECTOR_CAP_S),
                  OLLAMA_TIMEOUT_SECONDS=str(OLLAMA_TIMEOUT_S))
    run.pid, run.stop = agent.proc.pid, agent.stop
    return run, agent


# --- measuring -----------------------------------------------------------------------------------
def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_s(pid: int) -> float:
    """User + system seconds of the process, its waited-for children and its live descendants."""
    total = 0.0
    for p in tree(pid):
        try:
            t = p.cpu_times()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def rss_and_remotes(pid: int, names: set[str]) -> tuple[int, set[str]]:
    """The tree's resident memory, and any non-loopback address it is connected to right now;
    the names of the tree's processes are added to ``names``."""
    rss, remotes = 0, set()
    for p in tree(pid):
        try:
            rss += p.memory_info().rss
            names.add(p.name())
            remotes |= {c.raddr.ip for c in p.net_connections("inet")
                        if c.raddr and not c.raddr.ip.startswith(("127.", "::1", "::ffff:127."))}
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return rss, remotes


def every(period_s: float, stop: threading.Event, work: Callable[[], Any]) -> threading.Thread:
    """Run ``work`` now and every ``period_s`` until ``stop`` is set."""
    def loop() -> None:
        while True:
            work()
            if stop.wait(period_s):
                return
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Start the five, warm them up, measure the window; the figures of each."""
    sys.path.insert(0, str(ROOT))
    from foundation.settings import load_settings

    defaults = load_settings(environ={})
    out: dict[str, Any] = {"processes": {}}
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-peers-")))
        syslog, auth_log = folder / "syslog", folder / "auth.log"
        for f in (syslog, auth_log):
            f.write_bytes(b"")
        stop = threading.Event()
        stack.callback(stop.set)
        written = [0]

        def write() -> None:
            for name, program, text in LINES:
                with open(folder / name, "ab") as log:
                    log.write(file_lines(time.time(), program, [(4000 + written[0], text)]))
            written[0] += 1

        every(INTERVAL_S, stop, write)
        started = time.monotonic()
        agent_run, agent = start_agent(folder / "agent", syslog, auth_log)
        stack.callback(agent_run.stop)
        runs = [agent_run]
        starters: dict[str, Callable[[Path], Running]] = {
            "glances": start_glances,
            "fail2ban-server": lambda d: start_fail2ban(d, auth_log,
                                                        defaults.SSH_BRUTEFORCE_MAX_RETRY,
                                                        defaults.SSH_BRUTEFORCE_FINDTIME_SECONDS),
            "prometheus-node-exporter": start_node_exporter,
            "monit": lambda d: start_monit(d, auth_log, agent.proc.pid)}
        for name in PEERS:
            sub = folder / name
            sub.mkdir()
            try:
                run = starters[name](sub)
            except FileNotFoundError as err:
                run = Running(name, "")
                run.error = f"not installed ({err.filename}); `make bench` installs it from Debian"
            except (OSError, RuntimeError, subprocess.SubprocessError) as err:
                run = Running(name, "")
                run.error = f"could not start: {err}"
            stack.callback(run.stop)
            runs.append(run)
        node = next(r for r in runs if r.name == "prometheus-node-exporter")
        if node.error is None:
            every(INTERVAL_S, stop, lambda: scrape(node))
        try:
            agent.wait_started(following=True)
        except RuntimeError as err:
            agent_run.error = str(err)[-1500:]
        if agent_run.error is None:
            wait_for(lambda: len(agent.cycles()) >= 2 or agent.proc.poll() is not None, 60)
            warm = started + args.warmup
            time.sleep(max(0.0, warm - time.monotonic()))
            if agent.proc.poll() is not None:
                agent_run.error = f"exited during the warm-up (code {agent.proc.returncode})"
        live = [r for r in runs if r.error is None and r.pid is not None]
        samples: dict[str, list[int]] = {r.name: [] for r in live}
        remotes: dict[str, set[str]] = {r.name: set() for r in live}
        names: dict[str, set[str]] = {r.name: set() for r in live}
        before, after = {}, {}
        if agent_run.error is None:
            with machine_load() as load:
                out["load_at_start"] = os.getloadavg()
                w0, t0 = time.time(), time.monotonic()
                before = {r.name: cpu_s(r.pid) for r in live if r.alive()}  # type: ignore[arg-type]
                lines0 = written[0]
                scrapes0 = node.evidence.get("scrapes", 0)
                tick = 0
                while True:
                    for r in live:
                        if r.name in before and r.alive():
                            rss, far = rss_and_remotes(r.pid, names[r.name])  # type: ignore[arg-type]
                            samples[r.name].append(rss)
                            remotes[r.name] |= far
                    tick += 1
                    if tick * SAMPLE_S > args.window:
                        break
                    time.sleep(max(0.0, t0 + tick * SAMPLE_S - time.monotonic()))
                after = {r.name: cpu_s(r.pid) for r in live  # type: ignore[arg-type]
                         if r.name in before and r.alive()}
                elapsed = time.monotonic() - t0
                out["load_at_end"] = os.getloadavg()
            out.update(window_s=elapsed, window_started_at=w0, machine_load=load,
                       background_lines_each_file=written[0] - lines0,
                       node_exporter_scrapes=node.evidence.get("scrapes", 0) - scrapes0)
            inside = [c for c in agent.cycles() if w0 <= c["started_at"] < w0 + elapsed]
            agent_run.evidence["cycles_in_window"] = {
                "scheduled": sum(c["trigger"] != "event" for c in inside),
                "event": sum(c["trigger"] == "event" for c in inside)}
        agent_run.evidence["exit_code"] = agent_run.stop()
        for r in runs[1:]:
            r.stop()
        for r in runs:
            fig: dict[str, Any] = {"mode": r.mode, "pid": r.pid, "error": r.error}
            if r.error is None and r.name not in after:
                fig["error"] = r.error = "exited during the window" if before else "not measured"
            if r.error is None:
                s = samples[r.name]
                fig.update(cpu_ms_per_10s=(after[r.name] - before[r.name]) * 1000 * INTERVAL_S
                           / out["window_s"], cpu_s=after[r.name] - before[r.name],
                           rss_steady_mb=statistics.median(s) / 2**20, rss_peak_mb=max(s) / 2**20,
                           rss_samples=len(s), non_loopback_peers=sorted(remotes[r.name]),
                           tree_seen=sorted(names[r.name]))
            fig.update(evidence_of(r))
            out["processes"][r.name] = fig
    return out


def evidence_of(run: Running) -> dict[str, Any]:
    """What shows the process did its work (read before the temporary folder goes)."""
    ev = run.evidence
    if run.name == "this agent":
        return {k: ev[k] for k in ("cycles_in_window", "exit_code") if k in ev}
    if run.name == "glances" and "csv" in ev:
        rows = ev["csv"].read_text(errors="replace").count("\n") if ev["csv"].exists() else 0
        return {"csv_rows": rows}
    if run.name == "prometheus-node-exporter":
        return {"scrapes": ev.get("scrapes", 0), "failed_scrapes": ev.get("failed_scrapes", 0),
                "metrics_bytes": ev.get("bytes", 0)}
    if "log" in ev and ev["log"].exists():
        return {"log_tail": ev["log"].read_text(errors="replace").splitlines()[-3:]}
    return {}


# --- report --------------------------------------------------------------------------------------
def ratios(res: dict[str, Any]) -> None:
    """Agent / peer for each figure, where both were measured."""
    agent = res["processes"]["this agent"]
    for name, fig in res["processes"].items():
        if name == "this agent" or fig["error"] or agent["error"]:
            continue
        fig["agent_ratio"] = {k: agent[k] / fig[k] if fig[k] else None
                              for k in ("cpu_ms_per_10s", "rss_steady_mb", "rss_peak_mb")}


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def report(res: dict[str, Any]) -> None:
    procs = res["processes"]
    measured = {n: f for n, f in procs.items() if "agent_ratio" in f}
    for key, what in (("cpu_ms_per_10s", "CPU per 10 s"), ("rss_steady_mb", "steady RSS")):
        print(f"agent / peer ratio, {what}: " + (", ".join(
            f"{n} {_x(f['agent_ratio'][key])}" for n, f in measured.items()) or "no peer measured"))
    print(f"\n{'process':<26} {'CPU ms/10 s':>11} {'steady RSS MB':>13} {'peak RSS MB':>11}   "
          f"agent/peer: CPU, steady, peak")
    for name, f in procs.items():
        if f["error"]:
            print(f"{name:<26} NOT MEASURED: {f['error']}")
            continue
        r = f.get("agent_ratio")
        ratio = "(reference)" if r is None else ", ".join(_x(r[k]) for k in (
            "cpu_ms_per_10s", "rss_steady_mb", "rss_peak_mb"))
        print(f"{name:<26} {f['cpu_ms_per_10s']:>11.1f} {f['rss_steady_mb']:>13.1f} "
              f"{f['rss_peak_mb']:>11.1f}   {ratio}")
    if "window_s" in res:
        load = res["machine_load"]
        print(f"\nwindow {res['window_s']:.0f} s after a {res['warmup_s']:.0f} s warm-up; "
              f"{res['background_lines_each_file']} background lines to each of syslog and "
              f"auth.log; {res['node_exporter_scrapes']} node-exporter scrapes; load average "
              f"(1 min) mean {load['mean']:.2f}, max {load['max']:.2f} on {os.cpu_count()} cores; "
              f"CPU times count in 10 ms ticks (+-{10 * INTERVAL_S / res['window_s']:.1f} ms "
              f"per 10 s over this window)")
        if load["max"] > LOAD_NOTE:
            print(f"NOTE: the load average went above {LOAD_NOTE} during the window (other work on "
                  f"this machine): CPU times may be inflated by contention")
    for name, f in procs.items():
        extra = {k: v for k, v in f.items() if k in ("cycles_in_window", "csv_rows", "scrapes",
                                                      "failed_scrapes", "non_loopback_peers",
                                                      "tree_seen")}
        print(f"[{name}] {f['mode'] or '-'}" + (f"; {extra}" if extra else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=120.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the window")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # clean up on the runner's SIGTERM
    t0 = time.monotonic()
    res: dict[str, Any] = {"command": " ".join([".venv/bin/python -m bench.peers", *sys.argv[1:]]),
                           "interval_s": INTERVAL_S, "warmup_s": args.warmup,
                           "rss_sample_s": SAMPLE_S, "cpu_count": os.cpu_count()}
    res.update(measure(args))
    ratios(res)
    res["wall_s"] = time.monotonic() - t0
    report(res)
    save("peers", res)
    print(f"wrote bench/results/peers.json ({res['wall_s']:.0f} s)")
    agent = res["processes"]["this agent"]
    return 1 if agent["error"] or agent.get("exit_code") not in (0, None) else 0


if __name__ == "__main__":
    sys.exit(main())
