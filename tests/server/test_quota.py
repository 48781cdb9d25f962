"""Local-home quotas kept current by the server's own changes: a rename that replaces a file frees it."""

from __future__ import annotations

import pytest

from pyftps.auth.base import Principal, UserLimits
from tests.server.conftest import ServerHandle, StartServer
from tests.support.ftp_raw import FtpRaw

KB = 1000


def _login(start_server: StartServer, limits: UserLimits) -> tuple[ServerHandle, FtpRaw]:
    handle = start_server(users={"carol": Principal("carol", "", limits=limits)})
    return handle, handle.login("carol")


def _refused(client: FtpRaw, name: str, data: bytes) -> bool:
    """An upload refused for the quota: at once, or with a 552 once the data passes it."""
    result = client.transfer(f"STOR {name}", upload=data)
    return result.codes[-1] == 552 and name not in client.nlst()


def test_a_rename_onto_a_file_gives_the_replaced_files_bytes_back(start_server: StartServer) -> None:
    handle, client = _login(start_server, UserLimits(quota_bytes=100 * KB))
    client.stor("a.bin", b"a" * 60 * KB)
    client.stor("b.bin", b"b" * 30 * KB)
    client.expect("RNFR b.bin", 350)
    client.expect("RNTO a.bin", 250)  # a.bin's 60 KB are gone: 30 KB in use
    client.stor("c.bin", b"c" * 60 * KB)  # fits only if the replaced bytes were given back
    assert _refused(client, "d.bin", b"d" * 11 * KB)
    assert sorted(p.name for p in handle.root.iterdir()) == ["a.bin", "c.bin"]


def test_a_rename_onto_a_file_gives_its_file_count_back(start_server: StartServer) -> None:
    _handle, client = _login(start_server, UserLimits(quota_files=2))
    client.stor("a", b"1")
    client.stor("b", b"2")
    client.expect("RNFR b", 350)
    client.expect("RNTO a", 250)
    client.stor("c", b"3")
    assert _refused(client, "d", b"4")


@pytest.mark.parametrize("target", ["a.bin", "/a.bin", "./a.bin"])
def test_a_file_renamed_onto_itself_frees_nothing(start_server: StartServer, target: str) -> None:
    _handle, client = _login(start_server, UserLimits(quota_bytes=100 * KB))
    client.stor("a.bin", b"a" * 60 * KB)
    client.expect("RNFR a.bin", 350)
    client.expect(f"RNTO {target}", 250)
    assert _refused(client, "b.bin", b"b" * 50 * KB)


def test_a_hard_link_renamed_onto_its_twin_frees_nothing(start_server: StartServer) -> None:
    handle, client = _login(start_server, UserLimits(quota_bytes=100 * KB))
    client.stor("a.bin", b"a" * 60 * KB)
    (handle.root / "twin.bin").hardlink_to(handle.root / "a.bin")  # rename(2) onto a twin: a no-op
    client.expect("RNFR twin.bin", 350)
    client.expect("RNTO a.bin", 250)
    assert _refused(client, "b.bin", b"b" * 50 * KB)
