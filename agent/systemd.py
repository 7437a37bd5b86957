"""sd_notify: readiness, status and the watchdog, spoken to systemd over $NOTIFY_SOCKET.

The protocol is one datagram on a Unix socket (sd_notify(3)); a dozen lines here spare a compiled
dependency (python-systemd needs libsystemd headers to build).
"""
from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


def notify(message: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one sd_notify message (e.g. "READY=1"); False when not under systemd or it failed."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError as err:
        log.debug("sd_notify failed: %s", err)
        return False
    return True


class Watchdog:
    """Feeds systemd's watchdog at half its interval, however often ``feed`` is called."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._environ = env
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.interval_s = int(usec) / 2e6 if enabled else None
        self._last = 0.0

    def feed(self) -> None:
        """Send WATCHDOG=1 if half the interval has passed since the last one."""
        if self.interval_s is None:
            return
        now = time.monotonic()
        if now - self._last >= self.interval_s and notify("WATCHDOG=1", self._environ):
            self._last = now
