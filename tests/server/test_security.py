"""RFC 2577 data-connection checks, the virtual root (no path escapes), and read-only users."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import pytest

from tests.server.conftest import ServerHandle, StartServer
from tests.support.ftp_raw import FtpRaw

SECRET = b"outside the root: must never be served\n"


def _loopback_alias_works() -> bool:
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        return False
    return True


# ---------------------------------------------------------------- RFC 2577 (bounce, port theft)


def test_port_to_a_privileged_port_is_504(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    assert client.send("PORT 127,0,0,1,0,25").code == 504
    assert client.send("EPRT |1|127.0.0.1|80|").code == 504
    assert client.send("LIST").code == 425  # nothing was set up


def test_port_naming_another_host_is_504(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    assert client.send("PORT 127,0,0,2,200,10").code == 504
    assert client.send("PORT 10,1,2,3,200,10").code == 504
    assert client.send("EPRT |1|127.0.0.2|51210|").code == 504
    assert client.send("EPRT |2|::1|51210|").code == 504
    assert client.send("PORT 127,0,0,1,300,10").code == 501
    assert client.send("NOOP").code == 200


@pytest.mark.skipif(not _loopback_alias_works(), reason="127.0.0.2 is not usable here")
def test_passive_connection_from_another_address_is_refused(start_server: StartServer) -> None:
    server = start_server(data_connect_timeout=1.0)
    client = server.login()
    plan = client.pasv()
    assert plan.passive is not None
    with socket.create_connection(plan.passive, timeout=10, source_address=("127.0.0.2", 0)) as thief:
        with contextlib.suppress(ConnectionResetError):
            assert thief.recv(1) == b""  # closed by the server, not used
    # The listener waits for the real client until data_connect_timeout, then gives up.
    reply = client.send("LIST")
    assert reply.code == 425, reply
    assert client.send("NOOP").code == 200
    assert client.transfer("LIST").codes == (150, 226)


# ---------------------------------------------------------------- the virtual root


@pytest.fixture
def jail(ftp_server: ServerHandle, tmp_path: Path) -> tuple[ServerHandle, Path]:
    """A root with escaping symlinks, and a secret directory beside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (ftp_server.root / "inside.txt").write_bytes(b"inside")
    (ftp_server.root / "dirlink").symlink_to(outside, target_is_directory=True)
    (ftp_server.root / "filelink").symlink_to(outside / "secret.txt")
    (ftp_server.root / "goodlink").symlink_to(ftp_server.root / "inside.txt")
    return ftp_server, outside


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_cwd_dotdot_at_the_root_stays_at_the_root(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    assert client.send("CWD ..").code == 250
    assert client.send("PWD").lines == ['257 "/" is the current directory.']
    assert client.send("CDUP").code in (200, 250)
    assert client.send("CWD ../../..").code == 250
    assert client.send("PWD").lines == ['257 "/" is the current directory.']


@pytest.mark.parametrize(
    "path",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "..\\..\\etc\\passwd",
        "%2e%2e/secret.txt",
        "%2e%2e%2foutside%2fsecret.txt",
        "../outside/secret.txt",
        "/../../outside/secret.txt",
        "dirlink/secret.txt",
        "filelink",
        "./dirlink/../dirlink/secret.txt",
    ],
)
def test_retr_cannot_leave_the_root(jail: tuple[ServerHandle, Path], path: str) -> None:
    server, outside = jail
    client = server.login()
    result = client.transfer(f"RETR {path}")
    assert result.codes == (550,), result
    assert SECRET not in result.data
    assert _snapshot(outside) == {"secret.txt": SECRET}


