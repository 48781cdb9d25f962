"""SharedConnectionCounter and SqliteLoginGuard across real forked processes (``--workers N``)."""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyftps.auth.sqlite_bans import SqliteLoginGuard
from pyftps.server.data import split_port_range
from pyftps.server.guard import BanPolicy, ConnectionCounter, ConnectionLimits
from pyftps.server.shared_limits import SharedConnectionCounter

fork = multiprocessing.get_context("fork")


def in_worker(counter: SharedConnectionCounter, index: int, body: Callable[[], Any]) -> Any:
    """Run ``body`` in a forked process bound to worker ``index``; return what it returned."""
    results = fork.SimpleQueue()

    def main() -> None:
        counter.bind(index)
        results.put(body())

    process = fork.Process(target=main)
    process.start()
    process.join(30)
    assert process.exitcode == 0
    return results.get()


def test_per_ip_and_global_limits_hold_across_processes() -> None:
    counter = SharedConnectionCounter(ConnectionLimits(max_total=5, max_per_ip=3, max_per_user=2), 2)
    opened = in_worker(counter, 0, lambda: [counter.try_open("10.0.0.1") is None for _ in range(2)])
    assert opened == [True, True]
    # Worker 1 sees worker 0's two connections: one more from that address, then 421.
    refused = in_worker(counter, 1, lambda: [counter.try_open("10.0.0.1") is None for _ in range(2)])
    assert refused == [True, False]
    assert counter.snapshot().total == 3
    # Two more addresses reach the global limit of 5.
    more = in_worker(counter, 1, lambda: [counter.try_open(f"10.0.0.{i}") is None for i in (2, 3, 4)])
    assert more == [True, True, False]
    stats = counter.snapshot()
    assert (stats.total, stats.addresses, stats.refused_connections) == (5, 3, 2)


def test_a_dead_workers_connections_and_sessions_are_given_back() -> None:
    counter = SharedConnectionCounter(ConnectionLimits(max_total=10, max_per_ip=2, max_per_user=1), 2)

    def hold() -> bool:
        return counter.try_open("10.0.0.1") is None and counter.try_login("alice") is None

    assert in_worker(counter, 0, hold)  # the process exits without closing: as if killed
    assert in_worker(counter, 1, lambda: counter.try_login("alice")) is not None
    counter.release_worker(0)
    stats = counter.snapshot()
    assert (stats.total, stats.addresses, stats.users) == (0, 0, 0)
    assert in_worker(counter, 1, lambda: counter.try_login("alice")) is None


def test_a_worker_only_closes_what_it_counted() -> None:
    counter = SharedConnectionCounter(ConnectionLimits(max_total=10, max_per_ip=5), 2)
    assert in_worker(counter, 0, lambda: counter.try_open("10.0.0.1")) is None
    in_worker(counter, 1, lambda: counter.close("10.0.0.1"))  # not worker 1's: ignored
    assert counter.snapshot().total == 1


def test_per_user_override_mirrors_connection_counter() -> None:
    counter = SharedConnectionCounter(ConnectionLimits(max_per_user=1), 1)
    assert counter.try_login("bob", max_sessions=2) is None
    assert counter.try_login("bob", max_sessions=2) is None
    refusal = counter.try_login("bob", max_sessions=2)
    assert refusal is not None and refusal.code == 530
    assert counter.try_login("carol") is None
    assert counter.try_login("carol") is not None


def test_matches_the_in_process_counter_under_random_churn() -> None:
    """Same answers as ConnectionCounter for a long random sequence (exercises backward-shift deletion)."""
    limits = ConnectionLimits(max_total=64, max_per_ip=3, max_per_user=2)
    shared, plain = SharedConnectionCounter(limits, 3), ConnectionCounter(limits)
    rng = random.Random(7)
    held: list[tuple[int, str]] = []
    users: list[tuple[int, str]] = []
    for _ in range(20_000):
        worker = rng.randrange(3)
        shared.bind(worker)
        roll = rng.random()
        if roll < 0.4:
            ip = f"10.0.{rng.randrange(4)}.{rng.randrange(40)}"
            answer = shared.try_open(ip)
            assert answer == plain.try_open(ip)
            if answer is None:
                held.append((worker, ip))
        elif roll < 0.75 and held:
            worker, ip = held.pop(rng.randrange(len(held)))
            shared.bind(worker)
            shared.close(ip)
            plain.close(ip)
        elif roll < 0.9:
            user = f"user{rng.randrange(30)}"
            answer = shared.try_login(user)
            assert answer == plain.try_login(user)
            if answer is None:
                users.append((worker, user))
        elif users:
            worker, user = users.pop(rng.randrange(len(users)))
            shared.bind(worker)
            shared.logout(user)
            plain.logout(user)
        assert shared.snapshot() == plain.snapshot()


def test_passive_range_split_is_disjoint_and_complete() -> None:
    parts = split_port_range((50000, 50010), 3)
    assert parts == [(50000, 50003), (50004, 50007), (50008, 50010)]
    with pytest.raises(ValueError, match="fewer than the 4 workers"):
        split_port_range((50000, 50002), 4)


def test_sqlite_bans_are_shared_between_processes(tmp_path: Path) -> None:
    path = tmp_path / "bans.db"
    policy = BanPolicy(max_failures=4, ban_time=60.0)
    SqliteLoginGuard(path, policy).close()

    def fail_twice() -> list[float | None]:
        guard = SqliteLoginGuard(path, policy)  # opened after the fork, as a worker does
        try:
            return [guard.record_failure("192.0.2.7", 0.0) for _ in range(2)]
        finally:
            guard.close()

    results = fork.SimpleQueue()
    processes = [fork.Process(target=lambda: results.put(fail_twice())) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    outcomes = results.get() + results.get()
    assert sorted(outcomes, key=lambda d: d is None) == [60.0, None, None, None]
    guard = SqliteLoginGuard(path, policy)
    left = guard.is_banned("192.0.2.7", 0.0)
    assert left is not None and 0 < left <= 60.0
    assert guard.is_banned("192.0.2.8", 0.0) is None
    guard.record_success("192.0.2.7", 0.0)  # a success does not lift a ban
    assert guard.is_banned("192.0.2.7", 0.0) is not None
    assert guard.snapshot(0.0).active_bans == 1
    assert guard.unban("192.0.2.7")
    assert guard.is_banned("192.0.2.7", 0.0) is None
    guard.close()


def test_sqlite_bans_follow_login_guard_semantics(tmp_path: Path) -> None:
    clock = [1000.0]
    policy = BanPolicy(
        max_failures=2, window=10.0, ban_time=5.0, ban_multiplier=3.0, allow_list=("127.0.0.0/8",)
    )
    guard = SqliteLoginGuard(tmp_path / "bans.db", policy, clock=lambda: clock[0])
    assert guard.record_failure("127.0.0.1", 0) is None and guard.record_failure("127.0.0.1", 0) is None
    assert guard.is_banned("127.0.0.1", 0) is None  # allow-listed
    assert guard.record_failure("192.0.2.1", 0) is None
    clock[0] += 11  # outside the window: the first failure no longer counts
    assert guard.record_failure("192.0.2.1", 0) is None
    assert guard.record_failure("192.0.2.1", 0) == 5.0
    assert guard.record_failure("192.0.2.1", 0) is None  # during a ban: not counted
    clock[0] += 6
    assert guard.is_banned("192.0.2.1", 0) is None
    guard.record_failure("192.0.2.1", 0)
    assert guard.record_failure("192.0.2.1", 0) == 15.0  # a repeat ban lasts multiplier x longer
    guard.close()
