"""`python monitor_agent.py status`: the last cycle, open findings, baselines and the outbox, as tables."""
from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from foundation.settings import Settings
from foundation.store.data_storage import Store, StoreError
from foundation.store.files import store_present
from foundation.untrusted import for_terminal

BASELINES_SHOWN = 40


def _cell(value: object) -> Text:
    """Untrusted text as a rich Text: neutralised, and never read as rich markup or emoji codes."""
    return Text(for_terminal(value))


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    ago = time.time() - ts
    unit = f"{ago / 60:.0f} min" if ago < 7200 else f"{ago / 3600:.1f} h"
    return f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(ts))} ({unit} ago)"


def tables(store: Store) -> list[Any]:
    """The renderables of the status screen, in order."""
    out: list[Any] = []
    last = store.last_cycle()
    if last is None:
        out.append("No cycle has run yet: run `python monitor_agent.py --once`.")
    else:
        verdict = last["verdict"]
        out.append(Text.assemble(
            ("Last cycle", "bold"),
            f" {for_terminal(last['started_at'])} on {for_terminal(last['host'])}, "
            f"{last['duration_s']:.2f} s; verdict ", (for_terminal(verdict["severity"]), "bold"),
            f" by {for_terminal(verdict['by'])}: {for_terminal(verdict['reason'])}"))
        collectors = Table("collector", "state", "time", "detail", title="Collectors")
        for name, status in last["collectors"].items():
            state = ("[green]ok[/green]" if status["ok"] and status.get("available", True)
                     else "[yellow]n/a[/yellow]" if status["ok"] else "[red]error[/red]")
            collectors.add_row(_cell(name), state, f"{status['duration_s']:.3f} s",
                               _cell(status["error"] or status.get("note") or ""))
        out.append(collectors)
    findings = Table("severity", "floor", "kind", "summary", "since", "last alert",
                     title="Open findings")
    for row in sorted(store.findings().values(), key=lambda r: (r.severity != "high", r.kind)):
        findings.add_row(_cell(row.severity), _cell(row.floor), _cell(row.kind),
                         _cell(row.summary), _when(row.first_seen),
                         f"{row.alerted_severity} {_when(row.alerted_at)}" if row.alerted_at
                         else "-")
    out.append(findings if findings.row_count else "No open findings.")
    baselines = Table("series", "n", "centre", "spread", "min", "max", title="Baselines")
    names = store.series_names()
    for name in names[:BASELINES_SHOWN]:
        b = store.baseline(name)
        if b is not None:
            baselines.add_row(_cell(name), str(b.n), f"{b.centre:.2f}", f"{b.spread:.2f}",
                              f"{b.minimum:.2f}", f"{b.maximum:.2f}")
    if len(names) > BASELINES_SHOWN:
        baselines.caption = f"and {len(names) - BASELINES_SHOWN} more series"
    out.append(baselines)
    counts = store.outbox_counts()
    out.append(f"[bold]Outbox[/bold]: {counts.get('queued', 0)} queued, "
               f"{counts.get('sent', 0)} sent, {counts.get('failed', 0)} failed")
    return out


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Print the status screen; 1 when the store cannot be read."""
    console = Console()
    db = settings.db_path
    if not store_present(db):
        console.print(f"No store at {db} yet: run `python monitor_agent.py --once`.")
        return 1
    try:
        store = Store.open(db)
        try:
            items = tables(store)
        finally:
            store.close()
    except StoreError as err:  # damaged, empty, missing where a store was, or unreadable
        what, _, fix = str(err).partition(". Fix: ")
        console.print(f"[red]{escape(what)}[/red]" + (f"\nFix: {escape(fix)}" if fix else ""))
        return 1
    for item in items:
        console.print(item)
    return 0
