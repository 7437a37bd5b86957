"""The daily recap chart: temperatures, ping round-trip and loss, failed logins over the day (PNG)."""
from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import matplotlib

matplotlib.use("Agg")  # no display on a server; must precede pyplot
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from foundation.untrusted import for_chart

Series = Sequence[tuple[float, float]]
MAX_LINES = 6   # per panel: more lines than this are unreadable; the busiest are kept


def metric_of(series: str) -> str:
    """The metric part of a stored series name ("ping.rtt_avg_ms[1.1.1.1]" -> "ping.rtt_avg_ms")."""
    return series.split("[", 1)[0]


def key_of(series: str) -> str:
    """The key part of a stored series name, "" for a global series."""
    return series.split("[", 1)[1].rstrip("]") if "[" in series else ""


@dataclass(frozen=True)
class Panel:
    """One chart panel: which series it shows (by metric name) and how."""

    title: str
    unit: str
    wants: Callable[[str], bool]
    step: bool = False   # counts per cycle are drawn as steps
    log: bool = False    # a log scale when the lines differ a hundredfold (LAN vs loopback)


PANELS: tuple[Panel, ...] = (
    Panel("Temperatures", "°C", lambda m: "temp" in m),
    Panel("Ping round-trip", "ms", lambda m: m.startswith("ping.") and "rtt" in m, log=True),
    Panel("Ping loss", "%", lambda m: m.startswith("ping.") and "loss" in m, step=True),
    Panel("Failed logins", "per cycle", lambda m: m.startswith("auth") and "failed_login" in m,
          step=True),
)


def panel_series(panel: Panel, names: Sequence[str]) -> list[str]:
    """The stored series names a panel shows."""
    return [n for n in names if panel.wants(metric_of(n))]


def render_png(data: Mapping[str, Mapping[str, Series]], title: str, since: float, until: float,
               dpi: int = 100) -> tuple[bytes, list[str]]:
    """A PNG of the panels (``data``: panel title -> series name -> points) and notes on gaps."""
    notes = []
    shown = [p for p in PANELS if any(data.get(p.title, {}).values())]
    for panel in PANELS:
        if panel not in shown:
            notes.append(f"{panel.title}: no data today (left out of the chart)")
    rows = max(1, len(shown))
    fig, axes = plt.subplots(rows, 1, figsize=(10, 2.3 * rows + 0.8), sharex=True, squeeze=False)
    try:
        fig.suptitle(title, fontsize=12, fontweight="bold")
        start, end = datetime.fromtimestamp(since), datetime.fromtimestamp(until)
        for ax, panel in zip(axes[:, 0], shown, strict=False):
            series = {n: pts for n, pts in data[panel.title].items() if pts}
            busiest = sorted(series, key=lambda n: -len(series[n]))[:MAX_LINES]
            for name in sorted(busiest):
                xs = [datetime.fromtimestamp(t) for t, _ in series[name]]
                ys = [v for _, v in series[name]]
                label = for_chart(key_of(name) or metric_of(name))  # keys are untrusted names
                if panel.step:
                    ax.step(xs, ys, where="post", label=label, linewidth=1.3)
                else:
                    ax.plot(xs, ys, label=label, linewidth=1.3)
            if len(series) > len(busiest):
                notes.append(f"{panel.title}: {len(series) - len(busiest)} more series not drawn")
            ax.set_title(panel.title, fontsize=10, loc="left")
            ax.set_ylabel(panel.unit)
            ax.grid(True, alpha=0.3)
            ax.set_xlim(start, end)
            if panel.step:
                ax.set_ylim(bottom=0)
            positive = [v for n in busiest for _, v in series[n] if v > 0]
            if panel.log and positive and max(positive) > 100 * min(positive):
                ax.set_yscale("log")
            ax.legend(loc="upper left", fontsize=7, ncol=3, framealpha=0.7)
        if not shown:
            ax = axes[0, 0]
            ax.text(0.5, 0.5, "No chartable data in the last 24 hours", ha="center",
                    va="center", transform=ax.transAxes)
            ax.set_axis_off()
        else:
            formatter = mdates.DateFormatter("%H:%M")  # type: ignore[no-untyped-call]
            axes[-1, 0].xaxis.set_major_formatter(formatter)
            axes[-1, 0].set_xlabel(f"local time ({time.strftime('%Z')})")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue(), notes
