"""Choosing the user store, and the login guard that goes with it, from one database URL.

``sqlite:///var/lib/pyftps/users.db`` (absolute path; ``sqlite:users.db`` is relative) selects the
embedded single-node store with in-memory bans. ``postgresql://user:pass@host:5432/pyftps`` (or
``postgres://``, any libpq URL) selects the shared store, with bans shared by every node using that
database. PostgreSQL support needs the ``postgres`` extra (psycopg 3), imported only when asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import unquote, urlsplit

from argon2 import PasswordHasher

from pyftps.auth.records import UserStoreError
from pyftps.server.guard import BanPolicy, GuardStats, LoginGuard

if TYPE_CHECKING:
    from pyftps.auth.postgres import PostgresUserStore
    from pyftps.auth.sqlite import SqliteUserStore

__all__ = ["BanGuard", "DatabaseUrl", "open_login_guard", "open_user_store", "parse_database_url"]

_POSTGRES_SCHEMES = ("postgresql", "postgres")
_MISSING_DRIVER = "PostgreSQL support is not installed ({}): pip install 'pyftps[postgres]'"


class BanGuard(Protocol):
    """What the server needs of a login guard: LoginGuard (one node) or PostgresLoginGuard (shared)."""

    policy: BanPolicy

    def is_allowed(self, ip: str) -> bool: ...

    def is_banned(self, ip: str, now: float) -> float | None: ...

    def record_failure(self, ip: str, now: float) -> float | None: ...

    def record_success(self, ip: str, now: float) -> None: ...

    def unban(self, ip: str) -> bool: ...

    def sweep(self, now: float) -> int: ...

    def snapshot(self, now: float) -> GuardStats: ...


class DatabaseUrl:
    """A parsed database URL: ``kind`` is "sqlite" (``target`` a file path) or "postgresql" (a libpq DSN)."""

    __slots__ = ("kind", "target")

    def __init__(self, kind: Literal["sqlite", "postgresql"], target: str) -> None:
        self.kind = kind
        self.target = target

    def __repr__(self) -> str:
        # Never the DSN itself: it may carry a password.
        return (
            f"DatabaseUrl({self.kind!r})"
            if self.kind == "postgresql"
            else f"DatabaseUrl(sqlite:{self.target})"
        )


def parse_database_url(url: str) -> DatabaseUrl:
    """Split a ``sqlite:`` or ``postgresql://`` URL; ValueError (without the URL's secrets) otherwise."""
    scheme, sep, _ = url.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ("sqlite", *_POSTGRES_SCHEMES):
        shown = f"{scheme}:" if sep and scheme.isalnum() else "(none)"
        raise ValueError(
            f"unsupported database URL scheme {shown}; use sqlite:///path/to/users.db"
            " or postgresql://user@host/dbname"
        )
    if scheme in _POSTGRES_SCHEMES:
        return DatabaseUrl("postgresql", url)
    parts = urlsplit(url)
    if parts.netloc or parts.query or parts.fragment:
        raise ValueError("sqlite URLs take a path only: sqlite:///absolute/path.db or sqlite:relative.db")
    path = unquote(parts.path)
    if not path or path.endswith("/"):
        raise ValueError("sqlite URL without a database file name")
    return DatabaseUrl("sqlite", path)


def open_user_store(url: str, *, hasher: PasswordHasher | None = None) -> SqliteUserStore | PostgresUserStore:
    """Open the user store a database URL names (creating or migrating its schema as needed)."""
    database = parse_database_url(url)
    if database.kind == "sqlite":
        from pyftps.auth.sqlite import SqliteUserStore

        return SqliteUserStore(Path(database.target), hasher=hasher)
    try:
        from pyftps.auth.postgres import PostgresUserStore
    except ImportError as error:
        raise UserStoreError(_MISSING_DRIVER.format(error)) from None
    return PostgresUserStore(database.target, hasher=hasher)


def open_login_guard(url: str | None, policy: BanPolicy, *, shared_file: Path | None = None) -> BanGuard:
    """The login guard for a database URL: shared through PostgreSQL, or in memory for SQLite or no URL.

    ``shared_file`` (worker processes of one node) keeps the bans in that SQLite file instead of memory,
    so every worker sees them; a PostgreSQL URL already shares them and ignores it.
    """
    if url is None or parse_database_url(url).kind == "sqlite":
        if shared_file is not None:
            from pyftps.auth.sqlite_bans import SqliteLoginGuard

            return SqliteLoginGuard(shared_file, policy)
        return LoginGuard(policy)
    try:
        from pyftps.auth.postgres_bans import PostgresLoginGuard
    except ImportError as error:
        raise UserStoreError(_MISSING_DRIVER.format(error)) from None
    return PostgresLoginGuard(url, policy)
