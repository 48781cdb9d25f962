"""LocalStorage only: containment against symlinks, hostile names, durability and OS error mapping."""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from pyftps.storage.base import (
    AlreadyExists,
    DirectoryNotEmpty,
    InsufficientStorage,
    InvalidName,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    StorageError,
    Unavailable,
)
from pyftps.storage.local import LocalStorage

TEMP_NAME = re.compile(r"\.pyftps-upload-[0-9a-f]{32}\.tmp")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the root holding a secret file; nothing may reach it through the root."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret").write_bytes(b"secret")
    os.chmod(directory / "secret", 0o600)
    return directory


@pytest.fixture
def storage(root: Path) -> LocalStorage:
    return LocalStorage(root, fsync=False)


def put(storage: LocalStorage, path: str, data: bytes) -> None:
    stream = storage.open_write(path)
    stream.write(data)
    stream.commit()


def read(storage: LocalStorage, path: str) -> bytes:
    stream = storage.open_read(path)
    buffer = bytearray(1 << 16)
    n = stream.readinto(buffer)
    stream.close()
    return bytes(buffer[:n])


def names(storage: LocalStorage, path: str = "/") -> list[str]:
    return sorted(info.name for info in storage.list_dir(path))


# -- construction ---------------------------------------------------------------------------------


def test_root_is_created(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "a" / "b", fsync=False)
    assert (tmp_path / "a" / "b").is_dir()
    assert storage.stat("/").is_dir


def test_root_reached_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    storage = LocalStorage(tmp_path / "link", fsync=False)
    put(storage, "/f", b"x")
    assert (tmp_path / "real" / "f").read_bytes() == b"x"
    assert names(storage) == ["f"]


# -- symlinks leaving the root ------------------------------------------------------------------------


@pytest.fixture
def escapes(root: Path, outside: Path, storage: LocalStorage) -> LocalStorage:
    """Links out of the root: absolute to a file and a directory, relative via ``..``, and dangling."""
    (root / "file_out").symlink_to(outside / "secret")
    (root / "dir_out").symlink_to(outside)
    (root / "relative_out").symlink_to("../outside/secret")
    (root / "dangling_out").symlink_to(outside / "nothing")
    return storage


ESCAPING = ["/file_out", "/dir_out", "/relative_out", "/dangling_out", "/dir_out/secret"]


@pytest.mark.parametrize("path", ESCAPING)
def test_escaping_symlink_refused_for_every_operation(
    escapes: LocalStorage, outside: Path, path: str
) -> None:
    put(escapes, "/inside", b"in")
    secret_mtime = (outside / "secret").stat().st_mtime_ns
    operations: list[Callable[[], object]] = [
        lambda: escapes.stat(path),
        lambda: escapes.list_dir(path),
        lambda: escapes.open_read(path),
        lambda: escapes.open_write(path),
        lambda: escapes.open_write(path, append=True),
        lambda: escapes.open_write(path, offset=1),
        lambda: escapes.delete(path),
        lambda: escapes.remove_dir(path),
        lambda: escapes.make_dir(path + "/sub"),
        lambda: escapes.open_write(path + "/new"),
        lambda: escapes.rename(path, "/moved"),
        lambda: escapes.rename("/inside", path),
        lambda: escapes.chmod(path, 0o777),
        lambda: escapes.set_mtime(path, 0.0),
    ]
    for operation in operations:
        with pytest.raises(PermissionDenied):
            operation()
    assert sorted(os.listdir(outside)) == ["secret"]
    assert (outside / "secret").read_bytes() == b"secret"
    assert stat.S_IMODE((outside / "secret").stat().st_mode) == 0o600
    assert (outside / "secret").stat().st_mtime_ns == secret_mtime
    assert read(escapes, "/inside") == b"in"


def test_escaping_and_dangling_symlinks_are_not_listed(escapes: LocalStorage, root: Path) -> None:
    (root / "dangling_in").symlink_to(root / "nothing")
    put(escapes, "/visible", b"")
    assert names(escapes) == ["visible"]


def test_symlink_through_parent_directory_refused(escapes: LocalStorage) -> None:
    with pytest.raises(PermissionDenied):
        escapes.rename("/dir_out/secret", "/stolen")
    with pytest.raises(PermissionDenied):
        escapes.delete("/dir_out/secret")


# -- symlinks inside the root ---------------------------------------------------------------------------


