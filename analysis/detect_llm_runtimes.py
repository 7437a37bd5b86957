"""Findings about local LLM runtimes: unexpected external peers; a model server that answers the
network without authentication; the agent's own LLM being out."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis.kinds import KindSpec
from collectors.llm_exposure import endpoint
from collectors.llm_probe import API_NAMES
from collectors.llm_runtimes import RUNTIMES
from foundation.context import DetectContext
from foundation.model import CollectResult, Finding, Severity

MAX_EVIDENCE = 5

KINDS = (
    KindSpec("llm_external_connection", "llm_runtimes", Severity.HIGH, Severity.HIGH,
             "A local LLM runtime talks to an unexpected external host",
             "Find out why the runtime reaches that host (a plugin, a tool call, a compromised "
             "model server?); block it at the firewall or stop the runtime. If the destination is "
             "legitimate, add its host name or network to LLM_CONNECTION_ALLOWLIST (a reverse "
             "name counts only when its own A/AAAA records include the address).",
             name="LLM runtime calling out",
             says="{runtime_spoken} is {link} {remote} ({peer}), which the allowlist does not "
                  "allow",
             speaks="{runtime_spoken} is {link} a host on the internet that is not allowed.",
             cleared="{runtime_spoken} no longer talks to {remote}",
             example={"runtime": "ollama", "runtime_spoken": "Ollama", "link": "connected to",
                      "remote": "203.0.113.50", "peer": "no reverse name"}),
    KindSpec("llm_exposed", "llm_runtimes", Severity.HIGH, Severity.HIGH,
             "A model server on this machine answers the network without authentication",
             "Anyone who reaches port {port} can use its models (Ollama also lets them pull and "
             "delete models). Bind it to loopback: for Ollama run `systemctl edit ollama`, add "
             "`Environment=\"OLLAMA_HOST=127.0.0.1:11434\"` under [Service], then "
             "`systemctl restart ollama`; start llama.cpp (`llama-server`) or vLLM with "
             "`--host 127.0.0.1`. If other machines must use it, put a reverse proxy that asks "
             "for a password in front of it, or let only them through the firewall "
             "(`ufw allow from 192.168.1.10 to any port {port} proto tcp`, then "
             "`ufw deny {port}/tcp`).",
             name="Open model server",
             says="{api_name} on {endpoint} answers anyone without authentication",
             speaks="{api_name} on this machine answers the network without a password, on "
                    "port {port}.",
             cleared="{api_name} on {endpoint} no longer answers the network without "
                     "authentication",
             example={"api": "ollama", "api_name": "Ollama", "endpoint": "0.0.0.0:11434",
                      "port": 11434}),
    KindSpec("llm_unavailable", "llm_runtimes", Severity.MEDIUM, Severity.NONE,
             "The agent's own LLM (Ollama) is unreachable or lacks its model",
             "Start Ollama (`systemctl start ollama`), check OLLAMA_HOST, or run "
             "`ollama pull {model}`; meanwhile the rules decide severities.",
             name="Ollama unavailable", says="Ollama at {host} cannot judge: {problem}",
             speaks="The agent's Ollama is unavailable; the rules decide meanwhile.",
             cleared="Ollama at {host} answers again, with {model}",
             example={"host": "http://127.0.0.1:11434", "model": "llama3.1:8b",
                      "problem": "Ollama is not reachable"}),
)


# the runtimes the agent knows by name: only those are said (an unknown one is named after its
# process, which any local user can name)
KNOWN = {d.label: d.label[:1].upper() + d.label[1:] for d in RUNTIMES}


def _external(runtime: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    """The runtime's external connections that no allowlist entry allows, by remote address."""
    by_ip: dict[str, list[Mapping[str, Any]]] = {}
    for conn in runtime["connections"]:
        if conn["class"] == "external" and not conn.get("allowed_by"):
            by_ip.setdefault(conn["ip"], []).append(conn)
    return by_ip


