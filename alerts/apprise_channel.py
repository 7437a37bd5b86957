"""The Apprise channel: one notifier per APPRISE_URLS entry, each its own outbox channel.

Entry N is the channel ``apprise:N``: its outbox rows, retries and backoff are its own, so an ntfy
that is down never holds back the e-mail. Each notifier holds one ``apprise.Apprise`` with that one
URL, Apprise's own retries and throttling off (the outbox retries, and never inside a cycle), and
its socket timeouts set. Apprise answers a send with a result whose per-call log says why it
failed; that log decides what the outbox does (alerts.outbox.DeliveryError):

| what Apprise's log says | outcome |
| --- | --- |
| the service answered 429 (ntfy's codes 429xx too) | retried after at least RATE_LIMIT_S |
| 400, 401, 403, 404, 413 | given up: the URL or its credentials are wrong |
| another failure, a refused connection | retried with backoff |
| a read timeout, or no result within CALL_LIMIT_S | retried, marked "possible repeat" |

Apprise's own log lines name the URL's parts, so the ``apprise`` logger does not propagate into
the agent's log: what a failure says reaches the agent only through that per-call log, redacted.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from alerts.apprise_text import render
from alerts.outbox import DeliveryError, backoff_s
from foundation.apprise_urls import AppriseTarget, register_url
from foundation.redact import redact
from foundation.store.data_storage import OutboxMessage
from foundation.untrusted import strip

if TYPE_CHECKING:   # apprise and its plugins (~35 MB) load only when APPRISE_URLS is set
    from apprise.plugins.base import NotifyBase

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0          # each socket operation (connect, read, an SMTP command)
CALL_LIMIT_S = 25.0       # the whole send: under the outbox's 30 s, so Apprise says "timeout" first
RATE_LIMIT_S = 60.0       # Apprise does not pass on a Retry-After: a 429 waits at least this
REASON_MAX = 300
PERMANENT = {400: "refused the message as malformed (400)",
             401: "refused the credentials (401): fix the URL in APPRISE_URLS",
             403: "forbids this (403): check the URL's credentials and permissions",
             404: "has no such endpoint, topic or chat (404): fix the URL in APPRISE_URLS",
             413: "refused the message as too large (413)"}
_STATUS = re.compile(r"error=(\d{3,5})\b")
_CAUSE = re.compile(r"\[Errno -?\d+\] [^'\")\]]+|Read timed out|timed out|Connection refused"
                    r"|Name or service not known")
_APPRISE_LOGGER = "apprise"
_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]{0,31})://[^\s'\"]+")


def channel_name(number: int) -> str:
    """The outbox channel of APPRISE_URLS entry ``number`` (counted from 1)."""
    return f"apprise:{number}"


def _quiet() -> None:
    """Keep Apprise's own lines (which name the URL's parts) out of the agent's log, yet make them
    for each call's result; a NullHandler so that Python's last-resort handler prints none."""
    apprise_log = logging.getLogger(_APPRISE_LOGGER)
    apprise_log.propagate = False
    apprise_log.setLevel(logging.DEBUG)
    if not any(isinstance(h, logging.NullHandler) for h in apprise_log.handlers):
        apprise_log.addHandler(logging.NullHandler())


def _said(lines: Iterable[str]) -> str:
    """Apprise's words, one line, redacted, every URL in them cut to its scheme (Apprise's own
    "privacy" form still shows a token's first and last characters), at most REASON_MAX."""
    text = _URL.sub(lambda m: f"{m.group(1)}://…", strip(" ".join(line for line in lines if line)))
    text = redact(text)
    return text if len(text) <= REASON_MAX else text[:REASON_MAX - 1] + "…"


def load(url: str, timeout_s: float = TIMEOUT_S) -> tuple[NotifyBase | None, str]:
    """Apprise's service for a URL, set up for the outbox, or None and Apprise's reason."""
    import apprise  # noqa: PLC0415 - ~35 MB with its plugins: only when APPRISE_URLS is set

    register_url(url)
    _quiet()
    asset = apprise.AppriseAsset(app_id="homelab-monitor", app_desc="homelab-monitor alerts",
                                 storage_mode="memory")
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as said:  # type: ignore[no-untyped-call]
        service = apprise.Apprise.instantiate(url, asset=asset)
    if service is None:
        from apprise.manager_plugins import NotificationManager  # noqa: PLC0415 - as above

        scheme = url.partition("://")[0].lower()
        plugins = NotificationManager()  # type: ignore[no-untyped-call]  # a singleton
        if scheme not in plugins:   # Apprise's plugins, by scheme
            return None, f"Apprise has no service {scheme}:// (https://appriseit.com lists them)"
        reason = _said(str(said.getvalue()).splitlines()) or "unknown service or malformed URL"
        return None, reason
    service.retry = 0                          # the outbox retries, with its backoff
    service.request_rate_per_sec = 0           # and paces; Apprise would sleep inside the cycle
    service.socket_connect_timeout = min(float(service.socket_connect_timeout), timeout_s)
    service.socket_read_timeout = timeout_s
    return service, ""


