"""`ack FINGERPRINT [--for D]`, `snooze KIND [--for D]`, `maintenance D|off`: the operator's silences.

Each is a row in the store (foundation/store/operator_state.py) that the running agent reads at
its next cycle: nothing is alerted, on any channel, for an acknowledged finding (unless it gets
worse than it was acknowledged at), a snoozed kind, or during a maintenance window; everything is
still recorded and recapped, and the cycle report says "suppressed" with the reason.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from analysis.detectors import all_kinds
from foundation.durations import DurationError, duration_text, local_time, parse_duration
from foundation.errors import did_you_mean
from foundation.settings import Settings
from foundation.store.data_storage import FindingRow, SilenceRow, Store, StoreError, UnknownTarget
from foundation.store.files import store_present
from foundation.untrusted import for_terminal

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SNOOZE_DEFAULT = "4h"     # a snooze without --for
MIN_PREFIX = 4            # a fingerprint may be given by a unique prefix this long or longer
OFF = "off"


class UsageError(Exception):
    """The operator named something that does not exist, or a bad duration (exit 2)."""


def until_text(row: SilenceRow, now: float) -> str:
    """When a silence ends, for people."""
    if row.until is None:
        return "until the finding resolves"
    return f"until {local_time(row.until)} ({duration_text(row.until - now)} from now)"


def _seconds(text: str | None, default: str | None) -> int | None:
    spec = text if text is not None else default
    if spec is None:
        return None
    try:
        return parse_duration(spec)
    except DurationError as err:
        raise UsageError(str(err)) from err


def _finding_line(row: FindingRow) -> str:
    return f"  {row.fingerprint}  {row.severity:6} {row.kind}: {for_terminal(row.summary)[:100]}"


def resolve_fingerprint(given: str, open_rows: dict[str, FindingRow]) -> str:
    """The open finding's fingerprint that ``given`` names (whole or a unique prefix)."""
    wanted = given.strip().lower()
    if wanted in open_rows:
        return wanted
    matches = [fp for fp in open_rows if len(wanted) >= MIN_PREFIX and fp.startswith(wanted)]
    if len(matches) == 1:
        return matches[0]
    if not open_rows:
        raise UsageError(f"no open finding has the fingerprint {given!r}: there are no open "
                         "findings")
    why = (f"{given!r} matches {len(matches)} open findings: give more of it" if matches
           else f"no open finding has the fingerprint {given!r}")
    listed = "\n".join(_finding_line(r) for r in sorted(open_rows.values(),
                                                          key=lambda r: r.kind))
    raise UsageError(f"{why}. The open findings (see `status`):\n{listed}")


def check_kind(kind: str, kinds: Sequence[str]) -> None:
    """UsageError naming the known kinds when ``kind`` is not one."""
    if kind not in kinds:
        raise UsageError(f"{kind!r} is not a finding kind{did_you_mean(kind, kinds)}. The kinds: "
                         + ", ".join(sorted(kinds)))


def ack(store: Store, args: argparse.Namespace, now: float) -> str:
    """Acknowledge an open finding (or end its ack with --off)."""
    fingerprint = resolve_fingerprint(args.fingerprint, store.findings(open_only=True))
    if args.off:
        ended = store.end_silences("ack", now, fingerprint)
        return f"ack of {fingerprint} ended" if ended else f"{fingerprint} was not acknowledged"
    seconds = _seconds(args.duration, None)
    row = store.acknowledge(fingerprint, now, None if seconds is None else now + seconds)
    return (f"acknowledged {fingerprint} at {row.severity} {until_text(row, now)}: it is not "
            f"alerted again unless it gets worse than {row.severity}")


def snooze(store: Store, args: argparse.Namespace, now: float) -> str:
    """Snooze a finding kind (or end its snooze with --off)."""
    check_kind(args.kind, [k.kind for k in all_kinds()])
    if args.off:
        ended = store.end_silences("snooze", now, args.kind)
        return f"snooze of {args.kind} ended" if ended else f"{args.kind} was not snoozed"
    seconds = _seconds(args.duration, SNOOZE_DEFAULT) or 0
    row = store.add_silence("snooze", args.kind, now, now + seconds)
    return (f"snoozed {args.kind} {until_text(row, now)}: its findings are recorded and "
            "recapped, not alerted")


def maintenance(store: Store, args: argparse.Namespace, now: float) -> str:
    """Start a maintenance window of a duration, or end the one in force (``off``)."""
    if args.duration.strip().lower() == OFF:
        ended = store.end_silences("maintenance", now)
        return "maintenance ended" if ended else "no maintenance window was in force"
    seconds = _seconds(args.duration, None) or 0
    row = store.add_silence("maintenance", "", now, now + seconds)
    return (f"maintenance {until_text(row, now)}: nothing is alerted on any channel; findings "
            "are recorded and recapped (end it early with `maintenance off`)")


ACTIONS = {"ack": ack, "snooze": snooze, "maintenance": maintenance}


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Run one of ack, snooze, maintenance; 2 for an unknown name or a bad duration."""
    if args.command == "ack" and not store_present(settings.db_path):
        print(f"ack: no open finding has the fingerprint {args.fingerprint!r}: no cycle has run "
              f"yet (no store at {settings.db_path})", file=sys.stderr)
        return EXIT_USAGE
    try:
        store = Store.open(settings.db_path)
    except StoreError as err:
        print(f"{args.command}: {err}", file=sys.stderr)
        return EXIT_FAILED
    try:
        print(ACTIONS[args.command](store, args, time.time()))
    except UsageError as err:
        print(f"{args.command}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except UnknownTarget as err:  # resolved between the read and the write
        print(f"{args.command}: {err.args[0]} is no longer an open finding", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as err:
        print(f"{args.command}: {err}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        store.close()
    return EXIT_OK
