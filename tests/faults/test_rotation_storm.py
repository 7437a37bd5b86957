"""A rotation storm against collectors.logreader.tail.Tail with exact line accounting.

Each random sequence appends numbered lines (sometimes leaving the last one half-written), rotates
in create mode (rename to .1, new file), rotates with copytruncate, deletes and re-creates the log,
leaves it missing for a while, and aborts reads half-way (a crash: the cursor is not kept), all at
random between reads and between the chunks of one read. The cursor goes through JSON after every
read, as the store keeps it. The lines read must be the lines written, each exactly once.

What the tailer cannot survive is not done (docs/reliability.md, "Documented limits"): deleting a file while
any line is unread, more than MAX_ROTATIONS rotations between two reads, rotating a re-created file
before it was read once (it may carry the deleted file's inode number), and a copytruncate while a
line is half-written or before anything of the file was read (the cursor has no fingerprint).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collectors.logreader.tail import Tail

SEED = 8008
SEQUENCES = 1000
STEPS = (15, 45)
BUDGET_S = 120.0
ROTATE_KEEP = 9
MAX_ROTATIONS = 3            # between two reads

pytestmark = pytest.mark.faults


class Storm:
    """One random sequence: the writer, the rotations and the reader, with their bookkeeping."""

    def __init__(self, folder: Path, rng: random.Random) -> None:
        self.rng = rng
        self.path = folder / "app.log"
        self.path.touch()
        self.cursor: dict[str, Any] | None = None
        self.written: Counter[bytes] = Counter()
        self.read: Counter[bytes] = Counter()
        self.number = 0
        self.partial: tuple[Path, bytes] | None = None  # (file, rest of the half-written line)
        self.rotations = 0         # rotations since the last kept cursor
        self.appended = False      # lines appended since the last kept cursor
        self.deleted = False       # deleted, and the new file not read since
        self.ops: Counter[str] = Counter()
        self.chunk_bytes = rng.choice([7, 64, 300, 4096])

    # -- the writer -------------------------------------------------------------------------------

    def _line(self) -> bytes:
        self.number += 1
        return f"L{self.number:06d} {'x' * self.rng.randint(0, 60)}".encode()

    def append(self) -> None:
        """Append 1-40 whole lines to the log (finishing a half-written one first)."""
        if not self.path.exists():
            return
        out = b""
        if self.partial is not None:
            where, rest = self.partial
            if where != self.path:
                self._finish_partial()
            else:
                out, self.partial = rest, None
        lines = [self._line() for _ in range(self.rng.randint(1, 40))]
        self.written.update(lines)
        out += b"".join(line + b"\n" for line in lines)
        if self.rng.random() < 0.3:
            line = self._line()
            self.written[line] += 1
            cut = self.rng.randint(1, len(line))
            out += line[:cut]
            self.partial = (self.path, line[cut:] + b"\n")
        with open(self.path, "ab") as handle:
            handle.write(out)
        self.appended = True
        self.ops["append"] += 1

    def _finish_partial(self) -> None:
        if self.partial is not None:
            where, rest = self.partial
            with open(where, "ab") as handle:
                handle.write(rest)
            self.partial = None

    # -- rotations ----------------------------------------------------------------------------------

    def _shift(self) -> None:
        """app.log.N -> app.log.N+1 (logrotate's numbering, nine kept)."""
        for n in range(ROTATE_KEEP - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))

    def _can_rotate(self) -> bool:
        if self.rotations >= MAX_ROTATIONS or self.deleted or not self.path.exists():
            return False
        if self.cursor is None or self.cursor.get("ino") is None:
            return not self.appended
        st = os.stat(self.path)
        return (st.st_dev, st.st_ino) == (self.cursor["dev"], self.cursor["ino"])

    def create_rotate(self) -> None:
        """logrotate's create mode: shift, rename to .1, create a new log (the writer ends its line)."""
        if not self._can_rotate():
            return
        self._shift()
        rotated = self.path.with_name(self.path.name + ".1")
        os.rename(self.path, rotated)
        if self.partial is not None:
            self.partial = (rotated, self.partial[1])
            self._finish_partial()        # the writer finishes its line in the file it has open
        if self.rng.random() < 0.7:
            self.path.touch()             # else the log stays missing until recreate()
        self.rotations += 1
        self.ops["create_rotate"] += 1

    def copytruncate(self) -> None:
        """logrotate's copytruncate: copy to .1, then truncate; nothing is written in between."""
        if not self._can_rotate() or self.partial is not None:
            return
        if not (self.cursor or {}).get("fp_len"):
            return                          # nothing read yet: no cursor can recognise the copy
        self._shift()
        shutil.copyfile(self.path, self.path.with_name(self.path.name + ".1"))
        os.truncate(self.path, 0)
        self.rotations += 1
        self.ops["copytruncate"] += 1

    def delete(self) -> None:
        """Delete the log once everything in it was read; it stays missing until recreate()."""
        if (self.rotations or not self._can_rotate() or self.partial is not None
                or self.written != self.read):     # unread lines anywhere: no tailer can help
            return
        os.unlink(self.path)
        # the next file may get the deleted one's inode number: nothing rotates until it was read
        self.deleted = True
        self.ops["delete"] += 1

    def recreate(self) -> None:
        """The log comes back (a new, empty file)."""
        if self.path.exists():
            return
        self.path.touch()
        self.ops["recreate"] += 1

    # -- the reader ---------------------------------------------------------------------------------

    def _tail(self) -> Tail:
        return Tail(self.path, self.cursor, start_at="start", max_line_bytes=4096,
                    chunk_bytes=self.chunk_bytes)

    def _take(self, chunks: Iterator[bytes], into: list[bytes], count: int | None) -> bool:
        """Take ``count`` chunks (all when None); True when the read is exhausted."""
        for taken, chunk in enumerate(chunks, start=1):
            assert chunk.endswith(b"\n"), chunk[-80:]
            into.extend(chunk.split(b"\n")[:-1])
            if count is not None and taken >= count:
                return False
        return True

    def read_all(self, meddle: bool = True) -> None:
        """One read; maybe with writes and rotations between its chunks; maybe abandoned."""
        present = self.path.exists()
        tail = self._tail()
        chunks = tail.chunks()
        lines: list[bytes] = []
        roll = self.rng.random() if meddle else 1.0
        if roll < 0.35:                                   # meddle between the chunks of a read
            done = self._take(chunks, lines, self.rng.randint(1, 3))
            if not done:
                self.ops["mid_read"] += 1
                for _ in range(self.rng.randint(1, 3)):
                    self.rng.choice([self.append, self.create_rotate, self.copytruncate,
                                     self.delete, self.append])()
        elif roll < 0.45:                                 # a crash mid-read: nothing is kept
            self._take(chunks, lines, self.rng.randint(1, 3))
            chunks.close()
            self.ops["aborted_read"] += 1
            return
        self._take(chunks, lines, None)
        self.read.update(lines)
        self.cursor = json.loads(json.dumps(tail.cursor))
        self.rotations = 0
        self.appended = False
        self.deleted = self.deleted and not (present and self.path.exists())
        self.ops["read"] += 1
        self.ops.update(f"event:{e}" for e in tail.stats["events"])

    def finish(self) -> None:
        """End the sequence: the half-written line completed, the log present, two clean reads."""
        self._finish_partial()
        if not self.path.exists():
            self.read_all(meddle=False)
            self.recreate()
        self.read_all(meddle=False)
        self.read_all(meddle=False)

    def step(self) -> None:
        """One random action between reads."""
        action = self.rng.choices(
            [self.append, self.read_all, self.create_rotate, self.copytruncate, self.delete,
             self.recreate], weights=[5, 4, 1, 1, 0.5, 1])[0]
        action()


