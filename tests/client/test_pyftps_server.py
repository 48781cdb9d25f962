"""The asyncio client against an in-process pyftps server, explicit and implicit (RFC 4217, MS-FTPS §3.1).

The server runs with its defaults for data connections: PROT P required and ReusePolicy.REQUIRE,
so every transfer here also proves that the client resumes the control session (RFC 4217 §10.2).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
from pathlib import Path

import pytest

from pyftps.client import Client, PermanentError, UsageError
from pyftps.proto.client_session import Security
from tests.client.conftest import CertPair, RunningServer, pyftps_server, run

MODES = ["explicit", "implicit"]
SIZE = 3 * 256 * 1024 + 12345  # several chunks and a ragged tail


def payload(size: int = SIZE, seed: int = 1) -> bytes:
    return hashlib.shake_256(seed.to_bytes(4, "big")).digest(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def connect(srv: RunningServer, mode: str, **options: object) -> Client:
    return await Client.connect(srv.host, srv.port(mode), **srv.login(mode, **options))


@pytest.mark.parametrize("mode", MODES)
def test_upload_list_download_stat(mode: str, tmp_path: Path, cert_pair: CertPair) -> None:
    data = payload()
    src = tmp_path / "src.bin"
    src.write_bytes(data)

    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, mode) as client:
            assert client.greeting is not None and client.greeting.code == 220
            assert client.session.security is (Security.IMPLICIT if mode == "implicit" else Security.TLS)
            progress: list[int] = []
            assert await client.upload(src, "file.bin", progress=progress.append) == len(data)
            assert progress[-1] == len(data) and progress == sorted(progress)
            assert client.data_session_reused is True  # the server requires it
            assert sha((srv.root / "file.bin").read_bytes()) == sha(data)
            entries = {e.name: e for e in await client.list()}
            assert entries["file.bin"].size == len(data) and entries["file.bin"].is_dir is False
            dest = tmp_path / "dest.bin"
            assert await client.download("file.bin", dest) == len(data)
            assert sha(dest.read_bytes()) == sha(data)
            entry = await client.stat("file.bin")
            assert entry.size == len(data) and entry.is_dir is False and entry.mtime is not None
            assert await client.size("file.bin") == len(data)
            assert await client.nlst() == ["file.bin"]
            assert await client.pwd() == "/"

    run(scenario())


@pytest.mark.parametrize("mode", MODES)
def test_resume_download_and_upload_with_offset(mode: str, tmp_path: Path, cert_pair: CertPair) -> None:
    data = payload(seed=2)
    cut = 300_001

    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, mode) as client:
            (srv.root / "big.bin").write_bytes(data)
            # An interrupted download left the first `cut` bytes; resume with REST (RFC 3659 §5.3).
            partial = tmp_path / "partial.bin"
            partial.write_bytes(data[:cut] + b"garbage after the cut")
            assert await client.download("big.bin", partial, offset=cut) == len(data) - cut
            assert sha(partial.read_bytes()) == sha(data)
            # The same through the stream API, into memory.
            chunks = [chunk async for chunk in client.open_read("big.bin", offset=cut)]
            assert b"".join(chunks) == data[cut:]
            # An interrupted upload: the server has the head, the client sends the rest at the offset.
            (srv.root / "up.bin").write_bytes(data[:cut])
            source = tmp_path / "source.bin"
            source.write_bytes(data)
            assert await client.upload(source, "up.bin", offset=cut) == len(data) - cut
            assert sha((srv.root / "up.bin").read_bytes()) == sha(data)

    run(scenario())


@pytest.mark.parametrize("mode", MODES)
def test_append_and_streams(mode: str, tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, mode) as client:
            await client.upload(io.BytesIO(b"head-"), "log.txt")
            await client.upload(io.BytesIO(b"tail"), "log.txt", append=True)
            assert (srv.root / "log.txt").read_bytes() == b"head-tail"
            async with client.open_write("stream.bin") as writer:
                await writer.write(b"a" * 600_000)
                await writer.write(memoryview(b"b" * 10))
            assert (srv.root / "stream.bin").read_bytes() == b"a" * 600_000 + b"b" * 10
            async with client.open_write("log.txt", append=True) as writer:
                await writer.write(b"!")
            sink = io.BytesIO()
            await client.download("log.txt", sink)
            assert sink.getvalue() == b"head-tail!"

    run(scenario())


@pytest.mark.parametrize("mode", MODES)
def test_directories_rename_delete_and_mtime(mode: str, tmp_path: Path, cert_pair: CertPair) -> None:
    when = dt.datetime(2021, 3, 4, 5, 6, 7, tzinfo=dt.UTC)

    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, mode) as client:
            assert await client.mkdir("docs") == "/docs"
            await client.cwd("docs")
            assert await client.pwd() == "/docs"
            await client.upload(io.BytesIO(b"x" * 10), "a.txt")
            await client.rename("a.txt", "b.txt")
            await client.set_mtime("b.txt", when)
            assert await client.mtime("b.txt") == when.timestamp()
            entry = await client.stat("/docs/b.txt")
            assert entry.mtime == when.timestamp() and entry.size == 10
            assert [e.name for e in await client.list()] == ["b.txt"]
            assert [(e.name, e.is_dir) for e in await client.list("/")] == [("docs", True)]
            await client.delete("b.txt")
            await client.cwd("/")
            await client.rmdir("docs")
            assert await client.list() == []
            assert not any(srv.root.iterdir())

    run(scenario())


def test_errors_are_typed_and_leave_the_session_usable(tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, "explicit") as client:
            with pytest.raises(PermanentError) as info:
                await client.download("missing.bin", tmp_path / "never.bin")
            assert info.value.code == 550 and str(info.value).startswith("550 ")
            assert "\n" not in str(info.value)
            assert not (tmp_path / "never.bin").exists()  # refused RETR creates no local file
            with pytest.raises(PermanentError) as info:
                await client.delete("missing.bin")
            assert info.value.code == 550
            with pytest.raises(PermanentError) as info:
                await client.stat("missing.bin")
            assert info.value.code == 550
            with pytest.raises(UsageError):
                await client.upload(io.BytesIO(b""), "x", append=True, offset=3)
            assert (await client.noop()).code == 200

    run(scenario())


def test_wrong_password_is_530(tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv:
            with pytest.raises(PermanentError) as info:
                await connect(srv, "implicit", password="wrong")
            assert info.value.code == 530

    run(scenario())


@pytest.mark.parametrize("mode", MODES)
def test_active_mode(mode: str, tmp_path: Path, cert_pair: CertPair) -> None:
    data = payload(700_000, seed=3)

    async def scenario() -> None:
        async with (
            pyftps_server(tmp_path, cert_pair) as srv,
            await connect(srv, mode, passive=False) as client,
        ):
            # EPRT; the server connects, and the client is still the TLS client (4217 §7).
            await client.upload(io.BytesIO(data), "active.bin")
            sink = io.BytesIO()
            await client.download("active.bin", sink)
            assert sink.getvalue() == data
            client._eprt_ok = False  # as if EPRT were unknown: PORT instead
            assert [e.name for e in await client.list()] == ["active.bin"]
            assert client.data_session_reused is True

    run(scenario())


def test_pasv_fallback(tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, "explicit") as client:
            client._epsv_ok = False  # as if EPSV had been answered 500/502 (RFC 2428 §3 practice)
            await client.upload(io.BytesIO(b"via pasv"), "p.txt")
            assert [e.name for e in await client.list()] == ["p.txt"]

    run(scenario())


def test_early_close_of_a_read_stream_sends_abor(tmp_path: Path, cert_pair: CertPair) -> None:
    data = payload(8 * 1024 * 1024, seed=4)

    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, "implicit") as client:
            (srv.root / "huge.bin").write_bytes(data)
            async with client.open_read("huge.bin") as stream:
                first = await stream.__anext__()
                assert first == data[: len(first)]
            # ABOR went inside TLS (RFC 4217 §14); both replies were read; the session is in step.
            assert client.session.pending == ()
            assert (await client.noop()).code == 200
            assert await client.size("huge.bin") == len(data)

    run(scenario())


def test_failed_upload_stream_is_aborted(tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, "explicit") as client:
            with pytest.raises(RuntimeError, match="boom"):
                async with client.open_write("partial.bin") as writer:
                    await writer.write(b"x" * 1000)
                    raise RuntimeError("boom")
            assert (await client.noop()).code == 200
            assert not (srv.root / "partial.bin").exists()  # the server discarded the cut upload

    run(scenario())


@pytest.mark.parametrize("mode", MODES)
def test_rein_then_login_again_and_transfer(mode: str, tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, mode) as client:
            await client.upload(io.BytesIO(b"before"), "r.txt")
            first_greeting = client.greeting
            await client.reinitialize()
            # Implicit: a new handshake on the same socket and a new greeting (MS-FTPS §3.1.5.3).
            assert client.session.logged_in and client.session.data_protected
            if mode == "implicit":
                assert client.greeting is not first_greeting
                assert client.session.security is Security.IMPLICIT
            else:
                assert client.session.security is Security.TLS
            await client.upload(io.BytesIO(b"after"), "s.txt")
            sink = io.BytesIO()
            await client.download("r.txt", sink)
            assert sink.getvalue() == b"before"
            assert client.data_session_reused is True

    run(scenario())


def test_ccc_then_plaintext_noop_and_protected_data(tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, "explicit") as client:
            await client.ccc()
            assert client.session.security is Security.CLEARED
            assert client._ctl.stream.tls is None  # the socket carries plaintext now
            assert (await client.noop()).code == 200
            # PROT P stays in force for data (RFC 4217 §5) and still resumes the control session.
            await client.upload(io.BytesIO(b"after ccc"), "c.txt")
            assert client.data_session_reused is True
            assert (srv.root / "c.txt").read_bytes() == b"after ccc"
            with pytest.raises(UsageError):
                await client.ccc()  # already clear: refused before sending

    run(scenario())


def test_ccc_on_implicit_is_refused_without_sending(tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, "implicit") as client:
            with pytest.raises(UsageError, match="MS-FTPS"):
                await client.ccc()
            with pytest.raises(UsageError, match="MS-FTPS"):
                await client.quote("PROT", "C")
            assert (await client.noop()).code == 200

    run(scenario())


def test_auth_ssl_and_host_header(tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv:
            async with await connect(srv, "explicit", auth="SSL", host_header="localhost") as client:
                assert client.session.host == "localhost" and client.session.data_protected
                await client.upload(io.BytesIO(b"ssl"), "ssl.txt")
            async with await connect(srv, "implicit", host_header="localhost") as client:
                assert client.session.host == "localhost"  # after the handshake; SNI agrees (7151 §4)

    run(scenario())


def test_prot_c_refused_at_transfer_is_retried_with_prot_p(tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with (
            pyftps_server(tmp_path, cert_pair) as srv,
            await connect(srv, "explicit", protect=False) as client,
        ):
            # pyftps refuses PROT C by policy (534); data stays C until a transfer gets 521, then PROT P.
            assert client.session.prot == "C"
            await client.upload(io.BytesIO(b"retried"), "r.txt")
            assert client.session.prot == "P"
            assert (srv.root / "r.txt").read_bytes() == b"retried"

    run(scenario())


def test_concurrent_callers_are_serialised(tmp_path: Path, cert_pair: CertPair) -> None:
    import asyncio

    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, "implicit") as client:
            for name in "abc":
                (srv.root / f"{name}.txt").write_bytes(name.encode() * 100)
            results = await asyncio.gather(*(client.size(f"{n}.txt") for n in "abc"), client.pwd())
            assert results == [100, 100, 100, "/"]

    run(scenario())


def test_large_transfer_in_both_directions(tmp_path: Path, cert_pair: CertPair) -> None:
    data = os.urandom(24 * 1024 * 1024)

    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, "explicit") as client:
            await client.upload(io.BytesIO(data), "big.bin")
            sink = io.BytesIO()
            await client.download("big.bin", sink)
            assert sha(sink.getvalue()) == sha(data)

    run(scenario())


@pytest.mark.parametrize("mode", MODES)
def test_empty_files_and_unusual_names(mode: str, tmp_path: Path, cert_pair: CertPair) -> None:
    name = "dir with  spaces/ünïcödé €.txt"

    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, mode) as client:
            await client.mkdir("dir with  spaces")
            assert await client.upload(io.BytesIO(b""), name) == 0
            assert (srv.root / name).read_bytes() == b""
            sink = io.BytesIO(b"old")
            assert await client.download(name, sink) == 0
            assert [e.name for e in await client.list("dir with  spaces")] == ["ünïcödé €.txt"]
            assert (await client.stat(name)).size == 0
            chunks = [chunk async for chunk in client.open_read(name)]
            assert chunks == []

    run(scenario())


def test_quote_refuses_channel_changing_commands(tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, "explicit") as client:
            for verb in ("AUTH", "ccc", "REIN", "QUIT", "ABOR"):
                with pytest.raises(UsageError, match="own method"):
                    await client.quote(verb)
            reply = await client.quote("SITE", "HELP")  # any code comes back as a Reply
            assert reply.code == 214
            assert (await client.quote("XYZZY")).code == 500

    run(scenario())


def test_fallbacks_without_mlst(tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, "explicit") as client:
            (srv.root / "ten.txt").write_bytes(b"0123456789")
            (srv.root / "sub").mkdir()
            await client.features()
            client.session.features = {}  # as if FEAT listed no MLST: LIST and SIZE/MDTM instead
            listed = {e.name: e for e in await client.list()}
            assert listed["ten.txt"].size == 10 and listed["ten.txt"].is_dir is False
            assert listed["sub"].is_dir is True
            entry = await client.stat("ten.txt")
            assert (entry.size, entry.is_dir) == (10, False)
            assert entry.mtime == (srv.root / "ten.txt").stat().st_mtime // 1

    run(scenario())


def test_offset_beyond_the_end_is_a_permanent_error(tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv, await connect(srv, "implicit") as client:
            (srv.root / "ten.txt").write_bytes(b"0123456789")
            with pytest.raises(PermanentError) as info:
                await client.download("ten.txt", io.BytesIO(), offset=20)
            assert info.value.code == 554
            assert await client.download("ten.txt", io.BytesIO(), offset=10) == 0

    run(scenario())
