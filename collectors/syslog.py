"""The syslog collector: counts by severity and program, kernel events and new message templates.

Speed comes from working on whole chunks, never line by line in Python: digits are masked with
``bytes.translate`` (so "sshd[123]" and "sshd[456]" become one line), the chunk is split and
counted with ``collections.Counter`` (C code), and only the *distinct* masked lines are parsed with
compiled regexes over one joined blob. Kernel events (``collectors/kernel_events.py``) are found
with a fixed word and an anchored pattern, on each distinct kernel line of a matching group.

Severity: RFC5424 lines (and lines with a ``<PRI>`` prefix) and journal entries carry it; for
traditional and high-precision lines a coarse level is inferred from the first keyword of the line
(panic/emerg -> emerg, alert, crit -> crit, error/fail -> err, warn -> warning), others count as
info. ``errors`` is the number of lines at err or worse.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from collectors import kernel_events
from collectors.logreader.follow import Targets, targets
from collectors.logreader.formats import LINE_HEADER
from collectors.logreader.source import LogSource
from foundation.context import CollectContext
from foundation.model import CollectResult, Sample
from foundation.settings import Settings

SEVERITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
# coarse levels for lines that carry none: (keyword in the lower-cased line, level)
KEYWORD_LEVELS = ((b"panic", 0), (b"emerg", 0), (b"alert", 1), (b"crit", 2), (b"error", 3),
                  (b"fail", 3), (b"warn", 4))
INFO = 6
TOP_PROGRAMS = 20
MAX_TEMPLATES = 200          # new templates reported per cycle
TEMPLATE_CACHE = 4096        # template hashes remembered in the state (so known ones stay quiet)
MAX_SAMPLE_CHARS = 300
MAX_EVENTS = 20
MAX_ERROR_SAMPLES = 5
# lines that differ only in digits and hexadecimal letters are one group ("look-alike lines")
_HEX = bytes.maketrans(b"0123456789abcdefABCDEF", b"0" * 22)
MAX_GROUPS = 50_000          # distinct groups whose template id is cached within one cycle
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# variable parts of a message (digits already masked to 0): quoted strings, paths, any token
# holding a digit (numbers, addresses, hex ids, pids, versions)
_LIGHT = re.compile(rb"(?<![\w.:@%+/-])[\w.:@%+-]*\d[\w.:@%+/-]*")
_FULL = re.compile(rb"\"[^\"\n]*\"|'[^'\n]*'|(?<![\w.])/[^\s\"',;)\]]*")
_PRI = re.compile(rb"^<(\d{1,3})>", re.M)


def timeout_s(settings: Settings) -> float:
    """Reading 256 MiB at a few hundred MB/s, or a journalctl run, within a minute."""
    return 90.0


def follows(settings: Settings) -> Targets:
    """What the follower watches so that new lines start an event cycle of this collector."""
    return targets(settings.SYSLOG_PATH, settings.SYSLOG_BACKEND, settings.JOURNAL_DIRECTORY)


def _text(raw: bytes, limit: int = MAX_SAMPLE_CHARS) -> str:
    """Untrusted bytes as a short printable string."""
    return _CONTROL.sub("?", raw[:limit].decode("utf-8", "replace").rstrip("\r\n"))


def keyword_level(message: bytes) -> int:
    """The coarse severity of a message that carries none: its most severe keyword, else info."""
    lowered = message.lower()
    for word, level in KEYWORD_LEVELS:
        if word in lowered:
            return level
    return INFO


def template_id(template: str) -> str:
    """Stable short id of a message template."""
    return hashlib.sha1(template.encode("utf-8", "replace"), usedforsecurity=False).hexdigest()[:16]


def _valid(line: bytes) -> bool:
    """False for a line holding NUL bytes or invalid UTF-8."""
    if b"\x00" in line:
        return False
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


PRI_LEVEL = -1               # the severity of lines with a <PRI> is counted from the PRI itself


@dataclass(frozen=True)
class _Plan:
    """What one group of look-alike lines counts as (None program: malformed)."""

    program: str | None
    level: int
    kernel: bool              # a kernel line that matched a KERNEL_EVENTS row
    template: str | None


@dataclass
class Scan:
    """Running totals over the chunks of one cycle (pure: bytes in, numbers out)."""

    now: float
    known_templates: set[str] = field(default_factory=set)
    lines: int = 0
    malformed: int = 0
    severities: Counter[int] = field(default_factory=Counter)
    programs: Counter[str] = field(default_factory=Counter)
    errors_by_program: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    kernel: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    templates_seen: set[str] = field(default_factory=set)
    templates_dropped: int = 0
    _tids: dict[tuple[str, bytes], tuple[str, str]] = field(default_factory=dict)
    _plans: dict[bytes, _Plan] = field(default_factory=dict)

    def feed(self, chunk: bytes) -> None:
        """Account for one chunk of whole lines: each group of look-alike lines once."""
        masked = chunk.translate(_HEX).split(b"\n")
        masked.pop()
        if not masked:
            return
        self.lines += len(masked)
        has_pri = False
        raw: list[bytes] | None = None
        first: dict[bytes, int] = {}
        kernel_keys: set[bytes] = set()
        for key, weight in Counter(masked).items():
            plan = self._plans.get(key)
            if plan is None:
                if raw is None:         # only when a chunk brings a group not seen this cycle
                    raw = chunk.split(b"\n")
                    first = dict(zip(reversed(masked), range(len(masked) - 1, -1, -1), strict=True))
                plan = self._group(raw[first[key]], weight)
                if len(self._plans) < MAX_GROUPS:
                    self._plans[key] = plan
            else:
                self._replay(plan, weight)
            if plan.kernel:
                kernel_keys.add(key)
            has_pri |= plan.level == PRI_LEVEL
        if kernel_keys:                 # each kernel line on its own: a status or device is hex
            if raw is None:
                raw = chunk.split(b"\n")
            self._kernel_lines([r for r, k in zip(raw, masked, strict=False) if k in kernel_keys])
        if has_pri:
            for pri, count in Counter(_PRI.findall(chunk)).items():
                if int(pri) <= 191:
                    self.severities[int(pri) & 7] += count

    def _replay(self, plan: _Plan, weight: int) -> None:
        """Account for more lines of a group already worked out this cycle."""
        if plan.program is None:
            self.malformed += weight
            return
        self.programs[plan.program] += weight
        if plan.level != PRI_LEVEL:
            self.severities[plan.level] += weight
            if plan.level <= 3:
                self.errors_by_program[plan.program] += weight
        entry = self.templates.get(plan.template or "")
        if entry is not None:
            entry["count"] += weight

    def _group(self, line: bytes, weight: int) -> _Plan:
        """Account for ``weight`` lines that look like ``line``; how to count more of them."""
        m = LINE_HEADER.match(line)
        name = m.group("prog") or m.group("app") if m is not None else None
        if m is None or not name or not _valid(line):
            self.malformed += weight
            return _Plan(None, INFO, False, None)
        program = name.decode("utf-8").strip()
        rest = m.group("rest").strip()
        self.programs[program] += weight
        level = PRI_LEVEL if line[:1] == b"<" else keyword_level(rest)
        if level != PRI_LEVEL:
            self.severities[level] += weight
            if level <= 3:
                self.errors_by_program[program] += weight
                if len(self.error_samples) < MAX_ERROR_SAMPLES:
                    self.error_samples.append(_text(line))
        kernel = program == "kernel" and kernel_events.match(rest) is not None
        return _Plan(program, level, kernel, self._template(program, rest, line, weight))

    def _template(self, program: str, rest: bytes, line: bytes, weight: int) -> str:
        light = _LIGHT.sub(b"<*>", rest)
        known = self._tids.get((program, light))
        if known is None:
            template = f"{program}: {_FULL.sub(b'<*>', light)[:200].decode('utf-8', 'replace')}"
            known = (template_id(template), template)
            if len(self._tids) < MAX_GROUPS:
                self._tids[(program, light)] = known
        tid, template = known
        entry = self.templates.get(tid)
        if entry is not None:
            entry["count"] += weight
        elif tid in self.known_templates:
            self.templates_seen.add(tid)
        elif len(self.templates) < MAX_TEMPLATES:
            self.templates_seen.add(tid)
            self.templates[tid] = {"id": tid, "program": program, "template": template,
                                   "sample": _text(line), "count": weight}
        else:                                   # reported in a later cycle, not cached now
            self.templates_dropped += 1
        return tid

    def _kernel_lines(self, lines: list[bytes]) -> None:
        """Account for the kernel lines of one group of look-alike lines, each distinct one once."""
        for line, weight in Counter(lines).items():
            header = LINE_HEADER.match(line)
            found = kernel_events.match(header.group("rest").strip()) if header else None
            if found is None:
                continue
            event, m = found
            entry = self.kernel.setdefault(f"{event.kind}:{event.label}", {
                "label": event.label, "kind": event.kind, "severity": event.severity,
                "floor": event.floor, "count": 0, "subjects": [], "lines": []})
            entry["count"] += weight
            what = _text(kernel_events.subject(m), 64)
            if what and what not in entry["subjects"] and len(entry["subjects"]) < MAX_EVENTS:
                entry["subjects"].append(what)
            if len(entry["lines"]) < 3:
                entry["lines"].append(_text(line))

    def errors(self) -> int:
        """Lines at severity err or worse."""
        return sum(n for level, n in self.severities.items() if 0 <= level <= 3)

    def observations(self) -> dict[str, Any]:
        """The bounded, JSON-able summary of the cycle."""
        kernel = sorted(self.kernel.values(), key=lambda e: -e["count"])  # one per row at most
        return {
            "lines_read": self.lines,
            "malformed_lines": self.malformed,
            "errors": self.errors(),
            "severity_counts": {SEVERITY_NAMES[lv]: n for lv, n in sorted(self.severities.items())
                                if lv >= 0},
            "programs": dict(self.programs.most_common(TOP_PROGRAMS)),
            "program_count": len(self.programs),
            "errors_by_program": dict(self.errors_by_program.most_common(10)),
            "error_samples": list(self.error_samples),
            "kernel_events": kernel,
            "new_templates": list(self.templates.values()),
            "templates_seen": len(self.templates_seen),
            "templates_dropped": self.templates_dropped,
        }


def scan_chunks(chunks: Iterable[bytes], now: float, known: Iterable[str] = ()) -> Scan:
    """Run the syslog scan over chunks of whole lines (pure)."""
    scan = Scan(now=now, known_templates=set(known))
    for chunk in chunks:
        scan.feed(chunk)
    return scan


def _cache(previous: Iterable[str], seen: Iterable[str]) -> list[str]:
    """The template-id cache for the next state: the newest TEMPLATE_CACHE ids."""
    merged = dict.fromkeys(previous)
    for tid in seen:
        merged.pop(tid, None)
        merged[tid] = None
    return list(merged)[-TEMPLATE_CACHE:]


def collect(ctx: CollectContext) -> CollectResult:
    """Read syslog since the last cursor and summarise it."""
    settings = ctx.settings
    source = LogSource(ctx, settings.SYSLOG_PATH, settings.SYSLOG_BACKEND, ())
    cached = ctx.state.get("templates", []) if ctx.state else []
    scan = scan_chunks(source.chunks(), ctx.now, cached)
    if source.severities:                          # the journal carries real priorities
        scan.severities = Counter(source.severities)
    observations = {**source.info(), **scan.observations()}
    state = {**source.new_state(), "templates": _cache(cached, scan.templates_seen)}
    if not source.available:
        return CollectResult(observations=observations, state=state, available=False,
                             note=source.note)
    samples: tuple[Sample, ...] = ()
    if not any(e.startswith(("first_run", "missing")) for e in observations["events"]):
        samples = (Sample("syslog.lines", float(scan.lines), by_hour=True),
                   Sample("syslog.errors", float(scan.errors()), by_hour=True),
                   Sample("syslog.malformed", float(scan.malformed)))
    return CollectResult(observations=observations, samples=samples, state=state, note=source.note)
