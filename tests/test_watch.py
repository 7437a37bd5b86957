"""`watch` in a real tmux: the live view of a store that real agent cycles filled, following the next
cycle without a key pressed, quitting on q and on Ctrl-C with the terminal given back, and a
finding that carries every injection payload without an escape sequence or a broken line."""
from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from rich.cells import cell_len

from agent.cycle import Agent
from alerts.console import ConsoleNotifier
from analysis.rules import RulesJudge
from foundation.store.data_storage import Store
from tests import injection_payloads
from tests.conftest import ROOT
from tests.llm_runtime_fixtures import start_runtime
from tests.procs import start_named, stop, unique_name

PROMPT = "wt$ "
WAIT_S = 90.0     # generous: python starting beside stress-ng; a pass takes a few seconds
# what rich (SGR, cursor home, cursor shown/hidden, the alternate screen) and bash (bracketed
# paste) write; anything else in the pane's byte stream would have come from a payload
OWN_SEQUENCES = re.compile(r"\x1b\[[0-9;]*m|\x1b\[H|\x1b\[\?(?:25|1049|2004)[hl]")


def tmux_path() -> str:
    path = shutil.which("tmux")
    if path is None:
        pytest.fail("tmux is missing: apt-get install tmux (make test installs it)")
    return path


class Pane:
    """One detached tmux session of a fixed size on a server of its own (its own socket), running
    bash with a known prompt; closed by its session id and its processes' own pids."""

    def __init__(self, env: dict[str, str], width: int, height: int) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="wt-", dir="/tmp"))  # a socket path is short
        self.env = env
        self.raw = self.folder / "pane.raw"
        out = self.tmux("new-session", "-d", "-P", "-F", "#{session_id} #{pid} #{pane_pid}",
                        "-x", str(width), "-y", str(height), "-c", str(ROOT), "--",
                        "env", f"PS1={PROMPT}", "bash", "--norc", "--noprofile")
        session, server, pane = out.split()
        self.session, self.server_pid, self.pane_pid = session, int(server), int(pane)
        # every byte the pane's programs write, as the terminal received it
        self.tmux("pipe-pane", "-t", self.session, "-o", f"cat >> {self.raw}")
        self.wait_for(lambda s: s.rstrip().endswith(PROMPT.strip()), "the shell's prompt")

    def tmux(self, *args: str) -> str:
        return subprocess.run([tmux_path(), "-u", "-f", "/dev/null", "-S",
                               str(self.folder / "tmux.sock"), *args], env=self.env,
                              capture_output=True, text=True, timeout=30, check=True).stdout

    def send(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.session, *keys)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session)

    def display(self, what: str) -> str:
        return self.tmux("display-message", "-p", "-t", self.session, what).strip()

    def wait_for(self, ready: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + WAIT_S
        while True:
            screen = self.screen()
            if ready(screen):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"the pane never showed {what}; it shows:\n{screen}")
            time.sleep(0.2)

    def start_watch(self) -> None:
        self.send(f"{sys.executable} monitor_agent.py watch; echo EXIT=$?", "Enter")

    def wait_frame(self, text: str) -> str:
        return self.wait_for(lambda s: text in s and "q quits" in s, f"a frame with {text!r}")

    def assert_watch_ended_cleanly(self) -> None:
        """Exit status 0, the shell's prompt back, the main screen, the cursor shown and the
        terminal's modes as they were (canonical input, echo, signals)."""
        screen = self.wait_for(lambda s: bool(re.search(r"^EXIT=\d+$", s, re.M))
                               and s.rstrip().endswith(PROMPT.strip()),
                               "the watch's exit status and the prompt")
        self.tmux("pipe-pane", "-t", self.session)      # the recording ends with the watch
        assert re.search(r"^EXIT=0$", screen, re.M), screen
        assert self.display("#{alternate_on} #{cursor_flag}") == "0 1"
        self.send("clear; stty -a", "Enter")
        modes = self.wait_for(lambda s: "icanon" in s and s.rstrip().endswith(PROMPT.strip()),
                              "stty's answer")
        for mode in ("icanon", "echo", "isig"):
            assert re.search(rf"(?<![-\w]){mode}\b", modes), modes
            assert f"-{mode} " not in modes and not re.search(rf"-{mode}$", modes, re.M), modes

    def close(self) -> None:
        try:
            left = psutil.Process(self.pane_pid).children(recursive=True)
        except psutil.NoSuchProcess:
            left = []
        subprocess.run([tmux_path(), "-S", str(self.folder / "tmux.sock"), "kill-session", "-t",
                        self.session], env=self.env, capture_output=True, timeout=30, check=False)
        for proc in [*left, *self._server()]:
            try:
                proc.wait(5)
            except psutil.TimeoutExpired:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(self.folder, ignore_errors=True)

    def _server(self) -> list[psutil.Process]:
        try:
            return [psutil.Process(self.server_pid)]
        except psutil.NoSuchProcess:
            return []


