"""Findings from finished nmap scans: what opened, closed, appeared or disappeared since known.

Known sets: "nmap.hosts" (addresses up) and "nmap.open" ("ADDR:PORT/PROTO"). The first scan, and
the first after NMAP_TARGETS or NMAP_SCAN_OPTIONS change, only learns. A new port or host is
learnt at once (one alert, resolved by the next scan). A closed port or a vanished host stays
reported on every scan while it is missing, and is forgotten after ``FORGET_AFTER_S``.

An open port that answered the collector's probe as an LLM API without asking for credentials is
``nmap_llm_open`` on every finished scan that finds it so (the first, learning scan included): it
is a state, not a change, and it resolves when a finished scan no longer finds it open.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from analysis.kinds import KindSpec
from collectors.llm_probe import API_NAMES
from collectors.nmap_parse import PortInfo, Scan, ScanDiff, diff, key_host, port_key
from foundation.context import DetectContext
from foundation.model import CollectResult, Finding, Severity

HOSTS = "nmap.hosts"
OPEN = "nmap.open"
FORGET_AFTER_S = 7 * 86400  # a port or host missing this long is no longer expected

KINDS = (
    KindSpec("new_open_port", "nmap", Severity.HIGH, Severity.MEDIUM,
             "A port is open that was not open before",
             "Find the listener (`ss -ltnp 'sport = :{port}'` on {host}) and make sure you "
             "started it on purpose; stop it or firewall it if not. It is learnt as normal after "
             "this alert.", event=True,
             name="New open port", says="Port {port}/{protocol} is open on {host}",
             speaks="New open port {port} on {where}.",
             example={"port": 8080, "protocol": "tcp", "host": "192.168.1.20",
                      "where": "another host"}),
    KindSpec("port_closed", "nmap", Severity.MEDIUM, Severity.NONE,
             "A port that was open is no longer open",
             "Check the service behind it (`systemctl status`, its logs) and restart it; if it was "
             "retired on purpose, the finding ends by itself after 7 days.",
             name="Port closed", says="Port {port}/{protocol} on {host} is no longer open",
             speaks="Port {port} closed on {where}.",
             cleared="Port {port}/{protocol} on {host} is open again",
             example={"port": 443, "protocol": "tcp", "host": "127.0.0.1",
                      "where": "this machine"}),
    KindSpec("host_appeared", "nmap", Severity.MEDIUM, Severity.NONE,
             "A new host answers in a scanned network",
             "Identify the device (router's DHCP leases, `nmap -sV {host}`); unknown devices on a "
             "home network deserve a look.", event=True,
             name="New host on the network", says="A new host {host} answers on the network",
             speaks="A new host answers on the network.",
             example={"host": "192.168.1.77"}),
    KindSpec("host_disappeared", "nmap", Severity.LOW, Severity.NONE,
             "A host that answered before no longer does",
             "Check that the device is powered and connected, if it should be; forgotten after 7 "
             "days.",
             name="Host gone from the network", says="{host} no longer answers on the network",
             speaks="A host on the network no longer answers.",
             cleared="{host} answers on the network again", example={"host": "192.168.1.40"}),
    KindSpec("nmap_llm_open", "nmap", Severity.HIGH, Severity.HIGH,
             "A model server on a scanned host answers anyone without authentication",
             "Anyone who reaches {endpoint} can use its models (Ollama also lets them pull and "
             "delete models). On that host, bind it to loopback (Ollama: `systemctl edit "
             "ollama`, add `Environment=\"OLLAMA_HOST=127.0.0.1:11434\"` under [Service], then "
             "`systemctl restart ollama`; llama.cpp and vLLM: start them with "
             "`--host 127.0.0.1`), or put a reverse proxy that asks for a password or a "
             "firewall rule (`ufw deny {port}/tcp`) in front of port {port}.",
             name="Open model server on the network",
             says="{api_name} on {endpoint} answers anyone without authentication",
             speaks="{api_name} answers without a password on {where}, port {port}.",
             cleared="{api_name} on {endpoint} no longer answers without authentication",
             example={"api": "ollama", "api_name": "Ollama", "endpoint": "192.168.1.20:11434",
                      "host": "192.168.1.20", "port": 11434, "where": "another host"}),
)


def _scope(ctx: DetectContext) -> str:
    """What was scanned and how: a change makes the next scan a learning one."""
    return f"{' '.join(ctx.settings.NMAP_TARGETS)} | {ctx.settings.NMAP_SCAN_OPTIONS}"


def scan_from_observation(obs: Mapping[str, Any]) -> Scan:
    """Rebuild the Scan the collector reported: open ports, and other listed ports' states."""
    ports = {}
    for key, state in obs["other_ports"].items():
        addr, rest = key_host(key), key.rsplit(":", 1)[1]
        number, proto = rest.split("/", 1)
        ports[key] = PortInfo(addr=addr, port=int(number), proto=proto, state=state)
    for p in obs["open_ports"]:
        info = PortInfo(addr=p["addr"], port=int(p["port"]), proto=p["proto"], state=p["state"],
                        service=p["service"], product=p["product"], version=p["version"])
        ports[info.key] = info
    return Scan(hosts_up=tuple(obs["hosts_up"]), hosts_total=int(obs["hosts_total"]), ports=ports)


