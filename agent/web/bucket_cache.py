"""The metrics page's closed buckets, kept between refreshes so a refresh reads only what is new.

A bucket that ended before the newest cycle no longer changes, so a refresh reads only the partial
bucket at the range's start and the buckets since the last read. Whether the kept ones still hold
is checked by counting the series' samples over their span from the index alone (a restore, an
import of history, a late write or a trim changes that count): a month of 5-minute samples costs
one index count and a few rows a series, not 8640 rows. They are kept packed, six doubles a
bucket, so a month of a few dozen series is a few hundred kilobytes of the dashboard's memory.
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

from foundation.store.dashboard_reads import Bucket
from foundation.store.data_storage import Store


def _pack(buckets: list[Bucket]) -> array[float]:
    packed = array("d")
    for b in buckets:
        packed.extend((b.start, b.count, b.mean, b.low, b.high, b.total))
    return packed


def _unpack(packed: array[float], since: float) -> list[Bucket]:
    out = []
    for i in range(0, len(packed), 6):
        if packed[i] >= since:
            out.append(Bucket(packed[i], int(packed[i + 1]), packed[i + 2], packed[i + 3],
                              packed[i + 4], packed[i + 5]))
    return out


@dataclass
class _Kept:
    start: float                 # the first full bucket kept
    upto: float                  # every bucket before this one is closed and kept
    packed: array[float]         # start, count, mean, low, high, total of each


class BucketCache:
    """The closed buckets of each (series, width) between two refreshes of the page; the store
    lock held by the page's read serialises its use."""

    def __init__(self, max_entries: int = 128) -> None:
        self._kept: dict[tuple[str, int], _Kept] = {}
        self.max_entries = max_entries
        self.hits = 0

    def buckets(self, store: Store, series: str, since: float, until: float,
                width: int) -> list[Bucket]:
        """As ``store.sample_buckets(series, since, until, width)``, the closed ones kept."""
        first = math.ceil(since / width) * width           # the first full bucket
        # the bucket that just ended may still get the samples of a cycle not committed yet
        closed = max(first, math.floor(until / width) * width - width)
        head = store.sample_buckets(series, since, first, width) if since < first else []
        key = (series, width)
        kept = self._kept.pop(key, None)
        middle: list[Bucket] | None = None
        if kept is not None and kept.start <= first < kept.upto <= closed:
            still = _unpack(kept.packed, first)
            if store.sample_count(series, first, kept.upto) == sum(b.count for b in still):
                self.hits += 1
                middle = still + store.sample_buckets(series, kept.upto, closed, width)
            # else written, trimmed or restored since: read again
        if middle is None:
            middle = store.sample_buckets(series, first, closed, width)
        while len(self._kept) >= self.max_entries:
            self._kept.pop(next(iter(self._kept)))
        self._kept[key] = _Kept(first, closed, _pack(middle))
        return head + middle + store.sample_buckets(series, closed, until, width)
