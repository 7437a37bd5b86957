"""Local LLM runtimes: which run (by several signals and a score), where they connect, whether the
Ollama this agent judges with is healthy, and whether a model server answers the network without
authentication.

Cost: one cheap pass over the process table (name, command line, memory); only candidates (a name or
command-line hit, a model file named on the command line, a large resident set, or a runtime seen
last cycle) get their memory maps and open files read. Scoring: docs/llm-runtimes.md. Exposure:
a runtime's listening sockets on a non-loopback address, and any listener on a well-known model
server port, are probed once a cycle from this machine (collectors.llm_exposure).
"""
from __future__ import annotations

import functools
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psutil

from collectors import llm_exposure, netclass, ollama_health, proctable
from foundation.bounded import spawn
from foundation.context import CollectContext
from foundation.model import CollectResult, Sample
from foundation.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeDecl:
    """One known runtime: patterns on the process name (comm or argv[0]) and on the command line."""

    label: str
    name: str | None = None
    cmdline: str | None = None


RUNTIMES: tuple[RuntimeDecl, ...] = (
    RuntimeDecl("ollama", r"^ollama(_llama_server)?$",
                r"\bollama(_llama_server)?\b\s+(serve|runner)"),
    RuntimeDecl("llama.cpp", r"^llama-(server|cli|run|simple|bench)$|^llama\.cpp$",
                r"llama[-_.]cpp|/llama-server\b"),
    RuntimeDecl("llama-cpp-python", None, r"\bllama_cpp\.server\b"),
    RuntimeDecl("llamafile", r"\.llamafile$|^llamafile$", r"\.llamafile\b"),
    RuntimeDecl("vLLM", r"^vllm$", r"\bvllm(\.entrypoints)?\b"),
    RuntimeDecl("SGLang", None, r"\bsglang\.launch_server\b"),
    RuntimeDecl("text-generation-inference", r"^text-generation-(launcher|router|server)$",
                r"text-generation-(launcher|router|server)"),
    RuntimeDecl("LM Studio", r"(?i)^(lm ?studio|lms)$", r"(?i)lm[ -]?studio|/\.lmstudio/"),
    RuntimeDecl("koboldcpp", r"(?i)^koboldcpp", r"(?i)koboldcpp"),
    RuntimeDecl("text-generation-webui", None, r"(?i)text-generation-webui|oobabooga"),
    RuntimeDecl("LocalAI", r"^local-ai$", r"(?i)\blocal-ai\b"),
    RuntimeDecl("GPT4All", r"(?i)^gpt4all", r"(?i)gpt4all"),
    RuntimeDecl("Jan", r"^cortex(-server)?$", r"(?i)cortex\.llamacpp|/jan/"),
    RuntimeDecl("MLC LLM", None, r"\bmlc_llm\b"),
    RuntimeDecl("TabbyAPI / ExLlama", None, r"(?i)tabbyapi|exllamav2"),
    RuntimeDecl("Aphrodite", None, r"\baphrodite\b"),
    RuntimeDecl("NVIDIA Triton", r"^tritonserver$", r"\btritonserver\b"),
    RuntimeDecl("whisper.cpp", r"^whisper-(server|cli)$", r"whisper[-.]cpp"),
)
_RUNTIMES = tuple((d, re.compile(d.name) if d.name else None,
                   re.compile(d.cmdline) if d.cmdline else None) for d in RUNTIMES)


def _any_of(patterns: list[str]) -> re.Pattern[str]:
    """One pattern that matches where any of ``patterns`` does (a leading "(?i)" kept scoped)."""
    return re.compile("|".join(f"(?i:{p[4:]})" if p.startswith("(?i)") else f"(?:{p})"
                               for p in patterns))


# every process is checked each cycle: one search finds whether any runtime's pattern can match
# (most processes: none), and only then are the rows tried one by one, in order
_ANY_NAME = _any_of([d.name for d in RUNTIMES if d.name])
_ANY_CMDLINE = _any_of([d.cmdline for d in RUNTIMES if d.cmdline])

# Model files: weight extensions anywhere, or any file in a model store (Ollama's blobs have no
# extension). `.bin`/`.pt` alone are too common to count outside a model folder.
MODEL_FILE = re.compile(
    r"\.(gguf|ggml|ggjt|safetensors|llamafile)$"
    r"|/models?/.*\.(bin|pt|pth|onnx|engine|plan)$"
    r"|/\.ollama/models/blobs/|/ollama/models/blobs/|/huggingface/hub/models--", re.IGNORECASE)
