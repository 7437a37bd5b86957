"""Benchmarks (`make bench`); each module prints its figures and writes bench/results/<name>.json."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def save(name: str, figures: dict[str, Any]) -> None:
    """Write one benchmark's figures, stamped with the time, to bench/results/<name>.json."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(
        {"benchmark": name, **figures, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")},
        indent=2) + "\n")
