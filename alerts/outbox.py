"""Durable delivery: messages are stored before sending, marked after, and retried with backoff."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from foundation.bounded import Stopped, run_bounded
from foundation.redact import redact
from foundation.store.data_storage import OutboxMessage, Store
from foundation.untrusted import strip

log = logging.getLogger(__name__)

FIRST_RETRY_S = 5.0
SEND_LIMIT_S = 30.0     # one send, whatever its client does (notifiers time out after 10 s)
ABANDONED = "abandoned on stop; it stays due and is sent again after the restart"


class DeliveryError(Exception):
    """A send failed; ``retry_after`` is the server's own wait, ``permanent`` means never retry."""

    def __init__(self, message: str, retry_after: float | None = None,
                 permanent: bool = False, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent
        self.outcome_unknown = outcome_unknown  # sent, then no answer: the retry may be a repeat


class Notifier(Protocol):
    """A channel that can deliver one stored message (raise DeliveryError on failure)."""

    channel: str

    def send(self, message: OutboxMessage, now: float) -> None:
        """Deliver the message; ``now`` lets it say that it is late."""


@dataclass(frozen=True)
class Delivery:
    """The outcome of one delivery attempt."""

    id: int
    channel: str
    purpose: str
    severity: str
    status: str        # sent | queued (will retry) | failed (gave up)
    error: str | None = None


def backoff_s(attempts: int, cap_s: float) -> float:
    """Seconds to wait after ``attempts`` failures: 5, 10, 20, ... capped."""
    return min(cap_s, FIRST_RETRY_S * 2.0 ** max(0, attempts - 1))


def deliver_due(store: Store, notifiers: Mapping[str, Notifier], now: float, cap_s: float,
                clock: Callable[[], float] | None = None, *, stop: threading.Event | None = None,
                heartbeat: Callable[[], None] = lambda: None, budget_s: float | None = None,
                send_limit_s: float = SEND_LIMIT_S) -> list[Delivery]:
    """Try every due message once; return what happened to each.

    Each send runs within ``send_limit_s`` and is abandoned when ``stop`` is set (the message
    stays due); no message starts after ``stop`` or once ``budget_s`` is spent (the rest wait
    for the next cycle), so neither shutdown nor the cycle waits on a hung server.
    """
    results = []
    t0 = time.monotonic()
    for message in store.due_messages(now):
        if stop is not None and stop.is_set():
            break
        if budget_s is not None and time.monotonic() - t0 >= budget_s:
            log.warning("deliveries took over %.0f s; the rest wait for the next cycle", budget_s)
            break
        notifier = notifiers.get(message.channel)
        if notifier is None:
            error = f"channel {message.channel} is no longer configured"
            store.mark_retry(message.id, now, error, give_up=True)
            results.append(Delivery(message.id, message.channel, message.purpose,
                                    message.severity, "failed", error))
            continue
        # durable before the network call: if we die mid-send, the next start says "possible repeat"
        store.mark_started(message.id, clock() if clock else now)
        try:
            _send(notifier, message, now, stop, heartbeat, send_limit_s)
        except Stopped:
            log.info("%s delivery of message %d %s", message.channel, message.id, ABANDONED)
            results.append(Delivery(message.id, message.channel, message.purpose,
                                    message.severity, "queued", ABANDONED))
            break
        except DeliveryError as err:
            # servers' answers are quoted (Home Assistant echoes the sentence, built from logs):
            # one line, no escape sequence; stripped first so no invisible hides a secret
            error = redact(strip(str(err)))
            attempts = message.attempts + 1
            wait = err.retry_after if err.retry_after is not None else backoff_s(attempts, cap_s)
            store.mark_retry(message.id, now + wait, error, give_up=err.permanent,
                             possible_repeat=err.outcome_unknown)
            status = "failed" if err.permanent else "queued"
            # a message given up is said at WARNING; a retry at DEBUG only: the agent logs the
            # channel going down once, and coming back (agent/dependencies.py)
            log.log(logging.WARNING if err.permanent else logging.DEBUG,
                    "%s delivery of message %d failed (attempt %d), %s: %s", message.channel,
                    message.id, attempts,
                    "giving up" if err.permanent else f"retrying in {wait:.0f} s", error)
            results.append(Delivery(message.id, message.channel, message.purpose,
                                    message.severity, status, error))
            continue
        store.mark_sent(message.id, clock() if clock else now)
        results.append(Delivery(message.id, message.channel, message.purpose, message.severity,
                                "sent"))
    return results


def _send(notifier: Notifier, message: OutboxMessage, now: float, stop: threading.Event | None,
          heartbeat: Callable[[], None], limit_s: float) -> None:
    """notifier.send within ``limit_s`` (DeliveryError past it); Stopped when asked to stop."""
    finished, _ = run_bounded(lambda: notifier.send(message, now), limit_s, stop, heartbeat,
                              name=f"send-{message.channel}")
    if not finished:
        raise DeliveryError(f"{message.channel} gave no answer within {limit_s:.0f} s; "
                            f"will retry")
