"""Kernel and hardware failures: real lines (tests/fixtures/kernel) through the real collector,
rsyslog and journal files, the families' severities and floors, and lines an attacker writes."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from analysis import detect_syslog
from collectors import kernel_events, syslog
from collectors.kernel_events import KERNEL_EVENT, KERNEL_EVENTS
from collectors.logreader.formats import LINE_HEADER
from collectors.syslog import scan_chunks
from foundation.context import CollectContext, DetectContext
from foundation.model import Severity
from tests.rsyslog_fixture import Rsyslog

NOW = time.mktime((2026, 11, 23, 12, 0, 0, 0, 0, -1))
FIXTURE = Path(__file__).parent / "fixtures" / "kernel" / "kernel_lines.log"
HEADER = "Nov 23 10:00:00 box kernel: "


@dataclass(frozen=True)
class Sample:
    """One fixture line and what the collector must make of it."""

    line: bytes
    kind: str | None
    label: str | None
    subject: str
    source: str
    format: str

    @property
    def message(self) -> bytes:
        """The text after the header."""
        return LINE_HEADER.match(self.line).group("rest")

    @property
    def from_kernel(self) -> bool:
        """True when the line's program is ``kernel``."""
        return LINE_HEADER.match(self.line).group("prog") == b"kernel"


def fixture_samples() -> list[Sample]:
    """Every line of the fixture file with its kernelJSON expectation."""
    out, expect = [], None
    for raw in FIXTURE.read_bytes().splitlines():
        if raw.startswith(b"# kernelJSON: "):
            expect = json.loads(raw[len(b"# kernelJSON: "):])
        elif raw.strip() and not raw.startswith(b"#"):
            assert expect is not None, raw
            out.append(Sample(raw, expect["kind"], expect["label"], expect["subject"],
                              expect["source"], expect["format"]))
            expect = None
    return out


SAMPLES = fixture_samples()
EVENTS = [s for s in SAMPLES if s.kind is not None]


def events_of(chunk: bytes) -> list[tuple[str, str, list[str], int]]:
    obs = scan_chunks([chunk], NOW).observations()
    return sorted((e["kind"], e["label"], e["subjects"], e["count"]) for e in obs["kernel_events"])


def test_the_fixture_covers_every_family_and_row_and_names_its_sources() -> None:
    assert {s.kind for s in EVENTS} == {k.kind for k in detect_syslog.KINDS} - {
        "syslog_errors", "novel_log_message"}
    rows_seen = {s.label for s in EVENTS}
    # oom_kill, segfault, thermal_throttling and link_down have their samples in test_syslog.py
    assert {e.label for e in KERNEL_EVENTS} - rows_seen <= {
        "oom_kill", "segfault", "thermal_throttling", "link_down", "disk_timeout"} - rows_seen
    assert all(s.source and s.format for s in SAMPLES)
    assert sum(1 for s in SAMPLES if s.kind is None) >= 8


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: f"{s.label}:{s.line[28:70]!r}")
def test_each_real_line_becomes_its_event_or_none(sample: Sample) -> None:
    got = events_of(sample.line + b"\n")
    if sample.kind is None:
        assert got == []
    else:
        assert got == [(sample.kind, sample.label, [sample.subject] if sample.subject else [], 1)]


def test_rows_that_lines_differ_only_in_hex_still_get_their_own_row() -> None:
    """A corrected and an uncorrected machine check look alike once hex digits are masked."""
    corrected = (b"Nov 23 10:00:00 box kernel: mce: [Hardware Error]: CPU 0: Machine Check: 0 Bank 4: "
                 b"9c2041000000011b\n")
    uncorrected = corrected.replace(b"9c2041000000011b", b"be00000000800400")
    got = events_of(corrected * 3 + uncorrected + corrected)
    assert got == [("hardware_error", "machine_check_corrected", ["0"], 4),
                   ("hardware_error", "machine_check_uncorrected", ["0"], 1)]


def test_loghub_linux_boot_chatter_is_no_kernel_event(corpus: Path) -> None:
    """76 real kernel lines (boot messages, "machine check reporting enabled") and no failure."""
    data = (corpus / "loghub" / "Linux" / "Linux_2k.log").read_bytes().replace(b"\r\n", b"\n")
    obs = scan_chunks([data + b"\n"], NOW).observations()
    assert obs["programs"]["kernel"] == 76 and obs["kernel_events"] == []


