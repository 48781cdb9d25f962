"""PostgresLoginGuard: LoginGuard's bans shared between nodes through PostgreSQL, on a fake clock.

Both "nodes" (guards) of a test share one database and one injected wall clock (the ban clock); the
``now`` passed to the methods is the caller's monotonic time, which only dates the local cache.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.postgres.conftest import require_psycopg

require_psycopg()

import psycopg  # noqa: E402

from pyftps.auth.postgres import SchemaVersionError, UserStoreError  # noqa: E402
from pyftps.auth.postgres_bans import PostgresLoginGuard  # noqa: E402
from pyftps.server.guard import BanPolicy, LoginGuard  # noqa: E402
from tests.postgres.conftest import raw_sql  # noqa: E402

MIN = 60.0
IP = "203.0.113.7"


class FakeClock:
    """The shared wall clock of the test's nodes, in seconds since the epoch."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def node(pg_dsn: str, clock: FakeClock) -> Iterator[Callable[..., PostgresLoginGuard]]:
    """Open guards ("nodes") on the test database with the shared fake clock; no cache unless asked."""
    opened: list[PostgresLoginGuard] = []

    def open_(policy: BanPolicy | None = None, **options: Any) -> PostgresLoginGuard:
        options.setdefault("cache_ttl", 0.0)
        guard = PostgresLoginGuard(pg_dsn, policy or BanPolicy(), clock=clock, **options)
        opened.append(guard)
        return guard

    yield open_
    for guard in opened:
        guard.close()


def fail(
    guards: list[PostgresLoginGuard], clock: FakeClock, ip: str, times: int, step: float = 1.0
) -> list[float | None]:
    """*times* failures from *ip*, *step* seconds apart, taking turns over *guards*."""
    results = []
    for i in range(times):
        results.append(guards[i % len(guards)].record_failure(ip, clock.t))
        clock.t += step
    return results


def banned(guard: PostgresLoginGuard, clock: FakeClock, ip: str = IP) -> float | None:
    return guard.is_banned(ip, clock.t)


# ---------------------------------------------------------------------------- shared bans


def test_failures_split_across_two_nodes_ban_on_both(
    node: Callable[..., PostgresLoginGuard], clock: FakeClock
) -> None:
    a, b = node(), node()
    assert fail([a, b], clock, IP, 5, step=2 * MIN) == [None, None, None, None, 15 * MIN]  # A, B, A, B, A
    assert banned(a, clock) == pytest.approx(15 * MIN - 2 * MIN)
    assert banned(b, clock) == pytest.approx(15 * MIN - 2 * MIN)
    assert banned(b, clock, "203.0.113.8") is None  # only that address
    clock.t += 13 * MIN
    assert banned(a, clock) is None and banned(b, clock) is None


def test_failures_spread_beyond_the_window_do_not_ban(
    node: Callable[..., PostgresLoginGuard], clock: FakeClock
) -> None:
    a, b = node(), node()
    assert fail([a, b], clock, IP, 20, step=2.6 * MIN) == [None] * 20  # 5 span 10.4 min > window
    assert banned(a, clock) is None


def test_failures_during_a_ban_are_neither_counted_nor_extending(
    node: Callable[..., PostgresLoginGuard], clock: FakeClock
) -> None:
    a, b = node(), node()
    start = clock.t
    fail([a], clock, IP, 5)
    assert fail([a, b], clock, IP, 10) == [None] * 10
    clock.t = start + 4.0 + 15 * MIN
    assert banned(b, clock) is None  # not extended
    assert raw_sql(a_dsn(a), "SELECT cardinality(failures), strikes FROM login_guard") == [(0, 1)]


def a_dsn(guard: PostgresLoginGuard) -> str:
    return guard._pool.conninfo


def test_repeat_bans_double_and_cap_across_nodes(
    node: Callable[..., PostgresLoginGuard], clock: FakeClock
) -> None:
    a, b = node(), node()
    durations = []
    for _ in range(10):
        duration = fail([a, b], clock, IP, 5)[-1]
        assert duration is not None
        durations.append(duration)
        clock.t += duration  # the first attempt after the ban ends
    assert [d / MIN for d in durations] == [15, 30, 60, 120, 240, 480, 960, 1440, 1440, 1440]


def test_success_on_another_node_clears_failures_but_not_history(
    node: Callable[..., PostgresLoginGuard], clock: FakeClock
) -> None:
    a, b = node(), node()
    assert fail([a], clock, IP, 4) == [None] * 4
    b.record_success(IP, clock.t)
    assert fail([a, b], clock, IP, 4) == [None] * 4
    assert fail([a], clock, IP, 1) == [15 * MIN]  # the fifth since the success
    clock.t += 20 * MIN
    b.record_success(IP, clock.t)
    assert fail([b], clock, IP, 5)[-1] == 30 * MIN  # a repeat ban all the same


def test_repeat_history_is_forgotten_after_forget_after(
    node: Callable[..., PostgresLoginGuard], clock: FakeClock
) -> None:
    a = node(BanPolicy(forget_after=3600.0))
    fail([a], clock, IP, 5)
    clock.t += 15 * MIN + 3600.0
    assert fail([a], clock, IP, 5)[-1] == 15 * MIN


