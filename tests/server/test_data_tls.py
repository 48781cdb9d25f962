"""TLS on data connections: session reuse, close_notify vs truncation, ABOR and STAT mid-transfer."""

from __future__ import annotations

import os
import re
import socket
import ssl

import pytest

from pyftps.config import ReusePolicy
from tests.server.conftest import ServerHandle, StartServer
from tests.support.ftp_raw import FtpRaw

BIG = 50 * 1024 * 1024
IAC_IP_DM = b"\xff\xf4\xff\xf2"  # Telnet IP + Synch (RFC 959 §4.1), in-band under TLS (RFC 4217 §14)


def _temp_files(server: ServerHandle) -> list[str]:
    return [name for name in os.listdir(server.root) if name.startswith(".pyftps-upload-")]


# ---------------------------------------------------------------- session reuse (RFC 4217 §10.2)


@pytest.mark.parametrize("mode", ["epsv", "port"])
def test_data_connection_without_session_reuse_is_refused(ftp_server: ServerHandle, mode: str) -> None:
    (ftp_server.root / "f").write_bytes(b"secret")
    client = ftp_server.login()
    result = client.transfer("RETR f", mode=mode, session_reuse=False)
    assert result.first.code == 150
    assert result.session_reused is False
    assert result.data == b""  # nothing was sent over the unverified connection
    assert result.final is not None and result.final.code == 522, result.final
    assert "session reuse" in result.final.text.lower()
    # The session goes on, and a resumed data connection works.
    assert client.retr("f", mode=mode) == b"secret"


def test_reuse_policy_off_accepts_a_full_data_handshake(start_server: StartServer) -> None:
    server = start_server(data_reuse=ReusePolicy.OFF)
    (server.root / "f").write_bytes(b"content")
    client = server.login()
    result = client.transfer("RETR f", session_reuse=False)
    assert result.codes == (150, 226), result
    assert result.session_reused is False and result.data == b"content"
    upload = client.transfer("STOR g", upload=b"uploaded", session_reuse=False)
    assert upload.codes == (150, 226), upload
    assert (server.root / "g").read_bytes() == b"uploaded"


def test_reuse_policy_warn_accepts_a_full_data_handshake(start_server: StartServer) -> None:
    server = start_server(data_reuse=ReusePolicy.WARN)
    client = server.login()
    assert client.transfer("LIST", session_reuse=False).codes == (150, 226)


@pytest.mark.parametrize("implicit", [False, True])
def test_tls_1_2_client_resumes_the_control_session(ftp_server: ServerHandle, implicit: bool) -> None:
    context = ftp_server.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
    client = ftp_server.login(implicit=implicit, context=context)
    assert isinstance(client.sock, ssl.SSLSocket) and client.sock.version() == "TLSv1.2"
    body = os.urandom(300_000)
    stored = client.stor("t12.bin", body, mode="pasv")
    assert stored.session_reused is True
    result = client.transfer("RETR t12.bin", mode="eprt")
    assert result.codes == (150, 226), result
    assert result.session_reused is True and result.data == body
    refused = client.transfer("LIST", session_reuse=False)
    assert refused.codes == (150, 522), refused


