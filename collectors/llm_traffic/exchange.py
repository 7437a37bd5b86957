"""One HTTP request and its response as the TLS library saw them in plaintext (issue 19): the
contract between the capture (trace.py, http.py) and the classification (providers.py,
secrets.py). Bodies live in memory only, for one classification, and are dropped with the object:
they are never stored, logged or sent (docs/llm-traffic.md, "What is never kept").
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Exchange:
    """A request and (when it came) its response, on one TLS connection of one process.

    Who: ``pid``, ``comm`` (the kernel's task name: any local user can set it, so a label only),
    ``exe`` (/proc/PID/exe, read when the connection was first seen; "" when unreadable) and
    ``container`` (the container id from /proc/PID/cgroup, "" when none).
    Where: ``sni`` (the server name the client set for the handshake, "" if none) and the request's
    ``authority`` (Host header or HTTP/2 :authority).
    What: the request line's method and path, the request headers (names lower-cased; the values
    of authorization, cookie, x-api-key, api-key, x-goog-api-key and proxy-authorization are
    replaced by "<redacted>" before an Exchange is made), the response status and headers.
    Bodies: the bytes captured (at most LLM_TRAFFIC_CAPTURE_BYTES per direction; ``*_truncated``
    when more went by), de-chunked for HTTP/1.1 chunked transfer encoding, not decompressed.
    Sizes: ``request_bytes`` / ``response_bytes`` count every plaintext byte of the exchange (headers
    and body, as SSL_write/SSL_read reported them), captured or not.
    """

    pid: int
    comm: str
    exe: str
    container: str
    sni: str
    http_version: str                    # "1.1" or "2"
    method: str
    path: str
    authority: str
    request_headers: dict[str, str] = field(default_factory=dict)
    request_body: bytes = b""
    request_truncated: bool = False
    request_bytes: int = 0
    status: int | None = None            # None: no response seen (yet, or the connection closed)
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    response_truncated: bool = False
    response_bytes: int = 0
    started_at: float = 0.0              # wall clock (time.time()) of the request's first byte
    ended_at: float | None = None        # of the response's last byte, when complete

    @property
    def host(self) -> str:
        """The host the request was for: the Host/:authority without its port, else the SNI."""
        host = self.authority or self.sni
        if host.startswith("["):
            return host[1:host.find("]")] if "]" in host else host
        return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


REDACTED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key",
                              "api-key", "x-goog-api-key"})
