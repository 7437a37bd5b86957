"""Address classes, provider labels, the allowlist, the cached resolver (all on loopback)."""
from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from collectors import netclass
from collectors.netclass import Allowlist, Resolver

# Only classified here, never contacted.
CLASS_TABLE = [
    ("127.0.0.1", "loopback"),
    ("127.9.8.7", "loopback"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.5.4", "private"),
    ("192.168.1.20", "private"),
    ("::ffff:192.168.1.20", "private"),
    ("fd12:3456:789a::1", "private"),
    ("100.64.0.1", "private"),          # CGNAT / Tailscale
    ("100.127.255.254", "private"),
    ("169.254.10.20", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.251", "multicast"),
    ("ff02::fb", "multicast"),
    ("240.0.0.1", "reserved"),
    ("8.8.8.8", "external"),
    ("1.1.1.1", "external"),
    ("100.128.0.1", "external"),        # just outside CGNAT
    ("::ffff:8.8.4.4", "external"),
    ("2606:4700:4700::1111", "external"),
    ("2a00:1450:4001:80b::200e", "external"),
    ("not-an-ip", "invalid"),
    ("", "invalid"),
]


@pytest.mark.parametrize(("address", "expected"), CLASS_TABLE)
def test_classify_table(address: str, expected: str) -> None:
    assert netclass.classify(address) == expected


def test_ipv4_mapped_addresses_are_unwrapped() -> None:
    assert str(netclass.parse_ip("::ffff:10.0.0.1")) == "10.0.0.1"
    assert netclass.parse_ip("[::1]") is not None
    assert netclass.parse_ip("999.1.1.1") is None


@pytest.mark.parametrize(("address", "label"), [
    ("1.1.1.1", "Cloudflare DNS"), ("8.8.4.4", "Google Public DNS"),
    ("::ffff:8.8.8.8", "Google Public DNS"), ("2606:4700:4700::1001", "Cloudflare DNS"),
    ("104.18.1.2", "Cloudflare"), ("9.9.9.9", "Quad9 DNS"), ("8.8.9.1", None),
    ("192.168.1.1", None), ("junk", None)])
def test_provider_labels_come_from_the_network_table(address: str, label: str | None) -> None:
    assert netclass.provider(address) == label


def test_allowlist_by_network_and_by_name() -> None:
    allow = Allowlist.parse(["203.0.113.0/24", "2001:db8::/32", "ollama.com", "*.example.org",
                             "Registry.Ollama.AI."])
    assert allow.allowed_by("203.0.113.9", None) == "203.0.113.0/24"
    assert allow.allowed_by("::ffff:203.0.113.9", None) == "203.0.113.0/24"
    assert allow.allowed_by("2001:db8::5", None) == "2001:db8::/32"
    assert allow.allowed_by("198.51.100.1", None) is None
    # names: exact and domain suffix for plain entries, strict subdomains for *. entries, each
    # only when forward-confirmed (the reverse name's own addresses include the peer)
    confirmed = {n: ["198.51.100.1"] for n in ("edge-1.ollama.com", "notollama.com",
                                                "cdn.example.org", "example.org")}
    assert allow.allowed_by("198.51.100.1", "ollama.com", {"ollama.com": ["198.51.100.1"]}) == (
        "ollama.com")
    assert allow.allowed_by("198.51.100.1", "edge-1.ollama.com.", confirmed) == "ollama.com"
    assert allow.allowed_by("198.51.100.1", "Edge-1.Ollama.COM", confirmed) == "ollama.com"
    assert allow.allowed_by("198.51.100.1", "notollama.com", confirmed) is None
    assert allow.allowed_by("198.51.100.1", "cdn.example.org", confirmed) == "*.example.org"
    assert allow.allowed_by("198.51.100.1", "example.org", confirmed) is None
    # an unconfirmed reverse name allows nothing: whoever owns the address writes its PTR record
    assert allow.allowed_by("198.51.100.1", "registry.ollama.ai") is None
    assert allow.allowed_by("198.51.100.1", "cdn.example.org", {"cdn.example.org": []}) is None
    assert allow.allowed_by("198.51.100.1", "cdn.example.org",
                            {"cdn.example.org": ["198.51.100.2"]}) is None
    assert allow.unconfirmed("198.51.100.1", "cdn.example.org", {"cdn.example.org": []}) == (
        "unconfirmed: its A/AAAA records do not include 198.51.100.1")
    assert allow.unconfirmed("198.51.100.1", "cdn.example.org", {"cdn.example.org": None}) == (
        "unconfirmed: its forward lookup gave no answer in time")
    assert allow.unconfirmed("198.51.100.1", "cdn.example.org", confirmed) is None
    assert allow.unconfirmed("198.51.100.1", "dns.google", {}) is None     # no entry would match
    # an exact entry's forward addresses allow the address itself (CDN peers rarely
    # reverse-resolve), but a looked-up reverse name outside the allowlist never does
    forward = {"registry.ollama.ai": ["198.51.100.1", "2001:db9::1"],
               "something.cdn.net": ["198.51.100.9"]}
    assert allow.allowed_by("198.51.100.1", "something.cdn.net", forward) == "registry.ollama.ai"
    assert allow.allowed_by("198.51.100.9", "something.cdn.net", forward) is None
    assert allow.exact_names == ("ollama.com", "registry.ollama.ai")
    assert allow.allowed_by("garbage", "ollama.com", confirmed) is None
    # only well-formed reverse names that an entry matches are worth a forward lookup
    assert allow.names_to_confirm(["Edge.Ollama.com.", "dns.google", None, "x y.ollama.com",
                                   "edge.ollama.com"]) == ["edge.ollama.com"]


class CountingResolver:
    """An injected resolver: answers from a table and counts the questions."""

    def __init__(self, table: dict[str, Any], block: threading.Event | None = None) -> None:
        self.table = table
        self.block = block
        self.asked: list[str] = []

    def __call__(self, key: str) -> Any:
        self.asked.append(key)
        if self.block is not None:
            self.block.wait(5)
        answer = self.table.get(key)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_resolver_caches_positive_and_negative_answers_and_expires_them() -> None:
    rdns = CountingResolver({"10.0.0.1": "nas.lan", "10.0.0.2": None,
                             "10.0.0.3": OSError("resolver broke")})
    res = Resolver(None, now=1000.0, timeout_s=1.0, reverse=rdns)
    assert res.reverse_many(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1"]) == {
        "10.0.0.1": "nas.lan", "10.0.0.2": None, "10.0.0.3": None}
    assert sorted(rdns.asked) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    state = res.state()
    assert state["rdns"]["10.0.0.1"] == ["nas.lan", 1000.0 + netclass.POSITIVE_TTL_S]
    assert state["rdns"]["10.0.0.2"] == [None, 1000.0 + netclass.NEGATIVE_TTL_S]
    assert state["rdns"]["10.0.0.3"] == [None, 1000.0 + netclass.FAILED_TTL_S]

    # next cycle, from state: nothing asked again
    rdns.asked.clear()
    again = Resolver(state, now=1300.0, timeout_s=1.0, reverse=rdns)
    assert again.reverse_many(["10.0.0.1", "10.0.0.2"])["10.0.0.1"] == "nas.lan"
    assert rdns.asked == [] and again.looked_up == 0

    # after the failure's expiry only the failed one is asked again
    later = Resolver(state, now=1000.0 + netclass.FAILED_TTL_S + 1, timeout_s=1.0, reverse=rdns)
    later.reverse_many(["10.0.0.1", "10.0.0.2", "10.0.0.3"])
    assert rdns.asked == ["10.0.0.3"]


def test_a_stuck_lookup_is_abandoned_at_the_deadline_and_retried_later() -> None:
    release = threading.Event()
    rdns = CountingResolver({"10.9.9.9": "slow.lan"}, block=release)
    res = Resolver(None, now=0.0, timeout_s=0.2, reverse=rdns)
    try:
        assert res.reverse_many(["10.9.9.9"]) == {"10.9.9.9": None}
        assert res.timed_out == 1
        assert res.state()["rdns"]["10.9.9.9"] == [None, netclass.FAILED_TTL_S]
    finally:
        release.set()


def test_lookups_per_cycle_are_bounded() -> None:
    rdns = CountingResolver({})
    res = Resolver(None, now=0.0, timeout_s=1.0, reverse=rdns)
    res.reverse_many(f"10.0.1.{i}" for i in range(netclass.MAX_LOOKUPS + 5))
    assert len(rdns.asked) == netclass.MAX_LOOKUPS


def test_forward_lookups_share_the_cache() -> None:
    fwd = CountingResolver({"registry.ollama.ai": ["127.0.0.2"]})
    res = Resolver({"fwd": {"expired.example": [["127.0.0.3"], 5.0], "bad": "x",
                            "worse": [["127.0.0.4"], "soon"]}}, now=10.0, timeout_s=1.0,
                   forward=fwd)
    assert res.forward_many(["registry.ollama.ai", "unknown.example"]) == {
        "registry.ollama.ai": ["127.0.0.2"], "unknown.example": []}
    assert set(res.state()["fwd"]) == {"registry.ollama.ai", "unknown.example"}


def test_real_reverse_lookup_of_loopback_through_the_system_resolver() -> None:
    res = Resolver(None, now=0.0, timeout_s=2.0)
    name = res.reverse_many(["127.0.0.1"])["127.0.0.1"]
    assert name is not None and "localhost" in name


@given(st.ip_addresses(v=4))
def test_ipv4_mapped_form_classifies_like_the_ipv4_address(addr: ipaddress.IPv4Address) -> None:
    assert netclass.classify(f"::ffff:{addr}") == netclass.classify(str(addr))


def _kernel_hex(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """How the kernel prints an address in /proc/net tables on a little-endian machine."""
    raw = addr.packed
    return "".join(raw[i:i + 4][::-1].hex().upper() for i in range(0, len(raw), 4))


@given(st.ip_addresses(), st.ip_addresses(), st.integers(1, 65535), st.integers(1, 65535))
def test_proc_net_parser_round_trips_kernel_formatted_addresses(
        local: Any, remote: Any, lport: int, rport: int) -> None:
    assume(local.version == remote.version)
    table = "tcp6" if local.version == 6 else "tcp"
    text = ("  sl  local_address rem_address st\n"
            f"   0: {_kernel_hex(local)}:{lport:04X} {_kernel_hex(remote)}:{rport:04X} 01 "
            "00000000:00000000 00:00000000 00000000  1000 0 4242 1\n")
    [rec] = netclass.parse_proc_net(text, table, {"4242"}, uid=1000, little_endian=True)
    assert (ipaddress.ip_address(rec.local_ip), rec.local_port) == (local, lport)
    assert (ipaddress.ip_address(rec.remote_ip), rec.remote_port) == (remote, rport)
    assert netclass.parse_proc_net(text, table, {"4242"}, uid=0, little_endian=True) == []


def test_forward_answers_tell_no_address_from_no_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(name: str, *_: Any, **__: Any) -> list[Any]:
        if name == "flaky.example":
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if name == "gone.example":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("2001:db8::7", 0, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.7", 0))]

    monkeypatch.setattr(netclass.socket, "getaddrinfo", getaddrinfo)   # no real DNS
    res = Resolver(None, now=0.0, timeout_s=2.0)
    assert res.forward_answers(["both.example", "gone.example", "flaky.example"]) == {
        "both.example": ["192.0.2.7", "2001:db8::7"], "gone.example": [], "flaky.example": None}
    state = res.state()["fwd"]
    assert state["gone.example"][1] == netclass.NEGATIVE_TTL_S
    assert state["flaky.example"] == [None, netclass.FAILED_TTL_S]   # retried soon, not an hour


_names = st.one_of(st.text(max_size=40), st.sampled_from(
    ["registry.ollama.ai", "registry.ollama.ai.", "REGISTRY.OLLAMA.AI", "edge.ollama.com",
     "ollama.com", "x.registry.ollama.ai", "registry.ollama.ai.evil.example"]))


@given(peer=st.ip_addresses(), ptr=st.one_of(st.none(), _names),
       answers=st.dictionaries(_names, st.lists(st.ip_addresses(), max_size=3), max_size=4))
def test_no_reverse_name_allows_a_peer_that_no_forward_record_holds(
        peer: ipaddress.IPv4Address | ipaddress.IPv6Address, ptr: str | None,
        answers: dict[str, list[Any]]) -> None:
    # whatever the PTR record says and whatever else resolves, a peer absent from every forward
    # answer is allowed only by a network entry (the default allowlist has none)
    same = netclass.parse_ip(str(peer))       # ::ffff:192.0.2.1 is 192.0.2.1
    forward = {name: [str(a) for a in addrs if netclass.parse_ip(str(a)) != same]
               for name, addrs in answers.items()}
    allow = Allowlist.parse(["registry.ollama.ai", "ollama.com", "*.example"])
    assert allow.allowed_by(str(peer), ptr, forward) is None
    confirmed = {**forward, netclass.canonical_name(ptr or ""): [str(peer)]}
    assert (allow.allowed_by(str(peer), ptr, confirmed) is not None) == (
        allow.match_name(ptr) is not None)
