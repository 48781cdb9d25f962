"""Certificate checks, truncation, timeouts and misbehaving servers (RFC 4217 §4.2, §10.3, §15.1;
RFC 8446 §6.1; RFC 8996; CONFORMANCE §2.4, §6.7)."""

from __future__ import annotations

import asyncio
import io
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from pyftps.client import (
    CertificateMismatch,
    CertificateRejected,
    Client,
    ConnectionClosed,
    FTPTimeout,
    ProtocolViolation,
    TLSFailure,
    TransferTruncated,
    TransientError,
    UsageError,
)
from pyftps.server.worker import DataWorker
from pyftps.tls.certs import certificate_fingerprint
from pyftps.tls.contexts import client_context
from tests.client.conftest import HOST, CertPair, pyftps_server, run


def fingerprint_of(cert: Path) -> str:
    return certificate_fingerprint(cert.read_bytes())


@pytest.mark.parametrize("mode", ["explicit", "implicit"])
@pytest.mark.parametrize("style", ["colons", "bare-lower"])
def test_fingerprint_pin_accepted_without_a_ca(
    mode: str, style: str, tmp_path: Path, cert_pair: CertPair
) -> None:
    pin = fingerprint_of(cert_pair.cert)
    if style == "bare-lower":
        pin = pin.replace(":", "").lower()

    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv:
            options = srv.login(mode, cafile=None, fingerprint=pin)
            async with await Client.connect(srv.host, srv.port(mode), **options) as client:
                await client.upload(io.BytesIO(b"pinned"), "p.txt")  # data certificate == control's
                assert (srv.root / "p.txt").read_bytes() == b"pinned"

    run(scenario())


@pytest.mark.parametrize("mode", ["explicit", "implicit"])
def test_fingerprint_pin_rejected(
    mode: str, tmp_path: Path, cert_pair: CertPair, other_cert: CertPair
) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv:
            options = srv.login(mode, cafile=None, fingerprint=fingerprint_of(other_cert.cert))
            with pytest.raises(CertificateMismatch, match="pinned"):
                await Client.connect(srv.host, srv.port(mode), **options)

    run(scenario())


def test_bad_fingerprint_text_is_a_usage_error() -> None:
    async def scenario() -> None:
        with pytest.raises(UsageError, match="SHA-256"):
            await Client.connect(HOST, 1, user="u", password="p", fingerprint="AB:CD")

    run(scenario())


