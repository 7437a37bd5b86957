"""MQTT_URL and the names the Home Assistant entities go by over MQTT, checked once at start-up.

The URL holds the broker's password: nothing here ever quotes it back (an error says what is wrong
with the URL, never the URL), and ``Broker`` keeps the password out of its repr.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

SCHEMES = {"mqtt": (1883, False), "mqtts": (8883, True)}   # default port, TLS
_TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9_.\-]+$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_NOT_ID = re.compile(r"[^a-z0-9]+")
ID_MAX = 48


@dataclass(frozen=True)
class Broker:
    """Where the broker is and how to log in (the password never in a repr or a message)."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        """``host:port`` for people (no user, no password): ``127.0.0.1:1883``, ``[::1]:1883``."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address (a password may go there in plain text)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_broker(url: str) -> Broker:
    """``mqtt://[USER[:PASSWORD]@]HOST[:PORT]`` (or ``mqtts://`` for TLS); ValueError saying what
    is wrong, never quoting the URL (it holds the password)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError("must be mqtt://USER:PASSWORD@HOST:PORT, or mqtts://... for TLS")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has a malformed port") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("takes no path, query or fragment after HOST:PORT")
    default_port, tls = SCHEMES[parts.scheme]
    return Broker(parts.hostname, port or default_port, tls,
                  unquote(parts.username) if parts.username else None,
                  unquote(parts.password) if parts.password is not None else None)


def check_broker_url(url: str, allow_plain_password: bool) -> None:
    """ValueError unless ``url`` is a broker URL whose password, if any, does not cross the
    network in clear (mqtts://, or a broker on this machine, or the operator accepted it)."""
    broker = parse_broker(url)
    if broker.password and not broker.tls and not is_loopback_host(broker.host) and not allow_plain_password:
        raise ValueError("plain mqtt:// to a host other than this machine would send the password "
                         "in clear; use mqtts:// (the broker's TLS listener), a broker on this "
                         "machine, or set MQTT_ALLOW_PLAIN_PASSWORD = True to accept the risk")


def check_topic(value: str) -> str:
    """A topic prefix of plain levels (``homeassistant``, ``homelab-monitor/nas``): no wildcard,
    no empty level, no leading or trailing ``/``; "" is allowed (the default is used)."""
    if value and not all(_TOPIC_LEVEL.match(level) for level in value.split("/")):
        raise ValueError("must be topic levels of letters, digits, '_', '-' or '.' separated "
                         "by '/', such as homeassistant (no '+', '#', spaces or empty levels)")
    return value


def check_client_id(value: str) -> str:
    """An MQTT client id of at most 64 letters, digits, '_', '-' or '.'; "" (the default) too."""
    if value and not _CLIENT_ID.match(value):
        raise ValueError("must be 1 to 64 letters, digits, '_', '-' or '.'")
    return value


def plain_id(text: str) -> str:
    """``text`` as an id of ``[a-z0-9_]``: ``nas.lan`` -> ``nas_lan``; never empty."""
    return _NOT_ID.sub("_", text.lower()).strip("_")[:ID_MAX] or "x"


def entity_ids(names: list[str] | tuple[str, ...] | set[str]) -> dict[str, str]:
    """Each name's id (``plain_id``); names whose ids collide, or that were cut short, get a
    short hash of the name itself, so every name has its own id and the same id every time."""
    plain = {name: plain_id(name) for name in names}
    taken: dict[str, int] = {}
    for ident in plain.values():
        taken[ident] = taken.get(ident, 0) + 1
    out = {}
    for name, ident in plain.items():
        if taken[ident] > 1 or len(_NOT_ID.sub("_", name.lower()).strip("_")) > ID_MAX:
            ident = f"{ident}_{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:6]}"
        out[name] = ident
    return out
