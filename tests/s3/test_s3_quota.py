"""Quotas on ``s3://`` homes (issue #6) and the ``s3_allow_backslash`` setting (issue #4), end to end.

An in-process server built from a :class:`ServerConfig` alone (``s3_endpoint``, no ``storage_for``:
the server's own per-home factory and quota scanner) serves users whose homes are prefixes of the
SeaweedFS bucket. The usage of a home is what a flat listing of its prefix finds, directory markers
excepted; uploads that would exceed the quota end with 552 and leave nothing in the bucket.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3", reason="the s3 extra (boto3) is not installed")

from pyftps.auth.base import Principal, UserLimits
from pyftps.client import PermanentError, SyncClient
from pyftps.config import ServerConfig
from pyftps.proto.policy import SessionPolicy
from pyftps.server.app import Server
from pyftps.server.quota import QuotaTracker, home_scanner
from pyftps.storage.factory import StorageFactory
from pyftps.storage.s3 import S3Storage
from pyftps.tls.certs import ensure_self_signed
from tests.s3.conftest import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedFS, fresh_prefix
from tests.s3.serving import connect, serving
from tests.support.ports import LOOPBACK

KB = 1000


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class S3Server:
    server: Server
    cafile: Path
    prefix: str
    client: Any  # boto3, to look into the bucket behind the server's back

    def connect(self, user: str = "alice") -> SyncClient:
        return connect(self.server, self.cafile, user)

    def key(self, user: str, name: str) -> str:
        return f"{self.prefix}/{user}/{name}"

    def keys(self, user: str = "alice") -> list[str]:
        """Every key under the user's prefix, relative to it (markers end with '/')."""
        base = f"{self.prefix}/{user}/"
        reply = self.client.list_objects_v2(Bucket=BUCKET, Prefix=base)
        return sorted(item["Key"][len(base) :] for item in reply.get("Contents", []))


@contextmanager
def s3_server(
    tmp_path: Path, s3: SeaweedFS, s3_client: Any, monkeypatch: pytest.MonkeyPatch, *, limits: UserLimits,
    **options: Any,
) -> Iterator[S3Server]:  # fmt: skip
    """A server whose users alice and bob have ``s3://`` homes with ``limits``; ``options`` configure it."""
    # The server's own client takes its credentials from the usual AWS variables.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    cert, key = ensure_self_signed(tmp_path / "tls")
    prefix = fresh_prefix("quota")
    users = {
        name: Principal(name, f"s3://{BUCKET}/{prefix}/{name}", limits=limits) for name in ("alice", "bob")
    }
    config = ServerConfig(
        host=LOOPBACK, explicit_port=0, implicit_port=None, root=tmp_path / "root",
        state_dir=tmp_path / "state", session=SessionPolicy(login_failure_delay=0.05), fsync=False,
        handshake_timeout=10.0, data_connect_timeout=10.0, data_idle_timeout=30.0,
        s3_endpoint=s3.endpoint, s3_region="us-east-1",
        **options,
    )  # fmt: skip
    with serving(config, users, (cert, key)) as server:
        yield S3Server(server, cert, prefix, s3_client)


def _refused(ftp: SyncClient, data: bytes, path: str) -> int | None:
    with pytest.raises(PermanentError) as refused:
        ftp.upload(io.BytesIO(data), path)
    return refused.value.code


