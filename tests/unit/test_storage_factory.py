"""StorageFactory: local homes are built once and checked at each login (deleted, replaced, re-pointed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pyftps.storage.base import PermissionDenied
from pyftps.storage.factory import StorageFactory
from pyftps.storage.local import LocalStorage


def _local(factory: StorageFactory, home: Path) -> LocalStorage:
    storage = factory.for_home(str(home))
    assert isinstance(storage, LocalStorage)
    return storage


def test_logins_to_one_home_share_its_storage(tmp_path: Path) -> None:
    factory = StorageFactory(fsync=False)
    first = _local(factory, tmp_path / "alice")
    assert _local(factory, tmp_path / "alice") is first
    assert _local(factory, tmp_path / "bob") is not first
    assert first.root == os.path.realpath(tmp_path / "alice")


def test_a_deleted_home_is_created_again(tmp_path: Path) -> None:
    factory = StorageFactory(fsync=False)
    home = tmp_path / "alice"
    _local(factory, home)
    shutil.rmtree(home)
    storage = _local(factory, home)
    assert home.is_dir()
    assert storage.stat("/").is_dir


def test_a_replaced_home_serves_the_new_directory(tmp_path: Path) -> None:
    # The new directory may even get the old inode number back: storage works by path, so either way
    # the login sees what is there now.
    factory = StorageFactory(fsync=False)
    home = tmp_path / "alice"
    _local(factory, home)
    shutil.rmtree(home)
    home.mkdir()
    (home / "new.txt").write_bytes(b"x")
    assert [info.name for info in _local(factory, home).list_dir("/")] == ["new.txt"]


def test_a_repointed_symlink_home_follows_its_new_target(tmp_path: Path) -> None:
    factory = StorageFactory(fsync=False)
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (new / "inside.txt").write_bytes(b"x")
    home = tmp_path / "home"
    home.symlink_to(old)
    assert _local(factory, home).root == str(old.resolve())
    home.unlink()
    home.symlink_to(new)
    storage = _local(factory, home)
    assert storage.root == str(new.resolve())
    assert storage.stat("/inside.txt").size == 1


def test_a_shared_storage_still_refuses_escapes(tmp_path: Path) -> None:
    factory = StorageFactory(fsync=False)
    home = tmp_path / "alice"
    _local(factory, home)
    (home / "out").symlink_to(tmp_path)
    with pytest.raises(PermissionDenied):
        _local(factory, home).stat("/out")
