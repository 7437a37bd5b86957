"""`python monitor_agent.py check`: a live check of every configured part, each with its fix."""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

import collectors
from agent.store_commands import health
from alerts.channels import missing_channels
from collectors import ollama_health
from collectors.auth import compiled
from foundation import untrusted
from foundation.context import CollectContext, CommandError, run_command
from foundation.redact import redact
from foundation.settings import Settings
from foundation.store.files import make_private_dir

TIMEOUT_S = 5.0
PRIVILEGED_NMAP = ("-sS", "-sU", "-sA", "-sW", "-sM", "-sN", "-sF", "-sX", "-sY", "-sZ", "-sO",
                   "-O", "--privileged")
CAP_NET_RAW = 13


@dataclass(frozen=True)
class Outcome:
    """One check's answer: ok, what was seen, and how to fix it when not ok."""

    ok: bool
    detail: str
    fix: str = ""


def _collector_check(name: str) -> Callable[[Settings], Outcome]:
    """Run a collector once, read-only (nothing is stored), and report whether its source is there."""
    def run(settings: Settings) -> Outcome:
        result = collectors.load(name).collect(CollectContext(settings, time.time(), {}))
        if result.available:
            return Outcome(True, f"{name} source readable")
        return Outcome(False, f"{name} source unavailable",
                       result.note or "see " + {
                           "syslog": "docs/logs.md", "auth_log": "docs/auth-log.md",
                           "sensors": "docs/sensors-and-ping.md",
                           "containers": "docs/nmap-and-containers.md"}.get(name, "README.md"))
    return run


def check_docker(settings: Settings) -> Outcome:
    """The Docker API answers (with containers watched, the collector reports an engine out of
    reach as an observation, not as an unavailable source)."""
    result = collectors.load("containers").collect(CollectContext(settings, time.time(), {}))
    engine = result.observations.get("engine")
    if engine is None:
        return Outcome(False, "the Docker API does not answer, so the watched containers' state "
                              "is unknown", result.note or "see docs/nmap-and-containers.md")
    return Outcome(True, f"Docker API {engine['api_version']} answers: {engine['running']} of "
                         f"{engine['containers']} container(s) running")


def check_data_dir(settings: Settings) -> Outcome:
    """The data folder exists (or can be made) and is writable."""
    try:
        make_private_dir(settings.DATA_DIR)   # 0700 when made here, as the agent makes it
        with tempfile.NamedTemporaryFile(dir=settings.DATA_DIR):
            pass
    except OSError as err:
        return Outcome(False, f"DATA_DIR {settings.DATA_DIR} is not writable: {err.strerror}",
                       "create it and give the agent's user write access, or change DATA_DIR")
    return Outcome(True, f"DATA_DIR {settings.DATA_DIR} is writable")


def check_store(settings: Settings) -> Outcome:
    """The store passes PRAGMA quick_check and its backups are recent."""
    ok, detail, fix = health(settings, time.time())
    return Outcome(ok, detail, fix)


def check_ollama(settings: Settings) -> Outcome:
    """Ollama answers and has the model."""
    facts = ollama_health.check(settings.OLLAMA_HOST, settings.OLLAMA_MODEL)
    trouble = ollama_health.problem(facts)
    if trouble:
        return Outcome(False, "the judge's LLM is not usable; the rules decide until it is",
                       trouble)
    loaded = "loaded" if facts["model_loaded"] else "not loaded yet"
    return Outcome(True, f"Ollama {facts['version']} at {facts['host']} has {settings.OLLAMA_MODEL} "
                         f"({loaded}), {facts['latency_ms']} ms")


def check_discord(settings: Settings) -> Outcome:
    """The webhook exists: Discord answers GET on a webhook URL with its details, posting nothing."""
    url = settings.DISCORD_WEBHOOK_URL.get_secret_value()
    try:
        response = requests.get(url, timeout=TIMEOUT_S)
    except requests.RequestException as err:
        return Outcome(False, redact(f"Discord webhook unreachable: {type(err).__name__}"),
                       "check the network and DISCORD_WEBHOOK_URL")
    if response.status_code == 200:
        name = str(response.json().get("name", ""))[:60]
        return Outcome(True, f"Discord webhook valid (posts as {name!r})")
    return Outcome(False, f"Discord answered HTTP {response.status_code} for the webhook",
                   "the webhook was deleted or the URL is wrong: create a new one in the "
                   "channel's settings (Integrations, Webhooks) and set DISCORD_WEBHOOK_URL")


