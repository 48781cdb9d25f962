"""Give memory back to the system after a burst of transfers (glibc malloc tuning; no-op elsewhere).

Each transfer thread allocates its 256 KiB copy buffer and OpenSSL's record buffers from malloc. glibc
raises its mmap threshold the first time such a buffer is freed, so later buffers come from the heap
arenas of up to 8 x cores threads, and freed arena memory is not returned to the system: after 1000
clients at once the server stayed ~80 MiB above its idle size. Two measured remedies, used together
(a 256-thread burst: 72 MiB resident afterwards by default, 37 MiB with a pinned threshold, 30 MiB
after a trim):

- pin the mmap threshold (``mallopt(M_MMAP_THRESHOLD)``): large buffers are always mmapped and
  unmapped on free, and glibc stops moving the threshold;
- ``malloc_trim(0)`` once the server goes quiet: returns the free pages of every arena.

Not done: capping glibc's per-thread arenas (``M_ARENA_MAX``). Two or four arenas kept ~5 MiB
less after 1000 clients at once, but the burst ran ~9 % slower (12 alternating runs; the threads
wait on the shared arenas' locks), and the next burst reuses that memory anyway.

Once quiet, the thread pools (transfers, storage operations) are also swapped for empty twins
(:meth:`TrimWhenQuiet.renew_pool`): a thread that ran keeps its touched stack, its Python frame stack
and its malloc caches until it exits, ~8 MiB for 256 threads after 1000 clients at once. Threads are
started again on demand.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import cache

__all__ = ["TrimWhenQuiet", "pin_mmap_threshold", "release_free_memory"]

log = logging.getLogger("pyftps.server")

_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
MMAP_THRESHOLD = 128 * 1024  # glibc's initial value: buffers of 128 KiB and more bypass the arenas


@cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        # Both exist only in glibc (musl and macOS lack them): their presence is the test.
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Serve allocations of ``threshold`` bytes and more with mmap, for good. True if it took effect."""
    libc = _glibc()
    if libc is None:
        return False
    ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD, %d) refused", threshold)
    return ok


def release_free_memory() -> bool:
    """Return free heap pages to the system (blocking; milliseconds on a large heap). True if any were."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


class TrimWhenQuiet:
    """Trim once a burst is over: ``delay`` seconds after the last transfer ended, if none started since."""

    def __init__(self, delay: float = 2.0) -> None:
        self.delay = delay
        self._handle: asyncio.TimerHandle | None = None
        self._pools: list[tuple[object, str]] = []

    def renew_pool(self, owner: object, attribute: str) -> None:
        """When quiet, also replace the thread pool ``owner.<attribute>`` with an empty twin.

        Its users must read the attribute at each use. The swap runs on the loop, where work is
        submitted, so nothing is lost; work already queued in the old pool still runs.
        """
        self._pools.append((owner, attribute))

    def went_quiet(
        self, loop: asyncio.AbstractEventLoop, still_quiet: Callable[[], bool], executor: Executor
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = loop.call_later(self.delay, self._fire, loop, still_quiet, executor)

    def _fire(
        self, loop: asyncio.AbstractEventLoop, still_quiet: Callable[[], bool], executor: Executor
    ) -> None:
        self._handle = None
        if still_quiet():
            retired = []
            for owner, attribute in self._pools:
                if (pool := _renew(owner, attribute)) is not None:
                    retired.append(pool)
                    if pool is executor:  # the trim joins the retired pools: not from inside one
                        executor = getattr(owner, attribute)
            # Off the loop: a trim walks every arena (milliseconds on a large heap).
            try:
                loop.run_in_executor(executor, _release, retired)
            except RuntimeError:  # the executor is shutting down: nothing to trim for
                for pool in retired:
                    pool.shutdown(wait=False)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _renew(owner: object, attribute: str) -> ThreadPoolExecutor | None:
    old: ThreadPoolExecutor = getattr(owner, attribute)
    if not old._threads:
        return None  # never used: nothing to give back
    setattr(
        owner,
        attribute,
        ThreadPoolExecutor(max_workers=old._max_workers, thread_name_prefix=old._thread_name_prefix or ""),
    )
    return old


def _release(retired: list[ThreadPoolExecutor]) -> None:
    for pool in retired:
        pool.shutdown(wait=True)  # idle threads exit at once; the trim then gets their memory too
    release_free_memory()
