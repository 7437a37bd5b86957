"""The brute-force window (collectors.auth_log.FailureWindow) against a brute-force count: its
linear-time path for events already in time order and its general sort give the same crossings."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.auth_log import FailureWindow

FINDTIME, RETRY = 60.0, 3


def reference(times: list[float], hosts: list[bytes]) -> dict[bytes, dict[str, float]]:
    """Per address, at each of its events (by time, ties in input order): the events within
    FINDTIME up to it; where that reaches RETRY, the peak and the first and last such time."""
    hits: dict[bytes, dict[str, float]] = {}
    for host in dict.fromkeys(hosts):
        mine = sorted((t for t, h in zip(times, hosts, strict=True) if h == host))
        for k, t in enumerate(mine):
            inside = sum(1 for u in mine[:k + 1] if u >= t - FINDTIME)
            if inside >= RETRY:
                hit = hits.setdefault(host, {"peak": 0, "first_at": t})
                hit["peak"] = max(hit["peak"], inside)
                hit["last_at"] = t
    return hits


events = st.lists(st.tuples(st.integers(0, 400).map(float), st.sampled_from([b"a", b"b", b"c"])),
                  max_size=40)


@settings(max_examples=300, deadline=None)
@given(events, st.booleans())
def test_window_crossings_match_a_brute_force_count(rows: list[tuple[float, bytes]],
                                                    in_order: bool) -> None:
    if in_order:
        rows = sorted(rows, key=lambda row: row[0])
    times, hosts = [t for t, _ in rows], [h for _, h in rows]
    window = FailureWindow(None, RETRY, FINDTIME)
    window.add(times, hosts)
    assert window.hits == reference(times, hosts)


@settings(max_examples=200, deadline=None)
@given(events, events)
def test_the_c_ids_and_the_python_ones_give_the_same_window(first: list[tuple[float, bytes]],
                                                           second: list[tuple[float, bytes]]
                                                           ) -> None:
    """collectors/auth/_authscan.c's first_ids numbers addresses as the Python fallback does."""
    from collectors import auth_log
    from collectors.auth import _authscan
    hosts = [h for _, h in first + second]
    raw, names = _authscan.first_ids(hosts)
    index = {h: i for i, h in enumerate(dict.fromkeys(hosts))}
    assert names == list(index)
    assert list(memoryview(raw).cast("q")) == [index[h] for h in hosts]
    results = []
    for module in (_authscan, None):
        saved, auth_log.authscan = auth_log.authscan, module
        try:
            window = FailureWindow(None, RETRY, FINDTIME)
            for rows in (first, second):
                window.add([t for t, _ in rows], [h for _, h in rows])
            results.append((window.hits, window.state(),
                            window.failures_before([(b"a", 200.0), (b"b", 390.0)])))
        finally:
            auth_log.authscan = saved
    assert results[0] == results[1]
