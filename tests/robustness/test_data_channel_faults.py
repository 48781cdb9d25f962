"""Faults around passive data connections: a reset before the accept, descriptors running out, a
socket closed under the thread that runs its TLS handshake.

Regression tests for server bugs this suite found (fixed in e0bf837): each of the first two used to
kill the transfer task, so the command never got a reply and the session stayed busy for good; the
third let a pending data connection's descriptor be freed, and reused, under its handshake thread.
"""

from __future__ import annotations

import concurrent.futures
import errno
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pyftps.server import data as data_module
from pyftps.server.data import PendingData
from pyftps.tls.contexts import server_context, wrap_data_socket
from tests.robustness.helpers import client_hello, reset
from tests.server.conftest import ServerHandle, StartServer


def hold_loop(server: ServerHandle) -> threading.Event:
    """Block the server's event loop until the returned event is set (at most 5 s)."""
    blocked, release = threading.Event(), threading.Event()

    def block() -> None:
        blocked.set()
        release.wait(5)

    server.loop.call_soon_threadsafe(block)
    assert blocked.wait(5)
    return release


def test_data_connection_reset_before_the_accept_is_a_clean_failure(start_server: StartServer) -> None:
    server = start_server()
    client = server.login()
    hello = client_hello(server.client_context())
    plan = client.plan("epsv")
    release = hold_loop(server)  # the server cannot accept until the client has reset the connection
    try:
        sock = client.open_tcp(plan)
        sock.sendall(hello[:40])
        reset(sock)
    finally:
        release.set()
    client.sock.settimeout(3.0)  # a loopback reply takes milliseconds; the bug gave none at all
    first = client.send("LIST")
    codes = [first.code] + ([client.read_reply().code] if first.code == 150 else [])
    assert codes[-1] in (425, 426, 522), codes
    assert client.send("NOOP").code == 200
    assert client.transfer("LIST").codes == (150, 226)


def test_accept_failure_on_a_passive_port_is_a_425_and_the_session_goes_on(start_server: StartServer) -> None:
    server = start_server()
    client = server.login()
    injected = OSError(errno.EMFILE, "Too many open files")

    async def out_of_descriptors(sock: socket.socket) -> tuple[socket.socket, Any]:
        raise injected

    real_accept = data_module._accept_one
    data_module._accept_one = out_of_descriptors  # type: ignore[assignment]
    try:
        client.pasv()  # the listener's accept fails at once, as when the process is out of descriptors
        time.sleep(0.2)
    finally:
        data_module._accept_one = real_accept
    client.sock.settimeout(3.0)  # a loopback reply takes milliseconds; the bug gave none at all
    reply = client.send("LIST")
    assert 400 <= reply.code < 500, reply  # 425: no data connection
    assert client.send("NOOP").code == 200
    assert client.transfer("LIST").codes == (150, 226)


def test_closing_a_pending_data_connection_waits_for_its_handshake(server_cert: tuple[Path, Path]) -> None:
    cert, key = server_cert
    context = server_context(cert, key)
    seen: dict[str, bool] = {}
    handshake: concurrent.futures.Future[None] | None = None

    class Tracking(ssl.SSLSocket):
        def _real_close(self) -> None:
            assert handshake is not None
            seen.setdefault("handshake_done_when_closed", handshake.done())
            super()._real_close()

    context.sslsocket_class = Tracking
    server_side, client_side = socket.socketpair()
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="robustness-hs")
    try:
        # What ControlConnection._data_accepted does with a passive data connection under PROT P.
        server_side.settimeout(5.0)
        conn = wrap_data_socket(context, server_side)
        handshake = executor.submit(conn.do_handshake)
        deadline = time.monotonic() + 5
        while not handshake.running() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # blocked waiting for a ClientHello that never comes
        PendingData(conn, handshake).close()  # what a refused transfer, ABOR or a new PASV does
        with pytest.raises((ssl.SSLError, OSError, AttributeError)):
            handshake.result(timeout=5)
        deadline = time.monotonic() + 5
        while "handshake_done_when_closed" not in seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert conn.fileno() == -1, "the socket was never closed"
        assert seen["handshake_done_when_closed"], "closed while the handshake thread still used the socket"
    finally:
        client_side.close()
        executor.shutdown(wait=True)


def test_refused_transfers_on_preconnected_passive_connections_leave_no_thread_behind(
    start_server: StartServer,
) -> None:
    """curl's order (data connection first, then the command) with commands the server refuses.

    The handshake started at accept time must end with the refusal; the fixture's teardown fails
    the test if a data thread outlives the server.
    """
    server = start_server()
    client = server.login()
    for name in ("missing-1", "missing-2", "missing-3", "pub/../missing-4"):
        assert client.transfer(f"RETR {name}").codes == (550,)
        assert client.transfer(f"MLSD {name}").codes == (550,)
    assert client.send("NOOP").code == 200
