"""Serving the dashboard: its socket on WEB_BIND:WEB_PORT, and uvicorn on it until a signal.

Plain uvicorn (h11, the asyncio loop): uvloop and httptools would add compiled code and memory
for a speed a one-operator dashboard never needs. uvicorn's own proxy-header handling is off
(by default it believes X-Forwarded-* from 127.0.0.1): agent/web/app.py applies it only for
WEB_TRUSTED_PROXIES. The access log is off: pages refresh every few seconds, and the journal
keeps what matters (logins, lockouts, acks) from the dashboard's own log lines.
"""
from __future__ import annotations

import logging
import socket

import uvicorn

from agent.web.app import make_app
from foundation.settings import Settings
from foundation.untrusted import for_terminal

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED = 0, 1
KEEP_ALIVE_S = 15              # a page's refresh every 5 s reuses its connection
MAX_CONNECTIONS = 64           # one operator's browsers and phones; more is someone else
STOP_GRACE_S = 5               # SIGTERM: requests in flight get this long


def listen(bind: str, port: int) -> socket.socket:
    """A listening TCP socket on bind:port (OSError when it is taken or not ours)."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on accepted sockets whose
    # proto says TCP; with Nagle on, each response's body (a second write after its headers)
    # waits for the client's delayed ACK, 40 ms a request (bench/web_dashboard.py)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((bind, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings) -> int:
    """Serve the dashboard until SIGTERM or SIGINT: 0 after a clean stop, 1 when the port cannot
    be had."""
    try:
        sock = listen(settings.WEB_BIND, settings.WEB_PORT)
    except OSError as err:
        log.error("dashboard: cannot listen on %s:%d: %s. Fix: stop what listens there or set "
                  "WEB_PORT (or WEB_BIND)", settings.WEB_BIND, settings.WEB_PORT,
                  for_terminal(err.strerror or err))
        return EXIT_FAILED
    asgi, _ = make_app(settings)
    config = uvicorn.Config(asgi, http="h11", loop="asyncio", ws="none", lifespan="on",
                            log_config=None, access_log=False, proxy_headers=False,
                            server_header=False, timeout_keep_alive=KEEP_ALIVE_S,
                            limit_concurrency=MAX_CONNECTIONS,
                            timeout_graceful_shutdown=STOP_GRACE_S)
    server = uvicorn.Server(config)
    host = f"[{settings.WEB_BIND}]" if ":" in settings.WEB_BIND else settings.WEB_BIND
    log.info("dashboard on http://%s:%d/ (store %s)", host, settings.WEB_PORT, settings.db_path)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return EXIT_OK if server.started else EXIT_FAILED
