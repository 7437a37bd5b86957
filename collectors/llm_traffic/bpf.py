"""llm_traffic's eBPF part: capture.bpf.o loaded by libbpf in the agent's own process (issue 19).

Why libbpf through ctypes, and not bpftrace or bcc (measured on this project's 2-core VM):
- A uprobe hit whose first instruction the kernel must single-step costs ~9 µs there, one whose
  first instruction it emulates (a push, a call) ~0 µs beyond the trap. OpenSSL 3.0's exported
  SSL_write_ex / SSL_read_ex begin with ``sub rsp`` (stepped); the internal ssl_write_internal /
  ssl_read_internal they call begin with pushes (emulated). Those are not exported: they are
  found from the ``call`` in SSL_write_ex's first instructions (libssl.py), and attached by file
  offset, which bpftrace 0.17 refuses ("compiled without uprobe offset support").
- bpftrace has no ring buffer output: its payload went through maps flipped by a timer that woke
  it ten times a second even with no traffic. The BPF ring buffer wakes the reader only when it
  had caught up, so an idle machine costs nothing and a busy one a few wake-ups a second.
- bcc compiles at run time against kernel headers, which this class of machine does not have;
  libbpf loads an object compiled once by clang (``make bpf``) and needs only libbpf.so.1.
- In the agent's process, the probes are file descriptors: they go with the process however it
  ends (a bpftrace child outlived a SIGKILLed agent).

Privileges: libbpf creates each uprobe as a perf event of the kernel's uprobe PMU, which this
project's kernels (6.18) allow only with CAP_SYS_ADMIN. Without it, the uprobe is defined by a
line in tracefs' uprobe_events (which uid 0 may write without CAP_DAC_OVERRIDE) and opened as a
tracepoint perf event, which CAP_PERFMON allows: the way bcc falls back, so an agent run as uid 0
bounded to CAP_BPF and CAP_PERFMON (deploy/llm-traffic.conf) needs no CAP_SYS_ADMIN. Those
events are named llm_traffic/p<agent pid>_<n>, removed at close, and the ones a killed agent
left are removed at the next start (an event nobody opens costs nothing).
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import threading
from pathlib import Path

# re-exported: the capture's callers (trace.py, check, the bench) find them here
from collectors.llm_traffic.libssl import OTHER as OTHER
from collectors.llm_traffic.libssl import READ_WRITE as READ_WRITE
from collectors.llm_traffic.libssl import BpfUnavailable as BpfUnavailable
from collectors.llm_traffic.libssl import Probe as Probe
from collectors.llm_traffic.libssl import internal_callee as internal_callee
from collectors.llm_traffic.libssl import plan as plan

OBJECT = Path(__file__).with_name("capture.bpf.o")
LIBBPF = "libbpf.so.1"
TRACEFS = "/sys/kernel/tracing"
EVENT_GROUP = "llm_traffic"
PERF_TYPE_TRACEPOINT = 2
PERF_FLAG_FD_CLOEXEC = 8
NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}
PROG_INFO_BYTES = 256         # struct bpf_prog_info, as far as its run_time_ns and run_cnt
PROG_INFO_RUN_TIME = 192      # offsetof(struct bpf_prog_info, run_time_ns); run_cnt follows

# struct record in capture.bpf.c: time, ssl, pos, total, pid, len, kind, dir, skip, comm
HEADER = struct.Struct("<QQQQIIBBB5x16s")
K_DATA, K_SNI, K_FREE, K_IGNORE = 1, 2, 3, 4
MAX_CALL = 16384
RING_BYTES = 8 << 20

# ---------------------------------------------------------------------------------------------
# libbpf

_SAMPLE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_PRINT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_lib: ctypes.CDLL | None = None
_LIBC = ctypes.CDLL(None, use_errno=True)   # this process's C library (vsnprintf, syscall)
_messages: list[str] = []          # libbpf's last warnings, for error messages
_printer = None


def libbpf() -> ctypes.CDLL:
    """libbpf.so.1 with the signatures used here; BpfUnavailable when it is not installed."""
    global _lib, _printer
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL(LIBBPF, use_errno=True)
    except OSError as err:
        raise BpfUnavailable(f"libbpf is not installed ({LIBBPF}: {err}): apt install libbpf1"
                             ) from err
    vp, cp, i, u32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32
    for name, res, args in (
            ("bpf_object__open_file", vp, [cp, vp]), ("bpf_object__load", i, [vp]),
            ("bpf_object__close", None, [vp]), ("bpf_object__find_map_by_name", vp, [vp, cp]),
            ("bpf_object__find_program_by_name", vp, [vp, cp]),
            ("bpf_map__set_max_entries", i, [vp, u32]), ("bpf_map__fd", i, [vp]),
            ("bpf_program__attach_uprobe", vp, [vp, ctypes.c_bool, i, cp, ctypes.c_size_t]),
            ("bpf_link__destroy", i, [vp]), ("bpf_map_update_elem", i, [i, vp, vp, ctypes.c_uint64]),
            ("bpf_map_lookup_elem", i, [i, vp, vp]),
            ("ring_buffer__new", vp, [i, _SAMPLE, vp, vp]), ("ring_buffer__consume", i, [vp]),
            ("ring_buffer__free", None, [vp]), ("libbpf_set_print", vp, [_PRINT]),
            ("bpf_program__attach_perf_event", vp, [vp, i]),
            ("bpf_map__set_initial_value", i, [vp, vp, ctypes.c_size_t]),
            ("bpf_program__fd", i, [vp]),
            ("bpf_obj_get_info_by_fd", i, [i, vp, ctypes.POINTER(ctypes.c_uint32)]),
            ("bpf_map__initial_value", vp, [vp, ctypes.POINTER(ctypes.c_size_t)])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    _printer = _PRINT(_keep_message)
    lib.libbpf_set_print(_printer)
    _lib = lib
    return lib


def _keep_message(level: int, fmt: bytes | None, args: int | None) -> int:
    """libbpf's print callback: warnings and errors are kept (formatted on x86-64, where a
    va_list passes as a pointer), debug lines dropped."""
    if level > 1 or fmt is None:       # LIBBPF_WARN = 0, LIBBPF_INFO = 1, LIBBPF_DEBUG = 2
        return 0
    text = fmt.decode("utf-8", "replace")
    if platform.machine() == "x86_64" and args:
        buf = ctypes.create_string_buffer(1 << 16)    # a verifier log can be long
        _LIBC.vsnprintf(buf, 1 << 16, fmt, ctypes.c_void_p(args))
        text = buf.value.decode("utf-8", "replace")
    _messages.append(text.strip())
    del _messages[:-8]
    return 0


def _errno_sentence(err: int, loading: bool = False) -> str:
    if loading and err == errno.EACCES:      # the verifier's refusal, not a missing privilege
        return "the kernel's verifier refused them (EACCES)"
    if err in (errno.EPERM, errno.EACCES):
        return ("the kernel refused (EPERM): the agent lacks CAP_BPF and CAP_PERFMON (or "
                "CAP_SYS_ADMIN)")
    return os.strerror(err) if err else "unknown error"


class Capture:
    """capture.bpf.o loaded and attached; records come out of ``consume()`` as bytes."""

    def __init__(self, probes: list[Probe], call_bytes: int, ring_bytes: int = RING_BYTES,
                 obj_path: Path = OBJECT) -> None:
        self._lib = lib = libbpf()
        self._links: list[int] = []
        self._records: list[bytes] = []
        self._obj: int | None = None
        self._ring: int | None = None
        self._events: list[str] = []       # uprobe events this capture defined in tracefs
        self._closing = threading.Lock()   # close() against program_stats() from another thread
        if not obj_path.is_file():
            raise BpfUnavailable(f"the eBPF object {obj_path.name} is not built: install clang "
                                 f"and libbpf-dev, then reinstall the agent (in a checkout: "
                                 f"make bpf)")
        _messages.clear()
        obj = lib.bpf_object__open_file(str(obj_path).encode(), None)
        if not obj:
            raise BpfUnavailable(f"libbpf could not open {obj_path.name}: "
                                 f"{_errno_sentence(ctypes.get_errno())}")
        self._obj = obj
        try:
            events = lib.bpf_object__find_map_by_name(obj, b"events")
            lib.bpf_map__set_max_entries(events, ring_bytes)
            # the program's one constant (.rodata: call_bytes), before the load
            rodata = lib.bpf_object__find_map_by_name(obj, b".rodata")
            size = ctypes.c_size_t(0)
            if not rodata or not lib.bpf_map__initial_value(rodata, ctypes.byref(size)) or \
                    size.value != 8:
                raise BpfUnavailable(f"{obj_path.name} is not the object this agent expects "
                                     f"(its .rodata): rebuild it with make bpf")
            value = ctypes.c_uint64(max(1, min(call_bytes, MAX_CALL)))
            lib.bpf_map__set_initial_value(rodata, ctypes.byref(value), 8)
            err = lib.bpf_object__load(obj)
            if err:
                raise BpfUnavailable(f"the eBPF programs could not be loaded: "
                                     f"{_errno_sentence(-err, loading=True)}{self._detail()}")
            self._bss = lib.bpf_map__fd(lib.bpf_object__find_map_by_name(obj, b".bss"))
            for probe in probes:
                prog = lib.bpf_object__find_program_by_name(obj, probe.program.encode())
                link = lib.bpf_program__attach_uprobe(prog, probe.retprobe, -1,
                                                      probe.path.encode(), probe.offset)
                if not link and ctypes.get_errno() in (errno.EACCES, errno.EPERM):
                    link = self._attach_tracefs(prog, probe)
                if not link:
                    raise BpfUnavailable(
                        f"the uprobe on {probe.symbol} in {probe.path} could not be attached: "
                        f"{_errno_sentence(ctypes.get_errno())}{self._detail()}")
                self._links.append(link)
            self._callback = _SAMPLE(self._sample)
            self.ring_fd = lib.bpf_map__fd(events)
            ring = lib.ring_buffer__new(self.ring_fd, self._callback, None, None)
            if not ring:
                raise BpfUnavailable(f"the ring buffer could not be mapped: "
                                     f"{_errno_sentence(ctypes.get_errno())}")
            self._ring = ring
        except BaseException:
            self.close()
            raise

    def _attach_tracefs(self, prog: int, probe: Probe) -> int | None:
        """The uprobe defined in tracefs and opened as a tracepoint perf event (module
        docstring); None with errno set when that is refused too."""
        if not self._events:
            remove_stale_events()
        name = f"p{os.getpid()}_{len(self._events)}"
        try:
            _define(f"{'r' if probe.retprobe else 'p'}:{EVENT_GROUP}/{name} "
                    f"{probe.path}:{probe.offset:#x}")
            self._events.append(name)
            with open(f"{TRACEFS}/events/{EVENT_GROUP}/{name}/id", encoding="ascii") as fh:
                event_id = int(fh.read())
        except (OSError, ValueError) as err:
            ctypes.set_errno(getattr(err, "errno", None) or errno.EACCES)
            _messages.append(f"tracefs: {err}")
            return None
        attr = ctypes.create_string_buffer(128)          # struct perf_event_attr (VER7 size)
        struct.pack_into("<IIQQ", attr, 0, PERF_TYPE_TRACEPOINT, 128, event_id, 1)
        number = NR_PERF_EVENT_OPEN.get(platform.machine())
        if number is None:
            ctypes.set_errno(errno.ENOSYS)
            return None
        pfd = _LIBC.syscall(number, attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
        if pfd < 0:
            return None
        link = self._lib.bpf_program__attach_perf_event(prog, pfd)   # the link owns pfd
        if not link:
            refused = ctypes.get_errno()
            os.close(pfd)
            ctypes.set_errno(refused)
        return link or None

    @staticmethod
    def _detail() -> str:
        lines = [m for m in _messages if m]
        return f" (libbpf: {lines[-1][:200]})" if lines else ""

    def _sample(self, _ctx: int | None, data: int, size: int) -> int:
        self._records.append(ctypes.string_at(data, size))
        return 0

    def consume(self) -> list[bytes]:
        """The records written since the last call, in the ring's order."""
        if self._ring is not None:
            self._lib.ring_buffer__consume(self._ring)
        out, self._records = self._records, []
        return out

    def lost(self) -> int:
        """Records the kernel could not write (a full ring) since the load (.bss: lost_records)."""
        key, value = ctypes.c_uint32(0), ctypes.c_uint64(0)
        if self._obj is None:
            return 0
        self._lib.bpf_map_lookup_elem(self._bss, ctypes.byref(key), ctypes.byref(value))
        return int(value.value)

    def program_stats(self) -> dict[str, tuple[int, int]]:
        """Per program: (runs, nanoseconds run), counted while kernel.bpf_stats_enabled is 1
        (the bench turns it on); zeros otherwise."""
        out: dict[str, tuple[int, int]] = {}
        with self._closing:
            if self._obj is not None:
                self._read_stats(out)
        return out

    def _read_stats(self, out: dict[str, tuple[int, int]]) -> None:
        for name in ("enter_ex", "enter_plain", "leave_write", "leave_read", "sni", "on_free",
                     "nop"):
            prog = self._lib.bpf_object__find_program_by_name(self._obj, name.encode())
            info = ctypes.create_string_buffer(PROG_INFO_BYTES)
            size = ctypes.c_uint32(PROG_INFO_BYTES)
            if prog and self._lib.bpf_obj_get_info_by_fd(self._lib.bpf_program__fd(prog), info,
                                                         ctypes.byref(size)) == 0:
                run_ns, runs = struct.unpack_from("<QQ", info.raw, PROG_INFO_RUN_TIME)
                out[name] = (runs, run_ns)

    def close(self) -> None:
        """Detach every probe and free the ring and the programs (idempotent)."""
        with self._closing:
            self._close()

    def _close(self) -> None:
        lib = self._lib
        if self._ring is not None:
            lib.ring_buffer__free(self._ring)
            self._ring = None
        for link in self._links:
            lib.bpf_link__destroy(link)
        self._links.clear()
        if self._obj is not None:
            lib.bpf_object__close(self._obj)
            self._obj = None
        for name in self._events:
            _remove_event(name)
        self._events.clear()


def _define(line: str) -> None:
    """One line appended to tracefs' uprobe_events (a plain write: tracefs refuses the seek
    that Python's append mode makes)."""
    fd = os.open(f"{TRACEFS}/uprobe_events", os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line.encode("ascii", "strict") + b"\n")
    finally:
        os.close(fd)


def _remove_event(name: str) -> None:
    try:
        _define(f"-:{EVENT_GROUP}/{name}")
    except OSError as err:
        _messages.append(f"tracefs: {name} not removed: {err}")


def remove_stale_events() -> int:
    """Remove the uprobe events that agents no longer running defined (killed before their
    close); how many."""
    try:
        with open(f"{TRACEFS}/uprobe_events", encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return 0
    removed = 0
    for line in lines:
        head = line.split(" ", 1)[0]                   # p:llm_traffic/p123_4
        group, _, name = head[2:].partition("/")
        if group != EVENT_GROUP or not name.startswith("p") or "_" not in name:
            continue
        pid = name[1:].split("_", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            _remove_event(name)
            removed += 1
    return removed
