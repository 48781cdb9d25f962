"""Other commands end to end: AUTH after a plaintext login, STAT, HELP, MLST, HOST, odd names."""

from __future__ import annotations

import os
import re

from tests.server.conftest import ServerHandle, StartServer
from tests.support.ftp_raw import FtpRaw


def test_auth_after_a_plaintext_login_discards_it(start_server: StartServer) -> None:
    server = start_server(policy={"require_tls_for_login": False, "require_protected_data": False})
    (server.root / "lf.txt").write_bytes(b"a\nb\n")
    client = server.connect()
    client.login()  # in clear, allowed by this policy
    client.expect("TYPE I", 200)
    client.expect("MKD sub", 257)
    client.expect("CWD sub", 250)
    client.auth_tls()
    assert client.send("PWD").code == 530  # RFC 4217 §4.2: log in again
    client.login()
    assert client.send("PWD").lines == ['257 "/" is the current directory.']
    assert client.send("SIZE lf.txt").lines == ["213 6"]  # TYPE is back to A: CRLF count


def test_plaintext_transfer_when_policy_allows_prot_c(start_server: StartServer) -> None:
    server = start_server(policy={"require_tls_for_login": False, "require_protected_data": False})
    body = os.urandom(100_000)
    client = server.connect()
    client.login()
    client.expect("TYPE I", 200)
    result = client.transfer("STOR clear.bin", upload=body, protect=False)
    assert result.codes == (150, 226) and not result.data_tls
    assert client.retr("clear.bin", protect=False) == body


def test_stat_without_a_transfer(ftp_server: ServerHandle) -> None:
    (ftp_server.root / "f.txt").write_bytes(b"12345")
    client = ftp_server.login()
    status = client.expect("STAT", 211)
    assert len(status.lines) > 2 and status.lines[-1].startswith("211 ")
    assert "alice" in status.text and "PROT P" in status.text
    listing = client.expect("STAT /", 212, 213)
    assert "f.txt" in listing.text
    assert client.expect("STAT f.txt", 213).lines[-1].startswith("213 ")
    assert client.send("STAT nosuch").code == 550


def test_multiline_replies_are_well_formed(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    for command in ("HELP", "FEAT", "STAT"):
        reply = client.send(command)
        code = str(reply.code)
        assert reply.lines[0].startswith(code + "-"), reply
        assert reply.lines[-1].startswith(code + " "), reply
        assert not any(re.match(r"\d{3} ", line) for line in reply.lines[1:-1]), reply
    assert client.send("HELP RETR").code == 214
    assert client.send("HELP NOSUCH").code == 501


def test_mlst_and_opts_mlst(ftp_server: ServerHandle) -> None:
    (ftp_server.root / "f.txt").write_bytes(b"12345")
    client = ftp_server.login()
    reply = client.expect("MLST f.txt", 250)
    assert len(reply.lines) == 3
    fact_line = reply.lines[1]
    assert fact_line.startswith(" ") and not fact_line.startswith("  ")
    assert "type=file;" in fact_line and "size=5;" in fact_line and fact_line.endswith(" /f.txt")
    assert client.send("MLST nosuch").code == 550
    assert client.expect("OPTS MLST type;size;", 200).lines == ["200 MLST OPTS type;size;"]
    assert client.expect("MLST f.txt", 250).lines[1] == " type=file;size=5; /f.txt"
    assert client.send("OPTS MLST type size;").code == 501
    assert client.expect("MLST f.txt", 250).lines[1] == " type=file;size=5; /f.txt"
    assert client.mlsd() == ["type=file;size=5; f.txt"]


def test_names_with_spaces_quotes_and_leading_blanks(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    client.expect("MKD  two", 257)  # RFC 2640 §3.1: the second space belongs to the name
    assert (ftp_server.root / " two").is_dir()
    reply = client.expect('MKD say "hi"', 257)
    assert '"/say ""hi"""' in reply.text  # embedded quotes doubled (RFC 959 Appendix II)
    client.stor("with space.txt", b"s")
    assert sorted(client.nlst()) == [" two", 'say "hi"', "with space.txt"]
    assert client.retr("with space.txt") == b"s"


def test_host_before_and_after_login(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    assert client.send("HOST ftp.example.com").code == 220
    assert client.send("HOST 192.0.2.1:21").code == 501
    client.auth_tls()
    client.prot_p()
    client.login()
    assert client.send("HOST ftp.example.com").code == 503


def test_feat_and_syst_before_login(ftp_server: ServerHandle) -> None:
    client = ftp_server.connect()
    assert client.send("FEAT").code == 211
    assert client.send("SYST").code == 215
    assert client.send("FEAT x").code == 501
    assert client.send("OPTS UTF8 ON").code == 200
    assert client.send("OPTS NOSUCH").code == 501
    assert client.send("LANG zz").code == 504
    assert client.send("MIC Zm9v").code == 503  # no security exchange yet
    client.auth_tls()
    assert client.send("ADAT Zm9v").code == 503
    assert client.send("MIC Zm9v").code == 502


def test_rename_over_an_existing_file_and_rnto_without_rnfr(ftp_server: ServerHandle) -> None:
    (ftp_server.root / "a").write_bytes(b"A")
    (ftp_server.root / "b").write_bytes(b"B")
    client = ftp_server.login()
    assert client.send("RNTO x").code == 503
    client.expect("RNFR a", 350)
    client.expect("RNTO b", 250)
    assert sorted(os.listdir(ftp_server.root)) == ["b"]
    assert (ftp_server.root / "b").read_bytes() == b"A"
    client.expect("RNFR b", 350)
    client.expect("NOOP", 200)
    assert client.send("RNTO c").code == 503  # RNTO must follow RNFR immediately


def test_file_operation_errors(ftp_server: ServerHandle) -> None:
    (ftp_server.root / "f.txt").write_bytes(b"12345")
    (ftp_server.root / "d").mkdir()
    (ftp_server.root / "d" / "inner").write_bytes(b"x")
    client = ftp_server.login()
    assert client.send("CWD f.txt").code == 550
    assert client.send("CWD nosuch").code == 550
    assert client.send("MKD d").code == 550  # exists
    assert client.send("RMD d").code == 550  # not empty
    assert client.send("RMD f.txt").code == 550
    assert client.send("DELE d").code == 550  # a directory
    assert client.send("DELE nosuch").code == 550
    assert client.send("RNFR nosuch").code == 550
    client.expect("RNFR d", 350)
    assert client.send("RNTO d/inside").code == 550  # into itself
    assert client.transfer("STOR nodir/x.txt", upload=b"x").codes == (550,)
    assert client.transfer("STOR d", upload=b"x").codes == (550,)
    assert client.transfer("RETR d").codes == (550,)
    client.expect("REST 6", 350)
    assert client.transfer("RETR f.txt").codes[0] in (550, 554)  # offset beyond the end
    assert sorted(os.listdir(ftp_server.root)) == ["d", "f.txt"]
    assert client.send("NOOP").code == 200


def test_host_must_match_the_tls_server_name(ftp_server: ServerHandle) -> None:
    host, port = ftp_server.implicit
    client = FtpRaw.connect(
        host, port, implicit=True, context=ftp_server.client_context(), server_hostname="localhost"
    )
    ftp_server.clients.append(client)
    assert client.send("HOST other.example").code == 504
    assert client.send("HOST localhost").code == 220
    client.login()
    assert client.send("PWD").code == 257
