"""known_issues.json: the operator's entries that mute, cap or explain findings, validated at start-up.

Only these entries (and CONSTRAINTS.md, as guidance) may bring a finding below its floor: they are
the operator's own decisions, applied after the judge, for the LLM and the rules alike.
"""
from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from analysis.detectors import all_kinds
from analysis.prompt import KnownContext
from foundation import trust
from foundation.model import Finding, Judged, Severity
from foundation.settings import ConfigError

log = logging.getLogger(__name__)

ACTIONS = ("mute", "cap", "context")
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
_ENTRY_KEYS = frozenset({"id", "description", "enabled", "match", "action", "cap_at"})
_MATCH_KEYS = frozenset({"kind", "summary", "labels", "window"})


@dataclass(frozen=True)
class KnownIssue:
    """One validated entry."""

    id: str
    description: str
    enabled: bool
    kinds: tuple[str, ...]
    action: str                                # mute | cap | context
    cap_at: Severity | None = None
    summary: re.Pattern[str] | None = None
    labels: tuple[tuple[str, re.Pattern[str]], ...] = ()
    window: tuple[int, int] | None = None      # local minutes of day [start, end), may wrap

    def matches(self, finding: Finding, now: float) -> bool:
        """True when the entry is enabled and matches the finding at local time ``now``."""
        if not self.enabled or (finding.kind not in self.kinds and "*" not in self.kinds):
            return False
        if self.summary is not None and not self.summary.search(finding.summary):
            return False
        for name, pattern in self.labels:
            if name not in finding.labels or not pattern.search(str(finding.labels[name])):
                return False
        return self.window is None or _in_window(self.window, now)

    @property
    def action_text(self) -> str:
        """The action as the prompt and the report say it."""
        return f"cap at {self.cap_at.value}" if self.cap_at is not None else self.action


@dataclass(frozen=True)
class KnownMatch:
    """What a known issue did to one finding."""

    id: str
    action: str
    before: Severity
    after: Severity


def _in_window(window: tuple[int, int], now: float) -> bool:
    local = time.localtime(now)
    minute = local.tm_hour * 60 + local.tm_min
    start, end = window
    return start <= minute < end if start < end else minute >= start or minute < end


class KnownIssues:
    """The operator's entries, in file order."""

    def __init__(self, entries: Sequence[KnownIssue] = (), source: str = "") -> None:
        self.entries = tuple(entries)
        self.source = source

    def matching(self, finding: Finding, now: float) -> list[KnownIssue]:
        """The enabled entries that match a finding now."""
        return [e for e in self.entries if e.matches(finding, now)]

    def context(self, findings: Sequence[Finding], now: float) -> list[KnownContext]:
        """The entries that apply to this cycle, with the finding ids each one matches."""
        out = []
        for entry in self.entries:
            ids = tuple(f.fingerprint for f in findings if entry.matches(f, now))
            if ids:
                out.append(KnownContext(entry.id, entry.action_text, entry.description, ids))
        return out

    def apply(self, judged: Sequence[Judged], now: float
              ) -> tuple[list[Judged], dict[str, KnownMatch]]:
        """Judged findings after mute and cap entries, and what each entry did, by fingerprint."""
        out: list[Judged] = []
        matched: dict[str, KnownMatch] = {}
        for item in judged:
            acting = [e for e in self.matching(item.finding, now) if e.action != "context"]
            if not acting:
                out.append(item)
                continue
            mute = next((e for e in acting if e.action == "mute"), None)
            entry = mute or min(acting, key=lambda e: e.cap_at.rank if e.cap_at else 0)
            after = Severity.NONE if mute else min(
                (item.severity, entry.cap_at or item.severity), key=lambda s: s.rank)
            note = (f"muted by known issue {entry.id}" if mute
                    else f"capped at {after.value} by known issue {entry.id}")
            matched[item.finding.fingerprint] = KnownMatch(entry.id, entry.action_text,
                                                           item.severity, after)
            out.append(replace(item, severity=after,
                               reason=f"{item.reason} ({note}; was {item.severity.value})"))
        return out, matched


def _fail(source: str, where: str, problem: str) -> ConfigError:
    return ConfigError(f"{source}: {where}: {problem}")


def _regex(value: Any, source: str, where: str) -> re.Pattern[str]:
    if not isinstance(value, str) or not value:
        raise _fail(source, where, "must be a non-empty regular expression string")
    try:
        return re.compile(value)
    except re.error as err:
        raise _fail(source, where, f"invalid regular expression: {err}") from err


def _window(value: Any, source: str, where: str) -> tuple[int, int]:
    parts = value.split("-") if isinstance(value, str) else []
    found = [_HHMM.fullmatch(p.strip()) for p in parts]
    if len(found) != 2 or not all(found):
        raise _fail(source, where, f"{value!r} is not a local time window HH:MM-HH:MM "
                                   "such as 01:00-05:00")
    start, end = (int(m.group(1)) * 60 + int(m.group(2)) for m in found if m)
    if start == end:
        raise _fail(source, where, "start and end are equal; the window would be empty")
    return start, end