def test_symlink_inside_root_works(storage: LocalStorage, root: Path) -> None:
    storage.make_dir("/d")
    put(storage, "/d/target", b"target")
    (root / "file_link").symlink_to(root / "d" / "target")
    (root / "dir_link").symlink_to("d")  # relative
    assert read(storage, "/file_link") == b"target"
    assert storage.stat("/file_link").size == 6
    assert names(storage, "/dir_link") == ["target"]
    listed = {info.name: info for info in storage.list_dir("/")}
    assert listed["dir_link"].is_dir and not listed["file_link"].is_dir
    put(storage, "/file_link", b"rewritten")  # writes through the link, which stays a link
    assert (root / "file_link").is_symlink()
    assert (root / "d" / "target").read_bytes() == b"rewritten"
    put(storage, "/dir_link/new", b"n")
    assert (root / "d" / "new").read_bytes() == b"n"


def test_deleting_an_inner_symlink_removes_the_link_only(storage: LocalStorage, root: Path) -> None:
    put(storage, "/target", b"t")
    (root / "link").symlink_to(root / "target")
    storage.delete("/link")
    assert not (root / "link").exists()
    assert (root / "target").read_bytes() == b"t"


def test_rename_into_own_subtree_through_a_symlink(storage: LocalStorage, root: Path) -> None:
    storage.make_dir("/d")
    storage.make_dir("/d/sub")
    (root / "alias").symlink_to(root / "d" / "sub")
    with pytest.raises(PermissionDenied):
        storage.rename("/d", "/alias/d")


# -- hostile names and special files ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nul\x00", "/" + "x" * 256, "/a/../../etc/passwd", "/.."])
def test_invalid_names(storage: LocalStorage, path: str) -> None:
    with pytest.raises(InvalidName):
        storage.open_write(path)
    with pytest.raises(InvalidName):
        storage.stat(path)


def test_backslash_name_is_one_file_on_disk(storage: LocalStorage, root: Path) -> None:
    put(storage, "/a\\..\\b", b"x")
    assert os.listdir(root) == ["a\\..\\b"]


def test_fifo_is_refused_without_blocking(storage: LocalStorage, root: Path) -> None:
    os.mkfifo(root / "pipe")
    with pytest.raises(PermissionDenied):
        storage.open_read("/pipe")
    with pytest.raises(PermissionDenied):
        storage.open_write("/pipe", offset=0, append=True)


# -- temporary upload files ------------------------------------------------------------------------------


def test_upload_goes_through_a_hidden_temp_file(storage: LocalStorage, root: Path) -> None:
    storage.make_dir("/d")
    stream = storage.open_write("/d/f")
    stream.write(b"partial")
    on_disk = os.listdir(root / "d")
    assert len(on_disk) == 1 and TEMP_NAME.fullmatch(on_disk[0])
    assert names(storage, "/d") == []
    with pytest.raises(InvalidName):  # the temp name cannot be addressed by a client either
        storage.open_read(f"/d/{on_disk[0]}")
    stream.commit()
    assert os.listdir(root / "d") == ["f"]


def test_new_file_mode_respects_umask(storage: LocalStorage, root: Path) -> None:
    umask = os.umask(0o027)
    try:
        put(storage, "/f", b"")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((root / "f").stat().st_mode) == 0o640


def test_abandoned_upload_is_cleaned_up(storage: LocalStorage, root: Path) -> None:
    stream = storage.open_write("/f")
    stream.write(b"x")
    del stream  # a worker that died without commit or abort
    assert os.listdir(root) == []


# -- durability ---------------------------------------------------------------------------------------------


@pytest.fixture
def fsync_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    return calls


def test_fresh_upload_syncs_file_and_directory(root: Path, fsync_calls: list[int]) -> None:
    storage = LocalStorage(root, fsync=True)
    stream = storage.open_write("/f")
    stream.write(b"durable")
    assert fsync_calls == []
    stream.commit()
    assert len(fsync_calls) == 2


def test_continued_upload_syncs_the_file(root: Path, fsync_calls: list[int]) -> None:
    storage = LocalStorage(root, fsync=True)
    put(storage, "/f", b"abc")
    fsync_calls.clear()
    stream = storage.open_write("/f", offset=3)
    stream.write(b"def")
    stream.commit()
    assert len(fsync_calls) == 1
    fsync_calls.clear()
    stream = storage.open_write("/new", append=True)  # creates the file: its directory is synced too
    stream.commit()
    assert len(fsync_calls) == 2


def test_fsync_disabled(storage: LocalStorage, fsync_calls: list[int]) -> None:
    put(storage, "/f", b"fast")
    stream = storage.open_write("/f", append=True)
    stream.commit()
    assert fsync_calls == []


def test_aborted_upload_is_not_synced(root: Path, fsync_calls: list[int]) -> None:
    stream = LocalStorage(root, fsync=True).open_write("/f")
    stream.write(b"x")
    stream.abort()
    assert fsync_calls == []


