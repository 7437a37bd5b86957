"""Keep secrets (webhook URLs, tokens) out of logs, errors and the cycle report."""
from __future__ import annotations

import logging
import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()

# Shapes that are secret wherever they appear, registered or not.
_PATTERNS = (
    re.compile(r"(/api/webhooks/\d+/)[A-Za-z0-9_\-]+"),           # Discord webhook token
    re.compile(r"(?i)(authorization:\s*bearer\s+)[^\s'\"]+"),      # HTTP bearer header
    re.compile(r"(?i)(\btoken[=:]\s*)[^\s&'\"]+"),                 # token=... in URLs and messages
    re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]{0,31}://)[^\s/?#@'\"]+(?=@)"),  # scheme://USER:PASS@...
)
MASK = "***"


def register_secret(value: str) -> None:
    """Remember a secret so that ``redact`` removes it from any text."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """The text with every registered secret and every secret-shaped token replaced by ***."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    # the shapes first: a registered secret that is part of a shape's anchor (an Apprise path
    # segment "hook" in "/api/webhooks/") must not keep the shape from matching
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message by its redacted rendering."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        cleaned = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            cleaned += f" ({type(exc).__name__}: {redact(str(exc))})"
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = cleaned, None
        return True
