"""Client data connections: passive and active setup, TLS as the FTP client, orderly end and ABOR
(RFC 959 §3.2-§3.3, §4.1.3; RFC 1123 §4.1.2.6; RFC 2428 §2-§3; RFC 2577 §4; RFC 4217 §7, §10.2,
§12.5-§12.7, §14, §15.1.1; RFC 8446 §6.1).

Sequencing (RFC 4217 §12.5-12.7, the order ftplib uses, which every server accepts): passive mode
connects TCP before the transfer command, active mode listens before EPRT/PORT and accepts after the
preliminary reply; the TLS handshake starts once the 1yz reply arrived. Every handshake offers the
control connection's session (4217 §10.2) and the certificate must equal the control one (§15.1.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO, cast

from pyftps.client.errors import (
    CertificateMismatch,
    ConnectionClosed,
    FTPTimeout,
    ProtocolViolation,
    TLSFailure,
    TransferTruncated,
    UsageError,
    error_for_reply,
)
from pyftps.client.transport import CHUNK, Stream
from pyftps.proto.client_session import Security
from pyftps.proto.errors import RemoteProtocolError
from pyftps.proto.grammar import (
    format_eprt_arg,
    format_port_arg,
    parse_epsv_reply,
    parse_pasv_reply,
    same_host,
)
from pyftps.proto.replies import Reply
from pyftps.tls.contexts import TLSError, TLSTruncatedError

if TYPE_CHECKING:
    from pyftps.client.connection import Client

__all__ = [
    "DataConnection",
    "ReadStream",
    "WriteStream",
    "copy_from_file",
    "copy_to_file",
    "open_data",
    "open_local",
    "pasv_host",
]

Progress = Callable[[int], object]  # called with the byte count so far after every chunk

_UNSUPPORTED = (500, 502)  # command unknown / not implemented: fall back (RFC 2428 §3 practice)
_PROT_REFUSED = (521, 522, 534)  # PROT level inadequate (4217 §10.2, §11.4; 2228 §6; CONFORMANCE §7.4)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def pasv_host(announced: str, control_peer: str) -> str:
    """Where to connect after a 227: its address, unless it cannot be the server's (curl's rule).

    A 227 naming 0.0.0.0, or a private, loopback or link-local address while the control connection
    goes to a public address, comes from a server behind NAT: use the control connection's peer.
    """
    ann, peer = _address(announced), _address(control_peer)
    if ann is None or peer is None or ann.version != peer.version:
        return control_peer
    if ann.is_unspecified:
        return control_peer
    if (ann.is_private or ann.is_loopback or ann.is_link_local) and peer.is_global:
        return control_peer
    return str(ann)


class DataConnection:
    """One transfer's data connection after its preliminary reply; read or write, then finish or abort."""

    def __init__(self, client: Client, stream: Stream, verb: str) -> None:
        self.client = client
        self.stream = stream
        self.verb = verb
        self.done = False

    async def read(self) -> bytes:
        """The next chunk of plaintext; ``b""`` at a clean end. A bare close raises TransferTruncated."""
        try:
            return await self.stream.recv()
        except TLSTruncatedError:
            reply = await self._end_abruptly()
            said = f" although the server replied {reply.text!r}" if reply is not None else ""
            raise TransferTruncated(
                reply.code if reply is not None else None,
                f"{self.verb} data ended without TLS close_notify and may be incomplete{said}",
            ) from None
        except TimeoutError:
            await self._end_abruptly()
            raise FTPTimeout(None, f"no data from the server for {self.stream.timeout:g} s") from None
        except (OSError, TLSError) as error:
            reply = await self._end_abruptly()
            if reply is not None and not reply.is_success:
                raise error_for_reply(reply) from None
            if isinstance(error, TLSError):
                raise TLSFailure(None, f"TLS failed on the data connection: {error}") from None
            raise ConnectionClosed(None, f"data connection lost: {error}") from None

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.stream.send(data)
        except TimeoutError:
            await self._end_abruptly()
            raise FTPTimeout(None, f"the server accepted no data for {self.stream.timeout:g} s") from None
        except (OSError, TLSError) as error:
            reply = await self._end_abruptly()
            if reply is not None and not reply.is_success:
                raise error_for_reply(reply) from None
            raise ConnectionClosed(None, f"data connection lost: {error}") from None

    async def finish(self, *, upload: bool) -> Reply:
        """Orderly end: close_notify (the uploader also waits for the server's), then the final reply."""
        self.done = True
        await self.stream.aclose(wait_for_peer=upload)  # RFC 4217 §12.6; 8446 §6.1
        reply = await self.client._ctl.final_reply(self.verb)
        if not reply.is_success:
            raise error_for_reply(reply)
        return reply

    async def abort(self) -> None:
        """ABOR inside TLS with no urgent data (RFC 4217 §14); both replies are read (959 §4.1.3)."""
        if self.done:
            return
        self.done = True
        client = self.client
        await client._ctl.send("ABOR")
        self.stream.abort()
        await client._ctl.final_reply(self.verb)  # 426 (aborted) or 226 (it had finished anyway)
        await client._ctl.final_reply("ABOR")  # 226 or 225

    async def _end_abruptly(self) -> Reply | None:
        """Drop the data connection and read the transfer's final reply (None if none came in time)."""
        self.done = True
        self.stream.abort()
        try:
            return await self.client._ctl.final_reply(self.verb)
        except (FTPTimeout, ConnectionClosed):
            return None


