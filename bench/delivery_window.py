"""The double window of a delivery: a crash inside it makes a (marked) repeat, never a loss.

The window runs from Discord receiving the POST to the outbox's "sent" being durable: Discord's own
answer time plus the agent's share (reading the answer, the fsync of ``mark_sent``). This measures
the agent's share against a loopback fake that answers at once, and the cost of the durable
"attempt started" mark that makes a repeat say so.
Run: .venv/bin/python -m bench.delivery_window [--messages N]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import save

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    """Deliver N messages through the real Discord notifier and outbox; print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from alerts.discord import DiscordNotifier
    from alerts.outbox import deliver_due
    from foundation.settings import load_settings
    from foundation.store.data_storage import Store
    from tests.fakes.discord_server import FakeDiscord

    with tempfile.TemporaryDirectory() as tmp, FakeDiscord() as discord:
        settings = load_settings(environ={}, overrides={"DATA_DIR": Path(tmp),
                                                        "DISCORD_WEBHOOK_URL": discord.url})
        store = Store.open(settings.db_path)
        durable: dict[int, float] = {}
        started_cost: list[float] = []
        mark_sent, mark_started = store.mark_sent, store.mark_started

        def timed_sent(message_id: int, now: float) -> None:
            mark_sent(message_id, now)
            durable[message_id] = time.time()

        def timed_started(message_id: int, now: float) -> None:
            t0 = time.perf_counter()
            mark_started(message_id, now)
            started_cost.append(time.perf_counter() - t0)

        store.mark_sent, store.mark_started = timed_sent, timed_started  # type: ignore[method-assign]
        notifiers = {"discord": DiscordNotifier(settings)}
        now = time.time()
        payload = {"purpose": "alert", "host": "bench", "created_at": now, "items": []}
        for n in range(args.messages):
            with store.transaction() as tx:
                tx.enqueue(channel="discord", purpose="alert", severity="high",
                           payload=dict(payload, created_at=now + n), now=now,
                           dedupe_key=f"bench-{n}")
            deliver_due(store, notifiers, time.time(), 60)
        store.close()
        received = [a.received_at for a in discord.accepted]
    windows = [(durable[i] - r) * 1000 for i, r in zip(sorted(durable), received, strict=False)]
    costs = [c * 1000 for c in started_cost]
    figures = {"messages": args.messages,
               "agent_share_ms_median": statistics.median(windows),
               "agent_share_ms_max": max(windows),
               "mark_started_ms_median": statistics.median(costs),
               "mark_started_ms_max": max(costs)}
    print(f"double window, agent's share (Discord received -> sent durable): median "
          f"{figures['agent_share_ms_median']:.1f} ms, max {figures['agent_share_ms_max']:.1f} ms "
          f"over {args.messages} messages; add Discord's own answer time")
    print(f"durable 'attempt started' mark before each send: median "
          f"{figures['mark_started_ms_median']:.1f} ms, max {figures['mark_started_ms_max']:.1f} ms")
    save("delivery_window", figures)


if __name__ == "__main__":
    main()
