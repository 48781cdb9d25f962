"""Explicit FTPS: the PLAIN → TLS part of the security state machine (CONFORMANCE §1.2, §6.1)."""

from __future__ import annotations

import ssl
import warnings

import pytest

from tests.server.conftest import ServerHandle


def test_greeting_is_plaintext_220(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect(greeting=False)
    reply = client.read_reply()
    assert reply.code == 220
    assert not client.tls
    assert client.send("NOOP").code == 200  # still plaintext, nothing else was queued


@pytest.mark.parametrize(
    "command", ["AUTH TLS", "auth tls", "Auth Tls", "AUTH TLS-C", "AUTH SSL", "auth ssl"]
)
def test_auth_starts_tls_on_the_same_socket(ftp_server: ServerHandle, command: str) -> None:
    client = ftp_server.connect()
    reply = client.expect(command, 234)
    client.starttls()
    assert isinstance(client.sock, ssl.SSLSocket)
    assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
    assert reply.code == 234  # never 334: TLS uses no ADAT exchange (RFC 4217 §4.2)
    assert client.send("PBSZ 0").code == 200  # now inside TLS


def test_auth_ssl_means_auth_tls_data_stays_clear_until_prot(ftp_server: ServerHandle) -> None:
    (ftp_server.root / "hello.txt").write_bytes(b"hi")
    client = ftp_server.connect()
    client.auth_tls("SSL")
    assert client.send("PROT P").code == 503  # PBSZ first: the same state as after AUTH TLS
    client.login()
    assert client.transfer("LIST", protect=False).codes == (521,)  # PROT is still C
    client.prot_p()
    assert "hello.txt" in client.list()


def test_auth_tls_p_protects_data_without_pbsz_and_prot(ftp_server: ServerHandle) -> None:
    (ftp_server.root / "hello.txt").write_bytes(b"hi")
    client = ftp_server.connect()
    client.auth_tls("TLS-P")
    client.login()
    result = client.transfer("LIST", protect=True)
    assert result.codes == (150, 226), result
    assert result.data_tls and result.clean_close
    assert b"hello.txt" in result.data


def test_auth_unknown_mechanism_and_missing_argument(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    assert client.send("AUTH GSSAPI").code == 504
    assert client.send("AUTH").code == 501
    client.auth_tls()
    assert client.send("NOOP").code == 200


def test_login_before_auth_is_refused_but_feat_and_auth_work(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    assert client.send("USER alice").code == 530
    assert client.send("PASS secret").code in (503, 530)
    assert client.send("FEAT").code == 211
    client.auth_tls()
    client.login()
    assert client.send("PWD").lines == ['257 "/" is the current directory.']


def test_pbsz_and_prot_sequence(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    assert client.send("PBSZ 0").code == 503  # no security exchange yet
    assert client.send("PROT P").code == 503
    client.auth_tls()
    assert client.send("PROT P").code == 503  # PBSZ must come first
    assert client.send("PBSZ abc").code == 501
    assert client.send("PBSZ 4294967296").code == 501
    reply = client.expect("PBSZ 1024", 200)
    assert "PBSZ=0" in reply.text
    assert client.send("PBSZ 0").code == 200
    assert client.send("PROT S").code == 536
    assert client.send("PROT E").code == 536
    assert client.send("PROT X").code == 504
    assert client.send("PROT C").code == 534  # default policy: protected data only
    assert client.send("PROT P").code == 200


def test_auth_resets_the_login(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    client.auth_tls()
    client.login()
    assert client.send("PWD").code == 257
    assert client.send("AUTH TLS").code == 534  # already negotiated
    assert client.send("NOOP").code == 200  # and the TLS session goes on
    assert client.tls


def test_login_and_pwd_over_tls(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    assert client.send("PWD").lines == ['257 "/" is the current directory.']
    assert client.send("SYST").code == 215


def test_feat_over_tls(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    client.auth_tls()
    reply = client.expect("FEAT", 211)
    assert reply.lines[0].startswith("211-")
    assert reply.lines[-1].lower().startswith("211 end")
    body = reply.lines[1:-1]
    assert body and all(line.startswith(" ") and not line.startswith("  ") for line in body)
    features = {line.strip() for line in body}
    assert {"AUTH TLS;SSL;", "PBSZ", "PROT C;P;", "EPSV", "EPRT", "UTF8"} <= features


def test_plaintext_after_234_instead_of_a_client_hello_drops_the_connection(
    ftp_server: ServerHandle,
) -> None:
    client = ftp_server.connect()
    client.expect("AUTH TLS", 234)
    client.send_line("USER alice")
    assert client.wait_closed(allow_data=True) in ("eof", "reset")  # a TLS alert may come first


def test_commands_pipelined_behind_auth_are_not_run_in_plaintext(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    client.send_raw(b"AUTH TLS\r\nUSER alice\r\n")
    assert client.read_reply().code == 234
    assert client.wait_closed(allow_data=True) in ("eof", "reset")


def test_quit_sends_221_then_close_notify(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    assert client.send("QUIT").code == 221
    assert client.wait_closed() == "close_notify"


def test_quit_in_plaintext(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    assert client.send("QUIT").code == 221
    assert client.wait_closed() == "eof"


def test_tls_below_1_2_is_refused(ftp_server: ServerHandle) -> None:
    context = ftp_server.client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pytest.skip("this OpenSSL cannot offer TLS 1.1 at all")
    client = ftp_server.connect(context=context)
    client.expect("AUTH TLS", 234)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        client.starttls()


@pytest.mark.parametrize("implicit", [False, True])
def test_control_connections_disable_nagle(ftp_server: ServerHandle, implicit: bool) -> None:
    # With Nagle on, a 226 written right after a 150 waits for the client's delayed ACK (40 ms per transfer).
    client = ftp_server.connect(implicit=implicit)

    async def nodelay() -> list[int]:
        import socket

        return [
            conn.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            for conn in ftp_server.server.context.connections  # type: ignore[attr-defined]
        ]

    try:
        assert ftp_server.call(nodelay()) == [1]
    finally:
        client.close()
