"""Run a call that may hang (a network request, a library without a usable timeout) in a daemon
thread, and stop waiting for it when its bound passes or the agent is asked to stop."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
POLL_S = 0.05


class Stopped(Exception):
    """The stop event was set while the call was still running (the call is abandoned)."""


def run_bounded(fn: Callable[[], T], timeout_s: float, stop: threading.Event | None = None,
                heartbeat: Callable[[], None] = lambda: None, name: str = "bounded"
                ) -> tuple[bool, T | None]:
    """(True, value) if fn returned within ``timeout_s``, (False, None) if not; fn's exception is
    re-raised here; raises Stopped as soon as ``stop`` is set. An abandoned call's thread is left
    to end on its own timeout: it is a daemon, so it never holds the process's exit."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True, name=name)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while thread.is_alive():
        if stop is not None and stop.is_set():
            raise Stopped("stop requested")
        heartbeat()
        thread.join(min(POLL_S, max(0.0, deadline - time.monotonic())))
        if time.monotonic() >= deadline and thread.is_alive():
            return False, None
    error = box.pop("error", None)
    if error is not None:
        # no reference cycle through box: the error (and the sockets its frames hold, such as a
        # timed-out request's) is freed as soon as the caller is done with it, as without a thread
        try:
            raise error
        finally:
            del error
    return True, box.pop("value", None)