MODEL_ARG = re.compile(r"\S+\.(gguf|ggml|safetensors|llamafile)\b", re.IGNORECASE)

# (family, pattern on a mapped library's path, weight): inference libraries weigh more than
# general GPU/ML ones, which also serve games, video and notebooks.
LIBRARIES: tuple[tuple[str, str, int], ...] = (
    ("ggml", r"/libggml[^/]*\.so", 2),
    ("llama", r"/libllama[^/]*\.so", 2),
    ("ctranslate2", r"/libctranslate2[^/]*\.so", 2),
    ("cuda", r"/lib(cudart|cublas|cublasLt|cudnn)[^/]*\.so", 1),
    ("torch", r"/libtorch(_cuda|_cpu)?[^/]*\.so", 1),
    ("rocm", r"/lib(amdhip64|hipblas|rocblas|rocm[^/]*)\.so", 1),
    ("onnxruntime", r"/libonnxruntime[^/]*\.so", 1),
    ("tensorrt", r"/libnvinfer[^/]*\.so", 1),
    ("openvino", r"/libopenvino[^/]*\.so", 1),
)
_LIBRARIES = tuple((family, re.compile(pattern), weight) for family, pattern, weight in LIBRARIES)

WEIGHTS = {"name": 3, "cmdline": 2, "model_arg": 1, "model_file": 3, "large_memory": 1}
LIBRARY_CAP = 2
THRESHOLD = 3
CANDIDATE_RSS_BYTES = 256 * 2**20   # above this a nameless process is looked at more closely
LARGE_RSS_BYTES = 1 * 2**30         # a supporting signal: a loaded model is big
SERVICE_UIDS = (1, 999)              # system accounts (Debian's SYS_UID_MIN..SYS_UID_MAX)
ACCESS_HINT = ("access denied: give the agent CAP_SYS_PTRACE (AmbientCapabilities= in its unit) "
               "or run the runtime under its own system account")
MAX_RUNTIMES = 20
MAX_CONNECTIONS = 50
MAX_LIST = 5
ATTRS = ["pid", "name", "cmdline", "memory_info", "create_time"]
PATTERN_CACHE = 1024                 # (name, command line) pairs whose pattern signals are kept
PATTERN_CACHE_CHARS = 2048           # longer command lines are searched every time (memory bound)


def timeout_s(settings: Settings) -> float:
    """Process walk, /proc reads, reverse DNS then its forward confirmation, the Ollama check,
    the exposure probes."""
    return (10.0 + 2 * settings.LLM_RDNS_TIMEOUT_SECONDS + 3 * ollama_health.TIMEOUT_S
            + llm_exposure.PROBE_BUDGET_S + 1.0)


@dataclass
class Candidate:
    """A process worth a closer look, and the signals found so far."""

    pid: int
    name: str
    cmdline: str
    rss: int
    create_time: float
    runtime: str | None = None
    signals: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> int:
        """The sum of the signals' weights (libraries capped)."""
        total = sum(w for key, w in WEIGHTS.items() if self.signals.get(key))
        libs = sum(weight for family, _, weight in _LIBRARIES
                   if family in self.signals.get("libraries", ()))
        return total + min(libs, LIBRARY_CAP)


def _pattern_signals(name: str, cmdline: str, argv0: str) -> tuple[tuple[str, str], ...]:
    """The signals the runtime patterns give a name and command line: ("name", label),
    ("cmdline", label), ("model_arg", text). Cached: a process table changes little from one
    cycle to the next, and these searches were most of the cheap pass."""
    if len(cmdline) > PATTERN_CACHE_CHARS:
        return _search_patterns(name, cmdline, argv0)
    return _cached_patterns(name, cmdline, argv0)


