"""Directory rules in the user store: validated and normalised when stored, carried to the principal."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyftps.auth.passwords import cheap_hasher
from pyftps.auth.records import (
    DIRECTORY_PERMISSIONS,
    directory_rules,
    format_directory_permissions,
    normalise_directory_permissions,
)
from pyftps.auth.sqlite import SqliteUserStore
from pyftps.proto.permissions import DirectoryRule, Permission

P = Permission


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteUserStore]:
    with SqliteUserStore(tmp_path / "users.db", hasher=cheap_hasher()) as opened:
        yield opened


def test_rules_round_trip_in_canonical_form(store: SqliteUserStore) -> None:
    rules = {"/incoming/": "write, list", "//pub": "ro", "/pub/private": "none"}
    store.add_user("carol", "pw", "/srv/carol", P.read_only(), settings={DIRECTORY_PERMISSIONS: rules})
    record = store.get_user("carol")
    assert record is not None
    assert record.settings[DIRECTORY_PERMISSIONS] == {
        "/incoming": "list,write",
        "/pub": "list,read",
        "/pub/private": "",
    }
    principal = store.authenticate("carol", "pw")
    assert principal is not None
    assert principal.permissions == P.read_only()
    assert principal.directory_rules == (
        DirectoryRule("/incoming", P.LIST | P.WRITE),
        DirectoryRule("/pub", P.read_only()),
        DirectoryRule("/pub/private", P(0)),
    )
    assert (
        format_directory_permissions(record.settings) == "/incoming=list,write /pub=list,read /pub/private=-"
    )


def test_rules_update_and_clear(store: SqliteUserStore) -> None:
    store.add_user("carol", "pw", "/srv/carol", P.read_only())
    assert store.authenticate("carol", "pw").directory_rules == ()  # type: ignore[union-attr]
    store.update_user("carol", settings={DIRECTORY_PERMISSIONS: {"/up": "all"}, "quota_files": 3})
    principal = store.authenticate("carol", "pw")
    assert principal is not None
    assert principal.directory_rules == (DirectoryRule("/up", P.all()),)
    assert principal.limits.quota_files == 3  # other settings are kept
    store.update_user("carol", settings={DIRECTORY_PERMISSIONS: {}, "quota_files": 3})
    record = store.get_user("carol")
    assert record is not None and DIRECTORY_PERMISSIONS not in record.settings


def test_a_user_without_rules_is_unchanged(store: SqliteUserStore) -> None:
    store.add_user("dave", "pw", "/srv/dave", P.all())
    principal = store.authenticate("dave", "pw")
    assert principal is not None and principal.directory_rules == ()


@pytest.mark.parametrize(
    "bad",
    [
        {"incoming": "write"},  # relative
        {"/a/../b": "write"},
        {"/in\x00": "write"},
        {"/in": "write,teleport"},
        {"/in": 7},
        {"/pub": "ro", "/pub/": "all"},  # the same path twice once normalised
        ["/in"],
        "/in=write",
    ],
)
def test_bad_rules_are_refused_and_nothing_is_stored(store: SqliteUserStore, bad: Any) -> None:
    with pytest.raises(ValueError):
        store.add_user("carol", "pw", "/srv/carol", settings={DIRECTORY_PERMISSIONS: bad})
    assert store.get_user("carol") is None
    store.add_user("carol", "pw", "/srv/carol", settings={DIRECTORY_PERMISSIONS: {"/ok": "ro"}})
    with pytest.raises(ValueError):
        store.update_user("carol", settings={DIRECTORY_PERMISSIONS: bad})
    record = store.get_user("carol")
    assert record is not None and record.settings[DIRECTORY_PERMISSIONS] == {"/ok": "list,read"}


def test_corrupt_stored_rules_fail_the_login_closed(store: SqliteUserStore, tmp_path: Path) -> None:
    store.add_user("carol", "pw", "/srv/carol")
    conn = sqlite3.connect(tmp_path / "users.db", isolation_level=None)
    try:
        conn.execute("UPDATE users SET settings = ?", ('{"directory_permissions": {"../x": "all"}}',))
    finally:
        conn.close()
    with pytest.raises(ValueError):
        store.authenticate("carol", "pw")  # the server answers 421/"Login service unavailable"


def test_helpers_accept_the_stored_form_unchanged() -> None:
    canonical = normalise_directory_permissions({"/b": "list", "/a": "read,list"})
    assert canonical == {"/a": "list,read", "/b": "list"}
    assert list(canonical) == ["/a", "/b"]
    assert normalise_directory_permissions(canonical) == canonical
    assert directory_rules({}) == ()
    assert directory_rules({DIRECTORY_PERMISSIONS: canonical})[0] == DirectoryRule("/a", P.read_only())
