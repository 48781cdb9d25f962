"""The shared user database on PostgreSQL: the SQLite store's model and API, for several pyftps nodes."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import psycopg
from argon2 import PasswordHasher
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from pyftps.auth.base import Permission, Principal
from pyftps.auth.passwords import default_hasher, dummy_hash, hash_password
from pyftps.auth.records import (
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
    "MIGRATION_LOCK_ID",
    "SCHEMA_VERSION",
    "USER_MIGRATIONS",
    "Connection",
    "Migrations",
    "NoSuchUser",
    "PostgresUserStore",
    "SchemaVersionError",
    "Statement",
    "UserExists",
    "UserRecord",
    "UserStoreError",
    "apply_migrations",
    "connection_info",
    "describe_dsn",
    "schema_version",
]

_log = logging.getLogger(__name__)

# The pg_advisory_xact_lock key ("pyftps" in ASCII) that serialises schema upgrades across nodes. One key
# for every pyftps schema in the database: upgrades are rare and short, so they may as well queue.
MIGRATION_LOCK_ID = 0x7079_6674_7073

Connection = psycopg.Connection[TupleRow]
Statement = str | sql.Composed  # fixed SQL text, or SQL composed from fixed identifiers

# libpq parameters whose environment variable, when set, must win over our defaults.
_ENVIRONMENT = {"connect_timeout": "PGCONNECT_TIMEOUT"}


@dataclass(frozen=True, slots=True)
class Migrations:
    """One schema's history: the table recording applied versions and the steps, oldest first."""

    table: str  # a fixed identifier, never user input
    steps: tuple[str, ...]
    what: str  # for messages: "user database", "login guard"


USER_MIGRATIONS = Migrations("schema_migrations", MIGRATIONS, "user database")


