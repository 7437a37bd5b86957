"""Round-trip time and loss to PING_TARGETS: iputils `ping` through ctx.run, parsed by pingparsing.

All targets run in parallel threads; the whole collector finishes within PING_TIMEOUT_SECONDS
because each ping gets a deadline (-w) below it and its runner kills it at the bound.

iputils' own two summary lines (what ``ping_args`` runs prints, every cycle) are read by three
anchored patterns, to pingparsing's results (tests/test_ping.py holds them to it on every capture);
any other output goes to pingparsing, imported then. pingparsing's typepy checks each line through
chardet: ~17 MB held for good by a collector that runs every cycle.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from foundation.context import CollectContext, CommandError
from foundation.model import CollectResult, Sample
from foundation.settings import Settings

INTERVAL_S = "0.2"       # between echo requests (root may go lower; 0.2 s is the floor for others)
REPLY_WAIT_S = "1"       # -W: how long to wait for a reply that is not coming
KILL_MARGIN_S = 0.3      # the runner's bound lies this far inside the collector's
MAX_WORKERS = 16
# iputils' summary, as pingparsing's Linux parser finds it (its headline pattern, searched)
_HEADLINE = re.compile(r"--- [a-zA-Z0-9:\-\.\(\)% ]+ ping statistics ---")
_PACKETS = re.compile(r"(\d+) packets transmitted, (\d+) received,(?: \+(\d+) duplicates,)?"
                      r"(?: \+\d+ corrupted,)?(?: \+\d+ errors,)? \d+(?:\.\d+)?% packet loss"
                      r"(?:, time \d+ms)?")
_REPLY_TIME = re.compile(r"time[=<]([0-9.]+)", re.IGNORECASE)   # pingparsing reads each as a float
_RTT = re.compile(r"rtt min/avg/max/mdev = (\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)/"
                  r"(\d+(?:\.\d+)?) ms")


class PingParseError(Exception):
    """Text that is not a complete ping output (no statistics, or empty ones)."""


@dataclass(frozen=True)
class PingStats:
    """The summary of one ping run in pingparsing's conventions (None where ping printed none)."""

    transmitted: int
    received: int
    loss_count: int | None
    loss_percent: float | None
    duplicates: int | None
    duplicate_percent: float | None
    rtt_min_ms: float | None
    rtt_avg_ms: float | None
    rtt_max_ms: float | None
    rtt_mdev_ms: float | None


def iputils_summary(text: str) -> PingStats | None:
    """The statistics of iputils' summary lines, read as pingparsing reads them (the first
    headline, the packet line after it, the rtt line or none); None when they are not exactly
    iputils' (other pings, "pipe N", -D timestamps, damage): pingparsing decides those."""
    # timestamps (-D) and reply times are read by pingparsing too, which refuses damaged ones
    if "[" in text or any(v.count(".") > 1 or v == "." for v in _REPLY_TIME.findall(text)):
        return None
    lines = text.splitlines()
    at = next((i for i, line in enumerate(lines) if _HEADLINE.search(line)), None)
    if at is None or at + 1 >= len(lines):
        return None
    packets = _PACKETS.fullmatch(lines[at + 1])
    rtt_line = lines[at + 2] if at + 2 < len(lines) else ""
    rtt = _RTT.fullmatch(rtt_line) if rtt_line.strip() else None
    if packets is None or (rtt_line.strip() and rtt is None):
        return None
    sent, got, dups = int(packets[1]), int(packets[2]), int(packets[3] or 0)
    lost = sent - got
    rtts = [float(v) for v in rtt.groups()] if rtt is not None else [None] * 4
    return PingStats(transmitted=sent, received=got, loss_count=lost,
                     loss_percent=lost / sent * 100 if sent else None, duplicates=dups,
                     duplicate_percent=dups / got * 100 if got else None, rtt_min_ms=rtts[0],
                     rtt_avg_ms=rtts[1], rtt_max_ms=rtts[2], rtt_mdev_ms=rtts[3])


