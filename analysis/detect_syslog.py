"""Findings from syslog: error rate off its baseline, kernel events that matter, new messages."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis.kinds import KindSpec
from collectors.kernel_events import CRASH, DISK, FS, HANG, HW, KERNEL_EVENT, THERMAL, words
from foundation.context import DetectContext
from foundation.model import CollectResult, Finding, Severity, max_severity

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


def _family(kind: str, title: str, action: str, name: str, speaks: str, example: str) -> KindSpec:
    """A family of kernel events (collectors/kernel_events.py): high by rule and floor, one-off;
    its headline names the events (the agent's words for them) and how often they came."""
    return KindSpec(kind, SOURCE, Severity.HIGH, Severity.HIGH, title, action, event=True,
                    name=name, says="The kernel reported {events} ({count:plural:time})",
                    speaks=speaks, example={"events": example, "count": 3})


KINDS = (
    KindSpec("syslog_errors", SOURCE, Severity.LOW, Severity.NONE,
             "More syslog errors than usual",
             "Look at the programs and sample lines in the finding (`journalctl -p err -S -1h`, "
             "`grep -i error /var/log/syslog`); fix the failing service or add a known issue if "
             "the new level is expected.",
             name="More log errors than usual",
             says="{errors} error lines in the logs this cycle, usually about {usual:.0f}",
             speaks="{errors} error lines in the logs, usually about {usual:.0f}.",
             cleared="Log errors are back to their usual level",
             example={"errors": 240, "usual": 12.0}),
    KindSpec(KERNEL_EVENT, SOURCE, Severity.MEDIUM, Severity.NONE,
             "A kernel event that matters (OOM kill, segfault or general protection fault of a "
             "program, thermal throttling, link down, kernel warning)",
             "OOM kill: find what ate the memory (`journalctl -k | grep -i oom`), add RAM/swap or "
             "limit the service. Segfault or general protection fault: update or restart the "
             "program. Thermal throttling: clean fans, check cooling. Link down: check the cable, "
             "switch port and `ip link`. Kernel warning: note the driver and update the kernel.",
             event=True,
             name="Kernel event", says="The kernel reported {events} ({count:plural:time})",
             speaks="The kernel reported {events}.",
             example={"events": "an out-of-memory kill", "count": 1}),
    _family(FS,
            "A filesystem reported an error or corruption, or went read-only (ext4, XFS, Btrfs)",
            "Writes are failing or will: stop what writes there, check the disk under it "
            "(`smartctl -a`, `dmesg`), take a backup of what is readable, then unmount and run "
            "`fsck`/`xfs_repair`/`btrfs check` (or `btrfs scrub`). An old error count only "
            "(medium) asks for that fsck at the next maintenance window.",
            "Filesystem error", "A filesystem reported errors.", "a filesystem error"),
    _family(DISK,
            "A disk failed I/O, timed out, was reset or dropped out (block layer, NVMe, SATA, "
            "SCSI, md RAID)",
            "Check the disk now (`smartctl -a /dev/DEV`, `nvme smart-log`), the cable or slot and "
            "the power supply; make sure the backups are current and replace the disk if errors "
            "repeat. A degraded RAID needs a replacement disk (`mdadm --detail`). ATA exceptions "
            "alone (medium) are often a loose cable.",
            "Disk error", "A disk reported errors.", "a disk read or write error"),
    _family(HW,
            "The CPU or memory reported a hardware error (machine check, EDAC, firmware)",
            "Uncorrected (high): the hardware lost data; run `ras-mc-ctl --errors` or read "
            "`mcelog`, identify the DIMM or CPU and replace it. Corrected (low): the hardware "
            "fixed it; watch the rate, a DIMM with rising corrected errors is failing.",
            "Hardware error", "The processor or the memory reported a hardware error.",
            "an uncorrected memory error"),
    _family(HANG,
            "The kernel saw a hung task, a soft or hard lockup, or an RCU stall",
            "Read the stack trace after the line (`journalctl -k`); a hung task usually waits on "
            "a slow disk or network filesystem (check both), lockups and stalls point to a driver "
            "or hardware fault: update the kernel and firmware, and check the machine's "
            "temperature and power.",
            "Kernel hang", "The kernel reported a hang.", "a hung task"),
    _family(THERMAL,
            "A temperature reached its critical mark, or the kernel shut down to protect the "
            "hardware",
            "Check the fans, heatsinks and air flow now (`sensors`), clean dust, and find what "
            "loaded the machine; a zone that reports an absurd value (0 or 128 C) points to a "
            "broken sensor or firmware instead.",
            "Critical temperature", "The kernel reported a critical temperature.",
            "a critical temperature"),
    _family(CRASH,
            "The kernel crashed: an Oops, a BUG, a general protection fault in the kernel, a panic",
            "Save the full trace (`journalctl -k -b -1`, or `/var/lib/systemd/pstore`), note the "
            "module in it, update the kernel and that driver; reboot if the machine is unstable "
            "and test the memory (`memtest86+`) if crashes look random.",
            "Kernel crash", "The kernel crashed.", "a kernel oops"),
    KindSpec("novel_log_message", SOURCE, Severity.LOW, Severity.NONE,
             "A log message never seen before on this machine",
             "Read the sample line; if it is harmless it is learned and will not be reported again.",
             event=True,
             name="New kind of log message",
             says="A log message never seen before from {program} ({lines:plural:line})",
             speaks="A log message never seen before.",
             example={"program": "smartd", "lines": 1}),
)


def _errors(result: CollectResult, ctx: DetectContext) -> list[Finding]:
    obs = result.observations
    sampled = [s.value for s in result.samples if s.metric == ERRORS_SERIES]
    if not sampled:                   # a first run, a missing file, or an event cycle's part of
        return []                     # an interval: not a whole interval (agent/carry.py)
    baseline = ctx.baseline(ERRORS_SERIES, by_hour=True)
    errors = sampled[0]
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
        facts={"errors": int(errors), "usual": baseline.centre},
        metric=ERRORS_SERIES, value=errors, baseline=baseline.as_json())]


