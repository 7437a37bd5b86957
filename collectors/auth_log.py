"""The auth_log collector: SSH logins and failures, sudo, su, accounts (auth log or journal).

Reading (file or journal, cursors, rotation) is collectors.logreader.source's; extraction is
collectors.auth.scanner'. This module keeps the brute-force window across cycles: the failure
times per address within the last SSH_BRUTEFORCE_FINDTIME_SECONDS of the log's own clock, bounded,
in the collector state that commits with the log cursor (a replayed cycle sees the same window).

The extraction (collectors.auth.scanner, with numpy: ~14 MB once loaded) is imported when the log
gives a first chunk: a cycle without new lines carries its state over without it.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from importlib.util import find_spec
from itertools import count
from types import ModuleType
from typing import TYPE_CHECKING, Any

from collectors.auth.counts import AuthCounts, safe_text
from collectors.logreader.follow import Targets, targets
from collectors.logreader.source import LogSource
from foundation.context import CollectContext
from foundation.model import CollectResult, Sample
from foundation.settings import Settings

if TYPE_CHECKING:
    import numpy as np

    from collectors.auth.scanner import AuthScanner

log = logging.getLogger(__name__)

JOURNAL_MATCHES = ("SYSLOG_FACILITY=4", "SYSLOG_FACILITY=10")   # auth, authpriv
STATE_KEY = "auth"
TOP_ADDRESSES = 20
MAX_WINDOW_HOSTS = 2000      # addresses whose recent failures are carried to the next cycle
MAX_WINDOW_TIMES = 50        # failure times carried per address
MAX_ACCEPTED = 50            # accepted logins listed per cycle (suspicious ones up to twice that)
MAX_SOURCES = 500            # distinct user@address pairs listed per cycle
_WARNED: list[bool] = []     # the missing C scanner is said once per process
_UNLOADED: Any = object()
# the C scanner (collectors.auth.compiled: None where it is not built), imported with the first
# chunk: its import loads Vectorscan and compiles the patterns (~3.5 MB), which no quiet cycle needs
authscan: Any = _UNLOADED


def _c_scanner() -> ModuleType | None:
    """The C scanner module, imported the first time it is needed; None where it is not built."""
    global authscan
    if authscan is _UNLOADED:
        from collectors.auth.compiled import authscan as found  # noqa: PLC0415 - see above

        authscan = found
    return authscan  # type: ignore[no-any-return]


def _c_built() -> bool:
    """Whether the C scanner is there, without importing it (once imported: whether it loaded)."""
    if authscan is not _UNLOADED:
        return authscan is not None
    return find_spec("collectors.auth._authscan") is not None


def timeout_s(settings: Settings) -> float:
    """A cycle reads at most LOG_MAX_BYTES_PER_CYCLE; allow ~20 MB/s on a slow, busy machine."""
    return max(30.0, settings.LOG_MAX_BYTES_PER_CYCLE / 20e6)


def follows(settings: Settings) -> Targets:
    """What the follower watches so that new lines start an event cycle of this collector."""
    return targets(settings.AUTH_LOG_PATH, settings.AUTH_LOG_BACKEND, settings.JOURNAL_DIRECTORY)


class FailureWindow:
    """Failure times per address in a sliding window of the log's time, across chunks and cycles."""

    def __init__(self, carried: Mapping[str, Iterable[float]] | None, max_retry: int,
                 findtime: float) -> None:
        self.max_retry = max_retry
        self.findtime = float(findtime)
        self.carry: dict[bytes, list[float]] = {
            str(host).encode(): sorted(float(t) for t in times)
            for host, times in (carried or {}).items()}
        self.hits: dict[bytes, dict[str, Any]] = {}
        self._index: dict[bytes, int] = {}
        self._keys: np.ndarray | tuple[()] = ()   # sorted window keys (empty until an add)
        self._t0 = 0.0
        self._span = 1.0

    def add(self, times: list[float], hosts: list[bytes]) -> None:
        """Add one chunk's failure events (with the carried ones) and note every window crossing."""
        import numpy as np  # noqa: PLC0415 - loaded with the scanner, when a chunk was read

        carried_hosts = [h for h, ts in self.carry.items() for _ in ts]
        all_t = np.array([t for ts in self.carry.values() for t in ts] + times, dtype=np.float64)
        all_h = carried_hosts + hosts
        n_old = len(carried_hosts)
        # ids in order of first appearance, without a Python frame per event (one C pass)
        native = _c_scanner()
        if native is not None:
            raw, names = native.first_ids(all_h)
            ids = np.frombuffer(raw, dtype=np.int64)
            index = dict(zip(names, count()))
        else:
            index = dict(zip(dict.fromkeys(all_h), count()))
            ids = np.fromiter(map(index.__getitem__, all_h), np.int64, len(all_h))
        self._index = index
        if not len(all_t):
            self._keys = ()
            return
        self._t0 = float(all_t.min())
        self._span = float(all_t.max()) - self._t0 + self.findtime + 1.0
        keys = ids * self._span + (all_t - self._t0)        # by address, then time: one sort
        if len(index) < 1 << 16 and bool(np.all(all_t[1:] >= all_t[:-1])):
            # times already in order (the log's, as a rule): a stable sort by address alone
            # gives the same order, and numpy sorts 16-bit keys by radix, in linear time
            order = np.argsort(ids.astype(np.uint16), kind="stable")
        else:
            order = np.argsort(keys, kind="stable")
        t, i, keys = all_t[order], ids[order], keys[order]
        new = order >= n_old
        self._keys = keys
        inside = np.arange(len(keys)) - np.searchsorted(keys, keys - self.findtime, "left") + 1
        self._note_hits(t, i, inside, new)
        self._carry_over(t, i)

    def _note_hits(self, t: np.ndarray, i: np.ndarray, inside: np.ndarray, new: np.ndarray) -> None:
        import numpy as np  # noqa: PLC0415 - loaded already by add()

        fired = new & (inside >= self.max_retry)
        if not fired.any():
            return
        names = list(self._index)
        f_ids, f_t, f_in = i[fired], t[fired], inside[fired]
        firsts = np.flatnonzero(np.r_[True, f_ids[1:] != f_ids[:-1]])
        peaks = np.maximum.reduceat(f_in, firsts)
        lasts = np.r_[firsts[1:], len(f_ids)] - 1
        for first, last, peak in zip(firsts, lasts, peaks, strict=True):
            host = names[int(f_ids[first])]
            hit = self.hits.setdefault(host, {"peak": 0, "first_at": float(f_t[first])})
            hit["peak"] = max(hit["peak"], int(peak))
            hit["last_at"] = float(f_t[last])

    def _carry_over(self, t: np.ndarray, i: np.ndarray) -> None:
        keep = t >= float(t.max()) - self.findtime
        names = list(self._index)
        carry: dict[bytes, list[float]] = {}
        for host_id, ts in zip(i[keep].tolist(), t[keep].tolist(), strict=True):
            carry.setdefault(names[host_id], []).append(ts)
        if len(carry) > MAX_WINDOW_HOSTS:
            recent = sorted(carry, key=lambda h: carry[h][-1], reverse=True)[:MAX_WINDOW_HOSTS]
            carry = {h: carry[h] for h in recent}
        self.carry = {h: ts[-MAX_WINDOW_TIMES:] for h, ts in carry.items()}

    def failures_before(self, logins: list[tuple[bytes, float]]) -> list[int]:
        """Failures from each (address, time) within the window ending then (as of the last add)."""
        if not logins or not len(self._keys):
            return [0] * len(logins)
        import numpy as np  # noqa: PLC0415 - loaded already by add(), which filled the keys

        ids = np.array([self._index.get(host, -1) for host, _ in logins], dtype=np.float64)
        at = np.array([ts for _, ts in logins], dtype=np.float64)
        hi = ids * self._span + np.minimum(at - self._t0, self._span - 1.0)
        lo = ids * self._span + np.maximum(at - self.findtime - self._t0, 0.0)
        counts = (np.searchsorted(self._keys, hi, "right")
                  - np.searchsorted(self._keys, lo, "left"))
        counts[(ids < 0) | (at < self._t0)] = 0
        return [int(n) for n in counts]

    def state(self) -> dict[str, list[float]]:
        """The carried window as JSON-able data."""
        return {safe_text(h, 200): ts for h, ts in self.carry.items()}


