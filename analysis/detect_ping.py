"""Findings about ping targets: unreachable, losing packets, or slow compared with their normal."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis.kinds import KindSpec, spoken_host
from foundation.context import DetectContext
from foundation.model import CollectResult, Finding, Severity, series_name

STATE = "ping"                 # the detector's own state: consecutive unreachable cycles per target
CONFIRM_CYCLES = 2             # unreachable this many cycles in a row: high, not medium
RTT_SPREAD_FLOOR_MS = 1.0      # the smallest spread a baseline counts with (loopback: microseconds)
# (severity, minimum spreads above the centre, minimum rise in ms): the last row that holds wins
RTT_LEVELS = ((Severity.LOW, 5.0, 10.0), (Severity.MEDIUM, 10.0, 50.0))

KINDS = (
    KindSpec("host_unreachable", "ping", Severity.HIGH, Severity.NONE,
             "A ping target answers nothing (medium the first cycle, high when confirmed)",
             "Check that the host is powered and on the network (cable, Wi-Fi, switch port, its "
             "firewall); if it is meant to be off, remove it from PING_TARGETS or add a known "
             "issue.",
             name="Host unreachable",
             says="{target} answers no pings ({cycles:plural:cycle} in a row)",
             speaks="{target_spoken} does not answer pings.", cleared="{target} answers again",
             example={"target": "192.168.1.10", "target_spoken": "A ping target", "cycles": 2}),
    KindSpec("ping_loss", "ping", Severity.MEDIUM, Severity.NONE,
             "A ping target loses packets",
             "Look for a flaky link: Wi-Fi signal, a bad cable or switch port, a saturated uplink, "
             "or the host itself overloaded.",
             name="Packet loss", says="{target} lost {loss:.0f} % of its pings",
             speaks="{target_spoken} lost {loss:.0f} percent of its pings.",
             cleared="{target} answers all pings again",
             example={"target": "nas.lan", "target_spoken": "The ping target nas.lan",
                      "loss": 40.0}),
    KindSpec("rtt_high", "ping", Severity.LOW, Severity.NONE,
             "Round-trip time far above its normal",
             "Look for congestion (a large transfer, backups), Wi-Fi interference, or an "
             "overloaded host or router.",
             name="Slow network",
             says="Round trip to {target} is {rtt:.1f} ms, usually {usual:.1f} ms",
             speaks="{target_spoken} answers in {rtt:.0f} milliseconds, usually in {usual:.0f}.",
             cleared="Round trip to {target} is back to normal",
             example={"target": "router.lan", "target_spoken": "The ping target router.lan",
                      "rtt": 85.2,
                      "usual": 1.4}),
)


def _target(target: str, **measured: float) -> dict[str, Any]:
    """A finding's facts: the target from PING_TARGETS (as said: its name, not its address)."""
    said = spoken_host(target, "")
    return {"target": target, "target_spoken": f"The ping target {said}" if said else "A ping target",
            **measured}


def _unreachable(target: str, r: Mapping[str, Any], streaks: dict[str, int]) -> Finding:
    streak = streaks.get(target, 0) + 1
    streaks[target] = streak
    severity = Severity.HIGH if streak >= CONFIRM_CYCLES else Severity.MEDIUM
    why = f": {r['error']}" if r.get("error") else ""
    return Finding(source="ping", kind="host_unreachable", key=target, severity=severity,
                   summary=f"{target} answered none of {r['transmitted']} pings "
                           f"({streak} cycle(s) in a row){why}",
                   labels={"target": target}, facts=_target(target, cycles=streak),
                   metric=series_name("ping.loss_percent", target), value=100.0)


def _loss(target: str, r: Mapping[str, Any], threshold: float) -> Finding | None:
    loss = float(r["loss_percent"])
    if not threshold <= loss < 100.0:
        return None
    return Finding(source="ping", kind="ping_loss", key=target, severity=Severity.MEDIUM,
                   summary=f"{target} lost {loss:.1f} % of {r['transmitted']} pings "
                           f"(threshold {threshold:g} %)",
                   labels={"target": target}, facts=_target(target, loss=loss),
                   metric=series_name("ping.loss_percent", target), value=loss)


def _rtt(target: str, r: Mapping[str, Any], ctx: DetectContext) -> Finding | None:
    avg = r["rtt_avg_ms"]
    base = ctx.baseline(series_name("ping.rtt_avg_ms", target))
    if avg is None or base is None or not base.trusted:
        return None
    deviation = base.deviation(avg, RTT_SPREAD_FLOOR_MS)
    rise = avg - base.centre
    severity = None
    for level, min_dev, min_rise in RTT_LEVELS:
        if deviation >= min_dev and rise >= min_rise:
            severity = level
    if severity is None:
        return None
    return Finding(source="ping", kind="rtt_high", key=target, severity=severity,
                   summary=f"{target} round trip {avg:.1f} ms (max {r['rtt_max_ms']}), usually "
                           f"{base.centre:.1f} ms: {deviation:.1f} spreads above",
                   labels={"target": target},
                   facts=_target(target, rtt=float(avg), usual=base.centre),
                   metric=series_name("ping.rtt_avg_ms", target), value=float(avg),
                   baseline=base.as_json())


def detect(result: CollectResult, ctx: DetectContext) -> list[Finding]:
    """host_unreachable, ping_loss and rtt_high findings per target."""
    streaks = ctx.state(STATE).setdefault("unreachable_streak", {})
    threshold = ctx.settings.PING_LOSS_THRESHOLD_PERCENT
    findings: list[Finding] = []
    for target, r in result.observations["targets"].items():
        if r["received"] == 0:
            findings.append(_unreachable(target, r, streaks))
            continue
        streaks.pop(target, None)
        findings.extend(f for f in (_loss(target, r, threshold), _rtt(target, r, ctx))
                        if f is not None)
    for gone in set(streaks) - set(result.observations["targets"]):
        streaks.pop(gone)
    return findings