def parse_ping_output(text: str) -> PingStats:
    """Parse ping's output (iputils, BusyBox, macOS, Windows); PingParseError when incomplete."""
    quick = iputils_summary(text)
    if quick is not None:
        return quick
    import pingparsing  # noqa: PLC0415 - (with chardet, ~17 MB) only for output iputils' is not

    try:
        stats = pingparsing.PingParsing().parse(text)
    # damaged lines also raise ValueError (rtt), TypeError (typepy: timestamps), OverflowError
    except (pingparsing.ParseError, ValueError, TypeError, OverflowError) as err:
        reason = getattr(getattr(err, "reason", None), "value", None) or "unrecognised output"
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        raise PingParseError(f"not a complete ping output ({reason}): {first[:120]!r}") from err
    if stats.packet_transmit is None or stats.packet_receive is None:
        raise PingParseError("the ping output has no packet counts")
    return PingStats(
        transmitted=stats.packet_transmit, received=stats.packet_receive,
        loss_count=stats.packet_loss_count, loss_percent=stats.packet_loss_rate,
        duplicates=stats.packet_duplicate_count, duplicate_percent=stats.packet_duplicate_rate,
        rtt_min_ms=stats.rtt_min, rtt_avg_ms=stats.rtt_avg, rtt_max_ms=stats.rtt_max,
        rtt_mdev_ms=stats.rtt_mdev)


def timeout_s(settings: Settings) -> float:
    """The collector bounds itself at PING_TIMEOUT_SECONDS; the cycle allows a little more."""
    return settings.PING_TIMEOUT_SECONDS + 2.0


def ping_args(target: str, count: int, budget_s: float) -> list[str]:
    """The iputils ping command line for one target within ``budget_s`` seconds."""
    deadline = max(1, math.floor(budget_s - 1.0))
    return ["ping", "-n", "-c", str(count), "-i", INTERVAL_S, "-W", REPLY_WAIT_S, "-w",
            str(deadline), target]


def _failed(target: str, error: str, missing: bool = False) -> dict[str, Any]:
    """The result of a target whose ping gave no statistics: the same fields, 100 % loss."""
    empty = {f.name: None for f in dataclasses.fields(PingStats)}
    return {"target": target, "ok": False, **empty, "transmitted": 0, "received": 0,
            "loss_percent": 100.0, "error": error[:300], "missing_tool": missing}


def ping_one(ctx: CollectContext, target: str, budget_s: float) -> dict[str, Any]:
    """Ping one target; any failure becomes a 100 % loss result with the error text."""
    if target.startswith("-") or not target.strip():
        return _failed(target, "refusing a target that is empty or looks like an option")
    args = ping_args(target, ctx.settings.PING_COUNT, budget_s)
    try:
        proc = ctx.run(args, max(0.1, budget_s - KILL_MARGIN_S))
    except CommandError as err:
        return _failed(target, str(err), missing=isinstance(err.__cause__, FileNotFoundError))
    stdout = proc.stdout.decode("utf-8", "replace")
    stderr = proc.stderr.decode("utf-8", "replace").strip()
    try:
        stats = parse_ping_output(stdout)
    except PingParseError as err:
        return _failed(target, stderr.splitlines()[0] if stderr else str(err))
    out = {"target": target, "ok": stats.received > 0, **asdict(stats),
           "error": (stderr.splitlines()[0][:300] if stderr else None), "missing_tool": False}
    if stats.loss_percent is None:  # nothing transmitted: treat as unreachable
        out["loss_percent"] = 100.0
    return out


def collect(ctx: CollectContext) -> CollectResult:
    """Ping every target in parallel and report loss and round-trip times per target."""
    targets = list(ctx.settings.PING_TARGETS)
    budget = ctx.settings.PING_TIMEOUT_SECONDS
    if not targets:
        return CollectResult(observations={"targets": {}}, available=False,
                             note="PING_TARGETS is empty: nothing to ping")
    started = ctx.monotonic()
    results: dict[str, dict[str, Any]] = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(targets)),
                                                 thread_name_prefix="ping")
    try:
        futures = {pool.submit(ping_one, ctx, t, budget): t for t in targets}
        done, _ = concurrent.futures.wait(futures, timeout=budget)
        for future, target in futures.items():
            results[target] = (future.result() if future in done else
                               _failed(target, f"no answer within {budget:g} s"))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if all(r["missing_tool"] for r in results.values()):
        return CollectResult(observations={"targets": results}, available=False,
                             note="ping is not installed: apt install iputils-ping")
    samples = []
    for target, r in results.items():
        samples.append(Sample("ping.loss_percent", float(r["loss_percent"]), key=target))
        if r["rtt_avg_ms"] is not None:
            samples.append(Sample("ping.rtt_avg_ms", float(r["rtt_avg_ms"]), key=target))
    observations = {"targets": results,
                    "reachable": sum(1 for r in results.values() if r["ok"]),
                    "duration_s": round(ctx.monotonic() - started, 3)}
    return CollectResult(observations=observations, samples=tuple(samples))
