"""The embedded default user database: accounts, argon2id hashes and permissions in one SQLite file."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from argon2 import PasswordHasher

from pyftps.auth.base import Permission, Principal
from pyftps.auth.passwords import default_hasher, dummy_hash, hash_password
from pyftps.auth.records import (
    CREATE_MIGRATIONS_TABLE,
    MIGRATIONS,
    RECORD_COLUMNS,
    SCHEMA_VERSION,
    CertificateLogins,
    NoSuchUser,
    SchemaVersionError,
    UserExists,
    UserRecord,
    UserStoreError,
    decide_login,
    is_storable_name,
    new_user_row,
    now_text,
    record_from_row,
    user_changes,
)

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "NoSuchUser",
    "SchemaVersionError",
    "SqliteUserStore",
    "UserExists",
    "UserRecord",
    "UserStoreError",
]

_log = logging.getLogger(__name__)

_MAX_IDLE_CONNECTIONS = 32


def _create_private_file(path: Path) -> None:
    # Create the file ourselves so it is born 0600 (sqlite3 would use 0644 minus umask): it holds
    # password hashes. SQLite gives the -wal and -shm files the same mode as the database file.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    if os.name == "posix" and path.stat().st_mode & 0o077:
        _log.warning("user database %s is accessible by group/others; consider chmod 600", path)


def enable_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Put the database in WAL mode, waiting up to ``busy_timeout`` for other openers of a new file.

    WAL mode is persistent, so only the first connection to a new file switches it. The switch needs an
    exclusive lock and SQLite answers SQLITE_BUSY at once (no busy handler) while another connection
    holds the file, e.g. several threads or processes opening a fresh database together.
    """
    deadline = time.monotonic() + busy_timeout
    delay = 0.001
    while True:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchall()[0]
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
            continue
        if str(mode).lower() != "wal":
            _log.warning("SQLite kept journal mode %s instead of WAL (no shared memory here?)", mode)
        return


