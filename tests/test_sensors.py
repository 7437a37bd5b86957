"""sensors: parsers on lm-sensors and nvidia-smi captures, plausibility, collector, findings."""
from __future__ import annotations

import csv
import json
import subprocess
import time
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from analysis import detect_sensors
from collectors import sensors
from collectors.sensor_parsers import (
    SensorParseError,
    TempReading,
    nvidia_readings,
    parse_nvidia_csv,
    parse_sensors_json,
    readings_from_psutil,
)
from foundation.context import CollectContext, CommandError, DetectContext
from foundation.model import CollectResult, Sample, Severity
from foundation.store.data_storage import Store

# psutil's documented entry type (label, current, high, critical); its module moves between versions
shwtemp = namedtuple("shwtemp", "label current high critical")
ASROCK_GARBAGE = {f"nct6798-isa-02a0/{label}" for label in (
    "SYSTIN", "AUXTIN0", "AUXTIN1", "AUXTIN2", "AUXTIN3", "AUXTIN4", "PCH_CHIP_CPU_MAX_TEMP",
    "PCH_CHIP_TEMP", "PCH_CPU_TEMP", "PCH_MCH_TEMP")}


def _lm(corpus: Path, name: str) -> Path:
    return corpus / "sensors" / "lm-sensors" / name


Runner = Callable[[Sequence[str], float], subprocess.CompletedProcess]


