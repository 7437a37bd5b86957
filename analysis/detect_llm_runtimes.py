"""Findings about local LLM runtimes: unexpected external peers; the agent's own LLM being out."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis.kinds import KindSpec
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


def detect(result: CollectResult, ctx: DetectContext) -> list[Finding]:
    """llm_external_connection per runtime and unallowed remote address; llm_unavailable."""
    findings = []
    for runtime in result.observations["runtimes"]:
        for ip, conns in _external(runtime).items():
            findings.append(_connection_finding(runtime, ip, conns))
    down = _unavailable(result.observations["ollama"])
    if down is not None:
        findings.append(down)
    return findings
