"""The dashboard in a real browser: headless Chromium (Debian's chromium and chromium-driver)
driven through selenium, against a real `monitor_agent.py web` process on loopback, over a store
that real agent cycles fill (the processes collector watching two missing processes, alerting on
the loopback fake Discord; ping of 127.0.0.1 for the metrics).

Log in, see the real cycle, acknowledge a finding with its button and see the next real cycle
hold its repeat back (while the other finding is repeated), switch the theme, log out; a wrong
password, and POSTs without the CSRF token; every injection payload shown as inert text on a
finding's page, the findings list and the overview; every page of the menu in a phone-sized and
a desktop window, without a sideways scroll, a console error or a policy violation. One dashboard
and one browser serve the whole module: each takes seconds to start."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from agent.cycle import Agent
from agent.web.views import text as shown_as
from alerts.console import ConsoleNotifier
from alerts.discord import DiscordNotifier
from analysis.rules import RulesJudge
from collectors.llm_runtimes import ACCESS_HINT
from foundation.settings import load_settings
from foundation.store.data_storage import DependencyRow, Store
from tests.conftest import ROOT
from tests.fakes.discord_server import FakeDiscord
from tests.injection_payloads import HIDDEN_TEXT, MARKUP, PAYLOADS
from tests.procs import agent_env, stop, unique_name
from tests.test_web_pages2 import external, save_llm_cycle
from tests.web_support import PASSWORD, Clock, add_finding

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# headless, and nothing that reaches out to Google: the network here is closed
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,900")
WAIT_S = 90.0            # generous: a page or a cycle beside stress-ng; a pass takes a second
COOLDOWN_MIN = 1         # the shortest ALERT_COOLDOWN_MINUTES: the next cycle is past it
EVERY_PAYLOAD = PAYLOADS + HIDDEN_TEXT + MARKUP
PHONE = (390, 844)        # CSS pixels of a phone's window

# Installed before any script of every page (DevTools' addScriptToEvaluateOnNewDocument, which
# the page's CSP does not apply to): a call of alert/confirm/prompt, which is what the payloads
# would run, sets window.__pwned instead of opening a dialog; each Content-Security-Policy or
# Trusted Types violation is kept in window.__csp.
SENTINEL = """
window.__pwned = undefined;
window.__csp = [];
["alert", "confirm", "prompt", "print"].forEach(function (name) {
  window[name] = function () { window.__pwned = name; };
});
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI + " " + e.sourceFile + ":" +
                    e.lineNumber);
});
"""
# a POST from the page as its own script would send it; the answer's status and text
FETCH = """
var done = arguments[arguments.length - 1];
fetch(arguments[0], {method: "POST", credentials: "same-origin", body: arguments[1],
                     headers: Object.assign({"Content-Type": "application/x-www-form-urlencoded",
                                             "Accept": "application/json"}, arguments[2])})
  .then(function (r) { return r.text().then(function (t) { done([r.status, t]); }); })
  .catch(function (e) { done([0, String(e)]); });
"""
GET_STATUS = """
var done = arguments[arguments.length - 1];
fetch(arguments[0], {credentials: "same-origin", headers: {"Accept": "application/json"}})
  .then(function (r) { done(r.status); }).catch(function (e) { done(String(e)); });
