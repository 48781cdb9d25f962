"""Per-directory permissions over real sockets: a drop box in ``/incoming`` for an otherwise read-only user.

Carol's record says ``--perms ro`` and ``/incoming=write``: she may upload there but not list, read,
rename or delete what is in it, and may write nowhere else.
"""

from __future__ import annotations

import pytest

from pyftps.auth.base import Principal
from pyftps.auth.records import DIRECTORY_PERMISSIONS, UserRecord
from pyftps.proto.permissions import Permission
from tests.server.conftest import ServerHandle, StartServer
from tests.support.ftp_raw import FtpRaw

DENIED = "550 Permission denied."


def user(name: str, base: Permission, rules: dict[str, str]) -> Principal:
    """The principal a stored record with these settings gives (the fixture sets every home)."""
    settings = {DIRECTORY_PERMISSIONS: rules}
    return UserRecord(name, "", base, True, settings, "", "").principal()


@pytest.fixture
def server(start_server: StartServer) -> ServerHandle:
    handle = start_server(
        users={
            "carol": user("carol", Permission.read_only(), {"/incoming": "write"}),
            "dave": user("dave", Permission.all(), {"/incoming": "write"}),  # may rename, not into it
        }
    )
    (handle.root / "incoming").mkdir()
    (handle.root / "incoming" / "earlier.txt").write_bytes(b"someone else's upload\n")
    (handle.root / "readme.txt").write_bytes(b"hello\n")
    return handle


def refused(client: FtpRaw, command: str, upload: bytes | None = None) -> None:
    """A transfer command answered 550 before any data connection is used."""
    result = client.transfer(command, upload=upload)
    assert str(result.first) == DENIED, (command, result.first)
    assert result.final is None


def test_drop_box_write_only(server: ServerHandle) -> None:
    carol = server.login("carol")
    payload = bytes(range(256)) * 64

    carol.stor("/incoming/report.bin", payload)
    assert (server.root / "incoming" / "report.bin").read_bytes() == payload
    carol.expect("CWD /incoming", 250)  # entering needs nothing
    carol.stor("relative.bin", b"x")
    assert (server.root / "incoming" / "relative.bin").read_bytes() == b"x"

    # Not readable, listable, renamable or deletable, even what she uploaded herself.
    refused(carol, "RETR /incoming/report.bin")
    refused(carol, "LIST /incoming")
    refused(carol, "NLST")  # the current directory, /incoming
    refused(carol, "MLSD /incoming")
    assert str(carol.send("SIZE /incoming/earlier.txt")) == DENIED
    assert str(carol.send("MLST /incoming/report.bin")) == DENIED
    assert str(carol.send("DELE /incoming/report.bin")) == DENIED
    assert str(carol.send("RNFR /incoming/report.bin")) == DENIED
    assert str(carol.send("RMD /incoming")) == DENIED
    assert (server.root / "incoming" / "report.bin").exists()

    # Writing anywhere else is refused before anything touches the disk.
    refused(carol, "STOR /elsewhere.bin", upload=b"nope")
    refused(carol, "STOR /incomingx.bin", upload=b"nope")  # a name sharing the prefix string
    refused(carol, "APPE /readme.txt", upload=b"nope")
    assert str(carol.send("MKD /newdir")) == DENIED
    assert not (server.root / "elsewhere.bin").exists()
    assert not (server.root / "incomingx.bin").exists()
    assert not (server.root / "newdir").exists()
    assert (server.root / "readme.txt").read_bytes() == b"hello\n"

    # Outside /incoming the base set (read-only) applies.
    assert carol.retr("/readme.txt") == b"hello\n"
    facts = {line.rsplit(" ", 1)[1]: line for line in carol.mlsd("/")}
    assert "perm=ec;" in facts["incoming"]  # WRITE on a directory: enter, create
    assert "perm=r;" in facts["readme.txt"]
    carol.expect("QUIT", 221)


def test_a_refused_rnto_renames_nothing(server: ServerHandle) -> None:
    dave = server.login("dave")
    dave.expect("RNFR /readme.txt", 350)
    assert str(dave.send("RNTO /incoming/readme.txt")) == DENIED  # no RENAME at the destination
    assert (server.root / "readme.txt").read_bytes() == b"hello\n"
    assert not (server.root / "incoming" / "readme.txt").exists()
    assert dave.send("RNTO /renamed.txt").code == 503  # the RNFR was spent
    dave.expect("RNFR /readme.txt", 350)
    dave.expect("RNTO /renamed.txt", 250)
    assert (server.root / "renamed.txt").exists()


def test_users_without_rules_are_unaffected(server: ServerHandle) -> None:
    alice = server.login("alice")
    alice.stor("/incoming/a.bin", b"a")
    assert alice.retr("/incoming/a.bin") == b"a"
    assert "a.bin" in alice.nlst("/incoming")
    assert any("perm=adfrw;" in line for line in alice.mlsd("/incoming"))
