"""Times of auth log lines, read from their own stamps, in bulk (numpy) with a per-hour cache.

Only the lines that are failure events or kept events are stamped. A traditional stamp has no
year and is local time, so turning it into epoch seconds (collectors.logreader.formats.parse_timestamp)
costs ~16 µs; a 1 GiB log spans tens of thousands of minutes, so the base of each hour is parsed
once (minute 00 and minute 59: when they are 59 minutes apart, the hour is linear, no DST change or
year boundary inside it) and every minute of it is that base plus whole minutes.
"""
from __future__ import annotations

from itertools import compress

import numpy as np

from collectors.auth.compiled import authscan, required
from collectors.logreader.formats import MONTHS, parse_timestamp

_WIDTH = 15                                    # "Nov 23 10:00:01"
_DIGITS = np.array([4, 5, 7, 8, 10, 11, 13, 14])


def stamp_keys(chunk: bytes, at: np.ndarray) -> np.ndarray:
    """collectors/auth/_authscan.c's stamp_keys in numpy: for each line start, its "Mmm dd hh:mm:ss"
    stamp as ((((letters * 100 + day) * 100 + hour) * 100 + minute) * 100 + second), every field
    two digits so two texts never share a number; -1 for any other line."""
    arr = np.frombuffer(chunk, dtype=np.uint8)
    heads = arr[np.minimum(at[:, None] + np.arange(_WIDTH), len(arr) - 1)].astype(np.int64)
    digits = heads[:, _DIGITS]
    plain = ((at + _WIDTH <= len(arr)) & (heads[:, 3] == 32) & (heads[:, 6] == 32)
             & (heads[:, 9] == 58) & (heads[:, 12] == 58)
             & np.all((digits >= 48) & (digits <= 57) | ((digits == 32) & (np.arange(8) == 0)), 1))
    h = heads
    day = np.where(h[:, 4] == 32, 0, h[:, 4] - 48) * 10 + h[:, 5] - 48
    key = (((((h[:, 0] << 16 | h[:, 1] << 8 | h[:, 2]) * 100 + day) * 100
             + (h[:, 7] - 48) * 10 + h[:, 8] - 48) * 100 + (h[:, 10] - 48) * 10 + h[:, 11] - 48)
           * 100 + (h[:, 13] - 48) * 10 + h[:, 14] - 48)
    return np.where(plain, key, -1)


class LineClock:
    """Epoch seconds of log lines (traditional stamps cached per minute, others parsed)."""

    def __init__(self, now: float, native: bool = False) -> None:
        self.now = now
        self.native = native and authscan is not None    # the C stamp_keys, else numpy's
        self._minutes: dict[bytes, float | None] = {}
        self._hours: dict[bytes, float | None] = {}
        self._by_key: dict[int, float] = {}      # minute key (stamp_keys // 100) -> its base

    def minute(self, minute: bytes) -> float | None:
        """Epoch seconds of ``b"Nov 23 10:00"`` (12 bytes) at second 0; None when invalid."""
        if minute in self._minutes:
            return self._minutes[minute]
        base: float | None = None
        mm = minute[10:12]
        if minute[9:10] == b":" and len(mm) == 2 and mm.isdigit() and int(mm) < 60:
            hour = minute[:9]
            if hour not in self._hours:
                first = parse_timestamp(hour + b":00:00", self.now)
                last = parse_timestamp(hour + b":59:00", self.now)
                linear = first is not None and last is not None and last - first == 3540.0
                self._hours[hour] = first if linear else None
            hour_base = self._hours[hour]
            if hour_base is not None:
                base = hour_base + 60.0 * int(mm)
        if base is None:
            base = parse_timestamp(minute + b":00", self.now)
        self._minutes[minute] = base
        return base

    def stamp(self, chunk: bytes, start: int) -> float | None:
        """Epoch seconds of the line of ``chunk`` starting at ``start``."""
        if chunk[start:start + 1] == b"<":                  # <PRI> before the stamp
            start = chunk.find(b">", start, start + 6) + 1
            if chunk[start:start + 2] == b"1 ":              # RFC 5424: "<PRI>1 TIMESTAMP"
                start += 2
        head = chunk[start:start + _WIDTH]
        if head[3:4] == b" " and head[:3] in MONTHS:          # "Nov 23 10:00:01"
            if head[5:6] == b" ":                            # "Feb 7 16:01:07": one space
                head = head[:4] + b" " + chunk[start + 4:start + 14]
            base = self.minute(head[:12])
            if base is None or not head[13:15].isdigit():
                return None
            return base + int(head[13:15])
        end = chunk.find(b" ", start, start + 40)
        return parse_timestamp(chunk[start:end], self.now) if end > start else None

    def stamps(self, chunk: bytes, starts: list[int]) -> np.ndarray:
        """Times of the lines at ``starts`` (NaN where unreadable): syslog stamps vectorised."""
        at = np.asarray(starts, dtype=np.int64)
        keys = (np.frombuffer(required().stamp_keys(chunk, at), dtype=np.int64) if self.native
                else stamp_keys(chunk, at))
        out = np.full(len(starts), np.nan)
        rows = np.flatnonzero(keys >= 0)
        if len(rows):
            minutes, seconds = np.divmod(keys[rows], 100)
            unique, first, which = np.unique(minutes, return_index=True, return_inverse=True)
            known = self._by_key        # a key is one minute's text: its base, read once
            bases = np.array([known[k] if k in known else self._keyed_base(k, chunk, starts[i])
                              for k, i in zip(unique.tolist(), rows[first].tolist(), strict=True)],
                             dtype=np.float64)
            out[rows] = bases[which] + seconds
        for row in np.flatnonzero(keys < 0).tolist():
            value = self.stamp(chunk, starts[row])
            out[row] = np.nan if value is None else value
        return out

    def _keyed_base(self, key: int, chunk: bytes, start: int) -> float:
        base = self._by_key[key] = self._base(chunk[start:start + 12])
        return base

    def _base(self, minute: bytes) -> float:
        base = self.minute(minute)
        return float("nan") if base is None else base


def stamped_only(stamps: np.ndarray, hosts: list[bytes], times: list[float],
                 kept_hosts: list[bytes]) -> int:
    """Append the events with a readable time (not NaN) to ``times`` and ``kept_hosts``; return
    how many had none (they are counted, not windowed)."""
    stamped = ~np.isnan(stamps)
    kept = int(np.count_nonzero(stamped))
    times.extend(stamps[stamped].tolist())
    kept_hosts.extend(hosts if kept == len(hosts) else compress(hosts, stamped.tolist()))
    return len(hosts) - kept
