"""Findings from syslog: error rate off its baseline, kernel events that matter, new messages."""
from __future__ import annotations

from typing import Any, Mapping

from analysis.kinds import KindSpec
from core.context import DetectContext
from core.model import CollectResult, Finding, Severity

SOURCE = "syslog"
TEMPLATE_NAMESPACE = "syslog.template"
ERRORS_SERIES = "syslog.errors"
MIN_ERRORS = 20            # fewer error lines than this in a cycle are never a finding
ERROR_SPREAD_FLOOR = 5.0   # the smallest spread used, so a flat baseline does not alarm on noise
LOW_DEVIATION = 4.0        # spreads above the baseline for a low finding
MEDIUM_DEVIATION = 10.0    # ... and for a medium one
LEARN_LINES = 500          # lines read before new templates are reported (the first run learns)
MAX_NOVEL_FINDINGS = 5     # novel_log_message findings per cycle; the rest are learned quietly
MAX_EVIDENCE = 5

KINDS = (
    KindSpec("syslog_errors", SOURCE, Severity.LOW, Severity.NONE,
             "More syslog errors than usual",
             "Look at the programs and sample lines in the finding (`journalctl -p err -S -1h`, "
             "`grep -i error /var/log/syslog`); fix the failing service or add a known issue if "
             "the new level is expected."),
    KindSpec("kernel_event", SOURCE, Severity.MEDIUM, Severity.NONE,
             "A kernel event that matters (OOM kill, segfault, I/O error, throttling, link down)",
             "OOM kill: find what ate the memory (`journalctl -k | grep -i oom`), add RAM/swap or "
             "limit the service. Segfault: update or restart the program. I/O error: check the disk "
             "now (`smartctl -a`, backups). Thermal throttling: clean fans, check cooling. Link "
             "down: check the cable, switch port and `ip link`.", event=True),
    KindSpec("novel_log_message", SOURCE, Severity.LOW, Severity.NONE,
             "A log message never seen before on this machine",
             "Read the sample line; if it is harmless it is learned and will not be reported again.", event=True),
)


def _errors(result: CollectResult, ctx: DetectContext) -> list[Finding]:
    obs = result.observations
    if not any(s.metric == ERRORS_SERIES for s in result.samples):
        return []                     # a first run or a missing file: not a real interval
    baseline = ctx.baseline(ERRORS_SERIES, by_hour=True)
    errors = float(obs["errors"])
    if baseline is None or not baseline.trusted or errors < MIN_ERRORS:
        return []
    deviation = baseline.deviation(errors, ERROR_SPREAD_FLOOR)
    if deviation < LOW_DEVIATION:
        return []
    severity = Severity.MEDIUM if deviation >= MEDIUM_DEVIATION else Severity.LOW
    top = ", ".join(f"{p} ({n})" for p, n in list(obs["errors_by_program"].items())[:3])
    return [Finding(
        source=SOURCE, kind="syslog_errors", key="errors", severity=severity,
        summary=(f"{int(errors)} syslog error lines this cycle, usually about "
                 f"{baseline.centre:.0f} ({deviation:.1f} spreads above normal)"),
        labels={"top_programs": top}, evidence=tuple(obs["error_samples"][:MAX_EVIDENCE]),
        metric=ERRORS_SERIES, value=errors, baseline=baseline.as_json())]


def _kernel(event: Mapping[str, Any]) -> Finding:
    subjects = ", ".join(event["subjects"][:5])
    return Finding(
        source=SOURCE, kind="kernel_event", key=event["label"],
        severity=Severity.parse(event["severity"]),
        summary=f"kernel reported {event['label'].replace('_', ' ')} {event['count']} time(s)",
        labels={"event": event["label"], "subjects": subjects},
        evidence=tuple(event["lines"][:MAX_EVIDENCE]), value=float(event["count"]))


def _novel(result: CollectResult, ctx: DetectContext) -> list[Finding]:
    state = ctx.state(SOURCE)
    armed = bool(state.get("armed"))
    new = [t for t in result.observations["new_templates"]
           if not ctx.is_known(TEMPLATE_NAMESPACE, t["id"])]
    if new:
        ctx.remember(TEMPLATE_NAMESPACE, *(t["id"] for t in new))
    state["lines_seen"] = int(state.get("lines_seen", 0)) + int(result.observations["lines_read"])
    if not armed:
        if state["lines_seen"] >= LEARN_LINES:
            state["armed"] = True     # learned from this run; report from the next one
        return []
    new.sort(key=lambda t: t["count"])      # the rarest first: they are the interesting ones
    findings = []
    for t in new[:MAX_NOVEL_FINDINGS]:
        more = len(new) - MAX_NOVEL_FINDINGS
        tail = f" ({more} more new messages this cycle were learned without a finding)" \
            if more > 0 and t is new[MAX_NOVEL_FINDINGS - 1] else ""
        findings.append(Finding(
            source=SOURCE, kind="novel_log_message", key=t["id"], severity=Severity.LOW,
            summary=f"a log message never seen before ({t['count']} line(s)){tail}",
            labels={"program": t["program"], "template": t["template"]},
            evidence=(t["sample"],), value=float(t["count"])))
    return findings


def detect(result: CollectResult, ctx: DetectContext) -> list[Finding]:
    """syslog_errors, kernel_event and novel_log_message findings for one cycle."""
    if not result.available:
        return []
    findings = _errors(result, ctx)
    findings.extend(_kernel(e) for e in result.observations["kernel_events"])
    findings.extend(_novel(result, ctx))
    return findings
