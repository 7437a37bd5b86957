"""Pure functions over nmap XML (``nmap -oX``): python-nmap parses, we reduce and diff.

Keys are plain strings so they can live in the store's known sets: a host is its address
("127.0.0.1"), a port is "ADDR:PORT/PROTO" ("127.0.0.1:22/tcp").
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_FIELD = 80       # service, product and version strings come from banners: untrusted, capped
PROTOCOLS = ("tcp", "udp", "sctp", "ip")


class NmapParseError(Exception):
    """The text is not a complete nmap XML report."""


@dataclass(frozen=True)
class PortInfo:
    """One listed port of one host, with what the scan learned about its service."""

    addr: str
    port: int
    proto: str
    state: str
    service: str = ""
    product: str = ""
    version: str = ""

    @property
    def key(self) -> str:
        """The known-set key "ADDR:PORT/PROTO"."""
        return port_key(self.addr, self.port, self.proto)

    def as_json(self) -> dict[str, Any]:
        """A small JSON-able record for the report."""
        return {"addr": self.addr, "port": self.port, "proto": self.proto, "state": self.state,
                "service": self.service, "product": self.product, "version": self.version}


@dataclass(frozen=True)
class Scan:
    """What one finished scan says: hosts up, every listed port, the run's own counts."""

    hosts_up: tuple[str, ...]
    hosts_total: int
    ports: Mapping[str, PortInfo] = field(default_factory=dict)  # key -> listed port, any state
    elapsed_s: float = 0.0
    command_line: str = ""

    @property
    def open_ports(self) -> dict[str, PortInfo]:
        """The listed ports whose state is exactly "open" ("open|filtered" is not open)."""
        return {k: p for k, p in self.ports.items() if p.state == "open"}


@dataclass(frozen=True)
class ScanDiff:
    """What changed from the known sets to a scan."""

    opened: tuple[str, ...]                  # port keys open now and not known before
    closed: Mapping[str, str]                # known port key -> its state now, or "not listed"
    hosts_appeared: tuple[str, ...]
    hosts_disappeared: tuple[str, ...]


def port_key(addr: str, port: int, proto: str) -> str:
    """The known-set key of a port: "ADDR:PORT/PROTO" (IPv6 addresses in brackets)."""
    host = f"[{addr}]" if ":" in addr else addr
    return f"{host}:{port}/{proto}"


def key_host(key: str) -> str:
    """The address part of a port key (brackets removed)."""
    host = key.rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") else host


def _clip(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isprintable())[:MAX_FIELD]


def _raw_parse(xml: str) -> dict[str, Any]:
    """python-nmap's own parser, without its constructor (which runs ``nmap -V`` unbounded)."""
    import nmap  # noqa: PLC0415 - python-nmap (and multiprocessing) only when a scan finished

    scanner = nmap.PortScanner.__new__(nmap.PortScanner)
    # the only attribute analyse_nmap_xml_scan reads (private: the stubs do not declare it)
    scanner._nmap_last_output = ""  # type: ignore[attr-defined]
    try:
        return dict(scanner.analyse_nmap_xml_scan(nmap_xml_output=xml))
    except (nmap.PortScannerError, AttributeError, ValueError, TypeError, KeyError) as err:
        raise NmapParseError(f"not a complete nmap XML report: {str(err)[:200]}") from err


def parse_scan(xml: str | bytes) -> Scan:
    """Parse one nmap XML report into hosts up and listed ports."""
    text = xml.decode("utf-8", "replace") if isinstance(xml, bytes) else xml
    if not text.strip():
        raise NmapParseError("empty nmap output")
    raw = _raw_parse(text)
    stats = raw["nmap"]["scanstats"]
    hosts_up: list[str] = []
    ports: dict[str, PortInfo] = {}
    for addr, host in raw["scan"].items():
        if host.get("status", {}).get("state") != "up" or not isinstance(addr, str):
            continue
        hosts_up.append(addr)
        for proto in PROTOCOLS:
            for number, facts in host.get(proto, {}).items():
                info = PortInfo(addr=addr, port=int(number), proto=proto,
                                state=_clip(facts.get("state")), service=_clip(facts.get("name")),
                                product=_clip(facts.get("product")),
                                version=_clip(facts.get("version")))
                ports[info.key] = info
    try:
        total = int(stats["totalhosts"])
        elapsed = float(stats["elapsed"] or 0.0)
    except (TypeError, ValueError) as err:
        raise NmapParseError(f"bad run statistics in nmap XML: {stats!r:.200}") from err
    return Scan(hosts_up=tuple(hosts_up), hosts_total=total, ports=ports, elapsed_s=elapsed,
                command_line=_clip(raw["nmap"]["command_line"]))


def diff(known_hosts: Iterable[str], known_open: Iterable[str], scan: Scan) -> ScanDiff:
    """Compare known hosts and open ports with a scan.

    Ports of a known host that is not up in this scan are not "closed": the host is reported as
    disappeared instead, and its ports keep their place until it returns.
    """
    hosts = set(known_hosts)
    up = set(scan.hosts_up)
    open_now = scan.open_ports
    opened = sorted(k for k in open_now if k not in set(known_open))
    closed = {}
    for key in sorted(set(known_open) - set(open_now)):
        if key_host(key) not in up:
            continue
        listed = scan.ports.get(key)
        closed[key] = listed.state if listed is not None else "not listed"
    return ScanDiff(opened=tuple(opened), closed=closed,
                    hosts_appeared=tuple(sorted(up - hosts)),
                    hosts_disappeared=tuple(sorted(hosts - up)))