class _Refused(Exception):
    """Internal: the transfer command was refused with this final reply (before any data connection)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.code)
        self.reply = reply


async def open_data(client: Client, verb: str, arg: str | None, *, rest: int = 0) -> DataConnection:
    """Set up the data connection, send ``REST`` (if any) and the transfer command; TLS is up on return.

    A 521/522/534 refusal under PROT C is retried once after ``PROT P`` (RFC 4217 §10.4; check 126);
    on an implicit session, once after ``PBSZ 0`` + ``PROT P`` (servers that do not assume them).
    """
    session = client._session
    try:
        return await _open_once(client, verb, arg, rest)
    except _Refused as refused:
        explicit_clear = session.prot == "C" and session.security is Security.TLS
        implicit = session.security is Security.IMPLICIT and not session.implicit_protection_fallback
        if refused.reply.code not in _PROT_REFUSED or not (explicit_clear or implicit):
            raise error_for_reply(refused.reply) from None
    if session.security is Security.IMPLICIT:
        session.allow_implicit_protection()  # vsftpd's implicit mode wants them anyway
        await client._ctl.command("PBSZ", "0")
    await client._ctl.command("PROT", "P")
    try:
        return await _open_once(client, verb, arg, rest)
    except _Refused as refused:
        raise error_for_reply(refused.reply) from None


async def _open_once(client: Client, verb: str, arg: str | None, rest: int) -> DataConnection:
    if client.passive:
        host, port = await _passive_address(client)
        stream = await _connect(client, host, port)
        try:
            await _send_transfer(client, verb, arg, rest)
        except BaseException:
            stream.abort()
            raise
    else:
        listener = await _listen(client)
        try:
            await _send_transfer(client, verb, arg, rest)
            stream = await _accept(client, listener)
        finally:
            listener.close()
    return await _secure(client, stream, verb)


async def _send_transfer(client: Client, verb: str, arg: str | None, rest: int) -> None:
    if rest:
        await client._ctl.command("REST", str(rest), expect=(3,))  # last before the transfer (3659 §5.3)
    await client._ctl.send(verb, arg)
    reply = await client._ctl.first_reply(verb)
    if not reply.is_preliminary:
        if reply.is_success:
            raise ProtocolViolation(reply.code, f"{verb} finished without opening a data connection")
        raise _Refused(reply)


async def _passive_address(client: Client) -> tuple[str, int]:
    peer = client._ctl.stream.peer[0]
    if client._epsv_ok is not False:
        reply = await client._ctl.command("EPSV", expect=(2, 4, 5))
        if reply.is_success:
            client._epsv_ok = True
            # RFC 2428 §3: the address is the control connection's peer; only the port is given.
            return peer, _epsv_port(reply)
        if reply.code not in _UNSUPPORTED:
            raise error_for_reply(reply)
        client._epsv_ok = False
    reply = await client._ctl.command("PASV")
    host, port = _pasv_address(reply)
    return pasv_host(host, peer), port


def _epsv_port(reply: Reply) -> int:
    try:
        return parse_epsv_reply(reply.text)
    except RemoteProtocolError as error:
        raise ProtocolViolation(reply.code, f"{error.text}: {reply.text}") from None


def _pasv_address(reply: Reply) -> tuple[str, int]:
    try:
        return parse_pasv_reply(reply.text)  # six numbers anywhere in the text (RFC 1123 §4.1.2.6)
    except RemoteProtocolError as error:
        raise ProtocolViolation(reply.code, f"{error.text}: {reply.text}") from None


async def _connect(client: Client, host: str, port: int) -> Stream:
    try:
        return await Stream.connect(host, port, timeout=client.timeout)
    except TimeoutError:
        raise FTPTimeout(None, f"data connection to {host} port {port} timed out") from None
    except OSError as error:
        raise ConnectionClosed(None, f"cannot open data connection to {host} port {port}: {error}") from None


async def _listen(client: Client) -> socket.socket:
    """Active mode: listen on the control connection's local address, send EPRT (PORT if unknown)."""
    host = client._ctl.stream.local[0]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.bind((host, 0))  # a random port (RFC 2577 §8)
        listener.listen(1)
        listener.setblocking(False)
        port = int(listener.getsockname()[1])
        if client._eprt_ok is not False:
            reply = await client._ctl.command("EPRT", format_eprt_arg(host, port), expect=(2, 4, 5))
            if reply.is_success:
                client._eprt_ok = True
                return listener
            if reply.code not in _UNSUPPORTED or _address(host) is None or ":" in host:
                raise error_for_reply(reply)
            client._eprt_ok = False
        await client._ctl.command("PORT", format_port_arg(host, port))
    except BaseException:
        listener.close()
        raise
    return listener


