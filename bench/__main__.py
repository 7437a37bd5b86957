"""`make bench`: run every benchmark in its own interpreter and keep what each printed.

Each benchmark prints its figures with ratios against a reference measured in the same run and
writes bench/results/<name>.json; this runner also writes bench/results/latest.txt, the text that
the README's Performance section quotes.
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
    "time_to_alert": "loop mode: a login after a brute force written to auth.log -> Discord",
}


def main() -> int:
    """Run the benchmarks named on the command line (all by default); 1 if any failed."""
    names = sys.argv[1:] or list(BENCHMARKS)
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = [f"make bench, {time.strftime('%Y-%m-%d %H:%M')} on this machine ({ROOT.name})\n"]
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
    (RESULTS / "latest.txt").write_text("".join(report))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