def test_huge_multiplier_and_times_do_not_overflow(
    node: Callable[..., PostgresLoginGuard], clock: FakeClock
) -> None:
    a = node(BanPolicy(ban_multiplier=1e300, forget_after=1e12, window=1e12))
    durations = []
    for _ in range(4):
        duration = fail([a], clock, IP, 5)[-1]
        assert duration is not None
        durations.append(duration)
        clock.t += 10.0 + duration
    assert durations == [15 * MIN, 86400.0, 86400.0, 86400.0]


def test_a_single_failure_may_ban(node: Callable[..., PostgresLoginGuard], clock: FakeClock) -> None:
    a = node(BanPolicy(max_failures=1, ban_time=10.0))
    assert a.record_failure(IP, clock.t) == 10.0
    clock.t += 11.0
    assert a.record_failure(IP, clock.t) == 20.0


# ---------------------------------------------------------------------------- who is counted


def test_allow_listed_networks_are_never_banned(
    node: Callable[..., PostgresLoginGuard], clock: FakeClock
) -> None:
    a = node(BanPolicy(allow_list=("10.0.0.0/8", "2001:db8:aa::/48", "192.0.2.1")))
    for ip in ("10.1.2.3", "::ffff:10.9.9.9", "2001:db8:aa:1::5", "192.0.2.1"):
        assert fail([a], clock, ip, 50) == [None] * 50
        assert banned(a, clock, ip) is None
    assert a.snapshot(clock.t).tracked == 0  # not even a row
    assert fail([a], clock, "192.0.2.2", 5)[-1] == 15 * MIN  # a neighbour is not exempt


def test_disabled_guard_never_bans(node: Callable[..., PostgresLoginGuard], clock: FakeClock) -> None:
    a = node(BanPolicy(enabled=False))
    assert fail([a], clock, IP, 50) == [None] * 50
    assert banned(a, clock) is None


def test_address_keys_are_shared(node: Callable[..., PostgresLoginGuard], clock: FakeClock) -> None:
    a, b = node(), node()
    fail([a], clock, IP, 3)
    fail([b], clock, f"::ffff:{IP}", 1)  # IPv4-mapped IPv6 is the IPv4 host
    assert fail([a], clock, IP, 1) == [15 * MIN]
    hosts = [f"2001:db8:5:6::{i:x}" for i in range(1, 6)]  # five addresses, one /64, two nodes
    assert [[a, b][i % 2].record_failure(host, clock.t) for i, host in enumerate(hosts)][-1] == 15 * MIN
    assert banned(b, clock, "2001:db8:5:6:dead:beef::1") is not None
    assert banned(b, clock, "2001:db8:5:7::1") is None  # the neighbouring /64
    assert {row[0] for row in raw_sql(a_dsn(a), "SELECT address FROM login_guard")} == {
        IP,
        "2001:db8:5:6::/64",
    }


def test_unban_on_one_node_lifts_the_ban_everywhere(
    node: Callable[..., PostgresLoginGuard], clock: FakeClock
) -> None:
    a, b = node(), node()
    fail([a], clock, IP, 5)
    assert banned(b, clock) is not None
    assert b.unban(IP)
    assert banned(a, clock) is None
    assert not b.unban(IP)


