"""Time to alert in loop mode: a login after a brute force written to auth.log -> Discord has it.

The real agent runs as a subprocess (``monitor_agent.py``, no --once) with only the auth_log
collector on a temporary log file, the shortest allowed interval, and the fake Discord webhook
(tests/fakes/discord_server.py) on loopback. Each trial waits a seeded random time, appends real
sshd lines (failed passwords from one new address, then ``Accepted password`` from it), and
measures from just before the flush to the fake Discord's arrival of the message naming that
address. Two scenarios: Ollama absent (a closed loopback port: rules decide) and the fake Ollama
(tests/fakes/ollama_server.py, valid verdicts) to show the LLM's share. Reference measured in the
same run: the configured interval, the period between cycle starts and each cycle's own duration
(the store's ``cycles`` table), so time to alert = wait for the next cycle + the cycle itself.

Run: .venv/bin/python -m bench.time_to_alert [--trials 6] [--seed 8]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "time_to_alert.json"
INTERVAL_S = 40            # the smallest interval agent.budget.check_fits accepts for auth_log's 30 s
OLLAMA_TIMEOUT_S = 2       # bound and this judge (2 x 2 s + 5 s grace): 39 s
START_TIMEOUT_S = 60.0     # the agent's start and first cycle
STOP_TIMEOUT_S = 30.0
POLL_S = 0.02
SCENARIOS = {"rules": "Ollama absent (closed loopback port): the rules decide",
             "ollama": "fake Ollama answering valid verdicts"}
NETS = {"rules": "203.0.113", "ollama": "198.51.100"}  # documentation ranges, never contacted


def sshd_lines(address: str, failures: int, pid: int) -> bytes:
    """Real-format sshd lines (rsyslog's RFC 3339 stamps): failures, then an accepted password."""
    stamp = datetime.now(UTC).isoformat(timespec="microseconds")
    fail = [f"{stamp} homelab sshd[{pid}]: Failed password for root from {address} "
            f"port {40000 + i} ssh2\n" for i in range(failures)]
    ok = f"{stamp} homelab sshd[{pid + 1}]: Accepted password for admin from {address} " \
         f"port 41000 ssh2\n"
    return "".join([*fail, ok]).encode()


def closed_port_url() -> str:
    """An http URL on loopback where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def recap_time_far_from_now() -> str:
    """A local HH:MM twelve hours away, so no daily recap runs during the benchmark."""
    return time.strftime("%H:%M", time.localtime(time.time() + 12 * 3600))


def agent_env(folder: Path, log: Path, ollama: str, discord: str) -> dict[str, str]:
    """The environment of the agent under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONITOR_")}
    env.update({
        "MONITOR_DATA_DIR": str(folder / "data"), "MONITOR_COLLECTORS": "auth_log",
        "MONITOR_AUTH_LOG_PATH": str(log), "MONITOR_AUTH_LOG_BACKEND": "file",
        "MONITOR_INTERVAL_SECONDS": str(INTERVAL_S), "MONITOR_OLLAMA_HOST": ollama,
        "MONITOR_OLLAMA_TIMEOUT_SECONDS": str(OLLAMA_TIMEOUT_S),
        "MONITOR_DISCORD_WEBHOOK_URL": discord, "MONITOR_HOME_ASSISTANT_URL": "",
        "MONITOR_METRICS_PORT": "0", "MONITOR_DAILY_RECAP_TIME": recap_time_far_from_now(),
        "MONITOR_KNOWN_ISSUES_PATH": str(folder / "known_issues.json"),
        "MONITOR_CONSTRAINTS_PATH": str(folder / "CONSTRAINTS.md"), "MONITOR_LOG_LEVEL": "INFO",
    })
    return env


def wait_for(predicate: Any, timeout_s: float) -> bool:
    """Poll ``predicate`` until true or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(POLL_S)
    return False


def is_alert(message: Any) -> bool:
    """An alert message (not a resolved notice or a recap), by its headline."""
    return " alert on " in (message.payload.get("content") or "")


def arrival(discord: Any, address: str, since: float) -> float | None:
    """When the fake Discord accepted the first alert naming ``address`` (after ``since``)."""
    for message in list(discord.accepted):
        if message.received_at >= since and is_alert(message) \
                and address in json.dumps(message.payload):
            return message.received_at
    return None


def read_cycles(db: Path) -> list[dict[str, Any]]:
    """The agent's cycles (start, duration, verdict source, findings count) from its store."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT started_at, duration_s, by, report FROM cycles "
                            "ORDER BY started_at").fetchall()
    finally:
        conn.close()
    return [{"started_at": s, "duration_s": d, "by": by,
             "findings": len(json.loads(r).get("findings", []))} for s, d, by, r in rows]


