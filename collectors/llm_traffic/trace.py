"""The capture: eBPF uprobes on OpenSSL 3, run by bpftrace as a child process (issue 19).

bpftrace prints the payload and a few per-connection events; one daemon thread reads them, puts
them back in time order, rebuilds each connection's plaintext and feeds it to http.py, which
makes the Exchanges that drain() hands out. Nothing is written anywhere: bodies live in memory
until drained.

The bpftrace program (``program()``), and why it looks the way it does (measured on a loaded
2-core VM: a uprobe hit costs ~7-10 µs there, mostly the entry trap and its single-step):
- Writes and reads are both taken at the function's *return*, from the arguments saved at its
  entry (map ``@a`` by thread id): only what a call really moved is kept (a non-blocking
  SSL_write that fails with WANT_WRITE and is retried, or an SSL_read returning -1, costs no
  output), with the call's own count (SSL_read/SSL_write: the return value; the _ex variants:
  ``*written`` / ``*readbytes``). On the same function the entry and return probes share one
  trap; the return (a syscall since Linux 6.11) adds little.
- The payload does not go through printf: each printf is a perf-buffer sample that wakes
  bpftrace, about 6 µs each in the traced process here (+51% CPU per request for a 1 KiB
  request at 1,000 req/s), against ~0.3 µs for a map update (+15%, of which +10% is the bare
  traps). Chunks of CHUNK bytes (bpftrace 0.17's maximum string length) go into a hash map keyed
  by everything needed to place them (pid, SSL*, direction, the call's stream position, the
  chunk's offset, time, the call's total). Two maps alternate: a timer switches the writers to
  the other map once bpftrace has emptied it, prints and empties the one left on its next tick,
  then prints "T time" (all chunks from before then are out). A slow reader delays the switch
  and the map in use grows (to MAP_KEYS entries: beyond, chunks are dropped, and seen as gaps).
- At most min(capture_bytes, MAX_CALL_BYTES) per call, full chunks in a bounded ``while`` loop
  with a constant length and the tail once after it (a variable length inside the loop made the
  verifier walk ten times more instructions). MAX_CALL_BYTES is 16 KiB, one TLS record: the
  verifier's work grows with it (64 KiB took 49 s to load).
- ``@wp``/``@rp`` count each connection's bytes per direction, so every call carries its stream
  position: a lost chunk or call shows as a gap of known size (skipped inside a body), a call out
  of order is detected, and an SSL pointer reused without a seen SSL_free starts a new
  connection. Perf-buffer lines (per CPU) can come out of order: the reader holds events until
  both REORDER_S have passed and the maps' "T" watermark says nothing older can come.
- A connection whose first written bytes are no HTTP request (not an HTTP client: a database,
  or an HTTP/2 server's SETTINGS), or whose first bytes are a request *read* (the server side of
  someone's TLS, e.g. a local nginx), is dropped in the kernel from then on (map ``@ign``, one
  ``I`` line): local TLS servers cost their traps, not their traffic.
- ``comm`` comes once per connection (``C``), from the entry of its first SSL_read/SSL_write in
  this bpftrace's life (gate map ``@c``, deleted by SSL_free: one map lookup per call, where comm
  on every chunk would add 16 bytes to each); the SNI (``S``) from SSL_ctrl with
  SSL_CTRL_SET_TLSEXT_HOSTNAME (55), whose arg3 is the name; SSL_free is ``F``. Strings a
  process chose (comm, SNI, payload) come out with ``%r``-style escapes, so none can forge a line.
"""
from __future__ import annotations

import contextlib
import fcntl
import heapq
import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence

from collectors.llm_traffic.exchange import Exchange
from collectors.llm_traffic.http import CLIENT, OTHER, SERVER, ConnMeta, HttpConnection

log = logging.getLogger(__name__)