# -- OS error mapping ---------------------------------------------------------------------------------------


def failing(code: int) -> Callable[..., Any]:
    def fail(*args: object, **kwargs: object) -> Any:
        raise OSError(code, os.strerror(code), "/real/secret/path")

    return fail


def test_write_failure_maps_and_abort_leaves_no_temp_file(
    storage: LocalStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = storage.open_write("/f")
    monkeypatch.setattr(os, "write", failing(errno.ENOSPC))
    with pytest.raises(InsufficientStorage) as caught:
        stream.write(b"data")
    assert "/real/secret" not in str(caught.value)
    monkeypatch.undo()
    stream.abort()
    assert os.listdir(root) == []


def test_commit_failure_maps_and_leaves_no_temp_file(
    storage: LocalStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = storage.open_write("/f")
    stream.write(b"data")
    monkeypatch.setattr(os, "replace", failing(errno.EDQUOT))
    with pytest.raises(QuotaExceeded):
        stream.commit()
    monkeypatch.undo()
    assert os.listdir(root) == []
    stream.abort()  # harmless after a failed commit
    with pytest.raises(ValueError):
        stream.commit()  # a failed commit never turns into a success later


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.ENOENT, NotFound),
        (errno.EACCES, PermissionDenied),
        (errno.EPERM, PermissionDenied),
        (errno.EEXIST, AlreadyExists),
        (errno.ENOTDIR, NotADirectory),
        (errno.EISDIR, IsADirectory),
        (errno.ENOTEMPTY, DirectoryNotEmpty),
        (errno.ENAMETOOLONG, InvalidName),
        (errno.ENOSPC, InsufficientStorage),
        (errno.EDQUOT, QuotaExceeded),
        (errno.EIO, Unavailable),
        (errno.ESTALE, Unavailable),
    ],
)
def test_errno_mapping(
    storage: LocalStorage,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    expected: type[StorageError],
) -> None:
    monkeypatch.setattr(os, "mkdir", failing(code))
    with pytest.raises(expected) as caught:
        storage.make_dir("/new dir")
    text = str(caught.value)
    assert text.startswith("/new dir: ")
    assert "/real/secret" not in text and storage.root not in text


def test_read_error_maps(storage: LocalStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    put(storage, "/f", b"abc")
    monkeypatch.setattr(os, "open", failing(errno.EACCES))
    with pytest.raises(PermissionDenied):
        storage.open_read("/f")


# -- listing -------------------------------------------------------------------------------------------------


def test_listing_closes_the_directory_when_abandoned(
    storage: LocalStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        put(storage, f"/f{i}", b"")
    opened: list[Any] = []
    real_scandir = os.scandir

    class Tracking:
        def __init__(self, path: str) -> None:
            self.inner = real_scandir(path)
            self.closed = False
            opened.append(self)

        def __enter__(self) -> Tracking:
            return self

        def __exit__(self, *exc: object) -> None:
            self.closed = True
            self.inner.close()

        def __iter__(self) -> Tracking:
            return self

        def __next__(self) -> os.DirEntry[str]:
            return next(self.inner)

    monkeypatch.setattr(os, "scandir", Tracking)
    listing = storage.list_dir("/")
    assert isinstance(listing, Generator)
    next(listing)
    listing.close()
    assert len(opened) == 1 and opened[0].closed


def test_unique_does_not_leak_the_inode(storage: LocalStorage, root: Path) -> None:
    put(storage, "/f", b"")
    unique = storage.stat("/f").unique
    inode = (root / "f").stat().st_ino
    assert unique is not None
    assert str(inode) not in unique and format(inode, "x") not in unique


def test_listing_reports_permission_bits(storage: LocalStorage, root: Path) -> None:
    put(storage, "/f", b"12")
    os.chmod(root / "f", 0o640)
    (info,) = storage.list_dir("/")
    assert info.mode == 0o640 and info.size == 2
    assert info.mtime == (root / "f").stat().st_mtime


def test_chmod_on_directory(storage: LocalStorage, root: Path) -> None:
    storage.make_dir("/d")
    storage.chmod("/d", 0o2750)
    assert stat.S_IMODE((root / "d").stat().st_mode) == 0o750


def test_set_mtime_keeps_atime(storage: LocalStorage, root: Path) -> None:
    put(storage, "/f", b"")
    os.utime(root / "f", (1_111_111_111, 1_222_222_222))
    storage.set_mtime("/f", 1_333_333_333.0)
    result = (root / "f").stat()
    assert result.st_atime == 1_111_111_111 and result.st_mtime == 1_333_333_333
