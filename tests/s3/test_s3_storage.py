"""What only an object store has: memory-bounded multipart uploads, ranged reads, listing pages,
server-side copies, metadata, outages. All against a real SeaweedFS (see conftest.py)."""

from __future__ import annotations

import gc
import hashlib
import math
import os
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3", reason="the s3 extra (boto3) is not installed")

from botocore.exceptions import ClientError
from urllib3.exceptions import ProtocolError

from pyftps.storage import s3 as s3_module
from pyftps.storage.base import (
    InvalidOffset,
    IsADirectory,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    Unavailable,
)
from pyftps.storage.s3 import S3Storage, make_client
from tests.s3.conftest import BUCKET, SeaweedFS, fresh_prefix, seaweedfs
from tests.support.ports import LOOPBACK, free_port
from tests.unit.test_storage_contract import get, names, put

MiB = 1024 * 1024
BIG_UPLOAD = 1024 * MiB  # the 1 GiB upload; ~20 s against a local SeaweedFS
MEMORY_BOUND = 64 * MiB


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss() -> bool:
    """Reset VmHWM (Linux >= 4.0: writing 5 to clear_refs), so that it measures from now on."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


class Calls:
    """Counts (and keeps the parameters of) the SDK calls a client makes, by operation name."""

    def __init__(self, client: Any, *operations: str) -> None:
        self.params: dict[str, list[dict[str, Any]]] = {name: [] for name in operations}
        for name in operations:
            client.meta.events.register(f"before-parameter-build.s3.{name}", self._record)

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.params[model.name].append(dict(params))

    def count(self, operation: str) -> int:
        return len(self.params[operation])


@pytest.fixture
def counted_client(s3: SeaweedFS) -> Any:
    """A client of its own, so that event hooks registered by a test do not outlive it."""
    return s3.client()


def _pending_uploads(client: Any, storage: S3Storage, key: str) -> list[Any]:
    reply = client.list_multipart_uploads(Bucket=BUCKET, Prefix=storage._key((key,)))
    return [u for u in reply.get("Uploads", []) if u["Key"] == storage._key((key,))]


# -- memory --------------------------------------------------------------------------------------


def test_one_gib_upload_streams_with_bounded_memory(
    s3_client: Any, record_property: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's bound: memory per upload independent of file size. tracemalloc sees every Python
    allocation (the SDK's included); peak RSS is measured from the RSS before the upload, so it
    reads 0 when the upload fits in memory that earlier tests freed but the allocator kept."""
    storage = S3Storage(BUCKET, fresh_prefix("big"), client=s3_client)  # the default 8 MiB parts
    block = os.urandom(MiB)
    view, half = memoryview(block), MiB // 2
    put(storage, "/warm-up", block * 9)  # the SDK's lazy set-up (service model, pool) is not the upload's
    gc.collect()
    rss_measured = _reset_peak_rss()
    rss_before = _proc_status_kib("VmRSS")
    tracemalloc.start()
    started = time.monotonic()
    try:
        stream = storage.open_write("/big.bin")
        for index in range(BIG_UPLOAD // MiB):
            stream.write(view[:half])  # a data connection hands over pieces smaller than a part
            stream.write(view[half:])
            if index == 100:
                with pytest.raises(NotFound):
                    storage.stat("/big.bin")  # 12 parts uploaded, nothing visible yet
        stream.commit()
        seconds = time.monotonic() - started
        python_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    rss_growth = (_proc_status_kib("VmHWM") - rss_before) * 1024 if rss_measured else 0
    record_property("upload_seconds", round(seconds, 1))
    record_property("tracemalloc_peak_mib", round(python_peak / MiB, 1))
    record_property("rss_peak_growth_mib", round(rss_growth / MiB, 1))
    with capsys.disabled():
        print(
            f"\n1 GiB through S3Storage.open_write: {seconds:.1f} s, tracemalloc peak "
            f"{python_peak / MiB:.1f} MiB, peak RSS growth {rss_growth / MiB:.1f} MiB"
        )
    assert python_peak < MEMORY_BOUND
    assert rss_growth < MEMORY_BOUND
    assert storage.stat("/big.bin").size == BIG_UPLOAD
    # Every part is the block 8 times: the multipart ETag (MD5 of the parts' MD5s) proves all arrived.
    part_md5 = hashlib.md5(block * 8).digest()
    etag = s3_client.head_object(Bucket=BUCKET, Key=storage._key(("big.bin",)))["ETag"]
    assert etag.strip('"') == f"{hashlib.md5(part_md5 * 128).hexdigest()}-128"
    _check_big_download(storage, block)


def _check_big_download(storage: S3Storage, block: bytes) -> None:
    """Ranged reads across part boundaries (8 MiB parts) and a resumed download of the last 3 MiB."""
    for offset in (0, 8 * MiB - 100, 512 * MiB + 5, BIG_UPLOAD - 3 * MiB - 12_345):
        stream = storage.open_read("/big.bin", offset)
        buffer = bytearray(MiB)
        try:
            count = stream.readinto(buffer)
            while count < MiB and (more := stream.readinto(memoryview(buffer)[count:])):
                count += more
        finally:
            stream.close()
        assert bytes(buffer[:count]) == (block * 2)[offset % MiB :][:MiB]
    offset = BIG_UPLOAD - 3 * MiB - 12_345
    assert get(storage, "/big.bin", offset, chunk=MiB) == (block * 4)[offset % MiB :][: BIG_UPLOAD - offset]


# -- multipart uploads -------------------------------------------------------------------------------


def test_multipart_upload_invisible_until_commit_and_abort_leaves_nothing(
    s3_client: Any, storage: S3Storage
) -> None:
    storage = S3Storage(BUCKET, storage._prefix, client=s3_client, part_size=5 * MiB)
    data = os.urandom(12 * MiB + 7)
    stream = storage.open_write("/kept.bin")
    stream.write(data)
    assert len(_pending_uploads(s3_client, storage, "kept.bin")) == 1  # two parts are on the server
    with pytest.raises(NotFound):
        storage.stat("/kept.bin")
    stream.commit()
    assert get(storage, "/kept.bin", chunk=MiB) == data
    assert _pending_uploads(s3_client, storage, "kept.bin") == []

    stream = storage.open_write("/dropped.bin")
    stream.write(data)
    assert len(_pending_uploads(s3_client, storage, "dropped.bin")) == 1
    stream.abort()
    assert _pending_uploads(s3_client, storage, "dropped.bin") == []
    with pytest.raises(NotFound):
        storage.stat("/dropped.bin")
    assert names(storage) == ["kept.bin"]


def test_part_count_limit_is_a_quota_error(
    s3_client: Any, storage: S3Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = S3Storage(BUCKET, storage._prefix, client=s3_client, part_size=5 * MiB)
    monkeypatch.setattr(s3_module, "MAX_PARTS", 2)
    stream = storage.open_write("/too-big")
    stream.write(b"x" * 10 * MiB)
    with pytest.raises(QuotaExceeded, match="too large"):
        stream.write(b"x" * 5 * MiB)
    stream.abort()
    assert _pending_uploads(s3_client, storage, "too-big") == []
    assert names(storage) == []


# -- ranged reads (REST + RETR) ----------------------------------------------------------------------


def test_ranged_reads_for_resumed_downloads(counted_client: Any) -> None:
    storage = S3Storage(BUCKET, fresh_prefix("range"), client=counted_client, part_size=5 * MiB)
    data = os.urandom(12 * MiB + 123)
    put(storage, "/f", data)
    calls = Calls(counted_client, "GetObject")
    for offset in (0, 1, 5 * MiB - 1, 5 * MiB, 10 * MiB + 7, len(data) - 1, len(data)):
        assert get(storage, "/f", offset, chunk=256 * 1024) == data[offset:]
    ranges = [params.get("Range") for params in calls.params["GetObject"]]
    assert ranges[:6] == [f"bytes={o}-" for o in (0, 1, 5 * MiB - 1, 5 * MiB, 10 * MiB + 7, len(data) - 1)]
    with pytest.raises(InvalidOffset):
        storage.open_read("/f", len(data) + 1)


def test_dropped_download_is_unavailable(storage: S3Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    put(storage, "/f", b"a" * MiB)
    stream = storage.open_read("/f")
    assert stream.readinto(bytearray(1000)) == 1000

    def dropped(amount: int | None = None) -> bytes:
        raise ProtocolError("Connection broken: simulated reset")

    monkeypatch.setattr(stream._body, "read", dropped)  # the connection to the store resets
    with pytest.raises(Unavailable, match="storage unavailable"):
        stream.readinto(bytearray(1000))  # 451 for the client, which can resume with REST
    stream.close()
    with pytest.raises(ValueError):
        stream.readinto(bytearray(10))


# -- REST + STOR and APPE ----------------------------------------------------------------------------


def test_rest_and_appe_copy_large_heads_server_side(counted_client: Any) -> None:
    storage = S3Storage(BUCKET, fresh_prefix("rest"), client=counted_client, part_size=5 * MiB)
    data = os.urandom(7 * MiB)
    put(storage, "/f", data)
    key = storage._key(("f",))
    meta = {**counted_client.head_object(Bucket=BUCKET, Key=key)["Metadata"], "mode": str(0o100600)}
    counted_client.copy_object(  # as s3fs would set it
        Bucket=BUCKET,
        Key=key,
        CopySource={"Bucket": BUCKET, "Key": key},
        Metadata=meta,
        MetadataDirective="REPLACE",
    )
    unique = storage.stat("/f").unique
    calls = Calls(counted_client, "UploadPartCopy", "GetObject")
    stream = storage.open_write("/f", offset=6 * MiB)  # REST 6 MiB: the head is copied, not downloaded
    stream.write(b"tail")
    assert get(storage, "/f", chunk=MiB) == data  # the old version until commit
    stream.commit()
    expected = data[: 6 * MiB] + b"tail"
    assert get(storage, "/f", chunk=MiB) == expected
    info = storage.stat("/f")
    assert (info.unique, info.mode, info.size) == (unique, 0o600, len(expected))

    stream = storage.open_write("/f", append=True)  # APPE onto 6 MiB + 4
    more = os.urandom(6 * MiB)
    stream.write(more)
    stream.commit()
    expected += more
    assert get(storage, "/f", chunk=MiB) == expected
    assert calls.count("UploadPartCopy") == 2
    head_reads = [
        p for p in calls.params["GetObject"] if p.get("Range", "").startswith("bytes=0-") and "IfMatch" in p
    ]
    assert head_reads == []  # no head was read back through this process

    stream = storage.open_write("/f", offset=5 * MiB)  # an interrupted continuation keeps its bytes
    stream.write(b"xyz")
    stream.abort()
    assert get(storage, "/f", chunk=MiB) == expected[: 5 * MiB] + b"xyz"


def test_small_rest_reads_the_head_back(counted_client: Any) -> None:
    storage = S3Storage(BUCKET, fresh_prefix("rest"), client=counted_client, part_size=5 * MiB)
    data = os.urandom(2 * MiB)
    put(storage, "/f", data)
    calls = Calls(counted_client, "UploadPartCopy", "GetObject", "PutObject")
    stream = storage.open_write("/f", offset=MiB)
    stream.write(b"!" * (6 * MiB))  # head (1 MiB) + data outgrow one part: a multipart upload
    stream.commit()
    assert get(storage, "/f", chunk=MiB) == data[:MiB] + b"!" * (6 * MiB)
    assert calls.count("UploadPartCopy") == 0
    assert [p["Range"] for p in calls.params["GetObject"]][:1] == [f"bytes=0-{MiB - 1}"]


# -- listings ----------------------------------------------------------------------------------------


def test_listing_pages_stream_lazily(counted_client: Any, s3_client: Any) -> None:
    prefix = fresh_prefix("pages")
    files, dirs = 1001, 9  # more than one 1000-key page even at the default page size
    keys = [f"{prefix}/many/file-{i:05d}" for i in range(files)]
    keys += [f"{prefix}/many/dir-{i:03d}/" for i in range(dirs)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: s3_client.put_object(Bucket=BUCKET, Key=key, Body=b"x"), keys))
    storage = S3Storage(BUCKET, prefix, client=counted_client, page_size=100)
    calls = Calls(counted_client, "ListObjectsV2", "HeadObject")
    listing = storage.list_dir("/many")
    assert calls.count("ListObjectsV2") == 1  # the first page, at the call: errors surface there
    first = next(listing)
    assert calls.count("ListObjectsV2") == 1
    entries = [first, *listing]
    assert calls.count("ListObjectsV2") == math.ceil((files + dirs) / 100)
    assert calls.count("HeadObject") == files + dirs  # each entry's metadata, a page at a time
    assert sum(e.is_dir for e in entries) == dirs
    assert sorted(e.name for e in entries if not e.is_dir) == [f"file-{i:05d}" for i in range(files)]
    assert all(e.size == 1 and e.unique for e in entries if not e.is_dir)

    listing = storage.list_dir("/many")
    taken = [next(listing) for _ in range(150)]
    listing.close()  # abandoned after a page and a half: no more pages are fetched
    assert len({e.name for e in taken}) == 150
    assert calls.count("ListObjectsV2") == math.ceil((files + dirs) / 100) + 2


def test_metadata_in_listings(storage: S3Storage, s3_client: Any) -> None:
    key = storage._key(("synced",))
    meta = {"mtime": "1600000000.25", "mode": str(0o100600)}  # as rclone and s3fs write them
    s3_client.put_object(Bucket=BUCKET, Key=key, Body=b"abc", Metadata=meta)
    put(storage, "/plain", b"")
    info = storage.stat("/synced")
    assert (info.mtime, info.mode, info.size) == (1600000000.25, 0o600, 3)
    listed = {e.name: e for e in storage.list_dir("/")}
    assert (listed["synced"].mtime, listed["synced"].mode) == (1600000000.25, 0o600)
    assert listed["plain"].mtime == pytest.approx(time.time(), abs=120)  # LastModified
    assert listed["synced"].unique == info.unique != listed["plain"].unique  # made from the key without an id


# -- renames and copies ------------------------------------------------------------------------------


def test_rename_directory_key_by_key(s3_client: Any, storage: S3Storage) -> None:
    storage = S3Storage(BUCKET, storage._prefix, client=s3_client, page_size=7)  # several pages
    storage.make_dir("/src")
    storage.make_dir("/src/sub")
    storage.make_dir("/src/empty")
    for i in range(20):
        put(storage, f"/src/f{i:02d}", f"file {i}".encode())
    for i in range(5):
        put(storage, f"/src/sub/g{i}", f"deep {i}".encode())
    before = {e.name: e.unique for e in storage.list_dir("/src")}
    storage.rename("/src", "/dst")
    assert names(storage) == ["dst"]
    with pytest.raises(NotFound):
        storage.stat("/src")
    after = {e.name: e for e in storage.list_dir("/dst")}
    assert set(after) == set(before)
    assert all(after[n].unique == before[n] for n in after if not after[n].is_dir)
    assert names(storage, "/dst/empty") == []
    assert names(storage, "/dst/sub") == [f"g{i}" for i in range(5)]
    assert get(storage, "/dst/sub/g4") == b"deep 4"
    assert s3_client.list_objects_v2(Bucket=BUCKET, Prefix=storage._key(("src",))).get("KeyCount") == 0


def test_large_objects_use_multipart_copies(counted_client: Any) -> None:
    storage = S3Storage(
        BUCKET,
        fresh_prefix("copy"),
        client=counted_client,
        part_size=5 * MiB,
        max_single_copy=6 * MiB,  # stands in for S3's 5 GiB CopyObject limit
        copy_part_size=10 * MiB,
    )
    data = os.urandom(23 * MiB)
    put(storage, "/f", data)
    unique = storage.stat("/f").unique
    calls = Calls(counted_client, "UploadPartCopy", "CopyObject")
    storage.rename("/f", "/g")
    storage.set_mtime("/g", 1_500_000_000.0)
    assert calls.count("UploadPartCopy") == 6 and calls.count("CopyObject") == 0
    info = storage.stat("/g")
    assert (info.unique, info.mtime, info.size) == (unique, 1_500_000_000.0, len(data))
    assert get(storage, "/g", chunk=MiB) == data
    assert names(storage) == ["g"]


# -- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("NoSuchKey", 404, NotFound),
        ("404", 404, NotFound),
        ("AccessDenied", 403, PermissionDenied),
        ("403", 403, PermissionDenied),
        ("InvalidRange", 416, InvalidOffset),
        ("EntityTooLarge", 400, QuotaExceeded),
        ("ExistingObjectIsDirectory", 409, IsADirectory),
        ("PreconditionFailed", 412, Unavailable),
        ("SlowDown", 503, Unavailable),
        ("InternalError", 500, Unavailable),
        ("NoSuchBucket", 404, Unavailable),
        ("SomethingNew", 400, Unavailable),
    ],
)
def test_error_codes_map_to_typed_errors(code: str, status: int, kind: type[Exception]) -> None:
    error = ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")
    mapped = s3_module._error(error, "/dir/fi\r\nle")
    assert type(mapped) is kind
    assert str(mapped).startswith("/dir/fi??le: ")  # the virtual path only, never bucket or key


