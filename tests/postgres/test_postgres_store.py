"""PostgreSQL-only behaviour of the user store: several nodes, concurrent start-up, outages, secrets."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.postgres.conftest import require_psycopg

require_psycopg()

from pyftps.auth.base import Permission, Principal  # noqa: E402
from pyftps.auth.passwords import cheap_hasher  # noqa: E402
from pyftps.auth.postgres import (  # noqa: E402
    MIGRATIONS,
    SCHEMA_VERSION,
    PostgresUserStore,
    UserStoreError,
    connection_info,
    describe_dsn,
)
from pyftps.auth.postgres_bans import GUARD_MIGRATIONS, PostgresLoginGuard  # noqa: E402
from pyftps.server.guard import BanPolicy  # noqa: E402
from tests.postgres.conftest import PostgresServer, raw_sql  # noqa: E402
from tests.support.ports import free_port  # noqa: E402


@pytest.fixture
def open_node(pg_dsn: str) -> Iterator[Callable[[], PostgresUserStore]]:
    """Open stores ("nodes") on the test database; all are closed at the end."""
    opened: list[PostgresUserStore] = []

    def open_() -> PostgresUserStore:
        store = PostgresUserStore(pg_dsn, hasher=cheap_hasher(), pool_size=4)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def test_two_nodes_see_each_others_changes(open_node: Callable[[], PostgresUserStore]) -> None:
    a, b = open_node(), open_node()
    a.add_user("alice", "pw", "/srv/alice", Permission.read_only())
    assert b.get_user("alice") == a.get_user("alice")
    assert b.authenticate("alice", "pw") == Principal("alice", "/srv/alice", Permission.read_only())
    b.update_user("alice", enabled=False)
    assert a.authenticate("alice", "pw") is None
    b.update_user("alice", enabled=True)
    a.set_password("alice", "new")
    assert b.authenticate("alice", "pw") is None
    assert b.authenticate("alice", "new") is not None
    b.delete_user("alice")
    assert a.get_user("alice") is None
    assert a.count_users() == b.count_users() == 0


def test_the_same_user_added_on_two_nodes_at_once(open_node: Callable[[], PostgresUserStore]) -> None:
    nodes = [open_node(), open_node()]
    barrier = threading.Barrier(8)

    def add(i: int) -> str:
        barrier.wait()
        try:
            nodes[i % 2].add_user("alice", f"pw{i}", f"/h{i}")
        except UserStoreError as error:
            return type(error).__name__
        return "added"

    with ThreadPoolExecutor(8) as pool:
        outcomes = sorted(pool.map(add, range(8)))
    assert outcomes == ["UserExists"] * 7 + ["added"]


def test_nodes_starting_together_migrate_once(pg_dsn: str) -> None:
    """Eight stores and guards open an empty database at once: the advisory lock makes one migrate."""
    barrier = threading.Barrier(8)

    def open_and_close(i: int) -> int:
        barrier.wait()
        if i % 2:
            with PostgresLoginGuard(pg_dsn, BanPolicy()):
                return -1
        with PostgresUserStore(pg_dsn, hasher=cheap_hasher(), pool_size=1) as store:
            return store.schema_version()

    with ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(open_and_close, range(8))) == [-1] * 4 + [SCHEMA_VERSION] * 4
    assert raw_sql(pg_dsn, "SELECT COUNT(*) FROM schema_migrations") == [(SCHEMA_VERSION,)]
    assert raw_sql(pg_dsn, "SELECT COUNT(*) FROM login_guard_migrations") == [(len(GUARD_MIGRATIONS.steps),)]


def test_current_schema_needs_no_ddl_rights(pg_dsn: str) -> None:
    """Once migrated, a node runs with a role that may only read and write the tables."""
    PostgresUserStore(pg_dsn, hasher=cheap_hasher()).close()
    schema = raw_sql(pg_dsn, "SELECT current_schema()")[0][0]
    raw_sql(pg_dsn, "DROP ROLE IF EXISTS pyftps_node")
    raw_sql(pg_dsn, "CREATE ROLE pyftps_node LOGIN")
    try:
        raw_sql(pg_dsn, f"GRANT USAGE ON SCHEMA {schema} TO pyftps_node")
        raw_sql(
            pg_dsn, f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO pyftps_node"
        )
        with PostgresUserStore(connection_info(pg_dsn, user="pyftps_node"), hasher=cheap_hasher()) as store:
            store.add_user("alice", "pw", "/h")
            assert store.authenticate("alice", "pw") is not None
    finally:
        raw_sql(pg_dsn, f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM pyftps_node")
        raw_sql(pg_dsn, f"REVOKE ALL ON SCHEMA {schema} FROM pyftps_node")
        raw_sql(pg_dsn, "DROP ROLE pyftps_node")


def test_migrations_are_the_sqlite_ones() -> None:
    from pyftps.auth import records

    assert MIGRATIONS is records.MIGRATIONS and len(MIGRATIONS) == SCHEMA_VERSION


def test_unreachable_database_fails_fast_without_leaking_the_password() -> None:
    dsn = f"postgresql://pyftps:s3cret@127.0.0.1:{free_port()}/users?connect_timeout=2"
    with pytest.raises(UserStoreError, match="cannot open user database") as caught:
        PostgresUserStore(dsn, hasher=cheap_hasher())
    assert "s3cret" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


def test_repr_and_descriptions_hide_the_password(pg_dsn: str) -> None:
    assert (
        describe_dsn("postgresql://u:s3cret@db.example:6432/users") == "postgresql://u@db.example:6432/users"
    )
    assert describe_dsn("host=db user=u password=s3cret dbname=x") == "postgresql://u@db/x"
    assert "s3cret" not in describe_dsn("this is = not a dsn s3cret")
    with PostgresUserStore(pg_dsn, hasher=cheap_hasher()) as store:
        assert repr(store).startswith("PostgresUserStore('postgresql://postgres@127.0.0.1:")


def test_connection_info_keeps_what_the_dsn_says() -> None:
    assert "connect_timeout=3" in connection_info("postgresql://h/db?connect_timeout=3", connect_timeout=9)
    assert "connect_timeout=9" in connection_info("postgresql://h/db", connect_timeout=9)
    with pytest.raises(ValueError, match="invalid PostgreSQL connection string"):
        connection_info("this is = not a dsn")


def test_database_errors_are_user_store_errors(
    open_node: Callable[[], PostgresUserStore], pg_dsn: str
) -> None:
    store = open_node()
    store.add_user("alice", "pw", "/h")
    raw_sql(pg_dsn, "ALTER TABLE users RENAME TO users_gone")
    try:
        with pytest.raises(UserStoreError, match="users"):
            store.get_user("alice")
        with pytest.raises(UserStoreError):
            store.authenticate("alice", "pw")  # the server answers 421, never "wrong password"
    finally:
        raw_sql(pg_dsn, "ALTER TABLE users_gone RENAME TO users")
    assert store.authenticate("alice", "pw") is not None


def test_survives_a_database_restart(
    open_node: Callable[[], PostgresUserStore], pg_dsn: str, postgres_server: PostgresServer
) -> None:
    """Pooled connections broken by a restart are replaced, not handed to a login; same for the guard."""
    store = open_node()
    store.add_user("alice", "pw", "/h")
    guard = PostgresLoginGuard(pg_dsn, BanPolicy(max_failures=2), cache_ttl=0)
    try:
        assert guard.record_failure("192.0.2.1", 1.0) is None
        postgres_server.restart()
        assert store.authenticate("alice", "pw") is not None
        assert guard.record_failure("192.0.2.1", 2.0) == 900.0
        assert guard.is_banned("192.0.2.1", 3.0) is not None
        assert guard._down_until is None  # never fell back: the broken connection was redrawn
    finally:
        guard.close()
