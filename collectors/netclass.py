"""Where a connection goes: address classes, provider labels, a cached resolver, the allowlist.

A reverse (PTR) name is written by whoever owns the address, so it allows a peer only when
forward-confirmed: the name's own A/AAAA records include the peer (``Allowlist.allowed_by``).

Everything here is pure except ``Resolver``, whose lookups run in daemon threads under one short
deadline (a stuck DNS query can never hold the cycle) and whose answers, positive and negative,
are cached with an expiry in the collector's state.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

EXTERNAL = "external"
CGNAT = ipaddress.ip_network("100.64.0.0/10")   # RFC 6598 shared space: carrier NAT, Tailscale

# (class, test) in order: the first test that holds names the class; none holding means external.
# IPv4-mapped IPv6 addresses are unwrapped first, so ::ffff:127.0.0.1 is loopback.
CLASSES: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("unspecified", lambda a: a.is_unspecified),
    ("loopback", lambda a: a.is_loopback),
    ("link-local", lambda a: a.is_link_local),
    ("multicast", lambda a: a.is_multicast),
    ("private", lambda a: a.version == 4 and a in CGNAT),
    ("reserved", lambda a: a.is_reserved),
    ("private", lambda a: a.is_private),
)

# A few well-known networks, labelled by network (never by resolving). Informational only: a
# provider label never allows a connection; LLM_CONNECTION_ALLOWLIST does.
PROVIDERS: tuple[tuple[str, str], ...] = (
    ("1.1.1.0/24", "Cloudflare DNS"),
    ("1.0.0.0/24", "Cloudflare DNS"),
    ("2606:4700:4700::/48", "Cloudflare DNS"),
    ("104.16.0.0/13", "Cloudflare"),
    ("172.64.0.0/13", "Cloudflare"),
    ("2606:4700::/32", "Cloudflare"),
    ("8.8.8.0/24", "Google Public DNS"),
    ("8.8.4.0/24", "Google Public DNS"),
    ("2001:4860:4860::/48", "Google Public DNS"),
    ("9.9.9.0/24", "Quad9 DNS"),
    ("140.82.112.0/20", "GitHub"),
)
_PROVIDER_NETS = tuple((ipaddress.ip_network(net), label) for net, label in PROVIDERS)

POSITIVE_TTL_S = 24 * 3600.0   # a name found is kept a day
NEGATIVE_TTL_S = 3600.0        # "no name" is kept an hour
FAILED_TTL_S = 600.0           # a timeout or resolver error is retried after ten minutes
MAX_CACHE = 512                # entries kept in state per cache
MAX_LOOKUPS = 16               # lookups started per cycle; the rest wait for the next cycle
_HOST_NAME = re.compile(r"(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9_-]{1,63}")


def parse_ip(text: str) -> IPAddress | None:
    """The address in ``text`` (IPv6 scope ids dropped, IPv4-mapped IPv6 unwrapped), or None."""
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def classify(text: str) -> str:
    """loopback, private, link-local, unspecified, multicast, reserved, external (or invalid)."""
    addr = parse_ip(text)
    if addr is None:
        return "invalid"
    for name, test in CLASSES:
        if test(addr):
            return name
    return EXTERNAL


def provider(text: str) -> str | None:
    """The label of a well-known network holding the address, if any."""
    addr = parse_ip(text)
    if addr is None:
        return None
    for net, label in _PROVIDER_NETS:
        if addr.version == net.version and addr in net:
            return label
    return None


@dataclass(frozen=True)
class Allowlist:
    """LLM_CONNECTION_ALLOWLIST split into networks and host names."""

    networks: tuple[IPNetwork, ...]
    names: tuple[str, ...]       # lower case, without a trailing dot; "*.x" kept as written

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        """Split entries (already validated by the settings) into networks and names."""
        networks, names = [], []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                names.append(canonical_name(entry.strip()))
        return cls(tuple(networks), tuple(names))

    @property
    def exact_names(self) -> tuple[str, ...]:
        """Names whose addresses are worth resolving forward (wildcards cannot be)."""
        return tuple(n for n in self.names if not n.startswith("*."))

    def match_name(self, host: str | None) -> str | None:
        """The entry a host name matches: ``x.com`` matches it and its subdomains, ``*.x.com``
        only subdomains."""
        if not host:
            return None
        host = canonical_name(host)
        for entry in self.names:
            if entry.startswith("*."):
                if host.endswith(entry[1:]):
                    return entry
            elif host == entry or host.endswith("." + entry):
                return entry
        return None

    def allowed_by(self, ip: str, rdns: str | None,
                   forward: Mapping[str, Iterable[str] | None] | None = None) -> str | None:
        """The entry allowing a destination: by network; by a reverse name only when that name's
        own A/AAAA records (in ``forward``) include the address; or by an exact entry's addresses.

        Whoever owns an address writes its PTR record, so an unconfirmed reverse name allows
        nothing (forward-confirmed reverse DNS, as sshd's UseDNS and Postfix's reject_unknown_*).
        """
        addr = parse_ip(ip)
        if addr is None:
            return None
        for net in self.networks:
            if addr.version == net.version and addr in net:
                return str(net)
        forward = forward or {}
        named = self.match_name(rdns)
        if named and _includes(forward.get(canonical_name(rdns or "")), addr):
            return named
        for name in self.exact_names:
            if _includes(forward.get(name), addr):
                return name
        return None

    def unconfirmed(self, ip: str, rdns: str | None,
                    forward: Mapping[str, Iterable[str] | None] | None = None) -> str | None:
        """Why a reverse name that an entry would match allows nothing; None when none would."""
        if not self.match_name(rdns) or self.allowed_by(ip, rdns, forward):
            return None
        answer = (forward or {}).get(canonical_name(rdns or ""))
        if answer is None:
            return "unconfirmed: its forward lookup gave no answer in time"
        return f"unconfirmed: its A/AAAA records do not include {ip}"

    def names_to_confirm(self, rdns: Iterable[str | None]) -> list[str]:
        """The reverse names worth a forward lookup: those an entry matches, if well formed."""
        names = {canonical_name(n) for n in rdns if n and self.match_name(n)}
        return sorted(n for n in names if _HOST_NAME.fullmatch(n))


def canonical_name(name: str) -> str:
    """A host name as compared and looked up: lower case, no trailing dot."""
    return name.lower().rstrip(".")


def _includes(addresses: Iterable[str] | None, addr: IPAddress) -> bool:
    return any(parse_ip(a) == addr for a in addresses or ())


def reverse_lookup(ip: str) -> str | None:
    """The PTR name of an address through the system resolver; None when it has none."""
    try:
        return socket.gethostbyaddr(ip)[0]
    except (socket.herror, socket.gaierror):
        return None


def forward_lookup(name: str) -> list[str]:
    """The A and AAAA addresses of a host name through the system resolver ([] when none).

    A temporary failure (EAI_AGAIN) raises, so it is cached as no answer, not as "no address".
    """
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as err:
        if err.errno == socket.EAI_AGAIN:
            raise
        return []
    except socket.herror:
        return []
    return sorted({str(info[4][0]) for info in infos})


class Resolver:
    """Reverse and forward lookups with an expiring cache that lives in the collector's state."""

    def __init__(self, state: Mapping[str, Any] | None, now: float, timeout_s: float,
                 reverse: Callable[[str], str | None] = reverse_lookup,
                 forward: Callable[[str], list[str]] = forward_lookup) -> None:
        state = state or {}
        self.now = now
        self.timeout_s = timeout_s
        self._fns: dict[str, Callable[[str], Any]] = {"rdns": reverse, "fwd": forward}
        self.caches: dict[str, dict[str, list[Any]]] = {
            kind: {k: list(v) for k, v in dict(state.get(kind) or {}).items()
                   if isinstance(v, list) and len(v) == 2 and isinstance(v[1], (int, float))
                   and v[1] > now}
            for kind in self._fns}
        self.looked_up = 0
        self.timed_out = 0

    def reverse_many(self, ips: Iterable[str]) -> dict[str, str | None]:
        """PTR names of addresses (None: none known, or not looked up yet)."""
        return self._many("rdns", ips)

    def forward_many(self, names: Iterable[str]) -> dict[str, list[str]]:
        """Addresses of host names ([] when unknown)."""
        return {k: v or [] for k, v in self._many("fwd", names).items()}

    def forward_answers(self, names: Iterable[str]) -> dict[str, list[str] | None]:
        """Addresses of host names: [] when the name has none, None when no answer came in time
        (a timeout or a resolver failure)."""
        return self._many("fwd", names)

    def _many(self, kind: str, keys: Iterable[str]) -> dict[str, Any]:
        cache = self.caches[kind]
        wanted = list(dict.fromkeys(keys))
        missing = [k for k in wanted if k not in cache][:MAX_LOOKUPS]
        if missing:
            self._lookup(kind, missing)
        return {k: cache[k][0] if k in cache else None for k in wanted}

    def _lookup(self, kind: str, keys: list[str]) -> None:
        fn = self._fns[kind]
        answers: dict[str, tuple[bool, Any]] = {}
        lock = threading.Lock()

        def one(key: str) -> None:
            try:
                value, ok = fn(key), True
            except (OSError, UnicodeError) as err:
                log.debug("%s lookup of %s failed: %s", kind, key, err)
                value, ok = None, False
            with lock:
                answers[key] = (ok, value)

        threads = [threading.Thread(target=one, args=(k,), daemon=True, name=f"{kind}-lookup")
                   for k in keys]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + self.timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.looked_up += len(keys)
        with lock:
            done = dict(answers)
        cache = self.caches[kind]
        for key in keys:
            ok, value = done.get(key, (False, None))
            if key not in done:
                self.timed_out += 1
            ttl = FAILED_TTL_S if not ok else POSITIVE_TTL_S if value else NEGATIVE_TTL_S
            cache[key] = [value, self.now + ttl]

    def state(self) -> dict[str, Any]:
        """The caches to keep for the next cycle, bounded to the latest-expiring entries."""
        return {kind: dict(sorted(cache.items(), key=lambda kv: kv[1][1])[-MAX_CACHE:])
                for kind, cache in self.caches.items()}


