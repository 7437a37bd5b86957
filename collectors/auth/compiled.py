"""The one-pass auth log scanner in C (collectors/auth/_authscan.c), or None where it is not built.

``make native`` builds it against Vectorscan's libhs. Without it every caller takes the regexes alone:
the same results, several times slower (docs/auth.md, "Speed").
"""
from __future__ import annotations

from types import ModuleType

authscan: ModuleType | None
try:
    from collectors.auth import _authscan as authscan
except ImportError:
    authscan = None
