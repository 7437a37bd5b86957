"""Which judge decides: the Ollama judge, which falls back to the rules by itself.

Importing this module loads the Ollama client; the command line imports it only where a cycle runs.
"""
from __future__ import annotations

from analysis.known_issues import KnownIssues
from analysis.ollama_judge import OllamaJudge
from analysis.rules import Judge
from foundation.settings import Settings


def make_judge(settings: Settings, known: KnownIssues | None = None) -> Judge:
    """The Ollama judge (which falls back to the rules by itself), sharing the loaded known issues."""
    return OllamaJudge(settings, known=known)