def check_home_assistant(settings: Settings) -> Outcome:
    """All its settings are given, the token is accepted and the speaker (and TTS) entities exist."""
    partial = missing_channels(settings).get("home_assistant")
    if partial:
        return Outcome(False, "Home Assistant is only partly configured, so nothing is spoken",
                       f"{partial} (or unset the others to turn speech off)")
    base = settings.HOME_ASSISTANT_URL.rstrip("/")
    headers = {"Authorization": f"Bearer {settings.HOME_ASSISTANT_TOKEN.get_secret_value()}"}
    try:
        api = requests.get(f"{base}/api/", headers=headers, timeout=TIMEOUT_S)
        if api.status_code == 401:
            return Outcome(False, "Home Assistant rejected the token (HTTP 401)",
                           "create a long-lived access token in your Home Assistant profile and "
                           "set HOME_ASSISTANT_TOKEN")
        api.raise_for_status()
        missing = []
        wanted = [settings.GOOGLE_HOME_SPEAKER_ID]
        if settings.HOME_ASSISTANT_TTS_SERVICE == "speak":
            wanted.append(settings.HOME_ASSISTANT_TTS_ENTITY)
        for entity in wanted:
            if requests.get(f"{base}/api/states/{entity}", headers=headers,
                            timeout=TIMEOUT_S).status_code == 404:
                missing.append(entity)
    except requests.RequestException as err:
        return Outcome(False, redact(f"Home Assistant unreachable at {base}: {type(err).__name__}"),
                       "check HOME_ASSISTANT_URL and that Home Assistant runs")
    if missing:
        return Outcome(False, f"Home Assistant has no entity {', '.join(missing)}",
                       "fix GOOGLE_HOME_SPEAKER_ID / HOME_ASSISTANT_TTS_ENTITY (Developer tools, "
                       "States lists the entity ids)")
    return Outcome(True, f"Home Assistant accepts the token; {', '.join(wanted)} present")


def check_alertmanager(settings: Settings) -> Outcome:
    """Alertmanager answers GET /api/v2/status with these credentials (posting nothing)."""
    from alerts import alertmanager  # noqa: PLC0415 - only when Alertmanager is configured
    from alerts.outbox import DeliveryError  # noqa: PLC0415 - as above

    url = settings.ALERTMANAGER_URL.get_secret_value()
    at = alertmanager.where(url)
    try:
        found = alertmanager.status(url, TIMEOUT_S)
    except requests.RequestException as err:
        return Outcome(False, redact(f"Alertmanager unreachable at {at}: {type(err).__name__}"),
                       "check ALERTMANAGER_URL and that Alertmanager runs (port 9093)")
    except (DeliveryError, ValueError) as err:
        return Outcome(False, redact(f"Alertmanager at {at}: {err}"),
                       "check ALERTMANAGER_URL: its address, the path of any --web.route-prefix "
                       "and the user:password@ of its basic auth")
    version = str((found.get("versionInfo") or {}).get("version", "?"))[:40]
    cluster = str((found.get("cluster") or {}).get("status", "?"))[:40]
    return Outcome(True, f"Alertmanager {version} at {at} answers (cluster {cluster}); findings "
                         f"at or above {settings.ALERTMANAGER_MIN_SEVERITY} are posted there")


def check_apprise_url(settings: Settings, number: int) -> Outcome:
    """Apprise parses entry ``number`` of APPRISE_URLS into a service (nothing is sent)."""
    from alerts.apprise_channel import parse  # noqa: PLC0415 - apprise (~35 MB) only when set

    target = settings.APPRISE_URLS[number - 1]
    service, problem = parse(target.url.get_secret_value())
    if problem:
        return Outcome(False, f"Apprise cannot use this URL: {problem}",
                       f"fix entry {number} of APPRISE_URLS (each service's URL form: "
                       "https://appriseit.com; test-alert sends a test message)")
    takes = ", ".join(p if p != "alert" else f"alert ({target.min_severity} and up)"
                      for p in target.purposes)
    return Outcome(True, f"Apprise reads it as {service}; takes {takes}; nothing sent "
                         "(test-alert sends a test message)")


