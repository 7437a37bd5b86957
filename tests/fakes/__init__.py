"""Loopback fakes of the external services the agent talks to (Ollama, Discord), and test helpers."""
from __future__ import annotations

from typing import Any

from foundation.model import Finding, Severity


def make_finding(key: str = "sshd", kind: str = "process_missing", source: str = "processes",
                 severity: Severity = Severity.HIGH, floor: Severity = Severity.NONE,
                 **fields: Any) -> Finding:
    """A finding for tests, with a summary naming its key unless one is given."""
    fields.setdefault("summary", f"{kind} on {key}")
    return Finding(source=source, kind=kind, key=key, severity=severity, floor=floor, **fields)
