"""Data connections under PROT P: the four ways to open them, listings, TYPE A, REST, SIZE/MDTM/MFMT."""

from __future__ import annotations

import calendar
import os
import re

import pytest

from tests.server.conftest import ServerHandle, StartServer

MODES = ["pasv", "epsv", "port", "eprt"]


@pytest.fixture(scope="module")
def payload() -> bytes:
    return os.urandom(2 * 1024 * 1024 + 12345)  # not a multiple of any buffer size


@pytest.mark.parametrize("mode", MODES)
def test_upload_then_download_identical_bytes(ftp_server: ServerHandle, mode: str, payload: bytes) -> None:
    client = ftp_server.login()
    result = client.stor("blob.bin", payload, mode=mode)
    assert result.data_tls and result.session_reused
    assert result.final is not None and f"({len(payload)} bytes)" in result.final.text
    assert (ftp_server.root / "blob.bin").read_bytes() == payload
    assert client.retr("blob.bin", mode=mode) == payload
    assert client.send("SIZE blob.bin").lines == [f"213 {len(payload)}"]


@pytest.mark.parametrize("mode", MODES)
def test_listings(ftp_server: ServerHandle, mode: str) -> None:
    (ftp_server.root / "file.txt").write_bytes(b"12345")
    (ftp_server.root / "sub").mkdir()
    (ftp_server.root / "sub" / "inner.txt").write_bytes(b"x")
    client = ftp_server.login()

    lines = client.list(mode=mode).splitlines()
    assert len(lines) == 2
    by_name = {line.rsplit(" ", 1)[1]: line for line in lines}
    assert by_name["file.txt"].startswith("-") and " 5 " in by_name["file.txt"]
    assert by_name["sub"].startswith("d")

    facts = {line.split(" ", 1)[1]: line.split(" ", 1)[0] for line in client.mlsd(mode=mode)}
    assert set(facts) == {"file.txt", "sub"}
    assert "type=file;" in facts["file.txt"] and "size=5;" in facts["file.txt"]
    assert "type=dir;" in facts["sub"]
    assert all(not line.startswith(" ") for line in facts)

    assert sorted(client.nlst(mode=mode)) == ["file.txt", "sub"]
    assert client.nlst("sub", mode=mode) == ["inner.txt"]


def test_list_options_and_a_single_file(ftp_server: ServerHandle) -> None:
    (ftp_server.root / "file.txt").write_bytes(b"12345")
    client = ftp_server.login()
    assert client.list("-la").rstrip("\r\n").endswith("file.txt")
    assert client.list("file.txt").rstrip("\r\n").endswith("file.txt")


def test_mlsd_on_a_file_and_missing_paths(ftp_server: ServerHandle) -> None:
    (ftp_server.root / "file.txt").write_bytes(b"12345")
    client = ftp_server.login()
    assert client.transfer("MLSD file.txt").codes == (501,)
    assert client.transfer("RETR nosuch").codes == (550,)
    assert client.transfer("LIST nosuch").codes == (550,)
    assert client.send("NOOP").code == 200