"""
# a page's elements in order, each as its tag and its attribute names (not their values)
SHAPE = """
var root = document.querySelector(arguments[0]);
return Array.prototype.map.call(root.querySelectorAll("*"), function (el) {
  var names = Array.prototype.map.call(el.attributes, function (a) { return a.name; })
    .filter(function (n) { return n !== "selected"; }).sort();
  return el.tagName + "[" + names.join(",") + "]";
});
"""
# all a page's checks read in one round trip: its shape, how far it is wider than the window,
# the textContent of each selector's elements, the selectors not shown, and the sentinel's
PAGE = """
var shape = Function.prototype.call.bind(Array.prototype.map);
return {
  shape: shape(document.querySelectorAll("html *"), function (el) {
    var names = shape(el.attributes, function (a) { return a.name; })
      .filter(function (n) { return n !== "selected"; }).sort();
    return el.tagName + "[" + names.join(",") + "]";
  }),
  overflow: document.documentElement.scrollWidth - window.innerWidth,
  texts: arguments[0].map(function (selector) {
    return shape(document.querySelectorAll(selector), function (el) { return el.textContent; });
  }),
  hidden: arguments[1].filter(function (selector) {
    var el = document.querySelector(selector);
    return !el || el.getClientRects().length === 0;
  }),
  pwned: window.__pwned === undefined ? null : String(window.__pwned),
  csp: window.__csp || []
};
"""
# each table's box on the page: [its table's id, how wide the table is, how wide its box]
TABLES = """
return Array.prototype.map.call(document.querySelectorAll("main .table"), function (box) {
  var table = box.querySelector("table");
  var card = box.closest("section");
  return [(table && table.id) || (card && card.id) || "", box.scrollWidth, box.clientWidth];
});
"""
# how many lines the snooze form's label takes (its words, above the choice)
SNOOZE_LINES = """
var words = document.querySelector("#snooze-form label > span");
return words ? words.getBoundingClientRect().height /
  parseFloat(window.getComputedStyle(words).lineHeight) : null;
"""
FINDING_TEXTS = ("#about dd.untrusted", "#judged dd.untrusted", "#labels td.untrusted",
                 "#evidence li")
OVERVIEW_TEXTS = ('h1 [data-field="host"]', '#last-cycle [data-field="last_cycle.verdict.reason"]',
                  "#collectors tbody > tr > td:first-child", "#collectors td.untrusted",
                  "#dependencies tbody > tr > td:first-child", "#dependencies td.untrusted")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class World:
    """The agent's side: its settings, store, a clock for its cycles, the fake Discord it posts
    to, the two processes it misses (the one the tests acknowledge, the other left alone), and
    the dashboard process serving that store."""

    settings: Any
    store: Store
    agent: Agent
    clock: Clock
    discord: FakeDiscord
    acked: str
    control: str
    url: str
    web: subprocess.Popen[bytes]
    web_log: Path

    def cycle(self) -> dict[str, Any]:
        """One real cycle, now, and past the cooldown of the cycle before."""
        self.clock.now = max(time.time(), self.clock.now + 60 * COOLDOWN_MIN + 1)
        return self.agent.run_cycle()

    def fingerprint(self, process: str) -> str:
        """The open finding about a missing process."""
        [fp] = [fp for fp, row in self.store.findings().items()
                if row.kind == "process_missing" and row.key == process]
        return fp

    def told(self, process: str) -> int:
        """How many messages the fake Discord accepted about a process."""
        return sum(process in json.dumps(a.payload) for a in self.discord.accepted)

    def log(self) -> str:
        """What the dashboard logged so far."""
        return self.web_log.read_text(errors="replace")


def _start_dashboard(home: Path, log_path: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """`web-password` from a pipe, then `monitor_agent.py web` on a free loopback port, up."""
    env = agent_env(home)
    done = subprocess.run([sys.executable, str(ROOT / "monitor_agent.py"), "web-password"],
                          cwd=ROOT, env=env, input=(PASSWORD + "\n").encode(),
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "monitor_agent.py"), "web"],
                                cwd=ROOT, env=agent_env(home, WEB_PORT=str(port)),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + WAIT_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the dashboard exited with {proc.returncode}: "
                        f"{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(url + "/login", timeout=5).status_code == 200:
                return url, proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop(proc)
            pytest.fail(f"the dashboard did not answer: {log_path.read_text(errors='replace')}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A store filled by a real cycle that finds two watched processes missing and alerts on the
    fake Discord; the dashboard serving it, its password set through standard input."""
    home = tmp_path_factory.mktemp("browser-home")
    acked, control = unique_name(), unique_name()
    with contextlib.ExitStack() as stack:
        discord = stack.enter_context(FakeDiscord())
        settings = load_settings(environ={}, overrides={
            "DATA_DIR": home / "data", "COLLECTORS": ["processes", "ping"],
            "PING_TARGETS": ["127.0.0.1"],
            "PROCESSES_TO_MONITOR": [acked, control], "ALERT_COOLDOWN_MINUTES": COOLDOWN_MIN,
            "DISCORD_WEBHOOK_URL": discord.url})
        store = Store.open(settings.db_path)
        stack.callback(store.close)
        clock = Clock(time.time() - 120)       # the first cycle, two minutes ago
        agent = Agent(settings, store, RulesJudge(),
                      {"console": ConsoleNotifier(io.StringIO()),
                       "discord": DiscordNotifier(settings, timeout_s=10.0)}, clock=clock)
        first = agent.run_cycle()
        assert {f["summary"] for f in first["findings"]} == {
            f"watched process {acked!r} is not running",
            f"watched process {control!r} is not running"}
        assert len(discord.accepted) >= 1
        log_path = home / "web.log"
        url, proc = _start_dashboard(home, log_path)
        stack.callback(stop, proc)
        yield World(settings, store, agent, clock, discord, acked, control, url, proc, log_path)