def test_byte_quota_552_leaves_nothing_and_delete_frees_room(
    tmp_path: Path, s3: SeaweedFS, s3_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = UserLimits(quota_bytes=100 * KB)
    with s3_server(tmp_path, s3, s3_client, monkeypatch, limits=limits) as ftp_s3, ftp_s3.connect() as ftp:
        ftp.upload(io.BytesIO(os.urandom(60 * KB)), "/a.bin")
        assert _refused(ftp, os.urandom(60 * KB), "/b.bin") == 552
        assert ftp_s3.keys() == ["a.bin"]  # nothing under the refused name, no multipart left over
        # Replacing a file only needs room for its growth: 90 KB in place of 60 KB fits.
        ftp.upload(io.BytesIO(os.urandom(90 * KB)), "/a.bin")
        assert _refused(ftp, os.urandom(11 * KB), "/c.bin") == 552
        ftp.delete("/a.bin")
        payload = os.urandom(100 * KB)
        ftp.upload(io.BytesIO(payload), "/b.bin")  # the whole quota, freed by the DELE
        assert ftp_s3.keys() == ["b.bin"]
        body = s3_client.get_object(Bucket=BUCKET, Key=ftp_s3.key("alice", "b.bin"))["Body"].read()
        assert body == payload


def test_file_quota_552_and_directory_markers_are_not_files(
    tmp_path: Path, s3: SeaweedFS, s3_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = UserLimits(quota_files=2)
    with s3_server(tmp_path, s3, s3_client, monkeypatch, limits=limits) as ftp_s3, ftp_s3.connect() as ftp:
        ftp.mkdir("/d")
        ftp.mkdir("/d/e")  # two markers: neither counts against quota_files
        ftp.upload(io.BytesIO(b"one"), "/d/one")
        ftp.upload(io.BytesIO(b"two"), "/two")
        assert _refused(ftp, b"three", "/d/e/three") == 552
        ftp.upload(io.BytesIO(b"two again"), "/two")  # replacing is no new file
        assert ftp_s3.keys() == ["d/", "d/e/", "d/one", "two"]
        ftp.delete("/d/one")
        ftp.upload(io.BytesIO(b"three"), "/d/e/three")
        assert ftp_s3.keys() == ["d/", "d/e/", "d/e/three", "two"]
        with ftp_s3.connect("bob") as other:  # bob's own prefix: alice's files are not his
            other.upload(io.BytesIO(b"1"), "/1")
            other.upload(io.BytesIO(b"2"), "/2")
            assert _refused(other, b"3", "/3") == 552


def test_periodic_rescan_sees_objects_written_behind_the_servers_back(
    tmp_path: Path, s3: SeaweedFS, s3_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another node (here: boto3) writes into the home; this node sees it at its next scan."""
    limits = UserLimits(quota_bytes=100 * KB)
    with s3_server(tmp_path, s3, s3_client, monkeypatch, limits=limits) as ftp_s3:
        clock = FakeClock()
        scanner = home_scanner(StorageFactory(s3_endpoint=s3.endpoint, s3_region="us-east-1").s3_usage)
        quotas = QuotaTracker(scanner, rescan_after=300.0, clock=clock, background_rescans=True)
        ftp_s3.server.context.quotas = quotas  # as the server builds it, on a clock the test turns
        with ftp_s3.connect() as ftp:
            ftp.upload(io.BytesIO(os.urandom(10 * KB)), "/mine.bin")  # the first scan: empty
            s3_client.put_object(
                Bucket=BUCKET, Key=ftp_s3.key("alice", "other.bin"), Body=os.urandom(80 * KB)
            )
            # Not scanned again yet: this node believes 10 KB are used (per node, eventually right).
            ftp.upload(io.BytesIO(os.urandom(5 * KB)), "/second.bin")
            clock.now = 300.0
            assert quotas.usage("alice") == (15 * KB, 2)  # the check that finds a rescan due starts it
            assert quotas.wait_scanned("alice", timeout=30)
            assert quotas.usage("alice") == (95 * KB, 3)
            assert _refused(ftp, os.urandom(6 * KB), "/third.bin") == 552  # 10 + 80 + 5 + 6 > 100
            ftp.upload(io.BytesIO(os.urandom(5 * KB)), "/fourth.bin")  # exactly 100
        assert ftp_s3.keys() == ["fourth.bin", "mine.bin", "other.bin", "second.bin"]


def test_backslash_names_refused_with_553_when_configured(
    tmp_path: Path, s3: SeaweedFS, s3_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {"s3_allow_backslash": False}
    with (
        s3_server(tmp_path, s3, s3_client, monkeypatch, limits=UserLimits(), **options) as ftp_s3,
        ftp_s3.connect() as ftp,
    ):
        with pytest.raises(PermanentError) as upload:
            ftp.upload(io.BytesIO(b"data"), "/back\\slash.txt")
        assert upload.value.code == 553
        assert "'\\' are not allowed" in upload.value.text
        with pytest.raises(PermanentError) as mkdir:
            ftp.mkdir("/dir\\name")
        assert mkdir.value.code == 553
        ftp.upload(io.BytesIO(b"data"), "/plain.txt")
        assert ftp_s3.keys() == ["plain.txt"]  # SeaweedFS would have stored back/slash.txt


def test_usage_sums_files_under_the_prefix_across_pages(s3_client: Any) -> None:
    prefix = fresh_prefix("usage")
    storage = S3Storage(BUCKET, prefix, client=s3_client, page_size=2)
    assert storage.usage() == (0, 0)
    storage.make_dir("/d")
    for path, size in (("/a", 3), ("/d/b", 5), ("/d/c", 0), ("/e", 7)):
        writer = storage.open_write(path)
        writer.write(b"x" * size)
        writer.commit()
    storage.make_dir("/d/empty")
    assert storage.usage() == (15, 4)  # three pages; the markers d/ and d/empty/ are not files
    s3_client.put_object(Bucket=BUCKET, Key=f"{prefix}x/f", Body=b"x" * 100)
    assert storage.usage() == (15, 4)  # a prefix that merely starts alike is someone else's
