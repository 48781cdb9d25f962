"""Login bans shared by the worker processes of one node, in an SQLite file (``--workers N``).

With pre-forked workers each process would otherwise keep its own ``LoginGuard``, and an attacker
would get N x ``max_failures`` guesses per window. This guard keeps the same counting and bans as
``LoginGuard`` (and ``PostgresLoginGuard``) in one SQLite database in the state directory, in WAL
mode so readers never wait for a writer. It is for the processes of one machine only: several nodes
share bans through PostgreSQL.

Latency: the guard is called on the event loop, so each call is one short transaction on a local
file: ``is_banned`` (every new connection) is a primary-key read, a success writes only when there
were failures to clear, and a failure is one ``BEGIN IMMEDIATE`` read-modify-write (tens of
microseconds; no fsync with ``synchronous=NORMAL``, which loses at most the last bans on power loss).
Times are wall-clock seconds (``time.time``) because the file outlives processes; the monotonic
``now`` callers pass is not comparable between boots. If the database fails, a call falls back to an
in-memory ``LoginGuard`` for this process, so brute force is still stopped there.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pyftps.auth.sqlite import enable_wal
from pyftps.server.guard import BanPolicy, GuardStats, LoginGuard, address_key

__all__ = ["SqliteLoginGuard"]

_log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS login_guard (
    address TEXT NOT NULL PRIMARY KEY,
    failures TEXT NOT NULL DEFAULT '',   -- times of recent failures, space-separated, at most max_failures
    banned_until REAL,                   -- NULL until the first ban
    strikes INTEGER NOT NULL DEFAULT 0,  -- bans so far: the next lasts ban_time * multiplier ** strikes
    last_ban_end REAL,
    updated_at REAL NOT NULL
) WITHOUT ROWID
"""

_SWEEP_EVERY = 1000  # failures between two sweeps of stale rows (bounds the table as max_tracked does)


def _ban_duration(policy: BanPolicy, strikes: int) -> float:
    try:
        duration = policy.ban_time * policy.ban_multiplier**strikes
    except OverflowError:
        duration = policy.max_ban_time
    return min(duration, policy.max_ban_time)


