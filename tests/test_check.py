"""`check` against a loopback Ollama and Discord, a real Home Assistant, and broken settings."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent import check as checks
from tests.conftest import ROOT
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.ollama_server import FakeOllama
from tests.ha_server import free_port

SPEAKER = "media_player.living_room"


def outcome(name: str, settings: Any) -> checks.Outcome | None:
    return dict(checks.run_checks(settings))[name]


def test_ollama_with_the_model_is_a_tick_and_without_it_names_the_pull(make_settings) -> None:
    with FakeOllama() as fake:
        good = outcome("ollama", make_settings(OLLAMA_HOST=fake.url))
        missing = outcome("ollama", make_settings(OLLAMA_HOST=fake.url, OLLAMA_MODEL="qwen2:7b"))
    assert good.ok and "llama3.1:8b" in good.detail
    assert not missing.ok and "ollama pull qwen2:7b" in missing.fix
    down = outcome("ollama", make_settings(OLLAMA_HOST=f"http://127.0.0.1:{free_port()}"))
    assert not down.ok and "not reachable" in down.fix


def test_discord_webhook_is_read_without_posting(make_settings) -> None:
    with FakeDiscord() as fake:
        good = outcome("discord", make_settings(DISCORD_WEBHOOK_URL=fake.url))
        gone = outcome("discord", make_settings(
            DISCORD_WEBHOOK_URL=fake.url.replace("/api/webhooks/", "/api/webhooks/9")))
        assert fake.accepted == []  # nothing was posted
    assert good.ok, good.detail
    assert not gone.ok and "HTTP 404" in gone.detail and "create a new one" in gone.fix
    assert "token" not in gone.detail.lower()
    unconfigured = outcome("discord", make_settings())
    assert unconfigured is None


def test_home_assistant_token_and_entities(hass, make_settings) -> None:
    base = {"HOME_ASSISTANT_URL": hass.url, "GOOGLE_HOME_SPEAKER_ID": SPEAKER,
                "HOME_ASSISTANT_TTS_ENTITY": hass.tts_entity}
    good = outcome("home assistant", make_settings(HOME_ASSISTANT_TOKEN=hass.token, **base))
    assert good.ok, good.detail
    bad_token = outcome("home assistant", make_settings(HOME_ASSISTANT_TOKEN="not-a-token", **base))
    assert not bad_token.ok and "401" in bad_token.detail and "HOME_ASSISTANT_TOKEN" in bad_token.fix
    no_speaker = outcome("home assistant", make_settings(
        HOME_ASSISTANT_TOKEN=hass.token, **{**base, "GOOGLE_HOME_SPEAKER_ID": "media_player.attic"}))
    assert not no_speaker.ok and "media_player.attic" in no_speaker.detail


def test_nmap_privileged_scan_without_raw_sockets_is_a_cross(
        make_settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert outcome("nmap", make_settings()).ok
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(checks, "_has_cap", lambda bit: False)
    denied = outcome("nmap", make_settings(NMAP_SCAN_OPTIONS="-sS -O"))
    assert not denied.ok and "CAP_NET_RAW" in denied.fix and "-sS -O" in denied.detail
    assert outcome("nmap", make_settings(NMAP_SCAN_OPTIONS="-sT")).ok


def test_unwritable_data_dir_is_a_cross(make_settings, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = outcome("data folder", make_settings(DATA_DIR=blocker / "data"))
    assert not result.ok and "not writable" in result.detail


def test_check_command_exit_status(tmp_path: Path) -> None:
    with FakeOllama() as fake:
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
               "MONITOR_DATA_DIR": str(tmp_path / "data"), "MONITOR_COLLECTORS": "processes,nmap",
               "MONITOR_OLLAMA_HOST": fake.url}
        ok = subprocess.run([sys.executable, str(ROOT / "monitor_agent.py"), "check"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
        env["MONITOR_OLLAMA_MODEL"] = "missing:1b"
        bad = subprocess.run([sys.executable, str(ROOT / "monitor_agent.py"), "check"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout
    assert "\u2714 ollama" in ok.stdout and "\u2714 nmap" in ok.stdout
    assert "- discord: not configured" in ok.stdout
    assert bad.returncode == 1 and "\u2718 ollama" in bad.stdout and "ollama pull missing:1b" in bad.stdout


def test_what_is_not_configured_names_its_setting_and_is_no_failure(
        make_settings, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOllama() as fake:
        settings = make_settings(OLLAMA_HOST=fake.url, COLLECTORS=["processes"])
        status = checks.command(None, settings)
    lines = capsys.readouterr().out.splitlines()
    assert status == 0, lines
    assert "- discord: not configured (set DISCORD_WEBHOOK_URL)" in lines
    assert ("- home assistant: not configured (set HOME_ASSISTANT_URL, HOME_ASSISTANT_TOKEN and "
            "GOOGLE_HOME_SPEAKER_ID)") in lines
    assert "- nmap: not configured (add nmap to COLLECTORS)" in lines
    assert ("- docker: not configured (add containers to COLLECTORS and set "
            "DOCKER_CONTAINERS_TO_MONITOR)") in lines


def test_docker_is_checked_only_when_containers_are_watched(make_settings, tmp_path: Path,
                                                           capsys) -> None:
    absent = f"unix://{tmp_path}/no-docker.sock"
    with FakeOllama() as fake:
        unwatched = make_settings(OLLAMA_HOST=fake.url, COLLECTORS=["containers"],
                                  DOCKER_HOST=absent)
        assert checks.command(None, unwatched) == 0
        assert "- docker: not configured (set DOCKER_CONTAINERS_TO_MONITOR)" in \
            capsys.readouterr().out.splitlines()
        watched = make_settings(OLLAMA_HOST=fake.url, COLLECTORS=["containers"],
                                DOCKER_HOST=absent, DOCKER_CONTAINERS_TO_MONITOR=["web"])
        assert checks.command(None, watched) == 1
    out = capsys.readouterr().out
    assert "\u2718 docker" in out and "no Docker socket" in out


def test_a_half_configured_home_assistant_is_a_cross_naming_what_is_missing(make_settings) -> None:
    result = outcome("home assistant", make_settings(HOME_ASSISTANT_URL="http://127.0.0.1:8123"))
    assert not result.ok and "partly configured" in result.detail
    assert result.fix.startswith("set HOME_ASSISTANT_TOKEN and GOOGLE_HOME_SPEAKER_ID")
    token_only = outcome("home assistant", make_settings(HOME_ASSISTANT_TOKEN="abcd-1234"))
    assert not token_only.ok and "HOME_ASSISTANT_URL" in token_only.fix


def test_docker_with_a_real_engine_is_a_tick(make_settings, podman_engine) -> None:
    result = outcome("docker", make_settings(COLLECTORS=["containers"],
                                             DOCKER_HOST=podman_engine.url,
                                             DOCKER_CONTAINERS_TO_MONITOR=["web"]))
    assert result.ok and "Docker API" in result.detail and "answers" in result.detail