def parse(url: str) -> tuple[str, str]:
    """(the service Apprise makes of this URL, "") or ("", why it cannot), sending nothing."""
    service, reason = load(url)
    return (str(service.service_name), "") if service is not None else ("", reason)


class AppriseNotifier:
    """Sends outbox messages to one Apprise URL (one outbox channel per URL)."""

    def __init__(self, target: AppriseTarget, number: int, cap_s: float = 900.0,
                 timeout_s: float = TIMEOUT_S, call_limit_s: float = CALL_LIMIT_S) -> None:
        import apprise  # noqa: PLC0415 - as in load(): only when an Apprise URL is configured

        self.channel = channel_name(number)
        self.label = target.label
        self.target = target
        self._cap_s = cap_s
        self._call_limit_s = call_limit_s
        service, self.problem = load(target.url.get_secret_value(), timeout_s)
        self._apprise = apprise.Apprise()
        if service is None:
            log.warning("%s (%s): Apprise cannot use this URL (%s); its messages will fail until "
                        "APPRISE_URLS is fixed (check shows each URL)", self.channel, self.label,
                        self.problem)
        else:
            self._apprise.add(service)

    def send(self, message: OutboxMessage, now: float) -> None:
        """Deliver one message; raise DeliveryError as the table of this module says."""
        import apprise  # noqa: PLC0415 - loaded by __init__ already; here for its names

        if self.problem:
            raise DeliveryError(f"Apprise cannot use {self.label}: {self.problem}", permanent=True)
        title, body, kind = render(message, now)
        result = self._apprise.notify(body=body, title=title, notify_type=kind,
                                      body_format=apprise.NotifyFormat.TEXT,
                                      timeout=self._call_limit_s, log_level=logging.DEBUG)
        try:
            if result:
                return
            timed_out = result.status == apprise.AppriseResultStatus.TIMEOUT
            raise self._failure([(e.level, e.message) for e in result.logs()], timed_out,
                                message.attempts + 1)
        finally:
            result.close()

    def _failure(self, entries: list[tuple[str, str]], timed_out: bool, attempts: int
                 ) -> DeliveryError:
        """The DeliveryError that Apprise's log of a failed send means."""
        warnings = [m for level, m in entries if level in ("WARNING", "ERROR", "CRITICAL")]
        everything = " ".join(m for _, m in entries)
        causes = sorted(set(_CAUSE.findall(everything)))
        reason = _said(warnings + ([f"({', '.join(causes)})"] if causes else []))
        where = f"{self.channel} ({self.label})"
        if timed_out:
            return DeliveryError(f"{where} gave no answer within {self._call_limit_s:.0f} s; "
                                 f"{reason}", outcome_unknown=True)
        codes = [int(c) for c in _STATUS.findall(" ".join(warnings))]
        status = (codes[-1] // 100 if codes[-1] >= 1000 else codes[-1]) if codes else None
        if status == 429:
            wait = max(RATE_LIMIT_S, backoff_s(attempts, self._cap_s))
            return DeliveryError(f"{where} rate limit (429), retry after {wait:.0f} s: {reason}",
                                 retry_after=wait)
        if status in PERMANENT:
            return DeliveryError(f"{where} {PERMANENT[status]}: {reason}", permanent=True)
        # a read timeout comes after the request went out: the service may have taken it
        unknown = "Read timed out" in everything or (
            "timed out" in everything and "connect timeout" not in everything.lower()
            and "ConnectTimeout" not in everything)
        return DeliveryError(f"{where} failed: {reason or 'Apprise gave no reason'}",
                             outcome_unknown=unknown)


def make(targets: Iterable[AppriseTarget], cap_s: float) -> dict[str, AppriseNotifier]:
    """A notifier per APPRISE_URLS entry, by channel name."""
    return {channel_name(n): AppriseNotifier(t, n, cap_s) for n, t in enumerate(targets, 1)}


def channel_target(channel: str, targets: tuple[AppriseTarget, ...]) -> AppriseTarget | None:
    """The APPRISE_URLS entry of an ``apprise:N`` channel (None for another channel)."""
    name, _, number = channel.partition(":")
    if name != "apprise" or not number.isdigit() or not 1 <= int(number) <= len(targets):
        return None
    return targets[int(number) - 1]


def takes(target: AppriseTarget, purpose: str, items: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a message goes to this URL: by purpose, and an alert by its worst finding."""
    ranks = {"high": 3, "medium": 2, "low": 1}
    worst = max((str(i.get("severity", "none")) for i in items), key=lambda s: ranks.get(s, 0),
                default="none")
    return target.takes(purpose, worst)

