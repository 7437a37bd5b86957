"""Text helpers shared by the notifiers: Discord escaping and speech on top of foundation.untrusted."""
from __future__ import annotations

import re

from foundation.untrusted import for_discord, strip

ELLIPSIS = "…"

_URL = re.compile(r"(?i)\b(?:https?|ftp|file)://\S+|\bwww\.\S+")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9a-f]{0,4}(?::[0-9a-f]{1,4})*::(?:[0-9a-f]{1,4}:)*[0-9a-f]{0,4}"
                   r"|(?:[0-9a-f]{1,4}:){4,7}[0-9a-f]{1,4})(?![\w:])", re.IGNORECASE)
_LONG_NUMBER = re.compile(r"\d[\d,._]{5,}\d")
_DECIMALS = re.compile(r"(\d+)\.(\d)\d+")
_UNSPEAKABLE = re.compile(r"[^\w\s.,:;!?'%°-]")
_SPACES = re.compile(r"\s+")


def escape(text: object) -> str:
    """Untrusted text made inert for Discord, line breaks kept (foundation.untrusted.for_discord)."""
    return for_discord(text, multiline=True)


def truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters, ending with an ellipsis when cut (never on a lone backslash)."""
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    cut = text[:limit - 1]
    trailing = len(cut) - len(cut.rstrip("\\"))
    if trailing % 2:
        cut = cut[:-1]  # an escape cut in half would escape the ellipsis
    return cut + ELLIPSIS


def inline(text: object, limit: int) -> str:
    """Escaped, single-line and truncated: for titles, field values and labels."""
    return truncate(for_discord(text), limit)


def speakable(text: object, limit: int = 200) -> str:
    """A short sentence made to be heard: no URLs, no addresses or long numbers read digit by digit."""
    said = strip(text)  # not defanged: a link is said as "a link"
    said = _URL.sub("a link", said)
    said = _IPV4.sub("an address", said)
    said = _IPV6.sub("an address", said)
    said = _DECIMALS.sub(r"\1.\2", said)
    said = _LONG_NUMBER.sub("a long number", said)
    said = _UNSPEAKABLE.sub(" ", said.replace("_", " "))
    said = _SPACES.sub(" ", said).strip()
    if len(said) <= limit:
        return said
    cut = said[:limit].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "."
