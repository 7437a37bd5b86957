"""Temperatures: psutil (hwmon, amdgpu included), `sensors -j` for chips psutil misses, nvidia-smi.

Plausibility (why a reading may be kept out of alerts, see docs/sensors-and-ping.md):
- at or below MIN_PLAUSIBLE_C: unconnected Super-I/O inputs read -1, 0 or -128 °C;
- past the sensor's critical mark by more than OVERSHOOT_C (or past NO_MARK_CEILING_C when the
  chip reports no critical mark): hardware throttles or trips at its critical mark, while floating
  inputs read 108-127 °C. A reading we watched climb there (the previous one was plausible and
  within CONTINUITY_JUMP_C) is believed all the same;
- stuck: the same value on STUCK_CYCLES consecutive cycles, never having varied since first seen.
Marks a chip reports outside MARK_RANGE_C (65261.85, -33) are ignored and the settings used.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from collectors.sensor_parsers import (
    SensorParseError,
    TempReading,
    nvidia_readings,
    parse_nvidia_csv,
    parse_sensors_json,
    readings_from_psutil,
)
from foundation.context import CollectContext, CommandError
from foundation.model import CollectResult, Sample
from foundation.settings import Settings

log = logging.getLogger(__name__)

MIN_PLAUSIBLE_C = 5.0
NO_MARK_CEILING_C = 110.0
OVERSHOOT_C = 5.0
CONTINUITY_JUMP_C = 20.0
STUCK_CYCLES = 12
MARK_RANGE_C = (20.0, 150.0)
MAX_READINGS = 200
SENSORS_ARGS = ("sensors", "-j")
SENSORS_TIMEOUT_S = 5.0
# `sensors -j` matters only for chips psutil has no name for. When its last run added none, it is
# run again after LM_RECHECK_S, or at once when psutil's chips change (a driver loaded or gone).
LM_RECHECK_S = 3600.0
NVIDIA_FIELDS = ("index", "name", "temperature.gpu", "temperature.gpu.tlimit", "temperature.memory")
NVIDIA_BASIC_FIELDS = ("index", "name", "temperature.gpu")   # drivers that lack the newer fields
NVIDIA_TIMEOUT_S = 10.0
METRIC = "sensor.temperature_c"

HwmonReader = Callable[[], Mapping[str, Sequence[Any]]]


def timeout_s(settings: Settings) -> float:
    """sensors and nvidia-smi are bounded by their own timeouts; leave room for both."""
    return SENSORS_TIMEOUT_S + 2 * NVIDIA_TIMEOUT_S + 2.0


@dataclass(frozen=True)
class Marks:
    """The high and critical marks used for one reading, and where each came from."""

    high: float
    high_from: str        # "chip" or "settings"
    critical: float
    critical_from: str


def _sane(mark: float | None) -> float | None:
    low, high = MARK_RANGE_C
    return mark if mark is not None and low <= mark <= high else None


def marks_for(reading: TempReading, default_high: float, default_critical: float) -> Marks:
    """The chip's own marks where it reports sane ones, else the settings."""
    critical, high = _sane(reading.critical), _sane(reading.high)
    crit_value = critical if critical is not None else default_critical
    high_value = high if high is not None else default_high
    return Marks(min(high_value, crit_value), "chip" if high is not None else "settings",
                 crit_value, "chip" if critical is not None else "settings")


def _too_cold(celsius: float, marks: Marks, prev: Mapping[str, Any] | None) -> str | None:
    if celsius <= MIN_PLAUSIBLE_C:
        return f"{celsius:g} °C is at or below {MIN_PLAUSIBLE_C:g} °C (an unconnected input)"
    return None


def _past_critical(celsius: float, marks: Marks, prev: Mapping[str, Any] | None) -> str | None:
    ceiling = marks.critical + OVERSHOOT_C
    if marks.critical_from == "settings":
        ceiling = max(ceiling, NO_MARK_CEILING_C)
    if celsius <= ceiling:
        return None
    climbed = prev is not None and prev["ok"] and abs(celsius - prev["last"]) <= CONTINUITY_JUMP_C
    if climbed and celsius <= MARK_RANGE_C[1]:
        return None  # watched it climb: a real part running away, not a floating input
    return (f"{celsius:g} °C is past {ceiling:g} °C with no plausible climb to it "
            "(an unconnected input)")


def _stuck(celsius: float, marks: Marks, prev: Mapping[str, Any] | None) -> str | None:
    if (prev is not None and not prev["varied"] and prev["last"] == celsius
            and prev["same"] + 1 >= STUCK_CYCLES):
        return f"stuck at {celsius:g} °C for {STUCK_CYCLES}+ cycles, never varied"
    return None


