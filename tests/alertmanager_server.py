"""A real Alertmanager (Debian's prometheus-alertmanager) on loopback, with the shipped
deploy/alertmanager/alertmanager.yml, a private storage path and no cluster gossip; stopped by
its own process id."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ROOT

SHIPPED = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
SHIPPED_WEBHOOK = 'webhook_url: "https://discord.com/api/webhooks/ID/TOKEN"'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binary(name: str = "prometheus-alertmanager") -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: apt-get install prometheus-alertmanager "
                    "(make test installs it)")
    return path


def shipped_config(webhook_url: str, group_wait: str = "5s", group_interval: str = "2s",
                   repeat_interval: str = "1h") -> str:
    """The shipped configuration with the Discord webhook and the timings replaced, nothing else."""
    text = SHIPPED.read_text(encoding="utf-8")
    for old, new in ((SHIPPED_WEBHOOK, f'webhook_url: "{webhook_url}"'),
                     ("group_wait: 30s", f"group_wait: {group_wait}"),
                     ("group_interval: 5m", f"group_interval: {group_interval}"),
                     ("repeat_interval: 4h", f"repeat_interval: {repeat_interval}")):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


class Alertmanager:
    """``with Alertmanager(folder, config_text) as am:``; ``am.url`` is its base URL."""

    def __init__(self, folder: Path, config: str, port: int | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "alertmanager.yml"
        self.config.write_text(config, encoding="utf-8")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "alertmanager.log"
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> Alertmanager:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [binary(), f"--config.file={self.config}",
                 f"--storage.path={self.folder / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}",
                 "--cluster.listen-address=",          # empty: no gossip, no cluster port
                 "--log.level=warn", *self.extra_args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"alertmanager exited: {self.log.read_text(errors='replace')}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).status_code in (200, 401):
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("alertmanager did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Alertmanager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- its API ----------------------------------------------------------------------------------

    def alerts(self, **params: Any) -> list[dict[str, Any]]:
        """GET /api/v2/alerts (active ones: a resolved alert is no longer listed)."""
        response = requests.get(f"{self.url}/api/v2/alerts", params=params, timeout=10)
        response.raise_for_status()
        return list(response.json())

    def silence(self, matchers: dict[str, str], comment: str, hours: float = 1.0) -> str:
        """POST /api/v2/silences for equality matchers; the silence's id."""
        now = time.time()
        body = {"matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True}
                             for k, v in matchers.items()],
                "startsAt": _iso(now - 60), "endsAt": _iso(now + hours * 3600),
                "createdBy": "tests/test_alertmanager.py", "comment": comment}
        response = requests.post(f"{self.url}/api/v2/silences", json=body, timeout=10)
        response.raise_for_status()
        return str(response.json()["silenceID"])

    def post(self, alerts: list[dict[str, Any]]) -> None:
        """POST /api/v2/alerts, as Prometheus would."""
        requests.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=10).raise_for_status()


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def wait_for(condition: Any, timeout_s: float = 60.0, every_s: float = 0.25) -> Any:
    """Poll until ``condition()`` is truthy; its last value (falsy on timeout)."""
    deadline = time.monotonic() + timeout_s
    found = condition()
    while not found and time.monotonic() < deadline:
        time.sleep(every_s)
        found = condition()
    return found
