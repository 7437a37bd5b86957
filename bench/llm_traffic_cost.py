"""What the llm_traffic uprobes cost (issue 19, point 7).

1. A local TLS client at about 1,000 requests/s, with and without the probes attached: Python's
   http.client over ssl (the system libssl.so.3, which the probes attach to), one keep-alive
   connection, POSTing an OpenAI-shaped chat request (about 1 KiB) with `Host: api.openai.com` to
   a loopback HTTPS server, paced at 1,000 requests/s for a fixed count. The server is Node.js,
   whose OpenSSL is built in (not the system libssl): the probes see the client only, as they
   would see a client of a remote provider. Measured per run: the client's CPU time per request
   (user + system: a uprobe's work is charged to the process that hits it), the achieved rate and
   the latency; then the same client unpaced (as fast as it goes) for its throughput. Runs
   alternate off / floor / on, ``--rounds`` (7) of each; the medians are compared. The floor
   is the same probe points with empty programs: what the kernel's traps cost, which no program
   goes below. One more paced run with kernel.bpf_stats_enabled counts the programs' own run
   time in the kernel. The tracer is the collector's own (collectors/llm_traffic/trace.py and
   bpf.py: libbpf in this process), drained every second as a cycle would, and its reader's CPU
   over the run (this process's, which holds nothing else that works) is reported beside: the
   machine's cost, which the bar does not cover.
2. The agent's steady cycle with the collector enabled and no TLS traffic: the same agent in
   loop mode (10 s interval, processes and llm_runtimes) without llm_traffic, the same again (an
   A/A control: how much two identical agents differ here), and with llm_traffic in
   COLLECTORS, side by side over the same window, CPU to the nanosecond (the threads' schedstat:
   the reader thread included) per 10 s in ``--slices`` parts of the window. No measurable
   change: with - without, in the median part, is within the largest |control - without|.

Run: .venv/bin/python -m bench.llm_traffic_cost [--requests 10000] [--rounds 7] [--window 120] [--slices 6]
Needs root and llm_traffic's eBPF object (make test installs clang and libbpf and builds it).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "llm_traffic_cost.json"
BAR_SLOWDOWN = 0.05
RATE = 1000.0

SERVER_JS = r"""
const https = require('https'); const fs = require('fs');
const answer = JSON.stringify({id: 'chatcmpl-1', object: 'chat.completion', model: 'gpt-4o-mini',
  choices: [{index: 0, message: {role: 'assistant', content: 'ok'}, finish_reason: 'stop'}],
  usage: {prompt_tokens: 250, completion_tokens: 1, total_tokens: 251}});
const server = https.createServer({key: fs.readFileSync(process.argv[2]),
                                   cert: fs.readFileSync(process.argv[3])}, (req, res) => {
  req.on('data', () => {}); req.on('end', () => {
    res.writeHead(200, {'content-type': 'application/json', 'content-length': Buffer.byteLength(answer)});
    res.end(answer); }); });
server.keepAliveTimeout = 600000;
server.listen(0, '127.0.0.1', () => { console.log(server.address().port); });
"""

CLIENT = r"""
import http.client, json, os, resource, ssl, sys, time
port, count, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
body = json.dumps({"model": "gpt-4o-mini", "messages": [
    {"role": "system", "content": "You are a helpful assistant. " * 10},
    {"role": "user", "content": "Summarise this log line for me: " + "x" * 600}]}).encode()
headers = {"Host": "api.openai.com", "Content-Type": "application/json",
           "Authorization": "Bearer sk-bench-not-a-key"}
for _ in range(50):                      # warm-up: the handshake and the first requests
    conn.request("POST", "/v1/chat/completions", body, headers); conn.getresponse().read()
r0 = resource.getrusage(resource.RUSAGE_SELF); t0 = time.perf_counter()
lat = []
for i in range(count):
    if rate > 0:
        wait = t0 + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
    s = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, headers); conn.getresponse().read()
    lat.append(time.perf_counter() - s)
