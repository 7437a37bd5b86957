"""Which model servers listen where the network reaches them, and what the probe says of each.

Two sources of listeners, one read of the kernel's tables a cycle: a runtime's own sockets (from
collectors.llm_runtimes) and any listener of this machine on a well-known model server port
(``LLM_PORTS``). Each is probed from this machine without leaving it: 127.0.0.1 for a listener
on 0.0.0.0, ::1 for one on ::, the address itself when it is one of this machine's (a socket
free-bound to a foreign address is never probed). The probes (collectors.llm_probe) run in
parallel, all within ``PROBE_BUDGET_S``.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from collectors import llm_probe

PROBE_TIMEOUT_S = llm_probe.TIMEOUT_S       # one request of a probe
PROBE_BUDGET_S = 6.0                         # every probe of a cycle, run in parallel
PROBED_ATTRIBUTIONS = ("process", "user")   # sockets in this machine's own network namespace
MAX_ADDRESSES = 5

# Ports local model servers listen on by default: Ollama, llama.cpp / Open WebUI (in Docker),
# vLLM / TGI examples, LM Studio, Open WebUI, text-generation-webui's API / koboldcpp, llama.cpp
# alternatives, Gradio (text-generation-webui's UI).
LLM_PORTS: tuple[int, ...] = (11434, 8080, 8000, 1234, 3000, 5000, 5001, 8081, 7860)


def loopback_for(address: str, own: Iterable[str] | None = None) -> str | None:
    """Where to probe a listener bound to ``address`` from this machine without leaving it:
    127.0.0.1 for 0.0.0.0, ::1 for ::, the address itself when it is one of this machine's own
    (an IPv4-mapped one unwrapped); None for anything else (a free-bind to a foreign address)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        return "127.0.0.1" if ip.version == 4 else "::1"
    if ip.is_loopback:
        return str(ip)
    mine = set(own) if own is not None else own_addresses()
    return str(ip) if str(ip) in mine else None


def own_addresses() -> set[str]:
    """This machine's interface addresses (scope ids dropped)."""
    found = {"127.0.0.1", "::1"}
    for addrs in psutil.net_if_addrs().values():
        found.update(a.address.split("%", 1)[0] for a in addrs
                     if a.family in (socket.AF_INET, socket.AF_INET6))
    return found


def is_loopback(address: str) -> bool:
    """127.0.0.0/8 or ::1 (an IPv4-mapped loopback too)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket of this machine."""

    address: str
    port: int
    pid: int | None


def listeners(ports: Collection[int] | None = None) -> list[Listener]:
    """This machine's listening TCP sockets (one read of the kernel's tables); [] when unreadable.

    With ``ports``: only whether one of them may be listened on matters, and [] comes at once when
    the kernel's tables show no listener on any of them off loopback (a quiet machine, each cycle),
    without psutil's walk of every process's descriptors that finds the sockets' owners (~8 ms).
    """
    if ports is not None and not _may_listen(ports):
        return []
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return []
    return [Listener(c.laddr.ip, c.laddr.port, c.pid) for c in conns
            if c.status == psutil.CONN_LISTEN and c.laddr]


def _may_listen(ports: Collection[int]) -> bool:
    """False only when the kernel lists no listening TCP socket on one of ``ports`` at an address
    other than 127.0.0.0/8 or ::1; True whenever in doubt. Asked through sock_diag (what `ss -lt`
    does: the kernel walks its listening sockets only), else read from /proc/net/tcp and tcp6
    (which walks every socket: ~3 ms each on a quiet machine)."""
    wanted = set(ports)
    try:
        found = _diag_listeners()
    except (OSError, ValueError, struct.error):
        return _proc_may_listen(wanted)
    return any(port in wanted and not is_loopback(address) for address, port in found)


_DIAG_REQUEST = struct.Struct("=IHHIIBBBBI48x")   # nlmsghdr + inet_diag_req_v2 (any socket id)
_NLMSG = struct.Struct("=IHHII")
SOCK_DIAG_BY_FAMILY, NLMSG_ERROR, NLMSG_DONE = 20, 2, 3
NLM_F_REQUEST_DUMP = 0x1 | 0x300
TCP_LISTEN = 10