def _search_patterns(name: str, cmdline: str, argv0: str) -> tuple[tuple[str, str], ...]:
    """_pattern_signals, searched (not cached)."""
    signals: dict[str, str] = {}
    hit = (_ANY_NAME.search(name) or (argv0 and _ANY_NAME.search(argv0))
           or _ANY_CMDLINE.search(cmdline))
    for decl, by_name, by_cmd in _RUNTIMES if hit else ():
        if by_name is not None and "name" not in signals and (
                by_name.search(name) or (argv0 and by_name.search(argv0))):
            signals["name"] = decl.label
        if by_cmd is not None and "cmdline" not in signals and by_cmd.search(cmdline):
            signals["cmdline"] = decl.label
    arg = MODEL_ARG.search(cmdline)
    if arg:
        signals["model_arg"] = arg.group(0)[-200:]
    return tuple(signals.items())


_cached_patterns = functools.lru_cache(maxsize=PATTERN_CACHE)(_search_patterns)


def cheap_signals(pid: int, name: str, argv: list[str], rss: int, create_time: float) -> Candidate:
    """Signals from the process table alone: name, command line, a model file argument, memory."""
    argv0 = os.path.basename(argv[0]) if argv else ""
    cmdline = " ".join(argv)
    cand = Candidate(pid, name, cmdline[:300], rss, create_time)
    cand.signals.update(_pattern_signals(name, cmdline, argv0))
    cand.runtime = cand.signals.get("name") or cand.signals.get("cmdline")
    if rss >= LARGE_RSS_BYTES:
        cand.signals["large_memory"] = True
    cand.signals["rss_mb"] = round(rss / 2**20, 1)
    return cand


def is_candidate(cand: Candidate, candidate_rss: int, known: Mapping[str, float]) -> bool:
    """Worth reading maps and open files: a pattern hit, a model argument, big, or known before."""
    if any(k in cand.signals for k in ("name", "cmdline", "model_arg")):
        return True
    previous = known.get(str(cand.pid))
    return cand.rss >= candidate_rss or (isinstance(previous, (int, float))
                                         and abs(previous - cand.create_time) < 0.01)


def mapped_paths(pid: int) -> set[str]:
    """Files mapped into a process (/proc/PID/maps: much cheaper than psutil's smaps walk)."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as fh:
            data = fh.read()
    except FileNotFoundError as err:
        raise psutil.NoSuchProcess(pid) from err
    except PermissionError as err:
        raise psutil.AccessDenied(pid) from err
    paths = set()
    for line in data.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith(b"/"):
            paths.add(parts[5].decode("utf-8", "replace").removesuffix(" (deleted)"))
    return paths


def open_paths(pid: int) -> set[str]:
    """Regular files a process holds open."""
    return {f.path for f in psutil.Process(pid).open_files()}


def deep_signals(cand: Candidate, mapped: Callable[[int], set[str]],
                 opened: Callable[[int], set[str]]) -> None:
    """Add model-file and library signals from the process's mapped and open files."""
    paths: set[str] = set()
    errors = []
    for what, reader in (("memory maps", mapped), ("open files", opened)):
        try:
            paths |= reader(cand.pid)
        except psutil.AccessDenied:
            errors.append(f"{what}: access denied")
    if errors:
        cand.signals["errors"] = errors
    models = sorted(p for p in paths if MODEL_FILE.search(p))
    if models:
        cand.signals["model_file"] = True
        cand.signals["model_files"] = [p[-200:] for p in models[:MAX_LIST]]
    families = [family for family, pattern, _ in _LIBRARIES
                if any(pattern.search(p) for p in paths)]
    if families:
        cand.signals["libraries"] = families


def scan(procs: Iterable[Any] | None = None, candidate_rss: int = CANDIDATE_RSS_BYTES,
         known: Mapping[str, float] | None = None, own_pid: int | None = None,
         mapped: Callable[[int], set[str]] = mapped_paths,
         opened: Callable[[int], set[str]] = open_paths) -> tuple[list[Candidate], dict[str, int]]:
    """Runtimes found (score >= THRESHOLD) and counts of processes seen and looked at closely."""
    own_pid = os.getpid() if own_pid is None else own_pid
    known = known or {}
    seen = checked = 0
    found: list[Candidate] = []
    for proc in procs if procs is not None else psutil.process_iter(ATTRS):
        info = proc.info
        if info["pid"] == own_pid:
            continue
        seen += 1
        mem = info.get("memory_info")
        name, argv, rss = info.get("name") or "", info.get("cmdline") or [], mem.rss if mem else 0
        if (rss < candidate_rss and str(info["pid"]) not in known
                and not _pattern_signals(name, " ".join(argv),
                                         os.path.basename(argv[0]) if argv else "")):
            continue   # most processes: no pattern, small, not seen before (is_candidate's no)
        cand = cheap_signals(info["pid"], name, argv, rss, info.get("create_time") or 0.0)
        if not is_candidate(cand, candidate_rss, known):
            continue
        checked += 1
        try:
            deep_signals(cand, mapped, opened)
        except psutil.NoSuchProcess:
            continue
        if cand.score >= THRESHOLD:
            found.append(cand)
    found.sort(key=lambda c: (-c.score, c.pid))
    return found[:MAX_RUNTIMES], {"processes_seen": seen, "candidates_checked": checked}


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def is_service_uid(uid: int) -> bool:
    """A dedicated system account (such as `ollama`), whose sockets are all its runtime's."""
    return SERVICE_UIDS[0] <= uid <= SERVICE_UIDS[1]