def _learn(scan: Scan, ctx: DetectContext, memo: dict[str, Any], scope: str) -> None:
    ctx.forget(HOSTS, *ctx.known(HOSTS))
    ctx.forget(OPEN, *ctx.known(OPEN))
    ctx.remember(HOSTS, *scan.hosts_up)
    ctx.remember(OPEN, *scan.open_ports)
    memo.update(scope=scope, missing={})


_SPECS = {k.kind: k for k in KINDS}


def _finding(kind: str, key: str, summary: str, labels: Mapping[str, str],
             facts: Mapping[str, Any]) -> Finding:
    spec = _SPECS[kind]
    return Finding(source="nmap", kind=kind, key=key, severity=spec.severity, floor=spec.floor,
                   summary=summary, labels=dict(labels), facts=dict(facts))


def _facts(key: str, local: frozenset[str]) -> dict[str, Any]:
    """What nmap measured of a port or host (ADDR[:PORT/PROTO]), and whether it is this machine."""
    host = key_host(key) if ":" in key and "/" in key else key
    facts: dict[str, Any] = {"host": host,
                             "where": "this machine" if host in local else "another host"}
    if host != key:
        number, protocol = key.rsplit(":", 1)[1].split("/", 1)
        facts.update(port=int(number), protocol=protocol)
    return facts


def without_own(scan: Scan, local: frozenset[str], own_ports: frozenset[int]) -> Scan:
    """The scan without the agent's own listeners (its /metrics port) on this machine: they are
    the agent's, never a finding."""
    if not own_ports or not local:
        return scan
    kept = {k: p for k, p in scan.ports.items()
            if not (p.addr in local and p.proto == "tcp" and p.port in own_ports)}
    return replace(scan, ports=kept)


def _port_labels(key: str, info: PortInfo | None = None) -> dict[str, str]:
    """Labels of a port finding; service, product and version are banner text (untrusted)."""
    labels = {"address": key_host(key), "port": key.rsplit(":", 1)[1]}
    if info is not None:
        labels.update(service=info.service, product=info.product, version=info.version)
    return labels


def _new(changes: ScanDiff, scan: Scan, ctx: DetectContext, local: frozenset[str]
         ) -> list[Finding]:
    """Findings for what is new; it is learnt at once, so it alerts once."""
    findings = []
    for key in changes.opened:
        info = scan.ports[key]
        detail = f" ({info.service})" if info.service else ""
        findings.append(_finding("new_open_port", key, f"new open port {key}{detail}",
                                 _port_labels(key, info), _facts(key, local)))
    for addr in changes.hosts_appeared:
        findings.append(_finding("host_appeared", addr, f"new host {addr} is up",
                                 {"address": addr}, _facts(addr, local)))
    ctx.remember(OPEN, *changes.opened)
    ctx.remember(HOSTS, *changes.hosts_appeared)
    return findings