def _connection_finding(runtime: Mapping[str, Any], ip: str,
                        conns: list[Mapping[str, Any]]) -> Finding:
    first = conns[0]
    name = first.get("rdns") or "no reverse name"
    if first.get("rdns_unconfirmed"):   # a PTR record says what its address's owner wants
        name = f"reverse name {name}, {first['rdns_unconfirmed']}"
    where = f"{name}, {first['provider']}" if first.get("provider") else name
    ports = sorted({c["port"] for c in conns})
    inbound = all(c.get("direction") == "inbound" for c in conns)
    link = f"is being used by external {ip}" if inbound else f"is connected to external {ip}"
    return Finding(
        source="llm_runtimes", kind="llm_external_connection", key=f"{runtime['runtime']}|{ip}",
        severity=Severity.HIGH, floor=Severity.HIGH,
        summary=(f"LLM runtime {runtime['runtime']} (pid {runtime['pid']}) {link} ({where}, "
                 f"remote port {', '.join(map(str, ports))}), which LLM_CONNECTION_ALLOWLIST "
                 f"does not allow"),
        labels={"runtime": str(runtime["runtime"]), "process": str(runtime["name"]),
                "pid": str(runtime["pid"]), "remote": ip, "rdns": str(first.get("rdns") or ""),
                "provider": str(first.get("provider") or ""),
                "direction": "inbound" if inbound else "outbound", "peer": name},
        facts={"runtime_spoken": KNOWN.get(str(runtime["runtime"]), "An LLM runtime"),
               "link": "being used by" if inbound else "connected to"},
        evidence=tuple(f"{c['proto']} {c['local']} -> {c['remote']} {c['status']}"
                       for c in conns[:MAX_EVIDENCE]))


def _unavailable(health: Mapping[str, Any]) -> Finding | None:
    problem = health.get("problem")
    if not problem:
        return None
    return Finding(
        source="llm_runtimes", kind="llm_unavailable", key=str(health["host"]),
        severity=Severity.MEDIUM, summary=str(problem),
        labels={"host": str(health["host"]), "model": str(health["model"]),
                "error": str(health.get("error") or ""), "problem": str(problem)},
        facts={"host": str(health["host"]), "model": str(health["model"])})  # the settings


def exposed_finding(slot: Mapping[str, Any], owner: Mapping[str, Any] | None) -> Finding:
    """llm_exposed for one probed port that answered without authentication. Facts: the API
    family (our table's words for the shape of its answer), the bound endpoint and port (the
    kernel's socket table); the model and server names it gave and the process are labels."""
    api = str(slot["api"])
    api_name = API_NAMES.get(api, API_NAMES["openai-compatible"])
    if owner is not None:
        known = KNOWN.get(str(owner["runtime"]))
        who = f"runtime {known} (pid {owner['pid']})" if known else f"pid {owner['pid']}"
        process, pid, runtime = str(owner["name"]), str(owner["pid"]), str(owner["runtime"])
    else:
        who = f"pid {slot['pid']}" if slot.get("pid") is not None else "a process"
        process, pid, runtime = str(slot.get("process") or ""), str(slot.get("pid") or ""), ""
    note = f"; {slot['note']}" if slot.get("note") else ""
    models = int(slot.get("models") or 0)
    return Finding(
        source="llm_runtimes", kind="llm_exposed", key=str(slot["endpoint"]),
        severity=Severity.HIGH, floor=Severity.HIGH,
        summary=(f"{api_name} ({who}) listens on {slot['endpoint']}; asked over {slot['scheme']} "
                 f"at {endpoint(str(slot['probed']), int(slot['port']))}, it answered "
                 f"{slot['evidence']} without asking for credentials ({models} model(s) "
                 f"listed){note}"),
        labels={"models": str(models), "model_names": ", ".join(slot.get("model_names") or ()),
                "server": str(slot.get("server") or ""), "process": process, "pid": pid,
                "runtime": runtime},
        facts={"api": api, "api_name": api_name, "endpoint": str(slot["endpoint"]),
               "port": int(slot["port"])},
        evidence=(f"{slot['evidence']} ({slot['scheme']}://"
                  f"{endpoint(str(slot['probed']), int(slot['port']))})",))


def _exposed(observations: Mapping[str, Any]) -> list[Finding]:
    """llm_exposed per open endpoint, told with its runtime when one owns it (one finding per
    endpoint, whichever runtime lists it first)."""
    owned = [(slot, runtime) for runtime in observations["runtimes"]
             for slot in runtime.get("exposures", ())]
    owned += [(slot, None) for slot in observations.get("exposed_servers", ())]
    findings: dict[str, Finding] = {}
    for slot, owner in owned:
        if slot.get("unauthenticated") and str(slot["endpoint"]) not in findings:
            findings[str(slot["endpoint"])] = exposed_finding(slot, owner)
    return list(findings.values())


def detect(result: CollectResult, ctx: DetectContext) -> list[Finding]:
    """llm_external_connection per runtime and unallowed remote address; llm_exposed per port
    that answers the network without authentication; llm_unavailable."""
    findings = []
    for runtime in result.observations["runtimes"]:
        for ip, conns in _external(runtime).items():
            findings.append(_connection_finding(runtime, ip, conns))
    findings.extend(_exposed(result.observations))
    down = _unavailable(result.observations["ollama"])
    if down is not None:
        findings.append(down)
    return findings
