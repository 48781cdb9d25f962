"""Login bans shared between nodes: LoginGuard's counting and bans, kept in PostgreSQL (RFC 2577 §5).

A brute-force attacker behind a load balancer meets a different node on every connection; with
per-node counters each node would see only its share of the guesses. Here every node counts into the
same rows, so five failures split across nodes A and B ban the address on both.

Time: bans need one clock that every node agrees on, so ban times come from the database server's
clock (``statement_timestamp()``); the monotonic ``now`` the callers pass (``loop.time()``) only dates
this node's cache and outage back-off. Tests may inject a wall clock instead (``clock=``).

Latency: pyftps calls the guard on the event loop thread, so every method is one short autocommitted
statement (a primary-key lookup or a single-row UPSERT): one network round trip plus well under a
millisecond of server time (0.3-1.1 ms per call on the CI VM's loopback, where a bare ``SELECT 1``
already takes 0.4 ms). ``is_banned`` answers from an in-process cache (about 25 us) for ``cache_ttl``
seconds, so a connection flood from one address costs one query per address per TTL, and a ban
earned on another node takes effect here within ``cache_ttl``. If PostgreSQL is unreachable or slow
(a call waits about ``timeout`` at most, 4 x ``timeout`` on a silent network partition), the guard
falls back to an in-memory ``LoginGuard`` and leaves the database alone for ``retry_after`` seconds,
so an outage never blocks the loop for long and brute force is still stopped per node; bans from
the outage keep holding on this node afterwards.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from pyftps.auth.postgres import (
    Connection,
    Migrations,
    Statement,
    apply_migrations,
    connection_info,
    describe_dsn,
)
from pyftps.auth.records import UserStoreError
from pyftps.server.guard import BanPolicy, GuardStats, LoginGuard, address_key

__all__ = ["GUARD_MIGRATIONS", "PostgresLoginGuard"]

_log = logging.getLogger(__name__)

GUARD_MIGRATIONS = Migrations(
    "login_guard_migrations",
    (
        # 1: one row per address key (address_key(): an IPv4 address or an IPv6 prefix). failures holds the
        # times of recent failed logins (at most max_failures of them); strikes counts bans, so the next
        # one lasts ban_time * ban_multiplier ** strikes; banned_until is NULL until the first ban.
        """CREATE TABLE login_guard (
            address TEXT NOT NULL PRIMARY KEY,
            failures TIMESTAMPTZ[] NOT NULL DEFAULT '{}',
            banned_until TIMESTAMPTZ,
            strikes INTEGER NOT NULL DEFAULT 0,
            updated_at TIMESTAMPTZ NOT NULL
        )""",
        # 2: sweep() finds rows untouched for a while without scanning the table.
        "CREATE INDEX login_guard_updated_at ON login_guard (updated_at)",
    ),
    "login guard",
)

# Interval arguments are capped at ~31 years: PostgreSQL timestamps overflow long before Python floats.
_MAX_SECONDS = 1e9
_MAX_STRIKES = 1_000_000
_MAX_CACHED = 10_000

# The database clock, unless the caller injected one (tests). Every statement names it once as c.now.
_CLOCK = "(SELECT COALESCE(to_timestamp(%(clock)s::float8), statement_timestamp()) AS now) AS c"

_IS_BANNED = f"""
SELECT EXTRACT(EPOCH FROM g.banned_until - c.now)::float8
FROM login_guard AS g, {_CLOCK}
WHERE g.address = %(key)s AND g.banned_until > c.now
"""

# One atomic statement: the row lock taken by ON CONFLICT serialises racing failures from every node.
# A row that is banned right now is left alone (no RETURNING row: failures during a ban do not count).
# Otherwise the failure joins those still inside the window; reaching max_failures bans the address
# for ban_time * multiplier ** strikes (computed in logarithms so it cannot overflow), where strikes
# starts again from 0 once the previous ban ended forget_after ago. A ban empties failures, which is
# how RETURNING tells "this failure triggered a ban" apart from "counted".
_RECORD_FAILURE = f"""
INSERT INTO login_guard AS g (address, failures, banned_until, strikes, updated_at)
SELECT %(key)s,
       CASE WHEN %(max_failures)s <= 1 THEN '{{}}'::timestamptz[] ELSE ARRAY[c.now] END,
       CASE WHEN %(max_failures)s <= 1 THEN c.now + make_interval(secs => %(ban_time)s) END,
       CASE WHEN %(max_failures)s <= 1 THEN 1 ELSE 0 END,
       c.now