def _gone(changes: ScanDiff, scan: Scan, ctx: DetectContext, missing: dict[str, float],
          local: frozenset[str]) -> list[Finding]:
    """Findings for what is missing, until it has been missing for FORGET_AFTER_S."""
    present = set(scan.open_ports) | set(scan.hosts_up)
    for key in [k for k in missing if k in present]:
        del missing[key]
    findings = []
    for key, state in changes.closed.items():
        if ctx.now - missing.setdefault(key, ctx.now) >= FORGET_AFTER_S:
            ctx.forget(OPEN, key)
            del missing[key]
        else:
            findings.append(_finding("port_closed", key,
                                     f"port {key} is no longer open (now {state})",
                                     dict(_port_labels(key), state=state), _facts(key, local)))
    for addr in changes.hosts_disappeared:
        if ctx.now - missing.setdefault(addr, ctx.now) >= FORGET_AFTER_S:
            ctx.forget(HOSTS, addr)
            ctx.forget(OPEN, *[k for k in ctx.known(OPEN) if key_host(k) == addr])
            del missing[addr]
        else:
            findings.append(_finding("host_disappeared", addr, f"host {addr} no longer answers",
                                     {"address": addr}, _facts(addr, local)))
    return findings


def llm_open(obs: Mapping[str, Any], local: frozenset[str], own: frozenset[int]
             ) -> list[Finding]:
    """nmap_llm_open for each probed port that answered an LLM API without authentication.
    Facts: the API family (our table's words for its answer's shape), the scanned address and
    port; model names and the server's own name are labels."""
    findings = []
    for probe in obs.get("llm_probes", ()):
        addr, port = str(probe["addr"]), int(probe["port"])
        if not probe.get("unauthenticated") or (addr in local and port in own):
            continue
        key = port_key(addr, port, "tcp").rsplit("/", 1)[0]
        api = str(probe["api"])
        api_name = API_NAMES.get(api, API_NAMES["openai-compatible"])
        note = f"; {probe['note']}" if probe.get("note") else ""
        facts = {**_facts(port_key(addr, port, "tcp"), local), "api": api, "api_name": api_name,
                 "endpoint": key}
        findings.append(_finding(
            "nmap_llm_open", key,
            f"{api_name} on {key} answered {probe['evidence']} over {probe['scheme']} without "
            f"asking for credentials ({int(probe.get('models') or 0)} model(s) listed){note}",
            {"address": addr, "port": str(port), "models": str(int(probe.get("models") or 0)),
             "model_names": ", ".join(probe.get("model_names") or ()),
             "server": str(probe.get("server") or "")}, facts))
    return findings


def detect(result: CollectResult, ctx: DetectContext) -> list[Finding]:
    """Diff a finished scan against the known sets, and model servers open to anyone; nothing
    when this cycle had no finished scan."""
    obs = result.observations.get("scan")
    if obs is None:
        return []
    local = frozenset(obs.get("local_hosts", ()))
    own = ctx.settings.own_ports
    open_llm = llm_open(obs, local, own)
    scan = without_own(scan_from_observation(obs), local, own)
    mine = [k for k in ctx.known(OPEN) if _facts(k, local).get("port") in own
            and key_host(k) in local and k.endswith("/tcp")]
    ctx.forget(OPEN, *mine)             # learnt before the agent knew its own ports
    memo = ctx.state("nmap")
    scope = _scope(ctx)
    if memo.get("scope") != scope:
        _learn(scan, ctx, memo, scope)
        return open_llm
    changes = diff(ctx.known(HOSTS), ctx.known(OPEN), scan)
    if obs["truncated"]:  # a cut list cannot tell what closed; what opened is still true
        changes = replace(changes, closed={}, hosts_disappeared=())
    return (open_llm + _new(changes, scan, ctx, local)
            + _gone(changes, scan, ctx, memo.setdefault("missing", {}), local))