def test_unreachable_store_is_unavailable() -> None:
    port = free_port()  # nothing listens there
    client = make_client(
        endpoint_url=f"http://{LOOPBACK}:{port}",
        region="us-east-1",
        access_key="k",
        secret_key="s",
        max_attempts=1,
        timeouts=(1.0, 5.0),
    )
    storage = S3Storage(BUCKET, "down", client=client)
    for operation in (
        lambda: storage.stat("/f"),
        lambda: storage.list_dir("/"),
        lambda: storage.open_read("/f"),
        lambda: storage.open_write("/f"),
        lambda: storage.make_dir("/d"),
        lambda: storage.delete("/f"),
        lambda: storage.rename("/a", "/b"),
    ):
        with pytest.raises(Unavailable, match="storage unavailable"):
            operation()


# -- an outage in the middle of uploads --------------------------------------------------------------


def test_outage_mid_upload_leaves_no_object(tmp_path: Path) -> None:
    with seaweedfs(tmp_path / "seaweedfs") as server:
        client = server.client(max_attempts=1, timeouts=(1.0, 30.0))  # refused at once when down
        storage = S3Storage(BUCKET, "outage", client=client, part_size=5 * MiB)
        storage.make_dir("/in")
        big = storage.open_write("/in/big.bin")
        big.write(os.urandom(11 * MiB))  # two parts on the server
        small = storage.open_write("/in/small.txt")
        small.write(b"pending")
        assert server.process is not None
        server.process.stop(grace=0)  # SIGKILL: the store is gone
        with pytest.raises(Unavailable, match="storage unavailable"):
            big.write(os.urandom(5 * MiB))  # the third part cannot be sent
        big.abort()  # must not raise, though the abort cannot reach the store either
        with pytest.raises(Unavailable):
            small.commit()
        with pytest.raises(Unavailable):
            storage.stat("/in/big.bin")
    with server.running():  # the same data and ports again
        assert names(storage, "/in") == []
        for path in ("/in/big.bin", "/in/small.txt"):
            with pytest.raises(NotFound):
                storage.stat(path)
        leftovers = client.list_multipart_uploads(Bucket=BUCKET, Prefix="outage/").get("Uploads", [])
        for upload in leftovers:  # invisible; what a bucket lifecycle rule would abort later
            client.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
        assert names(storage, "/in") == []
