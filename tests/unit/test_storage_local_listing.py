"""LocalStorage listing entries: what the fast per-entry path computes equals what stat() reports."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from pyftps.storage import local
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
    ident = f"{info.st_dev}:{info.st_ino}".encode()
    expected = hashlib.blake2b(ident, key=local._UNIQUE_KEY, digest_size=8).hexdigest()
    assert local._unique(info) == expected
    assert local._unique(info) == expected  # the shared keyed state is copied, never consumed
