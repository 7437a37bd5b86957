"""The tailer: cursors, every rotation case, exactly-once accounting, bounded memory; real logrotate."""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from collectors.logreader.tail import Tail, cut_long_lines
from tests.rsyslog_fixture import Rsyslog, logrotate


def read(path: Path, cursor: dict[str, Any] | None, **kw: Any) -> tuple[bytes, dict, dict]:
    """One cycle: everything the tail hands out, its next cursor (JSON round-tripped), its stats."""
    tail = Tail(path, cursor, **kw)
    data = b"".join(tail.chunks())
    return data, json.loads(json.dumps(tail.cursor)), tail.stats


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def test_first_run_end_skips_old_lines_but_not_a_half_written_one(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_bytes(b"old 1\nold 2\nhalf")
    data, cursor, stats = read(log, None, start_at="end")
    assert data == b"" and stats["events"] == ["first_run_end"] and cursor["offset"] == 12
    append(log, b" written\nnew\n")
    data, cursor, _ = read(log, cursor)
    assert data == b"half written\nnew\n"


def test_first_run_start_reads_whole_and_holds_back_the_unterminated_line(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_bytes(b"a\nb\npart")
    data, cursor, stats = read(log, None, start_at="start")
    assert data == b"a\nb\n" and stats["lines"] == 2 and cursor["offset"] == 4
    data, cursor, _ = read(log, cursor)
    assert data == b""
    append(log, b"ial\n")
    assert read(log, cursor)[0] == b"partial\n"


def test_rename_and_create_finishes_the_old_file_then_reads_the_new(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_bytes(b"1\n")
    _, cursor, _ = read(log, None, start_at="start")
    append(log, b"2\n3\n")
    os.rename(log, tmp_path / "syslog.1")
    log.write_bytes(b"4\n")
    data, cursor, stats = read(log, cursor)
    assert data == b"2\n3\n4\n" and stats["events"] == ["rotated"]
    assert stats["files"] == [str(tmp_path / "syslog.1"), str(log)]
    assert read(log, cursor)[0] == b""


def test_dateext_rotation_is_found_by_inode(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_bytes(b"1\n")
    _, cursor, _ = read(log, None, start_at="start")
    append(log, b"2\n")
    os.rename(log, tmp_path / "syslog-20261123")
    log.write_bytes(b"3\n")
    assert read(log, cursor)[0] == b"2\n3\n"


def test_copytruncate_reads_the_rest_from_the_copy(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_bytes(b"line 1 with some text\n")
    _, cursor, _ = read(log, None, start_at="start")
    append(log, b"line 2\n")
    shutil.copyfile(log, tmp_path / "syslog.1")
    os.truncate(log, 0)
    append(log, b"line 3\n")
    data, cursor, stats = read(log, cursor)
    assert data == b"line 2\nline 3\n" and stats["events"] == ["copytruncate"]


def test_truncation_without_a_copy_reads_from_zero(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_bytes(b"aaaa\nbbbb\n")
    _, cursor, _ = read(log, None, start_at="start")
    os.truncate(log, 0)
    append(log, b"c\n")
    data, _, stats = read(log, cursor)
    assert data == b"c\n" and stats["events"] == ["truncated"]


def test_rewritten_in_place_beyond_the_offset_is_caught_by_the_fingerprint(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_bytes(b"first content\n")
    _, cursor, _ = read(log, None, start_at="start")
    with open(log, "r+b") as handle:           # same inode, longer, different first bytes
        handle.write(b"other content that is longer\n")
    data, _, stats = read(log, cursor)
    assert data == b"other content that is longer\n" and stats["events"] == ["truncated"]


def test_deleted_and_recreated_reads_the_new_file_from_zero(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_bytes(b"x\n")
    _, cursor, _ = read(log, None, start_at="start")
    (tmp_path / "new").write_bytes(b"y\n")          # exists alongside: surely another inode
    log.unlink()
    os.rename(tmp_path / "new", log)
    data, _, stats = read(log, cursor)
    assert data == b"y\n" and stats["events"] == ["rotated_lost"]


def test_a_recycled_inode_is_not_mistaken_for_the_old_file(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_bytes(b"old line one\n")
    _, cursor, _ = read(log, None, start_at="start")
    log.unlink()
    log.write_bytes(b"a new file, longer than the old one\n")   # may get the same inode back
    data, _, stats = read(log, cursor)
    assert data == b"a new file, longer than the old one\n"
    assert stats["events"] in (["rotated_lost"], ["truncated"])


def test_missing_for_a_while_then_back(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_bytes(b"1\n")
    _, cursor, _ = read(log, None, start_at="start")
    append(log, b"2\n")
    os.rename(log, tmp_path / "syslog.1")                  # rotated, not re-created yet
    data, cursor, stats = read(log, cursor)
    assert data == b"2\n" and stats["events"] == ["rotated_not_recreated"]
    (tmp_path / "syslog.1").unlink()                       # and the old one is gone too
    data, cursor, stats = read(log, cursor)
    assert data == b"" and stats["events"] == ["missing"]
    log.write_bytes(b"3\n")
    assert read(log, cursor)[0] == b"3\n"


def test_missing_at_first_run_reads_the_file_whole_when_it_appears(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    data, cursor, stats = read(log, None, start_at="end")
    assert data == b"" and stats["events"] == ["missing_at_first_run"]
    log.write_bytes(b"born\n")
    assert read(log, cursor)[0] == b"born\n"


def test_a_crash_replays_from_the_last_committed_cursor(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_bytes(b"a\n")
    _, committed, _ = read(log, None, start_at="start")
    append(log, b"b\nc\n")
    first, _, _ = read(log, committed)        # the cycle crashed: its cursor was never committed
    again, _, _ = read(log, committed)
    assert first == again == b"b\nc\n"


def test_long_lines_are_cut_counted_and_memory_stays_bounded(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_bytes(b"short\n" + b"x" * (3 << 20) + b"\nafter\n" + b"y" * 5000 + b"\n")
    tail = Tail(log, None, start_at="start", max_line_bytes=1024, chunk_bytes=64 << 10)
    sizes, data = [], b""
    for chunk in tail.chunks():
        sizes.append(len(chunk))
        data += chunk
    assert data.split(b"\n")[:-1] == [b"short", b"x" * 1024, b"after", b"y" * 1024]
    assert tail.stats["long_lines"] == 2 and tail.stats["lines"] == 4
    assert max(sizes) <= (64 << 10) + 1024 + 1
    assert tail.cursor["offset"] == log.stat().st_size


def test_an_unterminated_giant_line_is_cut_once_and_skipped_to_its_end(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    log.write_bytes(b"z" * 10000)
    data, cursor, stats = read(log, None, start_at="start", max_line_bytes=512, chunk_bytes=4096)
    assert data == b"z" * 512 + b"\n" and stats["long_lines"] == 1 and cursor["skip"]
    append(log, b"zzz tail of it\nnext\n")
    assert read(log, cursor, max_line_bytes=512)[0] == b"next\n"


def test_cut_long_lines_finds_every_long_line() -> None:
    chunk = b"a" * 100 + b"\n" + b"b" * 3000 + b"\nc\n" + b"d" * 2049 + b"\n" + b"e" * 2048 + b"\n"
    out, cut = cut_long_lines(chunk, 2048)
    assert cut == 2
    assert out.split(b"\n")[:-1] == [b"a" * 100, b"b" * 2048, b"c", b"d" * 2048, b"e" * 2048]


def test_the_byte_budget_stops_at_a_line_and_resumes_next_cycle(tmp_path: Path) -> None:
    log = tmp_path / "syslog"
    lines = [b"line %05d\n" % i for i in range(5000)]
    log.write_bytes(b"".join(lines))
    got, cursor, cycles = b"", None, 0
    while True:
        data, cursor, stats = read(log, cursor, start_at="start", max_bytes=7000, chunk_bytes=3000)
        got += data
        cycles += 1
        if "budget_exhausted" not in stats["events"]:
            break
    assert got == b"".join(lines) and cycles > 5


@pytest.mark.parametrize("mode", ["rename", "copytrunc"])
def test_random_rotations_deliver_every_line_exactly_once(tmp_path: Path, mode: str) -> None:
    """Appends, half-written lines, rotations (several between reads) and reads in random order.

    One rotation mode per file, as logrotate does (create or copytruncate).
    """
    rng = random.Random(20261123)
    log = tmp_path / "syslog"
    log.write_bytes(b"")
    written, got, pending = [], b"", b""
    _, cursor, _ = read(log, None, start_at="start")       # the agent runs before the rotations
    for step in range(400):
        action = rng.choice(["append", "append", "append", "read", "read", mode])
        if action == "append":                 # whole lines, the last one possibly half written
            lines = [b"Nov 23 10:00:00 h p: msg %d %s\n" % (step * 10 + i, b"x" * rng.randint(0, 80))
                     for i in range(rng.randint(1, 5))]
            written += lines
            buf = pending + b"".join(lines)
            keep = rng.randint(0, 12) if rng.random() < 0.3 else 0
            append(log, buf[:len(buf) - keep])
            pending = buf[len(buf) - keep:]
        elif action == "read":
            data, cursor, _ = read(log, cursor, start_at="start")
            got += data
        else:                                  # writers finish their line before a rotation
            append(log, pending)
            pending = b""
            for old in sorted(tmp_path.glob("syslog.*"), key=lambda p: -int(p.suffix[1:])):
                os.rename(old, old.with_name(f"syslog.{int(old.suffix[1:]) + 1}"))
            if action == "rename":
                os.rename(log, tmp_path / "syslog.1")
                log.write_bytes(b"")
            else:
                shutil.copyfile(log, tmp_path / "syslog.1")
                os.truncate(log, 0)
    append(log, pending)
    got += read(log, cursor)[0]
    assert got == b"".join(written)


@pytest.mark.parametrize("mode", ["create", "copytruncate"])
def test_real_rsyslog_and_logrotate_lose_and_double_nothing(tmp_path: Path, mode: str) -> None:
    """rsyslog writes logger messages; logrotate rotates between reads; every line once."""
    daemon = Rsyslog(tmp_path / "rs").start()
    log = daemon.path("traditional.log")
    try:
        daemon.log(*[f"before {i}" for i in range(5)])
        daemon.wait_lines("traditional.log", 5)
        got, cursor, _ = read(log, None, start_at="start")
        sent = 5
        for rnd in range(3):
            daemon.log(*[f"round {rnd} pre {i}" for i in range(4)])
            sent += 4
            daemon.wait_lines("traditional.log", _count_since_rotation(log, sent, tmp_path))
            logrotate(tmp_path, log, mode, daemon)
            daemon.log(*[f"round {rnd} post {i}" for i in range(3)])
            sent += 3
            _wait_total(daemon, log, sent)
            data, cursor, stats = read(log, cursor)
            assert ("rotated" if mode == "create" else "copytruncate") in stats["events"]
            got += data
    finally:
        daemon.stop()
    messages = [line.split(b": ", 1)[1] for line in got.splitlines()]
    expected = [f"before {i}".encode() for i in range(5)] + [
        f"round {r} {p} {i}".encode() for r in range(3)
        for p, k in (("pre", 4), ("post", 3)) for i in range(k)]
    assert messages == expected


def _all_lines(log: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in log.parent.glob(log.name + "*")
               if p.is_file() and not p.name.endswith(".conf"))


def _count_since_rotation(log: Path, sent: int, folder: Path) -> int:
    """How many lines the live file must hold once ``sent`` lines exist in all files."""
    rotated = sum(p.read_bytes().count(b"\n") for p in log.parent.glob(log.name + ".*"))
    return sent - rotated


def _wait_total(daemon: Rsyslog, log: Path, total: int) -> None:
    import time
    deadline = time.monotonic() + 10
    while _all_lines(log) < total:
        assert time.monotonic() < deadline, f"only {_all_lines(log)} of {total} lines written"
        time.sleep(0.02)