@pytest.mark.parametrize("mode", ["explicit", "implicit"])
def test_wrong_ca_is_rejected(mode: str, tmp_path: Path, cert_pair: CertPair, other_cert: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv:
            with pytest.raises(CertificateRejected) as info:
                await Client.connect(srv.host, srv.port(mode), **srv.login(mode, cafile=other_cert.cert))
            assert info.value.code is None and "certificate" in str(info.value).lower()

    run(scenario())


def test_verification_is_on_by_default(tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv:
            with pytest.raises(CertificateRejected):  # system CAs do not know a self-signed certificate
                await Client.connect(srv.host, srv.port("implicit"), **srv.login("implicit", cafile=None))

    run(scenario())


def test_wrong_host_name_is_rejected(tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv:
            options = srv.login("explicit", server_hostname="not-this-host.example")
            with pytest.raises(CertificateRejected):
                await Client.connect(srv.host, srv.port("explicit"), **options)

    run(scenario())


@pytest.mark.parametrize("mode", ["explicit", "implicit"])
def test_insecure_works_without_any_ca(mode: str, tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv:
            options = srv.login(mode, cafile=None, insecure=True)
            async with await Client.connect(srv.host, srv.port(mode), **options) as client:
                await client.upload(io.BytesIO(b"insecure"), "i.txt")
                assert await client.size("i.txt") == 8

    run(scenario())


def test_client_context_refuses_old_tls() -> None:
    ctx = client_context(insecure=True)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2  # RFC 8996


@pytest.mark.parametrize("mode", ["explicit", "implicit"])
def test_download_without_close_notify_is_truncated(
    mode: str, tmp_path: Path, cert_pair: CertPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"0123456789" * 50_000

    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv:
            (srv.root / "cut.bin").write_bytes(data)
            async with await Client.connect(srv.host, srv.port(mode), **srv.login(mode)) as client:
                # The server sends every byte, then closes the TCP connection without close_notify.
                monkeypatch.setattr(DataWorker, "_close_tls", lambda self, conn: None)
                sink = io.BytesIO()
                with pytest.raises(TransferTruncated) as info:
                    await client.download("cut.bin", sink)
                assert info.value.code == 226  # the server believed it succeeded (RFC 8446 §6.1)
                assert sink.getvalue() == data  # nothing was lost here, but nothing proves that
                with pytest.raises(TransferTruncated):
                    await client.list()
                monkeypatch.undo()
                assert (await client.noop()).code == 200  # the control connection is still in step
                assert len(await client.list()) == 1

    run(scenario())


def test_data_certificate_must_equal_the_control_certificate(tmp_path: Path, cert_pair: CertPair) -> None:
    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv:
            async with await Client.connect(
                srv.host, srv.port("explicit"), **srv.login("explicit")
            ) as client:
                client._control_cert = b"a different certificate"  # as if control saw another one
                with pytest.raises(CertificateMismatch, match=r"15\.1\.1"):
                    await client.list()
                assert (await client.noop()).code == 200

    run(scenario())


# --------------------------------------------------------------------- tiny fake servers


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def fake_server(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, HOST, 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


def test_334_to_auth_is_a_protocol_violation() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220-Welcome\r\n220 ready\r\n")
        assert await reader.readline() == b"AUTH TLS\r\n"
        writer.write(b"334 ADAT=please\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    async def scenario() -> None:
        async with fake_server(handler) as port:
            with pytest.raises(ProtocolViolation) as info:
                await Client.connect(HOST, port, user="u", password="p", insecure=True, timeout=2)
            assert info.value.code == 334

    run(scenario())


def test_auth_refused_is_not_silently_plaintext() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ready\r\n")
        seen.append(await reader.readline())
        writer.write(b"502 no TLS here\r\n")
        await writer.drain()
        seen.append(await reader.read())
        writer.close()

    async def scenario() -> None:
        async with fake_server(handler) as port:
            with pytest.raises(Exception) as info:
                await Client.connect(HOST, port, user="u", password="p", insecure=True, timeout=2)
            assert getattr(info.value, "code", None) == 502
            await asyncio.sleep(0.05)
        assert seen[0] == b"AUTH TLS\r\n" and b"USER" not in seen[1] and b"PASS" not in seen[1]

    run(scenario())


def test_greeting_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never greets
        writer.close()

    async def scenario() -> None:
        async with fake_server(handler) as port:
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(FTPTimeout):
                await Client.connect(HOST, port, user="u", password="p", insecure=True, timeout=0.3)
            assert loop.time() - start < 2

    run(scenario())


def test_implicit_does_not_wait_for_a_plaintext_greeting() -> None:
    first: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first.append(await reader.read(1))  # the client must speak first: a TLS ClientHello
        writer.close()

    async def scenario() -> None:
        async with fake_server(handler) as port:
            with pytest.raises(TLSFailure, match="closed during the TLS handshake"):
                await Client.connect(
                    HOST, port, mode="implicit", user="u", password="p", insecure=True, timeout=2
                )
        assert first == [b"\x16"]  # TLS handshake record (MS-FTPS §3.1.5.1)

    run(scenario())


def test_421_greeting_is_transient() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"421 Too many connections; try again later.\r\n")
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        async with fake_server(handler) as port:
            with pytest.raises(TransientError) as info:
                await Client.connect(HOST, port, user="u", password="p", insecure=True, timeout=2)
            assert info.value.code == 421 and "try again" in info.value.text

    run(scenario())


def test_connection_refused_is_connection_closed() -> None:
    async def scenario() -> None:
        async with fake_server(lambda r, w: asyncio.sleep(0)) as port:
            pass
        with pytest.raises(ConnectionClosed, match="cannot connect"):
            await Client.connect(HOST, port, user="u", password="p", insecure=True, timeout=2)

    run(scenario())


def test_reply_timeout_drops_the_out_of_step_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 plain test server\r\n")
        assert await reader.readline() == b"USER u\r\n"
        writer.write(b"331 pass\r\n")
        assert await reader.readline() == b"PASS p\r\n"
        writer.write(b"230 in\r\n")
        await reader.read()  # then silence: NOOP is never answered
        writer.close()

    async def scenario() -> None:
        async with fake_server(handler) as port:
            client = await Client.connect(HOST, port, mode="plain", user="u", password="p", timeout=0.3)
            with pytest.raises(FTPTimeout):
                await client.noop()
            assert client.closed  # NOOP's reply may still come: the session cannot be trusted
            with pytest.raises(ConnectionClosed):
                await client.pwd()
            await client.quit()  # harmless on a dropped connection

    run(scenario())


def test_idle_timeout_421_closes_the_client(tmp_path: Path, cert_pair: CertPair) -> None:
    from pyftps.proto.policy import SessionPolicy

    policy = SessionPolicy(login_failure_delay=0.01, idle_timeout=0.3)

    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair, session=policy) as srv:
            client = await Client.connect(srv.host, srv.implicit_port, **srv.login("implicit"))
            await asyncio.sleep(0.6)  # the server sends 421 and closes (RFC 1123 §4.1.3.2)
            with pytest.raises((TransientError, ConnectionClosed)) as info:
                await client.noop()
            assert getattr(info.value, "code", None) in (421, None)
            assert client.closed
            with pytest.raises(ConnectionClosed):
                await client.pwd()

    run(scenario())


@pytest.mark.parametrize("mode", ["explicit", "implicit"])
def test_tls12_resumes_with_tickets(
    mode: str, tmp_path: Path, cert_pair: CertPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyftps.client.connection as connection

    def tls12_only(**options: object) -> ssl.SSLContext:
        ctx = client_context(**options)  # type: ignore[arg-type]
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    monkeypatch.setattr(connection, "client_context", tls12_only)

    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv:
            async with await Client.connect(srv.host, srv.port(mode), **srv.login(mode)) as client:
                tls = client._ctl.stream.tls
                assert tls is not None and tls.version == "TLSv1.2"
                await client.upload(io.BytesIO(b"twelve"), "t.txt")  # the server requires reuse
                assert client.data_session_reused is True
                await client.reinitialize()
                assert await client.nlst() == ["t.txt"]

    run(scenario())
