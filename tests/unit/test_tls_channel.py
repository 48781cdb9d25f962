"""TLSChannel driven in memory: a client and a server channel with the bytes pumped between them."""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path

import pytest

from pyftps.tls import (
    TLSCertificateError,
    TLSChannel,
    TLSHandshakeError,
    TLSStateError,
    TLSTruncatedError,
    client_context,
    ensure_self_signed,
    server_context,
)


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ensure_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def sctx(cert_pair: tuple[Path, Path]) -> ssl.SSLContext:
    return server_context(*cert_pair)


@pytest.fixture
def cctx(cert_pair: tuple[Path, Path]) -> ssl.SSLContext:
    return client_context(cafile=cert_pair[0])


def pump(a: TLSChannel, b: TLSChannel) -> None:
    """Move ciphertext both ways until neither side has anything to send."""
    for _ in range(50):
        moved = False
        for src, dst in ((a, b), (b, a)):
            out = src.pending_output()
            if out:
                dst.feed(out)
                moved = True
        if not moved:
            return
    raise AssertionError("pump did not settle")


def connect(client: TLSChannel, server: TLSChannel) -> None:
    for _ in range(10):
        done = client.handshake()
        pump(client, server)
        done = server.handshake() and done
        pump(client, server)
        if done and client.handshake():
            return
    raise AssertionError("handshake did not complete")


def pair(
    sctx: ssl.SSLContext, cctx: ssl.SSLContext, host: str | None = "localhost"
) -> tuple[TLSChannel, TLSChannel]:
    client, server = TLSChannel.client(cctx, host), TLSChannel.server(sctx)
    connect(client, server)
    return client, server


# --- handshake ------------------------------------------------------------------------------------


def test_handshake_tls13(sctx: ssl.SSLContext, cctx: ssl.SSLContext, cert_pair: tuple[Path, Path]) -> None:
    client, server = pair(sctx, cctx)
    assert client.handshake_complete and server.handshake_complete
    assert client.version == server.version == "TLSv1.3"
    assert client.cipher is not None and client.cipher[1] == "TLSv1.3"
    assert server.sni == "localhost" and client.sni == "localhost"
    assert client.peer_certificate_der == ssl.PEM_cert_to_DER_cert(cert_pair[0].read_text())
    assert server.peer_certificate_der is None  # no client certificate requested
    assert not client.session_reused and not server.session_reused
    assert server.server_side and not client.server_side


