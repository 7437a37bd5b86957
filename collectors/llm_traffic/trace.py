"""The capture: eBPF uprobes on OpenSSL 3, loaded by libbpf in the agent's process (issue 19).

bpf.py loads capture.bpf.o and attaches it to every libssl.so.3 found; its records (one per
SSL_read/SSL_write call that moved bytes, and a few per-connection events) come out of a BPF ring
buffer. One daemon thread reads them, rebuilds each connection's plaintext and feeds it to
http.py, which makes the Exchanges that drain() hands out. Nothing is written anywhere: bodies
live in memory until drained.

The reader sleeps in poll() on the ring buffer. The kernel wakes it only when it had caught up
(the ring buffer's default), and after a wake-up it waits BATCH_S before reading, so a burst of
calls costs one wake-up, a client at 1,000 requests/s about ten a second, and a machine with no
TLS traffic none at all. While connections are tracked it also wakes once a second to report
requests left without a response (REQUEST_TIMEOUT_S) and to forget processes that are gone.

Every record carries its call's stream position per direction, counted in the kernel: a record
lost to a full ring (counted, ``lost_events``) shows as a gap of known size in that connection,
and an SSL pointer used again without a seen SSL_free starts a new connection. Records come in
the ring's order, which is each thread's call order. A connection whose first written bytes are
no HTTP request, or whose first bytes are a request read (the server side of someone's TLS), is
dropped in the kernel after one record (``I``): local TLS servers cost their traps only.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from pathlib import Path

from collectors.llm_traffic import bpf
from collectors.llm_traffic.exchange import Exchange
from collectors.llm_traffic.http import CLIENT, OTHER, SERVER, ConnMeta, HttpConnection

log = logging.getLogger(__name__)

LIBSSL_PATHS = (
    "/lib/x86_64-linux-gnu/libssl.so.3", "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/lib/aarch64-linux-gnu/libssl.so.3", "/usr/lib/aarch64-linux-gnu/libssl.so.3",
    "/usr/lib64/libssl.so.3", "/usr/lib/libssl.so.3", "/lib64/libssl.so.3", "/lib/libssl.so.3",
)
CAPS = {"CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}
UNIT_HINT = ("the drop-in deploy/llm-traffic.conf (uid 0 bounded to CAP_BPF CAP_PERFMON "
             "CAP_SYS_PTRACE CAP_NET_RAW, docs/llm-traffic.md)")

MAX_CALL_BYTES = bpf.MAX_CALL  # payload bytes taken per SSL_read/SSL_write call, at most
BATCH_S = 0.1                # after a wake-up, records gather this long before they are read
HOUSE_S = 1.0                # housekeeping period while connections are tracked
STOP_S = 10.0                # stop() waits this long for the reader
REQUEST_TIMEOUT_S = 60.0     # a request with no response after this is reported alone
MAX_CONNECTIONS = 1000       # connections tracked (the least recently active is dropped)
MAX_EXCHANGES = 10_000       # exchanges waiting for drain() (the oldest is dropped)
MAX_PIDS = 4096              # processes whose exe/container are cached (for PROC_TTL_S)
PROC_TTL_S = 2.0             # a process's exe/container is read again after this

# events: records read; unparsed: records too short to hold their header; bytes_captured:
# payload bytes; connections: tracked now; dropped: exchanges given up because of a bound;
# restarts: start() after the first; lost_events: records the kernel could not write (a full
# ring); late_events: calls whose position was behind their connection's; wakeups: times the
# reader was woken by records; server_/other_connections: closed connections where the local
# process was the server / spoke no HTTP (ignored); out_of_sync: connections whose framing was
# lost; late_responses: responses to requests already reported alone (60 s);
# connections_evicted: dropped for the MAX_CONNECTIONS bound; resyncs: HTTP/1.1 connections
# back in sync at a request after being out of it; parser_errors: connections dropped for a bug
STATS = ("events", "unparsed", "bytes_captured", "connections", "dropped", "restarts",
         "lost_events", "late_events", "wakeups", "server_connections", "other_connections",
         "out_of_sync", "late_responses", "connections_evicted", "resyncs", "parser_errors")

_CONTAINER = re.compile(r"(?:docker-|libpod-|crio-|containerd-|/docker/|/kubepods[^\n]*/)"
                        r"([0-9a-f]{64})(?![0-9a-f])")


class TracerUnavailable(Exception):
    """The uprobes cannot run here; the message says why (one sentence)."""


# ---------------------------------------------------------------------------------------------
# what capture needs

def find_libssl(candidates: Iterable[str] | None = None) -> list[str]:
    """The OpenSSL 3 libssl files present, symlinks resolved, each once."""
    found: list[str] = []
    for path in LIBSSL_PATHS if candidates is None else candidates:
        real = os.path.realpath(path)
        if real not in found and os.path.isfile(real):
            found.append(real)
    return found


def effective_caps() -> int | None:
    """This process's effective capabilities (CapEff of /proc/self/status), None if unreadable."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


