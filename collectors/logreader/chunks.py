"""Chunk-level scanning helpers: count lines, find a two-byte literal, match only where it occurs.

CPython's regex engine looks for a pattern's literal prefix byte by byte (~3 GB/s at best, about
1 GB/s when its first byte is common, as "s" of "su" in a log); numpy compares a chunk viewed as
16-bit words in two passes (even and odd offsets) several times faster. ``matches_at`` then tries
the pattern only where it can start, and returns exactly what ``pattern.finditer`` would: the
same matches, left to right, none overlapping.

numpy (~14 MB once imported) is imported by the first call that needs it: a quiet cycle, or one
with a few lines, never loads it.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from itertools import repeat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

NUMPY_FROM_BYTES = 1 << 20   # smaller chunks are counted by bytes.count (at most ~1 ms)


def count_lines(chunk: bytes) -> int:
    """Newlines in a chunk (numpy compares at memory speed: ~3x ``bytes.count`` on a 4 MiB chunk,
    used from NUMPY_FROM_BYTES on; below that ``bytes.count`` spares loading numpy)."""
    if len(chunk) < NUMPY_FROM_BYTES:
        return chunk.count(b"\n")
    import numpy as np  # noqa: PLC0415 - numpy only for large batches

    return int(np.count_nonzero(np.frombuffer(chunk, dtype=np.uint8) == 10))


def pair_positions(chunk: bytes, pair: bytes) -> np.ndarray:
    """Sorted offsets where the two bytes ``pair`` occur in ``chunk``."""
    import numpy as np  # noqa: PLC0415 - the auth scanner's, loaded when it has lines to scan

    if len(chunk) < 2:
        return np.zeros(0, dtype=np.int64)
    value = int.from_bytes(pair, "little")
    even = np.frombuffer(chunk, dtype="<u2", count=len(chunk) // 2)
    odd = np.frombuffer(chunk, dtype="<u2", count=(len(chunk) - 1) // 2, offset=1)
    at = np.concatenate((np.flatnonzero(even == value) * 2, np.flatnonzero(odd == value) * 2 + 1))
    at.sort()
    return at


def matches_at(pattern: re.Pattern[bytes], chunk: bytes, starts: Iterable[int]
               ) -> list[re.Match[bytes]]:
    """``list(pattern.finditer(chunk))``, given every offset where a match can start (sorted).

    The pattern is tried at each offset (lookbehinds see the bytes before it, as in a search);
    an offset inside the previous match is skipped, as finditer resumes after a match.
    """
    found: list[re.Match[bytes]] = []
    end = 0
    for m in map(pattern.match, repeat(chunk), starts):
        if m is not None and m.start() >= end:
            found.append(m)
            end = m.end()
    return found



def in_lines(pattern: re.Pattern[bytes], chunk: bytes, starts: Iterable[int]
             ) -> Iterator[re.Match[bytes]]:
    """``pattern.finditer(chunk)`` restricted to the lines starting at ``starts`` (sorted).

    The same matches as over the whole chunk, for a pattern that cannot match across a newline:
    each search sees the line and its newline, and lookbehinds see the bytes before it.
    """
    find = chunk.find
    for start in starts:
        end = find(b"\n", start)
        yield from pattern.finditer(chunk, start, len(chunk) if end < 0 else end + 1)


def malformed_lines(chunk: bytes) -> int:
    """Lines with NUL bytes or invalid UTF-8 (cheap when the chunk is clean)."""
    if chunk.isascii() and b"\x00" not in chunk:
        return 0
    bad = 0
    for line in chunk.split(b"\n"):
        if b"\x00" in line:
            bad += 1
            continue
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad += 1
    return bad