def test_transfer_without_pasv_or_port_is_425(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    assert client.send("LIST").code == 425


def test_prot_c_transfer_is_refused_before_any_1xx(start_server: StartServer) -> None:
    server: ServerHandle = start_server()
    client = server.connect()
    client.auth_tls()
    client.login()  # no PBSZ/PROT: PROT is C
    assert client.pasv().passive is not None  # PASV itself is allowed (checked at the transfer)
    assert client.send("LIST").code == 521


def test_epsv_all_refuses_the_other_modes(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    assert client.send("EPSV ALL").code == 200
    assert client.send("PASV").code == 503
    assert client.send("PORT 127,0,0,1,200,10").code == 503
    assert client.send("EPRT |1|127.0.0.1|51210|").code == 503
    (ftp_server.root / "f").write_bytes(b"ok")
    assert client.retr("f", mode="epsv") == b"ok"


def test_epsv_with_a_wrong_protocol(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    assert client.send("EPSV 2").code == 522
    assert client.send("EPRT |3|x|5|").code == 522
    assert client.send("EPSV 1").code == 229
    assert client.send("NOOP").code == 200  # see test_data_channel.py for a drop right after EPSV


# ---------------------------------------------------------------- TYPE A


def test_type_a_upload_converts_crlf_to_lf(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    client.expect("TYPE A", 200)
    client.stor("text.txt", b"one\r\ntwo\r\n\r\nthree\r\n")
    assert (ftp_server.root / "text.txt").read_bytes() == b"one\ntwo\n\nthree\n"


def test_type_a_download_sends_crlf_and_size_matches(ftp_server: ServerHandle) -> None:
    text = b"alpha\nbeta\n\ngamma" + b"\nline" * 70000  # crosses buffer boundaries
    (ftp_server.root / "lf.txt").write_bytes(text)
    client = ftp_server.login()
    client.expect("TYPE A", 200)
    wire = client.retr("lf.txt")
    assert wire == text.replace(b"\n", b"\r\n")
    assert client.send("SIZE lf.txt").lines == [f"213 {len(wire)}"]
    client.expect("TYPE I", 200)
    assert client.send("SIZE lf.txt").lines == [f"213 {len(text)}"]
    assert client.retr("lf.txt") == text


def test_type_a_rest_counts_wire_bytes(ftp_server: ServerHandle) -> None:
    (ftp_server.root / "lf.txt").write_bytes(b"ab\ncd\nef\n")
    client = ftp_server.login()
    client.expect("TYPE A", 200)
    client.expect("REST 4", 350)  # "ab\r\n" is 4 wire bytes
    assert client.retr("lf.txt") == b"cd\r\nef\r\n"


# ---------------------------------------------------------------- REST, SIZE, MDTM, MFMT


def test_rest_then_retr_sends_from_the_offset(ftp_server: ServerHandle, payload: bytes) -> None:
    (ftp_server.root / "blob.bin").write_bytes(payload)
    client = ftp_server.login()
    client.expect("REST 100", 350)
    assert client.retr("blob.bin") == payload[100:]
    assert client.retr("blob.bin") == payload  # REST applies to one transfer only
    assert client.send("REST abc").code == 501


def test_rest_then_stor_resumes_an_upload(ftp_server: ServerHandle) -> None:
    (ftp_server.root / "part.bin").write_bytes(b"0123456789")
    client = ftp_server.login()
    client.expect("REST 4", 350)
    client.stor("part.bin", b"abcdef")
    assert (ftp_server.root / "part.bin").read_bytes() == b"0123abcdef"


def test_appe_appends(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    client.stor("log.txt", b"first;")
    assert client.transfer_ok("APPE log.txt", upload=b"second").final is not None
    assert (ftp_server.root / "log.txt").read_bytes() == b"first;second"


def test_size_mdtm_mfmt(ftp_server: ServerHandle) -> None:
    (ftp_server.root / "f.bin").write_bytes(b"x" * 1234)
    (ftp_server.root / "dir").mkdir()
    client = ftp_server.login()
    assert client.send("SIZE f.bin").lines == ["213 1234"]
    assert client.send("SIZE dir").code == 550
    assert client.send("SIZE nosuch").code == 550
    mdtm = client.expect("MDTM f.bin", 213)
    assert re.fullmatch(r"213 \d{14}(\.\d+)?", mdtm.lines[0]), mdtm

    reply = client.expect("MFMT 20200102030405 f.bin", 213)
    assert "Modify=20200102030405" in reply.text
    assert client.send("MDTM f.bin").lines == ["213 20200102030405"]
    expected = calendar.timegm((2020, 1, 2, 3, 4, 5, 0, 0, 0))
    assert os.stat(ftp_server.root / "f.bin").st_mtime == expected
    assert client.send("MDTM nosuch").code == 550
    assert client.send("MFMT 2020 f.bin").code == 501


def test_stou_announces_the_name(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    result = client.transfer("STOU", upload=b"unique")
    assert result.codes == (150, 226), result
    match = re.search(r"FILE: (\S+)", result.first.text)
    assert match is not None, result.first
    assert (ftp_server.root / match.group(1)).read_bytes() == b"unique"


def test_several_transfers_in_a_row_on_one_session(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    for index in range(6):
        body = os.urandom(1000 + index)
        client.stor(f"n{index}", body, mode=MODES[index % 4])
        assert client.retr(f"n{index}", mode=MODES[(index + 1) % 4]) == body
    assert len(client.nlst()) == 6
