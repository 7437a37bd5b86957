"""Findings about temperatures: over the hardware's marks, or far above this sensor's normal."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from analysis.kinds import KindSpec
from collectors.sensors import METRIC
from foundation.baseline import Baseline
from foundation.context import DetectContext
from foundation.model import CollectResult, Finding, Severity, max_severity, series_name

BASELINE_MIN_DEVIATION = 6.0   # spreads above the centre of this sensor at this hour
BASELINE_MIN_RISE_C = 15.0     # and at least this many degrees above it: idle jitter never alerts
BASELINE_SPREAD_FLOOR_C = 2.0  # a sensor that never moved still has a spread of at least this

KINDS = (
    KindSpec("temperature_high", "sensors", Severity.MEDIUM, Severity.HIGH,
             "A temperature is far above its normal (low), over its high mark (medium) or over "
             "its critical mark (high, floor high)",
             "Check the fans, dust filters and airflow of the part named in the key; look at what "
             "load runs (GPU jobs, an LLM); over the critical mark, cut the load or shut the "
             "machine down before the hardware trips.",
             name="High temperature",
             says="{sensor} ({part}) at {celsius:.0f} °C, over its {mark_name} of {mark:.0f} °C",
             speaks="The {part} is at {celsius:.0f} degrees, over its {mark_name} of {mark:.0f}.",
             cleared="{sensor} ({part}) is back under its marks",
             example={"sensor": "coretemp/Package id 0", "part": "CPU", "celsius": 101.0,
                      "mark_name": "critical mark", "mark": 100.0}),
)

# (what people call the part, chip name prefixes): the chip names are the kernel drivers'
PARTS = (
    ("CPU", ("coretemp", "k10temp", "k8temp", "zenpower", "cpu_thermal", "cpu-thermal")),
    ("GPU", ("nvidia", "amdgpu", "radeon", "nouveau", "i915", "gpu")),
    ("disk", ("nvme", "drivetemp", "sata", "hdd", "ssd")),
    ("Wi-Fi card", ("iwlwifi",)),
    ("network card", ("ixgbe", "igb", "mlx", "r8169", "bnxt")),
    ("chipset", ("pch_",)),
)


@dataclass(frozen=True)
class Rule:
    """One reason a temperature is high, with the severity and floor it gives."""

    name: str
    severity: Severity
    floor: Severity
    test: Callable[[Mapping[str, Any], Baseline | None], str | None]


def _over_critical(r: Mapping[str, Any], base: Baseline | None) -> str | None:
    if r["celsius"] >= r["critical"]:
        return f"at or over its critical mark {r['critical']:g} °C ({r['critical_from']})"
    return None


def _over_high(r: Mapping[str, Any], base: Baseline | None) -> str | None:
    if r["celsius"] >= r["high"]:
        return f"at or over its high mark {r['high']:g} °C ({r['high_from']})"
    return None


def _over_baseline(r: Mapping[str, Any], base: Baseline | None) -> str | None:
    if base is None or not base.trusted:
        return None
    deviation = base.deviation(r["celsius"], BASELINE_SPREAD_FLOOR_C)
    if deviation >= BASELINE_MIN_DEVIATION and r["celsius"] - base.centre >= BASELINE_MIN_RISE_C:
        return f"{r['celsius'] - base.centre:.1f} °C above its usual {base.centre:.1f} °C"
    return None


# The finding takes the highest severity and floor of the rules that hold.
RULES = (
    Rule("critical", Severity.HIGH, Severity.HIGH, _over_critical),
    Rule("high_mark", Severity.MEDIUM, Severity.NONE, _over_high),
    Rule("baseline", Severity.LOW, Severity.NONE, _over_baseline),
)


def part_of(chip: str) -> str:
    """The part a chip's temperature belongs to, as people say it ("CPU", "GPU", "disk")."""
    name = chip.lower()
    return next((part for part, prefixes in PARTS if name.startswith(prefixes)), "motherboard")


def _mark(rule: str, r: Mapping[str, Any], base: Baseline | None) -> tuple[str, float]:
    """The mark the temperature is told against: the worst rule that holds."""
    if rule == "critical":
        return "critical mark", float(r["critical"])
    if rule == "high_mark":
        return "high mark", float(r["high"])
    return "usual", float(base.centre) if base is not None else float(r["celsius"])


def detect(result: CollectResult, ctx: DetectContext) -> list[Finding]:
    """One temperature_high finding per plausible reading that breaks at least one rule."""
    findings = []
    for key, reading in result.observations["readings"].items():
        if not reading["plausible"]:
            continue  # unconnected or stuck inputs: see collectors/sensors.py
        series = series_name(METRIC, key)
        base = ctx.baseline(series, by_hour=True)
        held = [(rule, why) for rule in RULES if (why := rule.test(reading, base)) is not None]
        if not held:
            continue
        severity = max_severity(*(rule.severity for rule, _ in held))
        floor = max_severity(*(rule.floor for rule, _ in held))
        device = f" ({reading['device']})" if reading["device"] else ""
        mark_name, mark = _mark(held[0][0].name, reading, base)   # RULES run worst first
        findings.append(Finding(
            source="sensors", kind="temperature_high", key=key, severity=severity, floor=floor,
            summary=f"{key}{device} is {reading['celsius']:g} °C: "
                    + "; ".join(why for _, why in held),
            labels={"sensor": key, "source": reading["source"],
                    "rules": ",".join(rule.name for rule, _ in held)},
            facts={"sensor": key, "part": part_of(key.split("/", 1)[0]),  # the kernel's names
                   "celsius": float(reading["celsius"]), "mark_name": mark_name, "mark": mark},
            metric=series, value=float(reading["celsius"]),
            baseline=base.as_json() if base is not None else None))
    return findings
