"""What the daily recap chart shows, without matplotlib, and the short-lived process that draws it.

The panels, the series each one draws and the notes on what is left out are decided here (the recap
text needs them, and so does the drawing). The drawing itself (alerts/chart.py, matplotlib: some
50 MB once imported) runs in a child process, ``python -m alerts.chart``, with the data as JSON on
its standard input and the PNG on its standard output, bounded in time and size: matplotlib never
enters the agent's own process. A child that fails, hangs or prints something that is not a PNG
costs the recap its chart, which the recap then says, never the recap.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from foundation.context import CommandError, run_command
from foundation.series import metric_spec, with_unit
from foundation.untrusted import for_chart, neutralise

Series = Sequence[tuple[float, float]]
MAX_LINES = 3          # per panel: more are unreadable on a phone; the highest peaks are kept
MAX_LABEL = 28         # characters of a legend label (a sensor or target name)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHART_TIMEOUT_S = 60.0           # matplotlib's first start on a machine builds its font cache
MAX_PNG_BYTES = 8 << 20          # the chart is ~160 KB; Discord takes files up to 10 MB
ROOT = Path(__file__).resolve().parent.parent   # where `alerts` is found (a checkout or site-packages)
COMMAND = (sys.executable, "-m", "alerts.chart")   # the drawing process


def metric_of(series: str) -> str:
    """The metric part of a stored series name ("ping.rtt_avg_ms[1.1.1.1]" -> "ping.rtt_avg_ms")."""
    return series.split("[", 1)[0]


def key_of(series: str) -> str:
    """The key part of a stored series name ("" for a global series); a key may hold brackets."""
    metric = metric_of(series)
    return series[len(metric) + 1:-1] if len(series) > len(metric) else ""


def per_cycle_text(cycle_s: float | None) -> str:
    """What a count per cycle is per, for people: "per 5 min", "per 30 s" (or "per cycle")."""
    if not cycle_s:
        return "per cycle"
    if cycle_s % 3600 == 0:
        return f"per {cycle_s / 3600:g} h"
    return f"per {cycle_s / 60:g} min" if cycle_s % 60 == 0 else f"per {cycle_s:g} s"


@dataclass(frozen=True)
class Panel:
    """One chart panel: the metric whose name and unit it shows, and which series it draws."""

    title: str                    # the panel's key in the data handed to render_png
    metric: str                   # the declared metric (foundation.series) it is about
    wants: Callable[[str], bool]  # which stored metrics it draws
    log: bool = False             # a log scale when the lines differ a hundredfold (LAN, loopback)
    step: bool = False            # values per cycle (a count, a share of pings) drawn as steps

    def heading(self, cycle_s: float | None = None) -> str:
        """The panel's title for people: "Temperature, °C", "Failed logins per 5 min"."""
        spec = metric_spec(self.metric)
        if spec.per_cycle:
            return f"{spec.name} {per_cycle_text(cycle_s)}"
        return f"{spec.name}, {spec.unit}" if spec.unit else spec.name


PANELS: tuple[Panel, ...] = (
    Panel("Temperatures", "sensor.temperature_c", lambda m: "temp" in m),
    Panel("Ping round trip", "ping.rtt_avg_ms", lambda m: m.startswith("ping.") and "rtt" in m,
          log=True),
    Panel("Ping loss", "ping.loss_percent", lambda m: m.startswith("ping.") and "loss" in m,
          step=True),
    Panel("Failed logins", "auth.failed_logins",
          lambda m: m.startswith("auth") and "failed_login" in m, step=True),
)


def panel_series(panel: Panel, names: Sequence[str]) -> list[str]:
    """The stored series names a panel shows."""
    return [n for n in names if panel.wants(metric_of(n))]


def label_of(series: str) -> str:
    """A legend label: the series' key (untrusted: cut, then neutralised), else its metric's name."""
    key = key_of(series)
    if len(key) > MAX_LABEL:
        key = key[:MAX_LABEL - 1].rstrip() + "\u2026"
    return for_chart(key) or metric_spec(metric_of(series)).name


def chosen(series: Mapping[str, Series]) -> list[str]:
    """At most MAX_LINES series with points, the highest peaks first (in every panel the worse)."""
    drawn = [n for n, points in series.items() if points]
    return sorted(drawn, key=lambda n: (-max(v for _, v in series[n]), n))[:MAX_LINES]


def plan(data: Mapping[str, Mapping[str, Series]]) -> tuple[list[tuple[Panel, list[str]]], list[str]]:
    """The panels that have data, each with the series it draws, and notes on what was left out
    (``data``: panel title -> series name -> points)."""
    notes: list[str] = []
    shown = []
    for panel in PANELS:
        series = data.get(panel.title, {})
        names = chosen(series)
        name = metric_spec(panel.metric).name
        if not names:
            notes.append(f"{name}: no data (left out of the chart)")
        elif all(v == 0 for n in names for _, v in series[n]):   # a flat line on the floor
            notes.append(f"{name}: {with_unit(0, panel.metric)} throughout (left out of the chart)")
        else:
            shown.append((panel, names))
            hidden = sum(1 for points in series.values() if points) - len(names)
            if hidden:
                notes.append(f"{name}: {hidden} more series not drawn (the {len(names)} "
                             f"highest are)")
    return shown, notes


def render_png(data: Mapping[str, Mapping[str, Series]], title: str, since: float, until: float,
               cycle_s: float | None = None, command: Sequence[str] | None = None,
               timeout_s: float = CHART_TIMEOUT_S) -> tuple[bytes | None, list[str]]:
    """The chart's PNG, drawn by COMMAND (``python -m alerts.chart``) in a child process,
    and the notes on what was left out; the PNG is None, and a note says why, when the child
    fails, takes longer than ``timeout_s`` or prints anything but a PNG of at most MAX_PNG_BYTES."""
    _, notes = plan(data)
    request = {"title": title, "since": since, "until": until, "cycle_s": cycle_s,
               "data": {p: {n: [[t, v] for t, v in points] for n, points in series.items()}
                        for p, series in data.items()}}
    args = list(COMMAND if command is None else command)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryFile() as stdin:   # a file: no pipe to keep fed while the child reads
        stdin.write(json.dumps(request, allow_nan=False).encode("utf-8"))
        stdin.seek(0)
        try:
            done = run_command(args, timeout_s, env=env, max_output=MAX_PNG_BYTES, stdin=stdin)
        except (CommandError, ValueError) as err:
            return None, [*notes, f"no chart this time: {err}"]
    if done.returncode != 0 or not done.stdout.startswith(PNG_MAGIC):
        last = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        why = f"exit status {done.returncode}" if done.returncode else "its output is not a PNG"
        return None, [*notes, f"no chart this time: the chart process failed ({why})"
                              + (f": {neutralise(last[0])[:200]}" if last[0] else "")]
    return done.stdout, notes
