"""Unit tests for pyftps.auth.sqlite.SqliteUserStore: schema migrations, administration, authentication."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from pyftps.auth.base import Authenticator, Permission, Principal
from pyftps.auth.passwords import CONCURRENT_VERIFICATIONS, cheap_hasher, hash_password, make_hasher
from pyftps.auth.sqlite import (
    MIGRATIONS,
    SCHEMA_VERSION,
    NoSuchUser,
    SchemaVersionError,
    SqliteUserStore,
    UserExists,
    UserRecord,
    UserStoreError,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)
        self.verifies = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verifies += 1
        return super().verify(hash, password)


class BarrierHasher(PasswordHasher):
    """Every verification waits for *parties* others: deadlocks (BrokenBarrierError) if serialised."""

    def __init__(self, parties: int) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)
        self.barrier = threading.Barrier(parties, timeout=10)

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.barrier.wait()
        return super().verify(hash, password)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "users.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteUserStore]:
    with SqliteUserStore(db_path, hasher=cheap_hasher()) as opened:
        yield opened


def raw(path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Run SQL on a separate plain connection, bypassing the store."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def stored_hash(path: Path, name: str) -> str:
    value = raw(path, "SELECT password_hash FROM users WHERE name = ?", (name,))[0][0]
    assert isinstance(value, str)
    return value


# -- schema ------------------------------------------------------------------------------------------


def test_migrates_an_empty_database(store: SqliteUserStore, db_path: Path) -> None:
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 2
    assert store.schema_version() == SCHEMA_VERSION
    versions = raw(db_path, "SELECT version FROM schema_migrations ORDER BY version")
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
    columns = {row[1] for row in raw(db_path, "PRAGMA table_info(users)")}
    assert columns == {
        "name",
        "password_hash",
        "home",
        "permissions",
        "enabled",
        "created_at",
        "updated_at",
        "settings",
    }


def test_reopening_is_idempotent(db_path: Path) -> None:
    SqliteUserStore(db_path, hasher=cheap_hasher()).close()
    before = raw(db_path, "SELECT version, applied_at FROM schema_migrations")
    with SqliteUserStore(db_path, hasher=cheap_hasher()) as store:
        assert store.schema_version() == SCHEMA_VERSION
    assert raw(db_path, "SELECT version, applied_at FROM schema_migrations") == before


def _make_version_1_db(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    conn.execute(MIGRATIONS[0])
    conn.execute("INSERT INTO schema_migrations VALUES (1, '2024-01-01T00:00:00+00:00')")
    conn.execute(
        "INSERT INTO users (name, password_hash, home, permissions, enabled, created_at, updated_at)"
        " VALUES ('old', ?, '/srv/old', 'list,read', 1, '2024-01-01', '2024-01-01')",
        (hash_password("pw", hasher=cheap_hasher()),),
    )
    conn.close()


def test_upgrades_a_version_1_database(db_path: Path) -> None:
    _make_version_1_db(db_path)
    with SqliteUserStore(db_path, hasher=cheap_hasher()) as store:
        assert store.schema_version() == SCHEMA_VERSION
        record = store.get_user("old")
        assert record is not None
        assert record.settings == {}
        assert record.permissions == Permission.read_only()
        assert store.authenticate("old", "pw") == Principal("old", "/srv/old", Permission.read_only())
    assert raw(db_path, "SELECT applied_at FROM schema_migrations WHERE version = 1") == [
        ("2024-01-01T00:00:00+00:00",)
    ]


def test_failed_migration_leaves_database_untouched(db_path: Path) -> None:
    _make_version_1_db(db_path)
    raw(db_path, "ALTER TABLE users ADD COLUMN settings TEXT")  # step 2 will now collide
    with pytest.raises(UserStoreError, match="schema migration 2 failed"):
        SqliteUserStore(db_path, hasher=cheap_hasher())
    assert raw(db_path, "SELECT MAX(version) FROM schema_migrations") == [(1,)]


def test_rejects_a_newer_database(db_path: Path) -> None:
    SqliteUserStore(db_path, hasher=cheap_hasher()).close()
    future = SCHEMA_VERSION + 1
    raw(db_path, "INSERT INTO schema_migrations VALUES (?, 'later')", (future,))
    with pytest.raises(SchemaVersionError, match=f"schema version {future}.*upgrade pyftps"):
        SqliteUserStore(db_path, hasher=cheap_hasher())
    assert raw(db_path, "SELECT MAX(version) FROM schema_migrations") == [(future,)]


def test_rejects_a_file_that_is_not_a_database(db_path: Path) -> None:
    db_path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserStoreError, match="cannot open user database"):
        SqliteUserStore(db_path, hasher=cheap_hasher())


def test_concurrent_first_open(tmp_path: Path) -> None:
    # Several openers of a fresh file race for the switch to WAL mode, which SQLite refuses at once
    # (no busy handler) while another connection holds the file; ~6% of rounds lost that race before
    # the store retried it, so run enough rounds to catch it.
    for round_ in range(40):
        path = tmp_path / f"users-{round_}.db"

        def open_and_close(_: int, path: Path = path) -> int:
            with SqliteUserStore(path, hasher=cheap_hasher()) as store:
                return store.schema_version()

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(open_and_close, range(8))) == [SCHEMA_VERSION] * 8
        assert raw(path, "SELECT COUNT(*) FROM schema_migrations") == [(SCHEMA_VERSION,)]
        assert raw(path, "PRAGMA journal_mode") == [("wal",)]


def test_rejects_in_memory_database() -> None:
    with pytest.raises(ValueError, match="file path"):
        SqliteUserStore(":memory:")


# -- files -------------------------------------------------------------------------------------------


@posix_only
def test_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "users.db"
    old_umask = os.umask(0o022)
    try:
        with SqliteUserStore(path, hasher=cheap_hasher()) as store:
            store.add_user("alice", "pw", "/h")  # forces the -wal file to exist
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            wal = path.with_name("users.db-wal")
            assert not wal.exists() or stat.S_IMODE(wal.stat().st_mode) == 0o600
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_uses_wal(store: SqliteUserStore, db_path: Path) -> None:
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]


def test_closed_store_refuses_work(db_path: Path) -> None:
    store = SqliteUserStore(db_path, hasher=cheap_hasher())
    store.close()
    store.close()  # idempotent
    with pytest.raises(UserStoreError, match="closed"):
        store.count_users()


# -- administration ----------------------------------------------------------------------------------


def test_add_and_get(store: SqliteUserStore) -> None:
    added = store.add_user("alice", "pw", "/srv/alice", Permission.read_only(), settings={"tls": "required"})
    record = store.get_user("alice")
    assert record == added
    assert isinstance(record, UserRecord)
    assert record.name == "alice"
    assert record.home == "/srv/alice"
    assert record.permissions == Permission.read_only()
    assert record.enabled is True
    assert record.settings == {"tls": "required"}
    assert record.created_at == record.updated_at
    assert record.principal() == Principal("alice", "/srv/alice", Permission.read_only())
    assert store.get_user("bob") is None


def test_record_never_shows_the_hash(store: SqliteUserStore, db_path: Path) -> None:
    store.add_user("alice", "pw", "/h")
    record = store.get_user("alice")
    assert record is not None
    assert "argon2" not in repr(record) and "password" not in repr(record)
    assert not hasattr(record, "password_hash")
    assert stored_hash(db_path, "alice").startswith("$argon2id$")


def test_duplicate_user(store: SqliteUserStore) -> None:
    store.add_user("alice", "pw", "/h")
    with pytest.raises(UserExists, match="'alice' already exists"):
        store.add_user("alice", "other", "/h2")
    store.add_user("Alice", "pw", "/h3")  # names are case-sensitive
    assert store.count_users() == 2


def test_list_and_count(store: SqliteUserStore) -> None:
    assert store.list_users() == []
    assert store.count_users() == 0
    for name in ("carol", "alice", "bob"):
        store.add_user(name, "pw", f"/srv/{name}")
    assert [r.name for r in store.list_users()] == ["alice", "bob", "carol"]
    assert store.count_users() == 3


def test_delete(store: SqliteUserStore) -> None:
    store.add_user("alice", "pw", "/h")
    store.delete_user("alice")
    assert store.get_user("alice") is None
    with pytest.raises(NoSuchUser, match="'alice'"):
        store.delete_user("alice")


def test_set_password(store: SqliteUserStore) -> None:
    store.add_user("alice", "old", "/h")
    store.set_password("alice", "new")
    assert store.authenticate("alice", "old") is None
    assert store.authenticate("alice", "new") is not None
    with pytest.raises(NoSuchUser):
        store.set_password("bob", "pw")
    with pytest.raises(ValueError, match="empty"):
        store.set_password("alice", "")


def test_update_user(store: SqliteUserStore) -> None:
    store.add_user("alice", "pw", "/old", settings={"a": 1})
    store.update_user("alice", home="/new")
    record = store.get_user("alice")
    assert record is not None
    assert (record.home, record.permissions, record.enabled, record.settings) == (
        "/new",
        Permission.all(),
        True,
        {"a": 1},
    )
    store.update_user("alice", permissions=Permission(0), enabled=False, settings={"b": [1, 2]})
    record = store.get_user("alice")
    assert record is not None
    assert (record.home, record.permissions, record.enabled, record.settings) == (
        "/new",
        Permission(0),
        False,
        {"b": [1, 2]},
    )
    store.update_user("alice")  # nothing to change is fine for an existing user
    with pytest.raises(NoSuchUser):
        store.update_user("bob", home="/x")
    with pytest.raises(NoSuchUser):
        store.update_user("bob")


@pytest.mark.parametrize(
    "permissions",
    [
        Permission.all(),
        Permission.read_only(),
        Permission(0),
        Permission.WRITE,
        Permission.LIST | Permission.MKDIR | Permission.CHMOD,
        Permission.all() & ~Permission.DELETE,
    ],
)
def test_permissions_round_trip(store: SqliteUserStore, db_path: Path, permissions: Permission) -> None:
    store.add_user("alice", "pw", "/h", permissions)
    record = store.get_user("alice")
    assert record is not None and record.permissions == permissions
    principal = store.authenticate("alice", "pw")
    assert principal is not None and principal.permissions == permissions
    text = raw(db_path, "SELECT permissions FROM users")[0][0]
    assert text == ",".join(permissions.names())
    assert isinstance(text, str) and text == text.lower()


def test_unreadable_permissions_fail_closed(store: SqliteUserStore, db_path: Path) -> None:
    store.add_user("alice", "pw", "/h")
    raw(db_path, "UPDATE users SET permissions = 'list,teleport'")
    with pytest.raises(UserStoreError, match="unreadable permissions"):
        store.authenticate("alice", "pw")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "1-64"),
        ("x" * 65, "1-64"),
        ("a b", "whitespace"),
        ("a\x01", "control"),
        ("a/b", "'/'"),
        ("a:b", "':'"),
    ],
)
def test_add_user_validates_names(store: SqliteUserStore, name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        store.add_user(name, "pw", "/h")
    assert store.count_users() == 0


def test_add_user_validates_arguments(store: SqliteUserStore) -> None:
    with pytest.raises(ValueError, match="home"):
        store.add_user("alice", "pw", "")
    with pytest.raises(ValueError, match="empty"):
        store.add_user("alice", "", "/h")
    with pytest.raises(ValueError, match="JSON"):
        store.add_user("alice", "pw", "/h", settings={"x": object()})
    with pytest.raises(ValueError, match="string keys"):
        store.add_user("alice", "pw", "/h", settings={1: "x"})  # type: ignore[dict-item]
    assert store.count_users() == 0


# -- authentication ----------------------------------------------------------------------------------


def test_is_an_authenticator(store: SqliteUserStore) -> None:
    checked: Authenticator = store
    store.add_user("alice", "pw", "/srv/alice")
    assert checked.authenticate("alice", "pw") == Principal("alice", "/srv/alice", Permission.all())


def test_authenticate_failures(store: SqliteUserStore) -> None:
    store.add_user("alice", "wonderland", "/h")
    assert store.authenticate("alice", "wonderland") is not None
    assert store.authenticate("alice", "wrong") is None
    assert store.authenticate("alice", "") is None
    assert store.authenticate("ALICE", "wonderland") is None
    assert store.authenticate("nobody", "wonderland") is None
    assert store.authenticate("bad name/with:junk", "x") is None


def test_disabled_user_fails_like_a_wrong_password(db_path: Path) -> None:
    hasher = CountingHasher()
    with SqliteUserStore(db_path, hasher=hasher) as store:
        store.add_user("alice", "pw", "/h", enabled=False)
        assert store.authenticate("alice", "pw") is None
        assert store.authenticate("alice", "wrong") is None
        assert store.authenticate("nobody", "pw") is None
        assert hasher.verifies == 3  # one verification per attempt, whatever the reason for failing
        store.update_user("alice", enabled=True)
        assert store.authenticate("alice", "pw") is not None


def test_garbage_hash_fails_quietly(store: SqliteUserStore, db_path: Path) -> None:
    store.add_user("alice", "pw", "/h")
    raw(db_path, "UPDATE users SET password_hash = 'garbage'")
    assert store.authenticate("alice", "pw") is None


def test_login_upgrades_outdated_hash(db_path: Path) -> None:
    with SqliteUserStore(db_path, hasher=cheap_hasher()) as store:
        store.add_user("alice", "pw", "/h")
    old = stored_hash(db_path, "alice")
    stronger = make_hasher(time_cost=2, memory_cost=16)
    with SqliteUserStore(db_path, hasher=stronger) as store:
        assert store.authenticate("alice", "wrong") is None
        assert stored_hash(db_path, "alice") == old  # only a successful login may rehash
        assert store.authenticate("alice", "pw") is not None
        new = stored_hash(db_path, "alice")
        assert new != old
        assert extract_parameters(new).time_cost == 2
        assert store.authenticate("alice", "pw") is not None
        assert stored_hash(db_path, "alice") == new  # current hashes are left alone


def test_parallel_logins_verify_concurrently(db_path: Path) -> None:
    threads = 8
    with SqliteUserStore(db_path, hasher=BarrierHasher(CONCURRENT_VERIFICATIONS)) as store:
        store.add_user("alice", "a-pw", "/a")
        store.add_user("bob", "b-pw", "/b", Permission.read_only())
        attempts = [("alice", "a-pw"), ("bob", "b-pw"), ("alice", "b-pw"), ("eve", "x")] * 2
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda a: store.authenticate(*a), attempts))
    alice = Principal("alice", "/a", Permission.all())
    bob = Principal("bob", "/b", Permission.read_only())
    assert results == [alice, bob, None, None] * 2


def test_concurrent_logins_with_rehash_and_admin(db_path: Path) -> None:
    with SqliteUserStore(db_path, hasher=cheap_hasher()) as store:
        for i in range(8):
            store.add_user(f"user{i}", f"pw{i}", f"/h{i}")
    stronger = make_hasher(time_cost=2, memory_cost=16)
    with SqliteUserStore(db_path, hasher=stronger) as store:
        barrier = threading.Barrier(8)

        def worker(i: int) -> list[bool]:
            barrier.wait()
            outcomes = []
            for round_ in range(10):
                outcomes.append(store.authenticate(f"user{i}", f"pw{i}") is not None)
                outcomes.append(store.authenticate(f"user{(i + 1) % 8}", f"pw{i}") is None)
                if round_ == 5:
                    store.update_user(f"user{i}", settings={"round": round_})
            return outcomes

        with ThreadPoolExecutor(8) as pool:
            assert all(all(outcome) for outcome in pool.map(worker, range(8)))
        for i in range(8):
            assert extract_parameters(stored_hash(db_path, f"user{i}")).time_cost == 2
            record = store.get_user(f"user{i}")
            assert record is not None and record.settings == {"round": 5}
