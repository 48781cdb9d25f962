"""Login protection (RFC 2577 §5, §7) and hostile or malformed control input."""

from __future__ import annotations

import time

from tests.server.conftest import ServerHandle, StartServer


def test_wrong_password_is_530_after_the_delay(start_server: StartServer) -> None:
    delay = 0.3
    server = start_server(policy={"login_failure_delay": delay})
    client = server.connect()
    client.auth_tls()
    client.expect("USER alice", 331)
    started = time.monotonic()
    reply = client.send("PASS wrong")
    elapsed = time.monotonic() - started
    assert reply.code == 530
    assert elapsed >= delay * 0.9  # a lower bound only: the server sleeps before it answers
    client.login()  # the right password still works afterwards


def test_commands_sent_during_the_delay_wait_for_it(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    client.auth_tls()
    client.send_raw(b"USER alice\r\nPASS wrong\r\nNOOP\r\nUSER alice\r\nPASS secret\r\nPWD\r\n")
    codes = [client.read_reply().code for _ in range(6)]
    assert codes == [331, 530, 200, 331, 230, 257]


def test_three_failures_give_421_and_close(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    client.auth_tls()
    for _ in range(2):
        client.expect("USER alice", 331)
        assert client.send("PASS wrong").code == 530
    client.expect("USER alice", 331)
    assert client.send("PASS wrong").code == 421
    assert client.wait_closed() == "close_notify"


def test_unknown_user_looks_like_a_wrong_password(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    client.auth_tls()
    known_user = client.send("USER alice")
    known_pass = client.send("PASS wrong")
    unknown_user = client.send("USER nosuchuser")
    unknown_pass = client.send("PASS wrong")
    assert known_user.lines == unknown_user.lines and known_user.code == 331
    assert known_pass.lines == unknown_pass.lines and known_pass.code == 530


def test_failures_are_counted_across_rein(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    client.auth_tls()
    for _ in range(2):
        client.expect("USER alice", 331)
        client.expect("PASS wrong", 530)
    client.expect("REIN", 220)
    client.unwrap()
    client.auth_tls()
    client.expect("USER alice", 331)
    assert client.send("PASS wrong").code == 421


def test_pass_without_user_is_503(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    client.auth_tls()
    assert client.send("PASS secret").code == 503
    assert client.send("USER").code == 501
    client.login()
    assert client.send("PASS secret").code == 503  # already logged in


def test_commands_need_a_login(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    client.auth_tls()
    for command in ("PWD", "CWD /", "LIST", "RETR x", "STOR x", "PASV", "EPSV", "SIZE x", "MKD x"):
        assert client.send(command).code == 530, command
    assert client.send("NOOP").code == 200


# ---------------------------------------------------------------- malformed input


def test_overlong_line_is_500_and_the_next_command_works(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    client.send_raw(b"NOOP " + b"x" * 10 * 1024 + b"\r\n")
    assert client.read_reply().code == 500
    assert client.send("NOOP").code == 200
    # A long line under the limit is still a command (8192 octets, CONFORMANCE §3.4).
    assert client.send("CWD " + "a/" * 2040).code in (550, 553)


def test_overlong_line_split_over_many_writes(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    for _ in range(20):
        client.send_raw(b"y" * 1024)
    client.send_raw(b"\r\nNOOP\r\n")
    assert client.read_reply().code == 500
    assert client.read_reply().code == 200


def test_invalid_utf8_is_501(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    # (0xFF would be Telnet IAC: a client must double it, RFC 2640 §3.1.)
    assert client.send(b"CWD \xc3\x28").code == 501
    assert client.send(b"MKD \xe2\x82abc").code == 501
    assert client.send(b"STOR \x80.txt").code == 501
    assert client.send(b"\xc0\xafNOOP").code in (500, 501)
    assert client.send("NOOP").code == 200


def test_valid_utf8_names_round_trip(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    name = "résumé-日本.txt"
    client.stor(name, b"utf8")
    assert (ftp_server.root / name).read_bytes() == b"utf8"
    assert name in client.nlst()


def test_unknown_and_malformed_commands(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    assert client.send("XYZZY").code == 500
    assert client.send("N0OP").code == 500
    assert client.send("noop").code == 200
    assert client.send("TYPE Z").code in (501, 504)
    assert client.send("NOOP extra").code == 501


def test_control_bytes_split_and_pipelined(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    client.send_raw(b"NO")
    client.send_raw(b"OP\r\n")
    assert client.read_reply().code == 200
    client.send_raw(b"NOOP\r\nNOOP\r\n")
    assert [client.read_reply().code, client.read_reply().code] == [200, 200]


def test_telnet_negotiation_is_refused(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    client.send_raw(b"\xff\xfd\x01NOOP\r\n")  # IAC DO ECHO, then a command
    assert client.sock.recv(3) == b"\xff\xfc\x01"  # IAC WONT ECHO
    assert client.read_reply().code == 200


def test_too_many_pipelined_commands_during_a_login_delay(start_server: StartServer) -> None:
    server = start_server(policy={"login_failure_delay": 0.5, "max_queued_commands": 4})
    client = server.connect()
    client.auth_tls()
    client.send_raw(b"USER alice\r\nPASS wrong\r\n" + b"NOOP\r\n" * 10)
    assert client.read_reply().code == 331
    codes = []
    while True:
        try:
            codes.append(client.read_reply().code)
        except EOFError:
            break
    assert codes[-1] == 421, codes
