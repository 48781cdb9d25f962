"""The client against a third-party server: pyftpdlib's TLS_FTPHandler (explicit FTPS, TLS required on
control and data) in a thread (RFC 4217; CONFORMANCE §6.7)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from pathlib import Path

import pytest

from pyftps.client import Client, PermanentError, SyncClient
from tests.client.conftest import ThirdPartyServer, run

pytestmark = [
    pytest.mark.interop,
    pytest.mark.filterwarnings("ignore:The (asyncore|asynchat) module:DeprecationWarning"),
]


async def connect(srv: ThirdPartyServer, **options: object) -> Client:
    base: dict[str, object] = {
        "user": srv.user,
        "password": srv.password,
        "cafile": srv.cafile,
        "timeout": 5.0,
    }
    base.update(options)
    return await Client.connect(srv.host, srv.port, **base)  # type: ignore[arg-type]


def test_explicit_transfers_and_file_commands(pyftpdlib_server: ThirdPartyServer, tmp_path: Path) -> None:
    data = hashlib.shake_256(b"pyftpdlib").digest(2 * 1024 * 1024 + 7)
    when = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    root = pyftpdlib_server.root

    async def scenario() -> None:
        async with await connect(pyftpdlib_server) as client:
            features = await client.features()
            assert "TLS" in client.session.auth_mechanisms() and "MLST" in features
            assert await client.upload(io.BytesIO(data), "up.bin") == len(data)
            assert hashlib.sha256((root / "up.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
            sink = io.BytesIO()
            await client.download("up.bin", sink)  # ends with close_notify, or TransferTruncated
            assert sink.getvalue() == data
            partial = tmp_path / "partial.bin"
            partial.write_bytes(data[:1000])
            await client.download("up.bin", partial, offset=1000)
            assert partial.read_bytes() == data
            await client.upload(io.BytesIO(b"!"), "up.bin", append=True)
            assert await client.size("up.bin") == len(data) + 1
            await client.mkdir("dir")
            await client.rename("up.bin", "dir/moved.bin")
            await client.set_mtime("dir/moved.bin", when)
            entry = await client.stat("dir/moved.bin")
            assert entry.size == len(data) + 1 and entry.mtime == when.timestamp()
            assert [(e.name, e.is_dir) for e in await client.list()] == [("dir", True)]
            assert await client.nlst("dir") in (["moved.bin"], ["dir/moved.bin"])
            with pytest.raises(PermanentError) as info:
                await client.download("nope", io.BytesIO())
            assert info.value.code == 550
            await client.delete("dir/moved.bin")
            await client.rmdir("dir")
            assert await client.list() == []

    run(scenario())


def test_active_mode_and_auth_ssl(pyftpdlib_server: ThirdPartyServer) -> None:
    async def scenario() -> None:
        async with await connect(pyftpdlib_server, passive=False, auth="SSL") as client:
            await client.upload(io.BytesIO(b"active" * 1000), "a.bin")
            sink = io.BytesIO()
            await client.download("a.bin", sink)
            assert sink.getvalue() == b"active" * 1000

    run(scenario())


def test_sync_client(pyftpdlib_server: ThirdPartyServer, tmp_path: Path) -> None:
    src = tmp_path / "s.txt"
    src.write_bytes(b"sync " * 1000)
    with SyncClient.connect(
        pyftpdlib_server.host,
        pyftpdlib_server.port,
        user=pyftpdlib_server.user,
        password=pyftpdlib_server.password,
        cafile=pyftpdlib_server.cafile,
        timeout=5.0,
    ) as ftp:
        assert ftp.upload(src, "s.txt") == 5000
        assert b"".join(ftp.open_read("s.txt")) == b"sync " * 1000
        with ftp.open_write("w.txt") as writer:
            writer.write(b"written")
        assert ftp.size("w.txt") == 7
        assert sorted(e.name for e in ftp.list()) == ["s.txt", "w.txt"]
