"""One monitoring cycle: collect -> store samples -> detect -> judge -> decide alerts -> commit -> deliver."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import collectors
from agent import EVENT, SCHEDULED
from agent.budget import DELIVERY_BUDGET_S, EVENT_JUDGE_S, collector_bound, judge_limit_s
from agent.carry import carried
from agent.carry import key as carry_key
from agent.dependencies import Health, cycle_health, track
from agent.fleet_state import Posted, queue_state, report_entries
from agent.footprint import memory_report
from agent.messages import SUPPRESSED, chosen_for, details, payload, peek_report
from agent.messages import report as cycle_report
from alerts.channels import accepts, message_channels
from alerts.mqtt import publisher_of
from alerts.outbox import Notifier, deliver_due
from alerts.policy import decide
from alerts.silences import apply_silences, suppressed_entries
from analysis import detectors
from analysis.known_issues import KnownIssues, load_known_issues
from analysis.rules import Judge, final_severity, rules_verdict
from foundation.bounded import Stopped, run_bounded, spawn
from foundation.context import CollectContext, CycleShare, DetectContext
from foundation.model import (
    CollectorStatus,
    CollectResult,
    Decision,
    Finding,
    Judged,
    Sample,
    Verdict,
    max_severity,
)
from foundation.redact import redact
from foundation.settings import Settings
from foundation.store.backup import backup_if_due
from foundation.store.data_storage import Store, StoreDamaged

log = logging.getLogger(__name__)

TRIM_EVERY_S = 3600.0
POLL_S = 0.05        # how often a cycle looks at a stop it cannot be woken by (a plain Event)
HEARTBEAT_S = 0.25   # how often a cycle that is woken by a stop proves it is alive meanwhile
# A collector starts when the one before it has ended, or STAGGER_S after it started: most end
# within a millisecond or two, and run alone instead of fighting for the interpreter's lock (all
# started at once, ~9 threads handed that lock back and forth ~250 times a cycle); a slow one
# (ping waiting for its replies, a scan) still overlaps with the rest, each within its own bound.
STAGGER_S = 0.05


class CycleAborted(Exception):
    """The agent was asked to stop mid-cycle; nothing of the cycle was committed."""


@dataclass
class _Slot:
    """One collector's run in a background thread."""

    name: str
    deadline: float = 0.0
    started: float = 0.0
    result: CollectResult | None = None
    status: CollectorStatus | None = None
    done: threading.Event = field(default_factory=threading.Event)
    carry: dict[str, Any] | None = None   # per-cycle counts to store for later (agent/carry.py)


@dataclass
class _Seen:
    """What a cycle's collectors saw and its detectors found, before anything is judged."""

    slots: dict[str, _Slot]
    dctx: DetectContext
    findings: list[Finding] = field(default_factory=list)
    statuses: dict[str, CollectorStatus] = field(default_factory=dict)
    resolving: set[str] = field(default_factory=set)
    events: set[str] = field(default_factory=set)   # one-off kinds: they close silently


T = TypeVar("T")


