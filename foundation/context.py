"""What a collector and a detector are handed: settings, a clock, a command runner, read-only history."""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from foundation.baseline import Baseline
from foundation.settings import Settings

if TYPE_CHECKING:
    from foundation.store.data_storage import Store

log = logging.getLogger(__name__)
T = TypeVar("T")


class CommandError(Exception):
    """A command could not be run, timed out, or was stopped."""


_children_lock = threading.Lock()
_children: set[subprocess.Popen[bytes]] = set()

OUTPUT_CAP = 64 << 20     # bytes a command may print on stdout (journalctl's batches are smaller)
STDERR_CAP = 64 << 10     # stderr is read for an error line: its head is enough
KILL_WAIT_S = 2.0         # for a killed group's leader to be reaped
READ_BYTES = 1 << 16


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a command's whole process group (it leads its own session), then reap it.

    The group, not the pid: a hung command's child that holds the output pipe open would
    otherwise outlive it, keep the read waiting forever and stay behind as an orphan."""
    _killpg(proc)
    _reap(proc, KILL_WAIT_S)


def _killpg(proc: subprocess.Popen[bytes]) -> None:
    # the group may be gone (or its last member a zombie we are about to reap)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _reap(proc: subprocess.Popen[bytes], wait_s: float) -> None:
    try:
        proc.wait(max(0.0, wait_s))
    except subprocess.TimeoutExpired:
        log.warning("command %s (pid %d) still runs after SIGKILL (stuck in the kernel?); "
                    "not waited for longer", proc.args, proc.pid)


def _read_bounded(proc: subprocess.Popen[bytes], name: str, timeout_s: float, max_output: int
                  ) -> tuple[bytes, bytes]:
    """stdout and stderr until both close and the command exits, within ``timeout_s`` and
    ``max_output`` bytes (CommandError past either; the caller kills the group)."""
    if proc.stdout is None or proc.stderr is None:
        raise ValueError(f"{name}: started without stdout and stderr pipes")
    deadline = time.monotonic() + timeout_s
    caps = {proc.stdout.fileno(): max_output, proc.stderr.fileno(): STDERR_CAP}
    chunks: dict[int, list[bytes]] = {fd: [] for fd in caps}
    sizes = dict.fromkeys(caps, 0)
    with selectors.DefaultSelector() as sel:
        for fd in caps:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommandError(f"{name} did not finish within {timeout_s:g} s")
            for key, _ in sel.select(left):
                fd = key.fd
                try:
                    data = os.read(fd, READ_BYTES)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(fd)
                    continue
                room = caps[fd] - sizes[fd]
                if fd == proc.stdout.fileno() and len(data) > room:
                    raise CommandError(f"{name} printed more than {max_output} bytes; stopped")
                chunks[fd].append(data[:max(0, room)])
                sizes[fd] += min(len(data), max(0, room))
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{name} did not finish within {timeout_s:g} s") from exc
    return b"".join(chunks[proc.stdout.fileno()]), b"".join(chunks[proc.stderr.fileno()])


def _not_installed(program: str, env: Mapping[str, str] | None) -> bool:
    """True when no file of that name is in any PATH folder (an absent tool, such as nvidia-smi
    on a machine without an NVIDIA driver): exec would fail with ENOENT."""
    if os.sep in program:
        return False
    return not any(os.path.exists(os.path.join(folder, program))
                   for folder in os.get_exec_path(None if env is None else dict(env)))


def run_command(args: Sequence[str], timeout_s: float, env: Mapping[str, str] | None = None,
                max_output: int = OUTPUT_CAP, stdin: Any = subprocess.DEVNULL
                ) -> subprocess.CompletedProcess[bytes]:
    """Run a command in its own process group, capture at most ``max_output`` bytes of output,
    and kill the whole group after ``timeout_s`` (or on stop, through ``kill_children``).
    ``stdin``: nothing by default, or an open file the command reads."""
    if _not_installed(args[0], env):   # what exec would say, without forking for it each cycle
        raise CommandError(f"cannot run {args[0]}: {os.strerror(errno.ENOENT)}")
    try:
        proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=stdin, env=None if env is None else dict(env),
                                start_new_session=True)
    except OSError as err:
        raise CommandError(f"cannot run {args[0]}: {err.strerror or err}") from err
    with _children_lock:
        _children.add(proc)
    try:
        out, errors = _read_bounded(proc, str(args[0]), timeout_s, max_output)
    finally:
        kill_group(proc)   # also what a finished command left running in its group
        with _children_lock:
            _children.discard(proc)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, errors)


def start_background(args: Sequence[str], stdout: Any = subprocess.DEVNULL,
                     stderr: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """Start a command that outlives this call (a slow scan) in its own process group;
    ``kill_group`` or ``kill_children`` stops it with everything it started."""
    try:
        proc = subprocess.Popen(list(args), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    except OSError as err:
        raise CommandError(f"cannot run {args[0]}: {err.strerror or err}") from err
    with _children_lock:
        _children.add(proc)
    return proc


def release_child(proc: subprocess.Popen[bytes]) -> None:
    """Stop tracking a background command that has finished or been killed."""
    with _children_lock:
        _children.discard(proc)


def kill_children() -> int:
    """Kill the process group of every command still running that was started here (on
    shutdown); how many were running."""
    with _children_lock:
        running = [p for p in _children if p.poll() is None]
    for proc in running:   # every group first, then one shared wait: a stop is not held by
        _killpg(proc)      # KILL_WAIT_S per command stuck in the kernel (D state: sensors, nvidia-smi)
    deadline = time.monotonic() + KILL_WAIT_S
    for proc in running:
        _reap(proc, deadline - time.monotonic())
    return len(running)


Runner = Callable[[Sequence[str], float], subprocess.CompletedProcess[bytes]]


class CycleShare:
    """What the collectors of one cycle read once for all of them (the process table): each value
    is made by the first collector that asks, the others wait for it and share it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {}

    def once(self, key: str, make: Callable[[], T]) -> T:
        """The value under ``key``, made by ``make`` the first time it is asked for."""
        with self._lock:
            if key not in self._values:
                self._values[key] = make()
            value: T = self._values[key]
            return value


@dataclass(frozen=True)
class CollectContext:
    """Handed to ``collect``: everything a collector may use, nothing it may write."""

    settings: Settings
    now: float                                 # epoch seconds at the start of the cycle
    state: Mapping[str, Any]                   # what this collector returned as state last time
    run: Runner = field(default=lambda args, timeout: run_command(args, timeout))
    monotonic: Callable[[], float] = time.monotonic
    shared: CycleShare = field(default_factory=CycleShare)   # one per cycle (agent/cycle.py)


class DetectContext:
    """Handed to ``detect``: read-only history plus buffered writes the cycle commits atomically."""

    def __init__(self, settings: Settings, now: float, store: Store) -> None:
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
