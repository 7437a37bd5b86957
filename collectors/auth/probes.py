"""SSH pre-authentication probes (issue 13) from auth log chunks, counted per address apart from
failures: a mixin of collectors.auth.scanner.AuthScanner.

What counts is collectors.auth.regexes.PROBES (samples with provenance:
tests/fixtures/auth/preauth.log). The C path's probes arrive through collectors.auth.native; the
regex path's through ``_probe``; both are stamped when the chunk ends, in line order, into their
own window's input (``probe_times``, ``probe_hosts``), as failures are into theirs.
"""
from __future__ import annotations

import numpy as np

from collectors.auth.anchor import KEYS
from collectors.auth.evidence import EvidenceSamples
from collectors.auth.regexes import PROBES
from collectors.auth.times import LineClock, stamped_only


class ProbeEvents(EvidenceSamples):
    """The pre-authentication probe part of the scanner (see AuthScanner)."""

    clock: LineClock
    probe_times: list[float]        # the window's input: stamped probes, in line order
    probe_hosts: list[bytes]
    _probe_starts: list[int]        # this chunk's probes (line starts), not yet stamped
    _probe_hosts: list[bytes]

    def _probe(self, pos: int, message: bytes) -> None:
        """A pre-authentication probe (collectors.auth.regexes.PROBES), counted per address."""
        for pattern in PROBES:
            found = pattern.match(message)
            if found:
                host = KEYS[found.group(found.lastindex or 1)]
                if host is None:
                    self.counts.unattributed += 1
                else:
                    self._probe_starts.append(self._chunk.rfind(b"\n", 0, pos) + 1)
                    self._probe_hosts.append(host)
                return

    def _take_probes(self) -> tuple[list[int], list[bytes]]:
        """This chunk's probes, in line order, taken from the chunk's state."""
        starts, hosts = self._probe_starts, self._probe_hosts
        self._probe_starts, self._probe_hosts = [], []
        at = np.asarray(starts, dtype=np.int64)
        if len(at) > 1 and (at[1:] < at[:-1]).any():     # slow-path probes came after the C's
            order = np.argsort(at, kind="stable").tolist()
            starts = [starts[i] for i in order]
            hosts = [hosts[i] for i in order]
        return starts, hosts

    def _flush_probes(self, starts: list[int], hosts: list[bytes], stamps: np.ndarray) -> None:
        """This chunk's probes (in line order) with their times; one sample line per address."""
        c = self.counts
        c.probes += len(starts)
        c.probes_by_ip.update(hosts)
        c.unstamped += stamped_only(stamps, hosts, self.probe_times, self.probe_hosts)
        self._sample(hosts, starts, last=False)
