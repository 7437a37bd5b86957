"""What a collector and a detector are handed: settings, a clock, a command runner, read-only history."""
from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from core.baseline import Baseline
from core.settings import Settings

if TYPE_CHECKING:
    from data_storage import Store


class CommandError(Exception):
    """A command could not be run, timed out, or was stopped."""


_children_lock = threading.Lock()
_children: set[subprocess.Popen] = set()


def run_command(args: Sequence[str], timeout_s: float, env: Mapping[str, str] | None = None
                ) -> subprocess.CompletedProcess:
    """Run a command, capture its output, and kill it (by its own pid) after ``timeout_s``."""
    try:
        proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=None if env is None else dict(env))
    except OSError as err:
        raise CommandError(f"cannot run {args[0]}: {err.strerror or err}") from err
    with _children_lock:
        _children.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise CommandError(f"{args[0]} did not finish within {timeout_s:g} s") from exc
    finally:
        with _children_lock:
            _children.discard(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def start_background(args: Sequence[str], stdout: Any = subprocess.DEVNULL,
                     stderr: Any = subprocess.DEVNULL) -> subprocess.Popen:
    """Start a command that outlives this call (a slow scan); ``kill_children`` stops it."""
    try:
        proc = subprocess.Popen(list(args), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
    except OSError as err:
        raise CommandError(f"cannot run {args[0]}: {err.strerror or err}") from err
    with _children_lock:
        _children.add(proc)
    return proc


def release_child(proc: subprocess.Popen) -> None:
    """Stop tracking a background command that has finished or been killed."""
    with _children_lock:
        _children.discard(proc)


def kill_children() -> int:
    """Kill every command still running that ``run_command`` started (on shutdown); how many."""
    with _children_lock:
        running = [p for p in _children if p.poll() is None]
    for proc in running:
        proc.kill()
    return len(running)


Runner = Callable[[Sequence[str], float], subprocess.CompletedProcess]


@dataclass(frozen=True)
class CollectContext:
    """Handed to ``collect``: everything a collector may use, nothing it may write."""

    settings: Settings
    now: float                                 # epoch seconds at the start of the cycle
    state: Mapping[str, Any]                   # what this collector returned as state last time
    run: Runner = field(default=lambda args, timeout: run_command(args, timeout))
    monotonic: Callable[[], float] = time.monotonic


class DetectContext:
    """Handed to ``detect``: read-only history plus buffered writes the cycle commits atomically."""

    def __init__(self, settings: Settings, now: float, store: "Store") -> None:
        self.settings = settings
        self.now = now
        self.hour = time.localtime(now).tm_hour
        self._store = store
        self.remembered: dict[str, set[str]] = {}
        self.forgotten: dict[str, set[str]] = {}
        self.states: dict[str, dict[str, Any]] = {}

    def baseline(self, series: str, by_hour: bool = False) -> Baseline | None:
        """The baseline before this cycle: this hour's when by_hour and trusted, else all hours."""
        if by_hour:
            hourly = self._store.baseline(series, self.hour)
            if hourly is not None and hourly.trusted:
                return hourly
        return self._store.baseline(series)

    def is_known(self, namespace: str, key: str) -> bool:
        """True when ``key`` is in the known set (including what this cycle remembered)."""
        if key in self.forgotten.get(namespace, ()):
            return False
        return key in self.remembered.get(namespace, ()) or self._store.is_seen(namespace, key)

    def known(self, namespace: str) -> set[str]:
        """The whole known set of a namespace as of this cycle."""
        keys = self._store.seen_keys(namespace) | self.remembered.get(namespace, set())
        return keys - self.forgotten.get(namespace, set())

    def remember(self, namespace: str, *keys: str) -> None:
        """Add keys to a known set when the cycle commits."""
        self.remembered.setdefault(namespace, set()).update(keys)
        self.forgotten.get(namespace, set()).difference_update(keys)

    def forget(self, namespace: str, *keys: str) -> None:
        """Remove keys from a known set when the cycle commits."""
        self.forgotten.setdefault(namespace, set()).update(keys)
        self.remembered.get(namespace, set()).difference_update(keys)

    def state(self, name: str) -> dict[str, Any]:
        """A detector's own persistent dict (mutate it; saved when the cycle commits)."""
        if name not in self.states:
            self.states[name] = self._store.collector_state(f"detect:{name}")
        return self.states[name]
