"""The syslog collector and detector: real rsyslog files, loghub, real kernel lines, bad input."""
from __future__ import annotations

import collections
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from analysis import detect_syslog
from collectors import syslog
from collectors.kernel_events import KERNEL_EVENTS
from collectors.syslog import scan_chunks
from foundation.context import CollectContext, DetectContext
from foundation.model import CollectResult, Sample, Severity
from tests.rsyslog_fixture import Rsyslog

NOW = time.mktime((2026, 11, 23, 12, 0, 0, 0, 0, -1))

# Real kernel lines, each copied from a public bug report (the URL says where), one per event row.
KERNEL_SAMPLES = [
    # https://github.com/docker/for-linux/issues/1001
    ("oom_kill", "python3", b"May 15 23:09:30 ubuntu-s-1vcpu-2gb-ams3-01 kernel: [  518.050606] Out "
     b"of memory: Killed process 15784 (python3) total-vm:11964kB, anon-rss:4288kB, "
     b"file-rss:3028kB, shmem-rss:0kB"),
    ("oom_kill", "(resolved)", b"May 15 23:09:30 ubuntu-s-1vcpu-2gb-ams3-01 kernel: [  518.061172] "
     b"Out of memory: Killed process 15925 ((resolved)) total-vm:168424kB, anon-rss:4064kB, "
     b"file-rss:3584kB, shmem-rss:0kB"),
    # https://github.com/cPanelSSP/SSP/issues/76 (CentOS 6 wording)
    ("oom_kill", "mysqld", b"Mar  2 17:35:10 server1 kernel: [2858609.598568] Killed process 11726, "
     b"UID 498, (mysqld) total-vm:7823732kB, anon-rss:2539268kB, file-rss:768kB"),
    # https://github.com/open-ch/log-user-session/issues/15
    ("segfault", "log-user-sessio", b"Apr  4 05:00:12 test-f kernel: log-user-sessio[66297]: "
     b"segfault at 0 ip 0000000000402669 sp 00007ffe203fb570 error 4 in "
     b"log-user-session[400000+5000]"),
    # https://github.com/dlundquist/sniproxy/issues/21
    ("segfault", "sniproxy", b"Sep  2 05:57:32 localhost kernel: [ 2331.972494] sniproxy[28708]: "
     b"segfault at 0 ip (null) sp bfebcbe0 error 14 in sniproxy[8048000+6000]"),
    # https://github.com/Requiem4Eternity/Appstream/issues/107
    ("io_error", "sdc", b"Jun 14 08:04:35 k8snode230 kernel: print_req_error: I/O error, dev sdc, "
     b"sector 1098288304 flags 0"),
    # https://github.com/raspberrypi/linux/issues/703
    ("io_error", "dm-1", b"Nov 22 17:46:18 sentinel.donadio.be kernel: Buffer I/O error on device "
     b"dm-1, logical block 14403801"),
    ("io_error", "dm-1", b"Nov 22 17:46:18 sentinel.donadio.be kernel: EXT4-fs warning (device "
     b"dm-1): ext4_end_bio:316: I/O error -5 writing to inode 10223621 (offset 33554432 size "
     b"8388608 starting block 14403824)"),
    # https://github.com/intel/thermal_daemon/issues/173 (dmesg line under a syslog header)
    ("thermal_throttling", "CPU3", b"Nov 22 10:00:00 box kernel: CPU3: Core temperature above "
     b"threshold, cpu clock throttled (total events = 3816)"),
    # https://github.com/erpalma/throttled/issues/239
    ("thermal_throttling", "CPU1", b"Feb 15 10:00:00 box kernel: mce: CPU1: Package temperature "
     b"above threshold, cpu clock throttled (total events = 12705)"),
    # https://github.com/PartialVolume/shredos.x86_64/issues/212
    ("link_down", "eth0", b"Nov 22 10:00:00 box kernel: [28432.122502] e1000e 0000:00:1f.6 eth0: "
     b"NIC Link is Down"),
]


def settings_for(make_settings: Any, path: Path, **kw: Any) -> Any:
    return make_settings(SYSLOG_PATH=str(path), SYSLOG_BACKEND="file", LOG_START_AT="start", **kw)


def collect(settings: Any, state: dict[str, Any] | None = None, now: float = NOW) -> CollectResult:
    return syslog.collect(CollectContext(settings, now, state or {}))