def check_apprise(settings: Settings) -> Outcome:
    """Every APPRISE_URLS entry parses for Apprise (run_checks shows each on its own line)."""
    failed = [n for n, _ in enumerate(settings.APPRISE_URLS, 1)
              if not check_apprise_url(settings, n).ok]
    return Outcome(not failed, f"{len(settings.APPRISE_URLS)} Apprise URL(s), "
                               f"{len(failed)} that Apprise cannot use")


def apprise_lines(settings: Settings) -> list[tuple[str, Outcome | None]]:
    """One check line per Apprise URL, named by its channel and its label (never its secrets)."""
    out: list[tuple[str, Outcome | None]] = []
    for number, target in enumerate(settings.APPRISE_URLS, 1):
        try:
            outcome = check_apprise_url(settings, number)
        except Exception as err:  # noqa: BLE001 - a check that breaks is itself a failed check
            outcome = Outcome(False, redact(f"check failed: {type(err).__name__}"),
                              "report this as a bug")
        out.append((f"apprise:{number} ({target.label})", outcome))
    return out


def _has_cap(bit: int) -> bool:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> bit & 1)
    except OSError:
        pass
    return False


def check_nmap(settings: Settings) -> Outcome:
    """nmap is installed and allowed the configured scan type."""
    if shutil.which("nmap") is None:
        return Outcome(False, "nmap is not installed", "apt install nmap")
    try:
        version = run_command(["nmap", "--version"], TIMEOUT_S).stdout.decode().split("\n")[0]
    except CommandError as err:
        return Outcome(False, f"nmap does not run: {err}", "reinstall nmap")
    options = settings.NMAP_SCAN_OPTIONS.split()
    privileged = [o for o in options if o in PRIVILEGED_NMAP]
    if privileged and os.geteuid() != 0 and not _has_cap(CAP_NET_RAW):
        return Outcome(False, f"{version}; NMAP_SCAN_OPTIONS use {' '.join(privileged)}, which "
                              "need raw sockets", "use -sT, or grant CAP_NET_RAW CAP_NET_ADMIN in "
                              "the unit (see deploy/monitor-agent.service) and add --privileged")
    return Outcome(True, f"{version}; allowed to run {settings.NMAP_SCAN_OPTIONS}")


def check_auth_scanner(settings: Settings) -> Outcome:
    """Which auth log scanner runs: the C one (built at install when Vectorscan's headers and a C
    compiler were there, or by `make native`) or the same patterns in Python. Either is ok."""
    if compiled.authscan is not None:
        return Outcome(True, "the C scanner (Vectorscan) is built")
    return Outcome(True, "the C scanner is not built, so the auth log is scanned in Python, about "
                         "5x slower (to build it: apt install libvectorscan-dev gcc python3-dev, "
                         "then reinstall; in a checkout: make native)")


def check_llm_traffic(settings: Settings) -> Outcome:
    """The eBPF object, libbpf, the privileges and an OpenSSL 3 to attach to (without attaching)."""
    from collectors.llm_traffic import bpf, trace  # noqa: PLC0415 - only when llm_traffic is enabled

    reason = trace.unavailable_reason()
    if reason is not None:
        return Outcome(False, "llm_traffic cannot attach its uprobes", reason)
    try:
        modes = [f"{lib} ({bpf.plan(lib)[1]} functions)" for lib in trace.find_libssl()]
    except bpf.BpfUnavailable as err:
        return Outcome(False, "llm_traffic cannot attach its uprobes", str(err))
    return Outcome(True, "the eBPF object, libbpf, the privileges and libssl are there: the "
                         f"uprobes can attach to {', '.join(modes)}")


def check_mqtt(settings: Settings) -> Outcome:
    """The broker takes the login and a message, with a client of its own (alerts/mqtt.py)."""
    from alerts.mqtt import probe  # noqa: PLC0415 - paho only when MQTT_URL is set

    return Outcome(*probe(settings))


def _home_assistant_set(settings: Settings) -> bool:
    """Any of its settings given: then all must be right (a half-done setup is a failure)."""
    return bool(settings.HOME_ASSISTANT_URL or settings.HOME_ASSISTANT_TOKEN.get_secret_value()
                or settings.GOOGLE_HOME_SPEAKER_ID)


def _docker_hint(settings: Settings) -> str:
    return ("set DOCKER_CONTAINERS_TO_MONITOR" if "containers" in settings.COLLECTORS
            else "add containers to COLLECTORS and set DOCKER_CONTAINERS_TO_MONITOR")