def test_tls_1_3_data_connections_resume(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    assert isinstance(client.sock, ssl.SSLSocket) and client.sock.version() == "TLSv1.3"
    for mode in ("pasv", "epsv", "port", "eprt"):
        result = client.transfer("LIST", mode=mode)
        assert result.codes == (150, 226) and result.session_reused is True, (mode, result)


def test_another_sessions_ticket_is_not_accepted(ftp_server: ServerHandle) -> None:
    """Data-port theft (RFC 4217 §15.2.6): a ticket from another login must not resume this one."""
    victim = ftp_server.login()
    thief = ftp_server.login("bob")
    plan = victim.plan("epsv")
    sock = thief.open_tcp(plan)  # the thief connects to the victim's passive port first ...
    first = victim.send("LIST")
    assert first.code == 150
    data = thief.secure_data(sock)  # ... offering its own (valid, same server) session
    try:
        received = data.recv(65536)
    except ssl.SSLError:
        received = b""
    data.close()
    assert received == b""
    assert victim.read_reply().code == 522


# ---------------------------------------------------------------- close_notify vs truncation


def test_upload_ending_with_close_notify_is_complete(ftp_server: ServerHandle) -> None:
    body = os.urandom(1024 * 1024 + 7)
    client = ftp_server.login()
    result = client.transfer("STOR clean.bin", upload=body, end="close_notify")
    assert result.codes == (150, 226), result
    assert (ftp_server.root / "clean.bin").read_bytes() == body
    assert _temp_files(ftp_server) == []


@pytest.mark.parametrize("mode", ["epsv", "port"])
def test_upload_cut_without_close_notify_is_426_and_discarded(ftp_server: ServerHandle, mode: str) -> None:
    client = ftp_server.login()
    result = client.transfer("STOR cut.bin", upload=os.urandom(300_000), end="tcp_close", mode=mode)
    assert result.first.code == 150
    assert result.final is not None and result.final.code == 426, result.final
    assert not (ftp_server.root / "cut.bin").exists()
    assert _temp_files(ftp_server) == []
    assert "cut.bin" not in client.nlst()
    assert client.send("NOOP").code == 200


def test_cut_upload_does_not_replace_the_existing_file(ftp_server: ServerHandle) -> None:
    (ftp_server.root / "keep.bin").write_bytes(b"original")
    client = ftp_server.login()
    result = client.transfer("STOR keep.bin", upload=b"partial", end="tcp_close")
    assert result.codes == (150, 426), result
    assert (ftp_server.root / "keep.bin").read_bytes() == b"original"
    assert _temp_files(ftp_server) == []


def test_plaintext_on_a_prot_p_data_connection_is_522(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    result = client.transfer("STOR plain.bin", upload=b"not tls at all\r\n" * 10, protect=False)
    assert result.first.code == 150
    assert result.final is not None and result.final.code == 522, result.final
    assert not (ftp_server.root / "plain.bin").exists()


# ---------------------------------------------------------------- ABOR and STAT mid-transfer


def _start_big_retr(server: ServerHandle, read: int = 1) -> tuple[FtpRaw, ssl.SSLSocket]:
    """A 50 MiB RETR that is running: at least ``read`` bytes arrived, and we read no further."""
    with open(server.root / "big.bin", "wb") as big:
        big.truncate(BIG)  # sparse: instant to create
    client = server.login()
    plan = client.plan("epsv")
    sock = client.open_tcp(plan)
    assert client.send("RETR big.bin").code == 150
    data = client.secure_data(sock)
    received = 0
    while received < read:
        chunk = data.recv(65536)
        assert chunk, "the download ended early"
        received += len(chunk)
    return client, data


@pytest.mark.parametrize("preamble", [b"", IAC_IP_DM], ids=["plain-abor", "iac-ip-dm-abor"])
def test_abor_during_a_long_retr(ftp_server: ServerHandle, preamble: bytes) -> None:
    client, data = _start_big_retr(ftp_server)
    try:
        client.send_raw(preamble + b"ABOR\r\n")
        assert client.read_reply().code == 426
        assert client.read_reply().code == 226
    finally:
        data.close()
    assert client.send("NOOP").code == 200
    assert client.retr("big.bin", mode="pasv") if False else True
    (ftp_server.root / "small").write_bytes(b"small")
    assert client.retr("small") == b"small"


def test_stat_during_a_transfer_reports_the_byte_count(ftp_server: ServerHandle) -> None:
    # Progress is counted per 256 KiB buffer handed to the socket: once more than 1 MiB arrived,
    # at least the first three buffers were counted, whatever the timing.
    client, data = _start_big_retr(ftp_server, read=1024 * 1024 + 1)
    try:
        reply = client.send("STAT")
        assert reply.code == 213, reply
        match = re.search(r"(\d+) bytes", reply.text)
        assert match is not None and 512 * 1024 <= int(match.group(1)) < BIG, reply
        client.send_raw(b"ABOR\r\n")
        assert [client.read_reply().code, client.read_reply().code] == [426, 226]
    finally:
        data.close()
    assert client.send("NOOP").code == 200


def test_abor_pipelined_behind_retr_stops_the_transfer(ftp_server: ServerHandle) -> None:
    (ftp_server.root / "f").write_bytes(b"must not be sent after ABOR")
    client = ftp_server.login()
    plan = client.plan("epsv")
    client.send_raw(b"RETR f\r\nABOR\r\n")  # one write: both commands reach the server together
    received = b""
    try:
        data = client.data_connect(plan)  # refused, reset, or never served once ABOR is honoured
        with data:
            while chunk := data.recv(65536):
                received += chunk
    except OSError:
        pass
    codes = [client.read_reply().code, client.read_reply().code]
    assert received == b"" and codes == [426, 226], (received, codes)


def test_abor_while_waiting_for_the_data_connection_closes_the_port(start_server: StartServer) -> None:
    server = start_server(data_connect_timeout=30.0)
    client = server.login()
    plan = client.pasv()
    assert plan.passive is not None
    client.send_line("LIST")
    assert client.send("STAT").code == 213  # the transfer is running, waiting for our connection
    client.send_line("ABOR")
    assert [client.read_reply().code, client.read_reply().code] == [426, 226]
    with pytest.raises(OSError):
        socket.create_connection(plan.passive, timeout=5).close()


def test_abor_without_a_transfer(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    assert client.send("ABOR").code in (225, 226)
    client.pasv()
    assert client.send("NOOP").code == 200  # see test_data_channel.py for ABOR right after PASV
    assert client.send("ABOR").code in (225, 226)  # drops the passive listener
    assert client.send("LIST").code == 425


def test_closing_the_control_connection_mid_transfer_cleans_up(ftp_server: ServerHandle) -> None:
    client, data = _start_big_retr(ftp_server)
    client.close()
    data.settimeout(10)
    try:
        while data.recv(1024 * 1024):
            pass  # the server stops sending and closes the data connection
    except (ssl.SSLError, ConnectionError):
        pass
    data.close()
