"""The one neutraliser for untrusted text (log lines, user, host, process and container names,
banners, reverse-DNS names, the LLM's own words): every channel that shows, speaks or prompts
with such text calls ``neutralise`` (or ``strip`` where links must stay readable, as in speech),
then its own markup escape from this module.

What it removes: everything a reader cannot see or that reorders what they see. That is the
control (Cc), format (Cf: zero-width, bidi embeddings, overrides and isolates, U+061C, word
joiners, the BOM), surrogate (Cs), private-use (Co) and unassigned (Cn) categories, and every
Default_Ignorable_Code_Point of Unicode's DerivedCoreProperties.txt: tag characters
(U+E0000-E007F, "ASCII smuggling"), variation selectors (U+FE00-FE0F, U+E0100-E01EF, which can
carry hidden bytes after an emoji), Hangul fillers and the like, which render as nothing.
Line breaks survive only where the channel allows several lines; every other space becomes one
ASCII space. Links are defanged the way security tools write them (``hxxps[://]example[.]com``).
"""
from __future__ import annotations

import re
import unicodedata

_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
# Default_Ignorable_Code_Point (Unicode 15 DerivedCoreProperties.txt), inclusive ranges. The
# categories above already cover most; the rest (Mn, Lo, So) render blank yet pass a category test.
_IGNORABLE = ((0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
              (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
              (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
              (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
              (0xE0000, 0xE0FFF))
_BREAKS = frozenset("\n\r\x0b\x0c\x85\u2028\u2029")
_SPACE_RUNS = re.compile(r"[ \t]+")
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")
_LINE_ENDS = re.compile(r"\r\n?")

# Links: any scheme URL (Discord links http(s)://, <http(s)://...> and [text](http(s)://...);
# terminals link more schemes), and the scheme-less forms clients still link or preview.
# No word boundary on the scheme: "xxhttps://" must not leave "https://" (the separator is what
# is defanged, so a longer scheme run is still cut). Its length is bounded: unbounded, a long run of
# scheme characters with no ":" after it costs quadratic time (300 kB of "x" from the LLM: minutes).
# The separators go first, on their own, so one URL's host can never swallow the next URL's scheme.
_SCHEME = re.compile(r"(?i)([a-z0-9+.\-]{1,64}):[/\\]{2}")
_URL_HOST = re.compile(r"\[://\]([^\s/\\?#<>\[\]\"'`|]+)")
_BARE_HOST = re.compile(r"(?i)\b(?:www\d{0,3}|ftp|discord(?:app)?)\.[a-z0-9\-.]*[a-z0-9]")
_DEFANGED_SCHEMES = {"http": "hxxp", "https": "hxxps", "ftp": "fxp", "ftps": "fxps"}

# Discord mentions: @everyone and @here, <@id>, <@!id>, <@&role>, <#channel>. The sigil becomes
# its full-width twin: readable, visible, and parsed by no client (a zero-width space is Cf).
_DISCORD_MENTION = re.compile(r"(?i)@(?=everyone|here)|(?<=<)[@#]")
_FULL_WIDTH = {"@": "\uff20", "#": "\uff03"}
# Discord markdown: emphasis, code, spoilers, quotes, headers, lists, masked links, timestamps.
_DISCORD_MARKDOWN = re.compile(r"([\\*_~`|>\[\]()#<])")
_DISCORD_LINE_START = re.compile(r"(?m)^(\s*)([-+]|\d+\.)")
# Matplotlib treats $...$ as mathtext (a malformed one raises) and hides labels starting with "_".
_MATHTEXT = re.compile(r"([$\\])")


def _ignorable(code: int) -> bool:
    return any(low <= code <= high for low, high in _IGNORABLE)


def _keep(char: str, multiline: bool) -> str:
    """What one character becomes: itself, a space, a line break, or nothing."""
    if char in _BREAKS:
        return "\n" if multiline else " "
    if char == "\t" or char.isspace():
        return " "
    code = ord(char)
    if code < 0x80:
        return char if code >= 0x20 and code != 0x7F else ""
    if unicodedata.category(char) in _DROP_CATEGORIES or _ignorable(code):
        return ""
    return char


def _drop(text: str, multiline: bool) -> str:
    if not _NOT_PRINTABLE_ASCII.search(text):   # the common case: _keep() would keep every one
        return text
    return "".join(_keep(c, multiline) for c in text)


def strip(text: object, multiline: bool = False) -> str:
    """Untrusted text as a reader sees it: NFKC, no invisible, bidi, tag or control characters."""
    value = _drop(_LINE_ENDS.sub("\n", str(text)), multiline)
    # NFKC after dropping (an invisible between a letter and its accent blocks composing), and the
    # drop again: NFKC maps some characters onto ignorable ones (U+FFA0 -> U+1160).
    value = _drop(unicodedata.normalize("NFKC", value), multiline)
    if multiline:
        return "\n".join(_SPACE_RUNS.sub(" ", line).strip() for line in value.split("\n"))
    return _SPACE_RUNS.sub(" ", value).strip()


def _defang_scheme(match: re.Match[str]) -> str:
    return f"{_DEFANGED_SCHEMES.get(match.group(1).lower(), match.group(1))}[://]"


def defang(text: str) -> str:
    """Links made unclickable: ``https://a.example/x`` -> ``hxxps[://]a[.]example/x``."""
    text = _SCHEME.sub(_defang_scheme, text)
    text = _URL_HOST.sub(lambda m: "[://]" + m.group(1).replace(".", "[.]"), text)
    return _BARE_HOST.sub(lambda m: m.group(0).replace(".", "[.]"), text)


def neutralise(text: object, multiline: bool = False) -> str:
    """The one neutraliser: ``strip`` then ``defang``; every channel starts from this."""
    return defang(strip(text, multiline))


def defuse_mentions(text: str) -> str:
    """Discord mentions left readable but inert (``@everyone`` -> ``＠everyone``)."""
    return _DISCORD_MENTION.sub(lambda m: _FULL_WIDTH[m.group(0)], text)


def for_discord(text: object, multiline: bool = False) -> str:
    """Untrusted text for a Discord message: neutralised, mentions defused, markdown escaped."""
    escaped = _DISCORD_MARKDOWN.sub(r"\\\1", defuse_mentions(neutralise(text, multiline)))
    return _DISCORD_LINE_START.sub(r"\1\\\2", escaped)


def for_terminal(text: object, multiline: bool = False) -> str:
    """Untrusted text for a terminal or a log: neutralised (no escape sequences, no forged lines)."""
    return neutralise(text, multiline)


def for_chart(text: object) -> str:
    """Untrusted text for a matplotlib label: one line, mathtext escaped, never hidden by "_"."""
    label = _MATHTEXT.sub(r"\\\1", neutralise(text))
    return f" {label}" if label.startswith("_") else label