def socket_records(pid: int) -> tuple[list[netclass.SocketRecord], str]:
    """A process's inet sockets and how they were attributed to it: "process" (psutil),
    "namespace" (its own network namespace's tables), or "user" (every socket of its service
    account: the unprivileged fallback when its file descriptors cannot be read)."""
    try:
        if not netclass.own_namespace(pid):
            return netclass.namespace_sockets(pid), "namespace"
        conns = psutil.Process(pid).net_connections(kind="inet")
    except FileNotFoundError as err:
        raise psutil.NoSuchProcess(pid) from err
    except (PermissionError, psutil.AccessDenied) as err:
        uid = psutil.Process(pid).uids().real
        if not is_service_uid(uid):
            raise psutil.AccessDenied(pid) from err
        return netclass.namespace_sockets(pid, uid=uid), "user"
    records = []
    for conn in conns:
        proto = "tcp" if conn.type == socket.SOCK_STREAM else "udp"
        lip, lport = (conn.laddr.ip, conn.laddr.port) if conn.laddr else ("", 0)
        rip, rport = (conn.raddr.ip, conn.raddr.port) if conn.raddr else ("", 0)
        records.append(netclass.SocketRecord(proto, lip, lport, rip, rport, conn.status))
    return records, "process"


def classify_sockets(records: Iterable[netclass.SocketRecord]
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(connections with a remote end, listening sockets), each with its address class."""
    records = list(records)
    served = {r.local_port for r in records if r.status == psutil.CONN_LISTEN}
    remote, listening = [], []
    for rec in records:
        if rec.remote_ip:
            ip = netclass.parse_ip(rec.remote_ip)
            remote.append({"local": _endpoint(rec.local_ip, rec.local_port),
                           "remote": _endpoint(rec.remote_ip, rec.remote_port),
                           "ip": ip.compressed if ip else rec.remote_ip, "port": rec.remote_port,
                           "proto": rec.proto, "status": rec.status,
                           "direction": "inbound" if rec.proto == "tcp"
                           and rec.local_port in served else "outbound",
                           "class": netclass.classify(rec.remote_ip)})
        elif rec.local_ip and (rec.status == psutil.CONN_LISTEN or rec.proto == "udp"):
            listening.append({"address": _endpoint(rec.local_ip, rec.local_port),
                              "ip": rec.local_ip, "port": rec.local_port,
                              "proto": rec.proto, "class": netclass.classify(rec.local_ip)})
    return remote, listening


def describe(cand: Candidate) -> dict[str, Any]:
    """The report entry of one runtime (connections added by the caller)."""
    return {"pid": cand.pid, "name": cand.name, "runtime": cand.runtime or f"unknown ({cand.name})",
            "score": cand.score, "signals": dict(cand.signals), "cmdline": cand.cmdline}


def annotate(runtimes: list[dict[str, Any]], allow: netclass.Allowlist,
             resolver: netclass.Resolver) -> None:
    """Add reverse names, provider labels and the allowing entry to external connections.

    A reverse name allows a peer only once forward-confirmed: the reverse lookups, then one round
    of forward lookups (the reverse names an entry matches, and the plain entries when a peer is
    not allowed by network), each round bounded by the resolver's timeout.
    """
    external = [c for r in runtimes for c in r.get("connections", ()) if c["class"] == "external"]
    if not external:
        return
    names = resolver.reverse_many(c["ip"] for c in external)
    wanted = allow.names_to_confirm(names.values())
    if any(not allow.allowed_by(c["ip"], None) for c in external):
        wanted += [n for n in allow.exact_names if n not in wanted]
    forward = resolver.forward_answers(wanted) if wanted else {}
    for conn in external:
        name = names.get(conn["ip"])
        conn["rdns"] = name[:253] if name else None
        conn["provider"] = netclass.provider(conn["ip"])
        conn["allowed_by"] = allow.allowed_by(conn["ip"], name, forward)
        conn["rdns_unconfirmed"] = allow.unconfirmed(conn["ip"], name, forward)


def _with_connections(cand: Candidate) -> dict[str, Any]:
    entry = describe(cand)
    try:
        records, attribution = socket_records(cand.pid)
    except psutil.AccessDenied:
        entry.update(connections=[], listening=[], connections_error=ACCESS_HINT)
        return entry
    except psutil.NoSuchProcess:
        entry.update(connections=[], listening=[], connections_error="process exited")
        return entry
    remote, listening = classify_sockets(records)
    entry["attribution"] = attribution
    entry["connections_total"] = len(remote)
    entry["connections"] = remote[:MAX_CONNECTIONS]
    entry["listening"] = listening[:MAX_CONNECTIONS]
    entry["exposed"] = any(s["class"] != "loopback" for s in listening)
    return entry


def collect(ctx: CollectContext) -> CollectResult:
    """Find runtimes and their connections, and check the agent's own Ollama, in parallel."""
    settings = ctx.settings
    health: dict[str, Any] = {}
    checked = threading.Event()

    def check() -> None:
        try:
            health.update(ollama_health.check(settings.OLLAMA_HOST, settings.OLLAMA_MODEL,
                                              loaded=False))
        finally:
            checked.set()

    spawn(check, "ollama-health")
    found, counts = scan(proctable.processes(ctx), known=dict(ctx.state.get("runtimes") or {}))
    runtimes = [_with_connections(c) for c in found]
    resolver = netclass.Resolver(ctx.state.get("dns"), ctx.now, settings.LLM_RDNS_TIMEOUT_SECONDS)
    annotate(runtimes, netclass.Allowlist.parse(settings.LLM_CONNECTION_ALLOWLIST), resolver)
    servers = llm_exposure.plan_exposure(runtimes, llm_exposure.listeners(llm_exposure.LLM_PORTS),
                                         settings.own_ports)
    probed = llm_exposure.probe_exposure(runtimes, servers)
    checked.wait(3 * ollama_health.TIMEOUT_S + 1.0)
    if not health:
        health = {"host": ollama_health.public_host(settings.OLLAMA_HOST),
                  "model": settings.OLLAMA_MODEL, "reachable": False,
                  "error": "the health check did not finish",
                  "installed": None, "model_present": None, "model_loaded": None}
    external = [c for r in runtimes for c in r["connections"] if c["class"] == "external"]
    problem = ollama_health.problem(health)
    observations = {
        **counts, "runtimes": runtimes, "runtime_count": len(runtimes),
        "external_connections": len(external),
        "unallowed_external": sum(1 for c in external if not c.get("allowed_by")),
        "ollama": {**health, "problem": problem},
        "dns": {"lookups": resolver.looked_up, "timed_out": resolver.timed_out},
        "exposed_servers": servers, "exposure_probes": probed,
        "open_model_servers": sum(1 for s in [*servers, *(x for r in runtimes
                                                           for x in r.get("exposures", ()))]
                                  if s.get("unauthenticated")),
    }
    samples = [Sample("llm_runtimes.count", float(len(runtimes))),
               Sample("llm_runtimes.external_connections", float(len(external)))]
    if health.get("latency_ms") is not None:
        samples.append(Sample("ollama.latency_ms", float(health["latency_ms"])))
    state = {"runtimes": {str(c.pid): c.create_time for c in found}, "dns": resolver.state()}
    blind = [r["pid"] for r in runtimes if r.get("connections_error") == ACCESS_HINT]
    observations["connections_unreadable"] = blind
    notes = [problem if health.get("installed") is False else None,
             f"cannot read the connections of runtime pid(s) {blind[:5]}: {ACCESS_HINT}"
             if blind else None]
    note = "; ".join(n for n in notes if n) or None
    return CollectResult(observations=observations, samples=tuple(samples), state=state, note=note)
