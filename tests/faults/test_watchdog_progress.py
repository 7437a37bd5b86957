"""The watchdog proves progress: fed only while cycles keep to their monotonic schedule.

Before, the loop fed systemd's watchdog on every wake-up while it waited, also while its
wall-clock schedule had slipped an hour (DST, a clock step): nothing restarted a loop that ran no
cycles. The pacer is driven here by a fake monotonic clock; feeds are real sd_notify datagrams on
a socket the test binds.
"""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agent.pace import LATE_S, Pacer
from agent.systemd import Watchdog

pytestmark = pytest.mark.faults

INTERVAL_S = 60.0
BUDGET_S = 100.0


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def fed(tmp_path: Path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    clock = Clock()
    # WATCHDOG_USEC=2: the dog sends at every feed the pacer allows (half of 2 us has passed)
    dog = Watchdog({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2"})
    pacer = Pacer(INTERVAL_S, BUDGET_S, dog.feed, clock)

    def feeds() -> int:
        count = 0
        while True:
            try:
                count += sock.recv(64) == b"WATCHDOG=1"
            except BlockingIOError:
                return count

    yield pacer, clock, feeds
    sock.close()


def test_an_idle_loop_on_schedule_feeds_and_a_stalled_one_does_not(fed) -> None:
    pacer, clock, feeds = fed
    assert pacer.due()
    pacer.started()
    clock.t += 3
    pacer.finished()
    assert pacer.wait_s() == pytest.approx(INTERVAL_S - 3)
    clock.t += 30
    pacer.beat()
    assert feeds() == 1
    clock.t += INTERVAL_S - 33 + LATE_S + 1          # the deadline passed and no cycle started
    assert pacer.due()
    pacer.beat()
    assert feeds() == 0


def test_a_cycle_feeds_within_its_budget_only(fed) -> None:
    pacer, clock, feeds = fed
    pacer.started()
    clock.t += BUDGET_S - 1
    pacer.beat()
    assert feeds() == 1
    clock.t += 2                                      # stuck past its budget, heartbeat or not
    pacer.beat()
    assert feeds() == 0
    pacer.finished()                                  # it did end: the loop is healthy again
    pacer.beat()
    assert feeds() == 1


def test_an_overrunning_cycle_skips_missed_slots_instead_of_piling_up(fed) -> None:
    pacer, clock, _ = fed
    pacer.started()
    clock.t += INTERVAL_S * 2.5
    pacer.finished()
    assert not pacer.due()
    assert pacer.wait_s() == pytest.approx(INTERVAL_S)


def test_a_deadline_far_beyond_one_interval_is_not_on_time(fed) -> None:
    """What the wall-clock schedule did after a backward step: a wait of an hour."""
    pacer, clock, feeds = fed
    pacer.next_due = clock.t + 3600
    pacer.beat()
    assert feeds() == 0
