"""Unit tests for pyftps.server.guard: login bans (RFC 2577 §5) and connection limits, on a fake clock."""

from __future__ import annotations

import threading

import pytest

from pyftps.proto.codes import ReplyCode
from pyftps.server.guard import (
    BANNED,
    BanPolicy,
    ConnectionCounter,
    ConnectionLimits,
    CounterStats,
    LoginGuard,
    address_key,
)

MIN = 60.0
IP = "203.0.113.7"


def fail(guard: LoginGuard, ip: str, times: int, start: float, step: float = 1.0) -> list[float | None]:
    return [guard.record_failure(ip, start + i * step) for i in range(times)]


# ---------------------------------------------------------------------------- address keys


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("?", "?"),
    ],
)
def test_address_key(ip: str, key: str) -> None:
    assert address_key(ip) == key


def test_address_key_full_length_prefix_drops_scope() -> None:
    assert address_key("fe80::1%eth0", 128) == "fe80::1"


# ---------------------------------------------------------------------------- bans


def test_five_failures_within_ten_minutes_ban_for_fifteen_minutes() -> None:
    guard = LoginGuard(BanPolicy())
    results = fail(guard, IP, 5, start=1000.0, step=2 * MIN)  # 0, 2, 4, 6, 8 minutes: inside the window
    assert results[:4] == [None] * 4
    assert results[4] == 15 * MIN
    banned_at = 1000.0 + 8 * MIN
    assert guard.is_banned(IP, banned_at) == 15 * MIN
    assert guard.is_banned(IP, banned_at + 14 * MIN) == pytest.approx(MIN)
    assert guard.is_banned(IP, banned_at + 15 * MIN) is None
    assert guard.is_banned("203.0.113.8", banned_at) is None  # only that address


def test_failures_spread_beyond_the_window_do_not_ban() -> None:
    guard = LoginGuard(BanPolicy())
    assert fail(guard, IP, 20, start=0.0, step=2.6 * MIN) == [None] * 20  # 5 span 10.4 min > window
    assert guard.is_banned(IP, 60 * MIN) is None


def test_success_clears_failures() -> None:
    guard = LoginGuard(BanPolicy())
    assert fail(guard, IP, 4, start=0.0) == [None] * 4
    guard.record_success(IP, 5.0)
    assert fail(guard, IP, 4, start=6.0) == [None] * 4
    assert guard.is_banned(IP, 10.0) is None
    assert guard.record_failure(IP, 11.0) == 15 * MIN  # fifth since the success


def test_failures_during_a_ban_are_not_counted() -> None:
    guard = LoginGuard(BanPolicy())
    fail(guard, IP, 5, start=0.0)
    assert fail(guard, IP, 10, start=10.0) == [None] * 10
    assert guard.is_banned(IP, 4.0 + 15 * MIN) is None  # not extended


def test_repeat_bans_double_and_cap() -> None:
    guard = LoginGuard(BanPolicy())
    now, durations = 0.0, []
    for _ in range(10):
        results = fail(guard, IP, 5, start=now)
        duration = results[-1]
        assert duration is not None
        durations.append(duration)
        now += 4.0 + duration  # the first attempt after the ban ends
    minutes = [d / MIN for d in durations]
    assert minutes == [15, 30, 60, 120, 240, 480, 960, 1440, 1440, 1440]  # capped at 24 h


def test_success_keeps_repeat_history() -> None:
    guard = LoginGuard(BanPolicy())
    fail(guard, IP, 5, start=0.0)
    guard.record_success(IP, 20 * MIN)
    assert fail(guard, IP, 5, start=21 * MIN)[-1] == 30 * MIN


def test_repeat_history_is_forgotten_after_forget_after() -> None:
    guard = LoginGuard(BanPolicy(forget_after=3600.0))
    fail(guard, IP, 5, start=0.0)  # banned until 15 min
    later = 4.0 + 15 * MIN + 3600.0
    assert fail(guard, IP, 5, start=later)[-1] == 15 * MIN


def test_huge_multiplier_does_not_overflow() -> None:
    guard = LoginGuard(BanPolicy(ban_multiplier=1e300, forget_after=1e12))
    now = 0.0
    for _ in range(4):
        duration = fail(guard, IP, 5, start=now)[-1]
        assert duration is not None and duration <= 86400.0
        now += 10.0 + duration
    assert duration == 86400.0


