"""One-time import of `monitoring_data.json` left by the earlier script-style version of the agent.

That script kept its history as JSON. Its exact shape varied between copies, so the importer takes
what any of them wrote: records with a time field ("timestamp", "time", "ts", "date": epoch seconds
or ISO 8601) whose numeric fields become samples named ``legacy.<path>.<field>``, and
``[time, value]`` pairs under a named list. Everything else is counted as skipped. The file is then
renamed ``monitoring_data.json.imported`` so it is never imported twice.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from foundation.store.data_storage import Store

log = logging.getLogger(__name__)

LEGACY_NAME = "monitoring_data.json"
TIME_KEYS = ("timestamp", "time", "ts", "date", "datetime")


def _epoch(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) / 1000 if value > 1e11 else float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.timestamp()
    return None


def _numbers(record: dict[str, Any], prefix: str) -> Iterator[tuple[str, float]]:
    for key, value in record.items():
        if key in TIME_KEYS or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            yield f"{prefix}.{key}", float(value)
        elif isinstance(value, dict):
            yield from _numbers(value, f"{prefix}.{key}")


def extract(data: Any, path: str = "legacy") -> tuple[list[tuple[str, float, float]], int]:
    """(series, ts, value) rows found in legacy JSON, and how many items were skipped."""
    rows: list[tuple[str, float, float]] = []
    skipped = 0
    if isinstance(data, dict):
        ts = next((_epoch(data[k]) for k in TIME_KEYS if k in data), None)
        if ts is not None:
            rows.extend((series, ts, value) for series, value in _numbers(data, path))
            return rows, skipped
        for key, value in data.items():
            more, miss = extract(value, f"{path}.{key}")
            rows.extend(more)
            skipped += miss
    elif isinstance(data, list):
        for item in data:
            at = _epoch(item[0]) if isinstance(item, (list, tuple)) and len(item) == 2 else None
            if (at is not None and isinstance(item[1], (int, float))
                    and not isinstance(item[1], bool)):
                rows.append((path, at, float(item[1])))
            elif isinstance(item, (dict, list)):
                more, miss = extract(item, path)
                rows.extend(more)
                skipped += miss
            else:
                skipped += 1
    return rows, skipped


def import_legacy(store: Store, data_dir: Path) -> str | None:
    """Import DATA_DIR/monitoring_data.json once; a sentence saying what was done, or None."""
    source = data_dir / LEGACY_NAME
    if not source.is_file():
        return None
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"could not import {source} from the earlier version: {err}; left in place"
    rows, skipped = extract(data)
    rows.sort(key=lambda r: r[1])
    with store.transaction() as tx:
        count = tx.add_history(rows)
        tx.set_meta("legacy_import", json.dumps({"file": str(source), "samples": count}))
    source.rename(source.with_name(LEGACY_NAME + ".imported"))
    series = len({r[0] for r in rows})
    return (f"imported {count} samples in {series} series from {source} (the earlier script's "
            f"history; {skipped} items skipped); renamed it {LEGACY_NAME}.imported")
