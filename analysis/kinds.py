"""Finding kinds as declarations: one row per kind, gathered from the detector modules.

Besides its severity and floor, a kind says how it is told to a person (docs/alerts.md):
``name`` (short, for headlines and the recap), ``says`` (the one-line fact that matters, a template
over the finding's facts and labels, shown escaped), ``speaks`` (the spoken sentence, a template
over its trusted facts only: never log text, user names, DNS names or banners), ``cleared`` (what
the resolved message says recovered) and ``example`` (facts of a typical finding, which the docs
and the tests render every template with).
"""
from __future__ import annotations

import ipaddress
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from foundation.model import Severity


class _Teller(string.Formatter):
    """str.format with one more spec, ``{n:plural:time}`` -> "1 time" / "3 times"."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if format_spec.startswith("plural:"):
            word = format_spec.removeprefix("plural:")
            count = int(value)
            return f"{count} {word}" if count == 1 else f"{count} {word}s"
        return str(super().format_field(value, format_spec))


_TELLER = _Teller()


def spoken_host(host: str, otherwise: str) -> str:
    """A configured host as it may be said: its name, or ``otherwise`` for an address (heard
    digit by digit, an address says nothing)."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    return otherwise


def fields_of(template: str) -> set[str]:
    """The names a template reads, e.g. {"process"} for "Process {process} is not running"."""
    return {name for _, name, _, _ in _TELLER.parse(template) if name}


class _Placeholders(dict[str, str]):
    """Every name a template reads, written as the placeholder people fill in: {port} -> PORT."""

    def __missing__(self, key: str) -> str:
        return key.upper()


def tell(template: str, values: Mapping[str, Any]) -> str | None:
    """The template filled from ``values``; None when one is missing or does not fit its spec."""
    if not template:
        return None
    try:
        return _TELLER.vformat(template, (), values if isinstance(values, dict) else dict(values))
    except (KeyError, IndexError, ValueError, TypeError):
        return None


@dataclass(frozen=True)
class KindSpec:
    """What a finding kind means, how severe it is by rule, what the operator should do, and how
    it is told."""

    kind: str
    source: str
    severity: Severity           # the rule severity
    floor: Severity              # the lowest final severity any LLM answer can give
    title: str                   # what it means, in a sentence
    action: str                  # what the operator should do about it
    event: bool = False          # a one-off event: when it stops recurring it closes silently,
                                 # with no "resolved" message (a break-in is not "resolved")
    name: str = field(default="", kw_only=True)      # a short human name
    says: str = field(default="", kw_only=True)      # headline template: facts and labels
    speaks: str = field(default="", kw_only=True)    # spoken template: trusted facts only
    cleared: str = field(default="", kw_only=True)   # resolved template: facts and labels
    example: Mapping[str, Any] = field(default_factory=dict, kw_only=True)

    def headline(self, facts: Mapping[str, Any], labels: Mapping[str, Any]) -> str:
        """The one line that says what happened, with the fact that matters (labels are
        untrusted: the channel escapes the line); the kind's name if a value is missing."""
        return tell(self.says, {**labels, **facts}) or self.name or self.kind

    def spoken(self, facts: Mapping[str, Any]) -> str:
        """The sentence to say, from trusted facts only; the kind's name if a fact is missing."""
        return tell(self.speaks, facts) or self.name or self.kind

    def todo(self, facts: Mapping[str, Any] | None = None) -> str:
        """What to do, with the finding's trusted facts filled in (`systemctl status nginx`); with
        none, the placeholders people fill in (`systemctl status PROCESS`)."""
        return (tell(self.action, facts) if facts is not None else None) or str(
            tell(self.action, _Placeholders()))

    def todo_parts(self, facts: Mapping[str, Any] | None = None) -> list[tuple[str, bool]]:
        """``todo`` in pieces, (text, whether it is a command), in order, without the backticks:
        the kind's own backticks mark the commands, and the action is split on them before the
        facts are filled in, so a fact with a backtick in it can neither open nor close one."""
        pieces = self.action.split("`")
        if len(pieces) % 2 == 0:         # an unpaired backtick: no command to mark
            return [(self.todo(facts), False)]
        whole = tell(self.action, facts) if facts is not None else None
        values: Mapping[str, Any] = facts if whole is not None and facts is not None \
            else _Placeholders()
        return [(tell(piece, values) or "", n % 2 == 1) for n, piece in enumerate(pieces)
                if piece]

    def recovered(self, facts: Mapping[str, Any], labels: Mapping[str, Any]) -> str:
        """What the resolved message says came back."""
        return (tell(self.cleared, {**labels, **facts})
                or f"{self.name or self.kind}: no longer seen")

    def missing(self, facts: Mapping[str, Any], labels: Mapping[str, Any],
                resolved: bool = False) -> set[str]:
        """The values its templates read that a finding did not give."""
        templates = (self.cleared,) if resolved else (self.says, self.speaks)
        wanted = set().union(*(fields_of(t) for t in templates))
        return wanted - set(facts) - set(labels)

    def describe(self) -> str:
        """One Markdown table row for docs/findings.md."""
        clears = "one-off event" if self.event else "resolved message"
        return (f"| `{self.kind}` | {self.source} | {self.severity.value} | {self.floor.value} | "
                f"{clears} | {self.title} | {self.todo()} |")