# -- sockets of a process in another network namespace (a containerised runtime) -------------------
# psutil reads /proc/net/*, the agent's own namespace, so a runtime inside a container would show
# no connections; /proc/PID/net/* is the table of the process's own namespace.

TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
              "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
              "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}
PROC_NET_TABLES = ("tcp", "tcp6", "udp", "udp6")


@dataclass(frozen=True)
class SocketRecord:
    """One inet socket: protocol, local and remote ends (remote ip "" when none), state."""

    proto: str
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    status: str


def _hex_endpoint(text: str, little_endian: bool) -> tuple[str, int]:
    host, _, port = text.partition(":")
    raw = bytes.fromhex(host)
    if little_endian:  # the kernel prints each 32-bit word in host byte order
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw)), int(port, 16)


def parse_proc_net(text: str, proto: str, inodes: set[str] | None = None, uid: int | None = None,
                   little_endian: bool = sys.byteorder == "little") -> list[SocketRecord]:
    """Sockets of a /proc/.../net/{tcp,tcp6,udp,udp6} table, kept when their inode is among
    ``inodes`` and their owner is ``uid`` (None: no such filter)."""
    records = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or (inodes is not None and fields[9] not in inodes):
            continue
        if uid is not None and fields[7] != str(uid):
            continue
        try:
            lip, lport = _hex_endpoint(fields[1], little_endian)
            rip, rport = _hex_endpoint(fields[2], little_endian)
        except ValueError:
            continue
        kind = proto.rstrip("6")
        status = TCP_STATES.get(fields[3].upper(), "NONE") if kind == "tcp" else "NONE"
        if rport == 0:
            rip = ""
        records.append(SocketRecord(kind, lip, lport, rip, rport, status))
    return records


def socket_inodes(pid: int, proc: str = "/proc") -> set[str]:
    """Inodes of the sockets a process holds (PermissionError/FileNotFoundError pass through)."""
    inodes = set()
    fd_dir = f"{proc}/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def namespace_sockets(pid: int, uid: int | None = None, proc: str = "/proc") -> list[SocketRecord]:
    """Inet sockets from the tables of a process's own network namespace: the process's own
    (by its socket inodes), or, given ``uid``, every socket that user owns (needs no privilege)."""
    inodes = socket_inodes(pid, proc) if uid is None else None
    records: list[SocketRecord] = []
    for table in PROC_NET_TABLES:
        try:
            with open(f"{proc}/{pid}/net/{table}", encoding="ascii", errors="replace") as fh:
                records.extend(parse_proc_net(fh.read(), table, inodes, uid))
        except FileNotFoundError:
            continue  # no IPv6 in that namespace
    return records


def own_namespace(pid: int, proc: str = "/proc") -> bool:
    """True when the process shares the agent's network namespace (or it cannot be told)."""
    try:
        return os.readlink(f"{proc}/{pid}/ns/net") == os.readlink(f"{proc}/self/ns/net")
    except OSError:
        return True
