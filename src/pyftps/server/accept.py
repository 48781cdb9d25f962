"""Accepting control connections on asyncio's selector loops without a Task per connection.

``loop.create_server`` wraps every accepted socket in a coroutine run as a Task, with a Future
that only tells that task when ``connection_made`` was called: two more turns of the loop, a Task,
a Future and their callbacks for each session, about 5 % of the Python function calls of a short
FTPS session. A :class:`Listener` accepts in a reader callback and makes the transport at once, as the
loop's own accept would, minus the task. It needs the selector loop's ``_make_socket_transport``
(CPython's asyncio since 3.4); on any other loop (uvloop, ...) :func:`serve` uses ``create_server``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

__all__ = ["Listener", "release_transport", "serve"]

log = logging.getLogger("pyftps.server")

_BACKLOG = 100  # connections taken per readiness event (as asyncio's own accept)
_RETRY_DELAY = 1.0  # out of descriptors or memory: pause accepting this long (asyncio's ACCEPT_RETRY_DELAY)
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

ProtocolFactory = Callable[[], asyncio.Protocol]


async def serve(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: ProtocolFactory
) -> asyncio.AbstractServer:
    """Serve ``sock`` (bound, non-blocking) with ``factory``; a :class:`Listener` where the loop allows."""
    if isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop) and hasattr(
        loop, "_make_socket_transport"
    ):
        listener = Listener(loop, sock, factory)
        listener.start()
        return listener
    return await loop.create_server(factory, sock=sock, backlog=socket.SOMAXCONN)


def release_transport(transport: asyncio.BaseTransport) -> None:
    """Break a closed selector transport's self-reference so it is freed now, not at a full collection.

    CPython 3.11's socket transport keeps its read callback as a bound method of itself, a cycle that
    outlives ``connection_lost``. An idle server seldom runs a full collection, so after 1000 clients
    ~1000 dead transports (6 objects each) stayed, spread over pymalloc arenas that could then not be
    freed. Call it from ``connection_lost``: the reader is already removed, nothing reads it again.
    """
    if getattr(transport, "_read_ready_cb", None) is not None:
        transport._read_ready_cb = None  # type: ignore[attr-defined]


class Listener(asyncio.AbstractServer):
    """One listening socket whose connections get their transport and protocol in the accept callback."""

    def __init__(
        self,
        loop: asyncio.selector_events.BaseSelectorEventLoop,
        sock: socket.socket,
        factory: ProtocolFactory,
    ) -> None:
        self._loop = loop
        # Private but stable since 3.4 (not in typeshed); serve() checked that it exists.
        self._make_transport: Callable[..., asyncio.Transport] = loop._make_socket_transport  # type: ignore[attr-defined]
        self._sock: socket.socket | None = sock
        self._factory = factory
        self._reading = False
        self._retry: asyncio.TimerHandle | None = None

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self._sock,) if self._sock is not None else ()

    def start(self) -> None:
        if self._sock is None or self._reading:
            return
        # A pre-fork parent only bound it (app.bind_listeners). SOMAXCONN, as app._listen asks: the
        # kernel caps it; create_server's default (100) had cut it to 100, and bursts overflowed.
        self._sock.listen(socket.SOMAXCONN)
        self._loop.add_reader(self._sock.fileno(), self._accept_ready)
        self._reading = True

    def _accept_ready(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(_BACKLOG):
            try:
                conn, address = sock.accept()
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # nothing left to accept
            except OSError as error:
                if error.errno in _OUT_OF_RESOURCES:
                    # Linux keeps reporting the socket readable: stop reading it for a while.
                    log.error("cannot accept connections for now: %s", error)
                    self._pause()
                else:
                    log.error("accepting a connection failed: %s", error)
                return
            self._connect(conn, address)

    def _connect(self, conn: socket.socket, address: object) -> None:
        try:
            protocol = self._factory()
            # The transport calls connection_made and starts reading on the next turn of the loop.
            self._make_transport(conn, protocol, extra={"peername": address})
        except Exception as error:  # one connection's failure must not stop the listener
            log.error("cannot set up a connection from %s", address, exc_info=error)
            conn.close()

    def _pause(self) -> None:
        if self._reading and self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._reading = False
        self._retry = self._loop.call_later(_RETRY_DELAY, self._resume)

    def _resume(self) -> None:
        self._retry = None
        self.start()

    # ------------------------------------------------------------------ asyncio.AbstractServer

    def close(self) -> None:
        """Stop accepting and close the listening socket; open connections are left to the server."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._reading:
            self._loop.remove_reader(sock.fileno())
            self._reading = False
        sock.close()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._sock is not None

    async def start_serving(self) -> None:
        self.start()

    async def serve_forever(self) -> None:
        raise NotImplementedError("the server runs its listeners itself")

    async def wait_closed(self) -> None:
        return None  # nothing to wait for: connections are tracked by the server's context