def _settings(make_settings: Any, path: Path, **kw: Any) -> Any:
    return make_settings(SYSLOG_PATH=str(path), SYSLOG_BACKEND="file", LOG_START_AT="start", **kw)


def test_every_family_through_real_rsyslog_in_three_formats(tmp_path: Path,
                                                            make_settings: Any) -> None:
    """logger -> rsyslogd -> three file formats -> the collector, every fixture message."""
    messages = [s.message.decode() for s in SAMPLES if s.from_kernel]
    daemon = Rsyslog(tmp_path / "rs").start()
    try:
        daemon.log(*messages, tag="kernel", priority="user.err")
        for name in ("traditional.log", "precise.log", "rfc5424.log"):
            daemon.wait_lines(name, len(messages))
    finally:
        daemon.stop()
    want = sorted((s.kind, s.label) for s in SAMPLES if s.kind and s.from_kernel)
    for name in ("traditional.log", "precise.log", "rfc5424.log"):
        result = syslog.collect(CollectContext(_settings(make_settings, daemon.path(name)), NOW, {}))
        got = sorted((e["kind"], e["label"]) for e in result.observations["kernel_events"]
                     for _ in range(e["count"]))
        assert got == want, name


def test_journal_trusts_kernel_lines_only_from_the_kernel_transport(tmp_path: Path,
                                                                    make_settings: Any) -> None:
    """The same messages from /dev/kmsg count; from `logger -t kernel` (syslog transport) not."""
    from tests.test_journal import build, entry

    real = [s for s in EVENTS if s.kind != KERNEL_EVENT][:12]
    entries = [entry(i, s.message.decode(), SYSLOG_IDENTIFIER="kernel", _TRANSPORT="kernel",
                     PRIORITY="3") for i, s in enumerate(real)]
    entries += [entry(100 + i, s.message.decode(), SYSLOG_IDENTIFIER="kernel",
                      _TRANSPORT=transport, _PID="4242", PRIORITY="2")
                for i, s in enumerate(real) for transport in ("syslog", "journal", "stdout")]
    folder = tmp_path / "journal"
    build(folder, "system", entries)
    settings = make_settings(SYSLOG_PATH=str(tmp_path / "none"), JOURNAL_DIRECTORY=str(folder),
                             LOG_START_AT="start")
    obs = syslog.collect(CollectContext(settings, NOW, {})).observations
    assert obs["backend"] == "journal" and obs["lines_read"] == len(entries)
    assert obs["programs"]["kernel"] == len(real)
    assert obs["programs"]["kernel(not_kmsg)"] == 3 * len(real)
    assert sum(e["count"] for e in obs["kernel_events"]) == len(real)


def detect(obs_lines: bytes, make_settings: Any, store: Any, tmp_path: Path) -> list:
    log = tmp_path / "syslog"
    log.write_bytes(obs_lines)
    settings = _settings(make_settings, log)
    result = syslog.collect(CollectContext(settings, NOW, {}))
    return detect_syslog.detect(result, DetectContext(settings, NOW, store))


# what a sysadmin expects of each family: (kind, the labels in one cycle, severity, floor)
POLICY = [
    ("filesystem_error", {"fs_read_only"}, Severity.HIGH, Severity.HIGH),
    ("filesystem_error", {"fs_errors_recorded"}, Severity.MEDIUM, Severity.NONE),
    ("disk_error", {"disk_timeout"}, Severity.HIGH, Severity.HIGH),
    ("disk_error", {"ata_error"}, Severity.MEDIUM, Severity.NONE),
    ("hardware_error", {"memory_corrected"}, Severity.LOW, Severity.NONE),
    ("hardware_error", {"memory_uncorrected"}, Severity.HIGH, Severity.HIGH),
    ("hardware_error", {"memory_corrected", "memory_uncorrected"}, Severity.HIGH, Severity.HIGH),
    ("kernel_hang", {"hung_task"}, Severity.MEDIUM, Severity.NONE),
    ("kernel_hang", {"hard_lockup"}, Severity.HIGH, Severity.HIGH),
    ("thermal_critical", {"critical_temperature"}, Severity.HIGH, Severity.HIGH),
    ("kernel_crash", {"kernel_panic"}, Severity.HIGH, Severity.HIGH),
]


