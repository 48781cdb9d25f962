"""Connection limits counted across pre-forked worker processes (``pyftps serve --workers N``).

:class:`SharedConnectionCounter` has :class:`~pyftps.server.guard.ConnectionCounter`'s interface and
semantics, with its counts in shared memory that the parent maps before forking, so the global, per-IP
and per-user limits hold exactly across workers (N x the limit would otherwise be allowed).

Layout: two open-addressing hash tables (addresses, users) with linear probing and backward-shift
deletion (no tombstones, so probe lengths do not grow with churn). A key is the 16-byte BLAKE2b digest
of the same ``address_key`` string (or user name) the in-process counter uses. Each slot holds one
count *per worker*: a worker only ever changes its own column, so when a worker dies the parent zeroes
that column (:meth:`release_worker`) and every connection and session it held is given back.

Locking: a ``threading.Lock`` orders the threads of one process, and a POSIX record lock
(``fcntl.lockf``) on an inherited anonymous file orders the processes. The kernel drops a record lock
when its holder dies, so a worker killed inside a call cannot wedge the others (a semaphore would).
Every call is O(1) expected (one digest and a short probe); only :meth:`release_worker` scans.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.sharedctypes import RawArray
from typing import Any

from pyftps.server.guard import (
    _TOO_MANY_FROM_IP,
    _TOO_MANY_SESSIONS,
    _TOO_MANY_TOTAL,
    ConnectionCounter,
    ConnectionLimits,
    CounterStats,
    Refusal,
    address_key,
)

__all__ = ["SharedConnectionCounter"]

_KEY_BYTES = 16
_DEFAULT_CAPACITY = 1 << 16  # when max_total is unlimited
# Shared scalars, per worker: open connections, refused connections, refused logins.
_TOTAL, _REFUSED_CONNECTIONS, _REFUSED_LOGINS, _SCALARS = 0, 1, 2, 3


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=_KEY_BYTES).digest()


class _Table:
    """A fixed-size map digest -> per-worker counts in shared memory; callers hold the lock."""

    def __init__(self, capacity: int, workers: int) -> None:
        self.capacity = capacity  # a power of two, at least twice the most keys ever live
        self.workers = workers
        self.keys: Any = RawArray(ctypes.c_char, capacity * _KEY_BYTES)
        self.used: Any = RawArray(ctypes.c_uint8, capacity)
        self.counts: Any = RawArray(ctypes.c_int32, capacity * workers)
        self.live: Any = RawArray(ctypes.c_int64, 1)

    def _home(self, key: bytes) -> int:
        return int.from_bytes(key[:8], "little") & (self.capacity - 1)

    def find(self, key: bytes) -> int | None:
        mask, slot = self.capacity - 1, self._home(key)
        while self.used[slot]:
            start = slot * _KEY_BYTES
            if self.keys[start : start + _KEY_BYTES] == key:
                return slot
            slot = (slot + 1) & mask
        return None

    def total(self, slot: int) -> int:
        base = slot * self.workers
        return sum(self.counts[base : base + self.workers])

    def insert(self, key: bytes) -> int | None:
        """The slot for a new key (counts all zero), or None when the table is full."""
        if self.live[0] * 2 >= self.capacity:
            return None
        mask, slot = self.capacity - 1, self._home(key)
        while self.used[slot]:
            slot = (slot + 1) & mask
        start = slot * _KEY_BYTES
        self.keys[start : start + _KEY_BYTES] = key
        self.used[slot] = 1
        self.live[0] += 1
        return slot

    def delete(self, slot: int) -> None:
        """Remove a slot, shifting later members of its probe run back (Knuth's algorithm R)."""
        mask, workers = self.capacity - 1, self.workers
        hole, probe = slot, slot
        while True:
            probe = (probe + 1) & mask
            if not self.used[probe]:
                break
            start = probe * _KEY_BYTES
            home = self._home(self.keys[start : start + _KEY_BYTES])
            # Move the entry into the hole unless its home lies cyclically in (hole, probe].
            if (probe - home) & mask >= (probe - hole) & mask:
                self.keys[hole * _KEY_BYTES : (hole + 1) * _KEY_BYTES] = self.keys[start : start + _KEY_BYTES]
                self.counts[hole * workers : (hole + 1) * workers] = self.counts[
                    probe * workers : (probe + 1) * workers
                ]
                hole = probe
        self.used[hole] = 0
        self.counts[hole * workers : (hole + 1) * workers] = [0] * workers
        self.live[0] -= 1

    def release_worker(self, worker: int) -> None:
        """Zero one worker's column and drop the keys nobody else holds (O(capacity), rare)."""
        survivors: list[tuple[bytes, list[int]]] = []
        workers = self.workers
        for slot in range(self.capacity):
            if not self.used[slot]:
                continue
            counts = list(self.counts[slot * workers : (slot + 1) * workers])
            counts[worker] = 0
            if any(counts):
                survivors.append((self.keys[slot * _KEY_BYTES : (slot + 1) * _KEY_BYTES], counts))
        ctypes.memset(self.used, 0, self.capacity)
        ctypes.memset(self.counts, 0, ctypes.sizeof(self.counts))
        self.live[0] = 0
        for key, counts in survivors:
            moved = self.insert(key)
            assert moved is not None  # fewer keys than before
            self.counts[moved * workers : (moved + 1) * workers] = counts

    def keys_live(self) -> int:
        return int(self.live[0])


class SharedConnectionCounter(ConnectionCounter):
    """``ConnectionCounter`` whose counts are shared by forked workers; create it before forking.

    Each process calls :meth:`bind` with its worker index after the fork; the parent (which
    serves no sessions) calls :meth:`release_worker` for a worker that exited.
    """

    def __init__(self, limits: ConnectionLimits | None, workers: int) -> None:
        super().__init__(limits)
        if workers < 1:
            raise ValueError("workers must be at least 1")
        max_total = self.limits.max_total
        wanted = 2 * max_total if max_total is not None else _DEFAULT_CAPACITY
        capacity = 8
        while capacity < wanted:
            capacity *= 2
        self.workers = workers
        self.worker = 0
        self._addresses = _Table(capacity, workers)
        self._users = _Table(capacity, workers)
        self._scalars: Any = RawArray(ctypes.c_int64, workers * _SCALARS)
        # An unlinked file: its descriptor is inherited; record locks on it are per process.
        self._lock_file = tempfile.TemporaryFile(prefix="pyftps-limits-")  # noqa: SIM115 (lives as long as we do)

    def bind(self, worker: int) -> None:
        """Count from now on in ``worker``'s column (0 <= worker < workers)."""
        if not 0 <= worker < self.workers:
            raise ValueError(f"worker index {worker} out of range")
        self.worker = worker

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            fcntl.lockf(self._lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(self._lock_file, fcntl.LOCK_UN)

    def _scalar(self, which: int) -> int:
        return sum(self._scalars[w * _SCALARS + which] for w in range(self.workers))

    def _bump(self, which: int, by: int = 1) -> None:
        self._scalars[self.worker * _SCALARS + which] += by

    def try_open(self, ip: str) -> Refusal | None:
        limits = self.limits
        key = _digest(address_key(ip, limits.ipv6_prefix))
        table, worker = self._addresses, self.worker
        with self._locked():
            slot = table.find(key)
            refusal = None
            if limits.max_total is not None and self._scalar(_TOTAL) >= limits.max_total:
                refusal = _TOO_MANY_TOTAL
            elif (
                limits.max_per_ip is not None and slot is not None and table.total(slot) >= limits.max_per_ip
            ):
                refusal = _TOO_MANY_FROM_IP
            elif slot is None:
                if limits.max_per_ip == 0:
                    refusal = _TOO_MANY_FROM_IP
                else:
                    slot = table.insert(key)
                    if slot is None:
                        refusal = _TOO_MANY_TOTAL  # only reachable without a global limit
            if refusal is not None or slot is None:
                self._bump(_REFUSED_CONNECTIONS)
                return refusal or _TOO_MANY_TOTAL
            table.counts[slot * table.workers + worker] += 1
            self._bump(_TOTAL)
            return None

    def close(self, ip: str) -> None:
        key = _digest(address_key(ip, self.limits.ipv6_prefix))
        table, worker = self._addresses, self.worker
        with self._locked():
            slot = table.find(key)
            if slot is None or table.counts[slot * table.workers + worker] <= 0:
                return  # unknown here (or counted by another worker): ignored, as in-process
            table.counts[slot * table.workers + worker] -= 1
            if self._scalars[worker * _SCALARS + _TOTAL] > 0:
                self._bump(_TOTAL, -1)
            if table.total(slot) == 0:
                table.delete(slot)

    def try_login(self, user: str, max_sessions: int | None = None) -> Refusal | None:
        limit = max_sessions if max_sessions is not None else self.limits.max_per_user
        key = _digest(user)
        table, worker = self._users, self.worker
        with self._locked():
            slot = table.find(key)
            count = table.total(slot) if slot is not None else 0
            if limit is not None and count >= limit:
                self._bump(_REFUSED_LOGINS)
                return _TOO_MANY_SESSIONS
            if slot is None:
                slot = table.insert(key)
                if slot is None:
                    self._bump(_REFUSED_LOGINS)
                    return _TOO_MANY_SESSIONS
            table.counts[slot * table.workers + worker] += 1
            return None

    def logout(self, user: str) -> None:
        key = _digest(user)
        table, worker = self._users, self.worker
        with self._locked():
            slot = table.find(key)
            if slot is None or table.counts[slot * table.workers + worker] <= 0:
                return
            table.counts[slot * table.workers + worker] -= 1
            if table.total(slot) == 0:
                table.delete(slot)

    def snapshot(self) -> CounterStats:
        with self._locked():
            return CounterStats(
                self._scalar(_TOTAL),
                self._addresses.keys_live(),
                self._users.keys_live(),
                self._scalar(_REFUSED_CONNECTIONS),
                self._scalar(_REFUSED_LOGINS),
            )

    def release_worker(self, worker: int) -> None:
        """A worker exited: give back every connection and session it held (run by the parent)."""
        with self._locked():
            self._addresses.release_worker(worker)
            self._users.release_worker(worker)
            self._scalars[worker * _SCALARS + _TOTAL] = 0
