"""Leaving TLS on an explicit session: CCC (RFC 4217 §5) and REIN (RFC 4217 §13)."""

from __future__ import annotations

from pyftps.proto.policy import CCCPolicy
from tests.server.conftest import ServerHandle, StartServer


def test_ccc_in_plaintext_is_533(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    assert client.send("CCC").code == 533


def test_ccc_before_login_is_534_and_tls_goes_on(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    client.auth_tls()
    assert client.send("CCC").code == 534
    assert client.send("NOOP").code == 200
    assert client.tls


def test_ccc_refused_by_policy(start_server: StartServer) -> None:
    server = start_server(policy={"ccc": CCCPolicy.NEVER})
    client = server.login()
    assert client.send("CCC").code == 534
    assert client.send("NOOP").code == 200


def test_ccc_after_login_clears_the_control_connection(ftp_server: ServerHandle) -> None:
    (ftp_server.root / "f.txt").write_bytes(b"data")
    client = ftp_server.login()
    reply = client.send("CCC")  # read under TLS
    assert reply.code == 200
    client.unwrap()  # close_notify both ways; completes only if the server sent its own
    assert not client.tls
    assert client.send("NOOP").code == 200  # plaintext on the same TCP connection
    assert client.send("PROT C").code == 533  # protection settings are frozen
    assert client.send("PBSZ 0").code == 533
    assert client.send("CCC").code == 533  # already clear
    assert client.send("AUTH TLS").code == 534
    # PROT was P at CCC time: data connections stay TLS and resume the (old) control session.
    result = client.transfer("LIST", protect=True)
    assert result.codes == (150, 226), result
    assert result.data_tls and result.session_reused and result.clean_close
    assert b"f.txt" in result.data
    assert client.retr("f.txt") == b"data"
    assert client.send("QUIT").code == 221
    assert client.wait_closed() == "eof"


def test_ccc_with_plaintext_sent_right_behind_our_close_notify(ftp_server: ServerHandle) -> None:
    """PROJ (CONFORMANCE §7 item 23): the client need not wait for the server's close_notify."""
    client = ftp_server.login()
    assert client.send("CCC").code == 200
    client.unwrap(then_send=b"NOOP\r\nPWD\r\n")  # plaintext right behind our close_notify
    assert client.read_reply().code == 200
    assert client.read_reply().code == 257


def test_rein_under_tls_answers_inside_tls_then_clears(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    reply = client.send("REIN")
    assert reply.code == 220
    assert client.tls  # the 220 was read inside TLS
    client.unwrap()  # then the server's close_notify
    assert client.send("PBSZ 0").code == 503  # plaintext, no security exchange any more
    assert client.send("PROT P").code == 503
    assert client.send("PWD").code == 530
    assert client.send("USER alice").code == 530  # TLS required again
    # AUTH TLS again, with a full (not resumed) handshake.
    client.auth_tls()
    assert not client.sock.session_reused  # type: ignore[attr-defined]
    client.prot_p()
    client.login()
    data = b"0123456789" * 5000
    client.expect("TYPE I", 200)
    client.stor("after-rein.bin", data)
    assert client.retr("after-rein.bin") == data


def test_rein_in_plaintext_and_after_ccc(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    assert client.send("REIN").code == 220
    assert client.send("NOOP").code == 200
    client.auth_tls()
    client.prot_p()
    client.login()
    assert client.send("CCC").code == 200
    client.unwrap()
    assert client.send("REIN").code == 220  # plaintext reply in CLEARED
    assert client.send("PWD").code == 530
    assert client.send("PBSZ 0").code == 503  # back to PLAIN: the frozen association is gone
    client.auth_tls()
    assert client.send("PBSZ 0").code == 200


def test_rein_drops_login_and_transfer_parameters(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    client.expect("MKD sub", 257)
    client.expect("CWD sub", 250)
    assert client.send("REIN").code == 220
    client.unwrap()
    client.auth_tls()
    client.prot_p()
    client.login()
    assert client.send("PWD").lines == ['257 "/" is the current directory.']