# (rule, test) in order; the first that objects makes the reading implausible. Range rules first:
# a reading failing them is not sampled; a stuck reading is sampled but never alerted on.
RANGE_RULES = (("too_cold", _too_cold), ("past_critical", _past_critical))
PLAUSIBILITY_RULES = (*RANGE_RULES, ("stuck", _stuck))
RANGE_RULE_NAMES = frozenset(rule for rule, _ in RANGE_RULES)


def plausibility(celsius: float, marks: Marks, prev: Mapping[str, Any] | None
                 ) -> tuple[str | None, str | None]:
    """(rule, reason) of the first plausibility rule the reading breaks, or (None, None)."""
    for rule, test in PLAUSIBILITY_RULES:
        reason = test(celsius, marks, prev)
        if reason is not None:
            return rule, reason
    return None, None


def next_history(prev: Mapping[str, Any] | None, celsius: float, in_range: bool) -> dict[str, Any]:
    """The small per-sensor history kept in state for the stuck and continuity rules."""
    if prev is None:
        return {"last": celsius, "same": 1, "varied": False, "ok": in_range}
    same = min(prev["same"] + 1, STUCK_CYCLES) if celsius == prev["last"] else 1
    return {"last": celsius, "same": same, "varied": prev["varied"] or celsius != prev["last"],
            "ok": in_range}


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _first_line(raw: bytes, fallback: str) -> str:
    lines = [line.strip() for line in _decode(raw).splitlines() if line.strip()]
    return lines[0][:200] if lines else fallback


def read_lm_sensors(ctx: CollectContext) -> tuple[list[TempReading], dict[str, Any]]:
    """Readings from `sensors -j` and a status for the report; never raises for an absent tool."""
    try:
        proc = ctx.run(list(SENSORS_ARGS), SENSORS_TIMEOUT_S)
    except CommandError as err:
        return [], {"status": "absent", "note": f"{err} (apt install lm-sensors)"}
    try:
        parsed = parse_sensors_json(_decode(proc.stdout))
    except SensorParseError as err:
        return [], {"status": "error", "note": str(err)}
    errors = parsed.error_count + sum(1 for line in _decode(proc.stderr).splitlines()
                                      if line.startswith("ERROR:"))
    status: dict[str, Any] = {"status": "ok" if parsed.readings else "none",
                              "count": len(parsed.readings), "errors": errors,
                              "error_lines": list(parsed.errors)}
    if not parsed.readings:
        status["note"] = _first_line(proc.stderr, "sensors -j reported no temperatures")
    if errors:
        log.info("sensors -j: %d error lines skipped", errors)
    return list(parsed.readings), status


def read_nvidia(ctx: CollectContext) -> tuple[list[TempReading], dict[str, Any]]:
    """GPU temperatures from nvidia-smi, retrying with the basic fields for older drivers."""
    problem = ""
    for fields in (NVIDIA_FIELDS, NVIDIA_BASIC_FIELDS):
        args = ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]
        try:
            proc = ctx.run(args, NVIDIA_TIMEOUT_S)
        except CommandError as err:
            return [], {"status": "absent", "note": f"{err} (no NVIDIA driver here)"}
        if proc.returncode != 0:
            problem = _first_line(proc.stdout + proc.stderr, f"exit code {proc.returncode}")
            continue
        try:
            readings = nvidia_readings(parse_nvidia_csv(_decode(proc.stdout), fields))
        except SensorParseError as err:
            return [], {"status": "error", "note": str(err)}
        return readings, {"status": "ok" if readings else "none", "count": len(readings)}
    return [], {"status": "error", "note": f"nvidia-smi failed: {problem}"}


def read_psutil(hwmon: HwmonReader) -> tuple[list[TempReading], dict[str, Any]]:
    """Readings from psutil's hwmon table."""
    try:
        table = hwmon()
    except OSError as err:
        return [], {"status": "error", "note": f"psutil.sensors_temperatures failed: {err}"}
    readings = readings_from_psutil(table)
    status: dict[str, Any] = {"status": "ok" if readings else "none", "count": len(readings)}
    if not readings:
        status["note"] = "no hwmon temperature sensors (/sys/class/hwmon)"
    return readings, status


def beyond_psutil(lm: list[TempReading], chips: set[str]) -> list[TempReading]:
    """The `sensors -j` readings of chips psutil has no name for (``chips``: psutil's)."""
    return [r for r in lm if r.chip.split("-", 1)[0] not in chips]