def _top(counter: Mapping[bytes, int], n: int = TOP_ADDRESSES
         ) -> tuple[dict[str, int], dict[str, int]]:
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    top = {safe_text(k): v for k, v in ranked[:n]}
    rest = ranked[n:]
    return top, {"addresses": len(rest), "count": sum(v for _, v in rest)}


def _bursts(counts: AuthCounts, window: FailureWindow, field: str) -> list[dict[str, Any]]:
    ranked = sorted(window.hits.items(), key=lambda kv: (-kv[1]["peak"], kv[0]))[:TOP_ADDRESSES]
    return [{"address": safe_text(host), field: hit["peak"], "first_at": hit["first_at"],
             "last_at": hit["last_at"], "evidence": counts.evidence.get(safe_text(host), [])}
            for host, hit in ranked]


def observe(counts: AuthCounts, window: FailureWindow, accepted: list[dict[str, Any]],
            sources: set[str], info: Mapping[str, Any], probes: FailureWindow) -> dict[str, Any]:
    """The observations of one cycle (bounded, JSON-able)."""
    by_ip, by_ip_rest = _top(counts.failed_by_ip)
    probes_by_ip, _ = _top(counts.probes_by_ip)
    names, _ = _top(counts.invalid_user_names, 10)
    return {
        **info,
        "lines_read": counts.lines,
        "malformed_lines": counts.malformed + int(info.get("long_lines", 0)),
        "failed_logins": counts.failed_logins,
        "failed_by_ip": by_ip,
        "failed_by_ip_rest": by_ip_rest,
        "publickey_failures": counts.publickey_failures,
        "none_probes": counts.none_probes,
        "other_method_failures": counts.other_failures,
        "failure_events": counts.failures,
        "invalid_users": counts.invalid_users,
        "invalid_user_names": names,
        "accepted_count": counts.accepted_count,
        "accepted_logins": accepted,
        "login_sources": sorted(sources),
        "sudo_commands": counts.sudo_command_count,
        "sudo_command_samples": counts.sudo_commands[:10],
        "sudo_failures": counts.sudo_failure_count,
        "sudo_failure_events": counts.sudo_failures,
        "su_sessions": counts.su_sessions,
        "su_failures": counts.su_failures,
        "users_created": counts.users_created,
        "groups_created": counts.groups_created,
        "password_changes": counts.password_changes,
        "bruteforce": _bursts(counts, window, "failures_in_window"),
        "preauth_probes": counts.probes,
        "preauth_probes_by_ip": probes_by_ip,
        "preauth_probing": _bursts(counts, probes, "probes_in_window"),
        "unattributed_events": counts.unattributed,
        "window": {"max_retry": window.max_retry, "findtime_s": window.findtime},
    }


