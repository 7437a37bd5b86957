"""Load config.py, an optional --config file and MONITOR_<NAME> variables into one frozen object."""
from __future__ import annotations

import builtins
import ipaddress
import json
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_origin
from urllib.parse import urlsplit

from foundation import locations, mqtt_names, trust
from foundation.apprise_urls import AppriseTarget, parse_targets
from foundation.errors import ConfigError as ConfigError  # re-exported: the code imports it here
from foundation.errors import did_you_mean
from foundation.fields import MISSING, Frozen, Invalid, check, rule
from foundation.redact import register_secret
from foundation.secret import SecretStr

PROJECT_DIR = locations.CODE_ROOT                 # the checkout, or site-packages when installed
DEFAULT_CONFIG = PROJECT_DIR / "config.py"       # a top-level module of the wheel too
ENV_PREFIX = "MONITOR_"

DISCORD_HOSTS = ("discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com")
SECRET_SETTINGS = frozenset({"DISCORD_WEBHOOK_URL", "HOME_ASSISTANT_TOKEN", "MQTT_URL",
                             "ALERTMANAGER_URL"})
ENV_ONLY = frozenset({"ALLOW_UNSAFE_FILES"})  # never from a file: it would relax its own check
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?)+$")
_COLLECTOR_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _check_http_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL with a host, for {what}")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as err:
        raise ValueError(f"has a malformed port ({err})") from err
    return value


def check_hhmm(value: str) -> str:
    """Validate a local time written HH:MM (00:00 to 23:59)."""
    if not _HHMM.match(value):
        raise ValueError("must be a time HH:MM between 00:00 and 23:59")
    return value


