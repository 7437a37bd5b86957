"""Syslog parsing speed: the syslog collector on a generated syslog, against grep and a Python loop.

Run: ``.venv/bin/python -m bench.syslog_parse [--lines N]``. Generates a realistic syslog (traditional
format, ~20 programs, IPs, ports, pids, hex container ids, 1-2 % error lines, a few kernel events) in
a temporary folder, then measures in separate processes (so peak memory is each one's own):
the collector (``collectors.syslog.collect``: tail + scan), ``grep -c error`` and a plain Python
line loop with a substring test. Writes bench/results/syslog_parse.json.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "syslog_parse.json"
USERS = [f"user{i}" for i in range(30)] + ["alice", "bob", "backup", "www-data", "postgres"]
UNITS = ["apt-daily.service", "logrotate.service", "man-db.service", "fstrim.service",
         "systemd-tmpfiles-clean.service", "certbot.timer", "docker.service", "ssh.service"]
TEMPLATES: list[tuple[int, str, str]] = [   # (weight, program, message)
    (14, "CRON", "({user}) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)"),
    (8, "CRON", "pam_unix(cron:session): session opened for user {user}(uid={uid}) by (uid=0)"),
    (8, "CRON", "pam_unix(cron:session): session closed for user {user}"),
    (10, "systemd", "Started {unit} - {unit} job."),
    (6, "systemd", "{unit}: Deactivated successfully."),
    (4, "systemd", "run-docker-runtime\\x2drunc-moby-{hex64}.mount: Deactivated successfully."),
    (6, "dockerd", 'time="2026-11-23T10:{mm}:{ss}.{us}Z" level=info msg="ignoring event" '
                   'container={hex64} module=libcontainerd namespace=moby'),
    (4, "containerd", 'time="2026-11-23T10:{mm}:{ss}.{us}Z" level=info msg="shim disconnected" '
                      'id={hex64} namespace=moby'),
    (6, "kernel", "[{up}] [UFW BLOCK] IN=eth0 OUT= MAC={mac} SRC={ip} DST=192.168.1.10 LEN=40 "
                  "TOS=0x00 PREC=0x00 TTL=243 ID={port} PROTO=TCP SPT={port} DPT=23 WINDOW=1024"),
    (3, "kernel", '[{up}] audit: type=1400 audit({up}:{n}): apparmor="DENIED" operation="open" '
                  'profile="snap.lxd" name="/proc/{n}/status" pid={n} comm="lxd"'),
    (5, "smartd", "Device: /dev/sda [SAT], SMART Usage Attribute: 194 Temperature_Celsius "
                  "changed from {n2} to {n3}"),
    (5, "postfix/smtpd", "connect from unknown[{ip}]"),
    (5, "postfix/smtpd", "disconnect from unknown[{ip}] ehlo=1 auth=0/1 commands=1/2"),
    (3, "postfix/qmgr", "{qid}: removed"),
    (4, "nginx", '{ip} - - "GET /api/v1/items/{n} HTTP/1.1" 200 {n} "-" "curl/8.1"'),
    (3, "systemd-resolved", "Using degraded feature set UDP instead of UDP+EDNS0 for DNS server "
                            "{ip}."),
    (3, "chronyd", "Selected source {ip} (2.debian.pool.ntp.org)"),
    (2, "dhclient", "DHCPACK of 192.168.1.10 from 192.168.1.1 (xid=0x{hex8})"),
    (1, "dockerd", 'time="2026-11-23T10:{mm}:{ss}.{us}Z" level=error msg="Handler for GET '
                   '/v1.43/containers/{hex64}/json returned error: No such container"'),
    (1, "backup.sh", "rsync failed with exit code {n2}: connection refused by {ip}"),
]
RARE = [
    "kernel: [{up}] Out of memory: Killed process {n} (java) total-vm:8123456kB, anon-rss:4012345kB, "
    "file-rss:0kB, shmem-rss:0kB",
    "kernel: [{up}] e1000e 0000:00:1f.6 eth0: NIC Link is Down",
]


def generate(path: Path, lines: int, seed: int = 1) -> int:
    """Write a realistic traditional-format syslog of ``lines`` lines; returns its size."""
    rng = random.Random(seed)
    weights = [w for w, _, _ in TEMPLATES]
    start = time.mktime((2026, 11, 23, 0, 0, 0, 0, 0, -1))
    with open(path, "w", encoding="utf-8") as out:
        batch = []
        for i in range(lines):
            values = {"user": rng.choice(USERS), "uid": rng.randint(0, 2000), "unit": rng.choice(UNITS),
                      "hex64": f"{rng.getrandbits(256):064x}", "hex8": f"{rng.getrandbits(32):08x}",
                      "mm": f"{rng.randint(0, 59):02d}", "ss": f"{rng.randint(0, 59):02d}",
                      "us": rng.randint(0, 999999), "up": f"{i / 50 + 100:.6f}",
                      "mac": ":".join(f"{rng.getrandbits(8):02x}" for _ in range(14)),
                      "ip": ".".join(str(rng.randint(1, 254)) for _ in range(4)),
                      "port": rng.randint(1024, 65535), "n": rng.randint(1, 99999),
                      "n2": rng.randint(20, 60), "n3": rng.randint(20, 60),
                      "qid": f"{rng.getrandbits(40):010X}"}
            stamp = time.strftime("%b %d %H:%M:%S", time.localtime(start + i * 86400 / lines))
            if rng.random() < 0.0002:
                body = rng.choice(RARE).format(**values)
            else:
                _, prog, msg = rng.choices(TEMPLATES, weights)[0]
                pid = "" if prog == "kernel" else f"[{rng.randint(100, 99999)}]"
                body = f"{prog}{pid}: {msg.format(**values)}"
            batch.append(f"{stamp} homeserver {body}\n")
            if len(batch) >= 10000:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))
    return path.stat().st_size


def phase(name: str, path: Path) -> dict[str, Any]:
    """Run one measurement in this process; prints JSON."""
    extra: dict[str, Any] = {}
    if name == "collector":
        from agent import process_setup  # as monitor_agent.py does
        process_setup.tune_allocator()
        from collectors import syslog
        from foundation.context import CollectContext
        from foundation.settings import load_settings

        settings = load_settings(environ={}, overrides={
            "SYSLOG_PATH": str(path), "SYSLOG_BACKEND": "file", "LOG_START_AT": "start",
            "LOG_MAX_BYTES_PER_CYCLE": 1 << 40, "DATA_DIR": str(path.parent / "data")})
        t0 = time.perf_counter()
        obs = syslog.collect(CollectContext(settings, time.time(), {})).observations
        lines = obs["lines_read"]
        extra = {"malformed": obs["malformed_lines"], "errors": obs["errors"],
                 "programs": obs["program_count"], "templates": obs["templates_seen"],
                 "kernel_events": {e["label"]: e["count"] for e in obs["kernel_events"]}}
    elif name == "python_loop":
        t0 = time.perf_counter()
        lines = hits = 0
        with open(path, "rb") as handle:
            for line in handle:
                lines += 1
                hits += b"error" in line
        extra = {"hits": hits}
    else:
        raise SystemExit(f"unknown phase {name}")
    seconds = time.perf_counter() - t0
    return {"lines": lines, "seconds": round(seconds, 3), "lines_per_s": round(lines / seconds),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            **extra}


def child(name: str, path: Path) -> dict[str, Any]:
    """Run a phase in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-m", "bench.syslog_parse", "--phase", name, str(path)],
                         cwd=ROOT, capture_output=True, check=True, timeout=1800)
    return json.loads(out.stdout)


