"""contactsync.outlook.pacing: Graph's budget and concurrency per mailbox, with a fake clock."""

from __future__ import annotations

import threading

import pytest

from contactsync.outlook import pacing
from contactsync.outlook.pacing import MailboxPacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def pacer(clock: FakeClock, limit: int | None = 100, window: float = 10.0) -> MailboxPacer:
    return MailboxPacer(limit, window, 4, clock=clock, sleep=clock.sleep)


def test_a_window_worth_goes_at_once_then_the_units_come_back_a_window_after_their_answers():
    clock = FakeClock()
    p = pacer(clock)
    for _ in range(5):  # 5 batches of 20: the whole budget, no wait
        p.release(p.acquire(20, 4))
        clock.now += 0.5  # each answered half a second later
    assert clock.sleeps == [] and p.used == 100
    # The next batch waits until the first batch's units leave: 10 s after its answer (t=0).
    p.release(p.acquire(20, 4))
    assert clock.now == pytest.approx(10.0) and clock.sleeps == [pytest.approx(7.5)]
    # A smaller one needs only the next answer's units: answered at t=0.5.
    p.acquire(5, 1)
    assert clock.now == pytest.approx(10.5)


def test_the_budget_is_never_exceeded_in_any_window_counting_from_the_answer():
    clock = FakeClock()
    p = pacer(clock, limit=50, window=10.0)
    answers: list[tuple[float, int]] = []
    for i in range(60):
        units = 1 + i % 7
        grant = p.acquire(units, 1)
        clock.now += 0.3  # the request takes 0.3 s
        p.release(grant)
        answers.append((clock.now - 0.3, units))  # when it was sent
    # Sent in any window of 10 s (the service may count a request any time until its answer):
    # never more than the budget.
    for start, _ in answers:
        sent = sum(n for t, n in answers if start <= t < start + 10.0 - 0.3)
        assert sent <= 50
    # And the pace is the budget's: 60 requests of 4 units on average, 50 per window.
    assert clock.now == pytest.approx(sum(n for _, n in answers) / 50 * 10, rel=0.25)


def test_units_in_flight_hold_the_budget_until_answered():
    clock = FakeClock()
    p = pacer(clock, limit=20)
    first = p.acquire(20, 4)
    got: list[float] = []
    waiter = threading.Thread(target=lambda: got.append(p.acquire(1, 1) and clock.now))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()  # neither a slot nor a unit is free
    clock.now = 1.0
    p.release(first)  # answered at t=1: the units leave at t=11
    waiter.join(5)
    assert got == [pytest.approx(11.0)]


def test_four_slots_an_unordered_batch_takes_them_all_a_chained_one_takes_one():
    clock = FakeClock()
    p = pacer(clock, limit=None)
    chained = [p.acquire(20, 1) for _ in range(4)]  # four dependsOn-chained batches at once
    blocked = threading.Event()

    def unordered() -> None:
        p.release(p.acquire(20, 20))  # needs all 4 slots
        blocked.set()

    t = threading.Thread(target=unordered)
    t.start()
    assert not blocked.wait(0.2)
    for grant in chained[:3]:
        p.release(grant)
    assert not blocked.wait(0.2)  # one chained batch still holds a slot
    p.release(chained[3])
    assert blocked.wait(5)
    t.join()
    assert clock.sleeps == []  # no budget: never waits for time


def test_a_batch_larger_than_the_budget_goes_alone_and_zero_means_no_budget():
    clock = FakeClock()
    p = pacer(clock, limit=10)
    p.release(p.acquire(20, 4))  # alone in an empty window
    assert clock.sleeps == []
    p.acquire(1, 1)
    assert clock.now == pytest.approx(10.0)
    unlimited = MailboxPacer(0, 10.0, 4, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        unlimited.release(unlimited.acquire(20, 4))
    assert unlimited.limit is None and clock.now == pytest.approx(10.0)


def test_clients_of_one_mailbox_share_a_pacer_others_do_not():
    a = pacing.mailbox_pacer("https://graph.example/v1.0", "Alex@Contoso.example", 10_000, 600)
    b = pacing.mailbox_pacer("https://graph.example/v1.0/", "alex@contoso.example", 10_000, 600)
    c = pacing.mailbox_pacer("https://graph.example/v1.0", "sam@contoso.example", 10_000, 600)
    assert a is b and a is not c


def test_limits_are_checked():
    with pytest.raises(ValueError):
        MailboxPacer(-1)
    with pytest.raises(ValueError):
        MailboxPacer(10, 0)
    with pytest.raises(ValueError):
        MailboxPacer(10, 10, 0)


def test_room_is_what_goes_now_without_waiting():
    clock = FakeClock()
    p = pacer(clock, limit=50)
    p.release(p.acquire(3, 1))
    p.release(p.acquire(40, 4))
    assert p.room() == 7  # a batch of 7 now uses the window to the last unit
    p.release(p.acquire(7, 4))
    assert p.room() == 0 and clock.sleeps == []
    clock.now = 10.0  # the first answers leave the window
    assert p.room() == 50
    assert pacer(clock, limit=None).room() is None
