"""Selecting the user store and the login guard from a database URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyftps.auth.passwords import cheap_hasher
from pyftps.auth.stores import open_login_guard, open_user_store, parse_database_url
from pyftps.server.guard import BanPolicy, LoginGuard


@pytest.mark.parametrize(
    ("url", "kind", "target"),
    [
        ("sqlite:///var/lib/pyftps/users.db", "sqlite", "/var/lib/pyftps/users.db"),
        ("sqlite:users.db", "sqlite", "users.db"),
        ("sqlite:state/my%20users.db", "sqlite", "state/my users.db"),
        ("SQLite:///x.db", "sqlite", "/x.db"),
        ("postgresql://u:pw@db:5432/pyftps", "postgresql", "postgresql://u:pw@db:5432/pyftps"),
        ("postgres://db/pyftps?sslmode=require", "postgresql", "postgres://db/pyftps?sslmode=require"),
    ],
)
def test_parse_database_url(url: str, kind: str, target: str) -> None:
    parsed = parse_database_url(url)
    assert (parsed.kind, parsed.target) == (kind, target)
    assert "pw" not in repr(parsed)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:s3cret@db/x", "unsupported database URL scheme mysql:"),
        ("/var/lib/users.db", "unsupported database URL scheme"),
        ("sqlite://host/users.db", "path only"),
        ("sqlite:///x.db?mode=ro", "path only"),
        ("sqlite://", "without a database file"),
        ("sqlite:///var/lib/", "without a database file"),
    ],
)
def test_bad_database_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_database_url(url)
    assert "s3cret" not in str(caught.value)


def test_sqlite_url_opens_the_embedded_store(tmp_path: Path) -> None:
    from pyftps.auth.sqlite import SqliteUserStore

    with open_user_store(f"sqlite://{tmp_path}/users.db", hasher=cheap_hasher()) as store:
        assert isinstance(store, SqliteUserStore)
        assert store.path == tmp_path / "users.db"
    guard = open_login_guard(f"sqlite://{tmp_path}/users.db", BanPolicy())
    assert type(guard) is LoginGuard
    assert type(open_login_guard(None, BanPolicy())) is LoginGuard


def test_postgresql_url_opens_the_shared_store_and_guard(pg_dsn: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    from pyftps.auth.postgres import PostgresUserStore
    from pyftps.auth.postgres_bans import PostgresLoginGuard

    params = conninfo_to_dict(pg_dsn)
    options = params["options"].replace(" ", "%20").replace("=", "%3D")
    url = f"postgresql://{params['user']}@{params['host']}:{params['port']}/{params['dbname']}?options={options}"
    with open_user_store(url, hasher=cheap_hasher()) as store:
        assert isinstance(store, PostgresUserStore)
        store.add_user("alice", "pw", "/h")
    guard = open_login_guard(url, BanPolicy())
    try:
        assert isinstance(guard, PostgresLoginGuard)
        assert guard.record_failure("192.0.2.1", 0.0) is None
    finally:
        guard.close()
