"""Slow clients do not hold a slot forever (issue 4, "Abuse": idle, handshake and slow-client timeouts).

A client sending one byte every 0.2 s and never completing a line is dropped at the idle timeout (a
partial line keeps nothing alive), before login in clear and after login under TLS. A client that
trickles its ClientHello, or stops in the middle of it, is dropped at the handshake timeout, on the
implicit port and after ``AUTH TLS``. Every case runs in its own thread, all at once; the only time
limits asserted are generous deadlines.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

from tests.robustness.helpers import client_hello, wait_until
from tests.server.conftest import ServerHandle, StartServer
from tests.support.ftp_raw import FtpRaw

TICK = 0.2
DEADLINE = 10.0


def run_all(cases: dict[str, Callable[[], object]]) -> dict[str, object]:
    results: dict[str, object] = {}

    def run(name: str, case: Callable[[], object]) -> None:
        try:
            results[name] = case()
        except BaseException as error:
            results[name] = error

    threads = [threading.Thread(target=run, args=item, name=f"slow-{item[0]}") for item in cases.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE + 5)
    return results


def trickle_line(client: FtpRaw) -> tuple[int, int, str]:
    """One byte of ``NOOOO...`` per tick until the server speaks; (bytes sent, reply code, how it closed)."""
    sent = 0
    deadline = time.monotonic() + DEADLINE
    client.sock.settimeout(TICK)
    while time.monotonic() < deadline:
        try:
            client.send_raw(b"N" if sent == 0 else b"O")
            sent += 1
        except OSError:
            pass  # already closed: the reply is waiting
        try:
            reply = client.read_reply()
        except TimeoutError:
            continue
        client.sock.settimeout(DEADLINE)
        return sent, reply.code, client.wait_closed()
    raise AssertionError(f"still connected after {DEADLINE} s and {sent} bytes")


def trickle_bytes(sock: socket.socket, data: bytes) -> tuple[int, str]:
    """Send ``data`` one byte per tick (or stop early when it runs out) until the server closes."""
    sent = 0
    deadline = time.monotonic() + DEADLINE
    sock.settimeout(TICK)
    while time.monotonic() < deadline:
        if sent < len(data):
            try:
                sock.sendall(data[sent : sent + 1])
                sent += 1
            except OSError:
                return sent, "reset"
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionError:
            return sent, "reset"
        if not chunk:
            return sent, "eof"
    raise AssertionError(f"still connected after {DEADLINE} s and {sent} of {len(data)} bytes")


def test_a_line_trickled_one_byte_at_a_time_is_dropped_at_the_idle_timeout(start_server: StartServer) -> None:
    server = start_server(policy={"idle_timeout": 1.0})
    plain = server.connect()  # greeting read; nothing else
    secure = server.login(implicit=True)
    results = run_all({"plain": lambda: trickle_line(plain), "tls": lambda: trickle_line(secure)})
    for name, result in results.items():
        assert not isinstance(result, BaseException), (name, result)
        sent, code, how = result  # type: ignore[misc]
        assert code == 421, (name, result)
        assert sent >= 3, (name, result)  # it did trickle, and was dropped all the same
        assert how in ("eof", "close_notify"), (name, result)
    assert wait_until(lambda: server.connection_count() == 0, 5.0)
    assert server.server.context.counter.snapshot().total == 0
    assert server.login().send("NOOP").code == 200


def _after_auth(server: ServerHandle) -> socket.socket:
    sock = socket.create_connection(server.explicit, timeout=DEADLINE)
    reader = sock.makefile("rb")
    try:
        assert reader.readline().startswith(b"220 ")
        sock.sendall(b"AUTH TLS\r\n")
        assert reader.readline().startswith(b"234 ")
    finally:
        reader.close()
    return sock


def test_trickled_and_stalled_handshakes_are_dropped_at_the_handshake_timeout(
    start_server: StartServer,
) -> None:
    server = start_server(handshake_timeout=1.0)
    hello = client_hello(server.client_context())
    socks = {
        "implicit-trickle": socket.create_connection(server.implicit, timeout=DEADLINE),
        "implicit-stall-half": socket.create_connection(server.implicit, timeout=DEADLINE),
        "implicit-stall-nothing": socket.create_connection(server.implicit, timeout=DEADLINE),
        "explicit-trickle": _after_auth(server),
        "explicit-stall-half": _after_auth(server),
    }
    data = {
        "implicit-trickle": hello,
        "implicit-stall-half": hello[: len(hello) // 2],
        "implicit-stall-nothing": b"",
        "explicit-trickle": hello,
        "explicit-stall-half": hello[: len(hello) // 2],
    }
    for name in ("implicit-stall-half", "explicit-stall-half"):
        socks[name].sendall(data[name])
        data[name] = b""
    try:
        results = run_all({name: (lambda n=name: trickle_bytes(socks[n], data[n])) for name in socks})
    finally:
        for sock in socks.values():
            with contextlib.suppress(OSError):
                sock.close()
    for name, result in results.items():
        assert not isinstance(result, BaseException), (name, result)
        sent, how = result  # type: ignore[misc]
        assert how in ("eof", "reset"), (name, result)
        if "trickle" in name:
            assert 3 <= sent < len(hello), (name, result)  # dropped mid-ClientHello
    assert wait_until(lambda: server.connection_count() == 0, 5.0)
    client = FtpRaw.connect(*server.implicit, implicit=True, context=server.client_context())
    with client:
        client.login()
        assert client.send("NOOP").code == 200
