"""auth_log extraction speed on a generated 1 GiB auth.log, against grep and fail2ban-regex.

Run: ``.venv/bin/python -m bench.auth_ingest [--gib 1.0] [--f2b-lines 200000]``. In one run it
generates the file in a temporary folder, measures (a) the auth_log collector over the whole file
in a child process (lines/s and its peak memory), then the same without the C scanner (the
regexes alone, the reference), (b) ``grep -c 'Failed password'`` on the same
file, (c) ``fail2ban-regex`` with fail2ban's sshd filter on the first lines (it does ~39,000
lines/s: the whole file would take minutes), then writes bench/results/auth_ingest.json and
deletes the file.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "auth_ingest.json"
F2B_FILTER = Path("/etc/fail2ban/filter.d/sshd.conf")
START = 1_793_000_000.0        # 2026-10-26: a month of log before the run's "now"

# (share of lines, template): a home server on the internet; {t} time, {h} host, {p} pid,
# {ip} attacker, {u} user tried, {port} port. Cron and session lines dominate, then SSH noise.
MIX = [
    (0.30, "{t} {h} CRON[{p}]: pam_unix(cron:session): session opened for user root(uid=0) "
           "by (uid=0)"),
    (0.30, "{t} {h} CRON[{p}]: pam_unix(cron:session): session closed for user root"),
    (0.09, "{t} {h} sshd[{p}]: Failed password for {u} from {ip} port {port} ssh2"),
    (0.04, "{t} {h} sshd[{p}]: Failed password for invalid user {u} from {ip} port {port} ssh2"),
    (0.04, "{t} {h} sshd[{p}]: Invalid user {u} from {ip} port {port}"),
    (0.05, "{t} {h} sshd[{p}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 "
           "euid=0 tty=ssh ruser= rhost={ip}  user={u}"),
    (0.04, "{t} {h} sshd[{p}]: Received disconnect from {ip} port {port}:11: Bye Bye [preauth]"),
    (0.04, "{t} {h} sshd[{p}]: Disconnected from authenticating user {u} {ip} port {port} "
           "[preauth]"),
    (0.03, "{t} {h} sshd[{p}]: Connection closed by {ip} port {port} [preauth]"),
    (0.02, "{t} {h} sshd[{p}]: error: kex_exchange_identification: Connection closed by remote "
           "host"),
    (0.01, "{t} {h} sshd[{p}]: Accepted publickey for alice from 192.168.1.20 port {port} ssh2: "
           "ED25519 SHA256:0mQ3N0kBmX7Tb2sQfYq1T1hW9Jkq0u0m6jz7c6mCq2E"),
    (0.01, "{t} {h} sshd[{p}]: pam_unix(sshd:session): session opened for user alice(uid=1000) "
           "by (uid=0)"),
    (0.01, "{t} {h} systemd-logind[412]: New session {p} of user alice."),
    (0.01, "{t} {h} sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; "
           "COMMAND=/usr/bin/apt update"),
    (0.005, "{t} {h} sudo: pam_unix(sudo:session): session opened for user root(uid=0) by "
            "alice(uid=1000)"),
    (0.005, "{t} {h} sudo: pam_unix(sudo:session): session closed for user root"),
]
USERS = ["root", "admin", "test", "oracle", "ubuntu", "git", "postgres", "user", "pi", "ftp"]


def generate(path: Path, size: int, seed: int = 7) -> int:
    """Write a realistic auth.log of about ``size`` bytes; the number of lines."""
    rng = random.Random(seed)
    attackers = [f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
                 f"{rng.randint(1, 254)}" for _ in range(3000)]
    weights = [1.0 / (i + 1) for i in range(len(attackers))]      # a few very busy addresses
    templates = [t for _, t in MIX]
    shares = [s for s, _ in MIX]
    written, lines, t = 0, 0, START
    with open(path, "w", encoding="ascii") as out:
        while written < size:
            kinds = rng.choices(templates, shares, k=20000)
            ips = rng.choices(attackers, weights, k=20000)
            block = []
            for kind, ip in zip(kinds, ips, strict=True):
                t += 0.25
                stamp = time.strftime("%b %e %H:%M:%S", time.localtime(t))
                block.append(kind.format(t=stamp, h="homeserver", p=rng.randint(1000, 99999),
                                         ip=ip, u=rng.choice(USERS),
                                         port=rng.randint(1024, 65535)))
            text = "\n".join(block) + "\n"
            out.write(text)
            written += len(text)
            lines += len(block)
    return lines


CHILD = """
import hashlib, json, resource, sys, time
from agent import process_setup               # as monitor_agent.py does
process_setup.tune_allocator()
if sys.argv[4] == "regex":                   # the reference: the same patterns without the C scanner
    from collectors.auth import scanner
    scanner._authscan = None
    from collectors import auth_log as _log       # and the window's C helper (first_ids)
    _log.authscan = None
from foundation.context import CollectContext
from foundation.settings import load_settings
from collectors import auth_log
settings = load_settings(environ={}, overrides={"AUTH_LOG_PATH": sys.argv[1],
    "AUTH_LOG_BACKEND": "file", "LOG_START_AT": "start", "DATA_DIR": sys.argv[2],
    "LOG_MAX_BYTES_PER_CYCLE": 1 << 40})
