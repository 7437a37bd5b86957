"""Findings about what leaves for LLM providers: a secret in a prompt; a new client or provider.

Facts (spoken, and the action's placeholders) are the agent's own words: the provider's label from
its own table (collectors/llm_traffic/providers.py) and the secret's type from the detector that
found it. The process, its executable, the host and the model are chosen by whatever runs on the
machine: labels only, shown escaped and never spoken.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analysis.kinds import KindSpec
from foundation.context import DetectContext
from foundation.model import CollectResult, Finding, Severity

SOURCE = "llm_traffic"
KNOWN = "llm_clients"     # the known set: "client|provider_key" pairs, and "client" alone

KINDS = (
    KindSpec("llm_secret_in_prompt", SOURCE, Severity.HIGH, Severity.HIGH,
             "A program sent a secret (a key, token, password or private key) to an LLM "
             "provider inside a request",
             "Treat the {secret_type} as leaked: revoke it and issue a new one at its issuer "
             "now. Then find what put it in the prompt (a coding agent reading files, a pasted "
             "config, a tool call) and keep secrets out of that program's reach; the report's "
             "prompt digest tells whether the same prompt went out again.", event=True,
             name="Secret sent to an LLM",
             says="{process} (pid {pid}) sent a secret ({secret_type}) to {provider} ({host})",
             speaks="A program sent a secret to {provider}: {secret_type}.",
             example={"process": "node", "pid": "4242", "secret_type": "AWS Access Key",
                      "provider": "OpenAI", "host": "api.openai.com"}),
    KindSpec("llm_new_client", SOURCE, Severity.MEDIUM, Severity.LOW,
             "A program that never talked to an LLM provider started to, or talks to a "
             "provider it never used before",
             "Check that the program is meant to use {provider} (a new tool, a plugin, an "
             "update); if not, find out what sends the requests and stop it.", event=True,
             name="New LLM client",
             says="{process} ({exe}) sent {requests:plural:request} to {provider} ({host}), "
                  "{novelty}",
             speaks="A program started sending requests to {provider}, {novelty}.",
             example={"process": "python3", "exe": "/usr/bin/python3.11", "requests": 3,
                      "provider": "Anthropic", "host": "api.anthropic.com",
                      "novelty": "the first time it talks to an LLM provider"}),
)

FIRST_EVER = "the first time it talks to an LLM provider"
NEW_PROVIDER = "a provider it never used before"


def _labels(row: Mapping[str, Any]) -> dict[str, str]:
    return {"process": str(row.get("comm") or "?"), "exe": str(row.get("exe") or "unreadable"),
            "container": str(row.get("container") or ""), "client": str(row["client"])}


def _secret_findings(events: list[Mapping[str, Any]]) -> list[Finding]:
    out: dict[str, Finding] = {}
    for ev in events:
        for kind in ev["types"]:
            key = f"{ev['client']}|{ev['provider_key']}|{kind}"
            if key in out:
                continue
            out[key] = Finding(
                source=SOURCE, kind="llm_secret_in_prompt", key=key,
                severity=Severity.HIGH, floor=Severity.HIGH,
                summary=(f"{ev['comm']} (pid {ev['pid']}, {ev['exe'] or 'executable unreadable'})"
                         f" sent a secret ({kind}) to {ev['provider']} ({ev['host']}, {ev['endpoint']}, "
                         f"model {ev['model'] or 'unnamed'}); prompt digest "
                         f"{ev['prompt_sha256']}"),
                labels={**_labels(ev), "pid": str(ev["pid"]), "host": str(ev["host"]),
                        "model": str(ev["model"]), "endpoint": str(ev["endpoint"]),
                        "prompt_sha256": str(ev["prompt_sha256"])},
                facts={"secret_type": str(kind), "provider": str(ev["provider"])},
                evidence=(f"types {', '.join(ev['types'])}; prompt sha256 {ev['prompt_sha256']}"
                          f"; at {ev['at']}",))
    return list(out.values())


def _new_clients(rows: list[Mapping[str, Any]], ctx: DetectContext) -> list[Finding]:
    findings = []
    for row in rows:
        client, pair = str(row["client"]), f"{row['client']}|{row['provider_key']}"
        if ctx.is_known(KNOWN, pair):
            continue
        novelty = NEW_PROVIDER if ctx.is_known(KNOWN, client) else FIRST_EVER
        ctx.remember(KNOWN, client, pair)
        host = next(iter(row["hosts"]), "")
        findings.append(Finding(
            source=SOURCE, kind="llm_new_client", key=pair, severity=Severity.MEDIUM,
            floor=Severity.LOW,
            summary=(f"{row['comm']} ({row['exe'] or 'executable unreadable'}) sent "
                     f"{row['requests']} request(s) to {row['provider']} ({host}), {novelty}"),
            labels={**_labels(row), "host": host, "requests": str(row["requests"]),
                    "models": ", ".join(row["models"])},
            facts={"provider": str(row["provider"]), "novelty": novelty,
                   "requests": int(row["requests"])},
            evidence=(f"endpoints {dict(row['endpoints'])}; models {list(row['models'])}; "
                      f"{row['request_bytes']} B sent, {row['response_bytes']} B received",)))
    return findings


def detect(result: CollectResult, ctx: DetectContext) -> list[Finding]:
    """llm_secret_in_prompt per client, provider and secret type; llm_new_client per new pair."""
    obs = result.observations
    return _secret_findings(obs.get("secret_events", [])) + _new_clients(obs.get("clients", []),
                                                                        ctx)
