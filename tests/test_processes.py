"""The processes collector's matching and CPU accounting, on records and on the live process table."""
from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.processes import ProcInfo, cpu_percent, matches, snapshot, summarize
from tests.procs import start_named, stop, unique_name


def proc(pid: int, name: str, cmdline: str, cpu: float = 0.0, rss: int = 0,
         created: float = 0.0) -> ProcInfo:
    argv0 = os.path.basename(cmdline.split(" ")[0]) if cmdline else ""
    return ProcInfo(pid, name, argv0, cmdline, cpu, rss, created)


def test_name_matching_is_exact_on_comm_or_argv0() -> None:
    nginx = proc(10, "nginx", "nginx: master process /usr/sbin/nginx")
    long_name = proc(11, "systemd-resolve", "/lib/systemd/systemd-resolved")
    assert matches("nginx", nginx, own_pid=1)
    assert not matches("ngin", nginx, own_pid=1)
    assert matches("systemd-resolved", long_name, own_pid=1)  # comm is cut at 15 characters
    assert not matches("resolved", long_name, own_pid=1)


def test_cmdline_prefix_matches_substrings_but_never_the_agent_itself() -> None:
    worker = proc(20, "python3", "python3 -m homeassistant --config /srv/ha")
    me = proc(21, "python3", "python3 monitor_agent.py -m homeassistant")
    assert matches("cmdline:-m homeassistant", worker, own_pid=21)
    assert not matches("cmdline:-m homeassistant", me, own_pid=21)
    assert not matches("homeassistant", worker, own_pid=21)


def test_cpu_percent_uses_the_delta_since_last_cycle_for_the_same_process() -> None:
    p = proc(5, "x", "x", cpu=30.0, created=1000.0)
    previous = {"5": [1000.0, 20.0]}
    assert cpu_percent(p, previous, now=1100.0, last_at=1050.0) == 20.0   # 10 s of 50 s
    reused_pid = {"5": [999.0, 20.0]}                                     # another process
    assert cpu_percent(p, reused_pid, now=1100.0, last_at=1050.0) == 30.0  # lifetime: 30 of 100


def test_summary_counts_instances_and_ranks_consumers() -> None:
    procs = [proc(1, "sshd", "sshd", cpu=1, rss=10 << 20, created=0),
             proc(2, "sshd", "sshd: alice", cpu=2, rss=5 << 20, created=0),
             proc(3, "ollama", "ollama serve", cpu=90, rss=4 << 30, created=0)]
    obs, state = summarize(["sshd", "absent"], procs, {}, now=100.0, own_pid=99)
    assert obs["watched"]["sshd"]["count"] == 2 and obs["watched"]["sshd"]["pids"] == [1, 2]
    assert obs["watched"]["absent"] == {"running": False, "count": 0, "pids": [],
                                        "cpu_percent": 0.0, "memory_rss_mb": 0.0}
    assert obs["top_cpu"][0]["name"] == "ollama" and obs["top_memory"][0]["pid"] == 3
    assert state["cpu"]["3"] == [0, 90] and state["at"] == 100.0


def test_live_snapshot_sees_a_process_the_test_started(tmp_path: Path) -> None:
    name = unique_name()
    started = start_named(tmp_path / "bin", name)
    try:
        found = [p for p in snapshot() if p.pid == started.pid]
    finally:
        stop(started)
    assert found and found[0].name == name and found[0].argv0 == name
    assert found[0].rss_bytes > 0


NAMES = ["sshd", "nginx", "ollama", "python3", "systemd-resolve", "systemd-resolved", ""]


@given(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES)), max_size=40),
       st.lists(st.sampled_from([n for n in NAMES if n] + ["cmdline:serve", "cmdline:a"]),
                unique=True, max_size=6))
@settings(max_examples=300, deadline=None)
def test_indexed_matching_equals_checking_every_process(table, watch) -> None:
    procs = [proc(pid, name, f"/usr/bin/{argv0} serve --flag a" if argv0 else "")
             for pid, (name, argv0) in enumerate(table, start=100)]
    own_pid = 100
    obs, _ = summarize(watch, procs, {}, now=1000.0, own_pid=own_pid)
    for entry in watch:
        expected = sorted(p.pid for p in procs if matches(entry, p, own_pid))[:20]
        assert obs["watched"][entry]["pids"] == expected, entry


def test_the_shared_walk_reads_what_psutil_gives_every_process(tmp_path: Path) -> None:
    """collectors/proctable.py skips the command line of processes without a memory map and the
    parent pid: the table must still say what process_iter(ATTRS) says of every process, a
    started one with its command line, a kernel thread (when this pid namespace has them) with
    none, a zombie with none."""
    import subprocess

    import psutil

    from collectors import proctable

    name = unique_name()
    proc = start_named(tmp_path / "bin", name)
    zombie = subprocess.Popen(["true"])          # not waited for: a zombie while the walk runs
    try:
        psutil.Process(zombie.pid).status()       # it exists
        for _ in range(200):
            if psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE:
                break
            os.sched_yield()
        ours = {p.info["pid"]: p.info for p in proctable.walk()}
        theirs = {p.info["pid"]: p.info for p in psutil.process_iter(proctable.ATTRS)}
    finally:
        stop(proc)
        zombie.wait()
    assert set(ours[1]) == set(proctable.ATTRS)
    same = [pid for pid in ours.keys() & theirs.keys()
            if ours[pid]["create_time"] == theirs[pid]["create_time"]]
    assert len(same) >= 0.9 * len(theirs)
    # a process may exec between the two walks (same pid and start, another name): a few may differ
    differ = [pid for pid in same if ours[pid]["name"] != theirs[pid]["name"]
              or (ours[pid]["cmdline"] or []) != (theirs[pid]["cmdline"] or [])]
    assert len(differ) <= 3, [(ours[p]["name"], ours[p]["cmdline"], theirs[p]["cmdline"])
                              for p in differ]
    assert ours[proc.pid]["cmdline"] and name in " ".join(ours[proc.pid]["cmdline"])
    assert (ours[zombie.pid]["cmdline"] or []) == []
    # no memory map: kernel threads (when this pid namespace shows them) and the zombie
    unmapped = [pid for pid, info in ours.items() if info["memory_info"].vms == 0]
    assert zombie.pid in unmapped and all(ours[pid]["cmdline"] == [] for pid in unmapped)
