"""Finding kinds as declarations: one row per kind, gathered from the detector modules.

Besides its severity and floor, a kind says how it is told to a person (docs/alerts.md):
``name`` (short, for headlines and the recap), ``says`` (the one-line fact that matters, a template
over the finding's facts and labels, shown escaped), ``speaks`` (the spoken sentence, a template
over its trusted facts only: never log text, user names, DNS names or banners), ``cleared`` (what
the resolved message says recovered) and ``example`` (facts of a typical finding, which the docs
and the tests render every template with).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from foundation.model import Severity


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

    def describe(self) -> str:
        """One Markdown table row for docs/findings.md."""
        clears = "one-off event" if self.event else "resolved message"
        return (f"| `{self.kind}` | {self.source} | {self.severity.value} | {self.floor.value} | "
                f"{clears} | {self.title} | {self.action} |")