def _diag_listeners() -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket, IPv4 and IPv6, from NETLINK_SOCK_DIAG."""
    found: list[tuple[str, int]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4) as sock:   # NETLINK_SOCK_DIAG
        sock.settimeout(1.0)
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            sock.send(_DIAG_REQUEST.pack(_DIAG_REQUEST.size, SOCK_DIAG_BY_FAMILY,
                                         NLM_F_REQUEST_DUMP, seq, 0, family, socket.IPPROTO_TCP,
                                         0, 0, 1 << TCP_LISTEN))
            done = False
            while not done:
                data = sock.recv(65536)
                offset = 0
                while offset + _NLMSG.size <= len(data):
                    length, kind, _, _, _ = _NLMSG.unpack_from(data, offset)
                    if length < _NLMSG.size:
                        raise ValueError("malformed netlink message")
                    if kind == NLMSG_DONE:
                        done = True
                        break
                    if kind == NLMSG_ERROR:
                        raise OSError("sock_diag refused the request")
                    body = offset + _NLMSG.size          # inet_diag_msg
                    port = int.from_bytes(data[body + 4:body + 6], "big")
                    raw = data[body + 8:body + (12 if family == socket.AF_INET else 24)]
                    found.append((socket.inet_ntop(family, raw), port))
                    offset += (length + 3) & ~3
    return found


def _proc_may_listen(wanted: set[int]) -> bool:
    """_may_listen from /proc/net/tcp and tcp6 (sock_diag unavailable)."""
    read = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, "rb") as fh:
                rows = fh.read().splitlines()[1:]
        except FileNotFoundError:
            continue            # tcp6 is absent where IPv6 is off
        except OSError:
            return True
        read = True
        for row in rows:
            fields = row.split()
            if len(fields) < 4 or fields[3] != b"0A":      # 0A: TCP_LISTEN
                continue
            address, _, port = fields[1].rpartition(b":")
            try:
                if int(port, 16) in wanted and address.upper() not in _LOOPBACK_HEX \
                        and not (len(address) == 8 and address.upper().endswith(b"7F")):
                    return True
            except ValueError:
                return True
    return not read


# ::1 and ::ffff:127.0.0.1 as /proc/net/tcp6 spells them (four host-order 32-bit words)
_LOOPBACK_HEX = (b"00000000000000000000000001000000", b"0000000000000000FFFF00000100007F")


def exposed_ports(found: Iterable[Listener]) -> set[int]:
    """The ports with a listener on a non-loopback address (reachable from the network)."""
    return {lst.port for lst in found if not is_loopback(lst.address)}


def endpoint(ip: str, port: int) -> str:
    """ADDRESS:PORT, an IPv6 address in brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _exposed_sockets(entry: Mapping[str, Any]) -> dict[int, list[str]]:
    """A runtime's TCP listeners on a non-loopback address: port -> bound addresses."""
    ports: dict[int, set[str]] = {}
    for sock in entry.get("listening", ()):
        if sock["proto"] == "tcp" and sock["class"] != "loopback" and "port" in sock:
            ports.setdefault(int(sock["port"]), set()).add(str(sock["ip"]))
    return {port: sorted(addresses) for port, addresses in ports.items()}


def _slot(port: int, addresses: list[str], own: set[str]) -> dict[str, Any]:
    """One port to probe: where it is bound, and where this machine reaches it (None: nowhere
    that stays on this machine, so it is not probed)."""
    target = next((t for t in (loopback_for(a, own) for a in addresses) if t), None)
    return {"endpoint": endpoint(addresses[0], port), "addresses": addresses[:MAX_ADDRESSES],
            "port": port, "probed": target}


def _process_name(pid: int | None) -> str | None:
    if pid is None:
        return None
    try:
        return psutil.Process(pid).name()[:100]
    except psutil.Error:
        return None


def plan_exposure(runtimes: list[dict[str, Any]], found: Iterable[Listener],
                  own_ports: Iterable[int], own_pid: int | None = None,
                  own: set[str] | None = None) -> list[dict[str, Any]]:
    """What to probe: each runtime's non-loopback TCP listeners (added to its entry as
    ``exposures``), and every other non-loopback listener on a well-known model server port
    (returned), the agent's own ports and process excepted."""
    mine = own if own is not None else own_addresses()
    own_pid = os.getpid() if own_pid is None else own_pid
    covered: set[int] = set()
    for entry in runtimes:
        slots = []
        here = entry.get("attribution") in PROBED_ATTRIBUTIONS
        for port, addresses in sorted(_exposed_sockets(entry).items()):
            if port in covered:
                continue      # one runtime per port: the best scored (a service account's
                              # sockets are listed for each of its runtimes)
            slot = _slot(port, addresses, mine)
            if here:
                covered.add(port)
            else:    # its sockets are a container's: a published port is a listener here
                slot.update(probed=None, note="in its own network namespace (a container): not "
                                               "probed; a port published to this machine is")
            slots.append(slot)
        if slots:
            entry["exposures"] = slots
    skip = covered | set(own_ports)
    others: dict[int, tuple[set[str], int | None]] = {}
    for lst in found:
        if (lst.port in LLM_PORTS and lst.port not in skip and lst.pid != own_pid
                and not is_loopback(lst.address)):
            others.setdefault(lst.port, (set(), lst.pid))[0].add(lst.address)
    return [{**_slot(port, sorted(bound), mine), "pid": pid, "process": _process_name(pid)}
            for port, (bound, pid) in sorted(others.items())]


def probe_exposure(runtimes: list[dict[str, Any]], servers: list[dict[str, Any]],
                   prober: Callable[..., Mapping[tuple[str, int], llm_probe.ProbeResult | None]]
                   = llm_probe.probe_many) -> int:
    """Probe every planned slot at once, within PROBE_BUDGET_S; each gets its answer (the API,
    whether it asked for credentials, its models) or why it has none. Returns how many were
    probed."""
    slots = [s for entry in runtimes for s in entry.get("exposures", ())] + servers
    targets = [(s["probed"], s["port"]) for s in slots if s["probed"]]
    answers = prober(targets, timeout_s=PROBE_TIMEOUT_S, budget_s=PROBE_BUDGET_S) \
        if targets else {}
    for slot in slots:
        key = (slot["probed"], slot["port"])
        answer = answers.get(key)
        if answer is not None:
            slot.update(answer.as_json())
            continue
        slot.update(api=None, unauthenticated=None)
        if not slot["probed"]:
            slot.setdefault("note", "bound to an address that is not this machine's: not probed")
        else:
            slot["note"] = ("no LLM API answered" if key in answers
                            else "no answer within the probe's time")
    return len(targets)