def _schema_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if exists is None:
        return 0
    (version,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    return int(version)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to SCHEMA_VERSION in one transaction, or leave it untouched."""
    current = _schema_version(conn)  # read-only fast path: a current DB needs no write lock
    if current == SCHEMA_VERSION:
        return
    # IMMEDIATE takes the write lock up front, so two processes opening an old database at the same
    # time serialise here and the second one sees the upgraded version instead of re-applying steps.
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(CREATE_MIGRATIONS_TABLE)
        current = _schema_version(conn)
        if current > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{path}: user database is at schema version {current}, but this pyftps only knows "
                f"versions up to {SCHEMA_VERSION}; upgrade pyftps (refusing to touch the database)"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            try:
                conn.execute(MIGRATIONS[version - 1])
            except sqlite3.Error as exc:
                raise UserStoreError(f"{path}: schema migration {version} failed: {exc}") from exc
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, now_text())
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    if current < SCHEMA_VERSION:
        _log.info("user database %s upgraded from schema %d to %d", path, current, SCHEMA_VERSION)


class SqliteUserStore(CertificateLogins):
    """The user database, safe to share between threads; also an ``Authenticator``.

    Connections come from a small pool (one per concurrent caller, whatever the threading model), so
    no lock is held while SQL runs and password hashing never runs while a connection is checked out:
    logins verify in parallel. WAL mode lets readers proceed while an admin command writes, and the
    busy timeout makes writers from other processes (``pyftps user add``) wait instead of failing.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        hasher: PasswordHasher | None = None,
        busy_timeout: float = 5.0,
    ) -> None:
        if str(path) in ("", ":memory:"):
            # Every pooled connection would get its own private, empty in-memory database.
            raise ValueError("SqliteUserStore needs a file path, not an in-memory database")
        self.path = Path(path)
        self._hasher = hasher or default_hasher()
        self._busy_timeout = busy_timeout
        self._pool_lock = threading.Lock()  # guards _idle/_closed only; never held across SQL
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        _create_private_file(self.path)
        try:
            with self._connection() as conn:
                _migrate(conn, self.path)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise UserStoreError(f"{self.path}: cannot open user database: {exc}") from exc
        except BaseException:
            self.close()
            raise
        dummy_hash(self._hasher)  # build it now rather than during the first unknown-user login

    # -- connections -----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit BEGINs; single statements autocommit and the migration
        # manages its own transaction. timeout= is SQLite's busy_timeout. check_same_thread=False
        # because pooled connections move between threads (never used by two at once).
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            enable_wal(conn, self._busy_timeout)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._pool_lock:
            if self._closed:
                raise UserStoreError(f"{self.path}: user store is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            if conn.in_transaction:  # only if a caller died mid-transaction; never pool a half-done one
                conn.rollback()
            with self._pool_lock:
                keep = not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def close(self) -> None:
        """Close pooled connections; connections in use are closed when they are handed back."""
        with self._pool_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> SqliteUserStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def _modify(self, name: str, sql: str, params: tuple[Any, ...]) -> None:
        """Run one write that must touch exactly the row of *name*; NoSuchUser if there is none."""
        with self._connection() as conn:
            if conn.execute(sql, params).rowcount == 0:
                raise NoSuchUser(name)

    # -- administration --------------------------------------------------------------------------

    def add_user(
        self,
        name: str,
        password: str,
        home: str,
        permissions: Permission = Permission.all(),  # noqa: B008 - immutable flag value
        enabled: bool = True,
        *,
        settings: Mapping[str, Any] | None = None,
    ) -> UserRecord:
        """Create an account; UserExists if the name is taken, ValueError for invalid arguments."""
        row = new_user_row(name, home, permissions, enabled, settings)
        password_hash = hash_password(password, hasher=self._hasher)  # before taking a connection
        now = now_text()
        try:
            with self._connection() as conn:
                conn.execute(
                    "INSERT INTO users (name, home, permissions, enabled, settings, password_hash,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*row, password_hash, now, now),
                )
        except sqlite3.IntegrityError as exc:
            if exc.sqlite_errorname in ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"):
                raise UserExists(name) from None
            raise
        return record_from_row((*row, now, now))

    def delete_user(self, name: str) -> None:
        self._modify(name, "DELETE FROM users WHERE name = ?", (name,))

    def set_password(self, name: str, password: str) -> None:
        password_hash = hash_password(password, hasher=self._hasher)
        self._modify(
            name,
            "UPDATE users SET password_hash = ?, updated_at = ? WHERE name = ?",
            (password_hash, now_text(), name),
        )

    def update_user(
        self,
        name: str,
        *,
        home: str | None = None,
        permissions: Permission | None = None,
        enabled: bool | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """Change the given fields (None leaves a field alone); ``settings`` replaces the whole dict."""
        changes = user_changes(home=home, permissions=permissions, enabled=enabled, settings=settings)
        if not changes:
            if self.get_user(name) is None:
                raise NoSuchUser(name)
            return
        changes["updated_at"] = now_text()
        # Column names come from the fixed keys above, never from the caller, so formatting is safe.
        assignments = ", ".join(f"{column} = ?" for column in changes)
        self._modify(name, f"UPDATE users SET {assignments} WHERE name = ?", (*changes.values(), name))

    def get_user(self, name: str) -> UserRecord | None:
        if not is_storable_name(name):  # no such account can exist (and sqlite3 cannot bind surrogates)
            return None
        with self._connection() as conn:
            row = conn.execute(f"SELECT {RECORD_COLUMNS} FROM users WHERE name = ?", (name,)).fetchone()
        return None if row is None else record_from_row(row)

    def list_users(self) -> list[UserRecord]:
        with self._connection() as conn:
            rows = conn.execute(f"SELECT {RECORD_COLUMNS} FROM users ORDER BY name").fetchall()
        return [record_from_row(row) for row in rows]

    def count_users(self) -> int:
        with self._connection() as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM users").fetchone()
        return int(count)

    def schema_version(self) -> int:
        with self._connection() as conn:
            return _schema_version(conn)

    # -- authentication --------------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> Principal | None:
        """The Authenticator entry point: one argon2 verification whatever the outcome."""
        row = None
        if is_storable_name(username):  # an impossible name is an unknown user, without asking SQLite
            with self._connection() as conn:
                row = conn.execute(
                    f"SELECT password_hash, {RECORD_COLUMNS} FROM users WHERE name = ?", (username,)
                ).fetchone()
        # Everything below runs with no connection or lock held, so logins verify in parallel.
        principal, rehash = decide_login(row, password, self._hasher)
        if principal is not None and rehash and row is not None:
            self._upgrade_hash(username, row[0], password)
        return principal

    def _upgrade_hash(self, name: str, old_hash: str, password: str) -> None:
        """Re-hash with the current parameters; best effort, a failure must not fail the login."""
        try:
            new_hash = hash_password(password, hasher=self._hasher)
            with self._connection() as conn:
                # Compare-and-swap: if set_password or another login changed the hash meanwhile, keep theirs.
                conn.execute(
                    "UPDATE users SET password_hash = ? WHERE name = ? AND password_hash = ?",
                    (new_hash, name, old_hash),
                )
        except (sqlite3.Error, UserStoreError, ValueError):
            _log.warning("could not upgrade the password hash of user %r", name, exc_info=True)
