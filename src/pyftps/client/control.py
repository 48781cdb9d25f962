"""The client's control channel: commands through the sans-IO ClientSession, replies read one at a
time and typed by their first digit, one operation at a time (RFC 959 §4.2, §5.4; RFC 1123
§4.1.2.11; RFC 4217 §5, §13).

When an error leaves a command without its reply, or TLS half started or stopped, the session can
no longer be trusted: the socket is dropped and later calls raise ConnectionClosed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator

from pyftps.client.errors import (
    ConnectionClosed,
    FTPError,
    FTPTimeout,
    ProtocolViolation,
    UsageError,
    error_for_reply,
)
from pyftps.client.transport import Stream
from pyftps.proto.client_session import ClientSession, CommandRefused, ReplyReceived
from pyftps.proto.errors import RemoteProtocolError
from pyftps.proto.grammar import parse_time_val
from pyftps.proto.replies import Reply
from pyftps.tls.contexts import TLSError

__all__ = ["Control", "reply_number", "reply_path", "reply_time"]

log = logging.getLogger("pyftps.client")

_SECRET_VERBS = ("PASS", "ACCT")  # never logged with their argument


class Control:
    """One control connection: a :class:`Stream` plus the :class:`ClientSession` that checks it."""

    def __init__(self, stream: Stream, session: ClientSession, *, timeout: float) -> None:
        self.stream = stream
        self.session = session
        self.timeout = timeout
        self._events: deque[ReplyReceived] = deque()
        self._lock = asyncio.Lock()

    @property
    def closed(self) -> bool:
        return self.stream.closed

    # ------------------------------------------------------------------ commands and replies

    async def send(self, verb: str, arg: str | None = None) -> None:
        if self.stream.closed:
            raise ConnectionClosed(None, "the control connection is closed")
        try:
            data = self.session.send(verb, arg)
        except CommandRefused as error:
            raise UsageError(None, str(error)) from None
        log.debug("> %s", verb if verb in _SECRET_VERBS else data.decode("utf-8", "replace").rstrip())
        try:
            await self.stream.send(data)
        except TimeoutError:
            raise self.broken(FTPTimeout(None, f"sending {verb} timed out")) from None
        except (OSError, TLSError) as error:
            raise self.broken(ConnectionClosed(None, f"control connection lost: {error}")) from None

    async def next_event(self) -> ReplyReceived:
        """The next reply from the server, reading as needed (bounded by ``timeout``)."""
        while not self._events:
            await self._receive()
        event = self._events.popleft()
        log.debug("< %s %s", event.reply.code, event.reply.text.replace("\n", " | "))
        if self.session.closed and event.verb != "QUIT" and not self.session.awaiting_greeting:
            # 421 to any command, or unsolicited (idle timeout): the server is closing (959 §4.2.2).
            raise self.broken(error_for_reply(event.reply, "the server is closing the connection"))
        return event

    async def _receive(self) -> None:
        try:
            data = await self.stream.recv()
            if not data:
                raise self.broken(ConnectionClosed(None, "the server closed the control connection"))
            self._events.extend(self.session.receive_data(data))
        except TimeoutError:
            raise self.broken(FTPTimeout(None, f"no reply within {self.timeout:g} s")) from None
        except RemoteProtocolError as error:
            raise self.broken(ProtocolViolation(error.code, error.text)) from None
        except TLSError as error:
            raise self.broken(ConnectionClosed(None, f"control connection TLS failed: {error}")) from None
        except OSError as error:
            raise self.broken(ConnectionClosed(None, f"control connection lost: {error}")) from None

    async def first_reply(self, verb: str) -> Reply:
        """The next reply to ``verb``: its preliminary reply if one comes, else its final one."""
        while True:
            event = await self.next_event()
            if event.verb == verb:
                return event.reply

    async def final_reply(self, verb: str) -> Reply:
        while True:
            event = await self.next_event()
            if event.verb == verb and event.final:
                return event.reply

    async def command(self, verb: str, arg: str | None = None, *, expect: tuple[int, ...] = (2,)) -> Reply:
        """Send one command; its final reply if the first digit is expected, else the typed error."""
        await self.send(verb, arg)
        reply = await self.final_reply(verb)
        if reply.kind not in expect:
            raise error_for_reply(reply)
        return reply

    async def read_greeting(self) -> Reply:
        """Wait for 220 (``120`` may come first, 959 §5.4); multi-line greetings are fine (1123 §4.1.2.11)."""
        greeting: Reply | None = None
        while self.session.awaiting_greeting:
            event = await self.next_event()
            if self.session.closed:
                raise self.broken(error_for_reply(event.reply, "the server refused the connection"))
            greeting = event.reply
        assert greeting is not None
        return greeting

    async def stop_tls(self) -> None:
        """After 200 to CCC or 220 to REIN: close_notify both ways, then plaintext (4217 §5, §13)."""
        try:
            await self.stream.stop_tls()
        except TimeoutError:
            raise self.broken(FTPTimeout(None, "the server did not finish the TLS shutdown")) from None
        except (TLSError, OSError) as error:
            raise self.broken(ConnectionClosed(None, f"TLS shutdown failed: {error}")) from None
        if self.session.take_unparsed() or self._events:
            raise self.broken(ProtocolViolation(None, "data after the reply that ended TLS"))
        self.session.tls_closed()

    # ------------------------------------------------------------------ failure and exclusivity

    def broken(self, error: FTPError) -> FTPError:
        """Drop the connection and return ``error`` for raising."""
        self.abort()
        return error

    def abort(self) -> None:
        self.stream.abort()
        self._events.clear()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    async def acquire(self) -> None:
        if self.stream.closed:
            raise ConnectionClosed(None, "the control connection is closed")
        try:
            async with asyncio.timeout(self.timeout):
                await self._lock.acquire()
        except TimeoutError:
            raise FTPTimeout(None, "another operation holds the control connection") from None

    def release(self) -> None:
        # A command without its reply, or TLS half started/stopped: the session is out of step.
        if self.session.pending or not self.session.security.accepts_commands:
            self.abort()
        self._lock.release()


# --------------------------------------------------------------------- reply texts


def reply_path(reply: Reply) -> str:
    """The quoted pathname of a 257 reply, doubled quotes undone (RFC 959 Appendix II)."""
    text = reply.lines[0]
    start = text.find('"')
    if start < 0:
        raise ProtocolViolation(reply.code, f"257 reply without a quoted pathname: {text}")
    out: list[str] = []
    i = start + 1
    while i < len(text):
        if text[i] == '"':
            if text[i + 1 : i + 2] != '"':
                return "".join(out)
            i += 1
        out.append(text[i])
        i += 1
    raise ProtocolViolation(reply.code, f"257 reply with an unterminated pathname: {text}")


def reply_number(reply: Reply) -> int:
    """The decimal of a ``213 <n>`` SIZE reply (RFC 3659 §4.1)."""
    text = reply.text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise ProtocolViolation(reply.code, f"expected a number: {text}")
    return int(text)


def reply_time(reply: Reply) -> float:
    """The time-val of a ``213`` MDTM reply as POSIX time (RFC 3659 §3.1, §2.3)."""
    try:
        return parse_time_val(reply.text.strip())
    except RemoteProtocolError:
        raise ProtocolViolation(reply.code, f"expected YYYYMMDDHHMMSS: {reply.text}") from None