def test_handshake_tls12(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    cctx.maximum_version = ssl.TLSVersion.TLSv1_2
    client, server = pair(sctx, cctx)
    assert client.version == server.version == "TLSv1.2"
    assert server.cipher is not None
    assert server.cipher[0].startswith("ECDHE-") and (
        "GCM" in server.cipher[0] or "CHACHA20" in server.cipher[0]
    )


def test_client_session_gets_ticket_only_after_reading(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    client, server = pair(sctx, cctx)
    assert client.session is not None and not client.session.has_ticket
    server.write(b"220 ready\r\n")
    pump(client, server)
    assert client.read() == b"220 ready\r\n"
    assert client.session is not None and client.session.has_ticket
    again = TLSChannel.client(cctx, "localhost", session=client.session)
    server2 = TLSChannel.server(sctx)
    connect(again, server2)
    assert again.session_reused and server2.session_reused


def test_sni_absent_for_ip_address_and_without_hostname(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    _, server = pair(sctx, cctx, host="127.0.0.1")  # the certificate has IP SANs; IPs are never sent as SNI
    assert server.sni is None
    insecure = client_context(insecure=True)
    _, server = pair(sctx, insecure, host=None)
    assert server.sni is None


def test_garbage_client_hello_is_a_handshake_error(sctx: ssl.SSLContext) -> None:
    server = TLSChannel.server(sctx)
    server.feed(b"USER anonymous\r\n")
    with pytest.raises(TLSHandshakeError, match="did not send TLS"):
        server.handshake()
    with pytest.raises(TLSStateError):
        server.handshake()
    with pytest.raises(TLSStateError):
        server.read()


def test_eof_during_handshake(sctx: ssl.SSLContext) -> None:
    server = TLSChannel.server(sctx)
    assert server.handshake() is False
    server.feed_eof()
    with pytest.raises(TLSHandshakeError, match="closed during"):
        server.handshake()
    assert server.truncated


def test_tls11_only_client_is_refused(sctx: ssl.SSLContext) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname = False
        old.verify_mode = ssl.CERT_NONE
        old.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 needs level 0 to even offer TLS 1.1
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    client, server = TLSChannel.client(old, "localhost"), TLSChannel.server(sctx)
    assert client.handshake() is False
    server.feed(client.pending_output())
    with pytest.raises(TLSHandshakeError, match=r"below TLS 1\.2"):
        server.handshake()
    alert = server.pending_output()
    assert alert[0] == 0x15 and alert[-2:] == b"\x02\x46"  # fatal protocol_version, still sent
    client.feed(alert)
    with pytest.raises(TLSHandshakeError):
        client.handshake()


def test_untrusted_server_name_is_a_certificate_error(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    client, server = TLSChannel.client(cctx, "ftp.invalid"), TLSChannel.server(sctx)
    with pytest.raises(TLSCertificateError, match=r"ftp\.invalid"):
        connect(client, server)
    server.feed(client.pending_output())  # the client's alert
    with pytest.raises(TLSHandshakeError):
        server.handshake()


def test_use_before_handshake_is_a_state_error(sctx: ssl.SSLContext) -> None:
    server = TLSChannel.server(sctx)
    for call in (server.read, lambda: server.write(b"x"), server.leftover):
        with pytest.raises(TLSStateError):
            call()
    assert server.peer_certificate_der is None
    server.start_close()  # nothing to close yet
    assert server.try_finish_close() and server.pending_output() == b""


# --- data -----------------------------------------------------------------------------------------


def test_data_both_ways_across_many_records(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    client, server = pair(sctx, cctx)
    big = bytes(range(256)) * 1000  # 256 000 bytes: 16 records
    client.write(big)
    server.write(b"150 ok\r\n")
    server.write(b"")  # no-op
    pump(client, server)
    assert server.read() == big
    assert client.read() == b"150 ok\r\n"
    assert server.read() == b"" and not server.peer_closed


def test_partial_record_waits_for_the_rest(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    client, server = pair(sctx, cctx)
    client.write(b"PBSZ 0\r\n")
    record = client.pending_output()
    server.feed(record[:7])
    assert server.read() == b""
    server.feed(record[7:])
    assert server.read() == b"PBSZ 0\r\n"


# --- closing: CCC, REIN, truncation ---------------------------------------------------------------


def test_ccc_then_plaintext_both_directions(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    client, server = pair(sctx, cctx)
    server.write(b"200 CCC ok\r\n")
    server.start_close()
    server.start_close()  # idempotent: one close_notify only
    # The server's close_notify and the plaintext it writes next reach the client in one segment.
    client.feed(server.pending_output() + b"220 plain from server\r\n")
    assert client.read() == b"200 CCC ok\r\n"
    assert client.peer_closed and not client.truncated
    assert client.read() == b""
    assert client.try_finish_close()  # ours is sent now, the peer's was already here
    assert client.leftover() == b"220 plain from server\r\n"
    client.feed(b"more\r\n")  # later plaintext, after the TLS session ended
    assert client.leftover() == b"more\r\n"
    server.feed(client.pending_output() + b"USER bob\r\n")
    assert server.try_finish_close()
    assert server.peer_closed
    assert server.leftover() == b"USER bob\r\n"
    assert server.pending_output() == b""
    with pytest.raises(TLSStateError):
        server.write(b"x")


def test_close_waits_for_the_peer_and_keeps_its_last_data(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    client, server = pair(sctx, cctx)
    client.write(b"NOOP\r\n")
    server.feed(client.pending_output())  # not read yet when the server starts closing
    server.start_close()
    assert server.try_finish_close() is False
    client.feed(server.pending_output())
    client.write(b"QUIT\r\n")  # the client may still send before answering with close_notify
    client.start_close()
    server.feed(client.pending_output())
    assert server.try_finish_close() is True
    assert server.read() == b"NOOP\r\nQUIT\r\n"
    assert client.read() == b"" and client.try_finish_close() and client.peer_closed


def test_rein_on_implicit_session_second_handshake_same_stream(
    sctx: ssl.SSLContext, cctx: ssl.SSLContext
) -> None:
    client, server = pair(sctx, cctx)
    server.write(b"220 REIN ok\r\n")
    server.start_close()
    client.feed(server.pending_output())
    assert client.read() == b"220 REIN ok\r\n" and client.peer_closed
    assert client.try_finish_close()
    assert client.leftover() == b""
    # Per MS-FTPS §3.1.5.3 the client starts a new handshake at once: its close_notify and the
    # new ClientHello arrive together.
    client2 = TLSChannel.client(cctx, "localhost")
    assert client2.handshake() is False
    server.feed(client.pending_output() + client2.pending_output())
    assert server.try_finish_close()
    server2 = TLSChannel.server(sctx)
    server2.feed(server.leftover())
    connect(client2, server2)
    server2.write(b"220 welcome again\r\n")
    pump(client2, server2)
    assert client2.read() == b"220 welcome again\r\n"


def test_bare_eof_is_truncation_not_close(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    client, server = pair(sctx, cctx)
    client.write(b"last bytes")
    server.feed(client.pending_output())
    server.feed_eof()
    server.feed_eof()  # idempotent
    assert server.read() == b"last bytes"
    assert server.truncated and not server.peer_closed
    assert server.read() == b""
    with pytest.raises(TLSTruncatedError):
        server.try_finish_close()
    with pytest.raises(TLSStateError):
        server.feed(b"x")
    with pytest.raises(TLSStateError):
        server.leftover()


def test_clean_close_then_eof_is_not_truncation(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    client, server = pair(sctx, cctx)
    client.write(b"data")
    client.start_close()
    server.feed(client.pending_output())
    server.feed_eof()
    assert server.read() == b"data"
    assert server.peer_closed and not server.truncated
    assert server.try_finish_close()


def test_corrupt_record_is_a_protocol_error(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    from pyftps.tls import TLSProtocolError

    client, server = pair(sctx, cctx)
    client.write(b"RETR x\r\n")
    record = bytearray(client.pending_output())
    record[-1] ^= 1
    server.feed(bytes(record))
    with pytest.raises(TLSProtocolError, match=r"bad MAC"):
        server.read()
    assert server.pending_output()  # the fatal alert is still there to send