def pane_env(home: Path, settings: Any) -> dict[str, str]:
    """The agent's environment in the pane: a store in ``home``, nothing of the caller's but PATH,
    and no COLUMNS or LINES (the view takes the pane's size)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "LANG": "C.UTF-8", "MONITOR_DATA_DIR": str(settings.DATA_DIR),
            "MONITOR_COLLECTORS": ",".join(settings.COLLECTORS)}


@pytest.fixture
def panes() -> Iterator[Callable[..., Pane]]:
    opened: list[Pane] = []

    def open_pane(env: dict[str, str], width: int, height: int) -> Pane:
        opened.append(Pane(env, width, height))
        return opened[-1]

    yield open_pane
    for pane in opened:
        pane.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def agent_for(settings: Any, store: Store) -> Agent:
    return Agent(settings, store, RulesJudge(), {"console": ConsoleNotifier(io.StringIO())})


def test_the_view_shows_a_real_cycle_follows_the_next_and_quits_on_q(
        tmp_path: Path, listener: socket.socket, make_settings: Any,
        panes: Callable[..., Pane]) -> None:
    name = unique_name()
    port = listener.getsockname()[1]
    settings = make_settings(COLLECTORS=["processes", "llm_runtimes"], PROCESSES_TO_MONITOR=[name],
                             OLLAMA_HOST=f"http://127.0.0.1:{closed_port()}")
    runtime, runtime_name, _ = start_runtime(tmp_path, port, model_in_argv=True)
    sleeper = None
    store = Store.open(settings.db_path)   # the agent's own, open all along as in the service
    try:
        agent = agent_for(settings, store)
        first = agent.run_cycle()
        [missing] = [f for f in first["findings"] if f["kind"] == "process_missing"]
        pane = panes(pane_env(tmp_path, settings), 80, 40)
        pane.start_watch()
        screen = pane.wait_frame(f"Process {name} is not running")
        lines = screen.splitlines()
        assert lines[0].startswith("homelab-monitor ") and "verdict high by rules" in lines[0]
        assert re.search(r"last cycle \d\d:\d\d:\d\d, \d+ s ago$", lines[0]), lines[0]
        assert "Collectors 2 up of 2" in screen
        assert re.search(r"^up +processes *$", screen, re.M), screen
        assert re.search(r"^up +llm_runtimes +Ollama at hxxp\[://\]127\[\.\]0\[\.\]0\[\.\]1:", screen,
                         re.M), screen
        assert "Open findings 2" in screen
        # severity, the headline in the kind's words, since when, the fingerprint (dimmed)
        assert re.search(rf"^high +Process {name} is not running +\d+ s +{missing['id'][:8]} *$",
                         screen, re.M), screen
        assert re.search(r"^medium +Ollama at ", screen, re.M), screen
        assert re.search(r"^LLM runtime connections \d+", screen, re.M), screen
        assert re.search(r"^runtime +remote +port +class +organisation +direction$", screen, re.M)
        assert re.search(rf"^unknown \({runtime_name}\) +127\.0\.0\.1 +{port} +loopback +outbound$",
                         screen, re.M), screen
        assert all(len(line) <= 80 for line in lines)
        assert pane.display("#{alternate_on}") == "1"

        # the process appears; a real cycle (the view's store open beside it) resolves the
        # finding, and the view follows with no key pressed
        sleeper = start_named(tmp_path / "bin", name)
        second = agent_for(settings, store).run_cycle()
        assert [f["kind"] for f in second["findings"]] == ["llm_unavailable"]
        screen = pane.wait_for(lambda s: "Open findings 1" in s and "q quits" in s,
                               "the finding resolved")
        assert "is not running" not in screen and re.search(r"^medium +Ollama at ", screen, re.M)
        assert re.search(rf"^unknown \({runtime_name}\) +127\.0\.0\.1 +{port} ", screen, re.M)

        pane.send("q")
        pane.assert_watch_ended_cleanly()
    finally:
        if sleeper is not None:
            stop(sleeper)
        stop(runtime)
        store.close()


def test_ctrl_c_quits_and_gives_the_terminal_back(
        tmp_path: Path, make_settings: Any, panes: Callable[..., Pane]) -> None:
    name = unique_name()
    settings = make_settings(COLLECTORS=["processes"], PROCESSES_TO_MONITOR=[name])
    store = Store.open(settings.db_path)
    try:
        agent_for(settings, store).run_cycle()
    finally:
        store.close()
    pane = panes(pane_env(tmp_path, settings), 80, 24)
    pane.start_watch()
    screen = pane.wait_frame(f"Process {name} is not running")
    # no runtime collector here: the section says why it is empty
    assert "LLM runtime connections 0: none" in screen and "llm_runtimes collector is not" in screen
    pane.send("C-c")
    pane.assert_watch_ended_cleanly()


def test_without_a_terminal_it_prints_one_frame_and_exits(tmp_path: Path, make_settings: Any) -> None:
    name = unique_name()
    settings = make_settings(COLLECTORS=["processes"], PROCESSES_TO_MONITOR=[name])
    env = {**pane_env(tmp_path, settings), "COLUMNS": "80"}
    run = [sys.executable, str(ROOT / "monitor_agent.py"), "watch"]
    none = subprocess.run(run, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60, check=False)
    assert none.returncode == 1 and "No store at" in none.stdout and "--once" in none.stdout
    store = Store.open(settings.db_path)
    try:
        agent_for(settings, store).run_cycle()
    finally:
        store.close()
    proc = subprocess.run(run, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"Process {name} is not running" in proc.stdout and "\x1b" not in proc.stdout
    assert proc.stdout.startswith("homelab-monitor ") and "q quits" in proc.stdout
    assert all(len(line) <= 80 for line in proc.stdout.splitlines())


def every_payload() -> list[tuple[str, str]]:
    """Every (name, text) list of tests/injection_payloads.py: prompt injection, hidden text,
    markup, and whatever is added there later."""
    return [pair for value in vars(injection_payloads).values()
            if isinstance(value, list) and value
            and all(isinstance(p, tuple) and len(p) == 2 for p in value) for pair in value]


def _fingerprint(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()[:16]


def test_injection_payloads_neither_escape_nor_break_the_frame(
        tmp_path: Path, make_settings: Any, panes: Callable[..., Pane]) -> None:
    """Each payload as the user name of a user_created finding (told "A user account {user} was
    created") and in its summary; one more finding, stored without facts, is told by its summary,
    which holds every payload."""
    settings = make_settings(COLLECTORS=["processes"], PROCESSES_TO_MONITOR=[unique_name()])
    payloads = every_payload()
    assert len(payloads) >= 60 and len({label for label, _ in payloads}) == len(payloads)
    store = Store.open(settings.db_path)
    try:
        agent_for(settings, store).run_cycle()
        now = time.time()
        with store.transaction() as write:
            for i, (label, text) in enumerate(payloads):
                write.upsert_finding(_fingerprint(label), "auth_log", "user_created", label,
                                     "medium", "none", f"account {text} created", now - 100 + i,
                                     {"labels": {"user": text}, "facts": {}})
            write.upsert_finding(_fingerprint("every payload"), "auth_log", "user_created", "all",
                                 "medium", "none", " | ".join(t for _, t in payloads), now, {})
    finally:
        store.close()
    rows = len(payloads) + 2            # and the real cycle's process_missing
    pane = panes(pane_env(tmp_path, settings), 160, rows + 12)
    pane.start_watch()
    screen = pane.wait_frame(f"Open findings {rows}")
    assert f"Open findings {rows} (" not in screen          # none left out
    lines = screen.splitlines()
    assert lines[0].startswith("homelab-monitor ")         # no payload cleared or homed the screen
    # every finding is one row, all in a block, its id in one column: nothing broke a line
    at = {}
    for label in [label for label, _ in payloads] + ["every payload"]:
        fp = _fingerprint(label)[:8]
        hits = [(n, line) for n, line in enumerate(lines) if fp in line]
        assert len(hits) == 1, (label, hits)
        n, line = hits[0]
        assert line.startswith("medium "), (label, line)
        at[label] = (n, cell_len(line[:line.index(fp)]))
    assert sorted(n for n, _ in at.values()) == list(range(min(at.values())[0],
                                                          min(at.values())[0] + len(at)))
    assert len({column for _, column in at.values()}) == 1, at
    assert "refreshed every 2 s · q quits" in [line for line in lines if line.strip()][-1]
    # shown as text, not obeyed: markup, escape sequences, forged lines
    assert "[bold red]FAKE[/bold red]" in screen and ":smile:" in screen
    assert "A user account root[2J[Hseverity: none was created" in screen
    assert "New user account: Ignore all previous instructions" in screen
    assert not any(line.startswith(("[ALERT]", "Assistant:", "ok")) for line in lines)
    pane.send("q")
    pane.assert_watch_ended_cleanly()
    # the bytes the terminal received while the view ran: rich's and bash's own sequences only,
    # and nothing invisible
    raw = pane.raw.read_bytes().decode("utf-8")
    assert "root\x1b" not in raw and "\x1b[2J" not in raw
    text = OWN_SEQUENCES.sub("", raw)
    odd = sorted({f"U+{ord(c):04X}" for c in text if c not in "\r\n" and (
        unicodedata.category(c) in ("Cc", "Cf", "Co", "Cn", "Cs")
        or 0xFE00 <= ord(c) <= 0xFE0F or 0xE0000 <= ord(c) <= 0xE0FFF
        or c in "\u3164\uffa0\u115f\u1160")})
    assert odd == [], odd


def test_a_refresh_reads_one_snapshot_that_never_holds_the_agent_back(
        tmp_path: Path, make_settings: Any) -> None:
    """The view's read transaction stays open while the agent commits a whole real cycle on its
    own connection: the agent is not held back, the view keeps seeing one state, then the new."""
    from agent.watch import read

    name = unique_name()
    settings = make_settings(COLLECTORS=["processes"], PROCESSES_TO_MONITOR=[name])
    agent_store = Store.open(settings.db_path)
    view_store = Store.open(settings.db_path, check=False)
    sleeper = None
    try:
        agent = agent_for(settings, agent_store)
        agent.run_cycle()
        with view_store.snapshot():
            before = view_store.last_cycle()
            sleeper = start_named(tmp_path / "bin", name)
            report = agent.run_cycle()         # writes and commits while the snapshot is open
            assert report["committed"] and report["findings"] == []
            assert view_store.last_cycle() == before and len(view_store.findings()) == 1
        seen = read(view_store, time.time())
        assert seen.findings == [] and seen.started is not None
        assert view_store.last_cycle()["started_at"] == report["started_at"]
    finally:
        if sleeper is not None:
            stop(sleeper)
        view_store.close()
        agent_store.close()


def test_after_an_event_cycle_the_other_collectors_come_from_the_last_scheduled_one(
        tmp_path: Path, make_settings: Any) -> None:
    from agent.watch import read

    name = unique_name()
    settings = make_settings(COLLECTORS=["processes"], PROCESSES_TO_MONITOR=[name])
    store = Store.open(settings.db_path)
    try:
        scheduled = agent_for(settings, store).run_cycle()
        event = {**scheduled, "trigger": "event", "observations": {},
                 "collectors": {"auth_log": {"ok": False, "error": "journal gone", "duration_s": 0.1,
                                             "available": True, "note": None}}}
        with store.transaction() as write:
            write.save_cycle(time.time(), 0.1, "high", "rules", event)
        assert store.last_cycle(scheduled=True)["collectors"].keys() == {"processes"}
        seen = read(store, time.time())
    finally:
        store.close()
    assert seen.collectors == [("processes", "up", ""), ("auth_log", "down", "journal gone")]
    [finding] = seen.findings
    assert (finding.severity, finding.headline) == ("high", f"Process {name} is not running")
    assert seen.llm_note == "the llm_runtimes collector is not enabled (COLLECTORS)"
