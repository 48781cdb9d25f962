"""Many connection deadlines behind one event-loop timer: a heap with lazy deletion.

Each control connection keeps an idle deadline (RFC 1123 §4.1.3.2) that moves after every command
batch, plus a guard deadline during TLS handshakes and closes. With one ``asyncio.TimerHandle`` per
deadline, every command cancels a handle and pushes a new one onto the loop's heap, and cancelled
handles (holding their connection) pile up there until the loop purges them. Here a deadline that
moves *later*, the usual case, costs one attribute store: its heap entry stays put and is re-queued
at the new time when it comes due. Only a deadline moving earlier pushes a new entry. One loop timer
covers the earliest entry, so deadlines fire exactly when due, as strictly as a handle per deadline.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "Timer", "TimerQueue", "timer_queue"]

log = logging.getLogger("pyftps.server")

# Rebuild the heap when stale entries outnumber live timers by this factor (plus a floor), so a
# burst of closed connections or earlier-moved deadlines cannot grow it without bound.
_STALE_FACTOR = 2
_STALE_FLOOR = 64


class Clock(Protocol):
    """The part of the event loop the queue needs (an ``asyncio`` loop, or a fake in tests)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object], /) -> asyncio.TimerHandle: ...


class Timer:
    """One deadline of one connection; ``set`` and ``cancel`` are O(1) when it moves later or stops."""

    __slots__ = ("_callback", "_entry", "_entry_when", "_queue", "when")

    def __init__(self, queue: TimerQueue, callback: Callable[[], object]) -> None:
        self._queue = queue
        self._callback: Callable[[], object] | None = callback
        self._entry: int | None = None  # sequence number of this timer's live heap entry
        self._entry_when = 0.0  # and its time
        self.when: float | None = None

    @property
    def armed(self) -> bool:
        return self.when is not None

    def set(self, when: float) -> None:
        """Fire the callback at loop time ``when`` (replacing any earlier setting)."""
        if self._callback is None:
            return  # closed
        if self.when is None:
            self._queue._live += 1
        self.when = when
        if self._entry is None or when < self._entry_when:
            self._queue._push(self, when)
        # else it moved later: the old entry re-queues it when it comes due

    def set_in(self, seconds: float) -> None:
        self.set(self._queue.clock.time() + seconds)

    def cancel(self) -> None:
        if self.when is not None:
            self.when = None
            self._queue._live -= 1
            self._queue._maybe_compact()

    def close(self) -> None:
        """Cancel for good and drop the callback, so a stale heap entry holds no connection."""
        self.cancel()
        self._callback = None


class TimerQueue:
    """The deadlines of every connection on one loop; see the module docstring."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._live = 0  # timers with a deadline set
        self._handle: asyncio.TimerHandle | None = None
        self._handle_when: float | None = None
        self._popping = False  # _run is taking due entries off the heap: arm once, afterwards

    def timer(self, callback: Callable[[], object]) -> Timer:
        return Timer(self, callback)

    def __len__(self) -> int:
        """Timers currently armed."""
        return self._live

    @property
    def heap_size(self) -> int:
        return len(self._heap)

    # ------------------------------------------------------------------ internals

    def _push(self, timer: Timer, when: float) -> None:
        seq = next(self._seq)
        timer._entry, timer._entry_when = seq, when
        heapq.heappush(self._heap, (when, seq, timer))
        self._arm()

    def _arm(self) -> None:
        """Keep the one loop timer at the earliest entry."""
        if not self._heap or self._popping:
            return
        when = self._heap[0][0]
        if self._handle_when is None or when < self._handle_when:
            if self._handle is not None:
                self._handle.cancel()
            self._handle = self.clock.call_at(when, self._run)
            self._handle_when = when

    def _run(self) -> None:
        self._handle = self._handle_when = None
        heap, now = self._heap, self.clock.time()
        due: list[Timer] = []
        self._popping = True
        while heap and heap[0][0] <= now:
            _, seq, timer = heapq.heappop(heap)
            if timer._entry != seq:
                continue  # superseded by an earlier entry of the same timer
            timer._entry = None
            if timer.when is None:
                continue  # cancelled
            if timer.when > now:
                self._push(timer, timer.when)  # it moved later since this entry was queued
                continue
            due.append(timer)
        self._popping = False
        self._arm()
        for timer in due:
            # Checked again: an earlier callback in this batch may have re-set or cancelled it.
            if timer.when is None or timer.when > now or timer._entry is not None:
                continue
            callback = timer._callback
            timer.cancel()
            if callback is None:
                continue
            try:
                callback()
            except Exception:  # one connection's bug must not cost the others their deadlines
                log.exception("timer callback failed")
        self._arm()

    def _maybe_compact(self) -> None:
        heap = self._heap
        if self._live == 0:
            for _, _, timer in heap:
                timer._entry = None
            heap.clear()
            # The loop timer stays: firing on an empty heap costs nothing, and the next connection's
            # deadlines (almost always later) then need no new TimerHandle: sessions opened one
            # after another would otherwise each cancel one and allocate one.
            return
        if len(heap) <= _STALE_FACTOR * self._live + _STALE_FLOOR:
            return
        kept = []
        for entry in heap:
            timer = entry[2]
            if timer._entry != entry[1]:
                continue
            if timer.when is None:
                timer._entry = None
            else:
                kept.append(entry)
        heapq.heapify(kept)
        self._heap = kept


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimerQueue] = weakref.WeakKeyDictionary()


def timer_queue(loop: asyncio.AbstractEventLoop | None = None) -> TimerQueue:
    """The queue shared by every connection on ``loop`` (the running loop by default)."""
    loop = loop if loop is not None else asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        # A proxy: the registry must not keep a closed loop alive through its own queue.
        queue = _queues[loop] = TimerQueue(weakref.proxy(loop))
    return queue
