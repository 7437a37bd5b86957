"""Draw the dashboard's screenshots of the docs: docs/dashboard-*.png.

Run: `.venv/bin/python scripts/render_dashboard.py` (needs Debian's chromium and chromium-driver,
and selenium from requirements-dev.txt). It fills a temporary store the way the agent does: real
cycles, five minutes apart by the agent's clock over the last two hours, of the processes collector
watching nginx (a process of that name runs at first, then stops), ping of 127.0.0.1, the auth
log collector reading a log this script appends to (background SSH noise, then a brute force and
a login from the same address), the sensors collector reading a real `sensors -j` capture of the
shared corpus (cut to four cores, its temperatures moved a little each cycle; left out when the
corpus is absent), and the llm_runtimes collector finding a llama-server stand-in (a process
holding a .gguf open, with a loopback connection; restarted before the last cycle, which runs at
the real time);
judged through the loopback stand-in for Ollama and alerting the loopback stand-in for Discord
(tests/fakes/). Then it sets the password through `web-password`, starts `monitor_agent.py web`
on a free loopback port, logs in with headless Chromium through selenium, and saves the
overview, a finding and every other page that agent/web/app.py's ROUTES has (LLM runtimes,
metrics, alerts), 1280 px wide in the light and the dark theme, and the overview at a phone's
390 px.
"""
from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selenium import webdriver  # noqa: E402 - after the project's folder is on the path
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from agent.cycle import Agent  # noqa: E402
from agent.web.app import ROUTES  # noqa: E402
from alerts.channels import make_notifiers  # noqa: E402
from analysis.judge import make_judge  # noqa: E402
from foundation.settings import load_settings  # noqa: E402
from foundation.store.data_storage import Store  # noqa: E402
from tests.fakes.discord_server import FakeDiscord  # noqa: E402
from tests.fakes.ollama_server import FakeOllama, finding_ids  # noqa: E402
from tests.llm_runtime_fixtures import RUNTIME_SCRIPT  # noqa: E402

DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                  "--font-render-hinting=none", "--lang=en-GB"]
PASSWORD = "a demo password for the screenshots"
HOST = "nas"
WIDTH = 1280
PHONE = (390, 844)
CYCLES = 24                   # two hours, one cycle every five minutes
INTERVAL_S = 300
NGINX_STOPS_AT = 15           # the cycle from which nginx is gone
ATTACKER = "203.0.113.77"     # TEST-NET-3: nobody's address
THEME_KEY = "homelab-monitor-theme"   # agent/web/static/theme.js


def stamp(ts: float) -> str:
    """A traditional syslog timestamp in local time."""
    return time.strftime("%b %e %H:%M:%S", time.localtime(ts))


def auth_lines(cycle: int, ts: float) -> list[str]:
    """What sshd wrote in the five minutes before cycle ``cycle`` (at ``ts``)."""
    lines = []
    noise = ["198.51.100.23", "192.0.2.140", "198.51.100.87"]
    for n in range(cycle % 3):      # background noise: a failure or two from scanners
        at = ts - 250 + 60 * n
        lines.append(f"{stamp(at)} {HOST} sshd[{4100 + cycle * 10 + n}]: Failed password for "
                     f"invalid user admin from {noise[(cycle + n) % 3]} port {40000 + cycle} ssh2")
    if cycle == 19:                 # a brute force ...
        lines += [f"{stamp(ts - 200 + 12 * n)} {HOST} sshd[{5200 + n}]: Failed password for root "
                  f"from {ATTACKER} port {51000 + n} ssh2" for n in range(9)]
    if cycle == 20:                 # ... and then it got in
        lines.append(f"{stamp(ts - 120)} {HOST} sshd[5301]: Accepted password for alice from "
                     f"{ATTACKER} port 51544 ssh2")
    return lines