async def _accept(client: Client, listener: socket.socket) -> Stream:
    """Accept the server's connection; one from another address is closed (RFC 2577 §4)."""
    loop = asyncio.get_running_loop()
    server = client._ctl.stream.peer[0]
    try:
        async with asyncio.timeout(client.timeout):
            while True:
                sock, address = await loop.sock_accept(listener)
                if same_host(str(address[0]), server):
                    return Stream(sock, timeout=client.timeout)
                sock.close()
    except TimeoutError:
        await _drain_after_failure(client)
        raise FTPTimeout(None, "the server did not open the active data connection in time") from None


async def _secure(client: Client, stream: Stream, verb: str) -> DataConnection:
    """TLS as the FTP client on the data connection (4217 §7), resuming the control session (§10.2)."""
    data = DataConnection(client, stream, verb)
    if not client._session.data_protected:
        return data
    ctx = client._ssl_context
    assert ctx is not None
    try:
        tls = await stream.start_tls(ctx, client._server_hostname, client._tls_session())
    except (TLSError, OSError, TimeoutError) as error:
        reply = await data._end_abruptly()
        if reply is not None and not reply.is_success:
            raise error_for_reply(reply, f"TLS on the data connection failed: {error}") from None
        raise TLSFailure(None, f"TLS handshake on the data connection failed: {error}") from None
    client.data_session_reused = tls.session_reused
    if tls.peer_certificate_der != client._control_cert:
        await data._end_abruptly()
        raise CertificateMismatch(
            None, "the data connection's certificate differs from the control connection's (RFC 4217 §15.1.1)"
        )
    return data


async def _drain_after_failure(client: Client) -> None:
    with contextlib.suppress(FTPTimeout, ConnectionClosed):
        pending = client._session.pending
        if pending:
            await client._ctl.final_reply(pending[0])


# --------------------------------------------------------------------- local files and stream APIs


@contextlib.contextmanager
def open_local(target: str | os.PathLike[str] | BinaryIO, direction: str, offset: int) -> Iterator[BinaryIO]:
    """A path opened for reading from ``offset`` or writing at ``offset`` (truncated there); a file
    object is used as it is (seeked to ``offset`` for reading), and not closed."""
    if offset < 0:
        raise UsageError(None, "offset must not be negative")
    if not isinstance(target, str | os.PathLike):
        if direction == "read" and offset:
            target.seek(offset)
        yield target
        return
    try:
        mode = "rb" if direction == "read" else ("r+b" if offset else "wb")
        handle = cast(BinaryIO, open(target, mode))  # noqa: SIM115 - closed by the with block below
    except OSError as error:
        raise UsageError(None, f"cannot open {os.fspath(target)!r}: {error.strerror or error}") from None
    with handle:
        if offset:
            handle.seek(offset)
            if direction == "write":
                handle.truncate()
        yield handle