def _entry(raw: Any, n: int, source: str, kinds: Collection[str] | None) -> KnownIssue:
    if not isinstance(raw, dict):
        raise _fail(source, f"entry #{n + 1}", "must be a JSON object")
    ident = raw.get("id")
    if not isinstance(ident, str) or not _ID.fullmatch(ident):
        raise _fail(source, f"entry #{n + 1}: field id", "must be 1-64 letters, digits or _.:-")
    where = f"entry {ident!r}: field"
    unknown = sorted(k for k in raw if k not in _ENTRY_KEYS and not str(k).startswith("_"))
    if unknown:
        raise _fail(source, f"{where} {unknown[0]}",
                    f"unknown field (expected: {', '.join(sorted(_ENTRY_KEYS))})")
    description, enabled = raw.get("description"), raw.get("enabled")
    if not isinstance(description, str) or not description.strip() or len(description) > 500:
        raise _fail(source, f"{where} description", "must be a non-empty string (<= 500 chars)")
    if not isinstance(enabled, bool):
        raise _fail(source, f"{where} enabled", "must be true or false")
    action = raw.get("action")
    if action not in ACTIONS:
        raise _fail(source, f"{where} action", f"{action!r} is not one of {', '.join(ACTIONS)}")
    cap_at = None
    if action == "cap":
        try:
            cap_at = Severity(str(raw.get("cap_at")))
        except ValueError as err:
            raise _fail(source, f"{where} cap_at", "must be one of none, low, medium, high "
                                                    "with action cap") from err
    elif "cap_at" in raw:
        raise _fail(source, f"{where} cap_at", "only goes with action cap")
    match = raw.get("match")
    if not isinstance(match, dict):
        raise _fail(source, f"{where} match", "must be an object with at least kind")
    extra = sorted(k for k in match if k not in _MATCH_KEYS and not str(k).startswith("_"))
    if extra:
        raise _fail(source, f"{where} match.{extra[0]}",
                    f"unknown field (expected: {', '.join(sorted(_MATCH_KEYS))})")
    kind = match.get("kind")
    entry_kinds = (kind,) if isinstance(kind, str) else tuple(kind) if isinstance(kind, list) else ()
    if not entry_kinds or not all(isinstance(k, str) and k for k in entry_kinds):
        raise _fail(source, f"{where} match.kind", "must be a finding kind or a list of kinds")
    if enabled and kinds is not None:
        bad = [k for k in entry_kinds if k != "*" and k not in kinds]
        if bad:
            raise _fail(source, f"{where} match.kind", f"unknown finding kind {bad[0]!r} "
                                                       f"(known: {', '.join(sorted(kinds))})")
    labels = match.get("labels", {})
    if not isinstance(labels, dict):
        raise _fail(source, f"{where} match.labels", "must be an object: label name -> regex")
    return KnownIssue(
        id=ident, description=description.strip(), enabled=enabled, kinds=entry_kinds,
        action=action, cap_at=cap_at,
        summary=_regex(match["summary"], source, f"{where} match.summary")
        if "summary" in match else None,
        labels=tuple((str(k), _regex(v, source, f"{where} match.labels.{k}"))
                     for k, v in labels.items()),
        window=_window(match["window"], source, f"{where} match.window")
        if "window" in match else None)


def parse_known_issues(text: str, source: str, kinds: Collection[str] | None = None
                       ) -> KnownIssues:
    """Validated entries from the file's text; ConfigError naming the file, entry and field."""
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise _fail(source, "not valid JSON", str(err)) from err
    if not isinstance(doc, dict) or not isinstance(doc.get("known_issues"), list):
        raise _fail(source, "top level", 'must be an object {"known_issues": [ ... ]}')
    extra = sorted(k for k in doc if k != "known_issues" and not str(k).startswith("_"))
    if extra:
        raise _fail(source, f"top level field {extra[0]}", "unknown (expected: known_issues)")
    entries = [_entry(raw, n, source, kinds) for n, raw in enumerate(doc["known_issues"])]
    seen: set[str] = set()
    for e in entries:
        if e.id in seen:
            raise _fail(source, f"entry {e.id!r}: field id", "is used by more than one entry")
        seen.add(e.id)
    return KnownIssues(entries, source)


def _present_kinds() -> set[str] | None:
    """Kinds of the detectors in this build; None (no kind check) if one cannot be imported."""
    try:
        return {spec.kind for spec in all_kinds()}
    except Exception as err:  # noqa: BLE001 - a broken detector must not block the operator's file
        log.warning("cannot list finding kinds (%s); kinds in %s are not checked", err,
                    "known_issues.json")
        return None


def load_known_issues(path: Path, kinds: Callable[[], Collection[str] | None] = _present_kinds,
                      relaxed: bool = False) -> KnownIssues:
    """Load and validate the file; a missing file means no known issues.

    It can mute any finding, so it is read only when trust.read_trusted finds that no one but
    root or the agent's user can write it (``relaxed``: ALLOW_UNSAFE_FILES).
    """
    try:
        text = trust.read_trusted(path, "KNOWN_ISSUES_PATH", relaxed=relaxed).decode("utf-8")
    except FileNotFoundError:
        log.info("no known issues file at %s", path)
        return KnownIssues((), str(path))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from err
    issues = parse_known_issues(text, str(path), kinds())
    enabled = sum(e.enabled for e in issues.entries)
    log.debug("known issues: %d entries, %d enabled", len(issues.entries), enabled)
    return issues


def report_fields(matched: Mapping[str, KnownMatch], fingerprint: str) -> dict[str, Any]:
    """Extra fields of a finding in the cycle report: the known issue that acted on it."""
    found = matched.get(fingerprint)
    return {} if found is None else {"known_issue": found.id, "known_issue_action": found.action}