wall = time.perf_counter() - t0; r1 = resource.getrusage(resource.RUSAGE_SELF)
lat.sort()
print(json.dumps({"pid": os.getpid(), "wall_s": wall, "rate": count / wall,
                  "cpu_s": (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
                  "sys_s": r1.ru_stime - r0.ru_stime,
                  "p50_ms": lat[len(lat) // 2] * 1e3, "p95_ms": lat[int(len(lat) * 0.95)] * 1e3}))
"""


def start_server(folder: Path) -> tuple[subprocess.Popen[str], int]:
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    script = folder / "server.js"
    script.write_text(SERVER_JS)
    proc = subprocess.Popen(["node", str(script), str(key), str(cert)], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def run_client(port: int, count: int, rate: float) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", CLIENT, str(port), str(count), str(rate)],
                         capture_output=True, text=True, check=True, timeout=600)
    return dict(json.loads(out.stdout))


class Drainer:
    """The collector's tracer, drained every second as cycles would (faster, to keep it small)."""

    def __init__(self) -> None:
        sys.path.insert(0, str(ROOT))
        from collectors.llm_traffic import trace

        reason = trace.unavailable_reason()
        if reason:
            raise SystemExit(f"llm_traffic cannot capture here: {reason}")
        self.tracer = trace.Tracer()
        self.stop_event = threading.Event()
        self.exchanges = 0
        self.stats: dict[str, int] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop_event.wait(1.0):
            self.exchanges += len(self.tracer.drain())

    def __enter__(self) -> Drainer:
        self.tracer.start()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()
        self.exchanges += len(self.tracer.drain())
        self.stats = self.tracer.stats()
        self.tracer.stop()


class Floor:
    """The same probe points as the collector's, each running an empty program (capture.bpf.c's
    ``nop``): what the kernel's traps cost alone, which no program can go below."""

    def __enter__(self) -> Floor:
        from collectors.llm_traffic import bpf, trace

        probes = [dataclasses.replace(p, program="nop")
                  for lib in trace.find_libssl() for p in bpf.plan(lib)[0]]
        self.capture = bpf.Capture(probes, bpf.MAX_CALL)
        return self

    def __exit__(self, *exc: object) -> None:
        self.capture.close()


def bpf_stats(on: bool) -> None:
    """kernel.bpf_stats_enabled: the BPF programs' run time is counted while it is 1."""
    Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1" if on else "0")


def client_runs(port: int, requests: int, rounds: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "floor": [], "on": []}
    tracer_cpu: list[float] = []
    seen: list[int] = []
    wakeups: list[int] = []
    lost: list[int] = []
    programs: dict[str, list[int]] = {}
    for _ in range(rounds):
        runs["off"].append({"paced": run_client(port, requests, RATE),
                            "unpaced": run_client(port, requests, 0)})
        with Floor():
            runs["floor"].append({"paced": run_client(port, requests, RATE),
                                  "unpaced": run_client(port, requests, 0)})
        with Drainer() as drainer:
            time.sleep(1.0)
            own0 = time.process_time()
            paced = run_client(port, requests, RATE)
            unpaced = run_client(port, requests, 0)
            time.sleep(1.5)                   # the last records read and parsed
            tracer_cpu.append(time.process_time() - own0)
        seen.append(drainer.exchanges)
        wakeups.append(drainer.stats.get("wakeups", 0))
        lost.append(drainer.stats.get("lost_events", 0))
        runs["on"].append({"paced": paced, "unpaced": unpaced})

    # the programs' own run time, in one more paced run (bpf_stats' clock reads cost a little:
    # kept out of the runs compared above)
    bpf_stats(True)
    try:
        with Drainer() as drainer:
            time.sleep(1.0)
            run_client(port, requests, RATE)
            programs = {name: list(v) for name, v in drainer.tracer.program_stats().items()}
    finally:
        bpf_stats(False)

    def med(side: str, mode: str, key: str) -> float:
        return statistics.median(r[mode][key] for r in runs[side])

    out: dict[str, Any] = {"requests": requests, "rounds": rounds, "runs": runs,
                           "exchanges_seen_per_round": seen,
                           "expected_per_round": 2 * (requests + 50),
                           "tracer_cpu_s": tracer_cpu, "reader_wakeups": wakeups,
                           "records_lost": lost,
                           # per program: runs and mean run time in the kernel (bpf_stats)
                           "programs": {name: {"runs": c, "ns_per_run": round(ns / c) if c else 0}
                                        for name, (c, ns) in sorted(programs.items()) if c}}
    for mode in ("paced", "unpaced"):
        for key in ("cpu_s", "rate", "p50_ms", "p95_ms"):
            out[f"{mode}_{key}"] = {side: med(side, mode, key) for side in runs}
    cpu = out["paced_cpu_s"]
    out["paced_cpu_per_request_us"] = {side: cpu[side] / requests * 1e6 for side in runs}
    out["slowdown_cpu"] = cpu["on"] / cpu["off"] - 1
    out["slowdown_cpu_floor"] = cpu["floor"] / cpu["off"] - 1
    out["slowdown_throughput"] = out["unpaced_rate"]["off"] / out["unpaced_rate"]["on"] - 1
    runs_per_request = sum(p["runs"] for p in out["programs"].values()) / (requests + 50)
    out["program_us_per_request"] = sum(
        p["runs"] * p["ns_per_run"] for p in out["programs"].values()) / (requests + 50) / 1e3
    out["program_runs_per_request"] = runs_per_request
    return out


def cpu_ns(pid: int) -> int:
    """CPU time of a process, to the nanosecond: the scheduler's run time of each of its threads
    (/proc/PID/task/*/schedstat), plus its reaped children's (clock ticks: these agents have
    none on this path)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError, ValueError, IndexError), \
                open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as fh:
            total += int(fh.read().split()[0])
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return total + (int(fields[13]) + int(fields[14])) * 10**9 // os.sysconf("SC_CLK_TCK")


AGENTS = (("without", ["processes", "llm_runtimes"]),
          ("control", ["processes", "llm_runtimes"]),      # the same as "without": the noise
          ("with", ["processes", "llm_runtimes", "llm_traffic"]))


def agent_cycles(window_s: float, slices: int) -> dict[str, Any]:
    """Three agents side by side: without llm_traffic, the same again (an A/A control, whose
    difference from the first is what two identical agents differ by here), and with it. CPU
    (to the nanosecond) per 10 s over ``slices`` parts of the window, and per cycle overall.
    "No measurable change": with - without, in the median slice, is within the largest
    |control - without| of any slice."""
    out: dict[str, Any] = {"window_s": window_s, "slices": slices}
    procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-llmt-") as folder:
        for name, collectors in AGENTS:
            data = Path(folder) / name
            data.mkdir()
            env = {**os.environ, "MONITOR_DATA_DIR": str(data),
                   "MONITOR_MONITOR_INTERVAL_SECONDS": "10",
                   "MONITOR_COLLECTORS": json.dumps(collectors),
                   "MONITOR_OLLAMA_HOST": "http://127.0.0.1:9", "MONITOR_LOG_LEVEL": "WARNING",
                   # a 10 s interval holds a cycle only with short bounds (Ollama is absent)
                   "MONITOR_COLLECTOR_TIMEOUT_SECONDS": "3", "MONITOR_OLLAMA_TIMEOUT_SECONDS": "1",
                   "MONITOR_DISCORD_WEBHOOK_URL": ""}
            log = open(data / "agent.log", "wb")  # noqa: SIM115 - closed with the process
            procs[name] = (subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py")],
                                            cwd=ROOT, env=env, stdout=log, stderr=log,
                                            start_new_session=True), data)
        time.sleep(25.0)                      # start-up and two cycles
        marks = [{n: cpu_ns(p.pid) for n, (p, _) in procs.items()}]
        t0 = time.time()
        for _ in range(slices):
            time.sleep(window_s / slices)
            marks.append({n: cpu_ns(p.pid) for n, (p, _) in procs.items()})
        for name, (proc, data) in procs.items():
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
            if not (data / "monitor.db").exists():
                raise SystemExit(f"the agent {name} did not run:\n"
                                 + (data / "agent.log").read_text(errors="replace")[-2000:])
            with sqlite3.connect(data / "monitor.db") as db:
                rows = db.execute("SELECT duration_s, report FROM cycles WHERE started_at >= ?",
                                  (t0,)).fetchall()
            cpu_s = (marks[-1][name] - marks[0][name]) / 1e9
            per10 = [(b[name] - a[name]) / 1e6 / (window_s / slices) * 10
                     for a, b in itertools.pairwise(marks)]
            out[name] = {"cpu_s": cpu_s, "cycles": len(rows),
                         "cpu_ms_per_cycle": cpu_s * 1e3 / max(1, len(rows)),
                         "cpu_ms_per_10s_slices": [round(x, 2) for x in per10],
                         "cycle_s_median": statistics.median(r[0] for r in rows) if rows else None}
            if name == "with":
                last = json.loads(rows[-1][1]) if rows else {}
                status = last.get("collectors", {}).get("llm_traffic", {})
                out[name]["llm_traffic_available"] = status.get("available")
                if not status.get("available"):
                    raise SystemExit(f"llm_traffic did not capture in the agent: {status}")
    w, c, x = (out[n]["cpu_ms_per_10s_slices"] for n in ("without", "control", "with"))
    diffs = [b - a for a, b in zip(w, x, strict=True)]
    noise = [abs(b - a) for a, b in zip(w, c, strict=True)]
    out["with_minus_without_ms_per_10s"] = statistics.median(diffs)
    out["control_noise_ms_per_10s"] = max(noise)
    out["ratio"] = (out["with"]["cpu_ms_per_cycle"] / out["without"]["cpu_ms_per_cycle"]
                    if out["without"]["cpu_ms_per_cycle"] else None)
    out["no_measurable_change"] = out["with_minus_without_ms_per_10s"] <= max(noise)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--window", type=float, default=120.0)
    parser.add_argument("--slices", type=int, default=6)
    args = parser.parse_args()
    if not shutil.which("node"):
        raise SystemExit("node is needed for the TLS server (its OpenSSL is its own)")
    res: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M %Z"),
                           "command": " ".join([".venv/bin/python -m bench.llm_traffic_cost",
                                                *sys.argv[1:]]),
                           "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as folder:
        server, port = start_server(Path(folder))
        try:
            res["client"] = client_runs(port, args.requests, args.rounds)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(10)
    if args.window > 0:
        res["agent"] = agent_cycles(args.window, args.slices)
    res["load_after"] = os.getloadavg()
    c = res["client"]
    met = c["slowdown_cpu"] <= BAR_SLOWDOWN and res.get("agent", {}).get("no_measurable_change", True)
    print(f"TLS client at {RATE:.0f} req/s, {args.requests} requests x {args.rounds} rounds: CPU "
          f"per request {c['paced_cpu_per_request_us']['off']:.1f} us off / "
          f"{c['paced_cpu_per_request_us']['on']:.1f} us on, slowdown {c['slowdown_cpu']:+.1%}; "
          f"bar <= {BAR_SLOWDOWN:.0%} {'met' if met else 'NOT met'}")
    print(f"the floor (the same probes, empty programs: the kernel's traps alone): CPU per request "
          f"{c['paced_cpu_per_request_us']['floor']:.1f} us, {c['slowdown_cpu_floor']:+.1%}; the "
          f"programs in the kernel: {c['program_us_per_request']:.2f} us per request "
          f"({c['program_runs_per_request']:.1f} runs; kernel.bpf_stats_enabled)")
    print(f"unpaced throughput {c['unpaced_rate']['off']:.0f} / {c['unpaced_rate']['on']:.0f} "
          f"req/s off / on, slowdown {c['slowdown_throughput']:+.1%}; latency p50 "
          f"{c['paced_p50_ms']['off']:.3f} / {c['paced_p50_ms']['on']:.3f} ms, p95 "
          f"{c['paced_p95_ms']['off']:.3f} / {c['paced_p95_ms']['on']:.3f} ms")
    print(f"the tracer (the reader thread: records, HTTP parsing) over a round: median "
          f"{statistics.median(c['tracer_cpu_s']):.2f} s CPU for "
          f"{2 * (args.requests + 50)} requests; exchanges seen per round "
          f"{c['exchanges_seen_per_round']} of {c['expected_per_round']}; reader wake-ups "
          f"{c['reader_wakeups']}, records lost {c['records_lost']}")
    if "agent" in res:
        a = res["agent"]
        ratio = "n/a" if a["ratio"] is None else f"{a['ratio']:.3f}"
        print(f"agent steady cycle, no TLS traffic: {a['without']['cpu_ms_per_cycle']:.2f} ms "
              f"CPU per cycle without llm_traffic / {a['with']['cpu_ms_per_cycle']:.2f} ms with "
              f"(the reader included), ratio {ratio}; with - without "
              f"{a['with_minus_without_ms_per_10s']:+.2f} "
              f"ms per 10 s (median of {a['slices']} slices), an identical agent differs by up to "
              f"{a['control_noise_ms_per_10s']:.2f}: "
              f"{'no measurable change' if a['no_measurable_change'] else 'a measurable change'}")
    print(f"load average before {res['load_before'][0]:.2f}, after {res['load_after'][0]:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
