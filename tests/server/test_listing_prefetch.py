"""The data worker makes a listing's first batches while the data connection's TLS handshake is still
running (in the thread that started it at accept time), bounded, and a listing that fails meanwhile
never closes the socket under that thread.

Real TLS over a socket pair; the client holds its ClientHello back until the listing has produced
batches, so the tests need no timing: without the prefetch they would block (and fail at a timeout).
"""

from __future__ import annotations

import concurrent.futures
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyftps.config import ReusePolicy
from pyftps.proto.actions import Transfer, TransferKind, TransferOutcome
from pyftps.server import worker as worker_module
from pyftps.server.worker import DataWorker, TLSSettings
from pyftps.storage.base import Unavailable
from pyftps.tls.contexts import server_context, wrap_data_socket

WAIT = 30.0  # a guard against hanging, never a measurement
BATCH = b"x" * 1000 + b"\r\n"


@pytest.fixture
def context(server_cert: tuple[Path, Path]) -> ssl.SSLContext:
    return server_context(*server_cert)


def client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Pair:
    """Server half with its handshake running in a pool thread (as at accept time), client half idle."""

    def __init__(self, context: ssl.SSLContext, pool: concurrent.futures.ThreadPoolExecutor) -> None:
        server, self.client = socket.socketpair()
        self.server = wrap_data_socket(context, server)
        self.server.settimeout(WAIT)
        self.client.settimeout(WAIT)
        self.handshake = pool.submit(self.server.do_handshake)
        self.context = context

    def worker(self, source: Iterator[bytes]) -> DataWorker:
        return DataWorker(
            self.server,
            Transfer(TransferKind.LIST, "/", protect=True),
            handshake=self.handshake,
            source=source,
            tls=TLSSettings(self.context, None, ReusePolicy.OFF, WAIT),
            buffer_size=64 * 1024,
            idle_timeout=WAIT,
        )

    def receive_all(self) -> bytes:
        tls = client_context().wrap_socket(self.client)
        received = bytearray()
        while chunk := tls.recv(65536):
            received += chunk
        tls.unwrap()
        return bytes(received)


@pytest.fixture
def pool() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(4) as executor:
        yield executor


def test_batches_are_made_before_the_client_starts_tls(
    context: ssl.SSLContext, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    pair = Pair(context, pool)
    made = threading.Event()

    def listing() -> Iterator[bytes]:
        yield BATCH
        yield BATCH
        made.set()  # only reachable before the handshake if the worker prefetches
        yield BATCH

    outcome = pool.submit(pair.worker(listing()).run)
    assert made.wait(WAIT)
    assert not pair.handshake.done()  # the client has not even sent its ClientHello
    assert pair.receive_all() == BATCH * 3
    assert outcome.result(WAIT) == TransferOutcome(len(BATCH) * 3)


def test_a_listing_longer_than_the_prefetch_streams_the_rest(
    context: ssl.SSLContext, pool: concurrent.futures.ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "PREFETCH_LIMIT", len(BATCH) * 3)
    pair = Pair(context, pool)
    made = 0
    reached = threading.Event()

    def listing() -> Iterator[bytes]:
        nonlocal made
        for _ in range(10):
            made += 1
            if made == 3:
                reached.set()
            yield BATCH

    outcome = pool.submit(pair.worker(listing()).run)
    assert reached.wait(WAIT)
    pending = pool.submit(pair.receive_all)
    assert pending.result(WAIT) == BATCH * 10
    assert outcome.result(WAIT).bytes_done == len(BATCH) * 10


def test_bounded_prefetch_stops_at_the_limit(
    context: ssl.SSLContext, pool: concurrent.futures.ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "PREFETCH_LIMIT", len(BATCH) * 3)
    pair = Pair(context, pool)
    pulled = 0

    def listing() -> Iterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield BATCH

    data_worker = pair.worker(listing())
    data_worker._prefetch()  # the client never starts TLS here: only the limit stops it
    assert pulled == 3 and not pair.handshake.done()
    pair.client.close()
    with pytest.raises((OSError, ssl.SSLError)):
        pair.handshake.result(WAIT)
    pair.server.close()


def test_a_listing_failing_during_the_handshake_waits_for_it_before_closing(
    context: ssl.SSLContext, pool: concurrent.futures.ThreadPoolExecutor
) -> None:
    pair = Pair(context, pool)

    def listing() -> Iterator[bytes]:
        yield BATCH
        raise Unavailable("/: storage unavailable")

    outcome = pool.submit(pair.worker(listing()).run).result(WAIT)
    assert outcome.code == 451 and "unavailable" in outcome.text
    assert pair.handshake.done()  # settled (it failed: the worker shut the socket) before the close
    assert pair.server.fileno() == -1
    assert pair.client.recv(1) == b""  # the client sees the connection end, never a hang
    pair.client.close()
