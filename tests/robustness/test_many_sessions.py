"""1,000 idle TLS sessions on one server: all answer NOOP, and every count returns to zero (issue 5).

The CI-sized sibling of the benchmark's ``idle_10k`` scenario. The clients are raw asyncio + ``ssl``
on this test's own loop, opening at most ``CONCURRENCY`` sessions at a time (AUTH TLS, USER/PASS,
then idle); the server runs in its loopback thread. After every session has answered NOOP they are
closed, half with QUIT and half by dropping the connection, and the server's connection set, its
per-address and per-user counters and its shared deadline queue (``server/timers.py``) must all be
empty again. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterator

import pytest

from pyftps.serve import raise_open_file_limit
from pyftps.server.guard import ConnectionLimits
from pyftps.server.timers import timer_queue
from tests.robustness.helpers import wait_until
from tests.server.conftest import PASSWORD, ServerHandle, StartServer

SESSIONS = 1000
CONCURRENCY = 50


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """Two INFO lines per session would otherwise sit in pytest's log capture (and cost time)."""
    logger = logging.getLogger("pyftps")
    saved = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(saved)


class Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> bytes:
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("closed by the server")
            if len(line) >= 4 and line[:3].isdigit() and line[3:4] == b" ":
                return line

    async def command(self, line: str) -> bytes:
        self.writer.write(line.encode() + b"\r\n")
        return await self.reply()


async def open_session(handle: ServerHandle, context: ssl.SSLContext) -> Session:
    host, port = handle.explicit
    reader, writer = await asyncio.open_connection(host, port)
    session = Session(reader, writer)
    assert (await session.reply()).startswith(b"220 ")
    assert (await session.command("AUTH TLS")).startswith(b"234 ")
    await writer.start_tls(context, server_hostname=host)
    assert (await session.command("USER alice")).startswith(b"331 ")
    assert (await session.command(f"PASS {PASSWORD}")).startswith(b"230 ")
    return session


async def open_all(handle: ServerHandle, context: ssl.SSLContext) -> list[Session]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> Session:
        async with gate:
            return await open_session(handle, context)

    return await asyncio.gather(*(one() for _ in range(SESSIONS)))


async def noop_all(sessions: list[Session]) -> list[bytes]:
    return await asyncio.gather(*(session.command("NOOP") for session in sessions))


async def close_all(sessions: list[Session]) -> None:
    for index, session in enumerate(sessions):
        if index % 2 == 0:
            assert (await session.command("QUIT")).startswith(b"221 ")
        session.writer.transport.abort()  # no TLS close dance for a thousand sockets


@pytest.mark.usefixtures("quiet_logs")
def test_a_thousand_idle_tls_sessions_answer_noop_and_leave_nothing_behind(
    start_server: StartServer,
) -> None:
    soft = raise_open_file_limit(None)
    if soft is not None and soft < 2 * SESSIONS + 256:
        pytest.skip(f"open-file limit {soft} is too low for {SESSIONS} sessions on both ends")
    handle = start_server(
        limits=ConnectionLimits(max_total=SESSIONS, max_per_ip=SESSIONS, max_per_user=SESSIONS),
        policy={"idle_timeout": 600.0},
    )
    context = handle.client_context()

    async def scenario() -> tuple[int, int, list[bytes]]:
        sessions = await open_all(handle, context)
        open_count = handle.connection_count()
        armed = handle.call(armed_timers())
        replies = await noop_all(sessions)
        await close_all(sessions)
        return open_count, armed, replies

    async def armed_timers() -> int:
        return len(timer_queue())

    open_count, armed, replies = asyncio.run(scenario())
    assert open_count == SESSIONS
    assert armed == SESSIONS  # one idle deadline per session, on one shared loop timer
    assert all(reply.startswith(b"200 ") for reply in replies)
    assert wait_until(lambda: handle.connection_count() == 0, 30.0), handle.connection_count()
    counts = handle.server.context.counter.snapshot()
    assert (counts.total, counts.addresses, counts.users) == (0, 0, 0)
    assert handle.call(armed_timers()) == 0
    assert handle.call(heap_size()) == 0


async def heap_size() -> int:
    return timer_queue().heap_size
