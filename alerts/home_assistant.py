"""The Home Assistant notifier: a short spoken announcement on the Google Home speaker (tts.speak)."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from alerts.outbox import DeliveryError
from alerts.text import speakable
from analysis.detectors import kind_specs
from foundation.model import Severity
from foundation.redact import redact, register_secret
from foundation.settings import Settings
from foundation.store.data_storage import OutboxMessage

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
SPOKEN_MAX = 120         # characters of one finding's sentence
SPOKEN_FINDINGS = 2      # findings said in one announcement; the rest are "and N more"
LATE_AFTER_S = 600.0
PERMANENT = {400: "Home Assistant rejected the call (400): check HOME_ASSISTANT_TTS_ENTITY, "
                  "GOOGLE_HOME_SPEAKER_ID and HOME_ASSISTANT_TTS_SERVICE",
             401: "Home Assistant refused HOME_ASSISTANT_TOKEN (401): create a new long-lived "
                  "access token in your Home Assistant profile",
             403: "Home Assistant forbids this token (403): use an administrator's token",
             404: "Home Assistant has no such service (404): check HOME_ASSISTANT_TTS_SERVICE and "
                  "that the TTS integration is set up"}


def announcement(payload: Mapping[str, Any], late_s: float = 0.0, repeat: bool = False) -> str:
    """What the speaker says, from trusted words only: "Alert on nas. Process nginx is not
    running. New open port 8080 on this machine. And 1 more." The most severe findings first, at
    most SPOKEN_FINDINGS of them, each by its kind's spoken sentence (built from the facts the
    agent itself knows: never a log line, a user or DNS name, a banner)."""
    items = sorted(payload.get("items", []),
                   key=lambda i: -Severity.parse(str(i.get("severity", "none"))).rank)
    host = speakable(payload.get("host", ""), 40) or "this server"
    said = [f"Test from {host}." if payload.get("purpose") == "test" else f"Alert on {host}."]
    if late_s >= LATE_AFTER_S:
        said.insert(0, f"Late alert, from {late_s / 60:.0f} minutes ago.")
    if repeat:
        said.insert(0, "Possibly a repeat.")
    for item in items[:SPOKEN_FINDINGS]:
        # an item queued by an older version has no sentence: its kind's name
        spec = kind_specs().get(str(item.get("kind", "")))
        words = item.get("spoken") or (spec.name if spec is not None else "")
        sentence = speakable(words or "A new finding.", SPOKEN_MAX)
        said.append(sentence if sentence.endswith((".", "!", "?")) else sentence + ".")
    if len(items) > SPOKEN_FINDINGS:
        said.append(f"And {len(items) - SPOKEN_FINDINGS} more.")
    return " ".join(s[:1].upper() + s[1:] for s in said)


class HomeAssistantNotifier:
    """Calls Home Assistant's tts.speak (or the legacy tts.google_translate_say) over its REST API."""

    channel = "home_assistant"

    def __init__(self, settings: Settings, timeout_s: float = TIMEOUT_S) -> None:
        self._base = settings.HOME_ASSISTANT_URL.rstrip("/")
        self._token = settings.HOME_ASSISTANT_TOKEN.get_secret_value()
        register_secret(self._token)
        self._speaker = settings.GOOGLE_HOME_SPEAKER_ID
        self._tts_entity = settings.HOME_ASSISTANT_TTS_ENTITY
        self._service = settings.HOME_ASSISTANT_TTS_SERVICE
        self._timeout_s = timeout_s

    def request(self, message: str) -> tuple[str, dict[str, Any]]:
        """The service URL and JSON body that speak ``message`` on the speaker."""
        if self._service == "google_translate_say":
            return (f"{self._base}/api/services/tts/google_translate_say",
                    {"entity_id": self._speaker, "message": message})
        return (f"{self._base}/api/services/tts/speak",
                {"entity_id": self._tts_entity, "media_player_entity_id": self._speaker,
                 "message": message})

    def send(self, message: OutboxMessage, now: float) -> None:
        """Speak the alert; 401/403/404/400 are permanent, 5xx and network errors are retried."""
        import requests  # noqa: PLC0415 - the HTTP client (~27 MB) only when a message is spoken

        url, body = self.request(announcement(message.payload, now - message.created_at,
                                               message.possible_repeat))
        try:
            response = requests.post(url, json=body, timeout=self._timeout_s,
                                     headers={"Authorization": f"Bearer {self._token}"})
        except requests.Timeout as err:
            # a read timeout comes after the call went out: the speaker may have said it
            raise DeliveryError(f"Home Assistant did not answer within {self._timeout_s:.0f} s",
                                outcome_unknown=not isinstance(err, requests.ConnectTimeout)
                                ) from err
        except requests.RequestException as err:
            raise DeliveryError(f"Home Assistant unreachable: {type(err).__name__}: "
                                f"{redact(str(err))}") from err
        status = response.status_code
        if 200 <= status < 300:
            log.debug("Home Assistant spoke message %d on %s", message.id, self._speaker)
            return
        detail = redact(response.text)[:200]
        if status in PERMANENT:
            raise DeliveryError(f"{PERMANENT[status]} ({detail})", permanent=True)
        if 400 <= status < 500:
            raise DeliveryError(f"Home Assistant refused the call ({status}): {detail}",
                                permanent=True)
        raise DeliveryError(f"Home Assistant server error ({status}); will retry")
