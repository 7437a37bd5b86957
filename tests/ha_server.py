"""Run a real Home Assistant (2024.3.3, from .venv-ha) on loopback for the text-to-speech tests.

The configuration enables ``demo`` (media players such as ``media_player.living_room`` that record
what they are asked to play, and a legacy demo TTS provider) and the legacy ``google_translate``
TTS platform (``tts.google_translate_say``); ``HomeAssistant.add_tts_entity`` adds a
``google_translate`` config entry through the real config flow for a ``tts.*`` entity that
``tts.speak`` addresses. Audio is fetched from Google only on playback, which the demo players
never do, so nothing leaves the machine. A token is obtained through onboarding.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-ha"
SETUP = ROOT / "scripts" / "setup_home_assistant.sh"
CLIENT_ID = "http://127.0.0.1/"
START_TIMEOUT_S = 150.0

CONFIGURATION = """\
homeassistant:
  name: Monitor test
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
  country: NL
  currency: EUR
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
onboarding:
demo:
tts:
  - platform: google_translate
    language: en
logger:
  default: warning
"""


class HomeAssistantError(Exception):
    """Home Assistant could not be installed, started or onboarded."""


def ensure_installed() -> Path:
    """The hass executable of .venv-ha, running the setup script first when it is missing."""
    hass = VENV / "bin" / "hass"
    marks = list(VENV.glob(".installed-*"))
    # the script runs again when it is newer than its mark (a new integration's requirements)
    if not hass.exists() or not marks or SETUP.stat().st_mtime > max(m.stat().st_mtime for m in marks):
        result = subprocess.run(["bash", str(SETUP)], cwd=ROOT, capture_output=True, text=True,
                                timeout=900, check=False)
        if result.returncode != 0:
            raise HomeAssistantError(f"{SETUP} failed: {result.stderr[-2000:]}")
    return hass


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HomeAssistant:
    """One Home Assistant process with its own config folder; ``start()``, then ``stop()``."""

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ""
        self.tts_entity = ""  # set by add_tts_entity's caller
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = config_dir / "hass.out"

    def start(self) -> HomeAssistant:
        """Install if needed, write the configuration, run hass, wait for the API, onboard."""
        hass = ensure_installed()
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "configuration.yaml").write_text(CONFIGURATION.format(port=self.port))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "PYTHON"))}
        with self.log_path.open("wb") as out:
            # --skip-pip: every requirement was installed by the setup script; never reach out.
            self.process = subprocess.Popen(
                [str(hass), "-c", str(self.config_dir), "--skip-pip", "--log-no-color"],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self._wait_api()
        self.token = self._onboard()
        self._wait_entity("media_player.living_room")
        return self

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def _wait_api(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise HomeAssistantError(f"hass exited with {self.process.returncode}:\n"
                                         f"{self._log_tail()}")
            try:
                # Before onboarding /api/ answers 401 to anonymous callers: it is up.
                answer = requests.get(f"{self.url}/api/onboarding", timeout=2)
                if answer.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise HomeAssistantError(f"hass did not answer within {START_TIMEOUT_S:.0f} s:\n"
                                 f"{self._log_tail()}")

    def _onboard(self) -> str:
        answer = requests.post(f"{self.url}/api/onboarding/users", timeout=30, json={
            "client_id": CLIENT_ID, "name": "Monitor Test", "username": "monitor",
            "password": "monitor-test-password", "language": "en"})
        if answer.status_code != 200:
            raise HomeAssistantError(f"onboarding failed: {answer.status_code} {answer.text}")
        code = answer.json()["auth_code"]
        token = requests.post(f"{self.url}/auth/token", timeout=30, data={
            "grant_type": "authorization_code", "code": code, "client_id": CLIENT_ID})
        if token.status_code != 200:
            raise HomeAssistantError(f"token exchange failed: {token.status_code} {token.text}")
        return token.json()["access_token"]

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Call the REST API with the onboarded token."""
        return requests.request(method, f"{self.url}{path}", timeout=30,
                                headers={"Authorization": f"Bearer {self.token}"}, **kwargs)

    def state(self, entity_id: str) -> dict[str, Any] | None:
        """An entity's state object, None when it does not exist."""
        answer = self.api("GET", f"/api/states/{entity_id}")
        return answer.json() if answer.status_code == 200 else None

    def _wait_entity(self, entity_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.state(entity_id)
            if found is not None:
                return found
            time.sleep(0.3)
        raise HomeAssistantError(f"{entity_id} did not appear:\n{self._log_tail()}")

    def add_tts_entity(self) -> str:
        """Set up google_translate through its config flow; the tts entity id it creates."""
        flow = self.api("POST", "/api/config/config_entries/flow",
                        json={"handler": "google_translate", "show_advanced_options": False})
        if flow.status_code != 200:
            raise HomeAssistantError(f"config flow failed: {flow.status_code} {flow.text}")
        step = flow.json()
        if step.get("type") == "form":
            step = self.api("POST", f"/api/config/config_entries/flow/{step['flow_id']}",
                            json={"language": "en", "tld": "com"}).json()
        if step.get("type") != "create_entry":
            raise HomeAssistantError(f"config flow did not create an entry: {step}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = self.api("GET", "/api/states").json()
            found = [s["entity_id"] for s in states if s["entity_id"].startswith("tts.")]
            if found:
                return found[0]
            time.sleep(0.3)
        raise HomeAssistantError(f"no tts entity appeared:\n{self._log_tail()}")

    def stop(self) -> None:
        """Stop hass by its own process id (SIGTERM, then SIGKILL)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
