"""server.accept: the Task-free listener serves, closes, survives failed accepts; else create_server."""

from __future__ import annotations

import asyncio
import errno
import shutil
import socket
import subprocess
from typing import Any

import pytest

from pyftps.server import accept
from pyftps.server.accept import Listener, serve


class Echo(asyncio.Protocol):
    made: list[Echo] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        Echo.made.append(self)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())


def _bound() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def _shut(server: asyncio.AbstractServer) -> None:
    """Close the listener and every connection it made (the listener leaves them to their owner)."""
    server.close()
    for protocol in Echo.made:
        protocol.transport.close()


async def _exchange(port: int, text: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(text)
        return await asyncio.wait_for(reader.readexactly(len(text)), 10)
    finally:
        writer.close()


def test_listener_serves_several_connections_and_closes() -> None:
    async def main() -> None:
        sock = _bound()
        port = sock.getsockname()[1]
        server = await serve(asyncio.get_running_loop(), sock, Echo)
        assert isinstance(server, Listener)
        assert server.is_serving() and server.sockets == (sock,)
        replies = await asyncio.gather(*(_exchange(port, b"hello %d" % i) for i in range(5)))
        assert replies == [b"HELLO %d" % i for i in range(5)]
        server.close()
        await server.wait_closed()
        assert not server.is_serving() and sock.fileno() == -1
        with pytest.raises(OSError):
            await _exchange(port, b"late")
        for protocol in Echo.made:
            protocol.transport.close()

    asyncio.run(main())


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to read the backlog")
def test_listener_keeps_the_large_listen_backlog() -> None:
    # create_server's default would cut app._listen's SOMAXCONN to 100, and bursts of clients overflow.
    async def main() -> int:
        sock = _bound()
        server = await serve(asyncio.get_running_loop(), sock, Echo)
        try:
            port = sock.getsockname()[1]
            shown = subprocess.run(
                ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
            ).stdout.split()
            return int(shown[2])  # Send-Q of a listening socket: its backlog
        finally:
            server.close()

    with open("/proc/sys/net/core/somaxconn") as limit:
        expected = min(socket.SOMAXCONN, int(limit.read()))
    assert asyncio.run(main()) == expected


class _FailingOnce(socket.socket):
    """A listening socket whose first accept fails as when the process is out of descriptors."""

    failures = 1

    def accept(self) -> tuple[socket.socket, Any]:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


def test_out_of_descriptors_pauses_accepting_then_resumes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accept, "_RETRY_DELAY", 0.05)

    async def main() -> None:
        sock = _FailingOnce(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        server = await serve(asyncio.get_running_loop(), sock, Echo)
        try:
            assert await _exchange(sock.getsockname()[1], b"again") == b"AGAIN"
            assert sock.failures == 0
        finally:
            _shut(server)

    asyncio.run(main())


def test_a_failing_protocol_factory_drops_that_connection_only() -> None:
    calls = 0

    def factory() -> asyncio.Protocol:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("broken")
        return Echo()

    async def main() -> None:
        sock = _bound()
        server = await serve(asyncio.get_running_loop(), sock, factory)
        try:
            reader, writer = await asyncio.open_connection(*sock.getsockname())
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the listener
            writer.close()
            assert await _exchange(sock.getsockname()[1], b"next") == b"NEXT"
        finally:
            _shut(server)

    asyncio.run(main())


def test_other_loops_get_create_server() -> None:
    created: list[Any] = []

    class OtherLoop:
        async def create_server(self, factory: Any, *, sock: socket.socket, backlog: int) -> str:
            created.append((factory, sock, backlog))
            return "server"

    sock = _bound()
    try:
        result = asyncio.run(serve(OtherLoop(), sock, Echo))  # type: ignore[arg-type]
    finally:
        sock.close()
    assert result == "server" and created == [(Echo, sock, socket.SOMAXCONN)]