LIBSSL_PATHS = (
    "/lib/x86_64-linux-gnu/libssl.so.3", "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/lib/aarch64-linux-gnu/libssl.so.3", "/usr/lib/aarch64-linux-gnu/libssl.so.3",
    "/usr/lib64/libssl.so.3", "/usr/lib/libssl.so.3", "/lib64/libssl.so.3", "/lib/libssl.so.3",
)
TRACEFS = "/sys/kernel/tracing"
CAPS = {"CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}
UNIT_HINT = ("the drop-in deploy/llm-traffic.conf (AmbientCapabilities=CAP_BPF CAP_PERFMON "
             "CAP_SYS_PTRACE, docs/llm-traffic.md)")

CHUNK = 200                  # payload bytes per map entry (bpftrace 0.17's longest string)
FLUSH_MS = 200               # the chunks' map is switched, then printed, about this often
MAP_KEYS = 16384             # entries per map: chunks per FLUSH_MS, at most (about 8 MB per map)
STUCK_TICKS = 50             # a map not emptied after this many ticks (its print lost) is reused
PIPE_BYTES = 1 << 20         # bpftrace's stdout pipe: slack while the reader is busy
MAX_CALL_BYTES = 16384       # payload bytes taken per SSL_read/SSL_write call, at most
REQUEST_STARTS = (b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"PATC", b"OPTI", b"CONN", b"PRI ")
START_TIMEOUT_S = 15.0       # bpftrace compiles, loads and attaches within this
STOP_GRACE_S = 3.0           # SIGTERM, then SIGKILL after this
REQUEST_TIMEOUT_S = 60.0     # a request with no response after this is reported alone
REORDER_S = 0.5              # lines are held this long to be put back in time order
MAX_HELD = 50_000            # lines held for that at most (the oldest go first)
MAX_CONNECTIONS = 1000       # connections tracked (the least recently active is dropped)
MAX_EXCHANGES = 10_000       # exchanges waiting for drain() (the oldest is dropped)
MAX_PIDS = 4096              # processes whose exe/container are cached (for PROC_TTL_S)
PROC_TTL_S = 2.0             # a process's exe/container is read again after this
STDERR_KEEP = 65536          # bytes of bpftrace's stderr kept for error messages
MAX_LINE = 65536             # an output line longer than this is no line of ours

# events: lines read; unparsed: lines (or chunks) that did not parse; bytes_captured: payload
# bytes decoded; connections: tracked now; dropped: exchanges given up because of a bound;
# restarts: start() after the first; lost_events: what bpftrace reported lost; late_events: lines
# that came after later ones were processed; server_/other_connections: closed connections where
# the local process was the server / spoke no HTTP (ignored); out_of_sync: connections whose
# framing was lost; late_responses: responses to requests already reported alone (60 s);
# connections_evicted: dropped for the MAX_CONNECTIONS bound; resyncs: HTTP/1.1 connections
# back in sync at a request after being out of it; parser_errors: connections dropped for a bug
STATS = ("events", "unparsed", "bytes_captured", "connections", "dropped", "restarts",
         "lost_events", "late_events", "server_connections", "other_connections", "out_of_sync",
         "late_responses", "connections_evicted", "resyncs", "parser_errors")

_CONTAINER = re.compile(r"(?:docker-|libpod-|crio-|containerd-|/docker/|/kubepods[^\n]*/)"
                        r"([0-9a-f]{64})(?![0-9a-f])")
# %r prints bytes 0x20..0x7e as themselves and every other byte as \xNN (two lowercase digits):
# only an escape of such a byte can be real
_ESCAPE = re.compile(rb"\\x([01][0-9a-f]|7f|[89a-f][0-9a-f])")
_HEX = {f"{i:02x}".encode(): bytes([i]) for i in range(256)}
_ATTACHING = re.compile(rb"Attaching (\d+) probes?")
_LOST = re.compile(rb"Lost (\d+) events")


# (time ns, offset in its call, arrival order, kind, pid, SSL pointer, stream position of its
# call, the call's total, payload): in time order, a call's chunks by offset
_Event = tuple[int, int, int, bytes, int, int, int, int, bytes]


class TracerUnavailable(Exception):
    """bpftrace cannot run the uprobes here; the message says why (one sentence)."""


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


def tracefs_mounted(path: str = TRACEFS) -> bool:
    """Whether a tracefs is mounted at ``path`` (/proc/self/mounts)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            return any(f[1:3] == [path, "tracefs"] for f in (line.split() for line in fh))
    except OSError:
        return os.path.isdir(os.path.join(path, "events"))


def unavailable_reason(bpftrace: str | None = None,
                       libssl: Sequence[str] | None = None) -> str | None:
    """None when capture can start; otherwise one sentence saying what is missing and how to
    provide it: bpftrace, the capabilities, tracefs, an OpenSSL 3 libssl."""
    program = bpftrace or "bpftrace"
    if shutil.which(program) is None:
        return f"bpftrace is not installed ({program} was not found): apt install bpftrace"
    caps = effective_caps()
    if caps is not None and not caps >> CAPS["CAP_SYS_ADMIN"] & 1:
        missing = [name for name in ("CAP_BPF", "CAP_PERFMON") if not caps >> CAPS[name] & 1]
        if missing:
            return (f"the agent lacks {' and '.join(missing)} (eBPF uprobes need CAP_BPF and "
                    f"CAP_PERFMON, or CAP_SYS_ADMIN): grant them in its systemd unit with "
                    f"{UNIT_HINT}")
    if os.geteuid() != 0:      # bpftrace 0.17 checks the user id itself, capabilities or not
        return ("bpftrace 0.17 runs only as root (uid 0), even with CAP_BPF and CAP_PERFMON: "
                "run the agent as uid 0 with only those capabilities, as the drop-in "
                "deploy/llm-traffic.conf does (docs/llm-traffic.md)")
    if not tracefs_mounted():
        return (f"tracefs is not mounted at {TRACEFS}: mount it with "
                f"mount -t tracefs nodev {TRACEFS}")
    if not find_libssl(libssl):
        looked = ", ".join(libssl if libssl is not None else LIBSSL_PATHS)
        return f"no OpenSSL 3 libssl was found (looked for {looked}): install libssl3"
    return None


# ---------------------------------------------------------------------------------------------
# the bpftrace program

def program(libs: Sequence[str], capture_bytes: int = 16384, chunk: int = CHUNK) -> str:
    """The bpftrace program for the given libssl files (see the module's docstring)."""
    per_call = max(1, min(capture_bytes, MAX_CALL_BYTES))
    loops = per_call // chunk + 1

    def probes(kind: str, *funcs: str) -> str:
        return ", ".join(f"{kind}:{lib}:{fn}" for lib in libs for fn in funcs)

    gate = ('if (@c[pid, arg0] == 0) { @c[pid, arg0] = 1; '
            'printf("C %llu %d %llx %r\\n", nsecs, pid, arg0, buf(curtask->comm, 16)); }')
    # the first 4 bytes of an HTTP request: GET, POST, PUT, HEAD, DELETE, PATCH, OPTIONS,
    # CONNECT, and PRI (the HTTP/2 preface), as little-endian 32-bit words
    is_request = " || ".join(f"$h == {int.from_bytes(m, 'little'):#x}" for m in REQUEST_STARTS)

    def ret(direction: int, pos: str, other: str) -> str:
        # $a = (SSL*, buf, size_t *count or 0); 0: SSL_read/SSL_write (the count is the return
        # value), else the _ex variant (returns 1 and stores the count). $p: the position of the
        # call's first byte in the connection's stream of that direction. Each chunk goes into
        # the map of the current period (@flip), keyed by everything needed to place it. A
        # connection whose first written bytes are no request, or whose first bytes are a
        # request read, is ignored from then on (@ign; $skip 1: not HTTP, 2: a server).
        def put(length: str) -> str:
            key = f"pid, $a.0, {direction}, $p, $off, $t, $n"
            value = f"buf($a.1 + $off, {length})"
            return f"if ($f) {{ @d1[{key}] = {value}; }} else {{ @d0[{key}] = {value}; }}"
        if direction == 0:      # (an HTTP/2 server writes a SETTINGS frame first: type 4)
            role = (f"if (!({is_request})) {{ "
                    "$skip = (($h >> 24) == 4 && ($h & 0xff) == 0) ? 2 : 1; }")
        else:
            role = f"if (({is_request}) && {other}[pid, $a.0] == 0) {{ $skip = 2; }}"
        return f"""{{
  $a = @a[tid]; delete(@a[tid]); $n = (uint64)0;
  if ($a.2 == 0) {{ if ((int32)retval > 0) {{ $n = (uint64)(int32)retval; }} }}
  else {{ if ((int32)retval == 1) {{ $n = *(uint64*)$a.2; }} }}
  if ($n > 0 && $a.1 != 0 && @ign[pid, $a.0] == 0) {{
    $f = @flip; $t = nsecs; $p = {pos}[pid, $a.0]; {pos}[pid, $a.0] = $p + $n; $skip = 0;
    if ($p == 0 && $n >= 4) {{
      $h = *(uint32*)$a.1; {role}
      if ($skip) {{ @ign[pid, $a.0] = 1; printf("I %llu %d %llx %d\\n", $t, pid, $a.0, $skip); }}
    }}
    if ($skip == 0) {{
      $cap = $n; if ($cap > {per_call}) {{ $cap = {per_call}; }}
      $off = (uint64)0; $i = 0;
      while ($i < {loops}) {{
        if ($off + {chunk} > $cap) {{ break; }}
        {put(str(chunk))}
        $off += {chunk}; $i++;
      }}
      if ($off < $cap) {{ {put("$cap - $off")} }}
    }}
  }}
}}"""

    return "\n".join([
        'BEGIN { printf("READY\\n"); }',
        f"{probes('uprobe', 'SSL_write', 'SSL_read')} {{ @a[tid] = (arg0, arg1, (uint64)0); {gate} }}",
        f"{probes('uprobe', 'SSL_write_ex', 'SSL_read_ex')} {{ @a[tid] = (arg0, arg1, arg3); {gate} }}",
        f"{probes('uretprobe', 'SSL_write', 'SSL_write_ex')} {ret(0, '@wp', '@rp')}",
        f"{probes('uretprobe', 'SSL_read', 'SSL_read_ex')} {ret(1, '@rp', '@wp')}",
        f"{probes('uprobe', 'SSL_ctrl')} /arg1 == 55 && arg3 != 0/ {{ $s = str(arg3, {chunk}); "
        f'printf("S %llu %d %llx %r %r\\n", nsecs, pid, arg0, buf(curtask->comm, 16), '
        f"buf($s, {chunk})); }}",
        f'{probes("uprobe", "SSL_free")} {{ delete(@c[pid, arg0]); delete(@wp[pid, arg0]); '
        f'delete(@rp[pid, arg0]); delete(@ign[pid, arg0]); '
        f'printf("F %llu %d %llx\\n", nsecs, pid, arg0); }}',
        # The writers fill map @d<@flip>. A tick flips them to the other map once that one is
        # empty (its @s flag, set when its print was asked for, is cleared by bpftrace right
        # after it emptied the map: userspace runs print() and clear() later, in order); the next
        # tick prints and empties the map left (no writer can still be in it), then "T time":
        # every chunk written before that time has been printed. A slow reader delays the flips
        # (the map in use grows, up to MAP_KEYS), never loses what was written.
        f"interval:ms:{FLUSH_MS // 2} {{ $p = @pend; "
        'if ($p == 1) { @s0 = 1; print(@d0); clear(@d0); clear(@s0); printf("T %llu\\n", @wt); '
        "@pend = 0; } "
        'if ($p == 2) { @s1 = 1; print(@d1); clear(@d1); clear(@s1); printf("T %llu\\n", @wt); '
        "@pend = 0; } "
        "if ($p == 0) { $f = @flip; "
        "if ($f == 0 && @s1 == 0) { @wt = nsecs; @flip = 1; @pend = 1; } "
        "if ($f == 1 && @s0 == 0) { @wt = nsecs; @flip = 0; @pend = 2; } "
        # a print asked for but never done (its event lost): the map is reused after a while
        f"if (@pend == 0) {{ @stuck = @stuck + 1; if (@stuck > {STUCK_TICKS}) {{ "
        "@s0 = 0; @s1 = 0; @stuck = 0; } } else { @stuck = 0; } } }",
        "END { print(@d0); print(@d1); clear(@d0); clear(@d1); clear(@a); clear(@c); clear(@wp); "
        "clear(@rp); clear(@ign); clear(@flip); clear(@pend); clear(@s0); clear(@s1); clear(@wt); "
        'clear(@stuck); printf("T %llu\\n", nsecs); }',
        "",
    ])


def unescape(text: bytes, expected: int = -1) -> bytes | None:
    """The bytes a ``%r`` (or a map's buffer) printed. When ``expected`` (the chunk's length) is
    known, a literal backslash followed by x and two hex digits is told apart from an escape by
    the length: each one taken for an escape makes the result 3 bytes short. Residual ambiguity:
    which of several such sequences were literal cannot be known; the first ones are taken as
    literal. None when the length cannot be reconciled (a damaged line)."""
    if b"\\" not in text:
        return text if expected < 0 or len(text) == expected else None
    parts = _ESCAPE.split(text)
    escapes = len(parts) // 2
    if expected >= 0:
        deficit = expected - (len(text) - 3 * escapes)
        if deficit < 0 or deficit % 3 or deficit // 3 > escapes:
            return None
        literal = deficit // 3
    else:
        literal = 0
    for i in range(1, len(parts), 2):
        if literal:
            parts[i] = b"\\x" + parts[i]
            literal -= 1
        else:
            parts[i] = _HEX[parts[i]]
    return b"".join(parts)


def _text(raw: bytes) -> str:
    data = unescape(raw) or b""
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


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
    """A tracked connection: its HTTP parser and the state of the calls being assembled."""

    __slots__ = ("calls", "ends", "http")

    def __init__(self, http: HttpConnection) -> None:
        self.http = http
        # per direction (0: written, 1: read): the call being assembled from its chunks,
        # [time, position, total, bytes taken, next offset], and where the next call begins
        self.calls: list[list[int] | None] = [None, None]
        self.ends = [0, 0]


class Tracer:
    """bpftrace running the uprobes, and the exchanges rebuilt from its output."""

    def __init__(self, capture_bytes: int = 16384, libssl: Sequence[str] | None = None,
                 bpftrace: str = "bpftrace", *,
                 request_timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.capture_bytes = max(1, capture_bytes)
        self.call_bytes = min(self.capture_bytes, MAX_CALL_BYTES)
        self.request_timeout = request_timeout
        self._libssl = list(libssl) if libssl is not None else None
        self._bpftrace = bpftrace
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._out: deque[Exchange] = deque()
        self._stats = dict.fromkeys(STATS, 0)
        self._starts = 0
        self._ready = threading.Event()  # set when the probes are attached, or bpftrace ended
        self._attached = False            # bpftrace printed READY (its probes are attached)
        self._stderr = bytearray()
        # the reader thread's own state
        self._conns: OrderedDict[tuple[int, int], _Conn] = OrderedDict()
        self._pids: OrderedDict[int, tuple[float, str, str, str]] = OrderedDict()
        self._heap: list[_Event] = []
        self._seq = 0
        self._wall = 0.0                  # time.time() - time.monotonic()
        self._released = 0                # the time of the last event processed (ns, monotonic)
        self._watermark = 0               # the chunks written before this were all printed

    # -- control ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """bpftrace is running its probes (False before start(), after stop() or its death)."""
        proc = self._proc
        return proc is not None and self._attached and proc.poll() is None

    @property
    def pid(self) -> int | None:
        """bpftrace's process id while it runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        """Start bpftrace and wait until its probes are attached; TracerUnavailable if it cannot
        run or fails (the message is its first error line). A no-op while running."""
        if self.running:
            return
        self._reap()
        reason = unavailable_reason(self._bpftrace, self._libssl)
        if reason is not None:
            raise TracerUnavailable(reason)
        libs = find_libssl(self._libssl)
        exe = shutil.which(self._bpftrace) or self._bpftrace
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C",
               "BPFTRACE_STRLEN": str(CHUNK), "BPFTRACE_MAP_KEYS_MAX": str(MAP_KEYS)}
        self._ready.clear()
        self._attached = False
        self._stderr.clear()
        self._heap.clear()
        self._watermark = 0
        self._wall = time.time() - time.monotonic()
        proc = subprocess.Popen([exe, "--no-warnings", "-e", program(libs, self.capture_bytes)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, start_new_session=True,
                                close_fds=True)
        self._proc = proc
        if proc.stdout is not None:
            with contextlib.suppress(OSError):
                fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        if self._starts:
            self._stats["restarts"] += 1
        self._starts += 1
        self._thread = threading.Thread(target=self._run, args=(proc,), daemon=True,
                                        name="llm_traffic-bpftrace")
        self._thread.start()
        self._ready.wait(START_TIMEOUT_S)
        if self._attached and proc.poll() is None:
            return
        ended = self._ready.is_set()        # its output ended before READY (or right after)
        self.stop()
        if ended:
            raise TracerUnavailable(self._error_line() or
                                    f"bpftrace exited with status {proc.returncode}")
        raise TracerUnavailable(f"bpftrace did not attach its probes within "
                                f"{START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        """Stop bpftrace (SIGTERM to its pid, SIGKILL after STOP_GRACE_S) and the reader."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGKILL)
                proc.wait(STOP_GRACE_S)
        self._reap()

    def _reap(self) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(10)
            if not thread.is_alive():
                self._thread = None

    # -- output -----------------------------------------------------------------------------
    def drain(self) -> list[Exchange]:
        """The exchanges completed since the last drain (also after bpftrace died)."""
        with self._lock:
            out = list(self._out)
            self._out.clear()
        return out

    def stats(self) -> dict[str, int]:
        """Counters since this Tracer was made; ``connections`` is the number tracked now."""
        with self._lock:
            stats = dict(self._stats)
        stats["connections"] = len(self._conns)
        return stats

    def _error_line(self) -> str:
        lines = [ln.strip() for ln in self._stderr.decode("utf-8", "replace").splitlines()]
        lines = [ln for ln in lines if ln and "RLIMIT_MEMLOCK" not in ln]
        errors = [ln for ln in lines if "error" in ln.lower()]
        line = (errors or lines or [""])[0]
        return f"bpftrace: {line}"[:300] if line else ""

    # -- the reader thread ------------------------------------------------------------------
    def _run(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None and proc.stderr is not None  # noqa: S101 - made with PIPE
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, "out")
        sel.register(proc.stderr, selectors.EVENT_READ, "err")
        rest = b""
        open_pipes = 2
        next_house = time.monotonic() + 1.0
        houses = 0
        try:
            while open_pipes:
                for key, _ in sel.select(timeout=0.1):
                    data = os.read(key.fd, 1 << 20)
                    if not data:
                        sel.unregister(key.fileobj)
                        open_pipes -= 1
                    elif key.data == "err":
                        if len(self._stderr) < STDERR_KEEP:
                            self._stderr += data[:STDERR_KEEP - len(self._stderr)]
                    else:
                        lines = (rest + data).split(b"\n")
                        rest = lines.pop()
                        if len(rest) > MAX_LINE:        # not bpftrace's: drop it
                            self._stats["unparsed"] += 1
                            rest = b""
                        self._lines(lines)
                self._release(min(time.monotonic_ns() - int(REORDER_S * 1e9),
                                  self._watermark))
                now = time.monotonic()
                if now >= next_house:
                    next_house = now + 1.0
                    houses += 1
                    self._housekeeping(sweep=houses % 10 == 0)
            self._release(None)
            for conn_key in list(self._conns):
                self._close(conn_key, time.time())
        except Exception:  # a bug here must stop the capture visibly (logged), never the agent
            log.exception("llm_traffic: the capture's reader failed; stopping bpftrace")
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
        finally:
            sel.close()
            self._ready.set()           # start() waits no longer
            with contextlib.suppress(OSError):
                proc.stdout.close()
                proc.stderr.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_GRACE_S)

    def _lines(self, lines: list[bytes]) -> None:
        stats = self._stats
        push = self._push
        for line in lines:
            head = line[:4]
            try:
                if head in (b"@d0[", b"@d1["):
                    # a chunk: @dN[pid, SSL*, direction, position, offset, time, total]: data
                    end = line.index(b"]: ")
                    pid, ssl, side, pos, off, ts, total = map(int, line[4:end].split(b", "))
                    push((ts, off, 0, b"R" if side else b"W", pid, ssl, pos, total,
                          line[end + 3:]))
                elif head[:2] in (b"C ", b"F ", b"I "):
                    parts = line.split(b" ", 4)
                    push((int(parts[1]), 0, 0, head[:1], int(parts[2]), int(parts[3], 16), 0, 0,
                          parts[4] if len(parts) > 4 else b""))
                elif head[:2] == b"S ":
                    fields = line.split(b" ", 5)
                    push((int(fields[1]), 0, 0, b"S", int(fields[2]), int(fields[3], 16), 0, 0,
                          fields[4] + b" " + fields[5]))
                elif head[:2] == b"T ":
                    # the chunks written before this time have all been printed
                    self._watermark = max(self._watermark, int(line[2:]))
                    continue
                elif line == b"READY":
                    self._attached = True
                    self._ready.set()
                elif (m := _LOST.match(line)) is not None:
                    # the connections that lost bytes see a gap in their stream positions
                    stats["lost_events"] += int(m.group(1))
                elif line and not _ATTACHING.match(line):
                    stats["unparsed"] += 1
                    continue
                else:
                    continue
                stats["events"] += 1
            except (ValueError, IndexError):
                stats["unparsed"] += 1

    def _push(self, event: _Event) -> None:
        self._pid_info(event[4])     # read /proc/PID now: a short-lived process may soon be gone
        self._seq += 1
        event = (event[0], event[1], self._seq, *event[3:])
        heapq.heappush(self._heap, event)
        if event[0] < self._released:
            self._stats["late_events"] += 1     # later events were processed already
        if len(self._heap) > MAX_HELD:
            self._release(self._heap[0][0])     # memory first: the oldest goes now

    def _release(self, until: int | None) -> None:
        """Process the events older than ``until`` (all when None), in time order."""
        heap = self._heap
        out: list[Exchange] = []
        while heap and (until is None or heap[0][0] <= until):
            ts, off, _, kind, pid, ssl, pos, total, data = heapq.heappop(heap)
            self._released = max(self._released, ts)
            key = (pid, ssl)
            try:
                self._event(out, key, kind, ts, pos, total, off, data)
            except Exception:  # a parser bug costs its connection, never the capture (logged)
                self._stats["parser_errors"] += 1
                if self._stats["parser_errors"] == 1:
                    log.exception("llm_traffic: a connection's bytes broke the parser; "
                                  "it is dropped")
                self._conns.pop(key, None)
        self._emit(out)

    def _event(self, out: list[Exchange], key: tuple[int, int], kind: bytes, ts: int, pos: int,
               total: int, off: int, data: bytes) -> None:
        if kind == b"F":
            if key in self._conns:
                self._close(key, ts / 1e9 + self._wall)
            return
        conn = self._conn(key)
        if kind in (b"W", b"R"):
            conn = self._data(conn, key, kind == b"W", ts, pos, total, off, data)
        elif kind == b"C":
            conn.http.meta.comm = _text(data)
        elif kind == b"I":          # bpftrace ignores it from now on: a server, or not HTTP
            conn.http.ignore(SERVER if data == b"2" else OTHER)
        else:                       # S: the comm and the server name
            comm, _, sni = data.partition(b" ")
            conn.http.meta.comm = _text(comm)
            conn.http.meta.sni = _text(sni)
        if conn.http.role == CLIENT:
            out.extend(conn.http.take())

    def _data(self, conn: _Conn, key: tuple[int, int], wrote: bool, ts: int, pos: int,
              total: int, off: int, text: bytes) -> _Conn:
        """One chunk of an SSL_write (``wrote``) or SSL_read call: the call moved ``total``
        bytes from stream position ``pos``; this chunk holds those from ``off``."""
        side = 0 if wrote else 1
        call = conn.calls[side]
        if call is None or call[0] != ts or call[1] != pos:
            if call is not None:                # the rest of the previous call never came
                self._feed(conn, wrote, b"", call[2] - call[4], call[0])
            end = conn.ends[side]
            if pos < end:
                if pos == 0 and off == 0:
                    # SSL_free was not seen and the SSL pointer is used again: a new connection
                    self._close(key, ts / 1e9 + self._wall)
                    conn = self._conn(key)
                else:                           # out of order beyond REORDER_S: cannot be placed
                    self._stats["late_events"] += 1
                    self._lose(conn)
                    return conn
            elif pos > end:                     # whole calls were lost (a full map)
                self._feed(conn, wrote, b"", pos - end, ts)
            call = [ts, pos, total, min(total, self.call_bytes), 0]
            conn.calls[side] = call
            conn.ends[side] = pos + total
        data = unescape(text, min(CHUNK, call[3] - off))
        if data is None:
            self._stats["unparsed"] += 1
            return conn                         # shows as a gap when the next chunk comes
        if off < call[4]:
            return conn                         # a chunk seen twice
        self._stats["bytes_captured"] += len(data)
        if off > call[4]:                       # a chunk lost
            self._feed(conn, wrote, b"", off - call[4], ts)
        call[4] = off + len(data)
        missing = 0
        if call[4] >= call[3]:
            missing = call[2] - call[4]
            conn.calls[side] = None
        self._feed(conn, wrote, data, missing, ts, boundary=off == 0)
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
        for wrote, call in ((True, conn.calls[0]), (False, conn.calls[1])):
            if call is not None:
                self._feed(conn, wrote, b"", call[2] - call[4], call[0])
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