def split_trial(trial: dict[str, Any], cycles: list[dict[str, Any]]) -> None:
    """Add the alerting cycle's start and duration: wait for it, then the cycle up to arrival."""
    if trial["arrived_at"] is None:
        return
    before = [c for c in cycles if c["started_at"] <= trial["arrived_at"]]
    if not before:
        return
    cycle = before[-1]
    trial["cycle_started_at"] = cycle["started_at"]
    trial["cycle_duration_s"] = cycle["duration_s"]
    trial["verdict_by"] = cycle["by"]
    trial["wait_for_cycle_s"] = cycle["started_at"] - trial["written_at"]
    trial["cycle_to_arrival_s"] = trial["arrived_at"] - cycle["started_at"]


def run_scenario(name: str, trials: int, rng: random.Random, failures: int) -> dict[str, Any]:
    """Start the agent, run the trials, stop it with SIGTERM; the scenario's figures."""
    sys.path.insert(0, str(ROOT))
    from tests.fakes.discord_server import FakeDiscord
    from tests.fakes.ollama_server import FakeOllama

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-tta-")))
        discord = stack.enter_context(FakeDiscord())
        fake_ollama = stack.enter_context(FakeOllama()) if name == "ollama" else None
        ollama = fake_ollama.url if fake_ollama is not None else closed_port_url()
        log = folder / "auth.log"
        log.write_bytes(b"")
        agent_log = folder / "agent.log"
        with open(agent_log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "monitor_agent.py"], cwd=ROOT,
                                    env=agent_env(folder, log, ollama, discord.url),
                                    stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        results: list[dict[str, Any]] = []
        exit_code: int | None = None
        try:
            if not wait_for(lambda: b"cycle: " in agent_log.read_bytes() or
                            proc.poll() is not None, START_TIMEOUT_S) or proc.poll() is not None:
                raise RuntimeError(f"the agent did not finish a first cycle:\n"
                                   f"{agent_log.read_text(errors='replace')[-2000:]}")
            with open(log, "ab") as writer:
                for i in range(trials):
                    time.sleep(rng.uniform(0, INTERVAL_S))
                    address = f"{NETS[name]}.{10 + i}"
                    writer.write(sshd_lines(address, failures, 2000 + 10 * i))
                    written = time.time()
                    writer.flush()
                    wait_for(lambda address=address, written=written:
                             arrival(discord, address, written) is not None,
                             3 * INTERVAL_S + 30)
                    got = arrival(discord, address, written)
                    results.append({"address": address, "written_at": written,
                                    "arrived_at": got,
                                    "seconds": None if got is None else got - written})
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                exit_code = proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        cycles = read_cycles(folder / "data" / "monitor.db")
        for trial in results:
            split_trial(trial, cycles)
        tail = agent_log.read_text(errors="replace").splitlines()[-15:]
        chats = len(fake_ollama.chats()) if fake_ollama is not None else 0
        alerts = [json.dumps(m.payload) for m in discord.accepted if is_alert(m)]
        for trial in results:
            trial["alerts_naming_address"] = sum(trial["address"] in a for a in alerts)
        messages = {"alert": len(alerts), "other": len(discord.accepted) - len(alerts),
                    "other_headlines": sorted({(m.payload.get("content") or "")[:40]
                                               for m in discord.accepted if not is_alert(m)})}
    return summarize(name, results, cycles, exit_code, chats, messages, tail)


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def summarize(name: str, results: list[dict[str, Any]], cycles: list[dict[str, Any]],
              exit_code: int | None, chats: int, messages: dict[str, Any], tail: list[str]
              ) -> dict[str, Any]:
    """The scenario's figures: time to alert, its two parts, and the cycle reference."""
    arrived = [t for t in results if t["seconds"] is not None]
    starts = [c["started_at"] for c in cycles]
    alerting = [t["cycle_duration_s"] for t in arrived if "cycle_duration_s" in t]
    return {
        "scenario": SCENARIOS[name], "trials": len(results), "arrived": len(arrived),
        "missing": [t["address"] for t in results if t["seconds"] is None],
        "repeated": [t["address"] for t in results if t.get("alerts_naming_address", 0) > 1],
        "time_to_alert_s": _stats([t["seconds"] for t in arrived]),
        "wait_for_cycle_s": _stats([t["wait_for_cycle_s"] for t in arrived
                                    if "wait_for_cycle_s" in t]),
        "cycle_to_arrival_s": _stats([t["cycle_to_arrival_s"] for t in arrived
                                      if "cycle_to_arrival_s" in t]),
        "alerting_cycle_duration_s": _stats(alerting),
        "quiet_cycle_duration_s": _stats([c["duration_s"] for c in cycles
                                          if c["findings"] == 0]),
        "cycle_period_s": _stats([b - a for a, b in itertools.pairwise(starts)]),
        "verdicts_by": sorted({t.get("verdict_by", "?") for t in arrived}),
        "ollama_chats": chats, "discord_messages": messages, "cycles": len(cycles),
        "agent_exit_code": exit_code, "trials_detail": results,
        "agent_log_tail": tail if exit_code != 0 or len(arrived) < len(results) else [],
    }