class SqliteLoginGuard:
    """``LoginGuard``'s interface and semantics with state in an SQLite file; thread- and fork-safe.

    Open it in each process after forking (a connection must not cross a fork); the first process
    creates the schema. ``snapshot`` counts rows and active bans in the file, with this process's totals.
    """

    def __init__(
        self,
        path: Path,
        policy: BanPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 2.0,
    ) -> None:
        self.policy = policy if policy is not None else BanPolicy()
        self.path = path
        self._clock = clock
        self._fallback = LoginGuard(self.policy)  # allow-list checks, and database failures
        self._lock = threading.Lock()
        self._bans_total = 0
        self._failures_total = 0
        self._since_sweep = 0
        self._conn = sqlite3.connect(
            str(path), timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        enable_wal(self._conn, busy_timeout)
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_SCHEMA)

    # -- the LoginGuard interface ----------------------------------------------------------------

    def is_allowed(self, ip: str) -> bool:
        return self._fallback.is_allowed(ip)

    def is_banned(self, ip: str, now: float) -> float | None:
        """Seconds of ban left for ``ip`` (earned through any worker), or None."""
        if not self.policy.enabled or self.is_allowed(ip):
            return None
        key = address_key(ip, self.policy.ipv6_prefix)
        local = self._fallback.is_banned(ip, now)
        wall = self._clock()
        try:
            with self._lock:
                row = self._conn.execute(
                    "SELECT banned_until FROM login_guard WHERE address = ? AND banned_until > ?", (key, wall)
                ).fetchone()
        except sqlite3.Error as error:
            self._failed("is_banned", error)
            return local
        remote = float(row[0]) - wall if row is not None else None
        return max((left for left in (local, remote) if left is not None), default=None)

    def record_failure(self, ip: str, now: float) -> float | None:
        """Count one failed login for every worker; the ban's duration if this failure triggered one."""
        policy = self.policy
        if not policy.enabled or self.is_allowed(ip):
            return None
        key = address_key(ip, policy.ipv6_prefix)
        wall = self._clock()
        try:
            with self._lock:
                self._failures_total += 1
                duration = self._record_failure(key, wall)
                if duration is not None:
                    self._bans_total += 1
                self._since_sweep += 1
                if self._since_sweep >= _SWEEP_EVERY:
                    self._since_sweep = 0
                    self._sweep(wall)
        except sqlite3.Error as error:
            self._failed("record_failure", error)
            return self._fallback.record_failure(ip, now)
        return duration

    def _record_failure(self, key: str, wall: float) -> float | None:
        policy, conn = self.policy, self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT failures, banned_until, strikes, last_ban_end FROM login_guard WHERE address = ?",
                (key,),
            ).fetchone()
            failures_text, banned_until, strikes, last_ban_end = (
                row if row is not None else ("", None, 0, None)
            )
            if banned_until is not None and banned_until > wall:
                conn.execute("COMMIT")
                return None  # failures during a ban do not count
            cutoff = wall - policy.window
            failures = [t for t in map(float, failures_text.split()) if t > cutoff]
            failures.append(wall)
            failures = failures[-policy.max_failures :]
            duration = None
            if len(failures) >= policy.max_failures:
                if last_ban_end is None or wall - last_ban_end >= policy.forget_after:
                    strikes = 0
                duration = _ban_duration(policy, strikes)
                strikes += 1
                banned_until = last_ban_end = wall + duration
                failures = []
            conn.execute(
                "INSERT OR REPLACE INTO login_guard"
                " (address, failures, banned_until, strikes, last_ban_end, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (key, " ".join(repr(t) for t in failures), banned_until, strikes, last_ban_end, wall),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return duration

    def record_success(self, ip: str, now: float) -> None:
        """A successful login clears the failure count, but not the repeat-ban history."""
        if not self.policy.enabled:
            return
        self._fallback.record_success(ip, now)
        key = address_key(ip, self.policy.ipv6_prefix)
        try:
            with self._lock:
                # Read first: a login with nothing to clear (the usual case) takes no write lock.
                row = self._conn.execute(
                    "SELECT 1 FROM login_guard WHERE address = ? AND failures != ''", (key,)
                ).fetchone()
                if row is not None:
                    self._conn.execute(
                        "UPDATE login_guard SET failures = '', updated_at = ? WHERE address = ?",
                        (self._clock(), key),
                    )
        except sqlite3.Error as error:
            self._failed("record_success", error)

    def unban(self, ip: str) -> bool:
        key = address_key(ip, self.policy.ipv6_prefix)
        known = self._fallback.unban(ip)
        with self._lock:
            cursor = self._conn.execute("DELETE FROM login_guard WHERE address = ?", (key,))
        return known or cursor.rowcount > 0

    def sweep(self, now: float) -> int:
        swept = self._fallback.sweep(now)
        with self._lock:
            return swept + self._sweep(self._clock())

    def _sweep(self, wall: float) -> int:
        """Delete rows with no failure in the window and no ban that still counts as history."""
        policy = self.policy
        cursor = self._conn.execute(
            "DELETE FROM login_guard WHERE updated_at <= ?"
            " AND (banned_until IS NULL OR banned_until <= ?)"
            " AND (last_ban_end IS NULL OR strikes = 0 OR last_ban_end <= ?)",
            (wall - policy.window, wall, wall - policy.forget_after),
        )
        return cursor.rowcount

    def snapshot(self, now: float) -> GuardStats:
        wall = self._clock()
        try:
            with self._lock:
                row = self._conn.execute(
                    "SELECT COUNT(*), COUNT(CASE WHEN banned_until > ? THEN 1 END) FROM login_guard", (wall,)
                ).fetchone()
            tracked, active = int(row[0]), int(row[1])
        except sqlite3.Error as error:
            self._failed("snapshot", error)
            local = self._fallback.snapshot(now)
            tracked, active = local.tracked, local.active_bans
        return GuardStats(tracked, active, self._bans_total, self._failures_total)

    def _failed(self, what: str, error: sqlite3.Error) -> None:
        _log.error("login guard %s: %s failed (%s); counting in this process only", self.path, what, error)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