def _check_logins(scanner: AuthScanner, window: FailureWindow, accepted: list[dict[str, Any]],
                  sources: dict[tuple[bytes, bytes], str], probes: FailureWindow) -> None:
    """Count the failures (or pre-authentication probes, whichever is more) before each login
    of the last chunk; keep them (suspicious ones always, up to a bound) as records, and the
    distinct user@address pairs."""
    stamped = [login for login in scanner.accepted if login.ts is not None]
    at = [(login.host, login.ts) for login in stamped if login.ts is not None]
    befores = [max(a, b) for a, b in zip(window.failures_before(at), probes.failures_before(at),
                                         strict=True)]
    evidence = scanner.counts.evidence
    for login, before in zip(stamped, befores, strict=True):
        pair = (login.user, login.host)
        if pair not in sources and len(sources) < MAX_SOURCES:
            sources[pair] = f"{safe_text(login.user, 64)}@{safe_text(login.host)}"
        suspicious = before >= window.max_retry
        if len(accepted) < MAX_ACCEPTED or (suspicious and len(accepted) < 2 * MAX_ACCEPTED):
            address = safe_text(login.host)
            accepted.append({"user": safe_text(login.user, 64), "address": address,
                             "method": safe_text(login.method, 32), "ts": login.ts,
                             "line": scanner.login_line(login), "failures_before": before,
                             "failure_evidence": evidence.get(address, []) if before else []})