def test_rotation_storm_reads_every_line_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    totals: Counter[str] = Counter()
    lines = 0
    started = time.monotonic()
    for number in range(SEQUENCES):
        assert time.monotonic() - started < BUDGET_S, f"budget exceeded at sequence {number}"
        seed = rng.randrange(2**32)
        folder = tmp_path / f"s{number}"
        folder.mkdir()
        storm = Storm(folder, random.Random(seed))
        storm.read_all(meddle=False)
        for _ in range(storm.rng.randint(*STEPS)):
            storm.step()
        storm.finish()
        lost = storm.written - storm.read
        doubled = storm.read - storm.written
        assert not lost and not doubled, (
            f"sequence {number} (seed {seed}, chunk {storm.chunk_bytes}): lost {sorted(lost)[:5]}"
            f" ({sum(lost.values())}), doubled {sorted(doubled)[:5]} ({sum(doubled.values())}),"
            f" ops {dict(storm.ops)}")
        totals.update(storm.ops)
        lines += sum(storm.written.values())
        shutil.rmtree(folder)
    print(f"\nrotation storm: seed={SEED} sequences={SEQUENCES} lines={lines} "
          f"in {time.monotonic() - started:.1f} s; operations: "
          + ", ".join(f"{k}={v}" for k, v in sorted(totals.items())))
    for needed in ("create_rotate", "copytruncate", "delete", "mid_read", "aborted_read",
                   "event:rotated", "event:copytruncate", "event:missing"):
        assert totals[needed] >= 20, f"the storm did too few {needed}"
