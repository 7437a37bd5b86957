"""The Alertmanager channel: the state of the findings, posted to Alertmanager's API v2.

Alertmanager takes alerts that last, not messages: each outbox row of this channel (purpose
"state", queued by agent/fleet_state.py) lists the findings open at or above
ALERTMANAGER_MIN_SEVERITY, each posted with ``endsAt`` a few cycle intervals after the send (the
next cycle posts it again; should the agent stop, Alertmanager resolves it by itself), and the
findings that closed, posted with ``endsAt`` at their resolve time. Labels identify an alert, so
posting the same one twice changes nothing: a possible repeat (outbox.py) is harmless here.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from alerts.outbox import DeliveryError
from alerts.text import truncate
from foundation.redact import redact, register_secret
from foundation.settings import Settings
from foundation.store.data_storage import OutboxMessage
from foundation.untrusted import defuse_mentions, neutralise, strip

if TYPE_CHECKING:   # the HTTP clients load with the first message actually sent
    import requests

log = logging.getLogger(__name__)

CHANNEL = "alertmanager"
ALERTS_PATH = "/api/v2/alerts"
STATUS_PATH = "/api/v2/status"
TIMEOUT_S = 10.0
TEST_ALERT_S = 60.0        # the test alert resolves itself this long after it is posted
SUMMARY_MAX = 300
TEXT_MAX = 1000
PERMANENT = {400: "Alertmanager rejected the alerts as malformed (400)",
             401: "Alertmanager refused the credentials of ALERTMANAGER_URL (401)",
             403: "Alertmanager forbids these credentials (403)",
             404: "no Alertmanager API v2 there (404): check ALERTMANAGER_URL, with the path of "
                  "any --web.route-prefix"}


def endpoint(url: str) -> tuple[str, tuple[str, str] | None]:
    """ALERTMANAGER_URL as (base URL without credentials, basic-auth pair or None)."""
    parts = urlsplit(url)
    auth = ((unquote(parts.username or ""), unquote(parts.password or ""))
            if parts.username is not None else None)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", "")), auth


def where(url: str) -> str:
    """host:port of ALERTMANAGER_URL, for messages (never its credentials)."""
    return urlsplit(endpoint(url)[0]).netloc


def rfc3339(epoch: float) -> str:
    """A time as Alertmanager reads it: UTC, milliseconds, ``Z``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def inert(text: object, limit: int) -> str:
    """Untrusted text for any receiver Alertmanager routes to: neutralised (no invisible or control
    characters, links defanged), mentions defused, one line, cut to ``limit``."""
    return truncate(defuse_mentions(neutralise(text)), limit)


def alert_json(item: Mapping[str, Any], host: str, starts_at: float, ends_at: float,
               dashboard: str = "") -> dict[str, Any]:
    """One alert of the API: labels that identify the finding, annotations in the words the other
    channels use, its start, its end and a link to the finding on the agent's dashboard."""
    kind = str(item.get("kind") or "finding")
    fingerprint = str(item.get("fingerprint", ""))
    labels = {"alertname": kind, "host": strip(host)[:200], "kind": kind,
              "severity": str(item.get("severity") or "none"),
              "source": str(item.get("source", "")), "fingerprint": fingerprint}
    annotations = {"summary": inert(item.get("headline") or kind, SUMMARY_MAX),
                   "description": inert(item.get("description") or item.get("summary", ""),
                                        TEXT_MAX),
                   "action": inert(item.get("action", ""), TEXT_MAX)}
    alert = {"labels": {k: v for k, v in labels.items() if v},
             "annotations": {k: v for k, v in annotations.items() if v},
             "startsAt": rfc3339(starts_at),
             # Alertmanager refuses an end that is not after the start
             "endsAt": rfc3339(max(ends_at, starts_at + 0.001))}
    if dashboard:
        alert["generatorURL"] = f"{dashboard.rstrip('/')}/findings/{quote(fingerprint, safe='')}"
    return alert


