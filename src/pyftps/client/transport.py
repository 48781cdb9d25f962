"""One TCP connection on asyncio with TLS that can start and stop on it, for control and data alike
(RFC 4217 §4, §5, §7, §12.6, §13; MS-FTPS §3.1.5.3; RFC 8446 §6.1).

TLS runs over :class:`~pyftps.tls.channel.TLSChannel` (``SSLObject`` + ``MemoryBIO``) rather than
asyncio's own TLS, for three reasons (CONFORMANCE §2.6, TLS-IO.md): asyncio cannot unwrap TLS (CCC,
REIN), cannot offer a session for resumption (CPython issue 79152), and reports a bare TCP close
like a close_notify, which hides truncated downloads. Every wait is bounded by ``timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

from pyftps.tls.channel import TLSChannel
from pyftps.tls.contexts import TLSError, TLSTruncatedError

__all__ = ["CHUNK", "Stream"]

CHUNK = 256 * 1024  # TLS-IO.md: 64-256 KiB reads and writes were fastest; 16 KiB costs CPU, 1 MiB stalls
_CLOSE_WAIT = 5.0  # longest wait for the peer's close_notify when closing a data connection


class Stream:
    """A connected non-blocking socket, plaintext or TLS; the owner runs one operation at a time."""

    def __init__(self, sock: socket.socket, *, timeout: float) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.timeout = timeout
        self.tls: TLSChannel | None = None
        self._loop = asyncio.get_running_loop()
        self._raw = b""  # bytes that arrived after a close_notify: plaintext or the next handshake
        self._plain = b""  # plaintext decrypted while the TLS session was being closed
        self.closed = False

    @classmethod
    async def connect(cls, host: str, port: int, *, timeout: float) -> Stream:
        """Connect over TCP (IPv4 or IPv6, whatever ``host`` resolves to first)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            error: OSError | None = None
            for family, kind, proto, _name, address in infos:
                sock = socket.socket(family, kind, proto)
                try:
                    sock.setblocking(False)
                    await loop.sock_connect(sock, address)
                except OSError as exc:
                    sock.close()
                    error = exc
                    continue
                except BaseException:
                    sock.close()
                    raise
                return cls(sock, timeout=timeout)
        raise error or OSError(f"cannot resolve {host!r}")

    @property
    def peer(self) -> tuple[str, int]:
        address = self.sock.getpeername()
        return str(address[0]), int(address[1])

    @property
    def local(self) -> tuple[str, int]:
        address = self.sock.getsockname()
        return str(address[0]), int(address[1])

    # ------------------------------------------------------------------ TLS on and off

    async def start_tls(
        self, ctx: ssl.SSLContext, server_hostname: str | None, session: ssl.SSLSession | None = None
    ) -> TLSChannel:
        """Run a client handshake on this socket (raises :class:`~pyftps.tls.contexts.TLSError`)."""
        tls = TLSChannel.client(ctx, server_hostname, session=session)
        if self._raw:
            tls.feed(self._raw)
            self._raw = b""
        try:
            async with asyncio.timeout(self.timeout):
                while not tls.handshake():
                    await self._flush(tls)
                    await self._feed(tls)
                await self._flush(tls)
        except TLSError:
            with contextlib.suppress(OSError, TimeoutError):
                await self._flush(tls)  # our alert tells the server why
            raise
        self.tls = tls
        return tls

    async def stop_tls(self) -> None:
        """Exchange close_notify both ways and keep the socket for plaintext (CCC 4217 §5, REIN §13)."""
        tls = self.tls
        if tls is None:
            return
        async with asyncio.timeout(self.timeout):
            while not tls.try_finish_close():  # raises TLSTruncatedError on a bare EOF
                await self._flush(tls)
                await self._feed(tls)
            await self._flush(tls)
        self._plain += tls.read()
        self._raw += tls.leftover()
        self.tls = None

    # ------------------------------------------------------------------ bytes

    async def recv(self) -> bytes:
        """Plaintext as it arrives; ``b""`` at a clean end (TCP EOF, or close_notify under TLS).

        Under TLS a TCP close without close_notify raises TLSTruncatedError (RFC 8446 §6.1).
        """
        if self._plain:
            data, self._plain = self._plain, b""
            return data
        tls = self.tls
        if tls is None:
            if self._raw:
                data, self._raw = self._raw, b""
                return data
            return await self._sock_recv()
        while True:
            data = tls.read()
            await self._flush(tls)  # key updates and alerts produced while reading
            if data:
                return data
            if tls.peer_closed:
                return b""
            if tls.truncated:
                raise TLSTruncatedError("connection closed without TLS close_notify")
            await self._feed(tls)

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        tls = self.tls
        if tls is not None:
            tls.write(bytes(data))
            data = tls.pending_output()
        async with asyncio.timeout(self.timeout):
            await self._loop.sock_sendall(self.sock, data)

    async def _feed(self, tls: TLSChannel) -> None:
        raw = await self._sock_recv()
        if raw:
            tls.feed(raw)
        else:
            tls.feed_eof()

    async def _sock_recv(self) -> bytes:
        async with asyncio.timeout(self.timeout):
            return await self._loop.sock_recv(self.sock, CHUNK)

    async def _flush(self, tls: TLSChannel) -> None:
        out = tls.pending_output()
        if out:
            async with asyncio.timeout(self.timeout):
                await self._loop.sock_sendall(self.sock, out)

    # ------------------------------------------------------------------ closing

    async def aclose(self, *, wait_for_peer: bool = False) -> None:
        """Send close_notify (under TLS), optionally wait for the peer's, then close the socket.

        A data sender waits (RFC 4217 §12.6): closing with unread bytes (a late TLS ticket) would
        make the kernel reset the connection, which can destroy the tail of an upload.
        """
        if self.closed:
            return
        tls = self.tls
        try:
            if tls is not None and tls.handshake_complete:
                tls.start_close()
                await self._flush(tls)
                if wait_for_peer:
                    # FIN too, so a server that waits for EOF rather than close_notify answers at once.
                    self.sock.shutdown(socket.SHUT_WR)
                    async with asyncio.timeout(min(self.timeout, _CLOSE_WAIT)):
                        while not tls.try_finish_close():
                            await self._feed(tls)
        except (TLSError, OSError, TimeoutError):
            pass  # our close_notify is out or the peer is gone: either way the socket closes now
        finally:
            self.abort()

    def abort(self) -> None:
        """Close the socket at once, without close_notify (ABOR, errors, cancellation)."""
        if not self.closed:
            self.closed = True
            self.sock.close()