def test_many_threads_on_two_nodes_trigger_exactly_one_ban(
    node: Callable[..., PostgresLoginGuard], clock: FakeClock
) -> None:
    nodes = [node(), node()]
    threads, per_thread = 8, 10
    barrier = threading.Barrier(threads)
    triggered: list[float] = []
    lock = threading.Lock()

    def attack(i: int) -> None:
        barrier.wait()
        for _ in range(per_thread):
            result = nodes[i % 2].record_failure(IP, 100.0)
            if result is not None:
                with lock:
                    triggered.append(result)

    workers = [threading.Thread(target=attack, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=20)
    assert triggered == [15 * MIN]
    assert sum(n.snapshot(100.0).failures_total for n in nodes) == threads * per_thread


# ---------------------------------------------------------------------------- housekeeping


def test_sweep_and_snapshot(node: Callable[..., PostgresLoginGuard], clock: FakeClock) -> None:
    a, b = node(), node()
    fail([a], clock, IP, 5)
    fail([b], clock, "198.51.100.1", 1)
    stats_a, stats_b = a.snapshot(clock.t), b.snapshot(clock.t)
    assert (stats_a.tracked, stats_a.active_bans, stats_a.bans_total, stats_a.failures_total) == (2, 1, 1, 5)
    assert (stats_b.tracked, stats_b.active_bans, stats_b.bans_total, stats_b.failures_total) == (2, 1, 0, 1)
    clock.t += 20 * MIN
    assert b.sweep(clock.t) == 1  # the single failure; the ban's history is kept
    assert a.snapshot(clock.t).active_bans == 0
    assert a.snapshot(clock.t).tracked == 1
    clock.t += 86400.0
    assert a.sweep(clock.t) == 1  # forget_after later the history goes too
    assert a.snapshot(clock.t).tracked == 0


def test_guard_schema_is_versioned(node: Callable[..., PostgresLoginGuard], pg_dsn: str) -> None:
    node().close()
    node().close()  # idempotent
    assert raw_sql(pg_dsn, "SELECT version FROM login_guard_migrations ORDER BY version") == [(1,), (2,)]
    raw_sql(pg_dsn, "INSERT INTO login_guard_migrations VALUES (9, 'later')")
    with pytest.raises(SchemaVersionError, match="login guard is at schema version 9"):
        node()


def test_uses_the_database_clock_by_default(pg_dsn: str) -> None:
    with PostgresLoginGuard(pg_dsn, BanPolicy(), cache_ttl=0) as guard:
        assert [guard.record_failure(IP, 0.0) for _ in range(5)][-1] == 15 * MIN
        left = guard.is_banned(IP, 0.0)
        assert left is not None and 15 * MIN - 5 < left <= 15 * MIN
        (until,) = raw_sql(
            pg_dsn, "SELECT EXTRACT(EPOCH FROM banned_until - now())::float8 FROM login_guard"
        )[0]
        assert 15 * MIN - 5 < until <= 15 * MIN


# ---------------------------------------------------------------------------- cache and outages


def count_queries(guard: PostgresLoginGuard, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every statement the guard sends to PostgreSQL."""
    sent: list[str] = []
    execute = guard._execute

    def counting(query: Any, params: Any) -> list[tuple[Any, ...]]:
        sent.append(str(query))
        return execute(query, params)

    monkeypatch.setattr(guard, "_execute", counting)
    return sent


def test_is_banned_cache_ttl(
    node: Callable[..., PostgresLoginGuard], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = node(), node(cache_ttl=1.0)
    sent = count_queries(b, monkeypatch)
    for i in range(1000):  # a connection flood: one query, then the cache answers
        assert b.is_banned(IP, 100.0 + i * 0.0005) is None
    assert len(sent) == 1
    fail([a], clock, IP, 5, step=0.0)  # banned on A meanwhile
    assert b.is_banned(IP, 100.9) is None  # B's cached answer is at most cache_ttl old
    assert b.is_banned(IP, 101.0) == pytest.approx(15 * MIN)  # expired: asked again
    assert len(sent) == 2
    assert b.is_banned(IP, 101.5) == pytest.approx(15 * MIN - 0.5)  # cached, still counting down
    assert len(sent) == 2
    assert b.unban(IP)  # an operator action here drops the cached entry at once
    assert b.is_banned(IP, 101.6) is None


def test_a_failure_that_meets_a_ban_from_elsewhere_drops_the_stale_cache(
    node: Callable[..., PostgresLoginGuard], clock: FakeClock
) -> None:
    a, b = node(), node(cache_ttl=60.0)
    assert b.is_banned(IP, 10.0) is None  # cached for a minute
    fail([a], clock, IP, 5, step=0.0)
    assert b.is_banned(IP, 11.0) is None  # still the cached answer
    assert b.record_failure(IP, 12.0) is None  # not counted: the address is banned
    assert b.is_banned(IP, 12.0) == pytest.approx(15 * MIN)  # and B knows it now


def test_a_ban_earned_here_is_cached_at_once(
    node: Callable[..., PostgresLoginGuard], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = node(cache_ttl=2.0)
    assert a.is_banned(IP, 10.0) is None  # cached: not banned
    assert [a.record_failure(IP, 10.0) for _ in range(5)][-1] == 15 * MIN
    sent = count_queries(a, monkeypatch)
    assert a.is_banned(IP, 10.5) == pytest.approx(15 * MIN - 0.5)
    assert sent == []


def test_outage_falls_back_to_this_node_and_recovers(
    node: Callable[..., PostgresLoginGuard], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = node(retry_after=10.0)
    attempts: list[str] = []
    real_execute = a._execute

    def down(query: Any, params: Any) -> list[tuple[Any, ...]]:
        attempts.append(str(query))
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(a, "_execute", down)
    assert [a.record_failure(IP, 100.0 + i) for i in range(5)][-1] == 15 * MIN  # in memory, on this node
    assert len(attempts) == 1  # the first failure found the database down; the rest did not wait for it
    assert a.is_banned(IP, 105.0) == pytest.approx(15 * MIN - 1.0)
    a.record_success("198.51.100.9", 106.0)
    assert len(attempts) == 1
    monkeypatch.setattr(a, "_execute", real_execute)
    assert a.is_banned(IP, 115.0) == pytest.approx(15 * MIN - 11.0)  # retried, and the local ban holds
    assert a._down_until is None
    assert a.snapshot(115.0).bans_total == 1
    with pytest.raises(UserStoreError, match="login guard"):
        monkeypatch.setattr(a, "_execute", down)
        a.unban(IP)  # operator actions report the outage instead of pretending


def test_fallback_matches_the_in_memory_guard(
    node: Callable[..., PostgresLoginGuard], clock: FakeClock
) -> None:
    a = node()
    reference = LoginGuard(a.policy)
    for i in range(12):
        now = clock.t
        assert a.record_failure(IP, now) == reference.record_failure(IP, now), i
        clock.t += 30.0
