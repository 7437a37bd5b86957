"""Who an sshd line is about: the address and user sshd wrote, never the ones a client sent.

sshd logs the user name exactly as the client sent it (``%.100s``: spaces, colons, a fake
`` from 192.168.1.50 port 22 ssh2`` and all), and some key extras after ``ssh2: `` carry client
text too (a certificate's ID, hostbased's client user and host). So an address is taken only where
sshd's own structure puts it (OpenSSH auth.c ``auth_log``: ``... for %s%.100s from %.200s port %d
ssh2%s%s``), anchored at the end of the line:

- a real account (no ``invalid user``) has a one-word name: the first `` from `` after it;
- an invalid user's name is any text: among the places where the rest of the line parses as
  sshd's tail, the last one that ends the line (`` port N ssh2``, optionally `` [preauth]``);
  else the single one followed by a key extra (``: TYPE FINGERPRINT``); more than one of those
  is ambiguous and attributes the line to nobody.

Addresses are then validated with ``ipaddress`` (collectors.auth.anchor.address_key): a zone index
is not part of the key, and a token that is neither an address nor a DNS name as sshd writes it
with UseDNS is never counted. collectors/auth/_authscan.c parses a line in C only when it has one
reading (one `` from `` after a one-word user), so both paths agree.
"""
from __future__ import annotations

import ipaddress
import re

_TAIL = re.compile(rb"(?:::ffff:)?([0-9A-Za-z:][\w.:%-]*)(?: port \d+)?(?: on \S+)?(?: ssh\d*)?"
                   rb"(?:(?: \[preauth\])?[ \t\r]*$|(: ))")
_KEY_EXTRA = re.compile(rb"[A-Z0-9][A-Za-z0-9@.-]* (?:SHA256:|MD5:|[0-9a-f]{2}:)")
_INVALID_TAIL = re.compile(rb"(?:::ffff:)?([0-9A-Za-z:][\w.:%-]*)(?: port \d+)?[ \t\r]*$")
_FROM = b" from "
_ZERO_PADDED = re.compile(rb"(?=[\d.]*\.0\d)\d{1,3}(?:\.\d{1,3}){3}\Z")
# a DNS name as getnameinfo gives it: labels of letters, digits and hyphens, a TLD of two or
# more that starts with a letter (so 183.106.179.x is not one), or one label with a letter
_LABEL = rb"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rb"(?:(?:" + _LABEL + rb"\.)+[A-Za-z][A-Za-z0-9-]{0,61}[A-Za-z0-9]\.?"
                       rb"|(?=[A-Za-z0-9-]*[A-Za-z])" + _LABEL + rb")\Z")


def _froms(rest: bytes) -> list[int]:
    """Offsets of every " from " in ``rest``, and of a leading "from " (an empty user)."""
    out = [0] if rest.startswith(b"from ") else []
    at = rest.find(_FROM)
    while at >= 0:
        out.append(at + 1)
        at = rest.find(_FROM, at + 1)
    return out


def _user_end(at: int) -> int:
    return max(at - 1, 0)


def after_for(rest: bytes, invalid: bool) -> tuple[bytes, bytes] | None:
    """(user, address) of the text after "for " of a Failed/Accepted line (its "invalid user "
    already removed), by the rule above; None when no reading (or more than one) exists."""
    if not invalid:
        word = rest.split(b" ", 1)[0]
        if word and rest[len(word):len(word) + 6] == _FROM:
            m = _TAIL.match(rest, len(word) + 6)
            if m:
                return word, m.group(1)
    cands = []
    for at in _froms(rest):
        m = _TAIL.match(rest, at + 5)
        if m:
            cands.append((at, m))
    if not cands:
        return None
    if len(cands) > 1:
        clean = [c for c in cands if c[1].group(2) is None]
        if clean:
            cands = clean[-1:]
        else:
            cands = [c for c in cands if _KEY_EXTRA.match(rest, c[1].end())]
            if len(cands) != 1:
                return None
    at, m = cands[0]
    return rest[:_user_end(at)], m.group(1)


def invalid_user(rest: bytes) -> tuple[bytes, bytes] | None:
    """(user, address) of the text after "Invalid user ": the last "from HOST [port N]" that
    ends the line (sshd writes nothing after it)."""
    for at in reversed(_froms(rest)):
        m = _INVALID_TAIL.match(rest, at + 5)
        if m:
            return rest[:_user_end(at)], m.group(1)
    return None


_CHANGE = b": Change of username or service not allowed: ("
_CHANGE_HEAD = re.compile(rb" (?:from )?(?:invalid|authenticating) user ")
_PORT_AT_END = re.compile(rb" ([0-9A-Za-z:][\w.:%-]*) port \d+\Z")


def change_of_username(rest: bytes) -> bytes | None:
    """The address of ``Disconnecting`` + ``rest``, "... invalid user U ADDR port N: Change of
    username or service not allowed: (U,S) -> (U2,S2)" (OpenSSH auth2.c: the log preamble's
    user and the first in the parentheses are both authctxt->user, so sshd's reading is the one
    where they agree); None when no reading, or readings naming different addresses."""
    head = _CHANGE_HEAD.match(rest)
    if head is None:
        return None
    found = set()
    at = rest.find(_CHANGE, head.end())
    while at >= 0:
        before = rest[head.end():at]
        tail = _PORT_AT_END.search(before)
        if tail and rest.startswith(before[:tail.start()] + b",", at + len(_CHANGE)):
            found.add(tail.group(1))
        at = rest.find(_CHANGE, at + 1)
    return found.pop() if len(found) == 1 else None


class AddressKeys(dict):  # type: ignore[type-arg]
    """Raw address token -> its key (bytes) or None when it is no address: a cache, since a few
    addresses make most lines."""

    def __missing__(self, raw: bytes) -> bytes | None:
        key = address_key(raw)
        if len(self) < 100_000:
            self[raw] = key
        return key


def address_key(raw: bytes) -> bytes | None:
    """The key of an address as sshd logs it: the address without a zone index (IPv6 compressed,
    IPv4-mapped as IPv4), a DNS name lower-cased; None for anything else."""
    key = _key(raw)
    if key is None and raw.endswith(b":"):     # "Received disconnect from ADDR: 3: ..." (old)
        key = _key(raw[:-1])
    return key


def _key(text: bytes) -> bytes | None:
    if _ZERO_PADDED.match(text):          # 192.030.0.6: not inet_ntop's, but fail2ban's corpus
        return text if all(int(part) < 256 for part in text.split(b".")) else None
    addr, percent, zone = text.partition(b"%")
    if percent and not zone:
        return None
    try:
        ip = ipaddress.ip_address(addr.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        if zone or len(text) > 253 or not _HOSTNAME.match(text):
            return None
        return text.rstrip(b".").lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip).encode()


KEYS = AddressKeys()
