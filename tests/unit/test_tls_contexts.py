"""Server and client contexts, ticket-free data wrapping and the data-session reuse check."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from pyftps.tls import (
    ReuseVerdict,
    TLSChannel,
    TLSConfigError,
    TLSError,
    client_context,
    contexts,
    data_session_matches,
    ensure_self_signed,
    install_sni_recorder,
    requested_server_name,
    server_context,
    ssl_error_text,
    wrap_control_bio,
    wrap_data_client,
    wrap_data_socket,
)

T = TypeVar("T")


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ensure_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def sctx(cert_pair: tuple[Path, Path]) -> ssl.SSLContext:
    return server_context(*cert_pair)


@pytest.fixture
def cctx(cert_pair: tuple[Path, Path]) -> ssl.SSLContext:
    return client_context(cafile=cert_pair[0])


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    for s in (a, b):
        s.settimeout(5)  # a bug must fail the test, not hang it
    yield a, b
    a.close()
    b.close()


def in_thread(fn: Callable[[], T]) -> Callable[[], T]:
    """Start ``fn`` in a worker thread now; the returned callable joins it and returns its result."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn)
    pool.shutdown(wait=False)
    return lambda: future.result(timeout=10)


def pump(a: TLSChannel, b: TLSChannel) -> None:
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


