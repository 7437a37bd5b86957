"""Every metric a collector writes is declared with a name and unit for people."""
from __future__ import annotations

import re

from foundation.series import METRICS, metric_spec, with_unit
from tests.conftest import ROOT

WRITTEN = re.compile(r'Sample\("([a-z_.0-9]+)"|^METRIC = "([a-z_.0-9]+)"', re.M)


def metrics_written() -> set[str]:
    """The metric names the collectors write samples under (read from their source)."""
    found = set()
    for path in (ROOT / "collectors").rglob("*.py"):
        for a, b in WRITTEN.findall(path.read_text(encoding="utf-8")):
            found.add(a or b)
    return found


def test_every_written_metric_is_declared() -> None:
    written = metrics_written()
    assert "ping.rtt_avg_ms" in written and "sensor.temperature_c" in written  # the reader works
    assert written - set(METRICS) == set()


def test_numbers_carry_their_unit() -> None:
    assert with_unit(41.5, "sensor.temperature_c") == "41.5 °C"
    assert with_unit(0.0412, "ping.rtt_avg_ms") == "0.0412 ms"
    assert with_unit(12345.0, "ping.rtt_avg_ms") == "12345 ms"
    assert with_unit(7.0, "auth.failed_logins") == "7 logins"
    assert with_unit(1.0, "auth.failed_logins") == "1 login"
    assert with_unit(1.0, "processes.count") == "1 process"
    assert with_unit(1.0, "ping.rtt_avg_ms") == "1 ms"
    assert with_unit(1.5, "system.load1") == "1.5"
    assert metric_spec("unknown.metric").name == "unknown.metric"


def test_names_are_plain_words() -> None:
    for spec in METRICS.values():   # no series ids in what people read
        assert "_" not in spec.name and "." not in spec.name, spec
