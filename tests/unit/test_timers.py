"""The shared deadline queue (server/timers.py) against a fake clock: exact firing, lazy moves, compaction."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable

import pytest

from pyftps.server.timers import TimerQueue, timer_queue


class FakeHandle:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Records the loop timers asked for; ``advance`` runs those due, like the loop would."""

    def __init__(self) -> None:
        self.now = 0.0
        self.handles: list[FakeHandle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object], /) -> asyncio.TimerHandle:
        handle = FakeHandle(when, callback)
        self.handles.append(handle)
        return handle  # type: ignore[return-value]

    @property
    def pending(self) -> list[FakeHandle]:
        return [h for h in self.handles if not h.cancelled]

    def advance(self, to: float) -> None:
        while True:
            due = sorted((h for h in self.pending if h.when <= to), key=lambda h: h.when)
            if not due:
                break
            handle = due[0]
            handle.cancelled = True
            self.now = max(self.now, handle.when)
            handle.callback()
        self.now = to


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_a_timer_fires_exactly_at_its_deadline(clock: FakeClock) -> None:
    queue = TimerQueue(clock)
    fired: list[float] = []
    timer = queue.timer(lambda: fired.append(clock.now))
    timer.set(5.0)
    clock.advance(4.999)
    assert fired == []
    clock.advance(10.0)
    assert fired == [5.0]
    assert not timer.armed and len(queue) == 0


def test_moving_a_deadline_later_pushes_nothing_and_fires_at_the_new_time(clock: FakeClock) -> None:
    queue = TimerQueue(clock)
    fired: list[float] = []
    timer = queue.timer(lambda: fired.append(clock.now))
    timer.set(1.0)
    for step in range(2, 1000):
        timer.set(float(step))  # an idle deadline pushed back by every command
    assert queue.heap_size == 1 and len(clock.pending) == 1
    clock.advance(998.5)
    assert fired == []
    clock.advance(1000.0)
    assert fired == [999.0]


def test_moving_a_deadline_earlier_fires_at_the_earlier_time_once(clock: FakeClock) -> None:
    queue = TimerQueue(clock)
    fired: list[float] = []
    timer = queue.timer(lambda: fired.append(clock.now))
    timer.set(10.0)
    timer.set(3.0)
    clock.advance(20.0)
    assert fired == [3.0]


def test_cancelled_and_closed_timers_never_fire(clock: FakeClock) -> None:
    queue = TimerQueue(clock)
    fired: list[str] = []
    first = queue.timer(lambda: fired.append("first"))
    second = queue.timer(lambda: fired.append("second"))
    third = queue.timer(lambda: fired.append("third"))
    first.set(1.0)
    second.set(2.0)
    third.set(3.0)
    first.cancel()
    second.close()
    second.set(2.5)  # a closed timer stays closed
    clock.advance(5.0)
    assert fired == ["third"]


def test_timers_fire_in_deadline_order_and_a_callback_may_rearm(clock: FakeClock) -> None:
    queue = TimerQueue(clock)
    fired: list[tuple[str, float]] = []
    a = queue.timer(lambda: fired.append(("a", clock.now)))

    def b_fired() -> None:
        fired.append(("b", clock.now))
        if len(fired) < 4:
            b.set(clock.now + 1.0)

    b = queue.timer(b_fired)
    b.set(2.0)
    a.set(1.0)
    clock.advance(10.0)
    assert fired == [("a", 1.0), ("b", 2.0), ("b", 3.0), ("b", 4.0)]


def test_a_callback_may_cancel_a_timer_due_in_the_same_batch(clock: FakeClock) -> None:
    queue = TimerQueue(clock)
    fired: list[str] = []
    victim = queue.timer(lambda: fired.append("victim"))
    killer = queue.timer(lambda: (fired.append("killer"), victim.cancel()))
    killer.set(1.0)
    victim.set(1.0)
    clock.advance(1.0)
    assert fired == ["killer"]


def test_a_failing_callback_does_not_stop_the_others(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    queue = TimerQueue(clock)
    fired: list[str] = []

    def boom() -> None:
        raise RuntimeError("bug")

    queue.timer(boom).set(1.0)
    queue.timer(lambda: fired.append("ok")).set(1.0)
    clock.advance(2.0)
    assert fired == ["ok"]
    assert "timer callback failed" in caplog.text


def test_one_loop_timer_tracks_the_earliest_deadline(clock: FakeClock) -> None:
    queue = TimerQueue(clock)
    timers = [queue.timer(lambda: None) for _ in range(100)]
    for index, timer in enumerate(timers):
        timer.set(100.0 - index)
    assert [h.when for h in clock.pending] == [1.0]


def test_stale_entries_are_compacted_and_nothing_is_held_when_all_stop(clock: FakeClock) -> None:
    queue = TimerQueue(clock)
    keeper = queue.timer(lambda: None)
    keeper.set(1_000.0)
    for index in range(1_000):  # connections that come and go before their deadline
        timer = queue.timer(lambda: None)
        timer.set(500.0 + index)
        timer.close()
    assert queue.heap_size <= 2 * len(queue) + 64 + 1
    keeper.cancel()
    assert queue.heap_size == 0
    # The loop timer is kept for the next deadline (no handle per connection); once it fires on
    # the empty queue it is not re-armed, so nothing stays scheduled.
    assert len(clock.pending) <= 1
    clock.advance(1_000.0)
    assert clock.pending == []


def test_sessions_one_after_another_reuse_the_loop_timer(clock: FakeClock) -> None:
    queue = TimerQueue(clock)
    for _ in range(100):  # each connection arms a deadline and closes before it is due
        timer = queue.timer(lambda: None)
        timer.set(clock.time() + 30.0)
        timer.close()
        clock.advance(clock.now + 0.01)
    assert len(clock.handles) == 1


def test_a_closed_timer_does_not_keep_its_owner_alive(clock: FakeClock) -> None:
    queue = TimerQueue(clock)
    keeper = queue.timer(lambda: None)
    keeper.set(10.0)

    class Owner:
        def tick(self) -> None:
            pass

    owner = Owner()
    ref = weakref.ref(owner)
    timer = queue.timer(owner.tick)
    timer.set(5.0)
    timer.close()
    del owner
    gc.collect()
    assert ref() is None


def test_the_loop_queue_fires_on_a_real_loop() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        queue = timer_queue()
        assert timer_queue(loop) is queue
        done: asyncio.Future[float] = loop.create_future()
        timer = queue.timer(lambda: done.set_result(loop.time()))
        start = loop.time()
        timer.set(start + 0.05)
        timer.set(start + 0.1)  # moved later: fires at the later time, not the first
        return start, await asyncio.wait_for(done, 5)

    start, fired_at = asyncio.run(main())
    assert fired_at >= start + 0.1
