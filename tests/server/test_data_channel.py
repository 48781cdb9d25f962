"""The passive data endpoint on a real loopback listener, driven step by step on an asyncio loop.

End-to-end tests cannot choose in which loop iteration a command arrives; these can, so a race
between PASV and a quick ABOR/PORT/REIN/QUIT (all of which drop the passive listener) is pinned here.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyftps.server.data import DataChannel, DataConnectionError, PassivePorts


def _channel(timeout: float = 5.0) -> DataChannel:
    return DataChannel(
        PassivePorts(None),
        local_host="127.0.0.1",
        peer_host="127.0.0.1",
        allow_foreign=False,
        timeout=timeout,
    )


def _run(scenario: Any) -> list[dict[str, Any]]:
    """Run ``scenario()`` on a fresh loop; return what the loop's exception handler received."""
    loop = asyncio.new_event_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
    return errors


def test_dropping_the_listener_one_iteration_after_pasv_cancels_cleanly() -> None:
    async def scenario() -> None:
        channel = _channel()
        before = asyncio.all_tasks()
        channel.open_passive()
        (accept_task,) = asyncio.all_tasks() - before
        await asyncio.sleep(0)  # the accept task takes one step (wait_for schedules sock_accept)
        channel.close()  # e.g. ABOR / PORT / REIN / QUIT arriving in this iteration
        for _ in range(5):
            await asyncio.sleep(0)
        assert accept_task.done()
        assert accept_task.cancelled() or accept_task.exception() is None, accept_task

    assert _run(scenario) == []


@pytest.mark.parametrize("steps", [0, 2, 5])
def test_dropping_the_listener_at_other_moments(steps: int) -> None:
    async def scenario() -> None:
        channel = _channel()
        port = channel.open_passive()
        for _ in range(steps):
            await asyncio.sleep(0)
        channel.close()
        await asyncio.sleep(0.01)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        with pytest.raises(DataConnectionError):
            await channel.take_passive()

    assert _run(scenario) == []


def test_accepts_the_client_and_refuses_a_foreign_address() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        channel = _channel()
        port = channel.open_passive()
        foreign = socket.socket()
        foreign.setblocking(False)
        foreign.bind(("127.0.0.2", 0))
        await loop.sock_connect(foreign, ("127.0.0.1", port))
        assert await loop.sock_recv(foreign, 1) == b""  # closed by the server at once
        foreign.close()
        own = socket.socket()
        own.setblocking(False)
        await loop.sock_connect(own, ("127.0.0.1", port))
        pending = await asyncio.wait_for(channel.take_passive(), 5)
        assert pending.sock.getpeername() == own.getsockname()
        pending.close()
        own.close()
        channel.close()

    assert _run(scenario) == []


def test_times_out_without_a_connection() -> None:
    async def scenario() -> None:
        channel = _channel(timeout=0.2)
        channel.open_passive()
        with pytest.raises(DataConnectionError):
            await asyncio.wait_for(channel.take_passive(), 5)
        channel.close()

    assert _run(scenario) == []


class _CountingRandom(random.Random):
    """A seeded generator that counts its draws (each is one urandom read with SystemRandom)."""

    def __init__(self) -> None:
        super().__init__(5)
        self.draws = 0

    def randrange(self, *args: Any, **kwargs: Any) -> int:  # type: ignore[override]
        self.draws += 1
        return super().randrange(*args, **kwargs)


@given(low=st.integers(1024, 65000), span=st.integers(1, 600), tries=st.integers(1, 300))
def test_passive_candidates_are_distinct_ports_of_the_range(low: int, span: int, tries: int) -> None:
    high = min(low + span - 1, 65535)
    drawn = list(PassivePorts((low, high), rng=random.Random(1))._candidates(low, high, tries=tries))
    assert len(drawn) == min(tries, high - low + 1)
    assert len(set(drawn)) == len(drawn)
    assert all(low <= port <= high for port in drawn)


def test_each_passive_port_tried_costs_one_draw() -> None:
    rng, tried = _CountingRandom(), []

    class Recording(PassivePorts):
        def _bind(self, family: int, host: str, port: int) -> socket.socket:  # type: ignore[override]
            tried.append(port)
            if len(tried) < 3:  # the first two are taken
                raise OSError(errno.EADDRINUSE, "in use")
            return PassivePorts._bind(family, host, port)

    Recording((40000, 60000), rng=rng).listen("127.0.0.1").close()
    assert len(tried) == 3
    assert rng.draws == 3  # random.sample drew all 256 candidates up front
