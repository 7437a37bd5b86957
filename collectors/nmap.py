"""Port scans of NMAP_TARGETS with nmap, in the background, at most once per NMAP_INTERVAL_SECONDS.

A scan can take minutes (``-sV``, networks), so ``collect`` never waits for one: it starts
``nmap ... -oX FILE`` as a tracked background command (``kill_children`` stops it on shutdown),
waits at most ``GRACE_S`` (a loopback scan is done by then), and otherwise returns at once with
``resolves=False``. A later cycle finds the scan finished and parses the XML with python-nmap, or
kills it past NMAP_TIMEOUT_SECONDS. Only a cycle that parsed a finished scan has ``resolves=True``.

After a finished scan, each open TCP port on the model server port list or whose service looks
like HTTP is asked, with collectors.llm_probe's read-only GETs, whether it serves an LLM API
without authentication (``llm_probes`` in the scan's observation). Only the scanned hosts are
asked; on this machine never the agent's own ports, and a loopback address only for a port that
is also bound to a non-loopback address (a loopback-only server is not on the network).
"""
from __future__ import annotations

import ipaddress
import logging
import shlex
import shutil
import socket
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil

from collectors import llm_exposure, llm_probe
from collectors.nmap_parse import NmapParseError, Scan, parse_scan
from foundation.context import CollectContext, CommandError, kill_group, release_child, start_background
from foundation.model import CollectResult, Sample
from foundation.settings import Settings

log = logging.getLogger(__name__)

GRACE_S = 1.0            # how long collect may wait for a just-started scan to finish
MAX_OPEN_PORTS = 1000    # bound on the open ports reported (a bigger scan is marked truncated)
MAX_OTHER_PORTS = 200    # listed ports in other states (closed, filtered), for "now closed" texts
MAX_HOSTS = 1024
MAX_LLM_PROBES = 32      # open ports asked whether they serve an LLM API, per finished scan
XML_NAME = "nmap-scan.xml"
ERR_NAME = "nmap-scan.err"
INSTALL_HINT = "nmap is not installed: install it (apt install nmap) or remove nmap from COLLECTORS"

# pid -> the scan this process started; a pid in the saved state but not here belongs to an
# earlier run of the agent (its scan was killed at shutdown), never to us.
_RUNNING: dict[int, subprocess.Popen[bytes]] = {}


class NmapConfigError(Exception):
    """NMAP_TARGETS or NMAP_SCAN_OPTIONS cannot be turned into a safe command line."""


def timeout_s(settings: Settings) -> float:
    """Starting or parsing a scan is quick; the scan itself runs in the background."""
    return 30.0


def build_command(nmap_path: str, settings: Settings, xml_path: Path) -> list[str]:
    """The nmap command line: the operator's options, XML to a file, then the targets."""
    try:
        options = shlex.split(settings.NMAP_SCAN_OPTIONS)
    except ValueError as err:
        raise NmapConfigError(f"NMAP_SCAN_OPTIONS cannot be split: {err}") from err
    owned = {"-oX", "-oN", "-oG", "-oA", "-oS", "-iL", "--resume"}
    if owned & set(options):
        raise NmapConfigError(f"NMAP_SCAN_OPTIONS must not set {sorted(owned & set(options))}: "
                              "the agent chooses where the output goes")
    bad = [t for t in settings.NMAP_TARGETS if t.startswith("-")]
    if bad:
        raise NmapConfigError(f"NMAP_TARGETS entries must be addresses or networks, not {bad}")
    return [nmap_path, *options, "-oX", str(xml_path), *settings.NMAP_TARGETS]


def own_addresses() -> set[str]:
    """This machine's addresses (every interface's, loopback included)."""
    found = {"127.0.0.1", "::1"}
    for addrs in psutil.net_if_addrs().values():
        found.update(a.address.split("%", 1)[0] for a in addrs
                     if a.family in (socket.AF_INET, socket.AF_INET6))
    return found


def is_local(address: str, own: set[str]) -> bool:
    """A scanned address that is this machine: loopback, or one of its interfaces' addresses."""
    try:
        loopback = ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False
    return loopback or address.split("%", 1)[0] in own


