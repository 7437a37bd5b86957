"""`python monitor_agent.py watch`: a live terminal view of what the agent sees, read from the store.

Collectors up or down (the last cycle), the open findings in their kinds' words, and the LLM
runtimes' connections, redrawn every ``REFRESH_S`` from one read transaction of the store (WAL:
the agent's writes are never blocked) until `q`, Ctrl-C, SIGTERM or a hang-up. Without a terminal
on standard input and output it prints one frame and exits. Every untrusted string goes through
``for_terminal`` here, and agent/watch_frame.py shows it as plain rich Text, never as markup.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import select
import signal
import sys
import termios
import time
import tty
from collections.abc import Iterator, Mapping
from datetime import datetime
from types import FrameType
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from agent import EVENT
from agent.watch_frame import REFRESH_S, Seen, Shown, frame
from alerts.silences import silenced_by
from analysis.detectors import told
from foundation.model import Severity
from foundation.redact import redact
from foundation.settings import Settings
from foundation.store.connections import connection_rows
from foundation.store.data_storage import FindingRow, Store, StoreError
from foundation.store.files import store_present
from foundation.untrusted import for_terminal


def headline(row: FindingRow) -> str:
    """The finding in its kind's words (analysis.detectors.told); its summary when the row lacks
    the facts the kind is told with (an older row)."""
    facts, labels = row.details.get("facts") or {}, row.details.get("labels") or {}
    said = told(row.kind, facts, labels)
    if said["headline"] in (row.kind, said["name"]) and row.summary:
        return f"{said['name']}: {row.summary}"
    return said["headline"]


def _collectors(report: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    for name, status in report["collectors"].items():
        state = ("up" if status.get("available", True) else "n/a") if status["ok"] else "down"
        out.append((for_terminal(name), state,
                    for_terminal(status.get("error") or status.get("note") or "")))
    return out


def _connections(report: Mapping[str, Any], seen: Seen) -> None:
    if "llm_runtimes" not in report["collectors"]:
        seen.llm_note = "the llm_runtimes collector is not enabled (COLLECTORS)"
        return
    observed = report.get("observations", {}).get("llm_runtimes") or {}
    runtimes = observed.get("runtimes") or []
    for (runtime, remote, port, direction), (klass, org, rdns) in connection_rows(runtimes).items():
        seen.connections.append(tuple(for_terminal(v) for v in (
            runtime, remote, port or "", klass, org, direction, rdns)))
    notes = [f"{r.get('runtime')} (pid {r.get('pid')}): connections not read "
             f"({r['connections_error']})" for r in runtimes if r.get("connections_error")]
    cut = sum(int(r.get("connections_total") or 0) - len(r.get("connections") or ())
              for r in runtimes)
    if cut > 0:
        notes.insert(0, f"{cut} more connection(s) not kept by the cycle")
    if not runtimes:
        notes.insert(0, "no LLM runtime running")
    elif not seen.connections:
        notes.insert(0, f"{len(runtimes)} runtime(s), no connection")
    seen.llm_note = for_terminal("; ".join(notes))


def read(store: Store, now: float) -> Seen:
    """One consistent reading of the store (one read transaction), ready to draw."""
    with store.snapshot():
        last = store.last_cycle()
        # an event cycle ran the log collectors alone: the rest is the last scheduled cycle's
        full = store.last_cycle(scheduled=True) if last and last.get("trigger") == EVENT else last
        rows = store.findings()
        silences = store.silences(now)
    seen = Seen(at=now)
    if last is not None:
        seen.host = for_terminal(last["host"])
        with contextlib.suppress(ValueError, TypeError):
            seen.started = datetime.fromisoformat(last["started_at"]).timestamp()
        verdict = last.get("verdict") or {}
        seen.verdict = for_terminal(f"{verdict.get('severity', '?')} by {verdict.get('by', '?')}")
        seen.collectors = _collectors({"collectors": {**(full or {}).get("collectors", {}),
                                                      **last["collectors"]}})
        _connections(full or last, seen)
    for row in rows.values():
        try:
            severity = Severity.parse(row.severity)
        except ValueError:
            severity = Severity.HIGH
        seen.findings.append(Shown(severity.value, for_terminal(headline(row)), row.first_seen,
                                   for_terminal(row.kind), for_terminal(row.fingerprint),
                                   silenced_by(row.fingerprint, row.kind, severity, silences)))
    seen.findings.sort(key=lambda f: (-Severity.parse(f.severity).rank, f.first_seen))
    return seen


class _LogCatcher(logging.Handler):
    """Keeps the agent's log lines while the view owns the screen (each distinct one once), to
    show the latest in the footer and to hand them to the real handlers afterwards."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: dict[str, logging.LogRecord] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.setdefault(record.getMessage(), record)
        except (TypeError, ValueError):   # arguments that do not fit the message, as logging does
            self.handleError(record)

    def lines(self) -> list[str]:
        return [for_terminal(redact(f"{r.levelname}: {m}")) for m, r in self.records.items()]