class Settings(Frozen):
    """Every setting of the agent, validated (``Settings(**values)`` raises Invalid); see config.py
    for what each one means."""

    TEST_MODE: bool
    MONITOR_INTERVAL_SECONDS: int = rule(ge=10, le=86400)
    DATA_DIR: Path
    COLLECTORS: tuple[str, ...]   # names in collectors.REGISTRY, checked by the agent at start
    COLLECTOR_TIMEOUT_SECONDS: float = rule(ge=0, le=3600)
    HISTORY_RETENTION_DAYS: int = rule(ge=1, le=3650)
    STORE_BACKUP_INTERVAL_HOURS: int = rule(ge=1, le=8760)
    STORE_BACKUP_GENERATIONS: int = rule(ge=0, le=100)
    HOST_NAME: str
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"]

    SYSLOG_PATH: Path
    AUTH_LOG_PATH: Path
    SYSLOG_BACKEND: Literal["auto", "file", "journal"]
    AUTH_LOG_BACKEND: Literal["auto", "file", "journal"]
    LOG_START_AT: Literal["end", "start"]
    LOG_MAX_LINE_BYTES: int = rule(ge=256, le=1048576)
    LOG_MAX_BYTES_PER_CYCLE: int = rule(ge=65536)
    FOLLOW_LOGS: bool
    JOURNAL_DIRECTORY: str
    SSH_BRUTEFORCE_MAX_RETRY: int = rule(ge=1, le=10000)
    SSH_BRUTEFORCE_FINDTIME_SECONDS: int = rule(ge=10, le=86400)

    TEMPERATURE_HIGH_CELSIUS: float = rule(gt=0, lt=200)
    TEMPERATURE_CRITICAL_CELSIUS: float = rule(gt=0, lt=200)

    PING_TARGETS: tuple[str, ...]
    PING_COUNT: int = rule(ge=1, le=100)
    PING_TIMEOUT_SECONDS: float = rule(gt=0, le=300)
    PING_LOSS_THRESHOLD_PERCENT: float = rule(gt=0, le=100)

    NMAP_TARGETS: tuple[str, ...]
    NMAP_SCAN_OPTIONS: str
    NMAP_INTERVAL_SECONDS: int = rule(ge=0)
    NMAP_TIMEOUT_SECONDS: int = rule(ge=1, le=86400)

    PROCESSES_TO_MONITOR: tuple[str, ...]
    DOCKER_CONTAINERS_TO_MONITOR: tuple[str, ...]
    DOCKER_HOST: str

    LLM_CONNECTION_ALLOWLIST: tuple[str, ...]
    LLM_RDNS_TIMEOUT_SECONDS: float = rule(gt=0, le=10)
    LLM_TRAFFIC_CAPTURE_BYTES: int = rule(ge=1024, le=1048576)
    LLM_TRAFFIC_SAMPLE: bool

    OLLAMA_HOST: str
    OLLAMA_MODEL: str = rule(min_length=1)
    OLLAMA_NUM_CTX: int = rule(ge=512, le=1048576)
    OLLAMA_TIMEOUT_SECONDS: float = rule(gt=0, le=3600)
    OLLAMA_WARMUP_TIMEOUT_SECONDS: float = rule(gt=0, le=7200)
    OLLAMA_KEEP_ALIVE: str
    ALWAYS_ASK_LLM: bool
    LLM_CACHE_MINUTES: int = rule(ge=0)
    PROMPT_TOKEN_BUDGET: int = rule(ge=500, le=1000000)
    KNOWN_ISSUES_PATH: Path
    CONSTRAINTS_PATH: Path

    DISCORD_WEBHOOK_URL: SecretStr
    APPRISE_URLS: tuple[AppriseTarget, ...]   # foundation/apprise_urls.py; never echoed
    HOME_ASSISTANT_ALLOW_PLAIN_HTTP: bool   # before HOME_ASSISTANT_URL: its validator reads it
    HOME_ASSISTANT_URL: str
    HOME_ASSISTANT_TOKEN: SecretStr
    GOOGLE_HOME_SPEAKER_ID: str
    HOME_ASSISTANT_TTS_ENTITY: str
    HOME_ASSISTANT_TTS_SERVICE: Literal["speak", "google_translate_say"]
    TTS_QUIET_HOURS: str
    TTS_QUIET_HOURS_FLOOR_OVERRIDE: bool
    ALERT_COOLDOWN_MINUTES: int = rule(ge=1)
    ALERT_RETRY_MAX_SECONDS: int = rule(ge=5)
    DAILY_RECAP_TIME: str
    RECAP_GRACE_HOURS: int = rule(ge=0, le=24)

    MQTT_ALLOW_PLAIN_PASSWORD: bool   # before MQTT_URL: its validator reads it
    MQTT_URL: SecretStr               # Home Assistant entities over MQTT (alerts/mqtt.py)
    MQTT_DISCOVERY_PREFIX: str = rule(min_length=1)
    MQTT_BASE_TOPIC: str
    MQTT_CLIENT_ID: str
    MQTT_TLS_CA_FILE: str

    ALERTMANAGER_URL: SecretStr       # the findings' state for a fleet (alerts/alertmanager.py)
    ALERTMANAGER_MIN_SEVERITY: Literal["high", "medium", "low"]
    ALERTMANAGER_DASHBOARD_URL: str

    METRICS_PORT: int = rule(ge=0, le=65535)
    METRICS_BIND: str
    WEB_BIND: str
    WEB_PORT: int = rule(ge=1, le=65535)
    WEB_TRUSTED_PROXIES: tuple[str, ...]
    ALLOW_UNSAFE_FILES: bool = False   # environment or --allow-unsafe-files only (ENV_ONLY)

    # -- validators: one per rule that a type cannot say --------------------------------------

    @check("COLLECTORS", "PING_TARGETS", "NMAP_TARGETS", "PROCESSES_TO_MONITOR",
           "DOCKER_CONTAINERS_TO_MONITOR", "LLM_CONNECTION_ALLOWLIST", "WEB_TRUSTED_PROXIES")
    def _no_duplicates(value: tuple[str, ...], _validated: Mapping[str, Any]) -> tuple[str, ...]:
        if any(not str(v).strip() for v in value):
            raise ValueError("must not contain empty names")
        dupes = sorted({v for v in value if value.count(v) > 1})
        if dupes:
            raise ValueError(f"lists {', '.join(dupes)} more than once")
        return value

    @check("COLLECTORS")
    def _collector_names(value: tuple[str, ...], _validated: Mapping[str, Any]) -> tuple[str, ...]:
        odd = [v for v in value if not _COLLECTOR_NAME.match(v)]
        if odd:
            raise ValueError(f"{odd[0]!r} is not a collector name (lowercase, such as 'syslog')")
        return value

    @check("DAILY_RECAP_TIME")
    def _recap_time(value: str, _validated: Mapping[str, Any]) -> str:
        return check_hhmm(value)

    @check("TTS_QUIET_HOURS")
    def _quiet_hours(value: str, _validated: Mapping[str, Any]) -> str:
        if value:
            start, sep, end = value.partition("-")
            if not sep:
                raise ValueError("must be HH:MM-HH:MM such as 22:00-07:00")
            check_hhmm(start.strip())
            check_hhmm(end.strip())
        return value

    @check("OLLAMA_HOST")
    def _ollama_host(value: str, _validated: Mapping[str, Any]) -> str:
        return _check_http_url(value, "Ollama, e.g. http://127.0.0.1:11434")

    @check("HOME_ASSISTANT_URL")
    def _ha_url(value: str, validated: Mapping[str, Any]) -> str:
        if not value:
            return value
        _check_http_url(value, "Home Assistant, e.g. https://ha.example.net or http://127.0.0.1:8123")
        # the long-lived token goes in every request: in clear only to this machine, as Discord
        parts = urlsplit(value)
        if (parts.scheme == "http" and not mqtt_names.is_loopback_host(parts.hostname or "")
                and not validated.get("HOME_ASSISTANT_ALLOW_PLAIN_HTTP")):
            raise ValueError("plain http to a host other than this machine would send the token in "
                             "clear; use https (Home Assistant's own TLS or a reverse proxy), "
                             "http://127.0.0.1:8123 for Home Assistant on this machine, or set "
                             "HOME_ASSISTANT_ALLOW_PLAIN_HTTP = True to accept the risk")
        return value

    @check("DISCORD_WEBHOOK_URL")
    def _discord_url(value: SecretStr, _validated: Mapping[str, Any]) -> SecretStr:
        url = value.get_secret_value()
        if not url:
            return value
        parts = urlsplit(url)
        host = parts.hostname or ""
        if not re.fullmatch(r"/api/(v\d+/)?webhooks/\d+/[A-Za-z0-9_\-]+/?", parts.path or ""):
            raise ValueError("must be a webhook URL of the form .../api/webhooks/ID/TOKEN")
        if parts.scheme == "https" and host in DISCORD_HOSTS:
            return value
        if parts.scheme == "http" and mqtt_names.is_loopback_host(host):
            return value
        raise ValueError("must be https on discord.com (or plain http on a loopback address)")

    @check("APPRISE_URLS", before=True)
    def _apprise_urls(value: Any, _validated: Mapping[str, Any]) -> tuple[AppriseTarget, ...]:
        return parse_targets(value)   # registers every URL's secret parts with redact first

    @check("GOOGLE_HOME_SPEAKER_ID")
    def _speaker(value: str, _validated: Mapping[str, Any]) -> str:
        if value and not re.fullmatch(r"media_player\.[a-z0-9_]+", value):
            raise ValueError("must be a media_player entity id such as media_player.kitchen")
        return value

    @check("HOME_ASSISTANT_TTS_ENTITY")
    def _tts_entity(value: str, _validated: Mapping[str, Any]) -> str:
        if value and not re.fullmatch(r"tts\.[a-z0-9_]+", value):
            raise ValueError("must be a tts entity id such as tts.google_translate_en_com")
        return value

    @check("MQTT_URL")
    def _mqtt_url(value: SecretStr, validated: Mapping[str, Any]) -> SecretStr:
        if value.get_secret_value():   # the password goes in the CONNECT: as the HA token
            mqtt_names.check_broker_url(value.get_secret_value(),
                                        bool(validated.get("MQTT_ALLOW_PLAIN_PASSWORD")))
        return value

    @check("MQTT_DISCOVERY_PREFIX", "MQTT_BASE_TOPIC")
    def _mqtt_topic(value: str, _validated: Mapping[str, Any]) -> str:
        return mqtt_names.check_topic(value)

    @check("MQTT_CLIENT_ID")
    def _mqtt_client_id(value: str, _validated: Mapping[str, Any]) -> str:
        return mqtt_names.check_client_id(value)

    @check("LLM_CONNECTION_ALLOWLIST")
    def _allowlist(value: tuple[str, ...], _validated: Mapping[str, Any]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                if not _HOSTNAME.match(entry.lstrip("*.")):
                    raise ValueError(f"{entry!r} is neither a network nor a host name") from None
        return value

    @check("ALERTMANAGER_URL")
    def _alertmanager_url(value: SecretStr, _validated: Mapping[str, Any]) -> SecretStr:
        url = value.get_secret_value()
        if not url:
            return value
        _check_http_url(url, "Alertmanager, e.g. http://alertmanager.lan:9093")
        parts = urlsplit(url)
        if parts.query or parts.fragment:
            raise ValueError("must be Alertmanager's base URL, without ?query or #fragment")
        if parts.password:
            register_secret(parts.password)   # also where it shows without the rest of the URL
            # basic auth goes with every post: in clear only to this machine, as the HA token
            if parts.scheme == "http" and not mqtt_names.is_loopback_host(parts.hostname or ""):
                raise ValueError("plain http to another host would send its password in clear; "
                                 "use https (Alertmanager's --web.config.file or a reverse "
                                 "proxy) or leave the user:password@ out")
        return value

    @check("ALERTMANAGER_DASHBOARD_URL")
    def _dashboard_url(value: str, _validated: Mapping[str, Any]) -> str:
        return _check_http_url(value, "the dashboard, e.g. https://nas.lan:8765") if value else value

    @check("METRICS_BIND", "WEB_BIND")
    def _bind(value: str, _validated: Mapping[str, Any]) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("must be an IP address") from None
        return value

    @check("WEB_TRUSTED_PROXIES")
    def _proxies(value: tuple[str, ...], _validated: Mapping[str, Any]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value

    # -- derived values -------------------------------------------------------------------------

    @property
    def db_path(self) -> Path:
        """The SQLite file of the store."""
        return self.DATA_DIR / "monitor.db"

    @property
    def host_name(self) -> str:
        """The name this host goes by in alerts."""
        return self.HOST_NAME or socket.gethostname()

    @property
    def own_ports(self) -> frozenset[int]:
        """The TCP ports the agent itself serves on this machine (never a finding of its own
        scans): /metrics when it is on, and the dashboard's WEB_PORT."""
        return frozenset({self.METRICS_PORT, self.WEB_PORT} - {0})

    @property
    def once(self) -> bool:
        """True when one cycle is to run (TEST_MODE)."""
        return self.TEST_MODE


def _module_settings(path: Path, what: str, relaxed: bool = False) -> dict[str, Any]:
    """The UPPERCASE names a config file defines, once the file is found safe to execute."""
    try:  # checked and read from one descriptor: the code run is the code that was checked
        source = trust.read_trusted(path, what, relaxed=relaxed)
    except FileNotFoundError as err:
        raise ConfigError(f"{what} {path}: no such file") from err
    except OSError as err:
        raise ConfigError(f"{what} {path}: cannot read: {err.strerror}") from err
    namespace: dict[str, Any] = {"__name__": "<config>", "__file__": str(path),
                                 "__builtins__": builtins}
    try:
        exec(compile(source, str(path), "exec", dont_inherit=True), namespace)  # noqa: S102
    except SyntaxError as err:
        raise ConfigError(f"{what} {path}: line {err.lineno}: {err.msg}") from err
    except Exception as err:
        raise ConfigError(f"{what} {path}: {type(err).__name__}: {err}") from err
    found = {k: v for k, v in namespace.items() if k.isupper() and not k.startswith("_")}
    if ENV_ONLY & set(found):
        name = sorted(ENV_ONLY & set(found))[0]
        raise ConfigError(f"{name}: cannot be set in {path}, since a file cannot vouch for "
                          f"itself; set {ENV_PREFIX}{name}=1 in the environment or pass "
                          f"{trust.ALLOW_FLAG}")
    return found


def _env_value(name: str, raw: str, annotation: Any) -> Any:
    """Turn a MONITOR_<NAME> string into what the field expects (lists: JSON or comma-separated)."""
    if get_origin(annotation) is tuple:
        text = raw.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{ENV_PREFIX}{name}: not a valid JSON list ({err.msg})") from err
        return [item.strip() for item in text.split(",") if item.strip()]
    return raw


def _suggest(name: str) -> str:
    return did_you_mean(name, Settings.model_fields)


def load_settings(config_path: Path | None = None, environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None,
                  defaults_path: Path = DEFAULT_CONFIG,
                  allow_unsafe_files: bool = False) -> Settings:
    """Read config.py, then the --config file, then MONITOR_* variables, then ``overrides``.

    Each file is executed only once trust.read_trusted finds it safe; ``allow_unsafe_files``
    (--allow-unsafe-files) or MONITOR_ALLOW_UNSAFE_FILES relaxes that to a warning.
    """
    environ = os.environ if environ is None else environ
    relaxed = (allow_unsafe_files or trust.env_relaxed(environ.get(trust.ALLOW_ENV))
               or bool((overrides or {}).get("ALLOW_UNSAFE_FILES")))
    values = _module_settings(defaults_path, "config file", relaxed)
    if defaults_path == DEFAULT_CONFIG and not locations.in_checkout():
        values.update(locations.installed_defaults(values, environ))  # pip/pipx: docs/install.md
    if config_path is not None:
        extra = _module_settings(Path(config_path), "--config file", relaxed)
        for name in extra:
            if name not in Settings.model_fields:
                raise ConfigError(f"{name}: unknown setting in {config_path}{_suggest(name)}")
        values.update(extra)
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        name = var[len(ENV_PREFIX):]
        if name not in Settings.model_fields and var in Settings.model_fields:
            name = var  # MONITOR_INTERVAL_SECONDS is itself a setting whose name has the prefix
        if name not in Settings.model_fields:
            raise ConfigError(f"{var}: unknown setting in the environment{_suggest(name)}")
        values[name] = _env_value(name, raw, Settings.model_fields[name].annotation)
    for name, value in (overrides or {}).items():
        if name not in Settings.model_fields:
            raise ConfigError(f"{name}: unknown setting")
        values[name] = value
    if relaxed:  # the files were read relaxed, so the loaders that follow are too
        values["ALLOW_UNSAFE_FILES"] = True
    unknown = sorted(set(values) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown setting in {defaults_path}{_suggest(unknown[0])}")
    try:
        settings = Settings(**values)
    except Invalid as err:
        raise ConfigError(_describe(err)) from None
    for name in SECRET_SETTINGS:
        register_secret(getattr(settings, name).get_secret_value())
    return settings


def _describe(err: Invalid) -> str:
    lines = []
    for name, message, value in err.errors:
        if message == "Field required" and value is MISSING:
            message = "missing (add it to config.py)"
        elif name not in SECRET_SETTINGS and name != "APPRISE_URLS" and value is not MISSING:
            message += f" (got {value!r})"
        lines.append(f"{name}: {message}")
    return "; ".join(lines)


def check_cycle_fits(settings: Settings, collector_bounds: Mapping[str, float],
                     judge_bound_s: float) -> None:
    """ConfigError unless the slowest enabled collector plus the judge fit one interval.

    The collectors run in parallel (each within its own bound), then the judge runs after them:
    the worst cycle is the largest collector bound plus the judge's bound, no more and no less.
    """
    interval = settings.MONITOR_INTERVAL_SECONDS
    slowest, collect_s = max(collector_bounds.items(), key=lambda kv: kv[1],
                             default=("none", 0.0))
    worst = collect_s + judge_bound_s
    if worst <= interval:
        return
    raise ConfigError(
        f"MONITOR_INTERVAL_SECONDS: {interval} s cannot hold one cycle, which may take "
        f"{worst:.0f} s: the collectors run in parallel and the slowest, {slowest}, may take "
        f"{collect_s:.0f} s; then the judge may take {judge_bound_s:.0f} s "
        f"(OLLAMA_TIMEOUT_SECONDS {settings.OLLAMA_TIMEOUT_SECONDS:g} s, twice, plus grace). "
        f"Raise MONITOR_INTERVAL_SECONDS to at least {int(-(-worst // 1))}, lower "
        f"OLLAMA_TIMEOUT_SECONDS, set COLLECTOR_TIMEOUT_SECONDS (a cap on every collector), "
        f"or remove {slowest} from COLLECTORS")
