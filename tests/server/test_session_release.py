"""A closed session is freed by reference counting, not left as cyclic garbage for a full collection.

After 1000 clients at once, sessions waiting for the cycle collector held ~20 MiB (their TLS state and
buffers) once the server went quiet: a full collection only comes after many new allocations, which an
idle server never makes. The cyclic garbage collector is off during these tests, so a session that is
still reachable only through a cycle stays alive and fails them.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from tests.server.conftest import ServerHandle, StartServer


@pytest.fixture
def no_cycle_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _session_ref(handle: ServerHandle, *, transport: bool = False) -> weakref.ref[object]:
    async def only() -> weakref.ref[object]:
        (connection,) = handle.server.context.connections
        return weakref.ref(connection.transport if transport else connection)  # type: ignore[attr-defined]

    return handle.call(only())


def _wait_freed(handle: ServerHandle, ref: weakref.ref[object]) -> None:
    async def freed() -> bool:
        return ref() is None

    for _ in range(250):  # polled, not timed: the loop closes the session when it sees the QUIT
        if handle.connection_count() == 0 and handle.call(freed()):
            return
        handle.call(_pause())
    referrers = [type(r).__qualname__ for r in gc.get_referrers(ref())] if ref() is not None else []
    pytest.fail(f"the closed session's {type(ref()).__name__} is still alive, held by {referrers}")


async def _pause() -> None:
    await asyncio.sleep(0.02)


@pytest.mark.parametrize("mode", ["pasv", "epsv", "port"])
def test_a_session_with_transfers_is_freed_when_it_closes(
    start_server: StartServer, no_cycle_collector: None, mode: str
) -> None:
    handle = start_server()
    (handle.root / "f.bin").write_bytes(b"x" * 100_000)
    client = handle.login()
    ref = _session_ref(handle)
    assert client.retr("f.bin", mode=mode) == b"x" * 100_000
    client.stor("up.bin", b"y" * 50_000, mode=mode)
    client.expect("QUIT", 221)
    client.close()
    _wait_freed(handle, ref)


def test_a_session_that_drops_while_its_passive_port_waits_is_freed(
    start_server: StartServer, no_cycle_collector: None
) -> None:
    handle = start_server()
    client = handle.login()
    ref = _session_ref(handle)
    client.pasv()  # a passive listener is waiting for a data connection that never comes
    client.close()
    _wait_freed(handle, ref)


@pytest.mark.parametrize("how", ["quit", "drop"])
def test_a_closed_sessions_transport_is_freed(
    start_server: StartServer, no_cycle_collector: None, how: str
) -> None:
    """CPython's socket transport refers to itself through its read callback; the server breaks that."""
    handle = start_server()
    client = handle.login()
    ref = _session_ref(handle, transport=True)
    if how == "quit":
        client.expect("QUIT", 221)
    client.close()
    _wait_freed(handle, ref)