def merge(hwmon: list[TempReading], lm: list[TempReading], gpus: list[TempReading]
          ) -> list[TempReading]:
    """psutil first; `sensors -j` only for chips psutil has no name for; then the GPUs."""
    extra = beyond_psutil(lm, {r.chip for r in hwmon})
    seen: set[str] = set()
    out = []
    for reading in hwmon + extra + gpus:
        if reading.key not in seen:
            seen.add(reading.key)
            out.append(reading)
    return out[:MAX_READINGS]


def summarize(readings: list[TempReading], history: Mapping[str, Any], settings: Settings
              ) -> tuple[dict[str, Any], list[Sample], dict[str, Any]]:
    """Observations, samples and next history from merged readings (pure)."""
    table: dict[str, Any] = {}
    samples: list[Sample] = []
    next_hist: dict[str, Any] = {}
    for r in readings:
        marks = marks_for(r, settings.TEMPERATURE_HIGH_CELSIUS,
                          settings.TEMPERATURE_CRITICAL_CELSIUS)
        prev = history.get(r.key)
        rule, why = plausibility(r.celsius, marks, prev)
        in_range = rule not in RANGE_RULE_NAMES
        next_hist[r.key] = next_history(prev, r.celsius, in_range)
        if in_range:
            samples.append(Sample(METRIC, r.celsius, key=r.key, by_hour=True))
        table[r.key] = {"chip": r.chip, "label": r.label, "source": r.source, "device": r.device,
                        "celsius": r.celsius, "high": marks.high, "high_from": marks.high_from,
                        "critical": marks.critical, "critical_from": marks.critical_from,
                        "plausible": rule is None, "implausible_rule": rule, "why": why}
    plausible = [(k, v["celsius"]) for k, v in table.items() if v["plausible"]]
    hottest = max(plausible, key=lambda kv: kv[1], default=None)
    observations = {"readings": table, "count": len(table),
                    "implausible": sum(1 for v in table.values() if not v["plausible"]),
                    "hottest": {"key": hottest[0], "celsius": hottest[1]} if hottest else None}
    return observations, samples, next_hist


def lm_due(last: Mapping[str, Any], chips: list[str], now: float) -> bool:
    """Whether `sensors -j` runs this cycle: never run, its last run added chips psutil lacks
    (it is then read every cycle), psutil's chips changed since, or LM_RECHECK_S passed."""
    if not last or last.get("adds") or last.get("chips") != chips:
        return True
    checked = last.get("checked")
    return not isinstance(checked, (int, float)) or not 0 <= now - checked < LM_RECHECK_S


def collect_with(ctx: CollectContext, hwmon: HwmonReader) -> CollectResult:
    """Read every source (hwmon through ``hwmon``, commands through ``ctx.run``) and summarize."""
    hw, hw_status = read_psutil(hwmon)
    chips = sorted({r.chip for r in hw})
    kept = ctx.state.get("lm")
    last_lm: Mapping[str, Any] = kept if isinstance(kept, Mapping) else {}
    if lm_due(last_lm, chips, ctx.now):
        lm, lm_status = read_lm_sensors(ctx)
        lm_state = {"checked": ctx.now, "adds": bool(beyond_psutil(lm, set(chips))),
                    "chips": chips, "status": lm_status}
    else:
        lm, lm_state = [], dict(last_lm)
        at = time.strftime("%H:%M", time.localtime(last_lm["checked"]))
        before = last_lm.get("status")
        lm_status = {"status": "unknown", **(before if isinstance(before, Mapping) else {}),
                     "skipped": True,
                     "note": f"not run: at {at} it read no chip psutil lacks; run again hourly "
                             "or when psutil's chips change"}
    gpus, gpu_status = read_nvidia(ctx)
    sources = {"psutil": hw_status, "lm_sensors": lm_status, "nvidia_smi": gpu_status}
    readings = merge(hw, lm, gpus)
    if not readings:
        why = "; ".join(f"{name}: {status.get('note', status['status'])}"
                        for name, status in sources.items())
        note = (f"no temperature source on this machine ({why}). Load the sensor drivers "
                "(sensors-detect) or install the GPU driver to monitor temperatures.")
        return CollectResult(observations={"sources": sources, "readings": {}, "count": 0},
                             available=False, note=note,
                             state={"history": ctx.state.get("history", {}), "lm": lm_state})
    observations, samples, history = summarize(readings, ctx.state.get("history", {}),
                                               ctx.settings)
    observations["sources"] = sources
    return CollectResult(observations=observations, samples=tuple(samples),
                         state={"history": history, "lm": lm_state})


def collect(ctx: CollectContext) -> CollectResult:
    """Temperatures from psutil, lm-sensors and nvidia-smi."""
    # psutil has no sensors_temperatures on some platforms (macOS, Windows): treat as no hwmon
    return collect_with(ctx, getattr(psutil, "sensors_temperatures", dict))