def detect(result: CollectResult, store: Any, settings: Any, now: float = NOW) -> list:
    """Run the detector and commit what it remembered, as the cycle does."""
    dctx = DetectContext(settings, now, store)
    findings = detect_syslog.detect(result, dctx)
    with store.transaction() as tx:
        for namespace, keys in dctx.remembered.items():
            tx.remember(namespace, keys, now)
        for name, state in dctx.states.items():
            tx.set_collector_state(f"detect:{name}", state, now)
    return findings


def test_real_rsyslog_in_three_formats(tmp_path: Path, make_settings: Any) -> None:
    """logger -> rsyslogd -> traditional, high-precision and RFC5424 files -> the collector."""
    daemon = Rsyslog(tmp_path / "rs").start()
    try:
        daemon.log("started fine", "warning: disk 91% full", tag="backupd", priority="daemon.info")
        daemon.log("cannot open /dev/sdz", tag="backupd", priority="daemon.err")
        daemon.log("with structured data", tag="app2", priority="user.crit",
                   sd=("ex@32473", 'k="v"'))
        for name in ("traditional.log", "precise.log", "rfc5424.log"):
            daemon.wait_lines(name, 4)
    finally:
        daemon.stop()
    results = {}
    for name in ("traditional.log", "precise.log", "rfc5424.log"):
        obs = collect(settings_for(make_settings, daemon.path(name))).observations
        assert obs["lines_read"] == 4 and obs["malformed_lines"] == 0, (name, obs)
        assert obs["programs"] == {"backupd": 3, "app2": 1}, name
        results[name] = obs
    # the PRI of RFC5424 lines gives the real severities ...
    assert results["rfc5424.log"]["severity_counts"] == {"crit": 1, "err": 1, "info": 2}
    # ... other formats infer a coarse level from keywords (the err line says nothing alarming)
    assert results["precise.log"]["severity_counts"] == {"warning": 1, "info": 3}
    assert results["traditional.log"]["backend"] == "file"


def test_loghub_linux_counts_every_line_and_program(corpus: Path, tmp_path: Path,
                                                    make_settings: Any) -> None:
    log = tmp_path / "messages"
    log.write_bytes((corpus / "loghub" / "Linux" / "Linux_2k.log").read_bytes() + b"\r\n")
    rows = list(csv.DictReader((corpus / "loghub" / "Linux" / "Linux_2k.log_structured.csv")
                               .open(encoding="utf-8")))
    expected = collections.Counter(r["Component"] for r in rows)
    obs = collect(settings_for(make_settings, log)).observations
    assert obs["lines_read"] == 2000 and obs["malformed_lines"] == 0
    assert obs["program_count"] == len(expected) == 30
    assert obs["programs"] == dict(expected.most_common(20))
    # 43 "logrotate: ALERT exited abnormally" lines -> alert; auth failures -> err
    assert obs["severity_counts"]["alert"] == 43
    assert obs["errors_by_program"]["sshd(pam_unix)"] == sum(
        1 for r in rows if r["Component"] == "sshd(pam_unix)" and "fail" in r["Content"].lower())


def test_bad_input_is_counted_not_fatal_and_memory_stays_bounded(tmp_path: Path,
                                                                 make_settings: Any) -> None:
    good = b"Nov 23 10:00:01 host app[1]: fine\n"
    log = tmp_path / "syslog"
    log.write_bytes(good + b"Nov 23 10:00:02 host app[1]: caf\xe9 latin-1\n" + good
                    + b"Nov 23 10:00:03 host app[1]: nul\x00byte\n"
                    + b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\n"
                    + b"Nov 23 10:00:04 host app[1]: " + b"A" * (2 << 20) + b"\n" + good)
    obs = collect(settings_for(make_settings, log, LOG_MAX_LINE_BYTES=4096)).observations
    assert obs["lines_read"] == 9 and obs["long_lines"] == 1
    # invalid UTF-8, the NUL line, the 3 PNG junk lines; the cut megabyte line keeps its header
    assert obs["malformed_lines"] == 5
    assert obs["programs"] == {"app": 4}
    assert max(len(t["sample"]) for t in obs["new_templates"]) <= syslog.MAX_SAMPLE_CHARS


@pytest.mark.parametrize("label, subject, line", KERNEL_SAMPLES)
def test_each_kernel_event_row_has_a_real_sample(label: str, subject: str, line: bytes) -> None:
    obs = scan_chunks([line + b"\n"], NOW).observations()
    assert [(e["label"], e["subjects"], e["count"]) for e in obs["kernel_events"]] == [
        (label, [subject], 1)]


