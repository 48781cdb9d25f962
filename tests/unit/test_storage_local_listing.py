"""LocalStorage listing entries: what the fast per-entry path computes equals what stat() reports."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from pyftps.storage import local
from pyftps.storage.base import NotADirectory, NotFound
from pyftps.storage.local import LocalStorage


def test_listed_entries_match_stat(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "f").write_bytes(b"12345")
    os.chmod(root / "f", 0o4640)
    (root / "link").symlink_to("f")  # inside the root: listed with its target's details
    (root / f"{local.TEMP_PREFIX}{'ab' * 16}{local.TEMP_SUFFIX}").write_bytes(b"partial upload")
    (root / f"{local.TEMP_PREFIX}not-hex").write_bytes(b"an ordinary name")
    storage = LocalStorage(root)
    listed = {info.name: info for info in storage.list_dir("/")}
    assert sorted(listed) == [f"{local.TEMP_PREFIX}not-hex", "d", "f", "link"]
    for name, info in listed.items():
        assert info == storage.stat(f"/{name}")
        real = os.stat(root / name)
        assert info.mode == stat.S_IMODE(real.st_mode)
        assert info.size == (0 if info.is_dir else real.st_size)
        assert info.mtime == real.st_mtime
    assert listed["f"].mode == 0o4640
    assert listed["link"].unique == listed["f"].unique != listed["d"].unique


def test_unique_is_the_keyed_hash_of_device_and_inode(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    info = os.stat(tmp_path / "f")
    ident = info.st_ino.to_bytes(16, "little") + info.st_dev.to_bytes(16, "little")
    expected = hashlib.blake2b(ident, key=local._UNIQUE_KEY, digest_size=8).hexdigest()
    assert local._unique(info) == expected
    assert local._unique(info) == expected  # the shared keyed state is copied, never consumed


def test_rows_are_the_listed_entries_fields(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "f").write_bytes(b"123")
    (root / "in").symlink_to("d")  # inside the root: listed as the directory it points to
    (root / "out").symlink_to(tmp_path)  # escapes the root: never listed
    (root / "dangling").symlink_to("missing")
    (root / f"{local.TEMP_PREFIX}{'cd' * 16}{local.TEMP_SUFFIX}").write_bytes(b"partial upload")
    storage = LocalStorage(root)
    infos = {info.name: info for info in storage.list_dir("/")}
    rows = {row[0]: row for row in storage.list_rows("/")}
    assert sorted(rows) == sorted(infos) == ["d", "f", "in"]
    for name, info in infos.items():
        assert rows[name] == (info.name, info.is_dir, info.size, info.mtime, info.mode, info.unique)
    assert rows["in"][1] is True and rows["in"][5] == rows["d"][5]
    without = {row[0]: row for row in storage.list_rows("/", unique=False)}
    assert {name: row[:5] for name, row in without.items()} == {name: row[:5] for name, row in rows.items()}
    assert all(row[5] is None for row in without.values())


def test_rows_check_the_directory_at_the_call_and_close_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "a").write_bytes(b"")
    (root / "f").write_bytes(b"")
    storage = LocalStorage(root)
    with pytest.raises(NotFound):
        storage.list_rows("/missing")
    with pytest.raises(NotADirectory):
        storage.list_rows("/f")
    before = len(os.listdir("/proc/self/fd"))
    rows = storage.list_rows("/d")
    assert next(rows)[0] == "a"
    rows.close()  # abandoned half-way: the directory descriptor is closed at once
    assert len(os.listdir("/proc/self/fd")) == before
    assert [row[0] for row in storage.list_rows("/d")] == ["a"]
    assert len(os.listdir("/proc/self/fd")) == before


def test_rows_keep_names_that_are_not_utf8(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / os.fsdecode(b"caf\xe9")).write_bytes(b"x")  # Latin-1 on disk: surrogateescape round trip
    (root / "line\nbreak").write_bytes(b"")  # listed by the storage; the listing drops it (RFC 3659 §2.2)
    rows = {row[0] for row in LocalStorage(root).list_rows("/")}
    assert rows == {"caf\udce9", "line\nbreak"}
