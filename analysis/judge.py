"""Which judge decides: the Ollama judge, which falls back to the rules by itself.

The Ollama client itself (ollama, httpx) is imported only when a verdict is asked: a cycle without
findings, decided by the rules, never loads it.
"""
from __future__ import annotations

from analysis.known_issues import KnownIssues
from analysis.ollama_judge import OllamaJudge
from foundation.settings import Settings


def make_judge(settings: Settings, known: KnownIssues | None = None,
               constraints: str | None = None) -> OllamaJudge:
    """The Ollama judge (which falls back to the rules by itself), sharing the loaded known issues
    and CONSTRAINTS.md (both loaded here when not given)."""
    return OllamaJudge(settings, known=known, constraints=constraints)
