"""Read what was appended to one log file since a cursor, across rotation, whole lines only.

A cursor is ``{"path", "dev", "ino", "offset", "fp", "fp_len", "skip", "mtime_ns"}``: the file's
device and inode, the offset of the first byte not yet consumed (a line start, or inside a long
line being skipped when ``skip``), a fingerprint (SHA-1) of its first ``fp_len`` (<= 512) bytes and
its mtime, both taken when the read opened it, so a file truncated and refilled, or a recycled
inode, is told apart from the file we were reading.

Cases (``events`` in the stats names each one seen):
- same inode, intact (size >= offset, same first bytes): read on from the offset;
- same inode, not intact: copytruncate (finish the copy, a sibling starting with our
  fingerprint, from the offset; then any later rotation; then the file from 0) or plain truncation
  (read from 0);
- another inode at the path (rename + create): finish the old inode through its rotated name
  (found by device+inode among ``path.9 .. path.1``, ``path.0``, ``path-DATE``), read whole every
  file rotated after it, then the new file from 0;
- the path missing: finish the old inode if a sibling holds it, keep the cursor, wait;
- no cursor (first run): ``start_at`` "end" starts after the last complete line, "start" at 0.
A file that is truncated or rewritten while it is being read stops the read at the last line
read before (``changed_while_reading``); the next read goes on from there through the copy.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from collectors.logreader.chunks import count_lines
from foundation.files import NotRegularFile, file_kind, open_regular

log = logging.getLogger(__name__)

FP_BYTES = 512       # the fingerprint covers at most this many first bytes of a file
MAX_NUMBERED = 9     # path.1 .. path.9 are looked at (compressed ones cannot be read back)
COMPRESSED = (".gz", ".xz", ".bz2", ".zst")


def fingerprint(handle: BinaryIO, length: int) -> str:
    """SHA-1 (hex) of the first ``length`` bytes of an open file ("" when shorter than that)."""
    handle.seek(0)
    head = handle.read(length)
    if len(head) < length:
        return ""
    return hashlib.sha1(head, usedforsecurity=False).hexdigest()


def siblings(path: Path) -> list[Path]:
    """Rotated files of ``path``, oldest first: path.9 .. path.1, path.0, then path-DATE ascending."""
    numbered = [path.with_name(f"{path.name}.{n}") for n in range(MAX_NUMBERED, -1, -1)]
    try:
        dated = sorted(p for p in path.parent.glob(path.name + "-*")
                       if not p.name.endswith(COMPRESSED))
    except OSError:
        dated = []
    return [p for p in numbered + dated if p.is_file()]


def cut_long_lines(chunk: bytes, max_line: int) -> tuple[bytes, int]:
    """Cut every line of a chunk longer than ``max_line`` bytes to that length; (chunk, how many).

    A line longer than max_line covers a whole aligned window of max_line // 2 bytes without a
    newline, so only such windows are inspected: O(len / max_line) calls, not one per line.
    """
    window = max(1, max_line // 2)
    if len(chunk) <= max_line:
        return chunk, 0
    starts: list[int] = []
    for pos in range(0, len(chunk) - window + 1, window):
        if chunk.find(b"\n", pos, pos + window) < 0:
            start = chunk.rfind(b"\n", 0, pos) + 1
            if not starts or start != starts[-1]:
                starts.append(start)
    if not starts:
        return chunk, 0
    parts, last, cut = [], 0, 0
    for start in starts:
        end = chunk.find(b"\n", start)
        end = len(chunk) if end < 0 else end
        if end - start > max_line and start >= last:
            parts.append(chunk[last:start + max_line])
            last, cut = end, cut + 1
    parts.append(chunk[last:])
    return b"".join(parts), cut


class Tail:
    """Reads what was appended to one log file since a cursor, across rotation; whole lines only."""

    def __init__(self, path: Path, cursor: Mapping[str, Any] | None, *, start_at: str = "end",
                 max_bytes: int = 256 << 20, max_line_bytes: int = 8192,
                 chunk_bytes: int = 4 << 20, count_lines: bool = True) -> None:
        self.path = Path(path)
        self.count_lines = count_lines
        self._cursor: dict[str, Any] | None = dict(cursor) if cursor else None
        self.start_at = start_at
        self.max_line = max_line_bytes
        self.chunk_bytes = max(chunk_bytes, 1)
        self._budget = max_bytes
        self._stats: dict[str, Any] = {"lines": 0, "bytes": 0, "long_lines": 0, "events": [],
                                       "files": []}

    @property
    def cursor(self) -> dict[str, Any]:
        """Where the next read starts (JSON-able); valid once chunks() is exhausted."""
        if self._cursor is None:
            return {"path": str(self.path), "dev": None, "ino": None, "offset": 0, "fp": "",
                    "fp_len": 0, "skip": False}
        return dict(self._cursor)

    @property
    def stats(self) -> dict[str, Any]:
        """Lines and bytes handed out, lines cut, rotation events and the files read."""
        return {**self._stats, "events": list(self._stats["events"]),
                "files": list(self._stats["files"])}

    def _event(self, name: str) -> None:
        log.debug("%s: %s", self.path, name)
        self._stats["events"].append(name)

    def chunks(self) -> Iterator[bytes]:
        """Whole lines appended since the cursor, in chunks of at most ~chunk_bytes."""
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        if current is not None and not stat.S_ISREG(current.st_mode):
            raise NotRegularFile(self.path, file_kind(current.st_mode))  # never open it
        cur = self._cursor
        if cur is None:
            yield from self._first_run(current)
            return
        if cur.get("ino") is None:               # no file at the first run: all of it is new
            if current is not None:
                self._event("appeared")
                yield from self._read(self.path, current, 0, False)
            else:
                self._event("missing")
            return
        if current is not None and (current.st_dev, current.st_ino) == (cur["dev"], cur["ino"]):
            yield from self._same_inode(current, cur)
            return
        old = self._find_inode(cur["dev"], cur["ino"])
        if old is not None:
            self._event("rotated" if current is not None else "rotated_not_recreated")
            yield from self._recover(old, cur, current)
            return
        if current is None:
            self._event("missing")
            return
        self._event("rotated_lost" if cur["offset"] else "recreated")
        yield from self._read(self.path, current, 0, False)

    def _recover(self, holder: Path, cur: Mapping[str, Any], current: os.stat_result | None
                 ) -> Iterator[bytes]:
        """Go on from the rotated file holding our inode; when it was truncated before its
        rename (copytruncate, then create), go on from the copy instead."""
        held = _stat(holder)
        if held is None:
            return
        if self._intact(holder, held, cur):
            yield from self._chain(holder, cur, current)
            return
        copy = self._find_copy(cur, held)
        self._event("copytruncate" if copy is not None else "truncated")
        yield from self._chain(copy or holder, cur if copy is not None else None, current)

    def _chain(self, first: Path, cur: Mapping[str, Any] | None, current: os.stat_result | None
               ) -> Iterator[bytes]:
        """Read ``first`` from the cursor (from 0 without one), every file rotated after it
        whole, then the current file from 0. Files are placed by inode after ``first`` is read,
        so rotations during the read itself are followed too."""
        st = _stat(first)
        if st is None:
            return
        yield from self._read(first, st, cur["offset"] if cur else 0, bool(cur and cur.get("skip")))
        rotated = siblings(self.path)
        inodes = [_inode(p) for p in rotated]
        now = _inode(self.path)
        mine = (st.st_dev, st.st_ino)
        start = inodes.index(mine) + 1 if mine in inodes else len(rotated)
        for newer, ino in zip(rotated[start:], inodes[start:], strict=True):
            if self._budget <= 0:
                return
            stn = _stat(newer)
            if stn is not None and ino not in (mine, now):
                self._event("rotated_between")
                yield from self._read(newer, stn, 0, False)
        if self._budget > 0 and current is not None and now is not None:
            yield from self._read(self.path, os.stat(self.path), 0, False)

    @staticmethod
    def _intact(path: Path, st: os.stat_result, cur: Mapping[str, Any]) -> bool:
        """True when the file still holds what the cursor read: long enough, same first bytes."""
        if st.st_size < cur["offset"]:
            return False
        if not cur.get("fp_len"):
            return True
        try:
            with open_regular(path) as handle:
                return bool(fingerprint(handle, cur["fp_len"]) == cur["fp"])
        except OSError:
            return False

    def _first_run(self, current: os.stat_result | None) -> Iterator[bytes]:
        if current is None:
            self._event("missing_at_first_run")
            self._cursor = None
            return
        if self.start_at == "start":
            self._event("first_run_start")
            yield from self._read(self.path, current, 0, False)
            return
        self._event("first_run_end")
        offset = self._last_line_end(current.st_size)
        with open_regular(self.path) as handle:
            self._set_cursor(current, offset, False, self._head(handle))

    def _last_line_end(self, size: int) -> int:
        """Offset just after the last newline of the file (0 when it has none)."""
        with open_regular(self.path) as handle:
            pos = size
            while pos > 0:
                start = max(0, pos - 65536)
                handle.seek(start)
                block = handle.read(pos - start)
                nl = block.rfind(b"\n")
                if nl >= 0:
                    return start + nl + 1
                pos = start
        return 0

    def _same_inode(self, current: os.stat_result, cur: Mapping[str, Any]) -> Iterator[bytes]:
        intact = self._intact(self.path, current, cur)
        # with a short fingerprint a truncated-and-refilled file can look intact: look for a
        # copy made since the last read all the same, unless the file was not written since
        # (its size and mtime those of the last read: a truncation would have moved the mtime)
        untouched = (current.st_size == cur["offset"]
                     and current.st_mtime_ns == cur.get("mtime_ns"))
        copy = (None if intact and (cur.get("fp_len") == FP_BYTES or untouched)
                else self._find_copy(cur, current))
        if copy is not None:
            self._event("copytruncate")
            yield from self._chain(copy, cur, current)
        elif not intact and (other := self._changed_since(cur, current)) is not None:
            # replaced under a recycled inode, then copy-truncated before we read any of it
            self._event("replaced")
            yield from self._chain(other, None, current)
        elif intact:
            yield from self._read(self.path, current, cur["offset"], cur.get("skip", False))
        else:
            self._event("truncated")
            yield from self._read(self.path, current, 0, False)

    def _find_inode(self, dev: int, ino: int) -> Path | None:
        """The sibling that holds inode (dev, ino), if any."""
        return next((p for p in siblings(self.path) if _inode(p) == (dev, ino)), None)

    def _changed_since(self, cur: Mapping[str, Any], current: os.stat_result) -> Path | None:
        """The oldest non-empty sibling changed after the last read (not the current file)."""
        for cand in siblings(self.path):
            st = _stat(cand)
            if (st is not None and st.st_ino != current.st_ino and st.st_size > 0
                    and st.st_mtime_ns > cur.get("mtime_ns", st.st_mtime_ns)):
                return cand
        return None

    def _find_copy(self, cur: Mapping[str, Any], current: os.stat_result) -> Path | None:
        """The copy a copytruncate made: the oldest sibling starting with our fingerprint and at
        least as long as our offset (changed since the last read, when the fingerprint is short)."""
        short = cur.get("fp_len", 0) < FP_BYTES    # a short fingerprint may match older copies
        for cand in siblings(self.path):
            st = _stat(cand)
            if (st is None or st.st_ino == current.st_ino or st.st_size < max(cur["offset"], 1)
                    or (short and st.st_mtime_ns <= cur.get("mtime_ns", 0))):
                continue
            if not cur.get("fp_len"):
                return cand
            try:
                with open_regular(cand) as handle:
                    if fingerprint(handle, cur["fp_len"]) == cur["fp"]:
                        return cand
            except OSError:
                continue
        return None

    def _set_cursor(self, st: os.stat_result, offset: int, skip: bool,
                    head: tuple[str, int, int]) -> None:
        self._cursor = {"path": str(self.path), "dev": st.st_dev, "ino": st.st_ino,
                        "offset": offset, "fp": head[0], "fp_len": head[1], "skip": skip,
                        "mtime_ns": head[2]}

    @staticmethod
    def _head(handle: BinaryIO) -> tuple[str, int, int]:
        """Fingerprint of an open file's first bytes and its mtime, taken before reading it (so a
        truncation during the read cannot change what the cursor recognises the file by)."""
        st = os.fstat(handle.fileno())
        length = min(FP_BYTES, st.st_size)
        digest = fingerprint(handle, length)
        return (digest, length, st.st_mtime_ns) if digest or not length else ("", 0, st.st_mtime_ns)

    @staticmethod
    def _changed(handle: BinaryIO, head: tuple[str, int, int], end: int) -> bool:
        """True when the file was truncated or rewritten under us (what was just read may
        not be what the cursor's offset means)."""
        fd = handle.fileno()
        if os.fstat(fd).st_size < end:
            return True
        return bool(head[1]) and hashlib.sha1(os.pread(fd, head[1], 0),
                                                    usedforsecurity=False).hexdigest() != head[0]

    def _read(self, path: Path, st: os.stat_result, offset: int, skip: bool) -> Iterator[bytes]:
        """Read whole lines of one file from ``offset``; the cursor follows what was handed out."""
        self._stats["files"].append(str(path))
        with open_regular(path, buffering=0) as handle:
            head = self._head(handle)
            held = b""
            try:
                handle.seek(offset)
                while self._budget > 0:
                    data = handle.read(min(self.chunk_bytes, self._budget))
                    if not data:
                        break
                    if self._changed(handle, head, offset + len(held) + len(data)):
                        self._event("changed_while_reading")   # the next read sorts it out
                        break
                    self._budget -= len(data)
                    if skip:
                        nl = data.find(b"\n")
                        if nl < 0:
                            offset += len(data)
                            continue
                        offset, data, skip = offset + nl + 1, data[nl + 1:], False
                    total = len(held) + len(data)
                    last = data.rfind(b"\n")           # (held, a partial line, has none)
                    if last >= 0:   # one copy of the block, not two (held + data, then a slice)
                        out = b"".join((held, memoryview(data)[:last + 1]))
                        rest, last = data[last + 1:], last + len(held)
                    else:
                        out, rest = b"", held + data
                    out, cut = cut_long_lines(out, self.max_line)
                    consumed = last + 1
                    if len(rest) > self.max_line:      # inside a long line: keep its head only
                        out += rest[:self.max_line] + b"\n"
                        cut, consumed, rest, skip = cut + 1, total, b"", True
                    held = rest
                    offset += consumed
                    if out:
                        self._count(out, cut)
                        self._set_cursor(st, offset, skip, head)
                        yield out
                if self._budget <= 0:
                    self._event("budget_exhausted")
            finally:
                self._set_cursor(os.fstat(handle.fileno()), offset, skip, head)

    def _count(self, out: bytes, cut: int) -> None:
        if self.count_lines:
            self._stats["lines"] += count_lines(out)  # numpy: 3x bytes.count (1 GiB logs)
        self._stats["bytes"] += len(out)
        self._stats["long_lines"] += cut


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _inode(path: Path) -> tuple[int, int] | None:
    st = _stat(path)
    return None if st is None else (st.st_dev, st.st_ino)