class Browser:
    """One headless Chromium through chromedriver, on the world's dashboard."""

    def __init__(self, driver: webdriver.Chrome, url: str) -> None:
        self.driver = driver
        self.url = url

    def get(self, path: str) -> None:
        """Load a page of the dashboard (returns once it has loaded)."""
        self.driver.get(self.url + path)

    def path(self) -> str:
        """The path of the page shown."""
        return urlsplit(self.driver.current_url).path

    def wait(self, condition: Callable[[Any], Any], what: str) -> Any:
        """Until ``condition(driver)`` is truthy (its value), or fail saying ``what``."""
        return WebDriverWait(self.driver, WAIT_S).until(condition, f"waiting for {what}")

    def at(self, path: str) -> None:
        """Until the browser shows ``path``."""
        self.wait(lambda d: self.path() == path, f"the page {path} (at {self.path()})")

    def css(self, selector: str) -> WebElement:
        """The first element matching ``selector``, once it is there."""
        found: WebElement = self.wait(
            ec.presence_of_element_located((By.CSS_SELECTOR, selector)), selector)
        return found

    def all(self, selector: str) -> list[WebElement]:
        """Every element matching ``selector`` now."""
        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def submit(self, button: str) -> None:
        """Click a form's button and wait for the page it leads to."""
        page = self.driver.find_element(By.TAG_NAME, "html")
        self.css(button).click()
        self.wait(ec.staleness_of(page), f"the page after clicking {button}")
        self.css("main#main")

    def forget_session(self) -> None:
        """Drop the cookies: the next page asks for the login."""
        self.driver.delete_all_cookies()

    def log_in(self, secret: str = PASSWORD) -> None:
        """Log in through the form, as a person does."""
        self.forget_session()
        self.get("/login")
        self.css("#password").send_keys(secret)
        self.submit("#login")

    def theme(self) -> str | None:
        """The data-theme of <html>."""
        value: str | None = self.driver.find_element(By.TAG_NAME, "html").get_attribute(
            "data-theme")
        return value

    def script(self, source: str, *args: Any) -> Any:
        """Run a script in the page; its value."""
        return self.driver.execute_script(source, *args)

    def page(self, texts: tuple[str, ...] = (), shown: tuple[str, ...] = ()) -> dict[str, Any]:
        """The page's checks in one round trip (PAGE); the console's errors and an open dialog
        added as ``troubles`` (PAGE's sentinel values included)."""
        state: dict[str, Any] = self.script(PAGE, list(texts), list(shown))
        troubles = {k: v for k, v in (("script ran", state.pop("pwned")),
                                      ("csp violations", state.pop("csp"))) if v}
        with contextlib.suppress(NoAlertPresentException):
            troubles["dialog open"] = self.driver.switch_to.alert.text
        errors = [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        if errors:
            troubles["console errors"] = errors
        state["troubles"] = troubles
        return state

    def fetch(self, path: str, body: str, headers: dict[str, str] | None = None
              ) -> tuple[int, str]:
        """POST from the page's own script (the session cookie goes with it)."""
        status, answer = self.driver.execute_async_script(FETCH, path, body, headers or {})
        return int(status), str(answer)

    def status_of(self, path: str) -> Any:
        """The status of a GET from the page's own script."""
        return self.driver.execute_async_script(GET_STATUS, path)

    def troubles(self) -> dict[str, Any]:
        """What went wrong on the page so far: a payload's script ran, a dialog is open, a
        Content-Security-Policy violation, an error on the console ({} when nothing did)."""
        found: dict[str, Any] = {}
        pwned, violations = self.script("return [window.__pwned, window.__csp || []]")
        if pwned is not None:
            found["script ran"] = pwned
        if violations:
            found["csp violations"] = violations
        with contextlib.suppress(NoAlertPresentException):
            found["dialog open"] = self.driver.switch_to.alert.text
        errors = [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        if errors:
            found["console errors"] = errors
        return found

    def refused_on_console(self, *answers: tuple[str, int]) -> None:
        """The console's errors since the last look are exactly the refusals ``answers`` (path,
        status) that a test asked for, in order; nothing else."""
        errors = [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        assert len(errors) == len(answers), errors
        for message, (path, status) in zip(errors, answers, strict=True):
            assert message.startswith(self.url + path + " ") and f"status of {status}" in \
                message, (message, path, status)

    def overflow(self) -> int:
        """How far the page is wider than the window (0 or less: no sideways scroll)."""
        return int(self.script("return document.documentElement.scrollWidth - window.innerWidth"))


def _pids(root: int) -> list[tuple[int, float]]:
    """(pid, start time) of a process and all its descendants, to end leftovers by pid."""
    try:
        proc = psutil.Process(root)
        return [(p.pid, p.create_time()) for p in [proc, *proc.children(recursive=True)]]
    except psutil.NoSuchProcess:
        return []


@pytest.fixture(scope="module")
def browser(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Debian's chromium through Debian's chromedriver (never a downloaded one), headless, on a
    new empty profile, with the sentinel in every page and the browser's console kept."""
    for program in (CHROMIUM, CHROMEDRIVER):
        if not program.is_file():
            pytest.fail(f"{program} is missing: apt-get install chromium chromium-driver "
                        "(make test installs them)")
    folder = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={folder / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER),
                      log_output=str(folder / "chromedriver.log"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")      # Selenium Manager never downloads anything
        driver = webdriver.Chrome(service=service, options=options)
    started = _pids(driver.service.process.pid)
    try:
        driver.set_script_timeout(WAIT_S)
        driver.set_page_load_timeout(WAIT_S)
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": SENTINEL})
        yield Browser(driver, world.url)
    finally:
        started += _pids(driver.service.process.pid)
        driver.quit()
        for pid, created in set(started):       # whatever quit() left behind, by its own pid
            with contextlib.suppress(psutil.NoSuchProcess):
                leftover = psutil.Process(pid)
                if leftover.create_time() == created:
                    leftover.kill()


# -- 1. the operator's path -----------------------------------------------------------------------

def test_log_in_acknowledge_no_repeat_next_cycle_theme_and_log_out(world: World,
                                                                    browser: Browser) -> None:
    browser.forget_session()
    browser.get("/")
    browser.at("/login")                               # every page asks for the login first
    browser.css("#password").send_keys(PASSWORD)
    browser.submit("#login")
    browser.at("/")

    # the overview: the real cycle's collector and its open findings
    rows = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.all("#collectors tbody > tr")]
    assert rows[0][:2] == ["processes", "up"], rows
    opened = len(world.store.findings())
    assert browser.css("#open-findings h2").text == f"Open findings: {opened}"
    assert int(browser.css('#open-findings [data-field="open.high"]').text) >= 2
    assert browser.css("#last-cycle .big").text.endswith(("s", "min"))
    assert browser.troubles() == {}

    # open the finding from the list
    fingerprint = world.fingerprint(world.acked)
    browser.css('nav a[href="/findings"]').click()
    browser.at("/findings")
    browser.css(f'a[href="/findings/{fingerprint}"]').click()
    browser.at(f"/findings/{fingerprint}")
    assert f"Process {world.acked} is not running" in browser.css("main h1").text
    assert f"systemctl status {world.acked}" in browser.css("#todo").text

    # acknowledge it with its button (the form carries the page's CSRF token)
    told, control_told = world.told(world.acked), world.told(world.control)
    browser.submit("#ack")
    browser.at(f"/findings/{fingerprint}")
    flash = browser.css(".flash").text
    assert f"acknowledged {fingerprint} at high until the finding resolves" in flash
    assert not browser.css("#ack-form").is_displayed() and browser.css("#unack").is_displayed()
    assert browser.troubles() == {}

    # the agent's next real cycle holds the repeat back, and says so
    report = world.cycle()
    about = {(a["channel"], a["status"], a.get("reason")) for a in report["alerts"]
             if fingerprint in a.get("findings", [])}
    assert about == {("console", "suppressed", "ack"), ("discord", "suppressed", "ack")}
    assert world.told(world.acked) == told
    # the same cycle did repeat the other finding: past the cooldown, with Discord listening
    assert world.told(world.control) == control_told + 1
    browser.get(f"/findings/{fingerprint}")
    assert "until it resolves" in browser.css("#actions").text

    # the theme switches, and stays switched across a reload and on another page
    before = browser.theme()
    assert before in ("light", "dark")
    browser.css("#theme-toggle").click()
    browser.wait(lambda d: browser.theme() not in (None, before), "the theme to switch")
    after = browser.theme()
    browser.driver.refresh()
    browser.css("main#main")
    assert browser.theme() == after
    browser.get("/")
    assert browser.theme() == after
    browser.css("#theme-toggle").click()               # back, for the tests after this one
    browser.wait(lambda d: browser.theme() == before, "the theme to switch back")

    # log out: the next page asks for the login again, and the JSON says 401
    browser.submit("#logout")
    browser.at("/login")
    browser.get("/findings")
    browser.at("/login")
    assert browser.css("#password").is_displayed()
    assert browser.troubles() == {}
    assert browser.status_of("/api/overview") == 401
    browser.refused_on_console(("/api/overview", 401))


# -- 2. what is refused ---------------------------------------------------------------------------

def test_a_wrong_password_and_posts_without_the_csrf_token_are_refused(world: World,
                                                                       browser: Browser) -> None:
    browser.log_in("not the password at all")
    assert browser.css("#login-message").text == "Wrong password."
    assert browser.path() == "/login"
    assert [c for c in browser.driver.get_cookies() if c["name"] == "hm_session"] == []
    browser.get("/")
    browser.at("/login")
    assert "failed login from 127.0.0.1" in world.log()
    browser.refused_on_console(("/login", 401))   # the 401 of the login form is the console's only error

    browser.log_in()
    browser.at("/")
    target = world.fingerprint(world.control)
    browser.get(f"/findings/{target}")
    token = browser.css('meta[name="csrf-token"]').get_attribute("content")
    assert token and browser.css('#ack-form input[name="csrf_token"]').get_attribute(
        "value") == token
    silences = len(world.store.silences(time.time(), include_ended=True))
    assert browser.troubles() == {}
    refused = (
            (f"/findings/{target}/ack", "duration=", {}),                          # none
            (f"/findings/{target}/ack", "duration=&csrf_token=" + "x" * 43, {}),    # wrong
            (f"/findings/{target}/ack", "duration=", {"X-CSRF-Token": "x" * 43}),
            ("/maintenance", "duration=1h", {}),
            ("/logout", "", {}))
    for path, body, headers in refused:
        status, answer = browser.fetch(path, body, headers)
        assert status == 403 and "CSRF" in answer, (path, headers, status, answer)
    browser.refused_on_console(*((path, 403) for path, _, _ in refused))
    assert len(world.store.silences(time.time(), include_ended=True)) == silences
    assert "refused: missing or wrong CSRF token" in world.log()
    # the session was alive all along (the 403s were the token's), and the right token works
    assert browser.status_of("/api/overview") == 200
    status, answer = browser.fetch("/maintenance", "duration=off", {"X-CSRF-Token": token})
    assert status == 200, answer
    assert browser.troubles() == {}


# -- 3. untrusted text ----------------------------------------------------------------------------

def _planted(name: str) -> str:
    """The fingerprint of the finding planted with a payload."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def _plant(store: Store, fingerprint: str, source: str, text: str) -> None:
    """A finding whose attacker-written fields (summary, user and host names, evidence, the
    LLM's reason) all hold ``text``."""
    details = {"facts": {"process": text}, "labels": {"user": text, "host": text},
               "reason": text, "rule_severity": "high", "evidence": [text, text]}
    add_finding(store, time.time() - 30, fingerprint=fingerprint, source=source, key=text,
                summary=text, details=details)


def _attacked_cycle(store: Store, real: dict[str, Any], text: str, now: float) -> None:
    """The last cycle again, with ``text`` where a host name, the LLM's words and a collector's
    note go; and docker down with ``text`` as its error."""
    report = json.loads(json.dumps(real))
    report["host"] = text
    report["verdict"]["reason"] = text
    report["collectors"]["processes"]["note"] = text
    with store.transaction() as tx:
        tx.save_cycle(now, 0.1, "high", "rules", report)
    store.record_dependencies([DependencyRow("docker", False, now - 600, text, now)])


def _as_text(shown: list[str | None], text: str, count: int = 1) -> None:
    """Each of ``count`` fields shows ``text`` as the dashboard's neutraliser gives it,
    character for character (a long one cut short with an ellipsis)."""
    clean = shown_as(text, cap=10**6)
    assert len(shown) == count, shown
    for field in shown:
        assert field is not None
        assert field == clean or (field.endswith("…") and clean.startswith(field[:-1])), \
            (field[:200], clean[:200])


def _finding_shown(texts: list[list[str | None]], text: str) -> None:
    """The finding's untrusted fields (FINDING_TEXTS) show ``text``: what it is about and its
    summary, the judge's reason, the user and host names, the evidence lines."""
    about, reason, labels, evidence = texts
    _as_text(about, text, 2)
    _as_text(reason, text)
    _as_text(labels, text, 2)
    _as_text(evidence, text, 2)


def _overview_shown(texts: list[list[str | None]], text: str) -> None:
    """The overview's untrusted fields (OVERVIEW_TEXTS) show ``text``: the host name, the
    LLM's reason, the collector's note, docker's error."""
    host, reason, collectors, notes, names, errors = texts
    _as_text(host, text)
    _as_text(reason, text)
    _as_text([n for c, n in zip(collectors, notes, strict=True) if c == "processes"], text)
    _as_text([e for n, e in zip(names, errors, strict=True) if n == "docker"], text)


def test_every_injection_payload_is_shown_as_text(world: World, browser: Browser) -> None:
    store = world.store
    real = store.last_cycle()
    assert real is not None
    browser.log_in()
    browser.at("/")
    # the sentinel and the violation log can fail: a script that calls alert() is caught, and
    # Trusted Types refuse an HTML string (a violation the log keeps)
    browser.script("alert('x')")
    assert browser.troubles() == {"script ran": "alert"}
    with contextlib.suppress(Exception):
        browser.script("document.body.insertAdjacentHTML('beforeend', '<b>x</b>')")
    caught = browser.troubles()
    assert "require-trusted-types-for" in " ".join(caught.get("csp violations", [])), caught
    assert "TrustedHTML" in " ".join(e["message"] for e in caught.get("console errors", []))
    browser.script("window.__csp = []")

    planted = []
    try:
        _plant(store, "feedfacefeedface", "reference", "benign")
        planted.append("feedfacefeedface")
        _attacked_cycle(store, real, "benign", time.time())
        browser.get("/findings/feedfacefeedface")
        reference = {"finding": browser.page()}
        browser.get("/")
        reference["overview"] = browser.page()
        assert reference["finding"]["troubles"] == reference["overview"]["troubles"] == {}
        for name, payload in EVERY_PAYLOAD:
            fingerprint = _planted(name)
            _plant(store, fingerprint, "attacked", payload)
            planted.append(fingerprint)
            _attacked_cycle(store, real, payload, time.time())
            browser.get(f"/findings/{fingerprint}")
            page = browser.page(FINDING_TEXTS, ("main#main h1", "#about", "#ack-form"))
            assert page["troubles"] == {}, name
            # not one element or attribute more or less than a benign finding's page
            assert page["shape"] == reference["finding"]["shape"], name
            assert page["hidden"] == [] and page["overflow"] <= 0, (name, page)
            _finding_shown(page["texts"], payload)
            browser.get("/")
            page = browser.page(OVERVIEW_TEXTS, ("main#main h1", "#last-cycle", "#collectors"))
            assert page["troubles"] == {}, name
            assert page["shape"] == reference["overview"]["shape"], name
            assert page["hidden"] == [] and page["overflow"] <= 0, (name, page)
            _overview_shown(page["texts"], payload)
        # every payload in one list, written again by the live refresh (live.js's textContent)
        browser.get("/findings?source=attacked")
        first = browser.script(SHAPE, "main")
        # live.js refreshes every 5 s, and at once when the tab is shown again: say so
        browser.script("window.__refreshed = 0; document.addEventListener('live:data', "
                       "function () { window.__refreshed += 1; }); "
                       "document.dispatchEvent(new Event('visibilitychange'));")
        browser.wait(lambda d: browser.script("return window.__refreshed") >= 1,
                     "a live refresh of the findings list")
        assert browser.script(SHAPE, "main") == first
        rows = tuple(f'#main tr:has(a[href="/findings/{_planted(name)}"]) [data-field="summary"]'
                     for name, _ in EVERY_PAYLOAD)
        page = browser.page(rows)
        assert page["troubles"] == {} and page["overflow"] <= 0
        for (_, payload), shown in zip(EVERY_PAYLOAD, page["texts"], strict=True):
            _as_text(shown, payload)
    finally:
        with store.transaction() as tx:                  # the planted findings resolve
            for fingerprint in planted:
                tx.resolve_finding(fingerprint, time.time())
        store.record_dependencies([DependencyRow("docker", True, time.time(), None,
                                                 time.time())])
        world.cycle()                                    # and a real cycle is the last again


# -- 4. every page, on a phone and on a desktop ---------------------------------------------------

def _refreshed(browser: Browser) -> None:
    """Until the page's live refresh has run once (live.js refreshes at once when the tab is
    shown again: the test says so), when the page has one."""
    if not browser.script("return Boolean(document.querySelector('main[data-live-src]'))"):
        return
    browser.script("window.__refreshed = 0; document.addEventListener('live:data', "
                   "function () { window.__refreshed += 1; }); "
                   "document.dispatchEvent(new Event('visibilitychange'));")
    browser.wait(lambda d: browser.script("return window.__refreshed") >= 1,
                 f"a live refresh of {browser.path()}")


def _llm_runtimes_and_sensors(store: Store, now: float) -> None:
    """What a busy LLM host shows: a cycle that saw two runtimes, one with a long command line,
    listening beyond loopback and talking to IPv6 and IPv4 peers with long reverse names; and
    an hour of temperatures under long sensor names."""
    peers = [
        external("2606:4700:4700::1111", "one.one.one.one", provider="Cloudflare, Inc."),
        external("2a03:2880:f12f:183:face:b00c:0:25de",
                 "edge-star-mini6-shv-01-ams4.facebook.com", provider="Meta Platforms, Inc.",
                 local="[2001:db8::5]:51234"),
        external("203.0.113.7", "ec2-203-0-113-7.eu-central-1.compute.amazonaws.com",
                 provider="Amazon.com, Inc.", status="TIME_WAIT", rdns_unconfirmed=(
                     "unconfirmed: its A/AAAA records do not include 203.0.113.7")),
        external("104.18.32.47", "registry.ollama.ai", allowed_by="ollama.ai",
                 provider="Cloudflare, Inc.")]
    command = ("/opt/llama.cpp/build/bin/llama-server --model /srv/models/"
               "Meta-Llama-3.1-70B-Instruct-Q4_K_M-00001-of-00002.gguf --host 0.0.0.0 --port 8080 "
               "--ctx-size 32768 --n-gpu-layers 999 --threads 16 --parallel 4 --cont-batching "
               "--flash-attn --api-key-file /etc/llama-server/api-keys.txt")
    save_llm_cycle(store, now, [
        {"pid": 4242, "name": "llama-server", "runtime": "llama.cpp", "score": 11,
         "cmdline": command, "exposed": True, "connections": peers,
         "signals": {"name": "llama-server", "cmdline": True, "model_arg": True,
                     "model_file": True, "large_memory": True, "rss_mb": 42600.0,
                     "libraries": ["ggml", "cuda"]},
         "listening": [{"address": "0.0.0.0:8080", "proto": "tcp", "class": "unspecified"},
                       {"address": "[::]:8080", "proto": "tcp", "class": "unspecified"}]},
        {"pid": 4343, "name": "ollama", "runtime": "ollama", "score": 6,
         "cmdline": "/usr/local/bin/ollama serve", "exposed": False, "connections": [],
         "connections_error": ACCESS_HINT,
         "signals": {"name": "ollama", "rss_mb": 5120.0, "libraries": ["ggml"]},
         "listening": [{"address": "127.0.0.1:11434", "proto": "tcp", "class": "loopback"}]}])
    sensors = ("coretemp-isa-0000/Package id 0", "nct6798-isa-02a0/PCH_CHIP_CPU_MAX_TEMP",
               "nvme-pci-0200/Composite", "amdgpu-pci-0300/junction")
    with store.transaction() as tx:
        tx.add_history([(f"sensor.temperature_c[{name}]", now - 3600 + 300 * i, 40.0 + i + n)
                        for i in range(12) for n, name in enumerate(sensors)])


@pytest.mark.parametrize(("width", "height", "mobile"), [(*PHONE, True), (1280, 900, False)],
                         ids=["phone", "desktop"])
def test_every_page_fits_the_window_and_runs_clean(world: World, browser: Browser, width: int,
                                                   height: int, mobile: bool) -> None:
    """The overview first, then every page of the menu and a finding: laid out at the window's
    width without a sideways scroll, the menu and buttons at hand, no console error and no
    Content-Security-Policy violation, also after a live refresh (which redraws charts). On a
    desktop every table fits its box too (on a phone a wide one scrolls inside it), with busy
    LLM runtimes (a long command line, IPv6 peers, long reverse names) and long sensor names,
    and the snooze form's words are one line."""
    browser.log_in()
    browser.at("/")
    menu = [str(a.get_attribute("href")).removeprefix(world.url)
            for a in browser.all("header nav a")]
    pages = ["/", *menu, f"/findings/{world.fingerprint(world.control)}"]
    assert "/findings" in pages and "/llm" in pages and "/metrics" in pages
    _llm_runtimes_and_sensors(world.store, time.time())
    browser.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 3 if mobile else 1,
        "mobile": mobile})
    try:
        for path in dict.fromkeys(pages):
            browser.get(path)
            browser.css("main#main")
            # the page's viewport meta is honoured: it is laid out at the window's width
            assert browser.script("return window.innerWidth") == width, path
            _refreshed(browser)
            assert browser.overflow() <= 0, (path, browser.script(
                "return document.documentElement.scrollWidth"))
            tables = browser.script(TABLES)          # a hidden one is 0 wide in 0
            if not mobile:
                assert [t for t in tables if t[1] > t[2]] == [], (path, tables)
            for control in ("#theme-toggle", "#logout", 'header nav a[href="/findings"]'):
                assert browser.css(control).is_displayed(), (path, control)
            assert browser.troubles() == {}, path
        if not mobile:                                  # the finding's page, the last
            assert browser.css("#snooze-form").is_displayed()
            assert browser.script(SNOOZE_LINES) < 1.5
        browser.get("/llm")
        assert browser.css("#runtimes").is_displayed() and len(browser.all("#runtimes .cmdline")) == 2
    finally:
        browser.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        world.cycle()                                    # a real cycle is the last again
