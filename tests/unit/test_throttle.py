"""Unit tests for pyftps.server.throttle: token-bucket arithmetic and per-user sharing, on a fake clock."""

from __future__ import annotations

import threading

import pytest

from pyftps.server.throttle import MIN_CHUNK, SharedBandwidth, TokenBucket

MB = 1_000_000
CHUNK = 256 * 1024


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def transfer(bucket: TokenBucket, total: int, chunk: int, start: float) -> float:
    """Send ``total`` bytes as a worker would (sleeping each delay); returns the total delay."""
    now, slept, sent = start, 0.0, 0
    while sent < total:
        n = min(chunk, total - sent)
        delay = bucket.delay_for(n, now)
        assert delay >= 0
        slept += delay
        now += delay
        sent += n
    return slept


@pytest.mark.parametrize("rate", [None, 0, 0.0])
def test_unlimited(rate: float | None) -> None:
    bucket = TokenBucket(rate)
    assert bucket.unlimited
    assert transfer(bucket, 100 * MB, CHUNK, 0.0) == 0.0
    assert bucket.max_chunk(CHUNK) == CHUNK


def test_ten_megabytes_at_one_megabyte_per_second() -> None:
    bucket = TokenBucket(MB, burst=MB)
    slept = transfer(bucket, 10 * MB, CHUNK, 0.0)
    assert slept == pytest.approx(9.0, abs=1e-6)  # 10 MB minus the 1 MB burst, at 1 MB/s


def test_without_burst_the_whole_transfer_is_paced() -> None:
    bucket = TokenBucket(MB, burst=0)
    assert transfer(bucket, 10 * MB, CHUNK, 0.0) == pytest.approx(10.0, abs=1e-6)


def test_any_chunk_size_gives_the_same_total() -> None:
    totals = [transfer(TokenBucket(MB, burst=MB), 10 * MB, chunk, 0.0) for chunk in (1000, 65536, 3 * MB)]
    assert totals == pytest.approx([9.0] * 3, abs=1e-6)


def test_burst_after_idle_then_paced() -> None:
    bucket = TokenBucket(MB, burst=2 * MB)
    assert bucket.delay_for(2 * MB, 0.0) == 0.0  # a full bucket: the burst goes at once
    assert bucket.delay_for(MB, 0.0) == pytest.approx(1.0)  # then the debt is paid in time
    assert bucket.delay_for(MB, 1.0) == pytest.approx(1.0)
    # Idle long enough to refill completely, but never beyond the burst.
    assert bucket.delay_for(2 * MB, 100.0) == 0.0
    assert bucket.delay_for(MB, 100.0) == pytest.approx(1.0)


def test_default_burst_is_one_second() -> None:
    bucket = TokenBucket(MB)
    assert bucket.delay_for(MB, 0.0) == 0.0
    assert bucket.delay_for(MB // 2, 0.0) == pytest.approx(0.5)


def test_clock_running_backwards_does_not_refill() -> None:
    bucket = TokenBucket(MB, burst=0)
    assert bucket.delay_for(MB, 10.0) == pytest.approx(1.0)
    assert bucket.delay_for(MB, 9.5) == pytest.approx(2.0)  # a stale "now" from a racing thread
    assert bucket.delay_for(MB, 12.0) == pytest.approx(1.0)


def test_full_at() -> None:
    bucket = TokenBucket(MB, burst=MB)
    assert bucket.full_at() == float("-inf")
    bucket.delay_for(3 * MB, 10.0)  # 2 MB in debt
    assert bucket.full_at() == pytest.approx(13.0)


def test_max_chunk() -> None:
    assert TokenBucket(10 * MB).max_chunk(CHUNK) == CHUNK
    assert TokenBucket(100_000).max_chunk(CHUNK) == 25_000  # a quarter second
    assert TokenBucket(1000).max_chunk(CHUNK) == MIN_CHUNK
    assert TokenBucket(1000).max_chunk(1024) == 1024


def test_rejects_negative() -> None:
    with pytest.raises(ValueError):
        TokenBucket(-1)
    with pytest.raises(ValueError):
        TokenBucket(MB, burst=-1)


def test_thread_safe_accounting() -> None:
    bucket = TokenBucket(MB, burst=0)
    threads, calls = 8, 500
    barrier = threading.Barrier(threads)
    delays: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        for _ in range(calls):
            delay = bucket.delay_for(1000, 0.0)
            with lock:
                delays.append(delay)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=10)
    # Every byte was charged exactly once: the largest debt is all 4 MB at 1 MB/s.
    assert max(delays) == pytest.approx(threads * calls * 1000 / MB)
    assert len(set(delays)) == threads * calls


