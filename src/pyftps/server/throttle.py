"""Token-bucket bandwidth limits for data transfers, per transfer or shared by all of one user's transfers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["MIN_CHUNK", "SharedBandwidth", "TokenBucket"]

MIN_CHUNK = 4096  # smallest chunk worth a system call and a TLS record
_CHUNK_SECONDS = 0.25  # a chunk should take about this long at the bucket's rate, to keep pacing smooth


class TokenBucket:
    """Paces byte counts to ``rate_bytes_per_s``; thread-safe, so transfers may share one bucket.

    The bucket lets a transfer run ahead by ``burst`` bytes and then paces it at the rate. It is "pay
    afterwards": a chunk larger than the tokens left is allowed and the debt becomes the caller's
    sleep, so any chunk size gives the exact long-run rate. Worker threads call :meth:`delay_for`
    with a monotonic ``now`` and sleep on their abort event (not ``time.sleep``) so ABOR stays prompt.

    A rate of 0 or None means unlimited: :meth:`delay_for` is always 0. ``burst`` (default: one
    second's worth) is how far ahead of the rate a transfer may get after being idle.
    """

    def __init__(self, rate_bytes_per_s: float | None, burst: int | None = None) -> None:
        if rate_bytes_per_s is not None and rate_bytes_per_s < 0:
            raise ValueError("rate must not be negative")
        if burst is not None and burst < 0:
            raise ValueError("burst must not be negative")
        self.rate = float(rate_bytes_per_s) if rate_bytes_per_s else 0.0
        self.burst = float(burst if burst is not None else self.rate)
        self._tokens = self.burst  # starts full: a new transfer may burst straight away
        self._last: float | None = None  # time of the last refill; None until the first call
        self._lock = threading.Lock()

    @property
    def unlimited(self) -> bool:
        return self.rate == 0.0

    def delay_for(self, n: int, now: float) -> float:
        """Take ``n`` bytes; returns how long to sleep before sending (or after receiving) them."""
        if self.unlimited or n <= 0:
            return 0.0
        with self._lock:
            self._refill(now)
            self._tokens -= n
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.rate

    def full_at(self) -> float:
        """The time from which the bucket is full again (reusing it equals starting afresh)."""
        if self.unlimited:
            return float("-inf")
        with self._lock:
            if self._last is None:
                return float("-inf")
            return self._last + (self.burst - self._tokens) / self.rate

    def max_chunk(self, buffer_size: int) -> int:
        """A chunk size for the copy loop: about a quarter second of the rate, within the buffer.

        Smaller chunks at low rates keep each sleep short, so the flow stays smooth and neither side's
        idle timeout sees a long silence after a large burst.
        """
        if self.unlimited:
            return buffer_size
        return max(min(MIN_CHUNK, buffer_size), min(buffer_size, int(self.rate * _CHUNK_SECONDS)))

    def _refill(self, now: float) -> None:
        """Add the tokens earned since the last call (lock held)."""
        if self._last is None:
            self._last = now
            return
        # Threads read the clock before queueing on the lock, so ``now`` may be slightly older than
        # ``_last``: never refill backwards, and never move ``_last`` back.
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._last = now


@dataclass(slots=True)
class _Shared:
    bucket: TokenBucket
    refs: int = 0


class SharedBandwidth:
    """One bucket per user, shared by all that user's concurrent transfers.

    Since every transfer draws from the same bucket, ``k`` concurrent transfers each get about
    ``rate / k`` and opening more connections gains nothing. A bucket outlives its last transfer until
    it has refilled, so back-to-back transfers cannot each start with a fresh burst.
    Use one instance per direction for separate upload and download limits. A user's rate is read
    (``rate_for``) when their bucket is created, so a change applies once their transfers pause.
    """

    def __init__(
        self,
        rate_bytes_per_s: float | None,
        *,
        burst: int | None = None,
        rate_for: Callable[[str], float | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate_bytes_per_s
        self._burst = burst
        # Per-user rate (e.g. from the user store); its None means unlimited, like TokenBucket's.
        self._rate_for = rate_for
        self._clock = clock
        self._lock = threading.Lock()
        self._users: dict[str, _Shared] = {}

    @contextmanager
    def acquire(self, user: str) -> Iterator[TokenBucket]:
        """The user's bucket for the duration of one transfer (reference counted)."""
        shared = self._open(user)
        try:
            yield shared.bucket
        finally:
            self._close(user, shared)

    def active(self) -> dict[str, int]:
        """Users with running transfers and how many each has (for metrics)."""
        with self._lock:
            return {user: shared.refs for user, shared in self._users.items() if shared.refs}

    def _open(self, user: str) -> _Shared:
        with self._lock:
            self._prune(self._clock())
            shared = self._users.get(user)
            if shared is None:
                rate = self._rate_for(user) if self._rate_for is not None else self._rate
                shared = self._users[user] = _Shared(TokenBucket(rate, self._burst))
            shared.refs += 1
            return shared

    def _close(self, user: str, shared: _Shared) -> None:
        with self._lock:
            shared.refs = max(0, shared.refs - 1)
            self._prune(self._clock())

    def _prune(self, now: float) -> None:
        """Forget idle buckets that have refilled: a new one would behave identically (lock held)."""
        idle = [u for u, s in self._users.items() if s.refs == 0 and s.bucket.full_at() <= now]
        for user in idle:
            del self._users[user]
