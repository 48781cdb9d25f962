"""Timeouts, limits and failures around data connections; several sessions at once."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading

import pytest

from pyftps.server.guard import BanPolicy, ConnectionLimits
from tests.server.conftest import ServerHandle, StartServer


def test_idle_control_connection_gets_421(start_server: StartServer) -> None:
    server = start_server(policy={"idle_timeout": 0.5})
    client = server.login()
    reply = client.read_reply()  # unsolicited: the server gives up on us
    assert reply.code == 421
    assert client.wait_closed() == "close_notify"


def test_stalled_download_ends_with_426_after_the_data_idle_timeout(start_server: StartServer) -> None:
    server = start_server(data_idle_timeout=1.0)
    with open(server.root / "big.bin", "wb") as big:
        big.truncate(50 * 1024 * 1024)
    client = server.login()
    plan = client.plan("epsv")
    sock = client.open_tcp(plan)
    assert client.send("RETR big.bin").code == 150
    data = client.secure_data(sock)  # handshake done, then we read nothing at all
    try:
        assert client.read_reply().code == 426
    finally:
        data.close()
    assert client.send("NOOP").code == 200


def test_data_connection_that_never_starts_tls_is_522(start_server: StartServer) -> None:
    server = start_server(handshake_timeout=1.0)
    client = server.login()
    plan = client.plan("epsv")
    with client.open_tcp(plan):  # TCP only: no ClientHello ever comes
        assert client.send("LIST").code == 150
        assert client.read_reply().code == 522
    assert client.transfer("LIST").codes == (150, 226)


def test_pasv_without_a_data_connection_times_out_with_425(start_server: StartServer) -> None:
    server = start_server(data_connect_timeout=0.5)
    client = server.login()
    client.pasv()
    assert client.send("LIST").code == 425
    assert client.send("NOOP").code == 200


def test_port_to_a_closed_port_is_425(ftp_server: ServerHandle) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nothing listens there once it is closed
    client = ftp_server.login()
    client.expect(f"PORT 127,0,0,1,{closed_port >> 8},{closed_port & 0xFF}", 200)
    assert client.send("LIST").code == 425
    assert client.send("NOOP").code == 200


def test_abor_during_an_upload_discards_the_file(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    plan = client.plan("epsv")
    sock = client.open_tcp(plan)
    assert client.send("STOR partial.bin").code == 150
    data = client.secure_data(sock)
    try:
        data.sendall(os.urandom(100_000))  # then nothing: the upload is still running
        client.send_raw(b"\xff\xf4\xff\xf2ABOR\r\n")
        assert [client.read_reply().code, client.read_reply().code] == [426, 226]
    finally:
        data.close()
    assert not (ftp_server.root / "partial.bin").exists()
    assert [n for n in os.listdir(ftp_server.root) if n.startswith(".pyftps-upload-")] == []
    assert client.send("NOOP").code == 200


def test_abor_before_the_data_handshake(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    plan = client.plan("epsv")
    with client.open_tcp(plan):  # TCP is up, the server waits for our ClientHello
        assert client.send("LIST").code == 150
        client.send_line("ABOR")
        assert [client.read_reply().code, client.read_reply().code] == [426, 226]
    assert client.transfer("LIST").codes == (150, 226)


def test_client_that_ignores_rein_close_notify_is_dropped(start_server: StartServer) -> None:
    server = start_server(tls_close_timeout=0.5)
    client = server.connect(implicit=True)
    assert client.send("REIN").code == 220
    # We never answer the server's close_notify: it gives up after tls_close_timeout and closes TCP.
    with socket.socket(fileno=os.dup(client.sock.fileno())) as raw:
        raw.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            while raw.recv(65536):
                pass  # the rest of the server's close_notify, if not read yet


def test_stopping_the_server_mid_transfer(ftp_server: ServerHandle) -> None:
    with open(ftp_server.root / "big.bin", "wb") as big:
        big.truncate(50 * 1024 * 1024)
    client = ftp_server.login()
    plan = client.plan("epsv")
    sock = client.open_tcp(plan)
    assert client.send("RETR big.bin").code == 150
    data = client.secure_data(sock)
    assert data.recv(65536)
    ftp_server.call(ftp_server.server.stop())
    with data:
        try:
            while data.recv(1024 * 1024):
                pass
        except (ssl.SSLError, ConnectionError):
            pass
    assert client.wait_closed(allow_data=True) in ("close_notify", "eof", "reset")
    with pytest.raises(OSError):
        socket.create_connection(ftp_server.explicit, timeout=5).close()


def test_commands_sent_during_a_transfer_wait_for_it(ftp_server: ServerHandle) -> None:
    body = os.urandom(3 * 1024 * 1024)
    (ftp_server.root / "f.bin").write_bytes(body)
    client = ftp_server.login()
    plan = client.plan("epsv")
    sock = client.open_tcp(plan)
    assert client.send("RETR f.bin").code == 150
    client.send_raw(b"NOOP\r\nPWD\r\n")  # queued behind the transfer (RFC 959 §4.1.1)
    data = client.secure_data(sock)
    received = b""
    while chunk := data.recv(1024 * 1024):
        received += chunk
    data.unwrap()
    data.close()
    assert received == body
    assert [client.read_reply().code for _ in range(3)] == [226, 200, 257]


def test_quit_during_a_transfer_waits_for_it(ftp_server: ServerHandle) -> None:
    body = os.urandom(3 * 1024 * 1024)
    (ftp_server.root / "f.bin").write_bytes(body)
    client = ftp_server.login()
    plan = client.plan("epsv")
    sock = client.open_tcp(plan)
    assert client.send("RETR f.bin").code == 150
    client.send_line("QUIT")  # RFC 959 §4.1.1: the transfer completes first
    data = client.secure_data(sock)
    received = b""
    while chunk := data.recv(1024 * 1024):
        received += chunk
    data.unwrap()
    data.close()
    assert received == body
    assert [client.read_reply().code, client.read_reply().code] == [226, 221]
    assert client.wait_closed() == "close_notify"


def test_client_dropping_the_data_connection_mid_download_gets_426(ftp_server: ServerHandle) -> None:
    with open(ftp_server.root / "big.bin", "wb") as big:
        big.truncate(50 * 1024 * 1024)
    client = ftp_server.login()
    plan = client.plan("epsv")
    sock = client.open_tcp(plan)
    assert client.send("RETR big.bin").code == 150
    data = client.secure_data(sock)
    assert data.recv(65536)
    data.close()  # no close_notify, unread data: the server's next write fails
    assert client.read_reply().code == 426
    assert client.send("NOOP").code == 200


def test_connection_limit(start_server: StartServer) -> None:
    server = start_server(limits=ConnectionLimits(max_total=2))
    first, second = server.connect(), server.connect(implicit=True)
    with socket.create_connection(server.explicit, timeout=10) as third:
        assert third.recv(1024).startswith(b"421 ")
    with socket.create_connection(server.implicit, timeout=10) as fourth:
        assert fourth.recv(1024) == b""  # implicit: not a plaintext byte, just closed
    assert first.send("NOOP").code == 200 and second.send("NOOP").code == 200
    second.send("QUIT")
    assert second.wait_closed() == "close_notify"
    # A freed slot can be used again (the server forgets closed sessions).
    server.clients.remove(second)
    second.close()
    assert server.connect().send("NOOP").code == 200


def test_per_user_session_limit(start_server: StartServer) -> None:
    server = start_server(limits=ConnectionLimits(max_per_user=1))
    alice = server.login()
    second = server.connect(implicit=True)
    second.expect("USER alice", 331)
    assert second.send("PASS secret").code == 530
    second.login("bob")
    assert alice.send("QUIT").code == 221
    alice.wait_closed()
    server.clients.remove(alice)
    alice.close()
    second.login("alice")  # the slot was released with the session that held it
    assert second.send("PWD").code == 257


def test_repeated_failures_ban_the_address(start_server: StartServer) -> None:
    server = start_server(bans=BanPolicy(max_failures=2))
    first = server.connect(implicit=True)
    first.expect("USER alice", 331)
    first.expect("PASS wrong", 530)
    second = server.connect(implicit=True)
    second.expect("USER alice", 331)
    assert second.send("PASS wrong").code == 421  # this failure triggers the ban
    assert second.wait_closed() == "close_notify"
    with socket.create_connection(server.explicit, timeout=10) as late:
        assert late.recv(1024).startswith(b"421 ")  # refused at connect time
    first.expect("USER alice", 331)
    assert first.send("PASS secret").code == 421  # even the right password, even on an old connection


def test_parallel_sessions_transfer_independently(ftp_server: ServerHandle) -> None:
    bodies = {f"p{i}.bin": os.urandom(1024 * 1024 + i) for i in range(4)}
    clients = {name: ftp_server.login(implicit=i % 2 == 1) for i, name in enumerate(bodies)}
    failures: list[BaseException] = []

    def work(name: str) -> None:
        try:
            client = clients[name]
            client.stor(name, bodies[name], mode="epsv" if name[1] in "02" else "port")
            assert client.retr(name, mode="pasv") == bodies[name]
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=work, args=(name,)) for name in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    for name, body in bodies.items():
        assert (ftp_server.root / name).read_bytes() == body


def test_a_session_ticket_does_not_cross_servers(start_server: StartServer) -> None:
    one, two = start_server(), start_server()
    context = one.client_context()  # one client context: sessions are per context
    first = one.login(context=context)
    session = first.session
    assert session is not None
    client = two.connect(context=context)
    client.expect("AUTH TLS", 234)
    client.starttls(session=session)  # offered, but the other server cannot resume it
    assert isinstance(client.sock, ssl.SSLSocket) and not client.sock.session_reused
    client.prot_p()
    client.login()
    assert client.transfer("LIST").session_reused is True  # its own session resumes


@pytest.mark.parametrize("implicit", [False, True])
def test_many_short_sessions_leave_nothing_behind(ftp_server: ServerHandle, implicit: bool) -> None:
    for _ in range(15):
        client = ftp_server.login(implicit=implicit)
        client.transfer("LIST")
        assert client.send("QUIT").code == 221
        client.wait_closed()
        ftp_server.clients.remove(client)
        client.close()
    # Teardown checks that the server saw every connection go.
