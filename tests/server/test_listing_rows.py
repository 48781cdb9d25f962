"""Listing bytes are the same whether the backend hands out rows (LocalStorage.list_rows, the fast
path) or FileInfo objects (every other backend): LIST, NLST and MLSD, with and without per-directory
rules, with names a listing must drop, not UTF-8 on disk, and in many batches."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyftps.proto.actions import Transfer, TransferKind
from pyftps.proto.errors import LocalProtocolError
from pyftps.proto.listing import DEFAULT_FACTS, SUPPORTED_FACTS, StatRow, listable
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
    assert len(batches) == -(-3000 // transfers.LISTING_ROWS) > 2
    assert all(b.count(b"\r\n") == transfers.LISTING_ROWS for b in batches[:-1])
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


# --- batches formatted whole and checked whole (transfers._listing) -------------------------------

NOW = 1710504000.0

names = st.one_of(
    st.text(st.sampled_from("ab\r\n\0é"), max_size=4),  # often unlistable: CR, LF, NUL, empty
    st.text(max_size=6),
)
rows = st.tuples(
    names,
    st.booleans(),
    st.integers(min_value=-3, max_value=2**40),
    st.floats(min_value=0, max_value=2e9) | st.just(NOW - 60) | st.just(math.nan),
    st.none() | st.integers(min_value=0, max_value=0o7777),
    st.none() | st.text(max_size=5),
)


def _one_line_at_a_time(transfer: Transfer, entries: list[StatRow]) -> bytes:
    """The listing as made before batches were checked whole: each name checked, then formatted."""
    line_of = transfers._line_formatter(transfer)
    return "".join(line_of(row) + "\r\n" for row in entries if listable(row[0])).encode(
        "utf-8", "surrogateescape"
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(rows, max_size=12), st.sampled_from(KINDS), st.integers(min_value=1, max_value=5))
def test_batches_equal_one_line_at_a_time(entries: list[StatRow], kind: TransferKind, batch: int) -> None:
    transfer = Transfer(kind, "/", facts=frozenset(SUPPORTED_FACTS), perm_for_file="r", perm_for_dir="el")
    clock = mock.Mock(time=lambda: NOW)  # both listings see the same "now" (recent times or years)
    with mock.patch.object(transfers, "time", clock):
        try:
            expected: bytes | None = _one_line_at_a_time(transfer, entries)
        except LocalProtocolError:  # a listable entry with a NaN time: refused either way
            expected = None
    with mock.patch.object(transfers, "LISTING_ROWS", batch), mock.patch.object(transfers, "time", clock):
        if expected is None:
            with pytest.raises(LocalProtocolError):
                b"".join(transfers._listing(transfer, iter(entries)))
            return
        batches = list(transfers._listing(transfer, iter(entries)))
    assert b"".join(batches) == expected
    assert all(chunk.endswith(b"\r\n") and chunk.count(b"\r\n") <= batch for chunk in batches)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", ["/pub/file-0005.dat", "/pub/missing", "/pub/file-0005.dat/x", "/pub/link"])
def test_a_file_or_a_bad_path_is_answered_alike_on_both_paths(
    local: LocalStorage, kind: TransferKind, path: str
) -> None:
    """A row backend is asked for the directory first; a file, a missing name or a file midway in
    the path must still get what the stat-first generic path gives (MLSD of a file: 501)."""
    transfer = Transfer(kind, path, facts=DEFAULT_FACTS, perm_for_file="r", perm_for_dir="el")
    outcomes: list[bytes | tuple[int, str]] = []
    for storage in (local, OnlyFileInfo(local)):
        try:
            outcomes.append(listing(storage, transfer))
        except transfers._Refused as refused:
            outcomes.append((refused.code, refused.text))
    assert outcomes[0] == outcomes[1]
    if path.endswith(".dat") and kind is TransferKind.MLSD:
        assert outcomes[0] == (501, "MLSD needs a directory; use MLST for a file.")
    elif path.endswith(".dat"):
        assert isinstance(outcomes[0], bytes) and outcomes[0].count(b"\r\n") == 1