def _fake_run(outputs: Mapping[str, Any]) -> Runner:
    """A runner answering by program name: bytes, CompletedProcess, a callable, or CommandError."""
    calls: list[list[str]] = []

    def run(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
        calls.append(list(args))
        answer = outputs.get(args[0])
        if callable(answer):
            answer = answer(list(args))
        if answer is None:
            raise CommandError(f"cannot run {args[0]}: No such file or directory")
        if isinstance(answer, subprocess.CompletedProcess):
            return answer
        return subprocess.CompletedProcess(list(args), 0, answer, b"")

    run.calls = calls  # type: ignore[attr-defined]
    return run


def _collect(settings: Any, outputs: Mapping[str, Any], hwmon: Mapping[str, Any] | None = None,
             state: Mapping[str, Any] | None = None) -> CollectResult:
    ctx = CollectContext(settings, time.time(), state or {}, run=_fake_run(outputs))
    return sensors.collect_with(ctx, lambda: hwmon or {})


def _detect(result: CollectResult, settings: Any, store: Store) -> list:
    return detect_sensors.detect(result, DetectContext(settings, time.time(), store))


# -- lm-sensors captures --------------------------------------------------------------------------

def test_package_and_nvme_composite_from_the_asrock_capture(corpus: Path) -> None:
    parsed = parse_sensors_json(_lm(corpus, "hjs_asrock.sensors-j.json").read_text())
    by_key = {r.key: r for r in parsed.readings}
    assert by_key["coretemp-isa-0000/Package id 0"].celsius == 37.0
    assert (by_key["coretemp-isa-0000/Package id 0"].high,
            by_key["coretemp-isa-0000/Package id 0"].critical) == (80.0, 100.0)
    assert by_key["nvme-pci-0200/Composite"].celsius == pytest.approx(34.85)
    assert by_key["nvme-pci-0200/Composite"].critical == pytest.approx(84.85)
    assert parsed.error_count == 0 and not parsed.tolerant
    # Package id 0 and 14 cores: 15 temp*_input lines in the file (PROVENANCE.md says "15 cores")
    assert len([k for k in by_key if k.startswith("coretemp")]) == 15
    assert not any(k.endswith(("/in0", "/fan1", "/intrusion0")) for k in by_key)


def test_kfanfail_and_kfanless_are_the_same_machine_a_little_cooler(corpus: Path) -> None:
    fail = {r.key: r.celsius for r in parse_sensors_json(
        _lm(corpus, "hjs_kfanfail.sensors-j.json").read_text()).readings}
    less = {r.key: r.celsius for r in parse_sensors_json(
        _lm(corpus, "hjs_kfanless.sensors-j.json").read_text()).readings}
    assert fail.keys() == less.keys() and len(fail) == 20
    assert fail["coretemp-isa-0000/Package id 0"] == less["coretemp-isa-0000/Package id 0"] == 27.0
    assert fail["acpitz-acpi-0/temp1"] == less["acpitz-acpi-0/temp1"] == 27.8
    assert less["nvme-pci-0500/Composite"] == pytest.approx(29.85)
    cooler = [k for k in fail if 1.0 <= fail[k] - less[k] <= 4.0]
    assert len(cooler) == 18


def test_asrock_garbage_is_implausible_and_never_alerted(corpus: Path, make_settings: Any,
                                                         store: Store) -> None:
    settings = make_settings()
    raw = _lm(corpus, "hjs_asrock.sensors-j.json").read_bytes()
    result = _collect(settings, {"sensors": raw})
    readings = result.observations["readings"]
    implausible = {k for k, v in readings.items() if not v["plausible"]}
    assert implausible == ASROCK_GARBAGE
    assert readings["nct6798-isa-02a0/SYSTIN"]["implausible_rule"] == "past_critical"
    assert readings["nct6798-isa-02a0/AUXTIN4"]["implausible_rule"] == "past_critical"  # 108>105
    assert readings["nct6798-isa-02a0/AUXTIN3"]["implausible_rule"] == "too_cold"
    assert readings["coretemp-isa-0000/Package id 0"]["plausible"]
    # the NVMe "Sensor 1" max of 65261.85 °C is nonsense: the setting is used instead
    assert readings["nvme-pci-0200/Sensor 1"]["high_from"] == "settings"
    assert result.observations["hottest"] == {"key": "nct6798-isa-02a0/PECI Agent 0",
                                              "celsius": 37.5}
    assert {s.key for s in result.samples}.isdisjoint(ASROCK_GARBAGE)
    assert all(s.by_hour and s.metric == sensors.METRIC for s in result.samples)
    assert _detect(result, settings, store) == []


def test_broken_sensors_output_degrades_gracefully(corpus: Path, make_settings: Any,
                                                   store: Store) -> None:
    text = _lm(corpus, "fdo-bug110641_amdgpu_sensors-j_with_errors.txt").read_text()
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    parsed = parse_sensors_json(text)
    assert parsed.error_count == 2
    assert parsed.errors[0] == "ERROR: Can't get value of subfeature in0_input: Can't read"
    got = {r.key: (r.celsius, r.high, r.critical) for r in parsed.readings}
    assert got == {"amdgpu-pci-0008/temp1": (12.0, None, 120.0),
                   "it8603-isa-0290/AMD A6-7400K Radeon R5": (44.0, 127.0, None),
                   "it8603-isa-0290/Asus A68HM-K Mobo": (45.0, -33.0, None)}
    settings = make_settings()
    result = _collect(settings, {"sensors": text.encode()})
    assert result.available and result.observations["sources"]["lm_sensors"]["errors"] == 2
    mobo = result.observations["readings"]["it8603-isa-0290/Asus A68HM-K Mobo"]
    assert (mobo["high"], mobo["high_from"]) == (settings.TEMPERATURE_HIGH_CELSIUS, "settings")
    assert _detect(result, settings, store) == []  # 45 °C is not over a -33 °C "max"


def test_output_that_is_not_json_at_all_is_scanned_line_by_line(corpus: Path) -> None:
    text = _lm(corpus, "fdo-bug110641_amdgpu_sensors-j_with_errors.txt").read_text()
    garbled = text.replace("ERROR: Can't get value", "libsensors: cannot get value")
    truncated = text[: text.index('"Asus A68HM-K Mobo"')]  # cut mid-object, as a killed command
    for broken in (garbled, truncated):
        parsed = parse_sensors_json(broken)
        assert parsed.tolerant
        keys = {r.key: r.celsius for r in parsed.readings}
        assert keys["amdgpu-pci-0008/temp1"] == 12.0
        assert keys["it8603-isa-0290/AMD A6-7400K Radeon R5"] == 44.0
    assert parse_sensors_json(garbled).error_count == 2
    assert "it8603-isa-0290/Asus A68HM-K Mobo" not in {r.key for r in parse_sensors_json(
        truncated).readings}
    assert parse_sensors_json("{\n\n}\n").readings == ()  # what `sensors -j` prints here
    with pytest.raises(SensorParseError):
        parse_sensors_json("[1, 2]")


# -- nvidia-smi captures --------------------------------------------------------------------------

def _nvidia_cases(corpus: Path) -> list[tuple[Path, str]]:
    summary = json.loads((corpus / "sensors" / "nvidia-smi" / "query-gpu-summary.json").read_text())
    cases = [(corpus / "sensors" / "nvidia-smi" / state["file"], temp)
             for states in summary.values() for state in states.values()
             for temp in state["temperature.gpu"]]
    assert len(cases) == 20
    return cases


def test_every_nvidia_capture_gives_the_summary_temperature(corpus: Path) -> None:
    for path, expected in _nvidia_cases(corpus):
        rows = parse_nvidia_csv(path.read_text())
        assert len(rows) == 1, path.name
        assert rows[0]["temperature.gpu"] == expected, path.name
        gpu = [r for r in nvidia_readings(rows) if r.label == "gpu"]
        assert [(g.key, g.celsius) for g in gpu] == [("nvidia0/gpu", float(expected))], path.name
        assert rows[0]["power.draw"] is None or rows[0]["power.draw"].endswith("W")


def test_nvidia_tlimit_gives_the_slowdown_mark(corpus: Path) -> None:
    path = corpus / "sensors/nvidia-smi/query-gpu/linux-x86_64__nvidia-h200__590.48.01__load.csv"
    got = {r.label: r for r in nvidia_readings(parse_nvidia_csv(path.read_text()))}
    assert (got["gpu"].celsius, got["gpu"].high, got["gpu"].device) == (52.0, 87.0, "NVIDIA H200")
    assert got["memory"].celsius == 40.0
    consumer = corpus / ("sensors/nvidia-smi/query-gpu/"
                         "linux-x86_64__nvidia-geforce-rtx-2080-super__595.71.05__idle.csv")
    labels = {r.label: r.high for r in nvidia_readings(parse_nvidia_csv(consumer.read_text()))}
    assert labels == {"gpu": None}  # "[N/A]" tlimit and "N/A" memory give no mark, no reading


def _projected(path: Path, fields: Sequence[str]) -> bytes:
    """What `nvidia-smi --query-gpu=FIELDS --format=csv,noheader,nounits` prints for a capture."""
    header, row = list(csv.reader(path.read_text().splitlines(), skipinitialspace=True))[:2]
    cells = dict(zip((h.split(" [")[0] for h in header), row, strict=True))
    return (", ".join(cells[f].split(" ")[0] for f in fields) + "\n").encode()


def test_collector_with_nvidia_smi_and_an_old_driver_fallback(corpus: Path, make_settings: Any,
                                                               store: Store) -> None:
    settings = make_settings()
    for path, expected in _nvidia_cases(corpus):
        result = _collect(settings, {"nvidia-smi": lambda args, p=path: _projected(
            p, args[1].split("=", 1)[1].split(","))})
        assert result.available, path.name
        assert result.observations["readings"]["nvidia0/gpu"]["celsius"] == float(expected)
        assert _detect(result, settings, store) == []  # 28-63 °C is not hot for a GPU

    h200 = corpus / "sensors/nvidia-smi/query-gpu/linux-x86_64__nvidia-h200__590.48.01__load.csv"

    def old_driver(args: list[str]) -> Any:
        if "tlimit" in args[1]:
            return subprocess.CompletedProcess(args, 2, b'Field "temperature.gpu.tlimit" is not '
                                               b'a valid field to query.\n', b"")
        return _projected(h200, args[1].split("=", 1)[1].split(","))

    run = _fake_run({"nvidia-smi": old_driver})
    result = sensors.collect_with(CollectContext(settings, time.time(), {}, run=run), dict)
    gpu = result.observations["readings"]["nvidia0/gpu"]
    assert (gpu["celsius"], gpu["high_from"]) == (52.0, "settings")
    assert len([c for c in run.calls if c[0] == "nvidia-smi"]) == 2  # type: ignore[attr-defined]

    no_driver = subprocess.CompletedProcess([], 9, b"NVIDIA-SMI has failed because it couldn't "
                                            b"communicate with the NVIDIA driver.\n", b"")
    result = _collect(settings, {"nvidia-smi": no_driver})
    assert not result.available
    assert "couldn't communicate" in result.observations["sources"]["nvidia_smi"]["note"]


# -- the collector without sources, psutil, and plausibility over cycles ---------------------------

def test_no_source_at_all_is_unavailable_with_a_clear_note(make_settings: Any) -> None:
    result = _collect(make_settings(), {})
    assert not result.available and result.samples == ()
    assert "no temperature source" in result.note
    assert "nvidia-smi" in result.note and "lm-sensors" in result.note
    assert result.observations["sources"]["nvidia_smi"]["status"] == "absent"


def test_the_real_tools_on_this_machine(make_settings: Any) -> None:
    import psutil
    settings = make_settings()
    result = sensors.collect(CollectContext(settings, time.time(), {}))
    sources = result.observations["sources"]
    has_hwmon = bool(psutil.sensors_temperatures())
    assert (sources["psutil"]["status"] == "ok") == has_hwmon
    assert sources["lm_sensors"]["status"] in ("ok", "none", "absent")
    assert result.available == (result.observations["count"] > 0)
    if not result.available:  # this test machine: no hwmon, lm-sensors finds none, no nvidia-smi
        assert "no temperature source" in result.note and result.samples == ()


def test_psutil_readings_keep_duplicate_labels_apart_and_win_over_lm_sensors(
        corpus: Path, make_settings: Any) -> None:
    table = {"nvme": [shwtemp("Composite", 33.85, 82.85, 84.85), shwtemp("Composite", 30.85, 82.85,
                                                                          84.85)],
             "acpitz": [shwtemp("", 27.8, 105.0, 105.0)],
             "amdgpu": [shwtemp("edge", 51.0, 100.0, 100.0),
                        shwtemp("junction", 60.0, 110.0, 110.0)]}
    keys = [r.key for r in readings_from_psutil(table)]
    assert keys == ["nvme/Composite", "nvme/Composite#2", "acpitz/temp1", "amdgpu/edge",
                    "amdgpu/junction"]
    raw = _lm(corpus, "hjs_kfanfail.sensors-j.json").read_bytes()
    result = _collect(make_settings(), {"sensors": raw}, hwmon=table)
    got = result.observations["readings"]
    assert "coretemp-isa-0000/Package id 0" in got          # psutil had no coretemp here
    assert not any(k.startswith(("nvme-pci", "acpitz-acpi")) for k in got)  # psutil covers them
    assert got["amdgpu/junction"]["source"] == "psutil"


def _reading(celsius: float, critical: float | None = 84.85, high: float | None = 82.85
             ) -> TempReading:
    return TempReading("nvme-pci-0100", "Composite", celsius, high, critical, "lm_sensors")


def _cycles(settings: Any, values: Sequence[float], **marks: Any) -> list[dict[str, Any]]:
    history: dict[str, Any] = {}
    out = []
    for value in values:
        observations, _, history = sensors.summarize([_reading(value, **marks)], history, settings)
        out.append(observations["readings"]["nvme-pci-0100/Composite"])
    return out


def test_a_real_climb_past_critical_is_believed_a_jump_is_not(make_settings: Any,
                                                              store: Store) -> None:
    settings = make_settings()
    climb = _cycles(settings, [70.0, 80.0, 86.0, 92.0])
    assert [c["plausible"] for c in climb] == [True, True, True, True]
    jump = _cycles(settings, [40.0, 127.0])
    assert jump[1]["implausible_rule"] == "past_critical"
    runaway = _cycles(settings, [80.0, 95.0, 110.0, 125.0, 140.0, 155.0])
    assert [c["plausible"] for c in runaway] == [True] * 5 + [False]  # nothing works at 155 °C
    found = _detect(CollectResult({"readings": {"nvme/x": climb[-1]}}), settings, store)
    assert [(f.kind, f.key, f.severity, f.floor) for f in found] == [
        ("temperature_high", "nvme/x", Severity.HIGH, Severity.HIGH)]
    assert "critical mark 84.85" in found[0].summary


def test_a_reading_that_never_varies_is_stuck(make_settings: Any) -> None:
    settings = make_settings()
    constant = _cycles(settings, [88.0] * sensors.STUCK_CYCLES)
    assert all(c["plausible"] for c in constant[:-1])
    assert constant[-1]["implausible_rule"] == "stuck"
    varied = _cycles(settings, [40.0] + [41.0] * (sensors.STUCK_CYCLES + 3))
    assert all(c["plausible"] for c in varied)  # it moved once: a real sensor at rest


def test_high_mark_and_baseline_severities(make_settings: Any, store: Store) -> None:
    settings = make_settings()
    hot = _cycles(settings, [83.0])[0]
    found = _detect(CollectResult({"readings": {"nvme/x": hot}}), settings, store)
    assert [(f.severity, f.floor) for f in found] == [(Severity.MEDIUM, Severity.NONE)]

    now = time.time()
    series = f"{sensors.METRIC}[gpu/x]"
    with store.transaction() as tx:
        tx.add_samples(now - 60, [Sample(sensors.METRIC, 40.0 + (i % 3), key="gpu/x",
                                         by_hour=True) for i in range(40)])
    assert store.baseline(series).trusted
    warm = {**_cycles(settings, [48.0], critical=None, high=None)[0]}
    hotter = {**_cycles(settings, [62.0], critical=None, high=None)[0]}
    assert _detect(CollectResult({"readings": {"gpu/x": warm}}), settings, store) == []
    found = _detect(CollectResult({"readings": {"gpu/x": hotter}}), settings, store)
    assert [(f.kind, f.severity, f.floor, f.metric) for f in found] == [
        ("temperature_high", Severity.LOW, Severity.NONE, series)]
    assert found[0].baseline is not None and found[0].baseline["n"] == 40


# -- `sensors -j` only where it adds a chip ---------------------------------------------------------

def _cycle_at(settings: Any, now: float, state: Mapping[str, Any], outputs: Mapping[str, Any],
              hwmon: Mapping[str, Any]) -> tuple[CollectResult, list[list[str]]]:
    run = _fake_run(outputs)
    result = sensors.collect_with(CollectContext(settings, now, state, run=run), lambda: hwmon)
    return result, [c for c in run.calls if c[0] == "sensors"]  # type: ignore[attr-defined]


def test_sensors_j_is_read_again_hourly_when_it_added_nothing(corpus: Path,
                                                              make_settings: Any) -> None:
    settings = make_settings()
    raw = _lm(corpus, "hjs_kfanfail.sensors-j.json").read_bytes()
    # psutil has every chip of that capture (by name): `sensors -j` adds none
    chips = {r.chip.split("-", 1)[0] for r in parse_sensors_json(raw.decode()).readings}
    hwmon = {chip: [shwtemp("temp1", 40.0, 80.0, 100.0)] for chip in sorted(chips)}
    t0 = 1_800_000_000.0
    first, calls = _cycle_at(settings, t0, {}, {"sensors": raw}, hwmon)
    assert calls and first.state["lm"]["adds"] is False
    later, calls = _cycle_at(settings, t0 + 600, first.state, {"sensors": raw}, hwmon)
    assert calls == [] and later.available
    status = later.observations["sources"]["lm_sensors"]
    assert status["skipped"] and "not run" in status["note"] and status["status"] == "ok"
    assert later.state["lm"]["checked"] == t0                      # the check it relies on
    hour, calls = _cycle_at(settings, t0 + sensors.LM_RECHECK_S + 1, later.state,
                            {"sensors": raw}, hwmon)
    assert calls and hour.state["lm"]["checked"] == t0 + sensors.LM_RECHECK_S + 1
    # a chip psutil had is gone (a driver unloaded): read at once, and its chips come back
    fewer = {k: v for k, v in hwmon.items() if k != "coretemp"}
    changed, calls = _cycle_at(settings, t0 + 700, later.state, {"sensors": raw}, fewer)
    assert calls and "coretemp-isa-0000/Package id 0" in changed.observations["readings"]
    assert changed.state["lm"]["adds"] is True
    # from then on every cycle reads it, as long as it adds a chip
    _, calls = _cycle_at(settings, t0 + 710, changed.state, {"sensors": raw}, fewer)
    assert calls


def test_a_machine_without_sensors_does_not_fork_sensors_every_cycle(make_settings: Any) -> None:
    settings = make_settings()
    empty = b"{\n\n}\n"                       # what `sensors -j` prints on this machine
    first, calls = _cycle_at(settings, 1_800_000_000.0, {}, {"sensors": empty}, {})
    assert calls and not first.available and first.state["lm"]["adds"] is False
    second, calls = _cycle_at(settings, 1_800_000_010.0, first.state, {"sensors": empty}, {})
    assert calls == [] and not second.available and "no temperature source" in second.note
    # a damaged state (another version's, a hand edit) reads `sensors -j` again
    for bad in ({"lm": "x"}, {"lm": {"chips": [], "checked": "noon"}}, {"lm": {"chips": []}}):
        _, calls = _cycle_at(settings, 1_800_000_020.0, bad, {"sensors": empty}, {})
        assert calls, bad
    odd = {"lm": {"chips": [], "checked": 1_800_000_000.0, "adds": False, "status": "x"}}
    result, calls = _cycle_at(settings, 1_800_000_030.0, odd, {"sensors": empty}, {})
    assert calls == [] and result.observations["sources"]["lm_sensors"]["skipped"]