# ---------------------------------------------------------------------------- sharing


def simulate(streams: dict[str, TokenBucket], seconds: float, chunk: int = 64 * 1024) -> dict[str, int]:
    """Run concurrent transfers against their buckets in simulated time; bytes moved by each."""
    next_at = dict.fromkeys(streams, 0.0)
    moved = dict.fromkeys(streams, 0)
    while True:
        name = min(next_at, key=lambda s: next_at[s])
        now = next_at[name]
        if now >= seconds:
            return moved
        moved[name] += chunk
        next_at[name] = now + streams[name].delay_for(chunk, now)
        if next_at[name] == now:
            next_at[name] = now + 1e-3  # an unpaced stream still takes some time per chunk


def test_shared_bucket_splits_between_one_users_transfers() -> None:
    clock = FakeClock(0.0)
    shared = SharedBandwidth(MB, burst=0, clock=clock)
    with shared.acquire("alice") as a1, shared.acquire("alice") as a2, shared.acquire("bob") as b1:
        assert a1 is a2 and a1 is not b1
        assert shared.active() == {"alice": 2, "bob": 1}
        moved = simulate({"alice-1": a1, "alice-2": a2, "bob-1": b1}, seconds=20.0)
    assert moved["alice-1"] + moved["alice-2"] == pytest.approx(20 * MB, rel=0.01)
    assert moved["alice-1"] == pytest.approx(moved["alice-2"], rel=0.02)  # an even split
    assert moved["bob-1"] == pytest.approx(20 * MB, rel=0.01)  # bob has his own bucket
    assert shared.active() == {}


def test_more_connections_gain_nothing() -> None:
    shared = SharedBandwidth(MB, burst=0, clock=FakeClock(0.0))
    with shared.acquire("alice") as bucket:
        streams = {f"t{i}": bucket for i in range(5)}
        moved = simulate(streams, seconds=10.0)
    # Each stream may be one chunk ahead (its debt is paid after the horizon), no more.
    assert 10 * MB <= sum(moved.values()) <= 10 * MB + 5 * 64 * 1024


def test_bucket_outlives_its_last_transfer_until_refilled() -> None:
    clock = FakeClock(0.0)
    shared = SharedBandwidth(MB, burst=MB, clock=clock)
    with shared.acquire("alice") as first:
        first.delay_for(3 * MB, 0.0)  # 2 MB of debt: full again at t=3
    clock.now = 1.0
    with shared.acquire("alice") as second:
        assert second is first  # no fresh burst for a back-to-back transfer
        assert second.delay_for(1, 1.0) > 0
    clock.now = 10.0
    with shared.acquire("alice") as third:
        assert third is not first  # refilled long ago: a new bucket is equivalent
        assert third.delay_for(MB, 10.0) == 0.0


def test_per_user_rates_and_unlimited_users() -> None:
    rates = {"alice": 2 * MB, "bob": None}
    shared = SharedBandwidth(MB, burst=0, rate_for=lambda user: rates.get(user, MB), clock=FakeClock())
    with shared.acquire("alice") as alice, shared.acquire("bob") as bob, shared.acquire("carol") as carol:
        assert alice.rate == 2 * MB and bob.unlimited and carol.rate == MB


def test_release_on_exception() -> None:
    shared = SharedBandwidth(MB, clock=FakeClock())
    with pytest.raises(RuntimeError), shared.acquire("alice"):
        raise RuntimeError("transfer failed")
    assert shared.active() == {}