def verdict(request: dict[str, Any]) -> str:
    """What the Ollama stand-in answers: the ids it was asked about, judged plainly."""
    ids = finding_ids(request)
    prompt = json.dumps(request)
    said = [why for kind, why in (("process_missing", "the watched nginx is not running"),
                                  ("ssh_bruteforce", "one address is guessing SSH passwords"),
                                  ("login_after", "a login followed its failures"))
            if kind in prompt]
    reason = "; ".join(said) + "." if said else "nothing unusual."
    reason = reason[0].upper() + reason[1:]
    return json.dumps({"severity": "high" if ids else "none", "reason": reason,
                       "findings": [{"id": i, "severity": "high", "reason": "needs a look"}
                                    for i in ids]})


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def named(folder: Path, name: str, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.Popen[bytes]:
    """A Python process whose name is ``name`` (a symlink to the interpreter)."""
    link = folder / "bin" / name
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(os.path.realpath(sys.executable))
    return subprocess.Popen([str(link), *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process this script started, by its pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class LlamaServer:
    """A llama-server stand-in: a model file held open, a loopback connection to a listener
    that stays across its restarts (the same peer in the connection history)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.model = folder / "models" / "llama-3.1-8b-q4_k_m.gguf"
        self.model.parent.mkdir(parents=True, exist_ok=True)
        self.model.write_bytes(b"GGUF" + b"\0" * 4092)
        self.lib = folder / "lib" / "libggml-base.so"
        self.lib.parent.mkdir(parents=True, exist_ok=True)
        self.lib.write_bytes(b"\x7fELF" + b"\0" * 4092)
        self.script = folder / "serve.py"
        self.script.write_text(RUNTIME_SCRIPT)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (again) and wait until it holds its model and its connection."""
        self.stop()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MT_LIB": str(self.lib),
               "MT_PORT": str(self.listener.getsockname()[1]), "MT_MODEL": str(self.model)}
        self.proc = named(self.folder, "llama-server", str(self.script), str(self.model),
                          env=env)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("the llama-server stand-in did not start")

    def stop(self) -> None:
        """Stop it, by its pid."""
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


@contextlib.contextmanager
def llama_server() -> Iterator[LlamaServer]:
    """A LlamaServer in a short folder (its command line is shown), stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="llm-", dir="/tmp") as folder:
        server = LlamaServer(Path(folder))
        try:
            server.start()
            yield server
        finally:
            server.stop()
            server.listener.close()


def sensors_program(home: Path) -> Path | None:
    """A `sensors` on PATH that prints sensors.json (written each cycle from a real capture);
    None when the shared corpus is absent."""
    capture = Path(os.environ.get("AGENT_TEST_DATA", ROOT.parent / "shared" / "data")) / \
        "sensors" / "lm-sensors" / "hjs_asrock.sensors-j.json"
    if not capture.is_file():
        print(f"no {capture}: the screenshots show no temperatures", flush=True)
        return None
    folder = home / "sensors-bin"
    folder.mkdir()
    program = folder / "sensors"
    program.write_text(f"#!/bin/sh\nexec cat {home / 'sensors.json'}\n")
    program.chmod(0o755)
    os.environ["PATH"] = f"{folder}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    return capture


def moved(capture: dict[str, Any], cycle: int) -> dict[str, Any]:
    """The capture cut to four cores (a small home server's CPU), each temperature moved by a
    slow swing of a few degrees, each sensor a little out of step with the others."""
    out: dict[str, Any] = {}
    for chip, features in capture.items():
        if not isinstance(features, dict):
            continue
        kept: dict[str, Any] = {}
        for n, (name, feature) in enumerate(features.items()):
            if name.startswith("Core ") and int(name.split()[1]) > 12:
                continue
            if isinstance(feature, dict):
                delta = 3 * math.sin(cycle / 4 + n / 3) + cycle * 0.15 + n % 3
                feature = {k: round(v + delta, 1) if k.startswith("temp") and
                           k.endswith("_input") and isinstance(v, float) else v
                           for k, v in feature.items()}
            kept[name] = feature
        out[chip] = kept
    return out


def fill_store(home: Path, discord_url: str, ollama_url: str, llama: LlamaServer) -> None:
    """Real cycles over the last two hours by the agent's clock; the last one now."""
    auth_log = home / "auth.log"
    auth_log.write_text("")
    capture = sensors_program(home)
    collectors = ["auth_log", "ping", "processes", "llm_runtimes"]
    if capture is not None:
        collectors.insert(1, "sensors")
    settings = load_settings(environ={}, overrides={
        "DATA_DIR": home / "data", "HOST_NAME": HOST, "COLLECTORS": collectors,
        "AUTH_LOG_PATH": str(auth_log), "AUTH_LOG_BACKEND": "file", "LOG_START_AT": "start",
        "PROCESSES_TO_MONITOR": ["nginx"], "PING_TARGETS": ["127.0.0.1"],
        "OLLAMA_HOST": ollama_url, "DISCORD_WEBHOOK_URL": discord_url})
    start = time.time() - CYCLES * INTERVAL_S
    clock = [start]
    store = Store.open(settings.db_path)
    nginx = named(home, "nginx", "-c", "import time; time.sleep(3600)")
    try:
        agent = Agent(settings, store, make_judge(settings),
                      make_notifiers(settings, io.StringIO()), clock=lambda: clock[0])
        for cycle in range(1, CYCLES + 1):
            clock[0] = start + cycle * INTERVAL_S - 30
            if cycle == NGINX_STOPS_AT:
                stop(nginx)
            if cycle == CYCLES:       # the runtime restarted; the last cycle is the real now
                llama.start()
                clock[0] = time.time()
            if capture is not None:
                (home / "sensors.json").write_text(json.dumps(moved(
                    json.loads(capture.read_text()), cycle)))
            with auth_log.open("a") as log:
                log.writelines(line + "\n" for line in auth_lines(cycle, clock[0]))
            report = agent.run_cycle()
            print(f"cycle {cycle:2}: {len(report['findings'])} finding(s), verdict "
                  f"{report['verdict']['severity']} by {report['verdict']['by']}", flush=True)
    finally:
        stop(nginx)
        store.close()


def start_dashboard(home: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """`web-password` through standard input, then `web` on a free port, until it answers."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "MONITOR_DATA_DIR": str(home / "data"), "MONITOR_HOST_NAME": HOST}
    subprocess.run([sys.executable, str(ROOT / "monitor_agent.py"), "web-password"], cwd=ROOT,
                   env=env, input=(PASSWORD + "\n").encode(), check=True, timeout=120)
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py"), "web"], cwd=ROOT,
                            env={**env, "MONITOR_WEB_PORT": str(port)},
                            stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return url, proc
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError("the dashboard did not start")


def browser(profile: Path) -> webdriver.Chrome:
    """Debian's chromium through Debian's chromedriver (Selenium Manager downloads nothing)."""
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={WIDTH},900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver


def content_height(driver: webdriver.Chrome) -> int:
    """How tall the page's content is, in CSS pixels (not the window's height)."""
    return int(driver.execute_script(
        "var main = document.querySelector('main');"
        "return Math.ceil(Math.max(document.body.scrollHeight,"
        " main ? main.getBoundingClientRect().bottom + window.scrollY + 32 : 0));"))


def settled_height(driver: webdriver.Chrome) -> int:
    """The content's height once it stops changing (charts are drawn after the page loads)."""
    seen = [-1]

    def still(d: webdriver.Chrome) -> bool:
        now = content_height(d)
        same = now == seen[0]
        seen[0] = now
        return same

    WebDriverWait(driver, 30, poll_frequency=0.5).until(still)
    return seen[0]


def shoot(driver: webdriver.Chrome, url: str, out: Path, width: int, mobile: bool = False
          ) -> None:
    """The whole page at ``width`` CSS pixels (twice that in pixels on a phone) into ``out``."""
    scale = 2 if mobile else 1
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": 400, "deviceScaleFactor": scale, "mobile": mobile})
    driver.get(url)
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    height = settled_height(driver)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile})
    driver.execute_async_script(     # two frames after the resize (charts redraw on it)
        "var done = arguments[0]; requestAnimationFrame(function () { "
        "requestAnimationFrame(function () { done(); }); });")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    out.write_bytes(base64.b64decode(shot["data"]))
    print(f"wrote {out.relative_to(ROOT)} ({width} px wide, {height} px high)", flush=True)


def main() -> int:
    """Fill a store, serve it, and save the screenshots."""
    paths = {getattr(route, "path", "") for route in ROUTES}
    with tempfile.TemporaryDirectory(prefix="render-dashboard-") as tmp:
        home = Path(tmp)
        with FakeDiscord() as discord, FakeOllama(behaviour=verdict) as ollama, \
                llama_server() as llama:
            fill_store(home, discord.url, ollama.url, llama)
            url, web = start_dashboard(home)
            driver = browser(home / "profile")
            try:
                driver.get(url + "/login")
                driver.find_element(By.ID, "password").send_keys(PASSWORD)
                driver.find_element(By.ID, "login").click()
                WebDriverWait(driver, 30).until(lambda d: not d.current_url.endswith("/login"))
                store = Store.open(home / "data" / "monitor.db")
                try:
                    missing = [fp for fp, row in store.findings().items()
                               if row.kind == "process_missing"]
                finally:
                    store.close()
                pages = {"overview": "/", "finding": f"/findings/{missing[0]}"}
                for name, path in (("llm", "/llm"), ("metrics", "/metrics"),
                                   ("alerts", "/alerts")):
                    if path in paths:
                        pages[name] = path
                for theme in ("light", "dark"):
                    driver.get(url + "/")
                    driver.execute_script(f"localStorage.setItem('{THEME_KEY}', '{theme}')")
                    for name, path in pages.items():
                        shoot(driver, url + path, DOCS / f"dashboard-{name}-{theme}.png", WIDTH)
                driver.get(url + "/")
                driver.execute_script(f"localStorage.setItem('{THEME_KEY}', 'light')")
                shoot(driver, url + "/", DOCS / "dashboard-phone-light.png", PHONE[0],
                      mobile=True)
            finally:
                driver.quit()
                stop(web)
    return 0


if __name__ == "__main__":
    sys.exit(main())
