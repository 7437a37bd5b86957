"""`python monitor_agent.py status [--json]`: the last cycle, open findings, baselines, the outbox,
the silences in force and the dependencies' state, as tables or as one JSON document."""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from agent import __version__
from alerts.silences import silenced_by
from foundation.durations import duration_text, local_time
from foundation.model import Severity
from foundation.settings import Settings
from foundation.store.data_storage import DependencyRow, FindingRow, SilenceRow, Store, StoreError
from foundation.store.files import store_present
from foundation.untrusted import for_terminal

BASELINES_SHOWN = 40


def _cell(value: object) -> Text:
    """Untrusted text as a rich Text: neutralised, and never read as rich markup or emoji codes."""
    return Text(for_terminal(value))


def _when(ts: float | None, now: float) -> str:
    if not ts:
        return "-"
    return f"{local_time(ts)} ({duration_text(now - ts)} ago)"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _silence(row: FindingRow, silences: list[SilenceRow]) -> str | None:
    try:
        severity = Severity.parse(row.severity)
    except ValueError:
        severity = Severity.HIGH
    return silenced_by(row.fingerprint, row.kind, severity, silences)


def _until(row: SilenceRow, now: float) -> str:
    if row.until is None:
        return "until it resolves"
    return f"{local_time(row.until)} (in {duration_text(row.until - now)})"


def silences_table(silences: list[SilenceRow], findings: dict[str, FindingRow],
                   now: float) -> Table | str:
    """The acks, snoozes and maintenance window in force."""
    if not silences:
        return "No ack, snooze or maintenance in force."
    table = Table("silence", "of", "until", "set", title="Silences (nothing is alerted for these)")
    for row in silences:
        target = row.target
        if row.type == "ack":
            found = findings.get(row.target)
            target = f"{row.target} ({found.kind if found else 'no longer open'}, at {row.severity})"
        table.add_row(row.type, _cell(target or "everything"), _until(row, now),
                      _when(row.created_at, now))
    return table


def dependencies_table(rows: dict[str, DependencyRow], now: float) -> Table | str:
    """Ollama, Discord, Home Assistant, Docker: up, or down since when and why."""
    if not rows:
        return "No dependency used yet."
    table = Table("dependency", "state", "since", "last checked", "error", title="Dependencies")
    for row in rows.values():
        state = (Text("up", "green") if row.up
                 else Text(f"down for {duration_text(now - row.since)}", "red"))
        table.add_row(row.name, state, _when(row.since, now), _when(row.checked_at, now),
                      _cell(row.error or ""))
    return table


def tables(store: Store, now: float | None = None) -> list[Any]:
    """The renderables of the status screen, in order."""
    now = time.time() if now is None else now
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
    silences = store.silences(now)
    open_rows = store.findings()
    findings = Table(title="Open findings")
    # the fingerprint whole, whatever the width: it is what `ack` takes
    findings.add_column("fingerprint", no_wrap=True, min_width=16)
    for header in ("severity", "floor", "kind", "summary", "since", "last alert", "silenced"):
        findings.add_column(header)
    for row in sorted(open_rows.values(), key=lambda r: (r.severity != "high", r.kind)):
        findings.add_row(row.fingerprint, _cell(row.severity), _cell(row.floor), _cell(row.kind),
                         _cell(row.summary), _when(row.first_seen, now),
                         f"{row.alerted_severity} {_when(row.alerted_at, now)}" if row.alerted_at
                         else "-", _silence(row, silences) or "-")
    out.append(findings if findings.row_count else "No open findings.")
    out.append(silences_table(silences, open_rows, now))
    out.append(dependencies_table(store.dependencies(), now))
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


def document(store: Store, now: float | None = None) -> dict[str, Any]:
    """The status as one JSON-ready document (times in UTC, ISO 8601)."""
    now = time.time() if now is None else now
    last = store.last_cycle()
    if last is not None:
        last = {k: v for k, v in last.items() if k != "observations"}
        last["findings"] = len(last.get("findings", []))
    silences = store.silences(now)
    open_rows = store.findings()
    counts = store.outbox_counts()

    def silence(row: SilenceRow) -> dict[str, Any]:
        return {"id": row.id, "type": row.type, "target": row.target or None,
                "severity": row.severity, "since": _iso(row.created_at), "until": _iso(row.until)}

    return {
        "version": __version__,
        "at": _iso(now),
        "last_cycle": last,
        "open_findings": [
            {"fingerprint": r.fingerprint, "source": r.source, "kind": r.kind, "key": r.key,
             "severity": r.severity, "floor": r.floor, "summary": r.summary,
             "first_seen": _iso(r.first_seen), "last_seen": _iso(r.last_seen),
             "alerted_severity": r.alerted_severity, "alerted_at": _iso(r.alerted_at),
             "silenced_by": _silence(r, silences)}
            for r in sorted(open_rows.values(), key=lambda r: (r.severity != "high", r.kind))],
        "outbox": {status: counts.get(status, 0) for status in ("queued", "sent", "failed")},
        "silences": {
            "maintenance": next((silence(s) for s in silences if s.type == "maintenance"), None),
            "acks": [silence(s) for s in silences if s.type == "ack"],
            "snoozes": [silence(s) for s in silences if s.type == "snooze"]},
        "dependencies": {
            name: {"up": row.up, "since": _iso(row.since),
                   "down_for_s": None if row.up else round(now - row.since),
                   "error": row.error, "checked_at": _iso(row.checked_at)}
            for name, row in store.dependencies().items()},
    }


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Print the status screen (or, with --json, one JSON document); 1 when the store cannot be read."""
    as_json = bool(getattr(args, "json", False))
    console = Console()
    db = settings.db_path

    def fail(what: str, fix: str = "") -> int:
        if as_json:
            sys.stdout.write(json.dumps({"version": __version__, "error": what,
                                         "fix": fix or None}) + "\n")
        else:
            console.print(f"[red]{escape(what)}[/red]" + (f"\nFix: {escape(fix)}" if fix else ""))
        return 1

    if not store_present(db):
        return fail(f"No store at {db} yet", "run `python monitor_agent.py --once`")
    try:
        store = Store.open(db)
        try:
            found: Any = document(store) if as_json else tables(store)
        finally:
            store.close()
    except StoreError as err:  # damaged, empty, missing where a store was, or unreadable
        what, _, fix = str(err).partition(". Fix: ")
        return fail(what, fix)
    if as_json:
        sys.stdout.write(json.dumps(found, default=str) + "\n")
        return 0
    for item in found:
        console.print(item)
    return 0
