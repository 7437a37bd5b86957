"""The types of the C auth log scanner, collectors/auth/_authscan.c (built by `make native`).

Offsets and keys travel as bytes of native int64 (read with numpy.frombuffer); addresses, users,
pids and methods as the raw bytes of the line.
"""
from typing import Any

from _typeshed import ReadableBuffer

# (line starts, kinds: 0 login, 1 publickey, 2 publickey of an invalid user, 3 none, 4 other,
#  addresses)
Failed = tuple[bytes, bytes, list[Any]]
# (line starts, users, addresses)
Invalid = tuple[bytes, list[bytes], list[Any]]
# (line starts, kinds: 0 PAM failure, 1 accepted, pids, users, addresses, methods)
Sshd = tuple[bytes, bytes, list[bytes], list[bytes], list[Any], list[bytes]]
# the lines each pattern family must read with its regex: failed, invalid, sshd, su, admin
Slow = tuple[bytes, bytes, bytes, bytes, bytes]
# pre-authentication probes: (line starts, addresses)
Probes = tuple[bytes, list[Any]]

def scan(chunk: ReadableBuffer, /) -> tuple[tuple[int, bool], Failed, Invalid, Sshd, bytes, Slow,
                                            Probes]:
    """One pass over a chunk of whole lines: ((lines, clean), failed, invalid, sshd, sudo
    command starts, slow lines, probes)."""

def stamp_keys(chunk: ReadableBuffer, starts: ReadableBuffer, /) -> bytes:
    """Each line start's traditional syslog stamp as one int64 key; -1 for any other line."""

def odd_addresses(tokens: list[Any], /) -> list[int]:
    """The indexes of the tokens that are not a plain IPv4 address."""

def first_ids(items: list[Any], /) -> tuple[bytes, list[Any]]:
    """Each item's number in order of first appearance (int64 bytes), and the distinct items."""