def grep(path: Path, lines: int) -> dict[str, Any]:
    """grep -c error on the same file (count only)."""
    t0 = time.perf_counter()
    out = subprocess.run(["grep", "-c", "error", str(path)], capture_output=True, timeout=600)
    seconds = time.perf_counter() - t0
    return {"lines": lines, "seconds": round(seconds, 3), "lines_per_s": round(lines / seconds),
            "hits": int(out.stdout or 0)}


def main() -> None:
    """Generate, measure, print, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=3_000_000)
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("file", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.file)))
        return
    with tempfile.TemporaryDirectory(prefix="syslog-bench-") as tmp:
        path = Path(tmp) / "syslog"
        t0 = time.perf_counter()
        size = generate(path, args.lines)
        print(f"generated {args.lines:,} lines, {size / 2**20:.0f} MiB in "
              f"{time.perf_counter() - t0:.0f} s")
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # page cache
        results = {"grep_c": grep(path, args.lines), "python_loop": child("python_loop", path),
                   "collector": child("collector", path)}
    coll = results["collector"]
    assert coll["lines"] == args.lines, coll
    report = {"lines": args.lines, "bytes": size, "machine_cpus": _cpus(), **results,
              "collector_vs_grep": round(coll["lines_per_s"] / results["grep_c"]["lines_per_s"], 3),
              "collector_vs_python_loop": round(
                  coll["lines_per_s"] / results["python_loop"]["lines_per_s"], 3)}
    for name in ("grep_c", "python_loop", "collector"):
        r = results[name]
        print(f"{name:12s} {r['lines_per_s'] / 1e6:6.2f} M lines/s  {r['seconds']:7.2f} s"
              + (f"  peak RSS {r['peak_rss_mb']} MB" if "peak_rss_mb" in r else ""))
    print(f"collector / grep -c: {report['collector_vs_grep']:.2f}   "
          f"collector / python loop: {report['collector_vs_python_loop']:.2f}")
    found = {k: coll[k] for k in ("malformed", "errors", "programs", "templates", "kernel_events")}
    print(f"collector found: {json.dumps(found)}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