def _kernel(events: list[Mapping[str, Any]]) -> list[Finding]:
    """kernel_event: one finding per event label; each family: one finding for all its labels."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for event in events:
        key = event["label"] if event["kind"] == KERNEL_EVENT else event["kind"]
        groups.setdefault((event["kind"], key), []).append(event)
    findings = []
    for (kind, key), group in groups.items():
        group.sort(key=lambda e: (-Severity.parse(e["severity"]).rank, -e["count"]))
        count = sum(e["count"] for e in group)
        subjects = [s for e in group for s in e["subjects"]]
        what = ", ".join(f"{e['label'].replace('_', ' ')} ({e['count']})" for e in group)
        findings.append(Finding(
            source=SOURCE, kind=kind, key=key,
            severity=max_severity(*(Severity.parse(e["severity"]) for e in group)),
            floor=max_severity(*(Severity.parse(e["floor"]) for e in group)),
            summary=f"kernel reported {what}",
            labels={"event": ", ".join(e["label"] for e in group),
                    "subjects": ", ".join(dict.fromkeys(subjects[:5]))},
            facts={"events": ", ".join(words(e["label"]) for e in group), "count": count},
            evidence=tuple(line for e in group for line in e["lines"])[:MAX_EVIDENCE],
            value=float(count)))
    return findings


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
            facts={"lines": int(t["count"])},
            evidence=(t["sample"],), value=float(t["count"])))
    return findings


def detect(result: CollectResult, ctx: DetectContext) -> list[Finding]:
    """syslog_errors, kernel events by family and novel_log_message findings for one cycle."""
    if not result.available:
        return []
    findings = _errors(result, ctx)
    findings.extend(_kernel(result.observations["kernel_events"]))
    findings.extend(_novel(result, ctx))
    return findings