def test_every_kernel_event_row_is_covered_by_a_sample() -> None:
    """Each row has a real line here or in tests/fixtures/kernel (tests/test_kernel_events.py)."""
    from tests.test_kernel_events import fixture_samples

    covered = {label for label, _, _ in KERNEL_SAMPLES} | {s.label for s in fixture_samples()}
    assert {e.label for e in KERNEL_EVENTS} <= covered


def test_kernel_words_outside_kernel_lines_are_not_events() -> None:
    lines = b"Nov 23 10:00:01 host myapp[3]: Killed process 12 (x) total-vm:1kB by the user\n"
    assert scan_chunks([lines], NOW).observations()["kernel_events"] == []


def test_kernel_event_findings_take_the_row_severity(make_settings: Any, store: Any,
                                                     tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_bytes(b"\n".join(line for _, _, line in KERNEL_SAMPLES) + b"\n")
    settings = settings_for(make_settings, log)
    findings = detect(collect(settings), store, settings)
    kernel = {f.key: f for f in findings if f.kind == "kernel_event"}
    assert set(kernel) == {"oom_kill", "segfault", "thermal_throttling", "link_down"}
    assert kernel["segfault"].severity is Severity.LOW
    assert kernel["oom_kill"].labels["subjects"] == "python3, (resolved), mysqld"
    # I/O errors are their own family now, with a floor: a failing disk is never talked down
    disk = [f for f in findings if f.kind == "disk_error"]
    assert len(disk) == 1 and disk[0].severity is Severity.HIGH and disk[0].floor is Severity.HIGH
    assert disk[0].value == 3.0 and len(disk[0].evidence) == 3
    assert disk[0].labels["subjects"] == "sdc, dm-1"


def test_templates_mask_variable_parts_and_group_look_alike_lines() -> None:
    chunk = (b"Nov 23 10:00:01 h sshd[1]: Connection closed by 10.0.0.1 port 22 [preauth]\n"
             b"Nov 23 10:00:02 h sshd[22]: Connection closed by 192.168.1.20 port 41234 [preauth]\n"
             b'Nov 23 10:00:03 h app[3]: opened "/var/lib/x.db" id=deadbeef00\n'
             b'Nov 23 10:00:04 h app[4]: opened "/srv/other file" id=0badcafe99\n'
             b"Nov 23 10:00:05 h app[5]: something else entirely\n")
    obs = scan_chunks([chunk], NOW).observations()
    templates = {t["template"]: t["count"] for t in obs["new_templates"]}
    assert templates == {"sshd: Connection closed by <*> port <*> [preauth]": 2,
                         "app: opened <*> id=<*>": 2, "app: something else entirely": 1}


def test_known_templates_are_not_reported_again() -> None:
    line = b"Nov 23 10:00:01 h cron[1]: job 1 done\n"
    first = scan_chunks([line], NOW)
    assert len(first.templates) == 1
    again = scan_chunks([line.replace(b"1 done", b"2 done")], NOW, first.templates_seen)
    assert again.templates == {} and again.templates_seen == first.templates_seen


def test_novel_messages_learned_first_then_reported_capped(make_settings: Any, store: Any,
                                                           tmp_path: Path, corpus: Path) -> None:
    log = tmp_path / "messages"
    log.write_bytes((corpus / "loghub" / "Linux" / "Linux_2k.log").read_bytes() + b"\r\n")
    settings = settings_for(make_settings, log)
    first = collect(settings)
    assert detect(first, store, settings) == []           # the first run only learns
    with open(log, "ab") as handle:                       # known messages with other numbers
        handle.write(b"Jul 27 14:42:00 combo su(pam_unix)[9999]: session opened for user news "
                     b"by (uid=0)\n")
        for i in range(8):                                # and eight new ones
            handle.write(b"Jul 27 14:42:01 combo newd[%d]: brand new message kind %s\n"
                         % (i, b"abcdefghij"[i:i + 1] * (i + 1)))
    second = collect(settings, dict(first.state or {}))
    findings = [f for f in detect(second, store, settings) if f.kind == "novel_log_message"]
    assert len(findings) == detect_syslog.MAX_NOVEL_FINDINGS
    assert all(f.severity is Severity.LOW and f.labels["program"] == "newd" for f in findings)
    assert "3 more new messages" in findings[-1].summary
    third = collect(settings, dict(second.state or {}))
    assert detect(third, store, settings) == []


def test_error_rate_finding_only_against_a_trusted_baseline(make_settings: Any, store: Any,
                                                            tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_bytes(b"")
    settings = settings_for(make_settings, log)
    state = dict(collect(settings).state or {})
    noisy = b"".join(b"Nov 23 11:00:%02d h db[%d]: query failed: timeout\n" % (i % 60, i)
                     for i in range(200))
    with open(log, "ab") as handle:
        handle.write(noisy)
    result = collect(settings, state)
    assert result.observations["errors"] == 200
    assert next(s for s in result.samples if s.metric == "syslog.errors").value == 200.0
    assert [f for f in detect(result, store, settings) if f.kind == "syslog_errors"] == []
    with store.transaction() as tx:                       # a month of quiet cycles at this hour
        tx.add_samples(NOW - 86400, [Sample("syslog.errors", v, by_hour=True)
                                     for v in [2.0, 3.0, 1.0, 4.0, 2.0] * 10])
    findings = [f for f in detect(result, store, settings) if f.kind == "syslog_errors"]
    assert len(findings) == 1 and findings[0].severity is Severity.MEDIUM
    assert findings[0].labels["top_programs"] == "db (200)" and findings[0].baseline["n"] == 50
    assert "query failed" in findings[0].evidence[0]


def test_first_run_and_unavailable_give_no_samples(make_settings: Any, tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_bytes(b"Nov 23 10:00:01 h a: x\n")
    first = collect(make_settings(SYSLOG_PATH=str(log), SYSLOG_BACKEND="file"))
    assert first.samples == () and first.observations["events"] == ["first_run_end"]
    missing = collect(make_settings(SYSLOG_PATH=str(tmp_path / "nope"), SYSLOG_BACKEND="file"))
    assert not missing.available and "does not exist" in (missing.note or "")


def test_the_agent_runs_the_syslog_collector_end_to_end(tmp_path: Path, corpus: Path) -> None:
    """Two real agent cycles: the first learns, the second reports an OOM kill and a new message."""
    log = tmp_path / "messages"
    log.write_bytes((corpus / "loghub" / "Linux" / "Linux_2k.log").read_bytes() + b"\r\n")
    env = {**os.environ, "MONITOR_COLLECTORS": "syslog", "MONITOR_SYSLOG_PATH": str(log),
           "MONITOR_LOG_START_AT": "start", "MONITOR_DATA_DIR": str(tmp_path / "data"),
           "MONITOR_SYSLOG_BACKEND": "file"}

    def cycle() -> dict[str, Any]:
        out = subprocess.run([sys.executable, "monitor_agent.py", "--once", "--json"], env=env,
                             capture_output=True, timeout=120, check=True)
        return json.loads(out.stdout)

    first = cycle()
    assert first["observations"]["syslog"]["lines_read"] == 2000 and first["findings"] == []
    with open(log, "ab") as handle:
        handle.write(KERNEL_SAMPLES[0][2] + b"\n")
    second = cycle()
    kinds = sorted(f["kind"] for f in second["findings"])
    assert kinds == ["kernel_event", "novel_log_message"]
    assert second["observations"]["syslog"]["lines_read"] == 1


def test_the_journal_backend_gives_real_priorities(make_settings: Any, tmp_path: Path) -> None:
    """No syslog file (Debian 12 without rsyslog): auto reads a real journal folder instead."""
    from tests.test_journal import build, entry

    folder = tmp_path / "journal"
    build(folder, "system", [
        entry(0, "Started Daily apt download activities.", SYSLOG_IDENTIFIER="systemd",
              _PID="1", PRIORITY="6"),
        entry(1, "Out of memory: Killed process 15784 (python3) total-vm:11964kB, anon-rss:4288kB",
              SYSLOG_IDENTIFIER="kernel", _TRANSPORT="kernel", PRIORITY="3"),
        entry(2, "all fine here", SYSLOG_IDENTIFIER="app", _PID="5", PRIORITY="2")])
    settings = make_settings(SYSLOG_PATH=str(tmp_path / "no-syslog"), JOURNAL_DIRECTORY=str(folder),
                             LOG_START_AT="start")
    result = collect(settings)
    obs = result.observations
    assert obs["backend"] == "journal" and obs["lines_read"] == 3 and obs["malformed_lines"] == 0
    assert obs["severity_counts"] == {"crit": 1, "err": 1, "info": 1} and obs["errors"] == 2
    assert [e["label"] for e in obs["kernel_events"]] == ["oom_kill"]
    assert result.state and result.state["log"]["journal"].startswith("s=")
