"""Sample lines per address for the findings (bounded): a mixin of collectors.auth.scanner'
AuthScanner, shared by its failure events and its pre-authentication probes
(collectors.auth.probes)."""
from __future__ import annotations

from itertools import compress

from collectors.auth.counts import MAX_LINE_KEPT, AuthCounts, safe_text

MAX_EVIDENCE_HOSTS = 200  # addresses for which sample failure lines are kept
EVIDENCE_PER_HOST = 3


class EvidenceSamples:
    """A few raw lines per address, from the chunk being scanned, into counts.evidence."""

    counts: AuthCounts
    _chunk: bytes
    _evidence_full: set[bytes]      # addresses with all their samples, or with no slot left

    def _sample(self, hosts: list[bytes], starts: list[int], last: bool) -> None:
        """Sample this chunk's events (in line order): each address's first line, and with
        ``last`` its last line too."""
        hosts, starts = self._still_sampled(hosts, starts)
        full = self._evidence_full
        firsts = dict(zip(reversed(hosts), reversed(starts), strict=True))
        lasts = dict(zip(hosts, starts, strict=True)) if last else firsts
        for host, first in firsts.items():
            if host not in full:
                self._evidence(host, first)
                if host not in full and first != lasts[host]:
                    self._evidence(host, lasts[host])

    def _still_sampled(self, hosts: list[bytes], starts: list[int]
                       ) -> tuple[list[bytes], list[int]]:
        """The events whose address still takes sample lines: not one with all its samples, nor,
        once every slot is taken, a new one (marked done here, as _evidence would: without a
        pass over every event, which is what a busy log mostly is)."""
        full = self._evidence_full
        if full.issuperset(hosts):          # every address has its samples (or no slot left)
            return [], []
        want = set(hosts).difference(full)
        evidence = self.counts.evidence
        if len(evidence) >= MAX_EVIDENCE_HOSTS:
            done = {host for host in want if safe_text(host) not in evidence}
            full.update(done)
            want -= done
        if not want:
            return [], []
        kept = [host in want for host in hosts]
        return list(compress(hosts, kept)), list(compress(starts, kept))

    def _evidence(self, host: bytes, start: int) -> None:
        evidence = self.counts.evidence
        addr = safe_text(host)
        lines = evidence.get(addr)
        if lines is None:
            if len(evidence) >= MAX_EVIDENCE_HOSTS:
                self._evidence_full.add(host)
                return
            lines = evidence[addr] = []
        end = self._chunk.find(b"\n", start)
        lines.append(safe_text(self._chunk[start:end].rstrip(b"\r"), MAX_LINE_KEPT))
        if len(lines) >= EVIDENCE_PER_HOST:
            self._evidence_full.add(host)