def summarize(scan: Scan, finished_at: float, own: set[str] | None = None) -> dict[str, Any]:
    """The bounded, JSON-able observation of a finished scan (what the detector diffs); which of
    its hosts are this machine (``own``: its addresses) goes along."""
    open_ports = sorted(scan.open_ports.values(), key=lambda p: (p.addr, p.proto, p.port))
    others = sorted(k for k, p in scan.ports.items() if p.state != "open")[:MAX_OTHER_PORTS]
    mine = own if own is not None else set()
    return {
        "finished_at": finished_at, "elapsed_s": scan.elapsed_s,
        "hosts_total": scan.hosts_total, "hosts_up": sorted(scan.hosts_up)[:MAX_HOSTS],
        "local_hosts": sorted(h for h in scan.hosts_up if is_local(h, mine))[:MAX_HOSTS],
        "open_ports": [p.as_json() for p in open_ports[:MAX_OPEN_PORTS]],
        "other_ports": {k: scan.ports[k].state for k in others},
        "truncated": len(open_ports) > MAX_OPEN_PORTS or len(scan.hosts_up) > MAX_HOSTS,
    }


def _looks_like_http(service: str, product: str) -> bool:
    """nmap's service name or product says a web server (http, https, http-proxy, http-alt)."""
    return "http" in service.lower() or "http" in product.lower()


def llm_candidates(scan: Scan, own: set[str], own_ports: frozenset[int],
                   exposed: Callable[[], set[int]]) -> list[tuple[str, int]]:
    """The open TCP ports of the scanned hosts worth probing for an LLM API, well-known model
    server ports first. ``exposed`` gives this machine's ports bound to a non-loopback address
    (asked only when a loopback target has a candidate)."""
    up = set(scan.hosts_up)
    wanted = [p for p in scan.open_ports.values()
              if p.proto == "tcp" and p.addr in up
              and (p.port in llm_exposure.LLM_PORTS or _looks_like_http(p.service, p.product))
              and not (is_local(p.addr, own) and p.port in own_ports)]
    wanted.sort(key=lambda p: (p.port not in llm_exposure.LLM_PORTS, p.addr, p.port))
    bound: set[int] | None = None
    picked = []
    for p in wanted:
        if llm_exposure.is_loopback(p.addr):
            bound = exposed() if bound is None else bound
            if p.port not in bound:
                continue      # loopback only: not reachable from the network
        picked.append((p.addr, p.port))
    return picked[:MAX_LLM_PROBES]


def probe_llm(scan: Scan, own: set[str], own_ports: frozenset[int],
              prober: Callable[..., Mapping[tuple[str, int], llm_probe.ProbeResult | None]]
              = llm_probe.probe_many,
              exposed: Callable[[], set[int]] = lambda: llm_exposure.exposed_ports(
                  llm_exposure.listeners())) -> tuple[list[dict[str, Any]], int]:
    """(what answered as an LLM API, how many ports were asked)."""
    targets = llm_candidates(scan, own, own_ports, exposed)
    if not targets:
        return [], 0
    answers = prober(targets, timeout_s=llm_exposure.PROBE_TIMEOUT_S,
                     budget_s=llm_exposure.PROBE_BUDGET_S)
    found = [{"addr": addr, "port": port, **answer.as_json()}
             for (addr, port), answer in sorted(answers.items()) if answer is not None]
    return found, len(targets)


def _tail(path: Path, limit: int = 300) -> str:
    try:
        data = path.read_bytes()[-limit:]
    except OSError:
        return ""
    return " ".join(data.decode("utf-8", "replace").split())


def _partial(status: str, state: Mapping[str, Any], note: str, **extra: Any) -> CollectResult:
    """A cycle without a finished scan: no resolving, the last scan's counts for the report."""
    observations = {"status": status, **extra, "last_scan": state.get("last")}
    return CollectResult(observations=observations, state=dict(state), note=note, resolves=False)


def _start(ctx: CollectContext, nmap_path: str, workdir: Path) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    xml_path = workdir / XML_NAME
    xml_path.unlink(missing_ok=True)
    args = build_command(nmap_path, ctx.settings, xml_path)
    with open(workdir / ERR_NAME, "wb") as err_file:
        proc = start_background(args, stderr=err_file)
    _RUNNING[proc.pid] = proc
    log.info("nmap scan started (pid %d): %s", proc.pid, " ".join(args[1:]))
    return proc


