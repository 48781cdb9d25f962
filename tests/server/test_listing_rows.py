"""Listing bytes are the same whether the backend hands out rows (LocalStorage.list_rows, the fast
path) or FileInfo objects (every other backend): LIST, NLST and MLSD, with and without per-directory
rules, with names a listing must drop, not UTF-8 on disk, and in many batches."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyftps.proto.actions import Transfer, TransferKind
from pyftps.proto.listing import DEFAULT_FACTS, SUPPORTED_FACTS
from pyftps.proto.permissions import AccessRules, Permission
from pyftps.server import transfers
from pyftps.storage.base import FileInfo, ReadStream, SupportsEntryRows, WriteStream
from pyftps.storage.local import LocalStorage
from pyftps.storage.memory import MemoryStorage

P = Permission


class OnlyFileInfo:
    """A LocalStorage seen through the plain Storage interface: the generic listing path."""

    def __init__(self, inner: LocalStorage) -> None:
        self._inner = inner

    def stat(self, path: str) -> FileInfo:
        return self._inner.stat(path)

    def list_dir(self, path: str) -> Iterator[FileInfo]:
        return self._inner.list_dir(path)

    def open_read(self, path: str, offset: int = 0) -> ReadStream:
        return self._inner.open_read(path, offset)

    def open_write(self, path: str, *, offset: int = 0, append: bool = False) -> WriteStream:
        return self._inner.open_write(path, offset=offset, append=append)

    def make_dir(self, path: str) -> None:
        self._inner.make_dir(path)

    def remove_dir(self, path: str) -> None:
        self._inner.remove_dir(path)

    def delete(self, path: str) -> None:
        self._inner.delete(path)

    def rename(self, source: str, target: str) -> None:
        self._inner.rename(source, target)


def listing(storage: object, transfer: Transfer) -> bytes:
    source, sink, reservation = transfers._prepare(storage, transfer, "test", None, "")  # type: ignore[arg-type]
    assert sink is None and reservation is None and not hasattr(source, "readinto")
    assert isinstance(source, Iterator)
    return b"".join(source)


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    root = tmp_path / "root"
    (root / "pub" / "sub").mkdir(parents=True)
    (root / "pub" / "drop").mkdir()
    now = time.time()
    for index in range(300):  # recent, older than half a year, and in the future
        path = root / "pub" / f"file-{index:04d}.dat"
        path.write_bytes(b"x" * index)
        mtime = now - (index % 3) * 86400 * 200 + (index % 7)
        os.utime(path, (mtime, mtime))
    (root / "pub" / "line\nbreak").write_bytes(b"")  # never listed (RFC 3659 §2.2)
    (root / "pub" / "cr\rname").write_bytes(b"")
    (root / "pub" / os.fsdecode(b"caf\xe9")).write_bytes(b"latin-1")
    (root / "pub" / "link").symlink_to("sub")
    return LocalStorage(root)


KINDS = [TransferKind.LIST, TransferKind.NLST, TransferKind.MLSD]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("facts", [DEFAULT_FACTS, frozenset(SUPPORTED_FACTS), frozenset({"type", "perm"})])
@pytest.mark.parametrize(
    "access",
    [None, AccessRules.of(P.read_only(), {"/pub/drop": P.WRITE, "/pub/file-0002.dat": P.all()})],
)
def test_fast_and_generic_paths_send_the_same_bytes(
    local: LocalStorage, kind: TransferKind, facts: frozenset[str], access: AccessRules | None
) -> None:
    assert isinstance(local, SupportsEntryRows) and not isinstance(OnlyFileInfo(local), SupportsEntryRows)
    transfer = Transfer(kind, "/pub", facts=facts, perm_for_file="r", perm_for_dir="el", access=access)
    fast = listing(local, transfer)
    assert fast == listing(OnlyFileInfo(local), transfer)
    lines = fast.split(b"\r\n")
    assert lines.pop() == b""  # every line, the last one too, ends with CRLF
    assert len(lines) == 304  # 300 files, sub, drop, link, the Latin-1 name: not the CR/LF names
    assert not any(b"break" in line or b"cr" in line.split(b" ")[-1] for line in lines)
    assert any(line.rpartition(b" ")[2] == b"caf\xe9" for line in lines)  # the on-disk bytes, unchanged
    if kind is TransferKind.MLSD and "perm" in facts:
        by_name = {line.rpartition(b" ")[2]: line for line in lines}
        # An entry with a rule of its own gets that rule's perm; the others the listed directory's.
        assert (b";perm=ec;" if access else b";perm=el;") in by_name[b"drop"]
        assert (b";perm=adfrw;" if access else b";perm=r;") in by_name[b"file-0002.dat"]
        assert b";perm=r;" in by_name[b"file-0003.dat"] and b";perm=el;" in by_name[b"sub"]
    if kind is TransferKind.MLSD:
        assert (b"unique=" in fast) == ("unique" in facts)


def test_a_big_listing_comes_in_bounded_batches(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "big").mkdir(parents=True)
    for index in range(3000):
        os.close(os.open(root / "big" / f"name-{index:05d}-{'x' * 40}", os.O_CREAT | os.O_WRONLY, 0o644))
    transfer = Transfer(TransferKind.MLSD, "/big", facts=DEFAULT_FACTS, perm_for_file="r", perm_for_dir="el")
    source, _, _ = transfers._prepare(LocalStorage(root), transfer, "test", None, "")
    assert isinstance(source, Iterator)
    batches = list(source)
    assert len(batches) > 2
    assert all(transfers.LISTING_BATCH <= len(b) < transfers.LISTING_BATCH + 1024 for b in batches[:-1])
    assert all(batch.endswith(b"\r\n") for batch in batches)
    assert b"".join(batches).count(b"\r\n") == 3000


def test_memory_storage_lists_through_the_generic_path() -> None:
    storage = MemoryStorage()
    storage.make_dir("/d")
    writer = storage.open_write("/d/f")
    writer.write(b"abc")
    writer.commit()
    storage.make_dir("/d/e")
    assert not isinstance(storage, SupportsEntryRows)
    mlsd = Transfer(TransferKind.MLSD, "/d", facts=DEFAULT_FACTS, perm_for_file="r", perm_for_dir="el")
    lines = sorted(listing(storage, mlsd).split(b"\r\n")[:-1], key=lambda line: line.rpartition(b" ")[2])
    assert lines[0].startswith(b"type=dir;modify=") and b";perm=el;unique=" in lines[0]
    assert lines[1].startswith(b"type=file;size=3;modify=") and b";perm=r;unique=" in lines[1]
    assert listing(storage, Transfer(TransferKind.NLST, "/d")).split(b"\r\n")[:-1] in (
        [b"f", b"e"],
        [b"e", b"f"],
    )
    (line,) = listing(storage, Transfer(TransferKind.LIST, "/d/f")).split(b"\r\n")[:-1]
    assert line.startswith(b"-rw-r--r-- 1 ftp ftp 3 ") and line.endswith(b" f")
