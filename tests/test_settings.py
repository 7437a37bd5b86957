"""Configuration: config.py, then --config, then MONITOR_* variables, validated once; bad input exits 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from foundation.settings import ConfigError, load_settings
from tests.conftest import ROOT

SECRET_TOKEN = "s3cr3tT0kenValue_abcdefghijklmnop"


def test_defaults_load_and_are_typed() -> None:
    settings = load_settings(environ={})
    assert settings.OLLAMA_MODEL == "llama3.1:8b"
    assert settings.LOG_START_AT == "end"
    assert isinstance(settings.PING_TARGETS, tuple)
    assert set(settings.COLLECTORS) == {"syslog", "auth_log", "sensors", "ping", "nmap",
                                        "processes", "containers", "llm_runtimes"}
    with pytest.raises(AttributeError, match="frozen"):
        settings.MONITOR_INTERVAL_SECONDS = 5


def test_config_file_then_environment_override_in_that_order(tmp_path: Path) -> None:
    cfg = tmp_path / "site.py"
    cfg.write_text("MONITOR_INTERVAL_SECONDS = 120\nPING_TARGETS = ['127.0.0.1', '::1']\n"
                   "HISTORY_RETENTION_DAYS = 7\n")
    settings = load_settings(cfg, environ={"MONITOR_HISTORY_RETENTION_DAYS": "9",
                                           "MONITOR_PROCESSES_TO_MONITOR": "sshd, nginx",
                                           "MONITOR_DOCKER_CONTAINERS_TO_MONITOR": '["ha", "db"]',
                                           "MONITOR_TEST_MODE": "true"})
    assert settings.MONITOR_INTERVAL_SECONDS == 120
    assert settings.PING_TARGETS == ("127.0.0.1", "::1")
    assert settings.HISTORY_RETENTION_DAYS == 9          # environment beats the file
    assert settings.PROCESSES_TO_MONITOR == ("sshd", "nginx")
    assert settings.DOCKER_CONTAINERS_TO_MONITOR == ("ha", "db")
    assert settings.TEST_MODE is True


def test_setting_named_with_the_prefix_is_reachable_both_ways() -> None:
    assert load_settings(environ={"MONITOR_INTERVAL_SECONDS": "30"}).MONITOR_INTERVAL_SECONDS == 30
    assert load_settings(
        environ={"MONITOR_MONITOR_INTERVAL_SECONDS": "40"}).MONITOR_INTERVAL_SECONDS == 40


@pytest.mark.parametrize(("overrides", "named", "says"), [
    ({"MONITOR_INTERVAL_SECONDS": "often"}, "MONITOR_INTERVAL_SECONDS", "integer"),
    ({"MONITOR_INTERVAL_SECONDS": 1}, "MONITOR_INTERVAL_SECONDS", "greater than or equal to 10"),
    ({"DAILY_RECAP_TIME": "25:99"}, "DAILY_RECAP_TIME", "HH:MM"),
    ({"TTS_QUIET_HOURS": "22:00"}, "TTS_QUIET_HOURS", "HH:MM-HH:MM"),
    ({"COLLECTORS": ["processes", "Ping!"]}, "COLLECTORS", "'Ping!' is not a collector name"),
    ({"COLLECTORS": ["ping", "ping"]}, "COLLECTORS", "more than once"),
    ({"OLLAMA_HOST": "localhost:11434"}, "OLLAMA_HOST", "http"),
    ({"HOME_ASSISTANT_URL": "http://:8123"}, "HOME_ASSISTANT_URL", "host"),
    ({"HOME_ASSISTANT_URL": "http://ha.local:99999"}, "HOME_ASSISTANT_URL", "port"),
    ({"GOOGLE_HOME_SPEAKER_ID": "kitchen"}, "GOOGLE_HOME_SPEAKER_ID", "media_player"),
    ({"LOG_START_AT": "middle"}, "LOG_START_AT", "'end'"),
    ({"PING_TARGETS": "127.0.0.1"}, "PING_TARGETS", "tuple"),
    ({"LLM_CONNECTION_ALLOWLIST": ["not a host!"]}, "LLM_CONNECTION_ALLOWLIST", "neither"),
    ({"METRICS_BIND": "everywhere"}, "METRICS_BIND", "IP address"),
])
def test_invalid_values_name_the_setting(overrides: dict, named: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={}, overrides=overrides)
    assert str(caught.value).startswith(named + ":")
    assert says in str(caught.value)


def test_unknown_name_in_config_file_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    cfg = tmp_path / "site.py"
    cfg.write_text("PING_TARGET = ['127.0.0.1']\n")
    with pytest.raises(ConfigError, match=r"PING_TARGET: unknown setting .*did you mean PING_TARGETS"):
        load_settings(cfg, environ={})


def test_unknown_environment_setting_is_an_error() -> None:
    with pytest.raises(ConfigError, match="MONITOR_PING_TARGTS: unknown setting"):
        load_settings(environ={"MONITOR_PING_TARGTS": "127.0.0.1"})


def test_broken_config_file_says_where(tmp_path: Path) -> None:
    cfg = tmp_path / "site.py"
    cfg.write_text("PING_TARGETS = [\n")
    with pytest.raises(ConfigError, match=r"site.py: line \d"):
        load_settings(cfg, environ={})
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(tmp_path / "absent.py", environ={})


@pytest.mark.parametrize("url", [
    f"https://evil.example.com/api/webhooks/123/{SECRET_TOKEN}",
    f"http://discord.com/api/webhooks/123/{SECRET_TOKEN}",
    f"https://discord.com/not/a/webhook/{SECRET_TOKEN}",
    f"http://10.0.0.5:8080/api/webhooks/123/{SECRET_TOKEN}",
])
def test_bad_webhook_rejected_without_echoing_the_secret(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"MONITOR_DISCORD_WEBHOOK_URL": url})
    assert "DISCORD_WEBHOOK_URL" in str(caught.value)
    assert SECRET_TOKEN not in str(caught.value)


@pytest.mark.parametrize("url", [
    "https://discord.com/api/webhooks/123456/abc-DEF_123",
    "https://discordapp.com/api/webhooks/1/x",
    "http://127.0.0.1:8099/api/webhooks/1/tok",
    "http://[::1]:8099/api/webhooks/1/tok",
])
def test_good_webhooks_accepted(url: str) -> None:
    settings = load_settings(environ={"MONITOR_DISCORD_WEBHOOK_URL": url})
    assert settings.DISCORD_WEBHOOK_URL.get_secret_value() == url
    assert url not in repr(settings)


def _agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    return subprocess.run([sys.executable, str(ROOT / "monitor_agent.py"), *args], cwd=ROOT,
                          env={**base, **(env or {})}, capture_output=True, text=True, timeout=60)


def test_cli_exits_2_naming_the_broken_setting() -> None:
    proc = _agent("--once", env={"MONITOR_DAILY_RECAP_TIME": "25:99"})
    assert proc.returncode == 2
    assert "DAILY_RECAP_TIME" in proc.stderr
    assert proc.stdout == ""


def test_cli_exits_2_for_an_unknown_collector() -> None:
    proc = _agent("--once", "--json", env={"MONITOR_COLLECTORS": "processes,smart"})
    assert proc.returncode == 2
    assert "COLLECTORS" in proc.stderr and "smart" in proc.stderr


def test_cli_exits_2_for_a_typo_in_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "site.py"
    cfg.write_text("PROCESES_TO_MONITOR = ['sshd']\n")
    proc = _agent("--once", "--config", str(cfg))
    assert proc.returncode == 2
    assert "PROCESES_TO_MONITOR" in proc.stderr and "PROCESSES_TO_MONITOR" in proc.stderr


@pytest.mark.parametrize("url", ["http://homeassistant.local:8123", "http://192.168.1.20:8123",
                                 "http://[fd00::20]:8123", "http://ha.example.net"])
def test_plain_http_home_assistant_off_this_machine_is_refused_unless_opted_in(url: str) -> None:
    env = {"MONITOR_HOME_ASSISTANT_URL": url, "MONITOR_HOME_ASSISTANT_TOKEN": SECRET_TOKEN}
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)
    message = str(caught.value)
    assert message.startswith("HOME_ASSISTANT_URL: plain http") and "https" in message
    assert "HOME_ASSISTANT_ALLOW_PLAIN_HTTP" in message and SECRET_TOKEN not in message
    opted = load_settings(environ={**env, "MONITOR_HOME_ASSISTANT_ALLOW_PLAIN_HTTP": "true"})
    assert url == opted.HOME_ASSISTANT_URL


@pytest.mark.parametrize("url", ["https://homeassistant.local:8123", "https://ha.example.net",
                                 "http://127.0.0.1:8123", "http://localhost:8123",
                                 "http://[::1]:8123", ""])
def test_home_assistant_over_tls_or_loopback_is_accepted(url: str) -> None:
    assert url == load_settings(environ={"MONITOR_HOME_ASSISTANT_URL": url}).HOME_ASSISTANT_URL


def test_the_shipped_examples_suggest_no_plain_http_to_another_host() -> None:
    docs = sorted(str(doc.relative_to(ROOT)) for doc in (ROOT / "docs").glob("*.md"))
    assert docs, "no docs/*.md found"
    for path in ("config.py", "deploy/env.example", "README.md", *docs):
        assert "http://homeassistant.local" not in (ROOT / path).read_text(), path
