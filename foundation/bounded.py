"""Run a call that may hang (a network request, a library without a usable timeout) in a daemon
thread, and stop waiting for it when its bound passes or the agent is asked to stop."""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
POLL_S = 0.05


class Stopped(Exception):
    """The stop event was set while the call was still running (the call is abandoned)."""


class Stop(threading.Event):
    """The agent's stop request: setting it also sets every event linked to it, so a wait on
    one of those (the cycle waiting for its collectors) ends at once without polling.

    set() is called from a signal handler, which runs in the main thread between two of its
    bytecodes, possibly while that thread holds a linked event's lock (inside its wait() or
    clear()): setting that event there would deadlock. So the linked events are set by a relay
    thread of this Stop's own, never by set()'s caller."""

    def __init__(self) -> None:
        super().__init__()
        self._linked: list[threading.Event] = []
        self._guard = threading.Lock()
        threading.Thread(target=self._relay, name="stop-relay", daemon=True).start()

    def link(self, event: threading.Event) -> None:
        """Set ``event`` too when the stop is requested (at once if it already was)."""
        with self._guard:
            self._linked.append(event)
        if self.is_set():
            event.set()

    def _relay(self) -> None:
        threading.Event.wait(self)
        with self._guard:
            linked = list(self._linked)
        for event in linked:
            event.set()


PARK_S = 900.0   # a finished thread waits this long for its next job, then ends
PARKED = "parked"


class _Worker:
    """A daemon thread that runs one job at a time and then waits (parked) for the next."""

    def __init__(self, job: Callable[[], Any], name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], str]] = queue.SimpleQueue()
        self._jobs.put((job, name))
        threading.Thread(target=self._run, daemon=True, name=name).start()

    def give(self, job: Callable[[], Any], name: str) -> None:
        self._jobs.put((job, name))

    def _run(self) -> None:
        job, name = self._jobs.get()
        while True:
            threading.current_thread().name = name
            job()   # an exception ends this thread, as it would end a thread of its own
            threading.current_thread().name = PARKED   # a job's name only while it runs
            with _parked_lock:
                _parked.append(self)
            try:
                job, name = self._jobs.get(timeout=PARK_S)
            except queue.Empty:
                with _parked_lock:
                    if self in _parked:   # nobody took it meanwhile: end
                        _parked.remove(self)
                        return
                job, name = self._jobs.get()   # taken just as it timed out: its job is coming


_parked: list[_Worker] = []
_parked_lock = threading.Lock()


def spawn(job: Callable[[], Any], name: str) -> None:
    """Run ``job`` in a daemon thread of its own, as ``threading.Thread(...).start()`` would,
    on a thread a finished job left parked when there is one: the cycle's collectors and checks
    then cost no thread creation each cycle (~0.1 ms each). A job that hangs keeps its thread."""
    with _parked_lock:
        worker = _parked.pop() if _parked else None
    if worker is None:
        _Worker(job, name)
    else:
        worker.give(job, name)


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