def _error_text(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return redact(f"{type(err).__name__}: {text}" if str(err) else text)


def _bounded(fn: Callable[[], T], timeout_s: float, stop: threading.Event,
             heartbeat: Callable[[], None] = lambda: None) -> tuple[bool, T | None]:
    """run_bounded, with a stop turned into CycleAborted (nothing of the cycle is committed yet)."""
    try:
        return run_bounded(fn, timeout_s, stop, heartbeat)
    except Stopped as err:
        raise CycleAborted("stop requested") from err


class Agent:
    """Runs cycles against one store; keeps collectors that overran so they never pile up."""

    def __init__(self, settings: Settings, store: Store, judge: Judge,
                 notifiers: Mapping[str, Notifier], stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.time,
                 heartbeat: Callable[[], None] = lambda: None,
                 known_issues: KnownIssues | None = None) -> None:
        self.settings = settings
        self.store = store
        self.judge = judge
        self.notifiers = dict(notifiers)
        self.stop = stop or threading.Event()
        self.clock = clock
        self.heartbeat = heartbeat  # proves the cycle is alive (systemd watchdog) while it waits
        self.notes: list[str] = []           # said once in the next report (legacy import, ...)
        self.last_samples: list[tuple[str, Sample]] = []  # (collector, sample) of the last cycle
        self.known_issues = (known_issues if known_issues is not None  # ConfigError if bad
                             else load_known_issues(settings.KNOWN_ISSUES_PATH))
        self._inflight: dict[str, _Slot] = {}
        # set when a collector finishes, and by a stop that can wake it (foundation.bounded.Stop)
        self._wake = threading.Event()
        link = getattr(self.stop, "link", None)
        self._poll_s = POLL_S if link is None else HEARTBEAT_S
        if link is not None:
            link(self._wake)
        self._peek: dict[str, Mapping[str, Any]] = {}   # where uncommitted event cycles read to
        self._posted: Posted | None = None   # the last commit's state message (Alertmanager)
        # Home Assistant's entities over MQTT (alerts/mqtt.py): connects in paho's own thread
        self.publisher = publisher_of(self.notifiers)
        if self.publisher is not None:
            self.publisher.start()

    # -- collect ----------------------------------------------------------------------------------

    def _start(self, name: str, now: float, state: Mapping[str, Any] | None,
               shared: CycleShare) -> _Slot:
        slot = _Slot(name)
        try:
            module = collectors.load(name)
            ctx = CollectContext(self.settings, now,
                                 self.store.collector_state(name) if state is None else state,
                                 shared=shared)
            timeout = collector_bound(module, self.settings)
        except Exception as err:  # noqa: BLE001 - one broken collector degrades, never kills
            slot.status = CollectorStatus(False, _error_text(err), 0.0)
            slot.done.set()
            return slot

        def target() -> None:
            t0 = time.monotonic()
            try:
                slot.result = module.collect(ctx)
                slot.status = CollectorStatus(True, None, time.monotonic() - t0,
                                              slot.result.available, slot.result.note)
            except Exception as err:  # noqa: BLE001 - the one wrapper that catches everything
                log.warning("collector %s failed: %s", name, _error_text(err))
                slot.status = CollectorStatus(False, _error_text(err), time.monotonic() - t0)
            slot.done.set()
            self._wake.set()

        slot.started = time.monotonic()
        slot.deadline = slot.started + timeout
        spawn(target, f"collector-{name}")
        return slot

    def collect(self, now: float, names: Sequence[str] | None = None,
                states: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, _Slot]:
        """Run collectors in parallel (the enabled ones by default), each within its own time
        bound, each from its stored state unless ``states`` gives another; each starts when the
        one before it ended or STAGGER_S after it started."""
        slots: dict[str, _Slot] = {}
        started: dict[str, _Slot] = {}
        shared = CycleShare()   # what this cycle's collectors read once for all (process table)
        for name in self.settings.COLLECTORS if names is None else names:
            previous = self._inflight.get(name)
            if previous is not None and not previous.done.is_set():
                running = time.monotonic() - previous.started
                slots[name] = _Slot(name, status=CollectorStatus(
                    False, f"still running from an earlier cycle ({running:.0f} s); skipped", 0.0))
                continue
            slots[name] = started[name] = self._start(name, now, (states or {}).get(name), shared)
            if not started[name].done.wait(STAGGER_S) and self.stop.is_set():
                raise CycleAborted("stop requested")
        pending = dict(started)
        while pending:
            self._wake.clear()   # before looking: a collector that ends after this wakes us
            for name, slot in list(pending.items()):
                if slot.done.is_set():
                    self._inflight.pop(name, None)
                    del pending[name]
                elif time.monotonic() >= slot.deadline:
                    self._inflight[name] = slot
                    slot.status = CollectorStatus(
                        False, f"timed out after {slot.deadline - slot.started:.0f} s",
                        time.monotonic() - slot.started)
                    del pending[name]
            if not pending:
                break
            if self.stop.is_set():
                raise CycleAborted("stop requested")
            self.heartbeat()
            nearest = min(slot.deadline for slot in pending.values()) - time.monotonic()
            self._wake.wait(max(0.0, min(self._poll_s, nearest)))
        return slots

    # -- the cycle --------------------------------------------------------------------------------

    def run_cycle(self, trigger: str = SCHEDULED) -> dict[str, Any]:
        """Run one cycle and return its report; raises CycleAborted if asked to stop mid-way.

        A scheduled cycle runs every collector and commits. An event cycle (new log lines, see
        agent/follow.py) runs the followed log collectors only, and commits only when what they
        found is alerted at once; otherwise it keeps where it read in memory (the next event
        cycle goes on from there) and the next scheduled cycle reads those lines again from the
        committed cursors, so every line is counted once and nothing found is lost.
        """
        now = self.clock()
        t0 = time.monotonic()
        if trigger == SCHEDULED:
            self._peek.clear()
            return self._conclude(now, t0, self._observe(now, None, {}, trigger), trigger)
        names = list(collectors.followed(self.settings.COLLECTORS, self.settings))
        seen = self._observe(now, names, self._peek, trigger)
        if not self._urgent(seen.findings, now):
            for name, slot in seen.slots.items():
                if slot.result is not None and slot.status is not None and slot.status.ok \
                        and slot.result.state is not None:
                    self._peek[name] = slot.result.state
            return peek_report(now, time.monotonic() - t0, seen.statuses, seen.findings)
        if self._peek:   # earlier event cycles read lines no commit holds: read them all again
            self._peek.clear()
            seen = self._observe(now, names, {}, trigger)
        return self._conclude(now, t0, seen, trigger)

    def _observe(self, now: float, names: Sequence[str] | None,
                 states: Mapping[str, Mapping[str, Any]], trigger: str) -> _Seen:
        """Collect and detect: what the collectors saw and the findings it makes."""
        slots = self.collect(now, names, states)
        carried(self.store, slots, trigger)   # counts of a cycle belong to scheduled cycles only
        dctx = DetectContext(self.settings, now, self.store)
        seen = _Seen(slots, dctx)
        for name, slot in slots.items():
            # collect() gives every slot a status (done, failed, timed out or still running)
            status = slot.status or CollectorStatus(False, "the collector gave no status", 0.0)
            result = slot.result if status.ok else None
            if result is not None and result.available and name in detectors.DETECTORS:
                try:
                    module = detectors.load(name)
                    seen.findings.extend(module.detect(result, dctx))
                    seen.events.update(k.kind for k in module.KINDS if k.event)
                    if result.resolves:
                        seen.resolving.add(name)
                except Exception as err:  # noqa: BLE001 - a detector bug degrades its source only
                    log.warning("detector %s failed: %s", name, _error_text(err))
                    status = CollectorStatus(False, f"detector: {_error_text(err)}",
                                             status.duration_s, status.available, status.note)
            seen.statuses[name] = status
        seen.findings = _unique(seen.findings)
        return seen

    def _urgent(self, findings: list[Finding], now: float) -> bool:
        """True when, by the rules (floors included), after the operator's known issues and
        silences, some finding is alerted at once: what an event cycle is for."""
        if not findings:
            return False
        verdict = rules_verdict(findings)
        judged = [Judged(f, final_severity(f, verdict), "rule severity") for f in findings]
        judged, _ = self.known_issues.apply(judged, now)
        open_rows = self.store.findings(open_only=True)
        decisions = decide(judged, open_rows, [], now, self.settings.ALERT_COOLDOWN_MINUTES * 60)
        decisions, _ = apply_silences(decisions, judged, open_rows, self.store.silences(now))
        return any(d.alert for d in decisions)

    def _conclude(self, now: float, t0: float, seen: _Seen, trigger: str) -> dict[str, Any]:
        """Judge, decide, commit (with the collectors' cursors), deliver, report."""
        slots, dctx, findings = seen.slots, seen.dctx, seen.findings
        observations = {n: s.result.observations for n, s in slots.items() if s.result is not None}
        limit = EVENT_JUDGE_S if trigger == EVENT else judge_limit_s(self.settings)
        verdict = self._judge(findings, observations, dctx, limit)
        judged = [Judged(f, final_severity(f, verdict), _reason(f, verdict)) for f in findings]
        judged, known = self.known_issues.apply(judged, now)  # the operator may mute or cap
        open_rows = self.store.findings(open_only=True)
        present = {j.finding.fingerprint for j in judged}
        resolved = [fp for fp, row in open_rows.items()
                    if fp not in present and row.source in seen.resolving]
        decisions = decide(judged, open_rows,
                           [fp for fp in resolved if open_rows[fp].kind not in seen.events], now,
                           self.settings.ALERT_COOLDOWN_MINUTES * 60)
        # the operator's acks, snoozes and maintenance hold messages back (alerts/silences.py)
        decisions, silenced = apply_silences(decisions, judged, open_rows, self.store.silences(now))
        queued = self._commit(now, slots, dctx, judged, open_rows, resolved, decisions, verdict)
        self._peek.clear()
        deliveries = deliver_due(self.store, self.notifiers, self.clock(),
                                 self.settings.ALERT_RETRY_MAX_SECONDS, self.clock,
                                 stop=self.stop, heartbeat=self.heartbeat,
                                 budget_s=DELIVERY_BUDGET_S)
        report = cycle_report(self.settings, message_channels(self.notifiers), self.notes, now,
                              time.monotonic() - t0, seen.statuses, observations, judged, verdict,
                              decisions, queued, deliveries, known)
        report.update(trigger=trigger, committed=True, **memory_report())   # peak_rss_mb, rss_mb
        report["alerts"].extend(suppressed_entries(silenced, message_channels(self.notifiers)))
        report["alerts"].extend(report_entries(self._posted, deliveries))
        if self.publisher is not None:   # the states are handed over, never waited for
            up = self.publisher.after_cycle(report, self.last_samples, self.store.findings())
            if up is not None:
                track(self.store, {"mqtt": Health(*up)}, now)
        # Ollama, Discord, Home Assistant, Docker: logged when one goes down or comes back
        track(self.store, cycle_health(self.settings, self.judge, seen.statuses, observations,
                                       deliveries, self.notifiers), now)
        self._after(now, report)
        return report

    def _judge(self, findings: list[Finding], observations: Mapping[str, Any],
               dctx: DetectContext, limit: float) -> Verdict:
        if not findings and not self.settings.ALWAYS_ASK_LLM:
            return rules_verdict(findings)
        try:
            finished, verdict = _bounded(lambda: self.judge.judge(findings, observations, dctx),
                                         limit, self.stop, self.heartbeat)
        except CycleAborted:
            raise
        except Exception as err:  # noqa: BLE001 - the judge must never cost the cycle
            log.warning("judge failed, rules decide: %s", _error_text(err))
            return rules_verdict(findings, note=f"judge failed: {_error_text(err)}")
        if not finished or verdict is None:
            return rules_verdict(findings, note=f"judge gave no answer within {limit:.0f} s")
        return verdict

    def _commit(self, now: float, slots: Mapping[str, _Slot], dctx: DetectContext,
                judged: list[Judged], open_rows: Mapping[str, Any], resolved: list[str],
                decisions: list[Decision], verdict: Verdict) -> dict[tuple[str, str], int | None]:
        by_fp = {j.finding.fingerprint: j for j in judged}
        queued: dict[tuple[str, str], int | None] = {}
        samples: list[tuple[str, Sample]] = []
        with self.store.transaction() as tx:
            for name, slot in slots.items():
                if slot.result is None or slot.status is None or not slot.status.ok:
                    continue
                tx.add_samples(now, slot.result.samples)
                samples.extend((name, sample) for sample in slot.result.samples)
                if slot.result.state is not None:
                    tx.set_collector_state(name, slot.result.state, now)
                if slot.carry is not None:
                    tx.set_collector_state(carry_key(name), slot.carry, now)
                if name == "llm_runtimes" and slot.result.available:   # their history
                    tx.record_llm_connections(slot.result.observations.get("runtimes", ()), now)
                if name == "llm_traffic":   # its history: counts and sizes, never a prompt
                    tx.record_llm_traffic(slot.result.observations.get("clients", ()), now)
            for name, state in dctx.states.items():
                tx.set_collector_state(f"detect:{name}", state, now)
            for namespace, keys in dctx.remembered.items():
                tx.remember(namespace, keys, now)
            for namespace, keys in dctx.forgotten.items():
                tx.forget(namespace, keys)
            for item in judged:
                f = item.finding
                tx.upsert_finding(f.fingerprint, f.source, f.kind, f.key, item.severity.value,
                                  f.floor.value, f.summary, now, details(f, item))
            for fp in resolved:
                tx.resolve_finding(fp, now)
            for purpose in ("alert", "resolved"):
                chosen = chosen_for(decisions, purpose)
                if not chosen:
                    continue
                message = payload(self.settings.host_name, purpose, chosen, by_fp, open_rows,
                                  verdict, now)
                for channel in message_channels(self.notifiers):
                    if not accepts(self.settings, channel, purpose, message["items"], now):
                        if purpose == "alert":  # an alert held back (quiet hours) is reported
                            queued[(channel, purpose)] = SUPPRESSED
                        continue
                    queued[(channel, purpose)] = tx.enqueue(
                        channel=channel, purpose=purpose,
                        severity=max_severity(*(d.severity for d in chosen)).value,
                        payload=message, now=now, dedupe_key=f"{channel}:{purpose}:{now!r}")
                for d in chosen:
                    if purpose == "alert":
                        tx.mark_alerted(d.fingerprint, d.severity.value, now)
            # Alertmanager is told the findings' state instead, in this same commit
            self._posted = queue_state(tx, self.store, self.settings, self.notifiers, judged,
                                       open_rows, resolved, now)
        self.last_samples = samples
        return queued

    def _after(self, now: float, report: dict[str, Any]) -> None:
        self.notes.clear()
        try:
            with self.store.transaction() as tx:
                tx.save_cycle(now, report["duration_s"], report["verdict"]["severity"],
                              report["verdict"]["by"], report)
            last = float(self.store.meta("last_trim") or 0)
            if now - last >= TRIM_EVERY_S:
                trimmed = self.store.trim(now, self.settings.HISTORY_RETENTION_DAYS)
                if trimmed:
                    log.info("trimmed %d rows older than %d days", trimmed,
                             self.settings.HISTORY_RETENTION_DAYS)
            backup_if_due(self.store, now, self.settings.STORE_BACKUP_INTERVAL_HOURS,
                          self.settings.STORE_BACKUP_GENERATIONS)
        except StoreDamaged:
            raise  # the live store failed its check: stop and say so rather than carry on
        except Exception as err:  # noqa: BLE001 - bookkeeping must not fail a committed cycle
            log.warning("cycle bookkeeping failed: %s", _error_text(err))


def _unique(findings: list[Finding]) -> list[Finding]:
    """One finding per fingerprint (the most severe), so a detector's repeats cannot double-alert."""
    best: dict[str, Finding] = {}
    for f in findings:
        known = best.get(f.fingerprint)
        if known is None or f.effective_rule_severity.rank > known.effective_rule_severity.rank:
            best[f.fingerprint] = f
    return list(best.values())


def _reason(finding: Finding, verdict: Verdict) -> str:
    judged = verdict.per_finding.get(finding.fingerprint)
    return judged.reason if judged is not None else "rule severity"