def _fmt(stats: dict[str, float] | None, unit: str = "s") -> str:
    if stats is None:
        return "n/a"
    return f"min {stats['min']:.2f} / median {stats['median']:.2f} / max {stats['max']:.2f} {unit}"


def report(res: dict[str, Any]) -> None:
    """Print the figures of every scenario."""
    print(f"configured interval {res['interval_s']} s; {res['failures_per_trial']} failed "
          f"passwords then an accepted one per trial; seed {res['seed']}")
    for name, sc in res["scenarios"].items():
        print(f"[{name}] {sc['scenario']}: {sc['arrived']}/{sc['trials']} alerts arrived "
              f"(Discord got {sc['discord_messages']['alert']} alert and "
              f"{sc['discord_messages']['other']} other messages), verdicts by "
              f"{', '.join(sc['verdicts_by'])}; agent exit {sc['agent_exit_code']}")
        print(f"  time to alert        {_fmt(sc['time_to_alert_s'])}")
        print(f"    = wait for cycle   {_fmt(sc['wait_for_cycle_s'])}")
        print(f"    + cycle to arrival {_fmt(sc['cycle_to_arrival_s'])}")
        print(f"  reference: period between cycle starts {_fmt(sc['cycle_period_s'])}; cycle "
              f"duration with the alert {_fmt(sc['alerting_cycle_duration_s'])}, "
              f"quiet {_fmt(sc['quiet_cycle_duration_s'])}")
        tta, period = sc["time_to_alert_s"], sc["cycle_period_s"]
        if tta and period:
            print(f"  median time to alert = {tta['median'] / res['interval_s']:.2f}x the "
                  f"interval; worst case expected ~ period + alerting cycle = "
                  f"{period['median'] + (sc['alerting_cycle_duration_s'] or tta)['max']:.2f} s")
        if sc["repeated"]:
            print(f"  ALERTED MORE THAN ONCE: {', '.join(sc['repeated'])}")
        if sc["missing"]:
            print(f"  NEVER ARRIVED: {', '.join(sc['missing'])}")
            print("  agent log tail:\n    " + "\n    ".join(sc["agent_log_tail"]))
    both = res["scenarios"]
    if all(both.get(n, {}).get("alerting_cycle_duration_s") for n in SCENARIOS):
        rules, llm = (both[n]["alerting_cycle_duration_s"]["median"] for n in SCENARIOS)
        print(f"LLM's share: median alerting cycle {llm * 1000:.0f} ms with the fake Ollama "
              f"({both['ollama']['ollama_chats']} verdict requests) vs {rules * 1000:.0f} ms with "
              f"the rules after a refused connection; the fake answers at once, so a real model "
              f"adds its own answer time to the cycle part only")


def main() -> None:
    """Run both scenarios, print the figures, write bench/results/time_to_alert.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--scenario", choices=list(SCENARIOS), action="append")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from foundation.settings import load_settings

    failures = load_settings(environ={}).SSH_BRUTEFORCE_MAX_RETRY + 1
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    scenarios = {n: run_scenario(n, max(1, args.trials), rng, failures)
                 for n in (args.scenario or list(SCENARIOS))}
    res = {"interval_s": INTERVAL_S, "failures_per_trial": failures, "seed": args.seed,
           "wall_s": time.monotonic() - t0, "scenarios": scenarios}
    report(res)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)} ({res['wall_s']:.0f} s)")
    failed = any(sc["missing"] or sc["repeated"] or sc["agent_exit_code"] != 0
                 for sc in scenarios.values())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
