"""The daily recap chart: temperatures, ping round trip and loss, failed logins over the day (PNG).

This module is matplotlib's side: the agent runs it as a child process, ``python -m alerts.chart``
(alerts/chart_plan.py, which also decides the panels without matplotlib), so that matplotlib never
loads in the agent's own process.

Drawn for a phone: Discord shows an embedded image at most about 400 px wide, so the figure is
one narrow column of panels whose fonts and lines stay legible at half its 800 px width, at most
MAX_LINES lines a panel, and each panel's legend above its plot, never over the data. Names and
units come from foundation.series; the keys (sensors, ping targets) are untrusted and go through
foundation.untrusted.for_chart.
"""
from __future__ import annotations

import io
import json
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from datetime import datetime

import matplotlib

matplotlib.use("Agg")  # no display on a server
import matplotlib.dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from alerts.chart_plan import MAX_LINES as MAX_LINES  # re-exported: tests read it here
from alerts.chart_plan import Panel, Series, key_of, label_of, plan

WIDTH_IN = 4.0         # at DPI: 800 px, shown at about 400 px on a phone (half size)
DPI = 200
PANEL_IN = 1.4         # the plot area of one panel
TITLE_PT, HEAD_PT, TEXT_PT = 11.5, 10.5, 9.0
TITLE_WRAP = 40       # characters of the title a line at TITLE_PT
LINE_PT = 1.6
ROW_BUDGET, ROW_SLOT = 44, 6   # a legend in one row when its characters, plus each entry's line
                               # and gaps counted as ROW_SLOT characters, fit in the width
COLOURS = ("#1f77b4", "#d95f02", "#2ca02c")   # blue, orange, green: apart also for most
                                              # colour-blind readers


def _legend(names: Sequence[str]) -> tuple[list[str], int]:
    """The legend's labels and its columns (0: no legend, a lone series without a key)."""
    if len(names) == 1 and not key_of(names[0]):
        return [], 0
    labels = [label_of(n) for n in names]
    one_row = sum(len(t) for t in labels) + ROW_SLOT * len(labels) <= ROW_BUDGET
    return labels, len(labels) if one_row else 1


def _draw_panel(ax: Axes, panel: Panel, series: Mapping[str, Series], names: Sequence[str],
                cycle_s: float | None) -> None:
    labels, ncol = _legend(names)
    for name, colour in zip(names, COLOURS, strict=False):
        xs = mdates.date2num([datetime.fromtimestamp(t) for t, _ in series[name]])  # type: ignore[no-untyped-call]
        ys = [v for _, v in series[name]]
        if panel.step:
            ax.step(xs, ys, where="post", label=label_of(name), color=colour, linewidth=LINE_PT)
        else:
            ax.plot(xs, ys, label=label_of(name), color=colour, linewidth=LINE_PT)
    rows = -(-len(labels) // ncol) if ncol else 0
    if ncol:   # above the plot, under the heading: it never hides a line
        ax.legend(loc="lower left", bbox_to_anchor=(-0.02, 1.0), ncol=ncol, frameon=False,
                  fontsize=TEXT_PT, handlelength=1.4, columnspacing=1.0, borderaxespad=0.1,
                  labelspacing=0.25)
    ax.set_title(panel.heading(cycle_s), loc="left", fontsize=HEAD_PT, fontweight="bold",
                 pad=4 + rows * TEXT_PT * 1.45)
    ax.tick_params(labelsize=TEXT_PT, length=3)
    ax.grid(True, alpha=0.35, linewidth=0.6)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    positive = [v for n in names for _, v in series[n] if v > 0]
    if panel.step:   # whole numbers of logins and (mostly) of percent lost
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 5, 10], integer=True))
    if panel.log and positive and max(positive) > 100 * min(positive):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.1, not 10^-1
        ax.yaxis.set_minor_formatter(NullFormatter())


def _wrapped(title: str) -> str:
    """The title in lines that fit the width, broken after its first comma when too long."""
    if len(title) <= TITLE_WRAP:
        return title
    parts = title.split(", ", 1)
    return "\n".join(textwrap.fill(part, TITLE_WRAP) for part in parts)


def _height(names: Sequence[str]) -> float:
    """A panel's height in inches: its plot, its heading and its legend's rows."""
    labels, ncol = _legend(names)
    return PANEL_IN + 0.45 + (0.22 * -(-len(labels) // ncol) if ncol else 0.0)


def draw(data: Mapping[str, Mapping[str, Series]], title: str, since: float, until: float,
         cycle_s: float | None = None) -> tuple[Figure, list[str]]:
    """The figure of the panels that have data (``data``: panel title -> series name -> points)
    and notes on what was left out (alerts.chart_plan.plan)."""
    shown, notes = plan(data)
    heading = _wrapped(title)
    top = 0.65 + 0.25 * heading.count("\n")
    heights = [_height(names) for _, names in shown]
    fig = Figure(figsize=(WIDTH_IN, top + sum(heights) + 0.3 if shown else top + 0.9), dpi=DPI,
                 layout="constrained")
    fig.suptitle(heading, x=0.02, ha="left", fontsize=TITLE_PT, fontweight="bold")
    if not shown:
        fig.text(0.5, 0.4, "No chartable data in this recap", ha="center", va="center",
                 fontsize=HEAD_PT)
        return fig, notes
    axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, (panel, names) in zip(axes, shown, strict=True):
        _draw_panel(ax, panel, data[panel.title], names, cycle_s)
    last = axes[-1]
    last.set_xlim(datetime.fromtimestamp(since), datetime.fromtimestamp(until))
    locator = mdates.AutoDateLocator(minticks=3, maxticks=6)  # type: ignore[no-untyped-call]
    last.xaxis.set_major_locator(locator)
    last.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
    last.set_xlabel(f"local time ({time.strftime('%Z', time.localtime(until))})",
                    fontsize=TEXT_PT)
    return fig, notes


def render_png(data: Mapping[str, Mapping[str, Series]], title: str, since: float, until: float,
               cycle_s: float | None = None) -> tuple[bytes, list[str]]:
    """A PNG of the panels that have data and notes on what was left out (see ``draw``)."""
    fig, notes = draw(data, title, since, until, cycle_s)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue(), notes


def main() -> int:
    """``python -m alerts.chart``: the request as JSON on standard input (title, since, until,
    cycle_s and data: panel title -> series name -> [time, value] points), the PNG on standard
    output (alerts.chart_plan.render_png runs this, bounded)."""
    request = json.loads(sys.stdin.buffer.read())
    data = {str(panel): {str(name): [(float(t), float(v)) for t, v in points]
                         for name, points in series.items()}
            for panel, series in request["data"].items()}
    cycle_s = request.get("cycle_s")
    png, _ = render_png(data, str(request["title"]), float(request["since"]),
                        float(request["until"]), None if cycle_s is None else float(cycle_s))
    sys.stdout.buffer.write(png)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
