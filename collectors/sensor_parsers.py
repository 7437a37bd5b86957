"""Pure parsers for temperature sources: psutil's hwmon table, `sensors -j` and nvidia-smi CSV.

Nothing here reads a file, runs a command or looks at a clock: the collector passes the text in.
"""
from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_ERROR_LINES = 5          # error lines kept verbatim in the report (all are counted)
NVIDIA_UNIT = re.compile(r"\s*\[[^\]]*\]\s*$")          # "power.draw [W]" -> "power.draw"
NVIDIA_MISSING = re.compile(r"^\[.*\]$|^N/A$", re.IGNORECASE)  # "[N/A]", "N/A", "[Not Supported]"
NUMBER = re.compile(r"^[-+]?\d+(?:\.\d+)?")
# tolerant line scanner for `sensors -j` output that is not valid JSON
CHIP_LINE = re.compile(r'^ {3}"(?P<name>[^"]+)"\s*:\s*\{\s*$')
FEATURE_LINE = re.compile(r'^ {6}"(?P<name>[^"]+)"\s*:\s*\{\s*$')
VALUE_LINE = re.compile(r'^\s*"(?P<name>[^"]+)"\s*:\s*(?P<value>[-+]?\d+(?:\.\d+)?)\s*,?\s*$')
TEMP_SUBFEATURE = re.compile(r"^temp(?P<n>\d+)_(?P<what>input|max|crit)$")


class SensorParseError(Exception):
    """Sensor output that cannot be read at all (not merely partly broken)."""


@dataclass(frozen=True)
class TempReading:
    """One temperature input with the marks its chip reports (None when it reports none)."""

    chip: str
    label: str
    celsius: float
    high: float | None = None
    critical: float | None = None
    source: str = ""       # "psutil", "lm_sensors" or "nvidia_smi"
    device: str = ""       # a human name (GPU model) where the source gives one

    @property
    def key(self) -> str:
        """The stable instance key used for samples and findings: chip/label."""
        return f"{self.chip}/{self.label}"


@dataclass(frozen=True)
class SensorsJsonResult:
    """What could be read from one `sensors -j` output, and how much could not."""

    readings: tuple[TempReading, ...]
    error_count: int                 # ERROR lines and lines the tolerant scanner had to skip
    errors: tuple[str, ...] = ()     # the first few of them, verbatim
    tolerant: bool = False           # True when the output was not JSON and was scanned by lines


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):   # OverflowError: a JSON integer past 1e308
        return None


def readings_from_psutil(table: Mapping[str, Sequence[Any]]) -> list[TempReading]:
    """Readings from ``psutil.sensors_temperatures()`` (items with label/current/high/critical)."""
    out: list[TempReading] = []
    for chip, entries in table.items():
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries, start=1):
            current = _float(getattr(entry, "current", None))
            if current is None:
                continue
            label = (getattr(entry, "label", "") or "").strip() or f"temp{index}"
            seen[label] = seen.get(label, 0) + 1
            if seen[label] > 1:  # two NVMe drives both say "Composite": keep both apart
                label = f"{label}#{seen[label]}"
            out.append(TempReading(chip, label, current, _float(getattr(entry, "high", None)),
                                   _float(getattr(entry, "critical", None)), "psutil"))
    return out


def _temps_of_tree(tree: Mapping[str, Any]) -> list[TempReading]:
    """Temperature readings from the parsed `sensors -j` object {chip: {feature: {sub: value}}}."""
    out: list[TempReading] = []
    for chip, features in tree.items():
        if not isinstance(features, Mapping):
            continue
        for label, subs in features.items():
            if not isinstance(subs, Mapping):
                continue  # "Adapter": "ISA adapter"
            marks: dict[str, float] = {}
            for sub, value in subs.items():
                match = TEMP_SUBFEATURE.match(sub)
                number = _float(value)
                if match and number is not None:
                    marks[match["what"]] = number
            if "input" in marks:
                out.append(TempReading(chip, label, marks["input"], marks.get("max"),
                                       marks.get("crit"), "lm_sensors"))
    return out


