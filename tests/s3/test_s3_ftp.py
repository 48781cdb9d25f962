"""End to end: the pyftps server with S3 storage per user, driven by the pyftps client over FTPS.

An in-process :class:`~pyftps.server.app.Server` (its loop in a thread) gives each user an
:class:`S3Storage` on their own prefix of the SeaweedFS bucket; ``alice`` works normally, ``outage``
has a store that cannot be reached. The blocking :class:`SyncClient` uploads, lists, resumes,
renames and deletes; the server must not log an error while doing so.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("boto3", reason="the s3 extra (boto3) is not installed")

from pyftps.auth.base import Principal
from pyftps.client import SyncClient, TransientError
from pyftps.config import ServerConfig
from pyftps.proto.policy import SessionPolicy
from pyftps.server.app import Server
from pyftps.storage.base import Storage
from pyftps.storage.s3 import S3Storage, make_client
from pyftps.tls.certs import ensure_self_signed
from tests.s3.conftest import BUCKET, fresh_prefix
from tests.s3.serving import connect, serving
from tests.support.ports import LOOPBACK, free_port

MiB = 1024 * 1024


@dataclass
class FtpOverS3:
    server: Server
    cafile: Path
    prefix: str

    def connect(self, user: str = "alice") -> SyncClient:
        return connect(self.server, self.cafile, user)


@pytest.fixture
def ftp_s3(tmp_path: Path, s3_client: Any) -> Iterator[FtpOverS3]:
    cert, key = ensure_self_signed(tmp_path / "tls")
    prefix = fresh_prefix("ftp")
    down = make_client(
        endpoint_url=f"http://{LOOPBACK}:{free_port()}",
        region="us-east-1",
        access_key="k",
        secret_key="s",
        max_attempts=1,
    )

    def storage_for(principal: Principal) -> Storage:
        if principal.name == "outage":
            return S3Storage(BUCKET, "nowhere", client=down)
        # 5 MiB parts so that the test's files take the multipart path; SeaweedFS mangles '\'.
        return S3Storage(BUCKET, principal.home, client=s3_client, part_size=5 * MiB, allow_backslash=False)

    users = {"alice": Principal("alice", f"{prefix}/alice"), "outage": Principal("outage", "nowhere")}
    config = ServerConfig(
        host=LOOPBACK,
        explicit_port=0,
        implicit_port=None,
        root=tmp_path / "root",
        state_dir=tmp_path / "state",
        session=SessionPolicy(login_failure_delay=0.05),
        fsync=False,
        handshake_timeout=10.0,
        data_connect_timeout=10.0,
        data_idle_timeout=30.0,
        tls_close_timeout=5.0,
    )
    with serving(config, users, (cert, key), storage_for) as server:
        yield FtpOverS3(server, cert, prefix)


def test_upload_list_resume_rename_delete_through_s3(ftp_s3: FtpOverS3, s3_client: Any) -> None:
    data = os.urandom(12 * MiB + 321)  # three 5 MiB parts
    with ftp_s3.connect() as ftp:
        ftp.mkdir("/docs")
        assert ftp.upload(io.BytesIO(data[: 7 * MiB]), "/docs/report.bin") == 7 * MiB
        # REST + STOR continues at 7 MiB: the server copies the head inside the object store.
        assert ftp.upload(io.BytesIO(data), "/docs/report.bin", offset=7 * MiB) == len(data) - 7 * MiB
        ftp.upload(io.BytesIO(b"one\n"), "/docs/log.txt")
        ftp.upload(io.BytesIO(b"two\n"), "/docs/log.txt", append=True)
        entries = {entry.name: entry for entry in ftp.list("/docs")}
        assert set(entries) == {"report.bin", "log.txt"}
        assert entries["report.bin"].size == len(data) and entries["report.bin"].facts.get("unique")
        assert ftp.size("/docs/report.bin") == len(data)

        received = io.BytesIO()
        offset = 5 * MiB - 17  # a resumed download: REST then RETR, a ranged GET behind it
        assert ftp.download("/docs/report.bin", received, offset=offset) == len(data) - offset
        assert received.getvalue() == data[offset:]
        whole = io.BytesIO()
        ftp.download("/docs/log.txt", whole)
        assert whole.getvalue() == b"one\ntwo\n"

        ftp.set_mtime("/docs/report.bin", 1_600_000_000.0)
        assert ftp.mtime("/docs/report.bin") == 1_600_000_000.0
        ftp.rename("/docs/report.bin", "/docs/final.bin")
        ftp.rename("/docs", "/archive")
        assert [entry.name for entry in ftp.list("/")] == ["archive"]
        assert sorted(entry.name for entry in ftp.list("/archive")) == ["final.bin", "log.txt"]
        assert ftp.mtime("/archive/final.bin") == 1_600_000_000.0
        with pytest.raises(Exception, match="550"):
            ftp.rmdir("/archive")  # not empty
        ftp.delete("/archive/final.bin")
        ftp.delete("/archive/log.txt")
        ftp.rmdir("/archive")
        assert ftp.list("/") == []
    leftover = s3_client.list_objects_v2(Bucket=BUCKET, Prefix=f"{ftp_s3.prefix}/alice/")
    assert leftover.get("KeyCount") == 0


def test_unreachable_store_answers_451(ftp_s3: FtpOverS3) -> None:
    with ftp_s3.connect("outage") as ftp:
        with pytest.raises(TransientError) as listing:
            ftp.list("/")
        assert listing.value.code == 451
        with pytest.raises(TransientError) as upload:
            ftp.upload(io.BytesIO(b"data"), "/file.txt")
        assert upload.value.code == 451
        with pytest.raises(TransientError) as mkdir:
            ftp.mkdir("/d")
        assert mkdir.value.code == 451
