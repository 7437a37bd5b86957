"""APPRISE_URLS: each Apprise URL with the alerts and messages it takes, validated without Apprise.

An entry is a URL string (it takes every message) or a dict ``{"url": ..., "min_severity":
"high", "purposes": ["alert"]}``. Apprise URLs hold their secrets anywhere: in the user and
password, in the host (``tgram://BOT_TOKEN/CHAT_ID``, ``pover://USER@TOKEN``), the path (an ntfy
topic, ``discord://ID/TOKEN``) and the query (``?token=...``). So a URL is only ever shown as
its ``label`` (the scheme, and the host when it is a host name), and every part of it that can
be a secret is registered with foundation.redact, whatever Apprise writes in its own messages.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal
from urllib.parse import unquote

from foundation.redact import register_secret
from foundation.secret import SecretStr

Purpose = Literal["alert", "resolved", "recap"]
PURPOSES: tuple[Purpose, ...] = ("alert", "resolved", "recap")
SEVERITIES = ("high", "medium", "low")
HIDDEN = "…"
PART_MIN = 6              # a path segment, host token or query value shorter than this is no secret

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]{0,31})://(\S+)$")
_HOST_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+"
                        r"[A-Za-z]{2,63}\.?$")
_PORT = re.compile(r"^\d{1,5}$")
# Query parameters that only steer Apprise (never a secret): their values stay unregistered, so
# that "high" or "markdown" does not vanish from every log line; every other value is a secret.
_PLAIN_PARAMETERS = frozenset({
    "priority", "format", "overflow", "mode", "verify", "cto", "rto", "emojis", "image",
    "retry", "wait", "store", "tz", "tags", "method", "footer", "footer_logo", "fields", "batch",
    "tts", "silent", "preview", "detect", "content", "mdv", "album", "sound", "auth", "optional",
    "include_image", "markdown", "html", "version", "lang", "avatar"})


@dataclass(frozen=True)
class AppriseTarget:
    """One Apprise URL and what it takes: alerts from ``min_severity`` up, and which purposes
    (built by parse_targets, which validates every part)."""

    url: SecretStr
    min_severity: Literal["high", "medium", "low"] = "low"
    purposes: tuple[Purpose, ...] = PURPOSES

    @property
    def label(self) -> str:
        """The URL as it may be shown: ``ntfys://ntfy.sh/…``."""
        return url_label(self.url.get_secret_value())

    def takes(self, purpose: str, severity: str) -> bool:
        """Whether a message of this purpose (and, for an alert, this worst severity) goes here;
        a test message always does."""
        if purpose == "test":
            return True
        if purpose not in self.purposes:
            return False
        if purpose != "alert":
            return True
        rank = {name: len(SEVERITIES) - i for i, name in enumerate(SEVERITIES)}
        return rank.get(severity, 0) >= rank[self.min_severity]


def _split(url: str) -> tuple[str, str, str, str, str] | None:
    """(scheme, authority, path, query, fragment) of ``scheme://...``, None for anything else."""
    found = _SCHEME.match(url)
    if not found:
        return None
    scheme, rest = found.groups()
    rest, _, fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    authority, _, path = rest.partition("/")
    return scheme, authority, path, query, fragment


def _shown_host(authority: str) -> str | None:
    """``host[:port]`` when the host is a plain host name or address (not a token), else None."""
    if "@" in authority:
        authority = authority.rpartition("@")[2]
    host, port = authority, ""
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest.removeprefix(":")
    elif authority.count(":") == 1:
        host, port = authority.split(":")
    if port and not _PORT.match(port):
        return None
    try:
        ipaddress.ip_address(host)
        shown = f"[{host}]" if ":" in host else host
    except ValueError:
        if host != "localhost" and not _HOST_NAME.match(host):
            return None
        shown = host
    return shown + (f":{port}" if port else "")


def url_label(url: str) -> str:
    """What of an Apprise URL may be shown: its scheme and, when it is a host name or address, its
    host; never the user, password, path, query or a host that is a token."""
    parts = _split(url.strip())
    if parts is None:
        return "not a URL"
    scheme, authority = parts[0].lower(), parts[1]
    host = _shown_host(authority)
    return f"{scheme}://{host}/{HIDDEN}" if host else f"{scheme}://{HIDDEN}"


