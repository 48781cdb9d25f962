"""Memory handed back after transfer-sized buffers are freed (glibc only; each case in a child process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pyftps.server.memory import _glibc

pytestmark = pytest.mark.skipif(_glibc() is None, reason="needs glibc's mallopt and malloc_trim")

# 200 copy buffers of 256 KiB (50 MiB), each followed by a small allocation that outlives it, the way a
# session's objects outlive a transfer: freed buffers cannot merge back into the heap's top.
FRAGMENT = textwrap.dedent(
    """
    import sys
    from pyftps.server import memory

    def rss_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1])

    if "pin" in sys.argv:
        assert memory.pin_mmap_threshold()
    first = bytearray(256 * 1024)
    del first  # glibc raises its mmap threshold on this free unless it is pinned
    before = rss_kib()
    buffers, survivors = [], []
    for _ in range(200):
        buffer = bytearray(256 * 1024)
        buffer[::4096] = b"x" * len(buffer[::4096])
        buffers.append(buffer)
        survivors.append(bytes(600))
    del buffers
    if "trim" in sys.argv:
        memory.release_free_memory()
    print(rss_kib() - before)
    """
)


def _retained_mib(*options: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", FRAGMENT, *options], capture_output=True, text=True, check=True
    )
    return int(out.stdout) / 1024


def test_by_default_glibc_keeps_freed_buffers() -> None:
    assert _retained_mib() > 40  # the control: without the tuning the tests below could not fail


@pytest.mark.parametrize("option", ["pin", "trim"])
def test_pinned_threshold_or_trim_returns_them(option: str) -> None:
    assert _retained_mib(option) < 5


def test_trim_runs_once_after_the_last_transfer_and_not_while_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from pyftps.server import memory

    trims: list[int] = []
    monkeypatch.setattr(memory, "release_free_memory", lambda: trims.append(1) or True)
    busy = [False]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        trimmer = memory.TrimWhenQuiet(delay=0.05)
        with ThreadPoolExecutor(1) as pool:
            trimmer.went_quiet(loop, lambda: not busy[0], pool)
            trimmer.went_quiet(loop, lambda: not busy[0], pool)  # re-armed, not doubled
            for _ in range(200):  # polled: a loaded machine may take a while to run the thread
                if trims:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            assert trims == [1]
            busy[0] = True  # a transfer started before the delay ran out: no trim
            trimmer.went_quiet(loop, lambda: not busy[0], pool)
            await asyncio.sleep(0.3)
            assert trims == [1]
            trimmer.went_quiet(loop, lambda: True, pool)
            trimmer.cancel()  # server stopping
            await asyncio.sleep(0.3)
            assert trims == [1]

    asyncio.run(scenario())


def test_a_renewed_pool_lets_its_threads_go_and_still_runs_queued_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from pyftps.server import memory

    trims: list[int] = []
    monkeypatch.setattr(memory, "release_free_memory", lambda: trims.append(1) or True)

    class Owner:
        pool = ThreadPoolExecutor(2, thread_name_prefix="test-renew")

    owner = Owner()
    unblock = threading.Event()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        trimmer = memory.TrimWhenQuiet(delay=0.01)
        trimmer.renew_pool(owner, "pool")
        with ThreadPoolExecutor(1) as ops:
            trimmer.went_quiet(loop, lambda: True, ops)
            await asyncio.sleep(0.2)
            unused = owner.pool  # no thread ever started: kept as it is
            assert not unused._shutdown
            old = owner.pool
            assert await loop.run_in_executor(old, lambda: 1) == 1
            still_running = loop.run_in_executor(old, unblock.wait)
            threads = set(old._threads)
            trims.clear()
            trimmer.went_quiet(loop, lambda: True, ops)
            for _ in range(200):  # polled: a loaded machine may take a while
                if owner.pool is not old:
                    break
                await asyncio.sleep(0.05)
            assert owner.pool is not old and old._shutdown
            assert await loop.run_in_executor(owner.pool, lambda: 2) == 2  # the twin serves
            assert not trims  # the trim waits for the old threads, one of them still busy
            unblock.set()
            assert await still_running
            for _ in range(200):
                if trims:
                    break
                await asyncio.sleep(0.05)
            assert trims == [1]
            assert not any(thread.is_alive() for thread in threads)

    try:
        asyncio.run(scenario())
    finally:
        unblock.set()
        owner.pool.shutdown()


def test_the_pool_that_runs_the_trim_can_itself_be_renewed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trim joins the retired pools' threads, so it runs in the twin, not in the pool it retires."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from pyftps.server import memory

    trims: list[int] = []
    monkeypatch.setattr(memory, "release_free_memory", lambda: trims.append(1) or True)

    class Owner:
        ops = ThreadPoolExecutor(2, thread_name_prefix="test-ops")

    owner = Owner()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        old = owner.ops
        assert await loop.run_in_executor(old, lambda: 1) == 1  # a thread ran: the pool is renewed
        threads = set(old._threads)
        trimmer = memory.TrimWhenQuiet(delay=0.01)
        trimmer.renew_pool(owner, "ops")
        trimmer.went_quiet(loop, lambda: True, old)
        for _ in range(200):  # polled: a loaded machine may take a while
            if trims:
                break
            await asyncio.sleep(0.05)
        assert trims == [1] and owner.ops is not old
        assert not any(thread.is_alive() for thread in threads)

    try:
        asyncio.run(scenario())
    finally:
        owner.ops.shutdown()
