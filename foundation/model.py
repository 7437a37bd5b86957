"""The small frozen types that flow one way through a cycle: collectors -> detectors -> judge -> alerts."""
from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.StrEnum):
    """Ordered severity; compare with ``rank`` or ``max_severity``, never by string."""

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        """0 for none up to 3 for high."""
        return _RANK[self]

    @classmethod
    def parse(cls, value: str) -> Severity:
        """Parse a severity name, case-insensitively; ValueError otherwise."""
        return cls(str(value).strip().lower())


_RANK = {Severity.NONE: 0, Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3}


def max_severity(*values: Severity) -> Severity:
    """The most severe of the values (NONE when there are none)."""
    return max(values, key=lambda s: s.rank, default=Severity.NONE)


def series_name(metric: str, key: str = "") -> str:
    """The stored series of a metric for one instance: "metric[key]", or the metric alone."""
    return f"{metric}[{key}]" if key else metric


def series_metric(series: str) -> str:
    """The metric of a stored series: "ping.rtt_avg_ms" of "ping.rtt_avg_ms[127.0.0.1]"."""
    return series.split("[", 1)[0]


@dataclass(frozen=True)
class Sample:
    """One numeric measurement to store and baseline, e.g. ("ping.rtt_avg_ms", "127.0.0.1", 0.04)."""

    metric: str
    value: float
    key: str = ""          # which instance: a target, a sensor, a process name ("" when global)
    by_hour: bool = False  # baseline by hour of day (daily rhythms such as temperatures, logins)

    @property
    def series(self) -> str:
        """The stored series name: metric, plus the key when there is one."""
        return series_name(self.metric, self.key)


@dataclass(frozen=True)
class CollectResult:
    """What a collector returns: plain data, samples to store, and its next persistent state."""

    observations: Mapping[str, Any]
    samples: tuple[Sample, ...] = ()
    state: Mapping[str, Any] | None = None  # None: keep the previous state unchanged
    available: bool = True                  # False when the source is absent (no sensors, no socket)
    note: str | None = None                 # why it is unavailable, or another plain remark
    resolves: bool = True                   # False: a partial look (a skipped nmap scan), so open
                                            # findings of this source that are absent stay open


@dataclass(frozen=True)
class Finding:
    """A deviation worth judging. ``key`` tells instances of one kind apart (a process, an address)."""

    source: str
    kind: str
    key: str
    severity: Severity            # the rule severity
    summary: str
    floor: Severity = Severity.NONE  # no LLM answer can push the final severity below this
    labels: Mapping[str, str] = field(default_factory=dict)   # untrusted strings: user, address, name
    # trusted facts for the messages: numbers the agent measured, names from the configuration,
    # categories it decided (never text from a log, a process, a banner or DNS): what speech uses
    facts: Mapping[str, Any] = field(default_factory=dict)
    evidence: tuple[str, ...] = ()                            # untrusted raw lines, bounded
    metric: str | None = None     # the series this finding is about, if any
    value: float | None = None    # the value now
    baseline: Mapping[str, float] | None = None  # {"centre":..,"spread":..,"n":..} at detection

    @property
    def fingerprint(self) -> str:
        """Stable id of "this problem on this thing", the same across cycles and restarts."""
        raw = f"{self.source}\x1f{self.kind}\x1f{self.key}".encode("utf-8", "surrogatepass")
        return hashlib.sha256(raw).hexdigest()[:16]

    @property
    def effective_rule_severity(self) -> Severity:
        """The rule severity raised to the floor."""
        return max_severity(self.severity, self.floor)


@dataclass(frozen=True)
class FindingVerdict:
    """The judged severity of one finding, already raised to its floor."""

    severity: Severity
    reason: str


@dataclass(frozen=True)
class Verdict:
    """The judge's answer for one cycle."""

    severity: Severity
    reason: str
    by: str                                   # "llm" or "rules"
    model: str | None = None
    per_finding: Mapping[str, FindingVerdict] = field(default_factory=dict)  # fingerprint -> verdict
    note: str | None = None                   # why the rules decided, when the LLM was asked and failed


@dataclass(frozen=True)
class CollectorStatus:
    """How one collector fared in a cycle."""

    ok: bool
    error: str | None
    duration_s: float
    available: bool = True
    note: str | None = None


@dataclass(frozen=True)
class Judged:
    """A finding with its final severity and the reason the judge gave."""

    finding: Finding
    severity: Severity
    reason: str


@dataclass(frozen=True)
class Decision:
    """What to do about one finding this cycle: why ("new", "worse", "repeat", "resolved") or not."""

    fingerprint: str
    why: str             # new | worse | repeat | resolved | cooldown | below_threshold, or
                         # the silence that held it back: ack | snooze | maintenance
    severity: Severity
    alert: bool
