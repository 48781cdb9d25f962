"""TLSChannel.read() returns only when nothing is buffered: records split, batched or followed by EOF."""

from __future__ import annotations

import ssl

import pytest

from pyftps.tls import TLSChannel, client_context, ensure_self_signed, server_context


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = ensure_self_signed(tmp_path_factory.mktemp("tls"))
    return server_context(cert, key), client_context(cafile=cert)


def pair(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> tuple[TLSChannel, TLSChannel]:
    """A client and a server channel with the handshake done and the tickets delivered."""
    client, server = TLSChannel.client(cctx, "localhost"), TLSChannel.server(sctx)
    for _ in range(10):
        client.handshake()
        server.feed(client.pending_output())
        server.handshake()
        client.feed(server.pending_output())
        if client.handshake() and server.handshake_complete:
            server.feed(client.pending_output())
            client.read()  # takes the tickets
            return client, server
    raise AssertionError("handshake did not complete")


def test_a_record_split_over_many_feeds_is_read_once_complete(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    client, server = pair(*contexts)
    client.write(b"USER alice\r\n")
    record = client.pending_output()
    for i in range(len(record) - 1):  # OpenSSL keeps the partial record; the BIO is empty each time
        server.feed(record[i : i + 1])
        assert server.read() == b""
    server.feed(record[-1:])
    assert server.read() == b"USER alice\r\n"
    assert server.read() == b""


def test_several_records_in_one_feed_are_all_read(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    client, server = pair(*contexts)
    for line in (b"USER alice\r\n", b"PASS secret\r\n", b"PWD\r\n"):
        client.write(line)
    server.feed(client.pending_output())
    assert server.read() == b"USER alice\r\nPASS secret\r\nPWD\r\n"


def test_data_then_close_notify_in_one_feed(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    client, server = pair(*contexts)
    client.write(b"QUIT\r\n")
    client.start_close()
    server.feed(client.pending_output())
    assert server.read() == b"QUIT\r\n"
    assert server.peer_closed and not server.truncated


def test_data_then_bare_eof_is_read_and_reported_truncated(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    client, server = pair(*contexts)
    client.write(b"NOOP\r\n")
    server.feed(client.pending_output())
    assert server.read() == b"NOOP\r\n"
    server.feed_eof()
    assert server.read() == b""
    assert server.truncated and not server.peer_closed


def test_nothing_to_read_right_after_the_handshake(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    client, server = pair(*contexts)
    assert server.read() == b"" and client.read() == b""
    assert not (server.peer_closed or server.truncated or client.peer_closed or client.truncated)