def test_writes_cannot_leave_the_root(jail: tuple[ServerHandle, Path]) -> None:
    server, outside = jail
    client = server.login()
    assert client.transfer("STOR dirlink/new.txt", upload=b"x").codes == (550,)
    assert client.transfer("STOR filelink", upload=b"x").codes == (550,)
    assert client.transfer("APPE filelink", upload=b"x").codes == (550,)
    assert client.send("MKD dirlink/newdir").code == 550
    assert client.send("DELE filelink").code == 550
    assert client.send("DELE dirlink/secret.txt").code == 550
    assert client.send("RNFR dirlink/secret.txt").code == 550
    assert client.send("CWD dirlink").code == 550
    assert client.send("SIZE filelink").code == 550
    assert client.send("MFMT 20000101000000 filelink").code == 550
    assert client.send("SITE CHMOD 777 filelink").code == 550
    assert _snapshot(outside) == {"secret.txt": SECRET}
    assert (outside / "secret.txt").stat().st_mode & 0o777 != 0o777


def test_escaping_symlinks_are_invisible_and_inner_ones_work(jail: tuple[ServerHandle, Path]) -> None:
    server, _ = jail
    client = server.login()
    names = client.nlst()
    assert "dirlink" not in names and "filelink" not in names
    assert "goodlink" in names
    assert client.retr("goodlink") == b"inside"


def test_a_4_kib_name_is_refused_without_breaking_the_session(ftp_server: ServerHandle) -> None:
    client = ftp_server.login()
    long_name = "n" * 4096
    assert client.transfer(f"RETR {long_name}").codes[0] in (550, 553)
    assert client.transfer(f"STOR {long_name}", upload=b"x").codes[0] in (550, 553)
    assert client.send(f"MKD {long_name}").code in (550, 553)
    assert client.send(f"CWD {long_name}").code in (550, 553)
    deep = "d/" * 2100  # short components, path over 4096 bytes
    assert client.send(f"MKD {deep}").code in (550, 553)
    assert client.send("NOOP").code == 200
    assert os.listdir(ftp_server.root) == []


@pytest.mark.parametrize("command", [b"RETR a\x00b", b"CWD \x00", b"STOR x\x00.txt", b"MKD \x00evil"])
def test_nul_in_a_path_is_501(ftp_server: ServerHandle, command: bytes) -> None:
    client = ftp_server.login()
    assert client.send(command).code == 501
    assert client.send("NOOP").code == 200
    assert os.listdir(ftp_server.root) == []


# ---------------------------------------------------------------- permissions


def test_read_only_user_cannot_change_anything(ftp_server: ServerHandle) -> None:
    (ftp_server.root / "file.txt").write_bytes(b"readable")
    (ftp_server.root / "dir").mkdir()
    before = sorted(os.listdir(ftp_server.root))
    bob = ftp_server.login("bob")
    assert bob.transfer("STOR new.txt", upload=b"x").codes == (550,)
    assert bob.transfer("STOR file.txt", upload=b"x").codes == (550,)
    assert bob.transfer("APPE file.txt", upload=b"x").codes == (550,)
    assert bob.transfer("STOU", upload=b"x").codes == (550,)
    assert bob.send("DELE file.txt").code == 550
    assert bob.send("MKD newdir").code == 550
    assert bob.send("RMD dir").code == 550
    assert bob.send("RNFR file.txt").code == 550
    assert bob.send("MFMT 20000101000000 file.txt").code == 550
    assert bob.send("SITE CHMOD 600 file.txt").code == 550
    assert sorted(os.listdir(ftp_server.root)) == before
    assert (ftp_server.root / "file.txt").read_bytes() == b"readable"
    # Reading still works.
    assert bob.retr("file.txt") == b"readable"
    assert "file.txt" in bob.list()
    assert bob.send("SIZE file.txt").lines == ["213 8"]
    assert bob.send("CWD dir").code == 250


def test_full_user_can_manage_files(ftp_server: ServerHandle) -> None:
    alice: FtpRaw = ftp_server.login()
    alice.expect("MKD d", 257)
    alice.stor("d/f.txt", b"abc")
    alice.expect("RNFR d/f.txt", 350)
    alice.expect("RNTO d/g.txt", 250)
    assert (ftp_server.root / "d" / "g.txt").read_bytes() == b"abc"
    alice.expect("DELE d/g.txt", 250)
    alice.expect("RMD d", 250)
    assert os.listdir(ftp_server.root) == []
