"""The judge seam and the rules: a cycle's findings in, one Verdict out; the rules decide when no LLM does."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from foundation.context import DetectContext
from foundation.model import Finding, FindingVerdict, Severity, Verdict, max_severity


class Judge(Protocol):
    """Anything that turns findings into a verdict; it must never raise."""

    def judge(self, findings: Sequence[Finding], observations: Mapping[str, Any],
              ctx: DetectContext) -> Verdict:
        """The verdict for one cycle."""


class RulesJudge:
    """Each finding keeps its rule severity raised to its floor; the overall is the highest."""

    def judge(self, findings: Sequence[Finding], observations: Mapping[str, Any],
              ctx: DetectContext) -> Verdict:
        """The rule verdict (see the class docstring)."""
        return rules_verdict(findings)


def rules_verdict(findings: Sequence[Finding], note: str | None = None) -> Verdict:
    """The verdict the rules give; ``note`` says why an LLM did not decide, when it was asked."""
    per = {f.fingerprint: FindingVerdict(f.effective_rule_severity, "rule severity")
           for f in findings}
    overall = max_severity(*(v.severity for v in per.values()))
    if not findings:
        reason = "no findings this cycle"
    else:
        worst = max(findings, key=lambda f: f.effective_rule_severity.rank)
        reason = (f"{len(findings)} finding(s); most severe: {worst.kind} "
                  f"({worst.effective_rule_severity.value})")
    return Verdict(severity=overall, reason=reason, by="rules", model=None, per_finding=per,
                   note=note)


def final_severity(finding: Finding, verdict: Verdict) -> Severity:
    """max(floor, judged severity); a finding the verdict does not name keeps its rule severity."""
    judged = verdict.per_finding.get(finding.fingerprint)
    severity = judged.severity if judged is not None else finding.effective_rule_severity
    return max_severity(severity, finding.floor)