FROM {_CLOCK}
ON CONFLICT (address) DO UPDATE SET (failures, banned_until, strikes, updated_at) = (
    SELECT CASE WHEN b.ban THEN '{{}}'::timestamptz[] ELSE a.recent END,
           CASE WHEN b.ban THEN EXCLUDED.updated_at + make_interval(secs => LEAST(
               %(ban_time)s * exp(LEAST(a.strikes * %(ln_multiplier)s, %(ln_ratio)s)), %(max_ban_time)s))
           ELSE g.banned_until END,
           CASE WHEN b.ban THEN LEAST(a.strikes + 1, {_MAX_STRIKES}) ELSE g.strikes END,
           EXCLUDED.updated_at
    FROM (SELECT array_append(ARRAY(SELECT t FROM unnest(g.failures) AS t
                                    WHERE t > EXCLUDED.updated_at - make_interval(secs => %(window)s)),
                              EXCLUDED.updated_at) AS recent,
                 CASE WHEN g.banned_until IS NULL
                        OR EXCLUDED.updated_at - g.banned_until >= make_interval(secs => %(forget_after)s)
                      THEN 0 ELSE g.strikes END AS strikes) AS a,
         LATERAL (SELECT cardinality(a.recent) >= %(max_failures)s AS ban) AS b
)
WHERE g.banned_until IS NULL OR g.banned_until <= EXCLUDED.updated_at
RETURNING cardinality(g.failures) = 0, g.strikes
"""

# Clears the failure count but keeps the repeat-ban history; a row without failures is not written.
_RECORD_SUCCESS = f"""
UPDATE login_guard AS g SET failures = '{{}}', updated_at = c.now
FROM {_CLOCK}
WHERE g.address = %(key)s AND cardinality(g.failures) > 0
"""

# Stale: no failure inside the window (failures are never newer than updated_at) and no ban that still
# counts as repeat history. Conservative: a row a success touched recently waits one more window.
_SWEEP = f"""
WITH swept AS (
    DELETE FROM login_guard AS g USING {_CLOCK}
    WHERE g.updated_at <= c.now - make_interval(secs => %(window)s)
      AND (g.banned_until IS NULL OR g.banned_until <= c.now - make_interval(secs => %(forget_after)s))
    RETURNING 1
)
SELECT COUNT(*) FROM swept
"""

_SNAPSHOT = f"""
SELECT COUNT(*), COUNT(*) FILTER (WHERE g.banned_until > c.now) FROM login_guard AS g, {_CLOCK}
"""

_UNBAN = "DELETE FROM login_guard WHERE address = %(key)s RETURNING 1"


def _ban_duration(policy: BanPolicy, strikes: int) -> float:
    """How long the ban after *strikes* earlier ones lasts: LoginGuard's formula, to the bit."""
    try:
        duration = policy.ban_time * policy.ban_multiplier**strikes
    except OverflowError:
        duration = policy.max_ban_time
    return min(duration, policy.max_ban_time)


def _policy_parameters(policy: BanPolicy) -> dict[str, float | int]:
    """The policy as statement parameters, every interval capped so PostgreSQL cannot overflow."""
    ban_time = min(policy.ban_time, _MAX_SECONDS)
    max_ban_time = min(policy.max_ban_time, _MAX_SECONDS)
    ratio = max_ban_time / ban_time if ban_time > 0 else 1.0
    return {
        "max_failures": policy.max_failures,
        "window": min(policy.window, _MAX_SECONDS),
        "forget_after": min(policy.forget_after, _MAX_SECONDS),
        "ban_time": ban_time,
        "max_ban_time": max_ban_time,
        "ln_multiplier": math.log(policy.ban_multiplier),
        "ln_ratio": math.log(max(ratio, 1.0)),
    }