# (name, applies to these settings, the check, what enables it when it does not apply).
# Collectors are checked only when enabled; Docker only when containers are watched.
CHECKS: tuple[tuple[str, Callable[[Settings], bool], Callable[[Settings], Outcome],
                    Callable[[Settings], str]], ...] = (
    ("data folder", lambda s: True, check_data_dir, lambda s: ""),
    ("store", lambda s: True, check_store, lambda s: ""),
    ("ollama", lambda s: True, check_ollama, lambda s: ""),
    ("discord", lambda s: bool(s.DISCORD_WEBHOOK_URL.get_secret_value()), check_discord,
     lambda s: missing_channels(s).get("discord", "")),
    ("home assistant", _home_assistant_set, check_home_assistant,
     lambda s: missing_channels(s).get("home_assistant", "")),
    ("apprise", lambda s: bool(s.APPRISE_URLS), check_apprise,   # a line per URL (run_checks)
     lambda s: missing_channels(s).get("apprise", "")),
    ("alertmanager", lambda s: bool(s.ALERTMANAGER_URL.get_secret_value()), check_alertmanager,
     lambda s: missing_channels(s).get("alertmanager", "")),
    ("mqtt", lambda s: bool(s.MQTT_URL.get_secret_value()), check_mqtt,
     lambda s: missing_channels(s).get("mqtt", "")),
    ("nmap", lambda s: "nmap" in s.COLLECTORS, check_nmap, lambda s: "add nmap to COLLECTORS"),
    ("sensors", lambda s: "sensors" in s.COLLECTORS, _collector_check("sensors"),
     lambda s: "add sensors to COLLECTORS"),
    ("docker", lambda s: "containers" in s.COLLECTORS and bool(s.DOCKER_CONTAINERS_TO_MONITOR),
     check_docker, _docker_hint),
    ("syslog", lambda s: "syslog" in s.COLLECTORS, _collector_check("syslog"),
     lambda s: "add syslog to COLLECTORS"),
    ("auth log", lambda s: "auth_log" in s.COLLECTORS, _collector_check("auth_log"),
     lambda s: "add auth_log to COLLECTORS"),
    ("auth scanner", lambda s: "auth_log" in s.COLLECTORS, check_auth_scanner,
     lambda s: "add auth_log to COLLECTORS"),
    ("llm traffic", lambda s: "llm_traffic" in s.COLLECTORS, check_llm_traffic,
     lambda s: "add llm_traffic to COLLECTORS (docs/llm-traffic.md)"),
)


def run_checks(settings: Settings) -> list[tuple[str, Outcome | None]]:
    """Every check's outcome, None for a part that is not configured."""
    out: list[tuple[str, Outcome | None]] = []
    for name, applies, check, _ in CHECKS:
        if not applies(settings):
            out.append((name, None))
            continue
        if name == "apprise":   # one line per URL, each under its channel name and label
            out.extend(apprise_lines(settings))
            continue
        try:
            out.append((name, check(settings)))
        except Exception as err:  # noqa: BLE001 - a check that breaks is itself a failed check
            out.append((name, Outcome(False, redact(f"check failed: {type(err).__name__}: {err}"),
                                      "report this as a bug")))
    return out


def enabling(name: str, settings: Settings) -> str:
    """What enables a part that is not configured ("" when nothing does)."""
    return next((hint(settings) for part, _, _, hint in CHECKS if part == name), "")


def command(args: argparse.Namespace, settings: Settings) -> int:
    """Print one line per part (tick, cross or not configured, with the setting that enables
    it); 1 when a configured part fails: what is not configured is not a failure."""
    failed = 0
    for name, outcome in run_checks(settings):
        if outcome is None:
            hint = enabling(name, settings)
            print(f"- {name}: not configured" + (f" ({hint})" if hint else ""))
            continue
        # details quote what servers answered (Ollama's version, Discord's webhook name): no
        # escape sequence or forged line gets through; links stay readable (the operator's own URLs)
        detail = untrusted.strip(outcome.detail)
        if outcome.ok:
            print(f"\u2714 {name}: {detail}")
        else:
            failed += 1
            print(f"\u2718 {name}: {detail}"
                  + (f"\n    fix: {untrusted.strip(outcome.fix)}" if outcome.fix
                     else ""))
    return 1 if failed else 0