def control_pair(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> tuple[TLSChannel, TLSChannel]:
    """An in-memory control connection after the greeting, so a TLS 1.3 client holds a ticket."""
    client, server = TLSChannel.client(cctx, "localhost"), TLSChannel.server(sctx)
    for _ in range(10):
        done = client.handshake()
        pump(client, server)
        done = server.handshake() and done
        pump(client, server)
        if done:
            break
    server.write(b"220 ready\r\n")
    pump(client, server)
    assert client.read() == b"220 ready\r\n"
    return client, server


def transfer(
    sctx: ssl.SSLContext,
    cctx: ssl.SSLContext,
    sockets: tuple[socket.socket, socket.socket],
    control_id: bytes | None,
    session: ssl.SSLSession | None,
) -> tuple[ReuseVerdict, bytes, bool]:
    """One data connection over real sockets: the server sends a file; returns the server's verdict."""
    srv_sock, cli_sock = sockets

    def serve() -> ReuseVerdict:
        with wrap_data_socket(sctx, srv_sock) as data:
            data.do_handshake()
            verdict = data_session_matches(control_id, data)
            data.sendall(b"file contents")
            data.unwrap()  # close_notify both ways (RFC 4217 §12.7)
            return verdict

    join = in_thread(serve)
    with wrap_data_client(cctx, cli_sock, server_hostname="localhost", session=session) as data:
        data.do_handshake()
        received = b""
        while chunk := data.recv(65536):
            received += chunk
        reused = bool(data.session_reused)  # None once unwrapped
        data.unwrap()
    return join(), received, reused


# --- contexts -------------------------------------------------------------------------------------


def test_server_context_settings(sctx: ssl.SSLContext) -> None:
    assert sctx.minimum_version == ssl.TLSVersion.TLSv1_2
    for option in (ssl.OP_NO_COMPRESSION, ssl.OP_CIPHER_SERVER_PREFERENCE, ssl.OP_NO_RENEGOTIATION):
        assert sctx.options & option
    assert not sctx.options & ssl.OP_NO_TICKET
    assert sctx.num_tickets == 2
    assert sctx.verify_mode == ssl.CERT_NONE
    tls12 = {c["name"] for c in sctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 and all(name.startswith("ECDHE-") for name in tls12)
    assert all("GCM" in name or "CHACHA20" in name for name in tls12)


def test_server_context_client_certificates_optional(cert_pair: tuple[Path, Path]) -> None:
    ctx = server_context(*cert_pair, client_cafile=cert_pair[0])
    assert ctx.verify_mode == ssl.CERT_OPTIONAL


def test_server_context_errors_name_the_file(cert_pair: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = cert_pair
    missing = tmp_path / "missing.pem"
    with pytest.raises(TLSConfigError, match=r"certificate file '.*missing\.pem'"):
        server_context(missing, key)
    with pytest.raises(TLSConfigError, match=r"private key file '.*missing\.pem'"):
        server_context(cert, missing)
    with pytest.raises(TLSConfigError, match=r"certificate file '.*server\.key'"):
        server_context(key, key)
    other_cert, _ = ensure_self_signed(tmp_path / "other")
    with pytest.raises(TLSConfigError, match="does not match") as info:
        server_context(other_cert, key)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TLSError)
    with pytest.raises(TLSConfigError, match=r"missing\.pem"):
        server_context(cert, key, client_cafile=missing)
    with pytest.raises(TLSConfigError, match="cipher"):
        server_context(cert, key, ciphers="NO-SUCH-CIPHER")
    with pytest.raises(TLSConfigError, match="RFC 8996"):
        server_context(cert, key, minimum_version=ssl.TLSVersion.TLSv1_1)
    assert server_context(cert, key, minimum_version=ssl.TLSVersion.TLSv1_3).minimum_version == (
        ssl.TLSVersion.TLSv1_3
    )


def test_client_context_modes(cert_pair: tuple[Path, Path], tmp_path: Path) -> None:
    default = client_context()
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname
    assert default.minimum_version == ssl.TLSVersion.TLSv1_2
    pinned = client_context(cafile=cert_pair[0])
    assert pinned.verify_mode == ssl.CERT_REQUIRED and pinned.cert_store_stats()["x509"] == 1
    insecure = client_context(insecure=True)
    assert insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname
    with pytest.raises(TLSConfigError, match=r"nope\.pem"):
        client_context(cafile=tmp_path / "nope.pem")
    with pytest.raises(TLSConfigError):
        client_context(minimum_version=ssl.TLSVersion.MINIMUM_SUPPORTED)


def test_sni_recorder_chains_a_handler(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    seen: list[str | None] = []
    install_sni_recorder(sctx, lambda obj, name, ctx: seen.append(name))
    _, server = control_pair(sctx, cctx)
    assert seen == ["localhost"]
    assert requested_server_name(server.ssl_object) == "localhost"


def test_ssl_error_text() -> None:
    err = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    err.reason = "WRONG_VERSION_NUMBER"
    assert ssl_error_text(err) == "peer did not send TLS (wrong version number)"
    err.reason = "SOME_NEW_REASON"
    assert ssl_error_text(err) == "some new reason"


# --- the ticket switch ----------------------------------------------------------------------------


def test_wrap_data_socket_restores_ticket_count(
    sctx: ssl.SSLContext, sockets: tuple[socket.socket, socket.socket]
) -> None:
    with wrap_data_socket(sctx, sockets[0]) as data:
        assert data.server_side
        attrs = vars(data)  # typeshed does not declare these two attributes
        assert attrs["suppress_ragged_eofs"] is False and attrs["do_handshake_on_connect"] is False
    assert sctx.num_tickets == 2
    assert contexts._WRAP_LOCK.acquire(blocking=False)
    contexts._WRAP_LOCK.release()


def test_wrap_control_bio_issues_the_configured_tickets(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    sctx.num_tickets = 0  # as if left behind by a data wrap: the control wrap must not inherit it
    _, server = control_pair(sctx, cctx)
    assert sctx.num_tickets == 2
    with pytest.raises(TLSError):
        wrap_control_bio(sctx, ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True, session=server.session)


def post_handshake_records(
    wrap: Callable[[socket.socket], ssl.SSLSocket],
    cctx: ssl.SSLContext,
    sockets: tuple[socket.socket, socket.socket],
    session: ssl.SSLSession | None = None,
) -> list[bytes]:
    """Every TLS record the server sends after the handshake, up to one b"ping" and a TCP close.

    The client side is a raw ``SSLObject`` so the bytes can be counted: under TLS 1.3 the server
    sends its tickets only after it has the client's Finished, i.e. after the client's handshake
    is complete, so they are all in what follows.
    """
    srv_sock, cli_sock = sockets

    def serve() -> None:
        with wrap(srv_sock) as data:
            data.do_handshake()
            data.sendall(b"ping")
            data.shutdown(socket.SHUT_WR)  # a bare TCP close on purpose: no close_notify record

    join = in_thread(serve)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = cctx.wrap_bio(incoming, outgoing, server_hostname="localhost", session=session)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            cli_sock.sendall(outgoing.read())
            incoming.write(cli_sock.recv(65536))
    cli_sock.sendall(outgoing.read())  # the client's Finished
    raw = b""
    while chunk := cli_sock.recv(65536):
        raw += chunk
    join()
    records = []
    while raw:
        length = int.from_bytes(raw[3:5], "big")
        records.append(raw[: 5 + length])
        raw = raw[5 + length :]
    incoming.write(b"".join(records))
    assert obj.read() == b"ping"  # the parse above is right: all records decrypt to just "ping"
    assert obj.session_reused == (session is not None)
    return records


def test_data_connection_sends_no_tickets(
    sctx: ssl.SSLContext, cctx: ssl.SSLContext, sockets: tuple[socket.socket, socket.socket]
) -> None:
    records = post_handshake_records(lambda s: wrap_data_socket(sctx, s), cctx, sockets)
    assert len(records) == 1  # only the application data record with b"ping"
    assert sctx.num_tickets == 2


def test_resumed_data_connection_sends_no_tickets(
    sctx: ssl.SSLContext, cctx: ssl.SSLContext, sockets: tuple[socket.socket, socket.socket]
) -> None:
    client, _ = control_pair(sctx, cctx)
    records = post_handshake_records(lambda s: wrap_data_socket(sctx, s), cctx, sockets, client.session)
    assert len(records) == 1


def test_plain_wrap_would_send_two_tickets(
    sctx: ssl.SSLContext, cctx: ssl.SSLContext, sockets: tuple[socket.socket, socket.socket]
) -> None:
    """Control for the two tests above: the same measurement does see tickets when they are sent."""

    def plain(s: socket.socket) -> ssl.SSLSocket:
        return sctx.wrap_socket(s, server_side=True, do_handshake_on_connect=False)

    assert len(post_handshake_records(plain, cctx, sockets)) == 3


# --- reuse verdicts -------------------------------------------------------------------------------


def test_tls13_resumed_control_session_is_same_session(
    sctx: ssl.SSLContext, cctx: ssl.SSLContext, sockets: tuple[socket.socket, socket.socket]
) -> None:
    client, server = control_pair(sctx, cctx)
    assert server.version == "TLSv1.3" and server.session is not None
    verdict, received, reused = transfer(sctx, cctx, sockets, server.session.id, client.session)
    assert (verdict, received, reused) == (ReuseVerdict.SAME_SESSION, b"file contents", True)


def test_tls12_resumed_control_session_is_unverified(
    sctx: ssl.SSLContext, cctx: ssl.SSLContext, sockets: tuple[socket.socket, socket.socket]
) -> None:
    cctx.maximum_version = ssl.TLSVersion.TLSv1_2
    client, server = control_pair(sctx, cctx)
    assert server.version == "TLSv1.2" and server.session is not None
    assert server.session.id == b""  # measured: TLS 1.2 with tickets shows no id on the server
    verdict, _, reused = transfer(sctx, cctx, sockets, server.session.id, client.session)
    assert verdict == ReuseVerdict.REUSED_UNVERIFIED and reused


def test_fresh_data_handshake_is_refused(
    sctx: ssl.SSLContext, cctx: ssl.SSLContext, sockets: tuple[socket.socket, socket.socket]
) -> None:
    _, server = control_pair(sctx, cctx)
    assert server.session is not None
    verdict, received, reused = transfer(sctx, cctx, sockets, server.session.id, None)
    assert verdict == ReuseVerdict.REFUSED and not reused and received == b"file contents"


def test_other_connections_ticket_is_other_session(
    sctx: ssl.SSLContext, cctx: ssl.SSLContext, sockets: tuple[socket.socket, socket.socket]
) -> None:
    _, victim = control_pair(sctx, cctx)
    thief, _ = control_pair(sctx, cctx)  # another login on the same server
    assert victim.session is not None
    verdict, _, reused = transfer(sctx, cctx, sockets, victim.session.id, thief.session)
    assert verdict == ReuseVerdict.OTHER_SESSION and reused


def test_first_of_two_tickets_is_other_session(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    """Pins a measured OpenSSL fact: each TLS 1.3 ticket gets its own id; the server keeps the last."""
    client, server = TLSChannel.client(cctx, "localhost"), TLSChannel.server(sctx)
    assert client.handshake() is False
    server.feed(client.pending_output())  # ClientHello
    assert server.handshake() is False
    client.feed(server.pending_output())  # ServerHello ... Finished
    assert client.handshake() is True
    server.feed(client.pending_output())  # client Finished
    assert server.handshake() is True
    tickets = server.pending_output()  # the server's last flight: two NewSessionTicket records
    first_len = 5 + int.from_bytes(tickets[3:5], "big")
    assert server.session is not None
    sessions = []
    for record in (tickets[:first_len], tickets[first_len:]):
        client.feed(record)
        assert client.read() == b""
        assert client.session is not None
        sessions.append(client.session)
    assert sessions[0].id != sessions[1].id
    verdicts = [
        data_session_matches(server.session.id, memory_data(sctx, cctx, session).ssl_object)
        for session in sessions
    ]
    assert verdicts == [ReuseVerdict.OTHER_SESSION, ReuseVerdict.SAME_SESSION]


def memory_data(
    sctx: ssl.SSLContext, cctx: ssl.SSLContext, session: ssl.SSLSession | None, *, tickets: bool = False
) -> TLSChannel:
    """Handshake an in-memory data connection; returns its server end."""
    data_client = TLSChannel.client(cctx, "localhost", session=session)
    data_server = TLSChannel.server(sctx) if tickets else TLSChannel.data_server(sctx)
    for _ in range(5):
        data_client.handshake()
        pump(data_client, data_server)
        data_server.handshake()
        pump(data_client, data_server)
    assert data_server.handshake_complete and data_client.handshake_complete
    return data_server


def test_sans_io_data_server_matches_and_sends_no_tickets(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    client, server = control_pair(sctx, cctx)
    assert server.session is not None
    data_client, data_server = (
        TLSChannel.client(cctx, "localhost", client.session),
        TLSChannel.data_server(sctx),
    )
    data_client.handshake()
    data_server.feed(data_client.pending_output())
    data_server.handshake()
    data_client.feed(data_server.pending_output())
    assert data_client.handshake()
    data_server.feed(data_client.pending_output())
    assert data_server.handshake()
    assert data_server.pending_output() == b""  # a control-style server would send two tickets here
    assert data_session_matches(server.session.id, data_server.ssl_object) == ReuseVerdict.SAME_SESSION
    assert sctx.num_tickets == 2


def test_data_connection_that_issues_tickets_loses_the_id(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    """Pins why data connections must be ticket-free for the check: a new ticket brings a new id."""
    client, server = control_pair(sctx, cctx)
    assert server.session is not None
    data_server = memory_data(sctx, cctx, client.session, tickets=True)
    assert data_server.session_reused
    assert data_session_matches(server.session.id, data_server.ssl_object) == ReuseVerdict.OTHER_SESSION


def test_no_control_id_is_unverified(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    client, _ = control_pair(sctx, cctx)
    data_server = memory_data(sctx, cctx, client.session)
    assert data_session_matches(None, data_server.ssl_object) == ReuseVerdict.REUSED_UNVERIFIED
    assert data_session_matches(b"", data_server.ssl_object) == ReuseVerdict.REUSED_UNVERIFIED


# --- end of data: close_notify versus a bare close -----------------------------------------------


def test_data_socket_tells_truncation_from_close_notify(sctx: ssl.SSLContext, cctx: ssl.SSLContext) -> None:
    for clean in (True, False):
        srv_sock, cli_sock = socket.socketpair()
        srv_sock.settimeout(5)
        cli_sock.settimeout(5)

        def upload(clean: bool = clean, cli_sock: socket.socket = cli_sock) -> None:
            with wrap_data_client(cctx, cli_sock, server_hostname="localhost", session=None) as data:
                data.do_handshake()
                data.sendall(b"upload")
                if clean:
                    data.unwrap()  # returns once the server's close_notify came back
                else:
                    data.shutdown(socket.SHUT_WR)

        join = in_thread(upload)
        with wrap_data_socket(sctx, srv_sock) as data:
            data.do_handshake()
            assert data.recv(100) == b"upload"
            if clean:
                assert data.recv(100) == b""
                data.unwrap()
            else:
                with pytest.raises(ssl.SSLEOFError):
                    data.recv(100)
        join()


def test_concurrent_data_wraps_never_starve_control_connections(
    sctx: ssl.SSLContext, cctx: ssl.SSLContext
) -> None:
    """Data wraps in other threads must not leak num_tickets=0 into a control connection."""
    stop = False

    def churn() -> int:
        count = 0
        while not stop:
            a, b = socket.socketpair()
            with a, b, wrap_data_socket(sctx, a):
                count += 1
        return count

    joins = [in_thread(churn) for _ in range(3)]
    try:
        for _ in range(30):
            client, server = TLSChannel.client(cctx, "localhost"), TLSChannel.server(sctx)
            client.handshake()
            server.feed(client.pending_output())
            server.handshake()
            client.feed(server.pending_output())
            client.handshake()
            server.feed(client.pending_output())
            assert server.handshake()
            flight = server.pending_output()
            assert len(flight) > 0  # the two NewSessionTicket records
            client.feed(flight)
            client.read()
            assert client.session is not None and client.session.has_ticket
    finally:
        stop = True
        wraps = sum(join() for join in joins)
    assert wraps > 0 and sctx.num_tickets == 2