def tracefs_mounted(path: str = bpf.TRACEFS) -> bool:
    """Whether a tracefs is mounted at ``path`` (/proc/self/mounts)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            return any(f[1:3] == [path, "tracefs"] for f in (line.split() for line in fh))
    except OSError:
        return os.path.isdir(os.path.join(path, "events"))


def unavailable_reason(libssl: Sequence[str] | None = None,
                       obj_path: Path | None = None) -> str | None:
    """None when capture can start; otherwise one sentence saying what is missing and how to
    provide it: the eBPF object, libbpf, the capabilities (and uid 0 and tracefs without
    CAP_SYS_ADMIN), an OpenSSL 3 libssl."""
    obj = obj_path or bpf.OBJECT
    if not obj.is_file():
        return (f"the eBPF object {obj.name} is not built: install clang and libbpf-dev, then "
                f"reinstall the agent (in a checkout: make bpf)")
    try:
        bpf.libbpf()
    except bpf.BpfUnavailable as err:
        return str(err)
    caps = effective_caps()
    if caps is not None and not caps >> CAPS["CAP_SYS_ADMIN"] & 1:
        missing = [name for name in ("CAP_BPF", "CAP_PERFMON") if not caps >> CAPS[name] & 1]
        if missing:
            return (f"the agent lacks {' and '.join(missing)} (eBPF uprobes need CAP_BPF and "
                    f"CAP_PERFMON, or CAP_SYS_ADMIN): grant them in its systemd unit with "
                    f"{UNIT_HINT}")
        # without CAP_SYS_ADMIN the uprobes are defined in tracefs (bpf.py's docstring)
        if os.geteuid() != 0:
            return ("without CAP_SYS_ADMIN the uprobes are defined in tracefs' uprobe_events, "
                    "which only uid 0 may write: run the agent as uid 0 with only CAP_BPF and "
                    f"CAP_PERFMON, as {UNIT_HINT} does")
        if not tracefs_mounted():
            return (f"tracefs is not mounted at {bpf.TRACEFS} (needed without CAP_SYS_ADMIN): "
                    f"mount it with mount -t tracefs nodev {bpf.TRACEFS}")
    if not find_libssl(libssl):
        looked = ", ".join(libssl if libssl is not None else LIBSSL_PATHS)
        return f"no OpenSSL 3 libssl was found (looked for {looked}): install libssl3"
    return None


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# processes

def read_exe(pid: int) -> str:
    """/proc/PID/exe, "" when it cannot be read."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def container_id(cgroup: str) -> str:
    """The container id (12 hex digits) in the text of a /proc/PID/cgroup, "" when none."""
    m = _CONTAINER.search(cgroup)
    return m.group(1)[:12] if m else ""


