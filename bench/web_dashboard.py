"""The dashboard with a year of history (issue 18, point 6): page times, its memory, and the
agent's cycle cost while it serves.

Run: ``.venv/bin/python -m bench.web_dashboard [--requests N] [--cycles N]``. Two stores are
filled through the store's API (bench/dashboard_store.py): one day and one year of a home server's
5-minute cycles. On each, a real dashboard (``monitor_agent.py web`` on a free loopback port, the
password set by ``web-password`` from standard input) is logged into once, as a browser does (the
login form's CSRF token), and each page and its JSON twin is asked N times in a row on one
keep-alive connection: the overview, the findings (open, the default; and state=all, open and
past, 200 rows at most) and, beside them, the page of the finding open for 90 days (its timeline
reads the newest 2,000 cycles). The time of a request is the client's, from sending it to the last byte of
the response on loopback (no Server-Timing header: the dashboard is not changed for this), so it
includes the client's own cost, measured as a floor on a small static file. Bar: 95th percentile
<= 100 ms with a year; the day store is the reference (ratio year / day).

Memory: the dashboard process's RSS when it first answers, after the requests (steady) and its
peak (VmHWM). Bar: steady <= 60 MB. A login's scrypt check takes 16 MiB for its 0.2 s, so the
peak includes it.

The agent: its cycles (agent.cycle.Agent in one child interpreter, as bench/history.py measures
cycle CPU, one cycle every PACE_S seconds) on the year store, in blocks of BLOCK cycles while the
dashboard (running throughout) is asked nothing, is asked like a dozen open tabs (live.js asks a
tab's JSON every 5 s; here both pages' JSON every second and both HTML pages every 5 s: 2.4
requests/s), or is asked back to back (a worst case, informative); the blocks go in the order
without, with, saturated, saturated, with, without, and again, so a drift of this shared machine
weighs on each alike. Bar: the cycle's CPU and wall medians, with / without, <= 1.10
("unchanged": within the run-to-run noise, which is printed too: the "without" blocks at the
end of each round against those at its start).
Writes bench/results/web_dashboard.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import requests

from bench.dashboard_store import fill

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "web_dashboard.json"
PASSWORD = "bench horse battery staple"
P95_BAR_MS, RSS_BAR_MB, CYCLE_BAR = 100.0, 60.0, 1.10
PACE_S = 0.5                  # the agent's cycles: one every PACE_S seconds, in blocks of BLOCK
BLOCK = 10
MODES = ("without", "with", "saturated")   # no requests; a dozen tabs' worth; back to back
PAGES = (("overview", "/"), ("overview JSON", "/api/overview"),
         ("findings", "/findings"), ("findings JSON", "/api/findings"),
         ("findings (all)", "/findings?state=all"), ("findings JSON (all)", "/api/findings?state=all"))
FLOOR = "/static/app.css"     # the client's and HTTP's own cost: a small static file
# also timed: the page of the finding open longest (90 days; its timeline reads 2,000 events)
LONGEST, LONGEST_KIND = "a finding (90 days)", "host_disappeared"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_for(home: Path, **settings: str) -> dict[str, str]:
    """The dashboard's environment: a store in ``home``, the rest as configured by default."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "MONITOR_DATA_DIR": str(home / "data"), "MONITOR_HISTORY_RETENTION_DAYS": "400"}
    env.update({f"MONITOR_{k}": v for k, v in settings.items()})
    return env


