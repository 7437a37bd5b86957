"""The one-pass auth log scanner in C (collectors/auth/_authscan.c), or None where it is not built.

``make native`` builds it against Vectorscan's libhs. Without it every caller takes the regexes alone:
the same results, several times slower (docs/auth-log.md, "Speed").
"""
from __future__ import annotations

from types import ModuleType

authscan: ModuleType | None
try:
    from collectors.auth import _authscan as authscan
except ImportError:
    authscan = None


class NotBuilt(RuntimeError):
    """The C path was taken where the C scanner is not built (a bug: callers check first)."""


def required() -> ModuleType:
    """The C scanner, for the paths taken only when ``authscan`` is not None."""
    if authscan is None:
        raise NotBuilt("the C auth log scanner is not built (make native)")
    return authscan
