"""Connection floods beyond the limits, and memory back to its level after 200 idle TLS sessions (issue 4).

Limits ``max_per_ip=5, max_total=20``: 50 connections from one address (both ports) leave exactly 5
in, then 50 more from ten other loopback addresses fill the server to exactly 20; everything beyond
gets ``421`` (explicit) or a bare close (implicit, where no plaintext byte may be sent) and is closed.
A normal client works again once the flood is gone.

Memory is measured in-process with ``tracemalloc`` (every Python allocation of the server's loop and
worker threads, and of this test's clients, which are dropped before the last reading) and RSS from
``/proc/self/statm`` for the report. The assertion is a leak check with a generous margin, not a
speed or footprint target.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import ssl
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from pyftps.server.guard import ConnectionLimits
from tests.robustness.helpers import read_until_closed, sha256, wait_until
from tests.server.conftest import ServerHandle, StartServer
from tests.support.ftp_raw import FtpRaw

MAX_PER_IP = 5
MAX_TOTAL = 20
IDLE_SESSIONS = 200
LEAK_MARGIN = 2 * 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def closing_all(socks: list[socket.socket]) -> Iterator[list[socket.socket]]:
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def attempt(server: ServerHandle, *, implicit: bool, source: str) -> tuple[str, socket.socket]:
    """Open one connection; ``("in", sock)`` if the server took it, ``("refused", sock)`` if not."""
    address = server.implicit if implicit else server.explicit
    sock = socket.create_connection(address, timeout=10, source_address=(source, 0))
    if implicit:
        tls = server.client_context().wrap_socket(
            sock, server_hostname="127.0.0.1", do_handshake_on_connect=False
        )
        try:
            tls.do_handshake()
        except (ssl.SSLEOFError, ConnectionError):
            return "refused", tls  # closed at once: not a plaintext byte on the implicit port
        tls.settimeout(10)
        greeting = tls.recv(1024)
        assert greeting.startswith(b"220 "), greeting
        return "in", tls
    first = sock.recv(1024)
    if first.startswith(b"421 "):
        assert b"Too many connections" in first, first
        _, rest = read_until_closed(sock, 10.0)  # and closed by the server
        assert rest == b"", rest
        return "refused", sock
    assert first.startswith(b"220 "), first
    return "in", sock


def flood(server: ServerHandle, count: int, sources: list[str]) -> tuple[list[socket.socket], int]:
    """``count`` connections round-robin over ``sources``, every fifth one implicit."""
    held: list[socket.socket] = []
    refused = 0
    for i in range(count):
        verdict, sock = attempt(server, implicit=i % 5 == 4, source=sources[i % len(sources)])
        if verdict == "in":
            held.append(sock)
        else:
            refused += 1
            sock.close()
    return held, refused


def test_connection_flood_beyond_the_limits(start_server: StartServer, record_property: Any) -> None:
    server = start_server(
        limits=ConnectionLimits(max_total=MAX_TOTAL, max_per_ip=MAX_PER_IP, max_per_user=10)
    )
    held: list[socket.socket] = []
    with closing_all(held):
        one_address, refused_one = flood(server, 50, ["127.0.0.1"])
        held += one_address
        assert (len(one_address), refused_one) == (MAX_PER_IP, 50 - MAX_PER_IP)
        others = [f"127.0.0.{n}" for n in range(2, 12)]
        many, refused_many = flood(server, 50, others)
        held += many
        assert len(held) == MAX_TOTAL and refused_many == 50 - (MAX_TOTAL - MAX_PER_IP)
        assert server.connection_count() == MAX_TOTAL
        late, _ = flood(server, 3, ["127.0.0.99"])
        assert late == []  # full: a fresh address is refused too
        counter = server.server.context.counter.snapshot()
        assert counter.total == MAX_TOTAL
    record_property("flood_attempts", 103)
    record_property("flood_held", MAX_TOTAL)
    assert wait_until(lambda: server.connection_count() == 0, 10.0), server.connection_count()
    assert server.server.context.counter.snapshot().total == 0
    for source in ("127.0.0.1", "127.0.0.2"):
        sock = socket.create_connection(server.explicit, timeout=10, source_address=(source, 0))
        with sock:
            assert sock.recv(1024).startswith(b"220 ")
    client = server.login()
    body = os.urandom(100_000)
    client.stor("after-flood.bin", body)
    assert sha256(client.retr("after-flood.bin")) == sha256(body)


def measure() -> tuple[int, int]:
    for _ in range(3):
        gc.collect()
    return tracemalloc.get_traced_memory()[0], rss_bytes()


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """pytest keeps every captured log record until the test ends: at INFO (which another test may
    have left on the root logger) that is ~14 KiB per session and would read as a server leak."""
    logger = logging.getLogger("pyftps")
    saved = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(saved)


@pytest.mark.usefixtures("quiet_logs")
def test_memory_returns_to_its_level_after_200_idle_tls_sessions(
    start_server: StartServer, record_property: Any
) -> None:
    server = start_server(limits=ConnectionLimits(max_total=None, max_per_ip=None, max_per_user=None))
    context = server.client_context()
    # Warm up every path the measured sessions take (lazy imports, caches, pool threads).
    for implicit in (False, True):
        for _ in range(3):
            client = server.login(implicit=implicit)
            client.transfer("LIST")
            assert client.send("QUIT").code == 221
            client.wait_closed()
    assert wait_until(lambda: server.connection_count() == 0, 10.0)
    was_tracing = tracemalloc.is_tracing()
    tracemalloc.start()
    try:
        before, rss_before = measure()
        snapshot_before = tracemalloc.take_snapshot()
        sessions: list[FtpRaw] = []
        try:
            for i in range(IDLE_SESSIONS):
                implicit = i % 2 == 1
                host, port = server.implicit if implicit else server.explicit
                client = FtpRaw.connect(host, port, implicit=implicit, context=context)
                sessions.append(client)
                if not implicit:
                    client.auth_tls()
                    client.prot_p()
                if i % 4 < 2:
                    client.login()
                client.expect("NOOP", 200)
            assert server.connection_count() == IDLE_SESSIONS
            during, rss_during = measure()
            for i, client in enumerate(sessions):
                if i % 2:
                    assert client.send("QUIT").code == 221
                    client.wait_closed()
                client.close()
        finally:
            for client in sessions:
                client.close()
            sessions.clear()
        assert wait_until(lambda: server.connection_count() == 0, 10.0), server.connection_count()
        assert server.server.context.counter.snapshot().total == 0
        after, rss_after = measure()
        growth = after - before
        figures = {
            "traced_before": before,
            "traced_during": during,
            "traced_after": after,
            "rss_before": rss_before,
            "rss_during": rss_during,
            "rss_after": rss_after,
        }
        for name, value in figures.items():
            record_property(name, value)
        print(
            f"\nmemory with {IDLE_SESSIONS} idle TLS sessions: traced {before / 1024:.0f} -> "
            f"{during / 1024:.0f} -> {after / 1024:.0f} KiB; RSS {rss_before / 2**20:.1f} -> "
            f"{rss_during / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB"
        )
        if growth >= LEAK_MARGIN:
            top = tracemalloc.take_snapshot().compare_to(snapshot_before, "lineno")[:15]
            pytest.fail(
                f"{growth} bytes still allocated after the sessions closed:\n" + "\n".join(map(str, top))
            )
        assert during - before > 0  # the measurement saw the sessions at all
    finally:
        if not was_tracing:
            tracemalloc.stop()