def describe_dsn(dsn: str) -> str:
    """Where *dsn* points, as a URL without the password, for messages and reprs."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "postgresql://<unparsable connection string>"
    user = f"{params['user']}@" if params.get("user") else ""
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname') or ''}"


def connection_info(dsn: str, **defaults: str | int) -> str:
    """*dsn* with the given libpq parameters added where neither it nor the environment sets them."""
    try:
        present = conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        raise ValueError(f"invalid PostgreSQL connection string: {exc}") from None
    extra = {
        key: value
        for key, value in defaults.items()
        if key not in present and _ENVIRONMENT.get(key, "") not in os.environ
    }
    return make_conninfo(dsn, **extra)


def schema_version(conn: Connection, table: str) -> int:
    """The highest version recorded in *table*, 0 if the table does not exist yet."""
    row = conn.execute("SELECT to_regclass(%s::text) IS NOT NULL", (table,)).fetchone()
    if row is None or not row[0]:
        return 0
    query = sql.SQL("SELECT COALESCE(MAX(version), 0) FROM {}").format(sql.Identifier(table))
    row = conn.execute(query).fetchone()
    return 0 if row is None else int(row[0])


def _refuse_newer(current: int, migrations: Migrations, where: str) -> None:
    latest = len(migrations.steps)
    if current > latest:
        raise SchemaVersionError(
            f"{where}: {migrations.what} is at schema version {current}, but this pyftps only knows "
            f"versions up to {latest}; upgrade pyftps (refusing to touch the database)"
        )


def apply_migrations(conn: Connection, migrations: Migrations, where: str) -> int:
    """Bring a schema to its latest version in one transaction, or leave it untouched; returns the old one.

    The advisory lock makes nodes that start together queue here: the first upgrades, the others then
    find the schema current. A current schema is detected without any lock or write, so a database role
    without DDL rights can run nodes once an administrator has migrated.
    """
    latest = len(migrations.steps)
    current = schema_version(conn, migrations.table)
    _refuse_newer(current, migrations, where)
    if current == latest:
        return current
    table = sql.Identifier(migrations.table)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            ).format(table)
        )
        current = schema_version(conn, migrations.table)
        _refuse_newer(current, migrations, where)
        for version in range(current + 1, latest + 1):
            try:
                conn.execute(migrations.steps[version - 1])
            except psycopg.Error as exc:
                raise UserStoreError(f"{where}: schema migration {version} failed: {exc}") from exc
            conn.execute(
                sql.SQL("INSERT INTO {} (version, applied_at) VALUES (%s, %s)").format(table),
                (version, now_text()),
            )
    if current < latest:
        _log.info("%s %s upgraded from schema %d to %d", migrations.what, where, current, latest)
    return current


class PostgresUserStore(CertificateLogins):
    """The user database on PostgreSQL, safe to share between threads and nodes; also an ``Authenticator``.

    Same model, API and timing rule as ``SqliteUserStore``: connections come from a pool and are
    held for one statement at a time, so password hashing never runs while a connection (or any row
    lock) is held and logins verify in parallel. Every write is a single autocommitted statement, so
    nodes sharing the database see each other's changes at once. Database failures raise
    ``UserStoreError`` (the server answers 421 to a login that hits one).
    """

    def __init__(
        self,
        dsn: str,
        *,
        hasher: PasswordHasher | None = None,
        pool_size: int = 10,
        timeout: float = 10.0,
    ) -> None:
        if pool_size < 1 or timeout <= 0:
            raise ValueError("pool_size must be at least 1 and timeout positive")
        self.where = describe_dsn(dsn)
        self._hasher = hasher or default_hasher()
        self._timeout = timeout
        self._closed = False
        conninfo = connection_info(dsn, connect_timeout=max(2, round(timeout)))
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                apply_migrations(conn, USER_MIGRATIONS, self.where)
        except psycopg.Error as exc:
            raise UserStoreError(f"{self.where}: cannot open user database: {exc}") from exc
        # check= costs one round trip per checkout (negligible next to argon2) and means a connection
        # broken by a database restart is replaced instead of failing the login that drew it.
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            check=ConnectionPool.check_connection,
            open=False,
            timeout=timeout,
            name="pyftps-users",
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
        except psycopg.Error as exc:
            self._pool.close()
            raise UserStoreError(f"{self.where}: cannot open user database: {exc}") from exc
        dummy_hash(self._hasher)  # build it now rather than during the first unknown-user login

    # -- connections -----------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        if self._closed:
            raise UserStoreError(f"{self.where}: user store is closed")
        try:
            with self._pool.connection(timeout=self._timeout) as conn:
                yield conn
        except psycopg.Error as exc:
            raise UserStoreError(f"{self.where}: {exc}") from exc

    def _fetch_one(self, query: Statement, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        with self._connection() as conn:
            return conn.execute(query, params).fetchone()

    def _modify(self, name: str, query: Statement, params: tuple[Any, ...]) -> None:
        """Run one write that must touch exactly the row of *name*; NoSuchUser if there is none."""
        with self._connection() as conn:
            if conn.execute(query, params).rowcount == 0:
                raise NoSuchUser(name)

    def close(self) -> None:
        """Close the pool; connections in use are closed when they are handed back."""
        self._closed = True
        self._pool.close()

    def __enter__(self) -> PostgresUserStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r})"

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
        with self._connection() as conn:
            try:
                conn.execute(
                    "INSERT INTO users (name, home, permissions, enabled, settings, password_hash,"
                    " created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (*row, password_hash, now, now),
                )
            except psycopg.errors.UniqueViolation:
                raise UserExists(name) from None
        return record_from_row((*row, now, now))

    def delete_user(self, name: str) -> None:
        """Remove an account; NoSuchUser if there is none."""
        self._modify(name, "DELETE FROM users WHERE name = %s", (name,))

    def set_password(self, name: str, password: str) -> None:
        """Replace an account's password hash; NoSuchUser if there is none."""
        password_hash = hash_password(password, hasher=self._hasher)
        self._modify(
            name,
            "UPDATE users SET password_hash = %s, updated_at = %s WHERE name = %s",
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
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = %s").format(sql.Identifier(column)) for column in changes
        )
        query = sql.SQL("UPDATE users SET {} WHERE name = %s").format(assignments)
        self._modify(name, query, (*changes.values(), name))

    def get_user(self, name: str) -> UserRecord | None:
        """The account called *name*, or None."""
        if not is_storable_name(name):  # PostgreSQL rejects NUL characters outright: nothing to find
            return None
        row = self._fetch_one(f"SELECT {RECORD_COLUMNS} FROM users WHERE name = %s", (name,))
        return None if row is None else record_from_row(row)

    def list_users(self) -> list[UserRecord]:
        """Every account, sorted by name byte-wise (as SQLite does)."""
        with self._connection() as conn:
            rows = conn.execute(f'SELECT {RECORD_COLUMNS} FROM users ORDER BY name COLLATE "C"').fetchall()
        return [record_from_row(row) for row in rows]

    def count_users(self) -> int:
        """How many accounts there are."""
        row = self._fetch_one("SELECT COUNT(*) FROM users")
        return 0 if row is None else int(row[0])

    def schema_version(self) -> int:
        """The user schema's version in the database."""
        with self._connection() as conn:
            return schema_version(conn, USER_MIGRATIONS.table)

    # -- authentication --------------------------------------------------------------------------

    def authenticate(self, username: str, password: str) -> Principal | None:
        """The Authenticator entry point: one argon2 verification whatever the outcome."""
        row = None
        if is_storable_name(username):  # an impossible name is an unknown user, without asking the database
            row = self._fetch_one(
                f"SELECT password_hash, {RECORD_COLUMNS} FROM users WHERE name = %s", (username,)
            )
        # Everything below runs with no connection held, so logins verify in parallel.
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
                    "UPDATE users SET password_hash = %s WHERE name = %s AND password_hash = %s",
                    (new_hash, name, old_hash),
                )
        except (UserStoreError, ValueError):
            _log.warning("could not upgrade the password hash of user %r", name, exc_info=True)