async def copy_to_file(conn: DataConnection, sink: BinaryIO, progress: Progress | None) -> int:
    total = 0
    while chunk := await conn.read():
        sink.write(chunk)
        total += len(chunk)
        if progress is not None:
            progress(total)
        await asyncio.sleep(0)  # recv returns at once while data is ready: let the loop run (TLS-IO.md)
    await conn.finish(upload=False)
    return total


async def copy_from_file(conn: DataConnection, source: BinaryIO, progress: Progress | None) -> int:
    total = 0
    while chunk := source.read(CHUNK):
        await conn.write(chunk)
        total += len(chunk)
        if progress is not None:
            progress(total)
        await asyncio.sleep(0)
    await conn.finish(upload=True)
    return total


class _Stream:
    """One transfer driven piece by piece: holds the control connection from its start to its end."""

    def __init__(self, client: Client, path: str) -> None:
        self._client, self._path = client, path
        self._conn: DataConnection | None = None
        self._locked = False
        self._finished = False

    async def _open(self) -> DataConnection:
        raise NotImplementedError

    async def _start(self) -> DataConnection:
        if self._conn is not None:
            return self._conn
        if self._finished:
            raise UsageError(None, "the stream is closed")
        await self._client._ctl.acquire()
        self._locked = True
        try:
            await self._client._type_image()
            self._conn = await self._open()
        except BaseException:
            await self._close(abandon=False)
            raise
        return self._conn

    async def _close(self, *, abandon: bool) -> None:
        self._finished = True
        try:
            if abandon and self._conn is not None:
                await self._client._abandon(self._conn)
        finally:
            if self._locked:
                self._locked = False
                self._client._ctl.release()


class ReadStream(_Stream):
    """A download as an async iterator of chunks; holds the control connection until it ends or closes.

    Use it as ``async with client.open_read(path) as stream: async for chunk in stream``; leaving
    early sends ABOR (RFC 959 §4.1.3).
    """

    def __init__(self, client: Client, path: str, offset: int) -> None:
        super().__init__(client, path)
        self._offset = offset

    async def __aenter__(self) -> ReadStream:
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> ReadStream:
        return self

    async def __anext__(self) -> bytes:
        if self._finished:
            raise StopAsyncIteration
        conn = self._conn or await self._start()
        try:
            chunk = await conn.read()
            if chunk:
                await asyncio.sleep(0)
                return chunk
            await conn.finish(upload=False)
        except BaseException:
            await self._close(abandon=True)
            raise
        await self._close(abandon=False)
        raise StopAsyncIteration

    async def _open(self) -> DataConnection:
        return await open_data(self._client, "RETR", self._path, rest=self._offset)

    async def aclose(self) -> None:
        """Stop reading: ABOR if the transfer is still running, then release the control connection."""
        if not self._finished:
            await self._close(abandon=True)


class WriteStream(_Stream):
    """An upload written piece by piece: ``async with client.open_write(path) as w: await w.write(b)``.

    Leaving the block normally ends the file with close_notify and waits for the 226; leaving it
    with an exception aborts the upload (ABOR; the server discards it).
    """

    def __init__(self, client: Client, path: str, append: bool) -> None:
        super().__init__(client, path)
        self._append = append
        self.bytes_written = 0

    async def __aenter__(self) -> WriteStream:
        await self._start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            await self.aclose()
        else:
            await self.abort()

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        conn = self._conn or await self._start()
        try:
            for start in range(0, len(data), CHUNK):
                await conn.write(data[start : start + CHUNK])
                await asyncio.sleep(0)
        except BaseException:
            await self._close(abandon=True)
            raise
        self.bytes_written += len(data)

    async def _open(self) -> DataConnection:
        return await open_data(self._client, "APPE" if self._append else "STOR", self._path)

    async def aclose(self) -> None:
        """End the upload: close_notify, then the server's final reply (RFC 4217 §12.6)."""
        if self._finished:
            return
        try:
            conn = self._conn or await self._start()
            await conn.finish(upload=True)
        except BaseException:
            await self._close(abandon=True)
            raise
        await self._close(abandon=False)

    async def abort(self) -> None:
        """Give up: ABOR and drop the data connection without close_notify (the server discards it)."""
        if not self._finished:
            await self._close(abandon=True)
