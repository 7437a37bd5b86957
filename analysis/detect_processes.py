"""Findings about watched processes."""
from __future__ import annotations

from analysis.kinds import KindSpec
from foundation.context import DetectContext
from foundation.model import CollectResult, Finding, Severity, series_name

KINDS = (
    KindSpec("process_missing", "processes", Severity.HIGH, Severity.HIGH,
             "A watched process is not running",
             "Check the service (`systemctl status {process}`, `journalctl -u {process}`) and restart it; "
             "remove it from PROCESSES_TO_MONITOR if it was retired on purpose.",
             name="Process not running", says="Process {process} is not running",
             speaks="Process {process} is not running.",
             cleared="Process {process} is running again", example={"process": "nginx"}),
)


def detect(result: CollectResult, ctx: DetectContext) -> list[Finding]:
    """A process_missing finding for each watched process with no running instance."""
    findings = []
    for entry, facts in result.observations["watched"].items():
        if not facts["running"]:
            findings.append(Finding(
                source="processes", kind="process_missing", key=entry, severity=Severity.HIGH,
                floor=Severity.HIGH, summary=f"watched process {entry!r} is not running",
                labels={"process": entry}, facts={"process": entry},  # from PROCESSES_TO_MONITOR
                metric=series_name("process.count", entry), value=0.0))
    return findings