def _finish(proc: subprocess.Popen[bytes], workdir: Path, now: float,
            state: Mapping[str, Any], own_ports: frozenset[int] = frozenset()) -> CollectResult:
    """Parse a finished scan into observations, samples and the next state."""
    _RUNNING.pop(proc.pid, None)
    release_child(proc)
    base = {k: v for k, v in state.items() if k != "scan"}
    xml_path = workdir / XML_NAME
    try:
        scan = parse_scan(xml_path.read_bytes())
    except (OSError, NmapParseError) as err:
        note = (f"nmap exited with {proc.returncode} and left no usable report: "
                f"{_tail(workdir / ERR_NAME) or err}")
        return _partial("scan failed", dict(base, scan=None), note, error=note)
    finally:
        xml_path.unlink(missing_ok=True)
    own = own_addresses()
    result = summarize(scan, now, own)
    result["llm_probes"], result["llm_probed"] = probe_llm(scan, own, own_ports)
    last = {"finished_at": now, "hosts_up": len(scan.hosts_up), "hosts_total": scan.hosts_total,
            "open_ports": len(scan.open_ports), "elapsed_s": scan.elapsed_s}
    samples = (Sample("nmap.hosts_up", float(len(scan.hosts_up))),
               Sample("nmap.open_ports", float(len(scan.open_ports))))
    return CollectResult(observations={"status": "scan finished", "scan": result},
                         samples=samples, state=dict(base, scan=None, last=last),
                         note=f"scan finished in {scan.elapsed_s:g} s")


def collect(ctx: CollectContext) -> CollectResult:
    """Start a due scan, report a finished one, or kill one that overran; never wait long."""
    nmap_path = shutil.which("nmap")
    if nmap_path is None:
        return CollectResult(observations={"status": "nmap not installed"}, available=False,
                             note=INSTALL_HINT, resolves=False)
    settings, state = ctx.settings, dict(ctx.state)
    workdir = Path(settings.DATA_DIR)
    running = state.get("scan")
    proc = _RUNNING.get(running["pid"]) if running else None
    if running and proc is None:
        log.info("the nmap scan of an earlier run (pid %s) is gone; starting a new one",
                 running["pid"])
        state.update(scan=None, last_started_at=None)
    if running and proc is not None and proc.poll() is None:
        age = ctx.now - running["started_at"]
        if age <= settings.NMAP_TIMEOUT_SECONDS:
            return _partial("scan in progress", state, f"scan in progress ({age:.0f} s)",
                            running_s=round(age, 1))
        kill_group(proc)   # nmap and anything it started (scripts of -sC/--script)
        _RUNNING.pop(proc.pid, None)
        release_child(proc)
        note = (f"scan abandoned after {age:.0f} s "
                f"(NMAP_TIMEOUT_SECONDS={settings.NMAP_TIMEOUT_SECONDS})")
        log.warning("nmap %s", note)
        return _partial("scan abandoned", dict(state, scan=None), note)
    if proc is not None:
        return _finish(proc, workdir, ctx.now, state, settings.own_ports)
    last_started = state.get("last_started_at")
    if last_started is not None and ctx.now - last_started < settings.NMAP_INTERVAL_SECONDS:
        wait = settings.NMAP_INTERVAL_SECONDS - (ctx.now - last_started)
        return _partial("no scan due", state, f"next scan in {wait:.0f} s",
                        next_scan_in_s=round(wait))
    try:
        proc = _start(ctx, nmap_path, workdir)
    except (NmapConfigError, CommandError) as err:
        return CollectResult(observations={"status": "cannot start scan", "error": str(err)},
                             state=state, available=False, note=str(err), resolves=False)
    state.update(scan={"pid": proc.pid, "started_at": ctx.now}, last_started_at=ctx.now)
    try:
        proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        return _partial("scan in progress", state, "scan in progress", running_s=0.0)
    return _finish(proc, workdir, ctx.now, state, settings.own_ports)