@pytest.mark.parametrize("kind, labels, severity, floor", POLICY)
def test_each_family_gets_the_severity_and_floor_a_sysadmin_expects(
        kind: str, labels: set[str], severity: Severity, floor: Severity, make_settings: Any,
        store: Any, tmp_path: Path) -> None:
    lines = b"".join(s.line + b"\n" for s in EVENTS if s.kind == kind and s.label in labels)
    findings = detect(lines, make_settings, store, tmp_path)
    assert [(f.kind, f.key, f.severity, f.floor) for f in findings] == [
        (kind, kind, severity, floor)]
    assert set(findings[0].labels["event"].split(", ")) == labels
    assert findings[0].value == lines.count(b"\n") and findings[0].evidence


def test_a_crash_is_one_finding_with_every_line_of_it(make_settings: Any, store: Any,
                                                      tmp_path: Path) -> None:
    crash = [s for s in EVENTS if s.source.startswith("bcache bio BUG report")]
    findings = detect(b"".join(s.line + b"\n" for s in crash), make_settings, store, tmp_path)
    assert [f.kind for f in findings] == ["kernel_crash"]
    assert sorted(findings[0].labels["event"].split(", ")) == ["kernel_bug", "oops"]
    assert "oops (1)" in findings[0].summary and "kernel bug (1)" in findings[0].summary


def test_every_kind_has_a_what_to_do_text_and_is_a_one_off_event() -> None:
    kinds = {k.kind: k for k in detect_syslog.KINDS}
    for event in KERNEL_EVENTS:
        spec = kinds[event.kind]
        assert spec.event and len(spec.action) > 80
        assert Severity.parse(event.severity).rank <= spec.severity.rank
        assert Severity.parse(event.floor).rank <= spec.floor.rank


# comm-first kernel formats: what the kernel writes after a process name it did not choose
COMM_TAILS = [
    b" invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0",
    b": page allocation failure: order:0, mode:0x40cc0(GFP_KERNEL|__GFP_COMP), nodemask=(null)",
    b"[4242]: segfault at 0 ip 0000000000402669 sp 00007ffe203fb570 error 4 in x[400000+5000]",
    b" (4242): drop_caches: 3",
]


@pytest.mark.parametrize("tail", COMM_TAILS)
def test_a_process_named_like_any_failure_never_raises_one(tail: bytes) -> None:
    """Each real message's first 15 bytes as a process name, then a comm-first format."""
    for sample in EVENTS:
        comm = sample.message.split(b"] ")[-1][:15] if sample.message.startswith(b"[") \
            else sample.message[:15]
        found = kernel_events.match(comm + tail)
        assert found is None or found[0].kind == KERNEL_EVENT, (comm, found[0].label)


@hsettings(max_examples=300, deadline=None)
@given(comm=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
                    max_size=15), tail=st.sampled_from(COMM_TAILS))
def test_no_process_name_at_all_turns_a_comm_first_line_into_a_family_event(
        comm: str, tail: bytes) -> None:
    found = kernel_events.match(comm.encode()[:15] + tail)
    assert found is None or found[0].kind == KERNEL_EVENT


def test_untrusted_names_are_bounded_and_never_change_the_severity() -> None:
    name = "Kernel panic - not syncing: \x1b[31m" + "A" * 30      # a comm is 15 bytes at most
    line = f"{HEADER}INFO: task {name}:77 blocked for more than 120 seconds.\n".encode()
    obs = scan_chunks([line], NOW).observations()
    [event] = obs["kernel_events"]
    assert (event["kind"], event["label"], event["severity"]) == ("kernel_hang", "hung_task",
                                                                  "medium")
    assert event["subjects"] == ["Kernel panic - not syncing: ?[31m" + "A" * 30]
    longer = line.replace(b"A" * 30, b"A" * 500)              # no kernel writes that: no event
    assert scan_chunks([longer], NOW).observations()["kernel_events"] == []


def test_a_forged_kernel_line_in_another_programs_message_does_not_count() -> None:
    line = (b"Nov 23 10:00:00 box backup[42]: Nov 23 10:00:00 box kernel: EXT4-fs error (device "
            b"sda1): ext4_find_entry:1455: inode #2: comm ls: reading directory lblock 0\n")
    assert scan_chunks([line], NOW).observations()["kernel_events"] == []