class PostgresLoginGuard:
    """``LoginGuard`` with its failure counts and bans in PostgreSQL, shared by every node; thread-safe.

    Same public methods and semantics as ``LoginGuard``: bans target the source address key (never
    the account), repeat bans last ``ban_multiplier`` times longer up to ``max_ban_time``, the allow
    list is never counted nor banned. ``snapshot`` counts tracked addresses and active bans across
    all nodes; its totals are this process's own. Unlike the in-memory guard the table does not expire
    rows by itself: call :meth:`sweep` now and then (from a worker thread; it may scan many rows).
    """

    def __init__(
        self,
        dsn: str,
        policy: BanPolicy | None = None,
        *,
        cache_ttl: float = 1.0,
        timeout: float = 0.5,
        retry_after: float = 10.0,
        pool_size: int = 4,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if cache_ttl < 0 or timeout <= 0 or retry_after < 0 or pool_size < 1:
            raise ValueError("cache_ttl, retry_after >= 0, timeout > 0 and pool_size >= 1 required")
        self.policy = policy if policy is not None else BanPolicy()
        self.where = describe_dsn(dsn)
        self._fallback = LoginGuard(self.policy)  # during outages; also the allow-list check
        self._fallback_used = False  # set for good by the first outage: until then it holds nothing
        self._params = _policy_parameters(self.policy)
        self._cache_ttl = cache_ttl
        self._timeout = timeout
        self._retry_after = retry_after
        self._clock = clock
        self._attempts = pool_size + 1  # enough to draw every pooled connection a restart broke, plus one
        self._lock = threading.Lock()  # guards the fields below; never held across a query
        self._cache: OrderedDict[str, tuple[float, float | None]] = OrderedDict()
        self._down_until: float | None = None  # caller time until which the database is not tried
        self._bans_total = 0
        self._failures_total = 0
        self._pool = self._open(dsn, pool_size)

    def _open(self, dsn: str, pool_size: int) -> ConnectionPool[Connection]:
        """Migrate the guard's tables and open the pool; UserStoreError if the database is unusable."""
        # tcp_user_timeout bounds how long a call can hang on a silent network partition (statement_timeout
        # cannot help there: the server never hears the query).
        tcp_user_timeout = max(1000, int(self._timeout * 4000))  # milliseconds
        conninfo = connection_info(dsn, connect_timeout=5, tcp_user_timeout=tcp_user_timeout)
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                apply_migrations(conn, GUARD_MIGRATIONS, self.where)
        except psycopg.Error as exc:
            raise UserStoreError(f"{self.where}: cannot open the login guard's tables: {exc}") from exc
        statement_timeout = max(1, int(self._timeout * 1000))

        def configure(conn: Connection) -> None:
            conn.execute(f"SET statement_timeout = {statement_timeout:d}")

        pool: ConnectionPool[Connection] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            configure=configure,
            open=False,
            timeout=self._timeout,
            name="pyftps-login-guard",
        )
        try:
            pool.open(wait=True, timeout=max(self._timeout, 5.0))
        except psycopg.Error as exc:
            pool.close()
            raise UserStoreError(f"{self.where}: cannot open the login guard's pool: {exc}") from exc
        return pool

    # -- the LoginGuard interface ----------------------------------------------------------------

    def is_allowed(self, ip: str) -> bool:
        """True for addresses on the allow list (these are never counted nor banned)."""
        return self._fallback.is_allowed(ip)

    def is_banned(self, ip: str, now: float) -> float | None:
        """Seconds of ban left for ``ip`` (on any node), or None if it may try to log in."""
        if not self.policy.enabled or self.is_allowed(ip):
            return None
        key = address_key(ip, self.policy.ipv6_prefix)
        local = self._fallback.is_banned(ip, now) if self._fallback_used else None
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now < cached[0]:
            until = cached[1]
        else:
            rows = self._query(now, _IS_BANNED, {"key": key})
            if rows is None:
                return local
            until = now + float(rows[0][0]) if rows else None
            self._remember(key, now, until)
        remote = until - now if until is not None and until > now else None
        return max((left for left in (local, remote) if left is not None), default=None)

    def record_failure(self, ip: str, now: float) -> float | None:
        """Count one failed login for all nodes; returns the ban's duration if this failure triggered one."""
        policy = self.policy
        if not policy.enabled or self.is_allowed(ip):
            return None
        key = address_key(ip, policy.ipv6_prefix)
        with self._lock:
            self._failures_total += 1
        rows = self._query(now, _RECORD_FAILURE, {"key": key, **self._params})
        if rows is None:
            self._fallback_used = True
            duration = self._fallback.record_failure(ip, now)
        elif rows and rows[0][0]:
            duration = _ban_duration(policy, int(rows[0][1]) - 1)
            self._remember(key, now, now + duration)
        else:
            if not rows:  # banned already, by another node since this one cached "not banned": ask again
                with self._lock:
                    self._cache.pop(key, None)
            return None
        if duration is not None:
            with self._lock:
                self._bans_total += 1
        return duration

    def record_success(self, ip: str, now: float) -> None:
        """A successful login clears the failure count (on every node), but not the repeat-ban history."""
        if not self.policy.enabled:
            return
        if self._fallback_used:
            self._fallback.record_success(ip, now)
        self._query(now, _RECORD_SUCCESS, {"key": address_key(ip, self.policy.ipv6_prefix)})

    def unban(self, ip: str) -> bool:
        """Operator action: forget everything about ``ip``'s address on every node; True if it was known."""
        key = address_key(ip, self.policy.ipv6_prefix)
        with self._lock:
            self._cache.pop(key, None)
        known = self._fallback.unban(ip)
        rows = self._query(0.0, _UNBAN, {"key": key}, fail_open=False)
        return known or bool(rows)

    def sweep(self, now: float) -> int:
        """Delete rows that no longer matter to any node (and stale fallback entries); returns how many."""
        swept = self._fallback.sweep(now)
        params = {"window": self._params["window"], "forget_after": self._params["forget_after"]}
        rows = self._query(now, _SWEEP, params, fail_open=False)
        return swept + (int(rows[0][0]) if rows else 0)

    def snapshot(self, now: float) -> GuardStats:
        """Addresses tracked and bans active across all nodes, with this process's totals."""
        rows = self._query(now, _SNAPSHOT, {})
        if rows:
            tracked, active = int(rows[0][0]), int(rows[0][1])
        else:
            local = self._fallback.snapshot(now)
            tracked, active = local.tracked, local.active_bans
        with self._lock:
            return GuardStats(tracked, active, self._bans_total, self._failures_total)

    # -- plumbing --------------------------------------------------------------------------------

    def _remember(self, key: str, now: float, until: float | None) -> None:
        """Cache what the database said about *key* for cache_ttl seconds of caller time."""
        if self._cache_ttl <= 0:
            return
        with self._lock:
            self._cache.pop(key, None)
            while self._cache and next(iter(self._cache.values()))[0] <= now:
                self._cache.popitem(last=False)  # entries expire in insertion order
            if len(self._cache) >= _MAX_CACHED:
                self._cache.popitem(last=False)
            self._cache[key] = (now + self._cache_ttl, until)

    def _query(
        self, now: float, query: Statement, params: Mapping[str, Any], *, fail_open: bool = True
    ) -> list[tuple[Any, ...]] | None:
        """Run one statement and return its rows, or None while the database is unavailable.

        With ``fail_open=False`` (operator actions) the database is always tried, and a failure raises
        UserStoreError instead of switching this node to its fallback.
        """
        if fail_open:
            with self._lock:
                if self._down_until is not None and now < self._down_until:
                    return None
        try:
            rows = self._execute(query, {**params, "clock": self._clock() if self._clock else None})
        except psycopg.Error as exc:
            if not fail_open:
                raise UserStoreError(f"{self.where}: login guard: {exc}") from exc
            self._mark_down(now, exc)
            return None
        with self._lock:
            recovered, self._down_until = self._down_until is not None, None
        if recovered:
            _log.warning("login guard: PostgreSQL at %s is reachable again; bans shared again", self.where)
        return rows

    def _execute(self, query: Statement, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """One statement on a pooled connection, redrawn if a database restart left it broken."""
        for attempt in range(1, self._attempts + 1):
            with self._pool.connection(timeout=self._timeout) as conn:
                try:
                    cursor = conn.execute(query, params)
                except psycopg.OperationalError:
                    if conn.broken and attempt < self._attempts:
                        continue  # the statement never ran: the server had closed this connection
                    raise
                return cursor.fetchall() if cursor.description is not None else []
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _mark_down(self, now: float, exc: psycopg.Error) -> None:
        with self._lock:
            first, self._down_until = self._down_until is None, now + self._retry_after
        if first:
            _log.warning(
                "login guard: PostgreSQL at %s unavailable (%s); counting on this node only for %.0f s",
                self.where,
                exc,
                self._retry_after,
            )

    def close(self) -> None:
        """Close the connection pool."""
        self._pool.close()

    def __enter__(self) -> PostgresLoginGuard:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r})"
