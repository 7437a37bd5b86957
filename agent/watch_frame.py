"""The watch's frame (agent/watch.py): what one refresh read from the store, drawn for a terminal of
a given size. Every line is one line: cells are cut with an ellipsis, never wrapped; sections that
do not fit say how many rows they leave out; narrow terminals lose the least useful columns first.
The strings it is given are already neutralised (``for_terminal``); it makes only plain rich Text
of them, never markup.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from foundation.durations import duration_text

REFRESH_S = 2.0
WIDE = 80                 # every column fits from here; narrower terminals lose the least useful
SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan", "none": "dim"}
STATE_STYLE = {"up": "green", "n/a": "yellow", "down": "bold red"}


@dataclass(frozen=True)
class Shown:
    """One finding as the view shows it: severity, the headline, since when, its ids."""

    severity: str
    headline: str
    first_seen: float
    kind: str
    fingerprint: str
    silenced: str | None


@dataclass
class Seen:
    """What one refresh read from the store, already neutralised for the terminal."""

    at: float
    host: str = ""
    started: float | None = None
    verdict: str = ""
    collectors: list[tuple[str, str, str]] = field(default_factory=list)  # name, state, note
    findings: list[Shown] = field(default_factory=list)
    connections: list[tuple[str, ...]] = field(default_factory=list)
    llm_note: str = ""     # why the connections are missing or incomplete
    problem: str = ""      # the store could not be read (the rest is the last good reading)


def _line(*parts: str | Text | tuple[str, str], style: str = "") -> Text:
    """One line of the frame: cut with an ellipsis, never wrapped onto a second."""
    return Text.assemble(*parts, style=style, no_wrap=True, overflow="ellipsis")


def _table(*columns: tuple[str, dict[str, Any]], header: bool = False) -> Table:
    table = Table(box=None, show_header=header, expand=True, padding=(0, 1), pad_edge=False,
                  header_style="dim")
    for name, options in columns:
        table.add_column(name, no_wrap=True, overflow="ellipsis", **options)
    return table


@dataclass(frozen=True)
class Fit:
    """How many rows of each section a frame shows (a title says how many it leaves out)."""

    every_collector: bool     # one line per collector, or those that are up on the title line
    collectors: int
    findings: int
    connections: int


def fit(seen: Seen, height: int | None) -> Fit:
    """What fits ``height`` lines (None: everything). Findings come first, then connections;
    collectors that are up shrink to their names on one line when room is short."""
    n_f, n_c = len(seen.findings), len(seen.connections)
    if height is None:
        return Fit(True, len(seen.collectors), n_f, n_c)
    # header, footer, three section titles, the connections' header; a line for each note
    fixed = 5 + bool(n_c) + bool(seen.llm_note) + bool(seen.problem)
    room = max(0, height - fixed)
    every = room - len(seen.collectors) >= min(n_f, 4) + min(n_c, 3)
    down = sum(c[1] != "up" for c in seen.collectors)
    n_coll = len(seen.collectors) if every else min(down, room // 4)
    rest = max(0, room - n_coll)
    if n_f + n_c <= rest:
        return Fit(every, n_coll, n_f, n_c)
    conns = min(n_c, max(int(rest >= 2), rest // 3))   # findings first
    finds = min(n_f, rest - conns)
    return Fit(every, n_coll, finds, min(n_c, rest - finds))


def _count(total: int, shown: int) -> str:
    return f" {total}" + (f" ({shown} shown)" if shown < total else "")


def _age(seen: Seen, interval_s: float, wide: bool) -> Text:
    if seen.started is None:
        return Text("")
    clock = time.strftime("%H:%M:%S", time.localtime(seen.started))
    ago = seen.at - seen.started
    stale = ago > 2 * interval_s + 60
    return Text(("last cycle " if wide else "") + f"{clock}, {duration_text(ago)} ago"
                + (": is the agent running?" if stale else ""), "yellow" if stale else "")


def _collector_part(seen: Seen, shown: Fit, parts: list[RenderableType]) -> None:
    ups = [c for c in seen.collectors if c[1] == "up"]
    rows = seen.collectors if shown.every_collector else [c for c in seen.collectors
                                                          if c[1] != "up"]
    title = _line(("Collectors", "bold"), f" {len(ups)} up of {len(seen.collectors)}")
    if len(rows) > shown.collectors:
        title.append(f" ({len(rows) - shown.collectors} not shown)")
    if not seen.collectors:
        title.append(": no cycle yet (start the agent, or run `monitor_agent.py --once`)")
    if not shown.every_collector and ups:
        title.append(": " + " ".join(c[0] for c in ups), "green")
    parts.append(title)
    table = _table(("state", {"width": 4}), ("collector", {"min_width": 8}), ("note", {"ratio": 1}))
    for name, state, note in rows[:shown.collectors]:
        table.add_row(Text(state, STATE_STYLE[state]), Text(name), Text(note, "dim"))
    if table.row_count:
        parts.append(table)


def _finding_part(seen: Seen, shown: Fit, width: int, parts: list[RenderableType]) -> None:
    parts.append(_line(("Open findings", "bold"), _count(len(seen.findings), shown.findings)
                       + ("" if seen.findings else ": none")))
    since, ids = width >= 70, width >= 56
    table = _table(("severity", {"width": 6}), ("headline", {"ratio": 1, "min_width": 10}),
                   *([("since", {"justify": "right"})] if since else []),
                   *([("ids", {"max_width": 36 if width >= 100 else 20})] if ids else []))
    for f in seen.findings[:shown.findings]:
        cells = [Text(f.severity, SEVERITY_STYLE[f.severity]), Text(f.headline)]
        if since:
            cells.append(Text(duration_text(seen.at - f.first_seen), "dim"))
        if ids:
            name = f"{f.kind} {f.fingerprint[:8]}" if width >= 100 else f.fingerprint[:8]
            cells.append(Text(name + (f" {f.silenced}" if f.silenced else ""), "dim"))
        table.add_row(*cells)
    if table.row_count:
        parts.append(table)


def _connection_part(seen: Seen, shown: Fit, width: int, parts: list[RenderableType]) -> None:
    parts.append(_line(("LLM runtime connections", "bold"),
                       _count(len(seen.connections), shown.connections)
                       + ("" if seen.connections else ": none")))
    klass, org, name = width >= 60, width >= 72, width >= 110
    columns: list[tuple[str, dict[str, Any]]] = [
        ("runtime", {"ratio": 1, "min_width": 8}),
        ("remote", {"max_width": 39 if name else max(15, width // 3)}),
        ("port", {"justify": "right"})]
    columns += [("class", {})] if klass else []
    columns += [("organisation", {"max_width": 24})] if org else []
    columns += [("direction", {})]
    columns += [("reverse name", {"max_width": 40})] if name else []
    table = _table(*columns, header=True)
    for runtime, remote, port, cls, organisation, direction, rdns in \
            seen.connections[:shown.connections]:
        cells = [Text(runtime), Text(remote), Text(port)]
        cells += [Text(cls, "yellow" if cls == "external" else "")] if klass else []
        cells += [Text(organisation)] if org else []
        cells.append(Text(direction if width >= WIDE else direction[:3]))
        cells += [Text(rdns, "dim")] if name else []
        table.add_row(*cells)
    if table.row_count:
        parts.append(table)
    if seen.llm_note:
        parts.append(_line(seen.llm_note, style="dim"))


def frame(seen: Seen, width: int, height: int | None, interval_s: float,
          logs: list[str] | None = None) -> RenderableType:
    """The whole view for a terminal of ``width`` x ``height`` (None: as tall as it needs)."""
    top = Table.grid(expand=True, padding=(0, 1))
    top.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    top.add_column(no_wrap=True, overflow="ellipsis", justify="right")
    top.add_row(Text.assemble(("homelab-monitor", "bold"), " ", seen.host,
                              *((" · verdict ", seen.verdict) if seen.verdict else ())),
                _age(seen, interval_s, width >= 60))
    parts: list[RenderableType] = [top]
    if seen.problem:
        parts.append(_line(seen.problem, style="bold red"))
    shown = fit(seen, height)
    _collector_part(seen, shown, parts)
    _finding_part(seen, shown, width, parts)
    _connection_part(seen, shown, width, parts)
    footer = _line(f"{time.strftime('%H:%M:%S', time.localtime(seen.at))} · refreshed every "
                   f"{REFRESH_S:.0f} s · q quits", style="dim")
    if logs:
        footer.append(" · " + logs[-1], "yellow")
    parts.append(footer)
    return Group(*parts)
