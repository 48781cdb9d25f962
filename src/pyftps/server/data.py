"""Data-connection endpoints: passive listeners from a port range, active connections, RFC 2577 checks.

Only the TCP part lives here, on the event loop, so that ABOR can cancel a wait cleanly; TLS and
the copy loop run in a worker thread (:mod:`pyftps.server.worker`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import logging
import random
import socket
import weakref
from collections.abc import Callable, Iterator
from types import MethodType
from typing import Any

from pyftps.proto.grammar import same_host
from pyftps.proto.proxy import ProxyHeaderParser, ProxyProtocolError, is_trusted

log = logging.getLogger("pyftps.data")


class DataConnectionError(Exception):
    """No data connection could be made (425)."""


class PendingData:
    """A data connection that exists before its transfer runs; its TLS handshake may already be running.

    curl sends its data ClientHello right after connecting, before the transfer command, and stalls
    about a second if the server waits for RETR to answer it; ftplib only starts TLS after the 150.
    Starting the server side of the handshake at accept time, in a worker thread, and sending the
    150 as soon as TCP is up serves both.
    """

    def __init__(self, sock: socket.socket, handshake: concurrent.futures.Future[None] | None = None) -> None:
        self.sock = sock
        self.handshake = handshake

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a handshake blocked in another thread
        handshake = self.handshake
        if handshake is not None and not handshake.done():
            # Closing now would free the descriptor while the handshake thread still uses it; the
            # number could be reused by the next socket. Close once that thread has let go.
            handshake.add_done_callback(lambda _: self.sock.close())
            return
        self.sock.close()


OnAccepted = Callable[[socket.socket], PendingData]


def _settle(task: asyncio.Task[PendingData]) -> None:
    """Retrieve a finished accept task's outcome so asyncio does not report it as lost."""
    if not task.cancelled():
        task.exception()


async def _accept_one(listener: socket.socket) -> tuple[socket.socket, Any]:
    """``loop.sock_accept`` with the reader in our hands, so that closing the listener is synchronous.

    With ``sock_accept`` a cancelled accept left its reader registered until a later loop iteration:
    the port went on accepting after the 226 of an ABOR, and a connection arriving in that window
    met a cancelled future (InvalidStateError, a leaked socket; CPython 3.11). Here the listener
    may be closed at any time by :func:`_stop_listening`, which removes the reader first.
    """
    loop = asyncio.get_running_loop()
    fd = listener.fileno()
    while True:
        if listener.fileno() == -1:
            raise asyncio.CancelledError  # _stop_listening called the accept off before it began
        try:
            conn, address = listener.accept()
        except (BlockingIOError, InterruptedError):
            pass
        else:
            conn.setblocking(False)
            return conn, address
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _wake, ready)
        try:
            await ready
        finally:
            if listener.fileno() == fd:  # else _stop_listening closed it and removed the reader
                loop.remove_reader(fd)


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _stop_listening(listener: socket.socket) -> None:
    """Close a passive listener now: no connection is accepted on it once this returns."""
    fd = listener.fileno()
    if fd != -1:
        with contextlib.suppress(RuntimeError):  # no running loop: no reader can be registered either
            asyncio.get_running_loop().remove_reader(fd)
    listener.close()


def split_port_range(port_range: tuple[int, int], parts: int) -> list[tuple[int, int]]:
    """Cut a passive range into ``parts`` disjoint, contiguous sub-ranges of near-equal size.

    With ``--workers N`` each worker binds passive ports only from its own sub-range, so a PASV or
    EPSV port is never taken by another worker's session. ValueError if there are fewer ports than parts.
    """
    low, high = port_range
    size = high - low + 1
    if parts < 1 or size < parts:
        raise ValueError(
            f"the passive port range {low}-{high} has {size} port(s), fewer than the {parts} workers:"
            " widen --passive-ports or lower --workers"
        )
    base, extra = divmod(size, parts)
    ranges, start = [], low
    for index in range(parts):
        end = start + base + (1 if index < extra else 0) - 1
        ranges.append((start, end))
        start = end + 1
    return ranges


class PassivePorts:
    """Binds listeners on random ports of a range (random, not sequential: RFC 2577 §8)."""

    def __init__(self, port_range: tuple[int, int] | None, *, rng: random.Random | None = None) -> None:
        self.port_range = port_range
        self._rng = rng or random.SystemRandom()

    def listen(self, host: str) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if self.port_range is None:
            return self._bind(family, host, 0)
        low, high = self.port_range
        for port in self._candidates(low, high, tries=256):
            try:
                return self._bind(family, host, port)
            except OSError as error:
                if error.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise
        raise DataConnectionError("no free passive port in the configured range")

    def _candidates(self, low: int, high: int, *, tries: int) -> Iterator[int]:
        """Distinct random ports of ``low..high``, drawn one at a time (RFC 2577: unpredictable).

        A lazy Fisher-Yates shuffle: each port costs one draw (one urandom read), and the first port
        tried is nearly always free; ``random.sample`` drew all ``tries`` up front on every PASV.
        """
        span = high - low + 1
        swapped: dict[int, int] = {}
        for index in range(min(tries, span)):
            pick = self._rng.randrange(index, span)
            yield low + swapped.get(pick, pick)
            swapped[pick] = swapped.get(index, index)

    @staticmethod
    def _bind(family: int, host: str, port: int) -> socket.socket:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(1)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock


class DataChannel:
    """One session's data endpoint: at most one passive listener, or nothing (active mode)."""

    def __init__(
        self,
        ports: PassivePorts,
        *,
        local_host: str,
        peer_host: str,
        allow_foreign: bool,
        timeout: float,
        on_accepted: OnAccepted = PendingData,
        trusted_proxies: tuple[str, ...] = (),
    ) -> None:
        self._ports = ports
        self._local_host = local_host
        self._peer_host = peer_host
        self._allow_foreign = allow_foreign
        self._timeout = timeout
        # The session owns its channel: a strong reference back to the session's bound method would
        # make every closed session cyclic garbage, its TLS state held until a full collection.
        self._on_accepted: Callable[[], OnAccepted | None] = (
            weakref.WeakMethod(on_accepted) if isinstance(on_accepted, MethodType) else lambda: on_accepted
        )
        self._trusted_proxies = trusted_proxies
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[PendingData] | None = None

    def open_passive(self) -> int:
        """Listen on a fresh port and start accepting at once (the client may connect before RETR)."""
        self.close()
        listener = self._ports.listen(self._local_host)
        self._listener = listener
        self._accepting = asyncio.get_running_loop().create_task(self._accept(listener))
        port: int = listener.getsockname()[1]
        return port

    async def take_passive(self) -> PendingData:
        """The passive data connection, waiting for it if the client has not connected yet."""
        task = self._accepting
        if task is None:
            raise DataConnectionError("no passive listener")
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # ABOR or a lost control connection: stop accepting now (before the 226), not at the timeout.
            listener, self._listener = self._listener, None
            if listener is not None:
                _stop_listening(listener)
            task.cancel()
            raise
        finally:
            self._accepting = None

    async def _accept(self, listener: socket.socket) -> PendingData:
        """Wait for the client's data connection; foreign addresses are dropped (RFC 2577 §4, PROJ)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise DataConnectionError("timed out waiting for the data connection")
                try:
                    conn, address = await asyncio.wait_for(_accept_one(listener), remaining)
                except TimeoutError:
                    raise DataConnectionError("timed out waiting for the data connection") from None
                except OSError as error:  # EMFILE under a flood, for one: a 425, not a wedged session
                    raise DataConnectionError(f"cannot accept the data connection: {error}") from None
                client: str | None = address[0]
                if self._trusted_proxies and is_trusted(address[0], self._trusted_proxies):
                    client = await self._proxied_client(conn, deadline)
                on_accepted = self._on_accepted()
                if on_accepted is None:  # the session has gone
                    conn.close()
                    raise DataConnectionError("the session has closed")
                if client is not None and (self._allow_foreign or same_host(client, self._peer_host)):
                    try:
                        return on_accepted(conn)
                    except OSError as error:  # the client's own connection died as it arrived (reset)
                        conn.close()
                        raise DataConnectionError(f"the data connection failed: {error}") from None
                log.warning("refused a data connection from %s (control peer is %s)", client, self._peer_host)
                conn.close()
        finally:
            if self._listener is listener:
                self._listener = None
            listener.close()

    async def _proxied_client(self, conn: socket.socket, deadline: float) -> str | None:
        """The real client behind a load balancer's PROXY header; reads no byte past the header.

        The bytes after it (a ClientHello, an upload) must stay in the socket for the worker thread,
        so the parser says how much may be read at each step (``want``).
        """
        loop = asyncio.get_running_loop()
        parser = ProxyHeaderParser()
        try:
            while True:
                chunk = await asyncio.wait_for(loop.sock_recv(conn, parser.want), deadline - loop.time())
                if not chunk:
                    return None
                result = parser.feed(chunk)
                if result is not None:
                    return None if result.local or result.source is None else str(result.source[0])
        except (TimeoutError, ProxyProtocolError, OSError) as error:
            log.warning("bad PROXY header on a data connection: %s", error or "timed out")
            return None

    async def connect(self, host: str, port: int, timeout: float) -> socket.socket:
        """Active mode: connect from the control connection's local address to the client."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        local = self._local_host if (":" in self._local_host) == (family == socket.AF_INET6) else None
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            if local and not local.startswith("::ffff:"):
                sock.bind((local, 0))
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
        except (OSError, TimeoutError) as error:
            sock.close()
            raise DataConnectionError(
                f"cannot connect to {host} port {port}: {error or 'timed out'}"
            ) from None
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        """Drop the passive listener and any connection accepted but not used yet."""
        listener, self._listener = self._listener, None
        task, self._accepting = self._accepting, None
        if listener is not None:
            _stop_listening(listener)
        if task is not None and not task.done():
            task.add_done_callback(_settle)
            task.cancel()
            return
        if task is not None:
            _settle(task)
            if not task.cancelled() and task.exception() is None:
                task.result().close()