@contextlib.contextmanager
def _catching_logs() -> Iterator[_LogCatcher]:
    root = logging.getLogger()
    saved, catcher = root.handlers[:], _LogCatcher()
    root.handlers[:] = [catcher]
    try:
        yield catcher
    finally:
        root.handlers[:] = saved
        for record in catcher.records.values():
            root.handle(record)


class _Keyboard:
    """Standard input in cbreak mode (keys at once, no echo; Ctrl-C stays a signal) and a wake-up
    pipe that signals write to, so one select() waits for a key, a signal or the next refresh."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        self.quit = self.resized = False

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGWINCH:
            self.resized = True
        else:
            self.quit = True

    def __enter__(self) -> _Keyboard:
        self.saved = termios.tcgetattr(self.fd)
        self.pipe = os.pipe()
        for end in self.pipe:
            os.set_blocking(end, False)
        self.old_wakeup = signal.set_wakeup_fd(self.pipe[1])
        self.handlers = {s: signal.signal(s, self._on_signal)
                         for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGWINCH)}
        tty.setcbreak(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, *_exc: object) -> None:
        with contextlib.suppress(termios.error):  # the terminal may be gone (a hang-up)
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
        signal.set_wakeup_fd(self.old_wakeup)
        for signum, handler in self.handlers.items():
            signal.signal(signum, handler)
        for end in self.pipe:
            os.close(end)

    def wait(self, timeout_s: float) -> None:
        """Until a key, a signal or ``timeout_s``; sets ``quit`` on q, Ctrl-C, SIGTERM or EOF."""
        ready, _, _ = select.select([self.fd, self.pipe[0]], [], [], max(0.0, timeout_s))
        if self.pipe[0] in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(self.pipe[0], 512)
        if self.fd in ready:
            try:
                keys = os.read(self.fd, 64)
            except OSError:      # the terminal went away
                keys = b""
            if not keys or b"q" in keys.lower():
                self.quit = True


def _open(settings: Settings) -> Store | None:
    """The store, opened for reading (no quick_check: a refresh must stay cheap); None while
    there is none yet."""
    if not store_present(settings.db_path):
        return None
    return Store.open(settings.db_path, check=False)


def _refresh(store: Store | None, settings: Settings, last: Seen | None) -> Seen:
    now = time.time()
    if store is None:
        return Seen(at=now, problem=f"No store at {settings.db_path} yet: start the agent, or "
                                    "run `python monitor_agent.py --once`")
    try:
        return read(store, now)
    except StoreError as err:   # shown, and tried again at the next refresh
        seen = last or Seen(at=now)
        seen.at, seen.problem = now, for_terminal(err)
        return seen


def command(args: argparse.Namespace, settings: Settings) -> int:
    """The live view until q or Ctrl-C (0); one frame without a terminal; 1 when the store
    cannot be opened."""
    console = Console(highlight=False)
    interval = float(settings.MONITOR_INTERVAL_SECONDS)
    try:
        store = _open(settings)
    except StoreError as err:
        console.print(Text(for_terminal(err), "red"))
        return 1
    try:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            seen = _refresh(store, settings, None)
            console.print(Text(seen.problem, "red") if store is None
                          else frame(seen, console.width, None, interval))
            return 1 if seen.problem else 0
        return _live(console, store, settings, interval)
    finally:
        if store is not None:
            store.close()


def _fit_console(console: Console) -> None:
    """The terminal's size now: after a resize, and whatever COLUMNS and LINES said at start."""
    with contextlib.suppress(OSError):
        size = os.get_terminal_size(sys.stdout.fileno())
        console.size = (size.columns, size.lines)


def _live(console: Console, store: Store | None, settings: Settings, interval: float) -> int:
    state: dict[str, Any] = {}

    def render() -> RenderableType:
        seen = state.get("seen") or Seen(at=time.time())
        return frame(seen, console.width, console.height, interval, state.get("logs"))

    try:
        with _catching_logs() as logs, _Keyboard() as keys, \
                Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False,
                     redirect_stderr=False, get_renderable=render) as live:
            due = 0.0
            while not keys.quit:
                if time.monotonic() >= due:
                    if store is None:
                        with contextlib.suppress(StoreError):   # still absent, or not ready yet
                            store = state["store"] = _open(settings)
                    state["seen"] = _refresh(store, settings, state.get("seen"))
                    state["logs"] = logs.lines()
                    due = time.monotonic() + REFRESH_S
                    _fit_console(console)
                    live.refresh()
                elif keys.resized:
                    keys.resized = False
                    _fit_console(console)
                    live.refresh()
                keys.wait(due - time.monotonic())
    finally:
        opened = state.get("store")
        if opened is not None:     # opened during the view: the caller closes only its own
            opened.close()
    return 0