def test_allow_listed_networks_are_never_banned() -> None:
    guard = LoginGuard(BanPolicy(allow_list=("10.0.0.0/8", "2001:db8:aa::/48", "192.0.2.1")))
    for ip in ("10.1.2.3", "::ffff:10.9.9.9", "2001:db8:aa:1::5", "192.0.2.1"):
        assert fail(guard, ip, 50, start=0.0) == [None] * 50
        assert guard.is_banned(ip, 50.0) is None
    assert guard.snapshot(50.0).tracked == 0
    assert fail(guard, "192.0.2.2", 5, start=0.0)[-1] == 15 * MIN  # a neighbour is not exempt


def test_loopback_is_not_exempt_by_default() -> None:
    guard = LoginGuard(BanPolicy())
    assert fail(guard, "127.0.0.1", 5, start=0.0)[-1] == 15 * MIN
    assert fail(guard, "::1", 5, start=0.0)[-1] == 15 * MIN


def test_bad_allow_list_entry_fails_early() -> None:
    with pytest.raises(ValueError, match="allow_list"):
        BanPolicy(allow_list=("10.0.0.0/8", "not-a-network"))


def test_disabled_guard_never_bans() -> None:
    guard = LoginGuard(BanPolicy(enabled=False))
    assert fail(guard, IP, 50, start=0.0) == [None] * 50
    assert guard.is_banned(IP, 50.0) is None


def test_ipv4_mapped_ipv6_counts_with_its_ipv4() -> None:
    guard = LoginGuard(BanPolicy())
    fail(guard, IP, 3, start=0.0)
    fail(guard, f"::ffff:{IP}", 1, start=3.0)
    assert guard.record_failure(IP, 4.0) == 15 * MIN
    assert guard.is_banned(f"::ffff:{IP}", 5.0) is not None


def test_ipv6_counted_per_64() -> None:
    guard = LoginGuard(BanPolicy())
    hosts = [f"2001:db8:5:6::{i:x}" for i in range(1, 6)]  # five addresses, one /64
    results = [guard.record_failure(host, float(i)) for i, host in enumerate(hosts)]
    assert results[-1] == 15 * MIN
    assert guard.is_banned("2001:db8:5:6:dead:beef::1", 10.0) is not None
    assert guard.is_banned("2001:db8:5:7::1", 10.0) is None  # the neighbouring /64


def test_unban() -> None:
    guard = LoginGuard(BanPolicy())
    fail(guard, IP, 5, start=0.0)
    assert guard.unban(IP)
    assert guard.is_banned(IP, 5.0) is None
    assert not guard.unban(IP)


# ---------------------------------------------------------------------------- memory


def test_memory_cap_evicts_oldest() -> None:
    guard = LoginGuard(BanPolicy(max_tracked=3))
    for i in range(4):
        fail(guard, f"198.51.100.{i}", 4, start=float(i))
    assert guard.snapshot(10.0).tracked == 3
    # 198.51.100.0 was evicted: its four failures are forgotten; .3's are still there.
    assert guard.record_failure("198.51.100.0", 11.0) is None
    assert guard.record_failure("198.51.100.3", 12.0) == 15 * MIN


def test_eviction_spares_active_bans() -> None:
    guard = LoginGuard(BanPolicy(max_tracked=3))
    fail(guard, IP, 5, start=0.0)  # oldest entry, but banned
    for i in range(10):
        guard.record_failure(f"198.51.100.{i}", 10.0 + i)
    assert guard.snapshot(30.0).tracked == 3
    assert guard.is_banned(IP, 30.0) is not None


def test_stale_entries_expire_lazily() -> None:
    guard = LoginGuard(BanPolicy())
    for i in range(100):
        guard.record_failure(f"198.51.100.{i}", 0.0)
    assert guard.snapshot(0.0).tracked == 100
    guard.record_failure(IP, 11 * MIN)  # past the window: the old single failures are stale
    assert guard.snapshot(11 * MIN).tracked == 1


def test_sweep_and_snapshot() -> None:
    guard = LoginGuard(BanPolicy())
    fail(guard, IP, 5, start=0.0)
    guard.record_failure("198.51.100.1", 1.0)
    stats = guard.snapshot(10.0)
    assert (stats.tracked, stats.active_bans, stats.bans_total, stats.failures_total) == (2, 1, 1, 6)
    assert guard.sweep(20 * MIN) == 1  # the single failure; the ban's history is kept
    assert guard.snapshot(20 * MIN).active_bans == 0
    assert guard.snapshot(20 * MIN).tracked == 1