def read_container(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as fh:
            return container_id(fh.read(65536))
    except OSError:
        return ""


def read_comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as fh:
            return fh.read(64).rstrip("\n")
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# the tracer

class _Conn:
    """A tracked connection: its HTTP parser, where each direction's next call begins, and
    whether the kernel's task name was taken from its first record."""

    __slots__ = ("ends", "http", "named")

    def __init__(self, http: HttpConnection) -> None:
        self.http = http
        self.ends = [0, 0]          # 0: written, 1: read
        self.named = False


class Tracer:
    """The uprobes (bpf.Capture) and the exchanges rebuilt from their records."""

    def __init__(self, capture_bytes: int = 16384, libssl: Sequence[str] | None = None, *,
                 request_timeout: float = REQUEST_TIMEOUT_S, obj_path: Path | None = None,
                 internal: bool = True) -> None:
        self.capture_bytes = max(1, capture_bytes)
        self.call_bytes = min(self.capture_bytes, MAX_CALL_BYTES)
        self.request_timeout = request_timeout
        self.modes: dict[str, str] = {}   # libssl path: "internal" or "exported" (bpf.plan)
        self._libssl = list(libssl) if libssl is not None else None
        self._obj_path = obj_path
        self._internal = internal         # False: the exported functions only (tests)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._capture: bpf.Capture | None = None   # owned by the reader thread
        self._stop_w: int | None = None
        self._out: deque[Exchange] = deque()
        self._stats = dict.fromkeys(STATS, 0)
        self._starts = 0
        # the reader thread's own state
        self._conns: OrderedDict[tuple[int, int], _Conn] = OrderedDict()
        self._pids: OrderedDict[int, tuple[float, str, str, str]] = OrderedDict()
        self._wall = 0.0                  # time.time() - time.monotonic()

    # -- control ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """The probes are attached and read (False before start(), after stop() or a failure
        of the reader, which detaches them)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Load and attach the probes, and start the reader; TracerUnavailable with the reason
        when that cannot be done. A no-op while running."""
        if self.running:
            return
        self.stop()
        reason = unavailable_reason(self._libssl, self._obj_path)
        if reason is not None:
            raise TracerUnavailable(reason)
        probes: list[bpf.Probe] = []
        try:
            for lib in find_libssl(self._libssl):
                planned, self.modes[lib] = bpf.plan(lib, self._internal)
                probes += planned
            capture = bpf.Capture(probes, self.call_bytes, obj_path=self._obj_path or bpf.OBJECT)
        except bpf.BpfUnavailable as err:
            raise TracerUnavailable(str(err)) from err
        if self._starts:
            self._stats["restarts"] += 1
        self._starts += 1
        self._wall = time.time() - time.monotonic()
        stop_r, self._stop_w = os.pipe()
        self._capture = capture
        self._thread = threading.Thread(target=self._run, args=(capture, stop_r), daemon=True,
                                        name="llm_traffic-reader")
        self._thread.start()

    def stop(self) -> None:
        """Stop the reader, which detaches the probes, and wait for it (idempotent)."""
        thread, stop_w = self._thread, self._stop_w
        if stop_w is not None:
            with contextlib.suppress(OSError):
                os.write(stop_w, b"x")
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_S)
            if thread.is_alive():
                log.warning("llm_traffic: the capture's reader did not stop within %.0f s",
                            STOP_S)
                return
        self._thread = None
        if stop_w is not None:
            with contextlib.suppress(OSError):
                os.close(stop_w)
            self._stop_w = None

    # -- output -----------------------------------------------------------------------------
    def drain(self) -> list[Exchange]:
        """The exchanges completed since the last drain (also after the reader stopped)."""
        with self._lock:
            out = list(self._out)
            self._out.clear()
        return out

    def program_stats(self) -> dict[str, tuple[int, int]]:
        """The BPF programs' (runs, nanoseconds) while running (bpf.Capture.program_stats)."""
        capture = self._capture
        return capture.program_stats() if capture is not None and self.running else {}

    def stats(self) -> dict[str, int]:
        """Counters since this Tracer was made; ``connections`` is the number tracked now."""
        with self._lock:
            stats = dict(self._stats)
        stats["connections"] = len(self._conns)
        return stats

    # -- the reader thread ------------------------------------------------------------------
    def _run(self, capture: bpf.Capture, stop_r: int) -> None:
        poller = select.poll()
        poller.register(capture.ring_fd, select.POLLIN)
        poller.register(stop_r, select.POLLIN)
        next_house = time.monotonic() + HOUSE_S
        houses = 0
        try:
            while True:
                # no connection tracked: nothing to time out, sleep until records come
                wait = max(0.0, next_house - time.monotonic()) if self._conns else None
                ready = {fd for fd, _ in poller.poll(None if wait is None else wait * 1000)}
                stopping = stop_r in ready
                if capture.ring_fd in ready and not stopping:
                    self._stats["wakeups"] += 1
                    # let the burst that woke us gather (or stop at once)
                    stopping = bool(select.select([stop_r], [], [], BATCH_S)[0])
                self._records(capture.consume())
                self._stats["lost_events"] = capture.lost()
                now = time.monotonic()
                if now >= next_house:
                    next_house = now + HOUSE_S
                    houses += 1
                    self._housekeeping(sweep=houses % 10 == 0)
                if stopping:
                    break
            for conn_key in list(self._conns):
                self._close(conn_key, time.time())
        except Exception:  # a bug here must stop the capture visibly (logged), never the agent
            log.exception("llm_traffic: the capture's reader failed; the probes are detached")
        finally:
            self._capture = None
            capture.close()
            os.close(stop_r)

    def _records(self, records: list[bytes]) -> None:
        stats = self._stats
        header = bpf.HEADER
        out: list[Exchange] = []
        for rec in records:
            if len(rec) < header.size:
                stats["unparsed"] += 1
                continue
            ts, ssl, pos, total, pid, length, kind, side, skip, comm = header.unpack_from(rec)
            data = rec[header.size:header.size + length]
            stats["events"] += 1
            key = (pid, ssl)
            try:
                self._event(out, key, kind, ts, pos, total, side, skip, comm, data)
            except Exception:  # a parser bug costs its connection, never the capture (logged)
                stats["parser_errors"] += 1
                if stats["parser_errors"] == 1:
                    log.exception("llm_traffic: a connection's bytes broke the parser; "
                                  "it is dropped")
                self._conns.pop(key, None)
        self._emit(out)

    def _event(self, out: list[Exchange], key: tuple[int, int], kind: int, ts: int, pos: int,
               total: int, side: int, skip: int, comm: bytes, data: bytes) -> None:
        if kind == bpf.K_FREE:
            if key in self._conns:
                self._close(key, ts / 1e9 + self._wall)
            return
        conn = self._conn(key)
        if not conn.named and comm[:1] not in (b"", b"\0"):
            conn.named = True               # the kernel's name for the task, at its first call
            conn.http.meta.comm = _text(comm)
        if kind == bpf.K_DATA:
            conn = self._data(conn, key, side == 0, ts, pos, total, data)
        elif kind == bpf.K_IGNORE:          # the kernel ignores it from now on
            conn.http.ignore(SERVER if skip == 2 else OTHER)
        elif kind == bpf.K_SNI:
            conn.http.meta.sni = _text(data)
        else:
            self._stats["unparsed"] += 1
        if conn.http.role == CLIENT:
            out.extend(conn.http.take())

    def _data(self, conn: _Conn, key: tuple[int, int], wrote: bool, ts: int, pos: int,
              total: int, data: bytes) -> _Conn:
        """One SSL_write (``wrote``) or SSL_read call: it moved ``total`` bytes from stream
        position ``pos``; ``data`` holds the first of them (all, up to call_bytes)."""
        side = 0 if wrote else 1
        end = conn.ends[side]
        if pos < end:
            if pos == 0:
                # SSL_free was not seen and the SSL pointer is used again: a new connection
                comm = conn.http.meta.comm
                self._close(key, ts / 1e9 + self._wall)
                conn = self._conn(key)
                conn.named, conn.http.meta.comm = True, comm
            else:                               # behind its connection: cannot be placed
                self._stats["late_events"] += 1
                self._lose(conn)
                return conn
        elif pos > end:                         # whole calls were lost (a full ring)
            self._feed(conn, wrote, b"", pos - end, ts)
        conn.ends[side] = pos + total
        self._stats["bytes_captured"] += len(data)
        self._feed(conn, wrote, data, total - len(data), ts, boundary=True)
        return conn

    def _feed(self, conn: _Conn, wrote: bool, data: bytes, missing: int, ts: int,
              boundary: bool = False) -> None:
        if not data and missing <= 0:
            return
        http = conn.http
        was = http.out_of_sync
        if wrote:
            http.wrote(data, max(0, missing), ts / 1e9 + self._wall, boundary)
        else:
            http.read(data, max(0, missing), ts / 1e9 + self._wall, boundary)
        if http.out_of_sync and not was:
            self._stats["out_of_sync"] += 1

    def _conn(self, key: tuple[int, int]) -> _Conn:
        conn = self._conns.get(key)
        if conn is not None:
            self._conns.move_to_end(key)
            return conn
        while len(self._conns) >= MAX_CONNECTIONS:
            oldest = next(iter(self._conns))
            self._stats["connections_evicted"] += 1
            self._close(oldest, time.time())
        _, exe, container, comm = self._pid_info(key[0])
        conn = self._conns[key] = _Conn(HttpConnection(ConnMeta(key[0], comm, exe, container),
                                                       self.capture_bytes))
        return conn

    def _close(self, key: tuple[int, int], when: float) -> None:
        conn = self._conns.pop(key, None)
        if conn is None:
            return
        http = conn.http
        http.close(when)
        self._account(http)
        if http.role == SERVER:
            self._stats["server_connections"] += 1
        elif http.role == OTHER:
            self._stats["other_connections"] += 1
        elif http.role == CLIENT:
            self._emit(http.take())

    def _lose(self, conn: _Conn) -> None:
        http = conn.http
        if not http.out_of_sync:
            http.lose_sync()
            self._stats["out_of_sync"] += 1
            if http.role == CLIENT:
                self._emit(http.take())

    def _account(self, http: HttpConnection) -> None:
        self._stats["dropped"] += http.dropped
        self._stats["late_responses"] += http.late
        self._stats["resyncs"] += http.resyncs
        http.dropped = http.late = http.resyncs = 0

    def _emit(self, exchanges: list[Exchange]) -> None:
        if not exchanges:
            return
        with self._lock:
            self._out.extend(exchanges)
            over = len(self._out) - MAX_EXCHANGES
            for _ in range(over):
                self._out.popleft()
            if over > 0:
                self._stats["dropped"] += over

    def _housekeeping(self, sweep: bool) -> None:
        """Once a second: requests waiting too long are reported alone; with ``sweep``, the idle
        connections of processes that are gone are closed."""
        now = time.time()
        out: list[Exchange] = []
        for key, conn in list(self._conns.items()):
            http = conn.http
            if http.role == CLIENT:
                http.expire(now, self.request_timeout)
                self._account(http)
                out.extend(http.take())
            if sweep and now - http.last_at > self.request_timeout and \
                    not os.path.exists(f"/proc/{key[0]}"):
                self._close(key, now)
        self._emit(out)

    def _pid_info(self, pid: int) -> tuple[float, str, str, str]:
        """(read at, exe, container, comm) of a process, read again after PROC_TTL_S."""
        now = time.monotonic()
        info = self._pids.get(pid)
        if info is None or now - info[0] > PROC_TTL_S:
            info = (now, read_exe(pid), read_container(pid), read_comm(pid))
            self._pids[pid] = info
            self._pids.move_to_end(pid)
            while len(self._pids) > MAX_PIDS:
                self._pids.popitem(last=False)
        return info
