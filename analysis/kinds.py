"""Finding kinds as declarations: one row per kind, gathered from the detector modules."""
from __future__ import annotations

from dataclasses import dataclass

from foundation.model import Severity


@dataclass(frozen=True)
class KindSpec:
    """What a finding kind means, how severe it is by rule, and what the operator should do."""

    kind: str
    source: str
    severity: Severity           # the rule severity
    floor: Severity              # the lowest final severity any LLM answer can give
    title: str                   # a short human name
    action: str                  # what the operator should do about it
    event: bool = False          # a one-off event: when it stops recurring it closes silently,
                                 # with no "resolved" message (a break-in is not "resolved")

    def describe(self) -> str:
        """One Markdown table row for docs/findings.md."""
        clears = "one-off event" if self.event else "resolved message"
        return (f"| `{self.kind}` | {self.source} | {self.severity.value} | {self.floor.value} | "
                f"{clears} | {self.title} | {self.action} |")
