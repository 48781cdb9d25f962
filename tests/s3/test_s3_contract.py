"""The shared storage contract (tests/unit/test_storage_contract.py) run against S3Storage on SeaweedFS.

Every contract test is imported as is, with this directory's ``storage`` fixture (an S3Storage on a
fresh prefix). A few are replaced by S3 variants, each saying why: SeaweedFS stores ``\\`` in a key
as ``/`` (so the backend is configured to refuse such names); it keeps no metadata on directory
markers (so MFMT on a directory is refused instead of being silently lost); and S3Storage does not
offer SITE CHMOD (modes are only read, from s3fs-style metadata).
"""

from __future__ import annotations

import pytest

pytest.importorskip("boto3", reason="the s3 extra (boto3) is not installed")

from pyftps.storage.base import InvalidName, PermissionDenied, SupportsChmod, SupportsSetMtime
from pyftps.storage.s3 import S3Storage
from tests.unit import test_storage_contract as contract

_REPLACED = {
    "test_unusual_names_round_trip",
    "test_backslash_is_not_a_separator",
    "test_set_mtime",
    "test_stat_root_and_optional_protocols",
    "test_chmod_keeps_only_permission_bits",
    "test_invalid_names",
}
globals().update(
    {
        name: getattr(contract, name)
        for name in dir(contract)
        if name.startswith("test_") and name not in _REPLACED
    }
)
put, get, names = contract.put, contract.get, contract.names


@pytest.mark.parametrize("name", [name for name in contract.UNUSUAL_NAMES if "\\" not in name])
def test_unusual_names_round_trip(storage: S3Storage, name: str) -> None:
    contract.test_unusual_names_round_trip(storage, name)  # type: ignore[arg-type]


def test_backslash_names_refused_when_the_store_mangles_them(storage: S3Storage) -> None:
    for path in ("/back\\slash", "/dir\\like\\name", "/d/a\\b"):
        with pytest.raises(InvalidName, match="not allowed"):
            storage.open_write(path)
        with pytest.raises(InvalidName):
            storage.make_dir(path)
    assert names(storage) == []


def test_set_mtime(storage: S3Storage) -> None:
    put(storage, "/f", b"content")
    storage.set_mtime("/f", 1_000_000_000.5)
    assert storage.stat("/f").mtime == pytest.approx(1_000_000_000.5, abs=1e-3)
    assert {i.name: i.mtime for i in storage.list_dir("/")}["f"] == pytest.approx(1_000_000_000.5, abs=1e-3)
    assert get(storage, "/f") == b"content"  # the metadata copy kept the data
    storage.make_dir("/d")
    # SeaweedFS drops user metadata on directory markers: refused, not silently lost.
    with pytest.raises(PermissionDenied, match="no attributes on directories"):
        storage.set_mtime("/d", 1_234_567_890.0)
    assert storage.stat("/d").is_dir
    with pytest.raises(contract.NotFound):
        storage.set_mtime("/missing", 0.0)


def test_stat_root_and_optional_protocols(storage: S3Storage) -> None:
    assert isinstance(storage, SupportsSetMtime)
    assert not isinstance(storage, SupportsChmod)  # the server answers SITE CHMOD as unsupported
    info = storage.stat("/")
    assert (info.name, info.is_dir, info.size) == ("/", True, 0)


_INVALID_PATHS = next(m.args[1] for m in contract.test_invalid_names.pytestmark if m.name == "parametrize")


@pytest.mark.parametrize("path", _INVALID_PATHS)
def test_invalid_names(storage: S3Storage, path: str) -> None:
    """The contract's test without SITE CHMOD, plus S3's own limit: keys of at most 1024 bytes."""
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
    ):
        with pytest.raises(InvalidName):
            operation()


def test_keys_longer_than_s3_allows_are_invalid_names(storage: S3Storage) -> None:
    deep = "/" + "/".join(["d" * 200] * 6)  # < 4096 bytes as a path, > 1024 bytes as a key
    with pytest.raises(InvalidName, match="too long"):
        storage.open_write(deep)
    with pytest.raises(InvalidName):
        storage.make_dir(deep)
