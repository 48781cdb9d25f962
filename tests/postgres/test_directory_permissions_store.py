"""Directory rules round-trip through both user stores (SQLite and PostgreSQL) with no migration."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyftps.auth.records import DIRECTORY_PERMISSIONS, SCHEMA_VERSION
from pyftps.proto.permissions import DirectoryRule, Permission
from tests.postgres.test_user_store_contract import Backend, _postgres_backend, _sqlite_backend

P = Permission


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    backend: Backend
    if request.param == "sqlite":
        backend = _sqlite_backend(tmp_path)
    else:
        backend = _postgres_backend(request.getfixturevalue("pg_dsn"))
    with backend.open() as opened:
        yield opened


def test_rules_round_trip_and_reach_the_principal(store: Any) -> None:
    assert store.schema_version() == SCHEMA_VERSION  # settings is JSON already: nothing to migrate
    store.add_user(
        "carol", "pw", "/srv/carol", P.read_only(), settings={DIRECTORY_PERMISSIONS: {"/in/": "write"}}
    )
    record = store.get_user("carol")
    assert record.settings[DIRECTORY_PERMISSIONS] == {"/in": "write"}
    assert store.authenticate("carol", "pw").directory_rules == (DirectoryRule("/in", P.WRITE),)
    store.update_user("carol", settings={DIRECTORY_PERMISSIONS: {"/in": "all", "/in/x": "none"}})
    assert store.authenticate("carol", "pw").directory_rules == (
        DirectoryRule("/in", P.all()),
        DirectoryRule("/in/x", P(0)),
    )
    with pytest.raises(ValueError):
        store.update_user("carol", settings={DIRECTORY_PERMISSIONS: {"/in/../etc": "all"}})
    assert [user.name for user in store.list_users()] == ["carol"]
    store.update_user("carol", settings={})
    assert store.authenticate("carol", "pw").directory_rules == ()