def register_url(url: str) -> None:
    """Register the URL and every part of it that can be a secret with foundation.redact."""
    url = url.strip()
    register_secret(url)
    register_secret(unquote(url))
    parts = _split(url)
    if parts is None:
        return
    _, authority, path, query, fragment = parts
    secrets: list[str] = [path, query, fragment]
    if "@" in authority:
        userinfo, _, _ = authority.rpartition("@")
        secrets += [authority, userinfo]
        for credential in userinfo.split(":", 1):   # a user or password: from 4 characters
            register_secret(credential)
            register_secret(unquote(credential))
    if _shown_host(authority) is None:                 # a host that is a token
        secrets += [authority, *authority.rpartition("@")[2].split(":")]
    secrets += path.split("/") + fragment.split("/")
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name.lower() not in _PLAIN_PARAMETERS:
            secrets += [value, *value.split(",")]
    for secret in secrets:   # a shorter part ("hook", "5") would mask common words everywhere
        if len(unquote(secret)) >= PART_MIN:
            register_secret(secret)
            register_secret(unquote(secret))


def _url_of(entry: Any) -> str | None:
    """The URL an entry names, if it names one."""
    url = entry.get("url") if isinstance(entry, Mapping) else entry
    if isinstance(url, SecretStr):
        url = url.get_secret_value()
    return url.strip() if isinstance(url, str) and url.strip() else None


def _target(entry: Any, url: str) -> AppriseTarget:
    """One entry as a target; ValueError (never quoting the URL) when it is not one."""
    if isinstance(entry, str):
        entry = {"url": entry}
    if _split(url) is None:
        raise ValueError("an Apprise URL is scheme://..., such as ntfys://ntfy.sh/TOPIC or "
                         "mailtos://USER:PASSWORD@example.com (https://appriseit.com lists every "
                         "service)")
    unknown = sorted(set(entry) - {f.name for f in fields(AppriseTarget)})
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (the keys are url, min_severity and "
                         "purposes)")
    purposes = entry.get("purposes", PURPOSES)
    if isinstance(purposes, str) or not isinstance(purposes, list | tuple):
        raise ValueError("purposes must be a list such as [\"alert\", \"resolved\"]")
    odd = [p for p in purposes if p not in PURPOSES]
    if odd or not purposes:
        raise ValueError("purposes must be some of alert, resolved and recap"
                         + (f", not {odd[0]!r}" if odd else ", not none"))
    severity = entry.get("min_severity", "low")
    if severity not in SEVERITIES:
        raise ValueError(f"min_severity must be high, medium or low, not {severity!r}")
    return AppriseTarget(url=SecretStr(url), min_severity=severity,
                         purposes=tuple(dict.fromkeys(purposes)))


def parse_targets(value: Any) -> tuple[AppriseTarget, ...]:
    """APPRISE_URLS validated: ValueError naming the entry by its number and label."""
    if value is None:
        return ()
    if isinstance(value, str | Mapping):
        value = [value]
    if not isinstance(value, list | tuple):
        raise ValueError("must be a list of Apprise URLs (or of dicts with a \"url\")")
    targets = []
    for number, entry in enumerate(value, 1):
        if isinstance(entry, AppriseTarget):
            targets.append(entry)
            continue
        url = _url_of(entry)
        if url is None:
            raise ValueError(f"entry {number}: must be a URL string or a dict with \"url\" (and "
                             "optionally \"min_severity\" and \"purposes\")")
        register_url(url)   # before anything can fail: no message may show a part of it
        try:
            targets.append(_target(entry, url))
        except ValueError as err:
            raise ValueError(f"entry {number} ({url_label(url)}): {err}") from None
    urls = [t.url.get_secret_value().strip() for t in targets]
    for number, url in enumerate(urls, 1):
        if urls.index(url) != number - 1:
            raise ValueError(f"entry {number} ({url_label(url)}) repeats entry "
                             f"{urls.index(url) + 1}")
    return tuple(targets)
