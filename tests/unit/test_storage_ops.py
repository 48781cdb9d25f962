"""server.ops: DELE and RNTO measure what they free only for a user with a quota."""

from __future__ import annotations

import pytest

from pyftps.proto import actions as a
from pyftps.server.ops import run_storage_op
from pyftps.storage.base import FileInfo
from pyftps.storage.memory import MemoryStorage


class CountingStorage(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.stats = 0

    def stat(self, path: str) -> FileInfo:
        self.stats += 1
        return super().stat(path)

    def put(self, path: str, data: bytes) -> None:
        writer = self.open_write(path)
        writer.write(data)
        writer.commit()


@pytest.mark.parametrize(
    "op", [a.DeleteFile("/old"), a.RenamePath("/new", "/old")], ids=["DELE", "RNTO onto a file"]
)
@pytest.mark.parametrize("measure", [True, False])
def test_the_freed_size_is_measured_only_when_asked(op: a.Op, measure: bool) -> None:
    storage = CountingStorage()
    storage.put("/old", b"x" * 10)
    storage.put("/new", b"y" * 3)
    result = run_storage_op(storage, op, "s1", measure_freed=measure)
    assert result == a.OpOk(10 if measure else None)  # the replaced or deleted file's 10 bytes
    assert (storage.stats > 0) is measure
    names = sorted(info.name for info in storage.list_dir("/"))
    assert names == (["old"] if isinstance(op, a.RenamePath) else ["new"])  # the operation itself ran
