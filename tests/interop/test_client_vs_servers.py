"""The pyftps client library against servers nobody here wrote, and against pyftps itself.

Each case: list, upload, download with an identical SHA-256 (locally and on the server's disk), resume
an interrupted download (a partial local file, then RETR with REST at its length), delete. Peers:
vsftpd explicit and implicit (``require_ssl_reuse=YES``), ProFTPD with mod_tls explicit and implicit
(session reuse required by default), pyftpdlib's TLS handler (explicit) and pyftps in both modes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyftps.client import SyncClient
from tests.interop.conftest import FtpServer
from tests.support.peers import Peer, started

pytestmark = pytest.mark.interop

SIZE = 1024 * 1024 + 4321  # several 256 KiB chunks and a ragged tail
CUT = 300_007  # where the "interrupted" download stopped
NAME = "interop payload.bin"  # a space: the name must travel intact
CLIENT_TIMEOUT = 10.0

# vsftpd 3.0.3 refuses data on an implicit session until PROT P is sent ("522 Data connections must be
# encrypted"): it does not assume PBSZ 0 / PROT P as MS-FTPS §3.2.5.1 says. The client follows MS-FTPS
# §3.1.5.1 and sends them only after such a refusal; `pyftps doctor` reports it (pbsz_prot).
TARGETS = [
    "vsftpd-explicit",
    "vsftpd-implicit",
    "proftpd-explicit",
    "proftpd-implicit",
    "pyftpdlib-explicit",
    "pyftps-explicit",
    "pyftps-implicit",
]
OUR_FIXTURES = {"pyftps": "pyftps_server", "pyftpdlib": "pyftpdlib_tls_server"}


@dataclass(frozen=True)
class Target:
    """One server listener as the client sees it, plus the server's directory for checks."""

    name: str
    host: str
    port: int
    mode: str
    user: str
    password: str
    cafile: Path
    root: Path
    requires_session_reuse: bool

    @classmethod
    def of_peer(cls, peer: Peer) -> Target:
        return cls(
            f"{peer.name}-{peer.mode}",
            peer.host,
            peer.port,
            peer.mode,
            peer.user,
            peer.password,
            peer.cafile,
            peer.root,
            peer.requires_session_reuse,
        )

    @classmethod
    def of_server(cls, server: FtpServer, mode: str) -> Target:
        port = server.implicit_port if mode == "implicit" else server.port
        assert port is not None
        return cls(
            f"{server.name}-{mode}",
            server.host,
            port,
            mode,
            server.user,
            server.password,
            server.cafile,
            server.root,
            server.requires_session_reuse,
        )


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    name, mode = request.param.split("-")
    if name in OUR_FIXTURES:
        yield Target.of_server(request.getfixturevalue(OUR_FIXTURES[name]), mode)
        return
    with started(name, implicit=mode == "implicit") as peer:
        yield Target.of_peer(peer)
        assert peer.process.is_running(), peer.log()


def sha256(data: bytes | Path) -> str:
    return hashlib.sha256(data.read_bytes() if isinstance(data, Path) else data).hexdigest()


def connect(target: Target) -> SyncClient:
    return SyncClient.connect(
        target.host,
        target.port,
        mode=target.mode,
        user=target.user,
        password=target.password,
        cafile=target.cafile,
        timeout=CLIENT_TIMEOUT,
    )


def test_list_upload_download_resume_delete(target: Target, tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    with connect(target) as ftp:
        assert NAME not in {entry.name for entry in ftp.list()}
        assert ftp.upload(source, NAME) == SIZE
        if target.requires_session_reuse:
            assert ftp.client.data_session_reused is True  # else the server would have refused (522/425)
        listed = {entry.name: entry for entry in ftp.list()}
        assert listed[NAME].size == SIZE and not listed[NAME].is_dir
        assert sha256(target.root / NAME) == sha256(data), "the server stored other bytes"

        whole = tmp_path / "whole.bin"
        assert ftp.download(NAME, whole) == SIZE
        assert sha256(whole) == sha256(data)

        # An interrupted download left the first CUT bytes (and some junk after them): resume at CUT.
        partial = tmp_path / "partial.bin"
        partial.write_bytes(data[:CUT] + b"junk the resumed download must cut off")
        assert ftp.download(NAME, partial, offset=CUT) == SIZE - CUT
        assert sha256(partial) == sha256(data)

        ftp.delete(NAME)
        assert NAME not in {entry.name for entry in ftp.list()}
    assert not (target.root / NAME).exists()
