"""Which judge decides: the Ollama judge, which falls back to the rules by itself.

Importing this module loads the Ollama client; the command line imports it only where a cycle runs.
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