def collect(ctx: CollectContext) -> CollectResult:
    """Read what the auth log gained since the last cycle and extract its events."""
    settings = ctx.settings
    src = LogSource(ctx, settings.AUTH_LOG_PATH, settings.AUTH_LOG_BACKEND, JOURNAL_MATCHES,
                    count_lines=False)                  # the scanner counts them
    previous = ctx.state.get(STATE_KEY) if ctx.state else None
    previous = previous if isinstance(previous, Mapping) else {}
    scanner: AuthScanner | None = None   # made (numpy and all) when a first chunk comes
    window = FailureWindow(previous.get("window"), settings.SSH_BRUTEFORCE_MAX_RETRY,
                           settings.SSH_BRUTEFORCE_FINDTIME_SECONDS)
    probes = FailureWindow(previous.get("probe_window"), settings.SSH_BRUTEFORCE_MAX_RETRY,
                           settings.SSH_BRUTEFORCE_FINDTIME_SECONDS)
    accepted: list[dict[str, Any]] = []
    sources: dict[tuple[bytes, bytes], str] = {}
    for chunk in src.chunks():
        if scanner is None:
            from collectors.auth.scanner import AuthScanner  # noqa: PLC0415 - numpy: lines only

            scanner = AuthScanner(ctx.now, pending=previous.get("pending"))
        scanner.feed(chunk)
        window.add(scanner.fail_times, scanner.fail_hosts)
        probes.add(scanner.probe_times, scanner.probe_hosts)
        scanner.fail_times, scanner.fail_hosts = [], []
        scanner.probe_times, scanner.probe_hosts = [], []
        _check_logins(scanner, window, accepted, sources, probes)
    if not src.available:      # refused at the start (nothing was read), or the read failed
        return CollectResult(observations={"backend": src.backend_used}, available=False,
                             note=src.note)
    native = scanner.native if scanner is not None else _c_built()
    if not native and not _WARNED:
        _WARNED.append(True)
        log.warning("auth_log: the C scanner (collectors/auth/_authscan.c) is not built; the same "
                    "patterns run in Python, about 5x slower: run `make native` (installed with "
                    "pip or pipx: reinstall with libvectorscan-dev and gcc present)")
    counts = scanner.counts if scanner is not None else AuthCounts()
    log.debug("auth_log: %d lines, %d failed logins, %d addresses over the window",
              counts.lines, counts.failed_logins, len(window.hits))
    observations = observe(counts, window, accepted, set(sources.values()), src.info(), probes)
    observations["scanner"] = "c" if native else "regex"   # regex: make native not run
    samples = (Sample("auth.failed_logins", float(counts.failed_logins), by_hour=True),
               Sample("auth.accepted_logins", float(counts.accepted_count), by_hour=True),
               Sample("auth.invalid_users", float(counts.invalid_users), by_hour=True),
               Sample("auth.sudo_failures", float(counts.sudo_failure_count)),
               Sample("auth.preauth_probes", float(counts.probes), by_hour=True))
    state = {**src.new_state(), STATE_KEY: {"window": window.state(),
                                            "probe_window": probes.state(),
                                            "pending": _pending(scanner, previous)}}
    return CollectResult(observations=observations, samples=samples, state=state)


def _pending(scanner: AuthScanner | None, previous: Mapping[str, Any]) -> dict[str, Any]:
    """sshd pids still waiting for their address: the scanner's, or as carried when no line came."""
    if scanner is not None:
        return scanner.pending
    carried = previous.get("pending")
    return dict(carried) if isinstance(carried, Mapping) else {}