t0 = time.perf_counter()
result = auth_log.collect(CollectContext(settings, float(sys.argv[3]), {}))
seconds = time.perf_counter() - t0
obs = result.observations
print(json.dumps({"seconds": seconds, "lines": obs["lines_read"],
                  "failed_logins": obs["failed_logins"], "bruteforce": len(obs["bruteforce"]),
                  "digest": hashlib.sha256(json.dumps({k: v for k, v in obs.items()
                      if k != "scanner"}, sort_keys=True).encode()).hexdigest(),
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def measure_extraction(path: Path, tmp: Path, now: float, scanner: str = "native"
                       ) -> dict[str, Any]:
    """The collector over the whole file, in a child process (its own peak memory); scanner
    "regex" runs it without collectors/auth/_authscan.c (as on a machine where it is not built)."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(tmp / "data"), str(now),
                           scanner],
                          cwd=ROOT, capture_output=True, text=True, timeout=1800, check=True)
    out = json.loads(done.stdout)
    out["lines_per_s"] = out["lines"] / out["seconds"]
    return out


def measure_grep(path: Path, lines: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    done = subprocess.run(["grep", "-c", "Failed password", str(path)], capture_output=True,
                          text=True, timeout=600)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "count": int(done.stdout.strip() or 0),
            "lines_per_s": lines / seconds}


def measure_fail2ban(path: Path, tmp: Path, count: int) -> dict[str, Any]:
    """fail2ban-regex with the sshd filter on the first ``count`` lines of the file."""
    if shutil.which("fail2ban-regex") is None or not F2B_FILTER.exists():
        return {"skipped": "fail2ban-regex or /etc/fail2ban/filter.d/sshd.conf not installed"}
    part = tmp / "slice.log"
    with open(path, "rb") as src, open(part, "wb") as dst:
        for _, line in zip(range(count), src, strict=False):
            dst.write(line)
    t0 = time.perf_counter()
    done = subprocess.run(["fail2ban-regex", str(part), str(F2B_FILTER)], capture_output=True,
                          text=True, timeout=1800)
    seconds = time.perf_counter() - t0
    matched = next((line for line in done.stdout.splitlines() if line.startswith("Lines:")), "")
    return {"seconds": seconds, "lines": count, "lines_per_s": count / seconds,
            "summary": matched.strip(), "slice": True}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Generate, measure, report, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--f2b-lines", type=int, default=200_000)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="auth_ingest_"))
    try:
        path = tmp / "auth.log"
        t0 = time.perf_counter()
        lines = generate(path, int(args.gib * (1 << 30)))
        size = path.stat().st_size
        print(f"generated {size / 2**20:.0f} MiB, {lines:,} lines "
              f"in {time.perf_counter() - t0:.0f} s")
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)   # page cache
        now = START + lines * 0.25 + 3600
        ours = measure_extraction(path, tmp, now)
        print(f"auth_log extraction: {ours['lines_per_s'] / 1e6:.2f} M lines/s "
              f"({ours['seconds']:.1f} s), peak memory {ours['maxrss_kb'] / 1024:.0f} MB, "
              f"failed_logins {ours['failed_logins']:,}")
        regex = measure_extraction(path, tmp, now, "regex")
        print(f"the same without the C scanner (regexes only): "
              f"{regex['lines_per_s'] / 1e6:.2f} M lines/s, peak memory "
              f"{regex['maxrss_kb'] / 1024:.0f} MB, failed_logins {regex['failed_logins']:,}")
        grep = measure_grep(path, lines)
        print(f"grep -c 'Failed password': {grep['lines_per_s'] / 1e6:.2f} M lines/s "
              f"(count {grep['count']:,})")
        f2b = measure_fail2ban(path, tmp, args.f2b_lines)
        if "lines_per_s" in f2b:
            print(f"fail2ban-regex sshd.conf on the first {f2b['lines']:,} lines: "
                  f"{f2b['lines_per_s']:,.0f} lines/s")
        result = {
            "file": {"bytes": size, "lines": lines},
            "auth_log": ours, "auth_log_regex_only": regex, "grep": grep, "fail2ban_regex": f2b,
            "ratio_vs_regex_only": ours["lines_per_s"] / regex["lines_per_s"],
            "ratio_vs_grep": ours["lines_per_s"] / grep["lines_per_s"],
            "ratio_vs_fail2ban": (ours["lines_per_s"] / f2b["lines_per_s"]
                                  if "lines_per_s" in f2b else None),
            "failed_password_lines_agree": grep["count"] == ours["failed_logins"],
            "scanners_agree": ours["digest"] == regex["digest"],   # every observation
            "machine": {"cpus": os.cpu_count(), "load1": os.getloadavg()[0]},
            "python": sys.version.split()[0],
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        print(f"ratio vs regexes only: {result['ratio_vs_regex_only']:.2f}x; vs grep: "
              f"{result['ratio_vs_grep']:.3f}; vs fail2ban-regex: "
              f"{result['ratio_vs_fail2ban'] or float('nan'):.0f}x; bar 3 M lines/s: "
              f"{'met' if ours['lines_per_s'] >= 3e6 else 'NOT met'}; observations of both "
              f"scanners {'identical' if result['scanners_agree'] else 'DIFFER'}")
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
