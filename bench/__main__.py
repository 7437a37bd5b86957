"""`make bench`: run every benchmark in its own interpreter and keep what each printed.

Each benchmark prints its figures with ratios against a reference measured in the same run and
writes bench/results/<name>.json; this runner also writes bench/results/latest.txt (everything
they printed) and bench/results/RESULTS.md (a table of their headline figures), which
docs/performance.md quotes.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# name -> what it measures; run in this order (the log ingest benchmarks write 1 GiB files).
BENCHMARKS: dict[str, str] = {
    "history": "cycle cost with 1 day and with 1 year of history",
    "cycle_collectors": "each collector's time and the agent's CPU per cycle",
    "cycle_scaling": "cycle CPU and peak memory with 10, 100 and 1,000 watched processes/containers",
    "prompt_size": "prompt tokens against new log volume",
    "syslog_parse": "syslog parsing lines/s against grep and a Python loop",
    "auth_ingest": "auth.log extraction on 1 GiB against grep -c and fail2ban-regex",
    "auth_phases": "auth.log extraction's time by phase, with and without the malloc tuning",
    "time_to_alert": "event cycles at the 300 s default: a brute-force login -> Discord and Home "
                     "Assistant, file and journal, against fail2ban; the follower's CPU",
    "stop_time": "SIGTERM to exit while Discord, Home Assistant, Ollama or a child command hangs",
    "store_backup": "store safety on 30 days of history: quick_check at start, a verified backup",
    "delivery_window": "the double window of one delivery and the cost of marking its start",
    "speech_length": "each kind's spoken announcement in espeak-ng, against the old sentence",
    "web_dashboard": "dashboard pages with 1 year vs 1 day of history, its RSS, the agent beside it",
    "llm_traffic_cost": "a 1,000 req/s TLS client with and without the llm_traffic uprobes; the "
                        "agent's cycle with the collector on and no TLS traffic",
    "peers": "the agent beside Glances, fail2ban, node-exporter and monit at a 10 s cycle: CPU "
             "per 10 s, steady and peak RSS, the same 120 s window",
}


def main() -> int:
    """Run the benchmarks named on the command line (all by default); 1 if any failed."""
    names = sys.argv[1:] or list(BENCHMARKS)
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = [f"make bench, {time.strftime('%Y-%m-%d %H:%M')} on this machine ({ROOT.name})\n"]
    rows: list[tuple[str, str, str, float, str]] = []
    failed = 0
    for name in names:
        if not (ROOT / "bench" / f"{name}.py").exists():
            report.append(f"== {name}: not present in this build\n")
            continue
        print(f"== {name}: {BENCHMARKS.get(name, '')}", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        print(proc.stdout, flush=True)
        status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        failed += proc.returncode != 0
        report.append(f"== {name} ({BENCHMARKS.get(name, '')}): {status}, "
                      f"{time.monotonic() - t0:.0f} s\n{proc.stdout}\n")
        rows.append((name, BENCHMARKS.get(name, ""), status, time.monotonic() - t0,
                     headline(proc.stdout)))
    (RESULTS / "latest.txt").write_text("".join(report))
    (RESULTS / "RESULTS.md").write_text(results_table(rows))
    return 1 if failed else 0


HEADLINE = ("ratio", " / ", "bar", "x tokens", "lines/s", "median")


def headline(output: str) -> str:
    """The lines of a benchmark's output that carry its figures and ratios."""
    lines = [ln.strip() for ln in output.splitlines()
             if ln.strip() and not ln.lower().startswith(("wrote", "written", "generated"))]
    picked = [ln for ln in lines if any(word in ln for word in HEADLINE)]
    return "<br>".join((picked or lines[-1:])[:6]).replace("|", "\\|")


def results_table(rows: list[tuple[str, str, str, float, str]]) -> str:
    """The Markdown results table of one `make bench` run."""
    out = [f"# make bench, {time.strftime('%Y-%m-%d %H:%M')}", "",
           "| benchmark | measures | status | seconds | figures (against the same run's reference) |",
           "|---|---|---|---|---|"]
    out += [f"| `{n}` | {what} | {status} | {secs:.0f} | {head} |"
            for n, what, status, secs, head in rows]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