# ---------------------------------------------------------------------------- threads


def test_many_threads_trigger_exactly_one_ban() -> None:
    guard = LoginGuard(BanPolicy())
    threads, per_thread = 16, 50
    barrier = threading.Barrier(threads)
    triggered: list[float] = []
    triggered_lock = threading.Lock()

    def attack() -> None:
        barrier.wait()
        for _ in range(per_thread):
            result = guard.record_failure(IP, 100.0)
            if result is not None:
                with triggered_lock:
                    triggered.append(result)

    workers = [threading.Thread(target=attack) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)
    assert triggered == [15 * MIN]
    assert guard.snapshot(100.0).failures_total == threads * per_thread


# ---------------------------------------------------------------------------- connection limits


def test_connection_limits_total_and_per_ip() -> None:
    counter = ConnectionCounter(ConnectionLimits(max_total=3, max_per_ip=2))
    assert counter.try_open("198.51.100.1") is None
    assert counter.try_open("::ffff:198.51.100.1") is None  # same host
    refusal = counter.try_open("198.51.100.1")
    assert refusal is not None and refusal.code == ReplyCode.SERVICE_NOT_AVAILABLE
    assert refusal.line().startswith(b"421 ") and refusal.line().endswith(b"\r\n")
    assert counter.try_open("198.51.100.2") is None
    refusal = counter.try_open("198.51.100.3")
    assert refusal is not None and refusal.code == 421 and "Too many connections;" in refusal.text
    counter.close("198.51.100.1")
    assert counter.try_open("198.51.100.3") is None
    stats = counter.snapshot()
    assert (stats.total, stats.addresses, stats.refused_connections) == (3, 3, 2)


def test_connection_limit_per_ipv6_64() -> None:
    counter = ConnectionCounter(ConnectionLimits(max_per_ip=2))
    assert counter.try_open("2001:db8::1") is None
    assert counter.try_open("2001:db8::2") is None
    assert counter.try_open("2001:db8::3") is not None
    assert counter.try_open("2001:db8:0:1::1") is None


def test_counters_never_go_negative() -> None:
    counter = ConnectionCounter(ConnectionLimits(max_total=1, max_per_ip=1, max_per_user=1))
    counter.close("198.51.100.9")  # unknown: no-op
    counter.logout("nobody")
    assert counter.snapshot().total == 0
    assert counter.try_open("198.51.100.1") is None
    counter.close("198.51.100.1")
    counter.close("198.51.100.1")
    assert counter.snapshot().total == 0
    assert counter.try_open("198.51.100.2") is None  # the limit of 1 still means one
    assert counter.try_open("198.51.100.3") is not None


def test_per_user_sessions() -> None:
    counter = ConnectionCounter(ConnectionLimits(max_per_user=2))
    assert counter.try_login("alice") is None
    assert counter.try_login("alice") is None
    refusal = counter.try_login("alice")
    assert refusal is not None and refusal.code == ReplyCode.NOT_LOGGED_IN
    assert counter.try_login("bob") is None
    counter.logout("alice")
    assert counter.try_login("alice") is None
    assert counter.snapshot().refused_logins == 1


def test_unlimited_when_none() -> None:
    counter = ConnectionCounter(ConnectionLimits(max_total=None, max_per_ip=None, max_per_user=None))
    assert all(counter.try_open("198.51.100.1") is None for _ in range(5000))
    assert all(counter.try_login("alice") is None for _ in range(5000))


def test_counter_thread_smoke() -> None:
    counter = ConnectionCounter(ConnectionLimits(max_total=None, max_per_ip=None, max_per_user=None))
    barrier = threading.Barrier(8)

    def churn(n: int) -> None:
        barrier.wait()
        for i in range(500):
            ip, user = f"198.51.100.{(n + i) % 4}", f"user{i % 3}"
            assert counter.try_open(ip) is None and counter.try_login(user) is None
            counter.logout(user)
            counter.close(ip)

    pool = [threading.Thread(target=churn, args=(n,)) for n in range(8)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=10)
    assert counter.snapshot() == CounterStats(0, 0, 0, 0, 0)


def test_banned_refusal_is_421() -> None:
    assert BANNED.code == 421 and BANNED.line().startswith(b"421 ")
