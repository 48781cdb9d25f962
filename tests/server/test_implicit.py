"""Implicit FTPS (MS-FTPS §3.2.5): TLS before the greeting, refusals, REIN on the same TCP socket."""

from __future__ import annotations

import contextlib
import socket
import ssl

from tests.server.conftest import ServerHandle, StartServer
from tests.support.ftp_raw import FtpRaw


def test_no_byte_before_the_client_hello_then_220_inside_tls(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect(implicit=True, greeting=False)
    client.expect_silence(0.3)
    client.starttls()
    greeting = client.read_reply()
    assert greeting.code == 220
    assert client.tls
    # Exactly one reply precedes the first command: no 234/200 for the implicit AUTH/PBSZ/PROT.
    assert client.send("NOOP").code == 200


def test_security_commands_are_refused_on_implicit_sessions(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect(implicit=True)
    assert client.send("AUTH TLS").code == 534
    assert client.send("AUTH SSL").code == 534
    assert client.send("CCC").code == 534
    assert client.send("PROT C").code == 534  # default policy: protected data only
    assert client.send("PBSZ 0").code == 200  # a harmless repeat
    assert client.send("NOOP").code == 200
    assert client.tls
    client.login()
    assert client.send("CCC").code == 534  # also after login: control stays TLS
    assert client.send("NOOP").code == 200


def test_feat_on_implicit_lists_auth_ssl(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect(implicit=True)
    features = {line.strip() for line in client.expect("FEAT", 211).lines[1:-1]}
    assert "AUTH TLS;SSL;" in features


def test_transfers_are_protected_without_pbsz_or_prot(ftp_server: ServerHandle) -> None:
    (ftp_server.root / "a.txt").write_bytes(b"abc")
    client = ftp_server.connect(implicit=True)
    client.login()
    result = client.transfer("LIST", protect=True)
    assert result.codes == (150, 226), result
    assert result.data_tls and result.session_reused and result.clean_close
    assert b"a.txt" in result.data


def test_prot_c_allowed_by_policy_gives_a_plaintext_data_connection(start_server: StartServer) -> None:
    server: ServerHandle = start_server(policy={"require_protected_data": False})
    (server.root / "a.txt").write_bytes(b"abc")
    client = server.connect(implicit=True)
    client.login()
    assert client.send("PROT C").code == 200  # no PBSZ needed: the implicit PBSZ 0 counts
    result = client.transfer("LIST", protect=False)
    assert result.codes == (150, 226), result
    assert not result.data_tls and b"a.txt" in result.data


def test_rein_then_a_new_handshake_on_the_same_tcp_socket(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect(implicit=True)
    client.login()
    first_session = client.session
    local_port = client.sock.getsockname()[1]
    reply = client.send("REIN")
    assert reply.code == 220
    client.unwrap()  # the server's close_notify must follow the 220
    client.expect_silence(0.3)  # IMPLICIT-WAIT: no plaintext greeting
    client.starttls()  # a full handshake on the same TCP connection
    assert client.sock.getsockname()[1] == local_port
    assert client.read_reply().code == 220  # the new greeting
    assert client.send("PWD").code == 530
    client.login()
    assert client.session is not first_session
    data = b"after rein\n" * 1000
    client.expect("TYPE I", 200)
    client.stor("r.bin", data)  # PROT P again, without PBSZ/PROT
    assert client.retr("r.bin") == data
    assert (ftp_server.root / "r.bin").read_bytes() == data


def _handshake_fails_or_is_dropped(server: ServerHandle, payload: bytes) -> str:
    with socket.create_connection(server.implicit, timeout=10) as sock:
        sock.sendall(payload)
        try:
            while sock.recv(4096):
                pass  # a TLS alert may come before the close
        except ConnectionResetError:
            return "reset"
        return "eof"


def test_tls_garbage_on_the_implicit_port_is_dropped_and_others_are_served(
    ftp_server: ServerHandle,
) -> None:
    healthy = ftp_server.connect(implicit=True)
    assert _handshake_fails_or_is_dropped(ftp_server, b"GET / HTTP/1.0\r\n\r\n") in ("eof", "reset")
    assert _handshake_fails_or_is_dropped(ftp_server, b"\x16\x03\x01\x00\x05hello" + bytes(range(256))) in (
        "eof",
        "reset",
    )
    assert healthy.send("NOOP").code == 200
    other = ftp_server.connect(implicit=True)
    other.login()
    assert other.send("PWD").code == 257


def test_plain_ftp_on_the_implicit_port_gets_no_plaintext_reply(ftp_server: ServerHandle) -> None:
    with socket.create_connection(ftp_server.implicit, timeout=10) as sock:
        sock.sendall(b"USER alice\r\n")
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass
    assert b"331" not in received and b"530" not in received


def test_silent_client_is_dropped_after_the_handshake_timeout(start_server: StartServer) -> None:
    server: ServerHandle = start_server(handshake_timeout=1.0)
    client = server.connect(implicit=True, greeting=False, timeout=15.0)
    assert client.wait_closed() in ("eof", "reset")
    # The server goes on serving.
    assert server.connect(implicit=True).send("NOOP").code == 200


def test_half_finished_handshake_is_dropped_after_the_timeout(start_server: StartServer) -> None:
    server: ServerHandle = start_server(handshake_timeout=1.0)
    context = server.client_context()
    with socket.create_connection(server.implicit, timeout=15) as sock:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.do_handshake()
        sock.sendall(outgoing.read())  # the ClientHello, then nothing more
        try:
            while sock.recv(65536):
                pass  # ServerHello..Finished, then the close (a TimeoutError here fails the test)
        except ConnectionResetError:
            pass


def test_implicit_clients_can_run_side_by_side(ftp_server: ServerHandle) -> None:
    clients: list[FtpRaw] = [ftp_server.login(implicit=True) for _ in range(3)]
    (ftp_server.root / "shared.txt").write_bytes(b"x" * 10)
    for client in clients:
        assert client.send("SIZE shared.txt").lines == ["213 10"]