class Dashboard:
    """``monitor_agent.py web`` on a free loopback port, started and stopped by its pid."""

    def __init__(self, home: Path) -> None:
        done = subprocess.run([sys.executable, str(ROOT / "monitor_agent.py"), "web-password"],
                              cwd=ROOT, env=env_for(home), input=PASSWORD + "\n", text=True,
                              capture_output=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"web-password failed: {done.stderr}")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = home / "web.log"
        self.session = requests.Session()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py"), "web"],
                                         cwd=ROOT, env=env_for(home, WEB_PORT=str(port)),
                                         stdout=subprocess.DEVNULL, stderr=log)
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the dashboard did not start: {self.errors()}")
            try:
                if requests.get(self.url + "/login", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)

    def rss_mb(self) -> float:
        """Resident memory now."""
        return float(self.ps.memory_info().rss) / 2**20

    def peak_mb(self) -> float:
        """The resident peak (VmHWM)."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        found = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(found.group(1)) / 1024 if found else float("nan")

    def cpu_s(self) -> float:
        """CPU time the dashboard used so far."""
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def login(self) -> None:
        """Log in once through the form, with its CSRF token."""
        form = self.session.get(self.url + "/login", timeout=30)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        if token is None:
            raise RuntimeError("no CSRF token in the login form")
        answer = self.session.post(self.url + "/login", allow_redirects=False, timeout=30,
                                   data={"csrf_token": token.group(1), "password": PASSWORD,
                                         "next": "/"})
        if answer.status_code != 303:
            raise RuntimeError(f"login failed: {answer.status_code} {answer.text[:300]}")

    def get(self, path: str) -> requests.Response:
        """A GET in the logged-in session; a failure is an error of the benchmark."""
        answer = self.session.get(self.url + path, allow_redirects=False, timeout=30)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:300]}")
        return answer

    def errors(self) -> str:
        """The end of what the dashboard logged."""
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        """Stop it by its own pid."""
        self.session.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def time_pages(web: Dashboard, count: int, label: str) -> dict[str, dict[str, Any]]:
    """Each page ``count`` times in a row (after 10 unmeasured): the time to its full answer."""
    out: dict[str, dict[str, Any]] = {}
    longest = next(i for i in web.get("/api/findings").json()["open"]["items"]
                   if i["kind"] == LONGEST_KIND)
    for name, path in ((f"floor {FLOOR}", FLOOR), *PAGES, (LONGEST, longest["href"])):
        for _ in range(10):
            web.get(path)
        times, size, cpu0 = [], 0, web.cpu_s()
        for _ in range(count):
            t0 = time.perf_counter()
            size = len(web.get(path).content)
            times.append(1000 * (time.perf_counter() - t0))
        cpu = 1000 * (web.cpu_s() - cpu0) / count
        out[name] = {"path": path, "p50_ms": percentile(times, 50),
                     "p95_ms": percentile(times, 95), "max_ms": max(times),
                     "server_cpu_ms": cpu, "bytes": size, "requests": count}
        print(f"{label:6}  {name:20} {statistics.median(times):7.2f} ms at 50 %, "
              f"{percentile(times, 95):7.2f} ms at 95 %, max {max(times):7.2f} ms; dashboard "
              f"CPU {cpu:.2f} ms a request; {size:,} bytes", flush=True)
    return out


def agent_child(db: Path, pace: float) -> None:
    """In a child: one warm-up cycle, then for each line N on stdin, N cycles one every ``pace``
    s, and their CPU and wall times (ms) as one JSON line; an empty line ends it."""
    from agent.cycle import Agent
    from alerts.console import ConsoleNotifier
    from analysis.rules import RulesJudge
    from foundation.settings import load_settings
    from foundation.store.data_storage import Store

    settings = load_settings(environ={}, overrides={
        "DATA_DIR": db.parent, "COLLECTORS": ["processes"], "PROCESSES_TO_MONITOR": ["sshd"],
        "HISTORY_RETENTION_DAYS": 400, "STORE_BACKUP_GENERATIONS": 0})
    store = Store.open(db)
    with open(os.devnull, "w") as devnull:
        agent = Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(devnull)})
        agent.run_cycle()
        print("ready", flush=True)
        for line in sys.stdin:
            if not line.strip():
                break
            cpu, wall = [], []
            next_at = time.monotonic()
            for _ in range(int(line)):
                next_at += pace
                time.sleep(max(0.0, next_at - time.monotonic()))
                c0, w0 = time.process_time(), time.perf_counter()
                agent.run_cycle()
                cpu.append(1000 * (time.process_time() - c0))
                wall.append(1000 * (time.perf_counter() - w0))
            print(json.dumps({"cpu_ms": cpu, "wall_ms": wall,
                              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                              / 1024}), flush=True)
    store.close()


class Load:
    """Requests to the dashboard from a thread, in one of the MODES, switched at will."""

    def __init__(self, web: Dashboard) -> None:
        self.web, self.mode, self.asked = web, "without", 0
        self._random = random.Random(18)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tick, next_at = 0, time.monotonic()
        while not self._stop.is_set():
            mode = self.mode
            if mode == "without":
                self._stop.wait(0.05)
                tick, next_at = 0, time.monotonic()
                continue
            paths = [p for _, p in PAGES[:4]] if mode == "saturated" or tick % 5 == 0 \
                else ["/api/overview", "/api/findings"]
            for path in paths:
                self.web.get(path)
                self.asked += 1
            tick += 1
            if mode == "with":    # 1 s on average, at random: a tab's timer and the agent's
                next_at += self._random.uniform(0.5, 1.5)      # are not in step
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        """End the thread."""
        self._stop.set()
        self._thread.join(60)


def agent_beside(web: Dashboard, db: Path, cycles: int) -> dict[str, Any]:
    """The agent's cycles in blocks of BLOCK, in the order of MODES and back (ABCCBA, so a drift
    of the machine weighs on each mode alike), ``cycles`` per mode; each mode's medians, the
    dashboard's load, and the noise (the first "without" block of each round against the last)."""
    child = subprocess.Popen([sys.executable, "-m", "bench.web_dashboard", "--child", str(db)],
                             cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    load = Load(web)
    pools: dict[str, dict[str, list[float]]] = {
        m: {k: [] for k in ("cpu_ms", "wall_ms", "first", "last", "first_wall", "last_wall")}
        for m in MODES}
    spent = {m: [0.0, 0.0, 0.0] for m in MODES}      # dashboard CPU s, seconds, requests
    peak, blocks, wal = 0.0, [], db.with_name(db.name + "-wal")
    try:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the agent's child did not start")
        rounds = max(1, cycles // (2 * BLOCK))
        for _ in range(rounds):
            for position, mode in enumerate((*MODES, *reversed(MODES))):
                load.mode = mode
                time.sleep(0.5)                     # the load is running before the block
                cpu0, t0, asked0 = web.cpu_s(), time.monotonic(), load.asked
                child.stdin.write(f"{BLOCK}\n")
                child.stdin.flush()
                block = json.loads(child.stdout.readline())
                spent[mode][0] += web.cpu_s() - cpu0
                spent[mode][1] += time.monotonic() - t0
                spent[mode][2] += load.asked - asked0
                peak = max(peak, block["peak_rss_mb"])
                pools[mode]["cpu_ms"] += block["cpu_ms"]
                pools[mode]["wall_ms"] += block["wall_ms"]
                blocks.append({"mode": mode, "cpu_ms": statistics.median(block["cpu_ms"]),
                               "wall_ms": statistics.median(block["wall_ms"]),
                               "wal_mb": wal.stat().st_size / 2**20 if wal.exists() else 0.0})
                half = "first" if position < len(MODES) else "last"
                pools[mode][half] += block["cpu_ms"]
                pools[mode][f"{half}_wall"] += block["wall_ms"]
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(60)
    finally:
        load.stop()
        if child.poll() is None:
            child.kill()
            child.wait(10)
    out: dict[str, Any] = {"block": BLOCK, "pace_s": PACE_S, "agent_peak_rss_mb": peak,
                           "load_average_1min": os.getloadavg()[0], "blocks": blocks}
    for mode in MODES:
        pool = pools[mode]
        cpu_s, secs, asked = spent[mode]
        out[mode] = {"cycles": len(pool["cpu_ms"]),
                     "cpu_ms_median": statistics.median(pool["cpu_ms"]),
                     "wall_ms_median": statistics.median(pool["wall_ms"]),
                     "cpu_ms_p95": percentile(pool["cpu_ms"], 95),
                     "wall_ms_p95": percentile(pool["wall_ms"], 95),
                     "requests_per_s": asked / secs, "dashboard_cpu_share": cpu_s / secs}
    without = pools["without"]
    out["noise_cpu"] = statistics.median(without["last"]) / statistics.median(without["first"])
    out["noise_wall"] = (statistics.median(without["last_wall"])
                         / statistics.median(without["first_wall"]))
    return out


def serve_and_time(home: Path, count: int, label: str) -> tuple[Dashboard, dict[str, Any]]:
    """A dashboard on the store in ``home``: its start, login, pages and memory."""
    web = Dashboard(home)
    start_mb = web.rss_mb()
    web.login()
    after_login_peak = web.peak_mb()
    load_before = os.getloadavg()[0]
    pages = time_pages(web, count, label)
    load = max(load_before, os.getloadavg()[0])
    listed = web.get("/api/findings?state=all").json()
    rows = {state: len(listed[state]["items"]) for state in ("open", "past")}
    print(f"{label:6}  (findings listed with state=all: {rows['open']} open, {rows['past']} past; "
          f"the machine's 1-minute load average up to {load:.1f} on {os.cpu_count()} cores)",
          flush=True)
    return web, {"pages": pages, "rss_start_mb": start_mb, "rss_steady_mb": web.rss_mb(),
                 "peak_after_login_mb": after_login_peak, "rss_peak_mb": web.peak_mb(),
                 "load_average_1min": load, "rows_listed_all": rows}


def main() -> None:
    """Fill the two stores, time the pages on each, the memory, and the agent beside them."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--child", metavar="DB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        agent_child(Path(args.child), PACE_S)
        return
    results: dict[str, Any] = {"stores": {}, "agent": {}}
    with tempfile.TemporaryDirectory() as tmp:
        homes = {}
        for label, days in (("1 day", 1), ("1 year", 365)):
            home = homes[label] = Path(tmp) / label.replace(" ", "_")
            db = home / "data" / "monitor.db"
            t0 = time.perf_counter()
            counts = fill(db, days)
            results["stores"][label] = {"days": days, **counts, "setup_s": time.perf_counter() - t0,
                                        "db_mb": db.stat().st_size / 2**20}
            print(f"{label} store: {counts['samples']:,} samples, {counts['cycles']:,} cycles, "
                  f"{counts['findings']} findings, {counts['finding_events']:,} finding events, "
                  f"{counts['outbox']:,} outbox messages, {counts['silences']} silences; "
                  f"{results['stores'][label]['db_mb']:.0f} MB, filled in "
                  f"{results['stores'][label]['setup_s']:.0f} s", flush=True)
        day_web, day = serve_and_time(homes["1 day"], args.requests, "day")
        day_web.stop()
        results["stores"]["1 day"].update(day)
        web, year = serve_and_time(homes["1 year"], args.requests, "year")
        try:
            results["agent"] = agent_beside(web, homes["1 year"] / "data" / "monitor.db",
                                            args.cycles)
            year["rss_after_agent_mb"], year["rss_peak_mb"] = web.rss_mb(), web.peak_mb()
        finally:
            web.stop()
        results["stores"]["1 year"].update(year)
    report(results, args)


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    """Print the headline figures against the bars and write the JSON."""
    day, year = results["stores"]["1 day"], results["stores"]["1 year"]
    agent = results["agent"]
    for mode in MODES:
        fig = agent[mode]
        print(f"agent cycle, dashboard {mode:9}: CPU {fig['cpu_ms_median']:.2f} ms, wall "
              f"{fig['wall_ms_median']:.2f} ms at 50 % of {fig['cycles']} (at 95 %: CPU "
              f"{fig['cpu_ms_p95']:.2f} ms, wall {fig['wall_ms_p95']:.2f} ms); the dashboard asked "
              f"{fig['requests_per_s']:.1f} requests/s, busy {100 * fig['dashboard_cpu_share']:.1f}"
              " % of a core")
    names = [*(n for n, _ in PAGES), LONGEST]
    worst_p95 = max(year["pages"][n]["p95_ms"] for n in names)
    ratios = {n: year["pages"][n]["p95_ms"] / day["pages"][n]["p95_ms"] for n in names}
    base = agent["without"]
    cpu_ratio = agent["with"]["cpu_ms_median"] / base["cpu_ms_median"]
    wall_ratio = agent["with"]["wall_ms_median"] / base["wall_ms_median"]
    noise = agent["noise_cpu"]
    steady = max(year["rss_steady_mb"], year["rss_after_agent_mb"])
    verdicts = {"p95": worst_p95 <= P95_BAR_MS, "rss": steady <= RSS_BAR_MB,
                "cycle": max(cpu_ratio, wall_ratio) <= CYCLE_BAR}
    said = {True: "met", False: "MISSED"}
    print("p95 server time with 1 year: " + ", ".join(
        f"{n} {year['pages'][n]['p95_ms']:.1f} ms" for n in names)
          + f" (bar <= {P95_BAR_MS:g} ms: {said[verdicts['p95']]})")
    print("ratio p95 1 year / 1 day: " + ", ".join(f"{n} {r:.2f}x" for n, r in ratios.items()))
    print(f"dashboard RSS with 1 year: start {year['rss_start_mb']:.1f} MB, steady "
          f"{year['rss_steady_mb']:.1f} MB ({year['rss_after_agent_mb']:.1f} MB after the agent's "
          f"cycles beside it), peak {year['rss_peak_mb']:.1f} MB (the login's scrypt 16 MiB) "
          f"(bar <= {RSS_BAR_MB:g} MB steady: {said[verdicts['rss']]})")
    print(f"agent cycle with the dashboard asked / without: CPU ratio {cpu_ratio:.2f}, wall "
          f"ratio {wall_ratio:.2f}; back to back: CPU "
          f"{agent['saturated']['cpu_ms_median'] / base['cpu_ms_median']:.2f}, wall "
          f"{agent['saturated']['wall_ms_median'] / base['wall_ms_median']:.2f}; noise "
          f"(without: late / early blocks) CPU {noise:.2f}, wall {agent['noise_wall']:.2f} "
          f"(bar <= {CYCLE_BAR:g}: "
          f"{said[verdicts['cycle']]})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "web_dashboard", "requests": args.requests, "cycles": args.cycles,
        "bars": {"p95_ms": P95_BAR_MS, "rss_steady_mb": RSS_BAR_MB,
                                   "cycle_ratio": CYCLE_BAR},
        "met": verdicts, "p95_ratio_year_day": ratios, "cycle_ratio_cpu": cpu_ratio,
        "cycle_ratio_wall": wall_ratio, "cycle_noise_cpu": noise, **results,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