def _scan_lines(lines: Iterable[str]) -> tuple[dict[str, dict[str, dict[str, float]]], list[str]]:
    """Rebuild {chip: {feature: {sub: value}}} line by line from pretty-printed `sensors -j`."""
    tree: dict[str, dict[str, dict[str, float]]] = {}
    skipped: list[str] = []
    chip: str | None = None
    feature: str | None = None
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("}"):
            chip, feature = (chip, None) if feature is not None else (None, None)
            continue
        if not stripped or stripped == "{" or stripped.startswith('"Adapter"'):
            continue
        if (m := CHIP_LINE.match(line)) is not None:
            chip, feature = m["name"], None
            tree.setdefault(chip, {})
        elif (m := FEATURE_LINE.match(line)) is not None and chip is not None:
            feature = m["name"]
            tree[chip].setdefault(feature, {})
        elif (m := VALUE_LINE.match(line)) is not None and chip is not None and feature is not None:
            tree[chip][feature][m["name"]] = float(m["value"])
        else:
            skipped.append(stripped)
    return tree, skipped


def parse_sensors_json(text: str) -> SensorsJsonResult:
    """Parse `sensors -j` output; ERROR lines mixed into it are counted and skipped, never fatal."""
    lines = text.splitlines()
    errors = [line.strip() for line in lines if line.lstrip().startswith("ERROR:")]
    clean = "\n".join(line for line in lines if not line.lstrip().startswith("ERROR:"))
    if not clean.strip():
        return SensorsJsonResult((), len(errors), tuple(errors[:MAX_ERROR_LINES]))
    try:
        tree = json.loads(clean)
    except (ValueError, RecursionError):   # bad JSON, a 5000-digit number, nesting too deep
        tree, skipped = _scan_lines(clean.splitlines())
        errors.extend(skipped)
        return SensorsJsonResult(tuple(_temps_of_tree(tree)), len(errors),
                                 tuple(errors[:MAX_ERROR_LINES]), tolerant=True)
    if not isinstance(tree, Mapping):
        raise SensorParseError(f"sensors -j printed a JSON {type(tree).__name__}, not an object")
    return SensorsJsonResult(tuple(_temps_of_tree(tree)), len(errors),
                             tuple(errors[:MAX_ERROR_LINES]))


def _nvidia_value(cell: str) -> str | None:
    cell = cell.strip()
    return None if not cell or NVIDIA_MISSING.match(cell) else cell


def parse_nvidia_csv(text: str, fields: Sequence[str] | None = None) -> list[dict[str, str | None]]:
    """Rows of `nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]` keyed by field name.

    With ``fields`` the output has no header line; without, the first line is the header, whose
    unit suffixes (``power.draw [W]``) are dropped. Missing values ("[N/A]", "N/A") become None.
    """
    rows = [row for row in csv.reader(text.splitlines(), skipinitialspace=True) if row]
    if fields is None:
        if not rows:
            raise SensorParseError("nvidia-smi printed no header line")
        fields = [NVIDIA_UNIT.sub("", cell).strip() for cell in rows[0]]
        rows = rows[1:]
    out = []
    for number, row in enumerate(rows, start=1):
        if len(row) != len(fields):
            raise SensorParseError(f"nvidia-smi row {number} has {len(row)} cells, "
                                   f"expected {len(fields)}: {','.join(row)[:120]!r}")
        out.append({field: _nvidia_value(cell) for field, cell in zip(fields, row, strict=True)})
    return out


def nvidia_number(value: str | None) -> float | None:
    """The number an nvidia-smi value starts with ("627.40 W" -> 627.4), else None."""
    if value is None:
        return None
    match = NUMBER.match(value)
    return float(match.group(0)) if match else None


def nvidia_readings(rows: Iterable[Mapping[str, str | None]]) -> list[TempReading]:
    """GPU (and, where reported, memory) temperatures from parsed nvidia-smi rows.

    ``temperature.gpu.tlimit`` is the headroom to the slowdown temperature, so the GPU's own high
    mark is ``temperature.gpu + tlimit`` where the driver reports it.
    """
    out = []
    for position, row in enumerate(rows):
        index = row.get("index") or str(position)
        name = row.get("name") or ""
        gpu = nvidia_number(row.get("temperature.gpu"))
        if gpu is not None:
            headroom = nvidia_number(row.get("temperature.gpu.tlimit"))
            high = gpu + headroom if headroom is not None else None
            out.append(TempReading(f"nvidia{index}", "gpu", gpu, high, None, "nvidia_smi", name))
        memory = nvidia_number(row.get("temperature.memory"))
        if memory is not None:
            out.append(TempReading(f"nvidia{index}", "memory", memory, None, None, "nvidia_smi",
                                   name))
    return out