def render(payload: Mapping[str, Any], now: float) -> list[dict[str, Any]]:
    """The body of POST /api/v2/alerts for a stored message, sent at ``now``.

    An open finding ends ``horizon_s`` after the send, not after the cycle that queued it: a
    message sent late must not resolve what is still open.
    """
    host = str(payload.get("host", ""))
    dashboard = str(payload.get("dashboard") or "")
    if payload.get("purpose") == "test":      # test-alert: gone by itself a minute later
        return [alert_json({**item, "severity": "none"}, host, now, now + TEST_ALERT_S)
                for item in payload.get("items", [])]
    horizon = float(payload.get("horizon_s", 0.0))
    out = []
    for item in payload.get("items", []):
        starts = float(item.get("starts_at") or payload.get("created_at") or now)
        ends = item.get("ends_at")
        out.append(alert_json(item, host, starts,
                              float(ends) if ends is not None else max(now, starts) + horizon,
                              dashboard))
    return out


class AlertmanagerNotifier:
    """Posts the findings' state to Alertmanager's API v2 (basic auth from the URL's user info)."""

    channel = CHANNEL

    def __init__(self, settings: Settings, timeout_s: float = TIMEOUT_S) -> None:
        url = settings.ALERTMANAGER_URL.get_secret_value()
        register_secret(url)
        self._base, self._auth = endpoint(url)
        if self._auth is not None:
            register_secret(self._auth[1])
        self._timeout_s = timeout_s

    def send(self, message: OutboxMessage, now: float) -> None:
        """Post the message's alerts; DeliveryError on failure (permanent for 4xx)."""
        import requests  # noqa: PLC0415 - the HTTP clients only when a message is sent

        if message.payload.get("purpose") not in ("state", "test"):
            raise DeliveryError(f"Alertmanager takes the findings' state, not a "
                                f"{message.purpose} message", permanent=True)
        body = render(message.payload, now)
        if not body:
            return
        try:
            response = requests.post(self._base + ALERTS_PATH, json=body, auth=self._auth,
                                     timeout=self._timeout_s)
        except requests.Timeout as err:
            # a read timeout comes after the POST went out: it may have been taken (posting it
            # again is harmless: Alertmanager merges alerts with the same labels)
            raise DeliveryError(f"Alertmanager did not answer within {self._timeout_s:.0f} s",
                                outcome_unknown=not isinstance(err, requests.ConnectTimeout)
                                ) from None
        except requests.RequestException as err:
            raise DeliveryError(f"Alertmanager unreachable at {where(self._base)}: "
                                f"{type(err).__name__}") from None
        check(response)


def _detail(response: requests.Response) -> str:
    """What Alertmanager said (a JSON string, or an object with a message), one line, redacted."""
    text = response.content.decode("utf-8", "replace")
    try:
        found = json.loads(text)
        text = found if isinstance(found, str) else str(found.get("message", text))
    except (ValueError, AttributeError):
        pass
    return redact(strip(text))[:300]


def check(response: requests.Response) -> None:
    """Raise the DeliveryError that a non-success answer means."""
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = _detail(response)
    if status in PERMANENT:
        raise DeliveryError(f"{PERMANENT[status]}: {detail}", permanent=True)
    if status == 429:
        header = response.headers.get("Retry-After", "")
        wait = float(header) if header.isdigit() else None
        raise DeliveryError(f"Alertmanager (or its proxy) asks to wait (429): {detail}",
                            retry_after=wait)
    if 400 <= status < 500:
        raise DeliveryError(f"Alertmanager refused the alerts ({status}): {detail}",
                            permanent=True)
    raise DeliveryError(f"Alertmanager server error ({status}); will retry")


def status(url: str, timeout_s: float = TIMEOUT_S) -> Mapping[str, Any]:
    """GET /api/v2/status: Alertmanager's version, cluster and configuration (raises
    requests.RequestException or DeliveryError)."""
    import requests  # noqa: PLC0415 - only for `check`

    base, auth = endpoint(url)
    response = requests.get(base + STATUS_PATH, auth=auth, timeout=timeout_s)
    check(response)
    found = response.json()
    if not isinstance(found, dict):
        raise DeliveryError("Alertmanager's status is not a JSON object")
    return found
