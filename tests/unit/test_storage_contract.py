"""The storage contract: every backend must pass these same tests, so the server can rely on one behaviour."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from pyftps.storage.base import (
    AlreadyExists,
    DirectoryNotEmpty,
    FileInfo,
    InvalidName,
    InvalidOffset,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    Storage,
    SupportsChmod,
    SupportsSetMtime,
)
from pyftps.storage.local import LocalStorage
from pyftps.storage.memory import MemoryStorage


class Backend(Storage, SupportsSetMtime, SupportsChmod, Protocol):
    """What the tests need from a backend: the core interface plus both optional features."""


@pytest.fixture(params=["local", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    backend: Backend = (
        LocalStorage(tmp_path / "root", fsync=False) if request.param == "local" else MemoryStorage()
    )
    return backend


def put(storage: Storage, path: str, data: bytes) -> None:
    stream = storage.open_write(path)
    assert stream.write(data) == len(data)
    stream.commit()


def get(storage: Storage, path: str, offset: int = 0, chunk: int = 7) -> bytes:
    stream = storage.open_read(path, offset)
    out = bytearray()
    buffer = bytearray(chunk)
    try:
        while n := stream.readinto(buffer):
            out += buffer[:n]
    finally:
        stream.close()
    return bytes(out)


def names(storage: Storage, path: str = "/") -> list[str]:
    return sorted(info.name for info in storage.list_dir(path))


# -- protocols and stat -------------------------------------------------------------------------


def test_stat_root_and_optional_protocols(storage: Backend) -> None:
    assert isinstance(storage, SupportsSetMtime) and isinstance(storage, SupportsChmod)
    info = storage.stat("/")
    assert info.name == "/"
    assert info.is_dir
    assert info.size == 0


def test_stat_file(storage: Backend) -> None:
    before = time.time()
    put(storage, "/a.txt", b"hello")
    info = storage.stat("/a.txt")
    assert info.name == "a.txt"
    assert not info.is_dir
    assert info.size == 5
    assert before - 2 <= info.mtime <= time.time() + 2
    assert info.mode is not None and info.mode & 0o600 == 0o600
    assert info.unique is not None and re.fullmatch(r"[0-9a-f]{16}", info.unique)
    storage.make_dir("/d")
    put(storage, "/d/f", b"x" * 100)
    info = storage.stat("/d")
    assert info.is_dir and info.size == 0 and info.name == "d"


def test_stat_errors(storage: Backend) -> None:
    with pytest.raises(NotFound):
        storage.stat("/missing")
    with pytest.raises(NotFound):
        storage.stat("/missing/below")
    put(storage, "/f", b"x")
    with pytest.raises(NotADirectory):
        storage.stat("/f/x")


def test_unique_is_stable_distinct_and_survives_rename(storage: Backend) -> None:
    put(storage, "/a", b"1")
    put(storage, "/b", b"2")
    first = storage.stat("/a").unique
    assert first == storage.stat("/a").unique
    assert first != storage.stat("/b").unique
    assert {i.name: i.unique for i in storage.list_dir("/")}["a"] == first
    storage.rename("/a", "/c")
    assert storage.stat("/c").unique == first


# -- listing ------------------------------------------------------------------------------------


def test_list_nested_dirs(storage: Backend) -> None:
    assert list(storage.list_dir("/")) == []
    storage.make_dir("/a")
    storage.make_dir("/a/b")
    storage.make_dir("/a/b/c")
    put(storage, "/a/b/file", b"12345")
    put(storage, "/top", b"")
    assert names(storage) == ["a", "top"]
    assert names(storage, "/a") == ["b"]
    entries = {info.name: info for info in storage.list_dir("/a/b")}
    assert set(entries) == {"c", "file"}
    assert entries["c"].is_dir and entries["c"].size == 0
    assert not entries["file"].is_dir and entries["file"].size == 5
    assert names(storage, "/a/b/c") == []


def test_list_returns_a_lazy_iterator(storage: Backend) -> None:
    for i in range(5):
        put(storage, f"/f{i}", b"")
    listing = storage.list_dir("/")
    assert isinstance(listing, Iterator)
    assert isinstance(next(listing), FileInfo)
    # Abandoning the iteration early must be harmless.
    del listing
    assert len(names(storage)) == 5


def test_list_errors_surface_at_the_call(storage: Backend) -> None:
    put(storage, "/f", b"")
    with pytest.raises(NotFound):
        storage.list_dir("/missing")
    with pytest.raises(NotADirectory):
        storage.list_dir("/f")


# -- reading ------------------------------------------------------------------------------------


def test_read_whole_file_and_from_offset(storage: Backend) -> None:
    data = bytes(range(256)) * 40
    put(storage, "/blob", data)
    assert get(storage, "/blob", chunk=1000) == data
    put(storage, "/f", b"0123456789")
    assert get(storage, "/f", 4) == b"456789"
    assert get(storage, "/f", 10) == b""


def test_read_into_memoryview(storage: Backend) -> None:
    put(storage, "/f", b"abcdef")
    stream = storage.open_read("/f")
    buffer = bytearray(10)
    assert stream.readinto(memoryview(buffer)[2:5]) == 3
    stream.close()
    assert buffer[2:5] == b"abc"
    with pytest.raises(ValueError):
        stream.readinto(bytearray(3))  # after close


def test_read_offset_beyond_end(storage: Backend) -> None:
    put(storage, "/f", b"0123")
    with pytest.raises(InvalidOffset):
        storage.open_read("/f", 5)
    with pytest.raises(InvalidOffset):
        storage.open_read("/f", -1)


def test_read_errors(storage: Backend) -> None:
    storage.make_dir("/d")
    with pytest.raises(IsADirectory):
        storage.open_read("/d")
    with pytest.raises(IsADirectory):
        storage.open_read("/")
    with pytest.raises(NotFound):
        storage.open_read("/missing")


# -- fresh uploads ------------------------------------------------------------------------------


def test_fresh_upload_invisible_until_commit(storage: Backend) -> None:
    stream = storage.open_write("/new")
    stream.write(b"data")
    with pytest.raises(NotFound):
        storage.stat("/new")
    assert names(storage) == []
    stream.commit()
    assert get(storage, "/new") == b"data"
    assert names(storage) == ["new"]


def test_overwrite_keeps_old_content_until_commit(storage: Backend) -> None:
    put(storage, "/f", b"old content")
    stream = storage.open_write("/f")
    stream.write(b"new")
    assert get(storage, "/f") == b"old content"
    stream.commit()
    assert get(storage, "/f") == b"new"


def test_abort_leaves_nothing(storage: Backend) -> None:
    storage.make_dir("/d")
    stream = storage.open_write("/d/partial")
    stream.write(b"x" * 1000)
    stream.abort()
    assert names(storage, "/d") == []
    with pytest.raises(NotFound):
        storage.stat("/d/partial")
    storage.remove_dir("/d")  # nothing hidden left behind either


def test_abort_of_overwrite_keeps_the_old_file(storage: Backend) -> None:
    put(storage, "/f", b"old")
    stream = storage.open_write("/f")
    stream.write(b"new new new")
    stream.abort()
    assert get(storage, "/f") == b"old"


def test_write_accepts_every_buffer_type(storage: Backend) -> None:
    stream = storage.open_write("/f")
    assert stream.write(b"ab") == 2
    assert stream.write(bytearray(b"cd")) == 2
    assert stream.write(memoryview(b"xefx")[1:3]) == 2
    assert stream.write(b"") == 0
    stream.commit()
    assert get(storage, "/f") == b"abcdef"
    storage.open_write("/empty").commit()
    assert storage.stat("/empty").size == 0


def test_commit_and_abort_are_idempotent(storage: Backend) -> None:
    stream = storage.open_write("/f")
    stream.write(b"kept")
    stream.commit()
    stream.commit()
    stream.abort()
    assert get(storage, "/f") == b"kept"
    aborted = storage.open_write("/g")
    aborted.abort()
    aborted.abort()
    with pytest.raises(ValueError):
        aborted.commit()
    assert names(storage) == ["f"]


def test_write_after_finish_raises(storage: Backend) -> None:
    committed = storage.open_write("/a")
    committed.commit()
    with pytest.raises(ValueError):
        committed.write(b"late")
    aborted = storage.open_write("/b")
    aborted.abort()
    with pytest.raises(ValueError):
        aborted.write(b"late")


def test_upload_onto_directory(storage: Backend) -> None:
    storage.make_dir("/d")
    with pytest.raises(IsADirectory):
        storage.open_write("/d")
    with pytest.raises(IsADirectory):
        storage.open_write("/")
    assert names(storage, "/d") == []


def test_upload_parent_missing_or_file(storage: Backend) -> None:
    put(storage, "/f", b"")
    with pytest.raises(NotFound):
        storage.open_write("/missing/f")
    with pytest.raises(NotADirectory):
        storage.open_write("/f/g")


# -- continued uploads (REST + STOR) and appends ------------------------------------------------


def test_rest_continue_truncates_at_offset(storage: Backend) -> None:
    put(storage, "/f", b"hello world")
    stream = storage.open_write("/f", offset=5)
    assert stream.write(b"XYZ") == 3
    stream.commit()
    assert get(storage, "/f") == b"helloXYZ"
    stream = storage.open_write("/f", offset=8)  # exactly at the end
    stream.write(b" world")
    stream.commit()
    assert get(storage, "/f") == b"helloXYZ world"


def test_rest_abort_keeps_written_bytes(storage: Backend) -> None:
    put(storage, "/f", b"0123456789")
    stream = storage.open_write("/f", offset=2)
    stream.write(b"ab")
    stream.abort()
    assert get(storage, "/f") == b"01ab"


def test_rest_errors(storage: Backend) -> None:
    put(storage, "/f", b"0123")
    storage.make_dir("/d")
    with pytest.raises(InvalidOffset):
        storage.open_write("/f", offset=5)
    with pytest.raises(InvalidOffset):
        storage.open_write("/f", offset=-1)
    with pytest.raises(NotFound):
        storage.open_write("/missing", offset=1)
    with pytest.raises(IsADirectory):
        storage.open_write("/d", offset=1)
    assert get(storage, "/f") == b"0123"  # a refused REST leaves the file alone


def test_append_to_existing(storage: Backend) -> None:
    put(storage, "/log", b"one\n")
    stream = storage.open_write("/log", append=True)
    stream.write(b"two\n")
    stream.write(b"three\n")
    stream.commit()
    assert get(storage, "/log") == b"one\ntwo\nthree\n"


def test_append_creates_missing_file_and_abort_keeps_bytes(storage: Backend) -> None:
    stream = storage.open_write("/log", append=True)
    stream.write(b"first")
    stream.commit()
    assert get(storage, "/log") == b"first"
    stream = storage.open_write("/log", append=True)
    stream.write(b"+second")
    stream.abort()
    assert get(storage, "/log") == b"first+second"


def test_append_errors(storage: Backend) -> None:
    put(storage, "/f", b"abc")
    storage.make_dir("/d")
    with pytest.raises(IsADirectory):
        storage.open_write("/d", append=True)
    with pytest.raises(NotFound):
        storage.open_write("/missing/f", append=True)
    with pytest.raises(InvalidOffset):
        storage.open_write("/f", offset=1, append=True)


# -- directories, deletion, renames ---------------------------------------------------------------


def test_make_dir(storage: Backend) -> None:
    storage.make_dir("/d")
    assert storage.stat("/d").is_dir
    put(storage, "/f", b"")
    with pytest.raises(AlreadyExists):
        storage.make_dir("/d")
    with pytest.raises(AlreadyExists):
        storage.make_dir("/f")
    with pytest.raises(NotFound):
        storage.make_dir("/missing/d")
    with pytest.raises(NotADirectory):
        storage.make_dir("/f/d")
    with pytest.raises(PermissionDenied):
        storage.make_dir("/")


def test_remove_dir(storage: Backend) -> None:
    storage.make_dir("/empty")
    storage.remove_dir("/empty")
    storage.make_dir("/d")
    put(storage, "/d/f", b"")
    with pytest.raises(DirectoryNotEmpty):
        storage.remove_dir("/d")
    with pytest.raises(NotADirectory):
        storage.remove_dir("/d/f")
    with pytest.raises(NotFound):
        storage.remove_dir("/missing")
    with pytest.raises(PermissionDenied):
        storage.remove_dir("/")
    assert names(storage, "/d") == ["f"]


def test_delete(storage: Backend) -> None:
    put(storage, "/f", b"x")
    storage.delete("/f")
    storage.make_dir("/d")
    with pytest.raises(IsADirectory):
        storage.delete("/d")
    with pytest.raises(NotFound):
        storage.delete("/missing")
    with pytest.raises(PermissionDenied):
        storage.delete("/")
    assert names(storage) == ["d"]


def test_rename_file(storage: Backend) -> None:
    put(storage, "/a", b"content")
    storage.make_dir("/d")
    storage.rename("/a", "/d/b")
    assert names(storage) == ["d"]
    assert get(storage, "/d/b") == b"content"
    storage.rename("/d/b", "/d/b")  # onto itself: a no-op
    assert get(storage, "/d/b") == b"content"


def test_rename_over_existing_file(storage: Backend) -> None:
    put(storage, "/a", b"new")
    put(storage, "/b", b"old")
    storage.rename("/a", "/b")
    assert names(storage) == ["b"]
    assert get(storage, "/b") == b"new"


def test_rename_directory_with_contents(storage: Backend) -> None:
    storage.make_dir("/d")
    storage.make_dir("/d/sub")
    put(storage, "/d/sub/f", b"deep")
    storage.rename("/d", "/e")
    assert names(storage) == ["e"]
    assert get(storage, "/e/sub/f") == b"deep"


def test_rename_into_own_subtree(storage: Backend) -> None:
    storage.make_dir("/d")
    storage.make_dir("/d/sub")
    with pytest.raises(PermissionDenied):
        storage.rename("/d", "/d/sub/d")
    with pytest.raises(PermissionDenied):
        storage.rename("/d", "/d/x")
    assert names(storage, "/d") == ["sub"]


def test_rename_root_refused(storage: Backend) -> None:
    put(storage, "/f", b"")
    with pytest.raises(PermissionDenied):
        storage.rename("/", "/x")
    with pytest.raises(PermissionDenied):
        storage.rename("/f", "/")


def test_rename_errors(storage: Backend) -> None:
    put(storage, "/f", b"")
    put(storage, "/g", b"")
    storage.make_dir("/d")
    storage.make_dir("/e")
    with pytest.raises(NotFound):
        storage.rename("/missing", "/x")
    with pytest.raises(NotFound):
        storage.rename("/f", "/missing/x")
    with pytest.raises(IsADirectory):
        storage.rename("/f", "/d")
    with pytest.raises(AlreadyExists):
        storage.rename("/d", "/e")
    with pytest.raises(NotADirectory):
        storage.rename("/d", "/g")
    with pytest.raises(NotADirectory):
        storage.rename("/f", "/g/x")
    assert names(storage) == ["d", "e", "f", "g"]


# -- optional features ------------------------------------------------------------------------------


def test_set_mtime(storage: Backend) -> None:
    put(storage, "/f", b"")
    storage.make_dir("/d")
    storage.set_mtime("/f", 1_000_000_000.5)
    storage.set_mtime("/d", 1_234_567_890.0)
    assert storage.stat("/f").mtime == pytest.approx(1_000_000_000.5, abs=1e-3)
    assert storage.stat("/d").mtime == pytest.approx(1_234_567_890.0, abs=1e-3)
    with pytest.raises(NotFound):
        storage.set_mtime("/missing", 0.0)


def test_chmod_keeps_only_permission_bits(storage: Backend) -> None:
    put(storage, "/f", b"")
    storage.chmod("/f", 0o600)
    assert storage.stat("/f").mode == 0o600
    storage.chmod("/f", 0o4755)  # setuid must never be granted to a client
    assert storage.stat("/f").mode == 0o755
    with pytest.raises(NotFound):
        storage.chmod("/missing", 0o644)


# -- names ------------------------------------------------------------------------------------------

UNUSUAL_NAMES = [
    "with space.txt",
    "  leading and trailing  ",
    "émoji 🎉 ünïcödé.bin",
    "日本語のファイル",
    "back\\slash",
    "dir\\like\\name",
    'quote\'s "double"',
    "-dash",
    "#hash%percent",
]


@pytest.mark.parametrize("name", UNUSUAL_NAMES)
def test_unusual_names_round_trip(storage: Backend, name: str) -> None:
    put(storage, f"/{name}", name.encode())
    assert names(storage) == [name]
    assert storage.stat(f"/{name}").name == name
    assert get(storage, f"/{name}") == name.encode()
    storage.make_dir(f"/{name}.d")
    put(storage, f"/{name}.d/{name}", b"inner")
    assert names(storage, f"/{name}.d") == [name]
    storage.rename(f"/{name}", f"/{name}.renamed")
    storage.delete(f"/{name}.renamed")


def test_backslash_is_not_a_separator(storage: Backend) -> None:
    storage.make_dir("/a")
    put(storage, "/a\\b", b"x")
    assert names(storage) == ["a", "a\\b"]
    assert names(storage, "/a") == []


def test_longest_allowed_name(storage: Backend) -> None:
    name = "n" * 255
    put(storage, f"/{name}", b"ok")
    assert names(storage) == [name]


@pytest.mark.parametrize(
    "path",
    [
        "/nul\x00byte",
        "/a/../b",
        "/..",
        "/" + "n" * 256,
        "/" + "é" * 128,  # 256 bytes in UTF-8
        "/" + "/".join(["d" * 200] * 21),  # > 4096 bytes
        "relative",
        "",
        "/\udcff\ud800",  # not encodable
    ],
)
def test_invalid_names(storage: Backend, path: str) -> None:
    for operation in (
        lambda: storage.stat(path),
        lambda: storage.list_dir(path),
        lambda: storage.open_read(path),
        lambda: storage.open_write(path),
        lambda: storage.make_dir(path),
        lambda: storage.remove_dir(path),
        lambda: storage.delete(path),
        lambda: storage.rename(path, "/x"),
        lambda: storage.rename("/", path),
        lambda: storage.set_mtime(path, 0.0),
        lambda: storage.chmod(path, 0o644),
    ):
        with pytest.raises(InvalidName):
            operation()


def test_error_text_names_only_the_virtual_path(storage: Backend, tmp_path: Path) -> None:
    with pytest.raises(NotFound) as caught:
        storage.stat("/missing\r\nfile")
    text = str(caught.value)
    assert "/missing" in text
    assert str(tmp_path) not in text
    assert "\r" not in text and "\n" not in text


# -- concurrency ------------------------------------------------------------------------------------


def test_concurrent_uploads_and_listings(storage: Backend) -> None:
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for round_ in range(10):
                put(storage, f"/t{index}-{round_}", bytes([index]) * 100)
                list(storage.list_dir("/"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(names(storage)) == 40
    assert get(storage, "/t3-9") == b"\x03" * 100
