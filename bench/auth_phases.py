"""Where auth_log extraction spends its time, phase by phase, with and without the malloc tuning.

Run: ``.venv/bin/python -m bench.auth_phases [--mib 256]``. Generates an auth.log as
bench.auth_ingest does, then in two child processes (one with agent.process_setup's allocator
tuning, as the agent runs, one without: the reference) runs the collector twice over it and times
the second run's phases by wrapping the functions that do them: milliseconds per million lines.
Writes bench/results/auth_phases.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.auth_ingest import START, generate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "auth_phases.json"

CHILD = """
import json, sys, time
from collections import defaultdict
from agent import process_setup
if sys.argv[3] == "tuned":
    process_setup.tune_allocator()
from collectors import auth_log
from collectors.auth import native, scanner
from collectors.logreader import chunks
from foundation.context import CollectContext
from foundation.settings import load_settings
spent = defaultdict(float)
def timed(owner, name, label):
    inner = getattr(owner, name)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent[label] += time.perf_counter() - t0
    setattr(owner, name, wrapper)
timed(chunks.authscan, "scan", "C pass (Vectorscan, line sorting and parsing, line count)")
for name in ("_native_failed", "_native_sshd", "_native_su"):
    timed(native.NativeFeed, name, "Python glue: C output and slow lines into counts")
timed(scanner.AuthScanner, "_count_invalid", "Python glue: C output and slow lines into counts")
timed(scanner.AuthScanner, "_flush", "failure times and evidence lines")
timed(scanner.AuthScanner, "_flush_logins", "accepted logins: times, window check")
timed(auth_log, "_check_logins", "accepted logins: times, window check")
timed(auth_log.FailureWindow, "add", "brute-force window")
settings = load_settings(environ={}, overrides={"AUTH_LOG_PATH": sys.argv[1],
    "AUTH_LOG_BACKEND": "file", "LOG_START_AT": "start", "DATA_DIR": sys.argv[2],
    "LOG_MAX_BYTES_PER_CYCLE": 1 << 40})
now = float(sys.argv[4])
auth_log.collect(CollectContext(settings, now, {}))          # warm-up
spent.clear()
t0 = time.perf_counter()
obs = auth_log.collect(CollectContext(settings, now, {})).observations
total = time.perf_counter() - t0
spent["reading the file, and the rest"] = total - sum(spent.values())
print(json.dumps({"lines": obs["lines_read"], "seconds": total, "phases": spent}))
"""


def run_child(path: Path, tmp: Path, mode: str, now: float) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(tmp / mode), mode,
                           str(now)], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise SystemExit(f"auth_phases child ({mode}) failed:\n{done.stderr}")
    out = json.loads(done.stdout)
    per_m = 1e3 / (out["lines"] / 1e6)               # seconds -> ms per million lines
    out["ms_per_m_lines"] = {k: v * per_m for k, v in out["phases"].items()}
    out["lines_per_s"] = out["lines"] / out["seconds"]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="auth_phases_"))
    try:
        path = tmp / "auth.log"
        lines = generate(path, args.mib << 20)
        now = START + lines * 0.25 + 3600
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # page cache
        tuned, plain = run_child(path, tmp, "tuned", now), run_child(path, tmp, "plain", now)
        print(f"{lines:,} lines ({args.mib} MiB); ms per million lines, second of two runs")
        print(f"{'phase':58s} {'as run':>8s} {'untuned malloc':>15s}")
        for phase in sorted(tuned["ms_per_m_lines"], key=lambda k: -tuned["ms_per_m_lines"][k]):
            print(f"{phase:58s} {tuned['ms_per_m_lines'][phase]:8.1f} "
                  f"{plain['ms_per_m_lines'].get(phase, 0.0):15.1f}")
        print(f"{'total':58s} {1e9 / tuned['lines_per_s']:8.1f} "
              f"{1e9 / plain['lines_per_s']:15.1f}")
        print(f"lines/s: {tuned['lines_per_s'] / 1e6:.2f} M as run, "
              f"{plain['lines_per_s'] / 1e6:.2f} M with malloc untuned "
              f"({tuned['lines_per_s'] / plain['lines_per_s']:.2f}x)")
        result = {"lines": lines, "as_run": tuned, "untuned_malloc": plain,
                  "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
