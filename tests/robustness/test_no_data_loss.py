"""No data loss (issue 4): an upload is committed only when it completed cleanly.

(a) ``pyftps serve`` killed with SIGKILL in the middle of a large upload (fsync on, the default): no
    file under the final name, at most a hidden temporary, and a file acknowledged with 226 just
    before the kill is complete and intact after a restart.
(b) A full disk (ENOSPC), a quota (EDQUOT, EFBIG) or a failing fsync during an in-process upload:
    452/552/451, no file under the final name, the temporary file gone, and the previous version of
    an overwritten file untouched.
(c) The control connection vanishing mid-upload (FIN or RST): no file under the final name.
(d) A TLS upload cut without close_notify, at a record boundary or in the middle of a record: 426
    and no file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import socket
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pyftps.storage import local
from pyftps.tls.contexts import client_context
from tests.robustness.helpers import TEMP_NAME, reset, sha256, temp_files, wait_until
from tests.server.conftest import ServerHandle
from tests.support.certs import CertPaths
from tests.support.ftp_raw import FtpRaw, Reply
from tests.support.ports import LOOPBACK, free_port, free_port_range
from tests.support.processes import RunningProcess, ports_accept, running_process

MiB = 1024 * 1024

# ---------------------------------------------------------------------------------- (a) SIGKILL


@contextmanager
def pyftps_serve(
    tmp_path: Path, root: Path, cert: CertPaths, password: str, run: str
) -> Iterator[tuple[RunningProcess, int]]:
    port, implicit_port = free_port(), free_port()
    low, high = free_port_range(16)
    argv = [
        sys.executable, "-m", "pyftps", "serve",
        "--root", str(root), "--host", LOOPBACK, "--port", str(port), "--implicit-port", str(implicit_port),
        "--passive-ports", f"{low}-{high}", "--cert", str(cert.cert), "--key", str(cert.key),
        "--user", f"alice:{password}", "--state-dir", str(tmp_path / "state"), "--log-level", "WARNING",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with running_process(
        argv, ready=ports_accept(LOOPBACK, port, implicit_port), timeout=20, name=f"pyftps-{run}", env=env,
        log_dir=tmp_path / "logs",
    ) as proc:  # fmt: skip
        yield proc, port


def login(port: int, cert: CertPaths, password: str) -> FtpRaw:
    client = FtpRaw.connect(LOOPBACK, port, context=client_context(cafile=cert.cafile))
    client.auth_tls()
    client.prot_p()
    client.login("alice", password)
    client.expect("TYPE I", 200)
    return client


def test_sigkill_mid_upload_loses_nothing_acknowledged(tmp_path: Path, tls_cert: CertPaths) -> None:
    root = tmp_path / "root"
    root.mkdir()
    password = secrets.token_urlsafe(12)
    acked = os.urandom(3 * MiB)
    with pyftps_serve(tmp_path, root, tls_cert, password, "first") as (proc, port):
        client = login(port, tls_cert, password)
        with client:
            client.stor("acked.bin", acked)  # 226: from now on this file must survive anything
            plan = client.plan("epsv")
            sock = client.open_tcp(plan)
            assert client.send("STOR big.bin").code == 150
            data = client.secure_data(sock)
            try:
                chunk = os.urandom(MiB)
                for _ in range(4):
                    data.sendall(chunk)
                # The upload is really under way: its hidden temporary holds bytes on disk.
                assert wait_until(lambda: any((root / n).stat().st_size > 0 for n in temp_files(root)), 10)
                os.killpg(proc.pid, signal.SIGKILL)  # the process group we started, by its id
                proc.proc.wait(10)
            finally:
                with contextlib.suppress(OSError, ssl.SSLError):
                    data.close()
    names = sorted(os.listdir(root))
    assert "big.bin" not in names
    assert all(name == "acked.bin" or TEMP_NAME.match(name) for name in names), names
    assert sha256((root / "acked.bin").read_bytes()) == sha256(acked)
    with pyftps_serve(tmp_path, root, tls_cert, password, "restarted") as (_, port):
        with login(port, tls_cert, password) as client:
            assert sha256(client.retr("acked.bin")) == sha256(acked)
            assert client.send("SIZE big.bin").code == 550
            assert client.nlst() == ["acked.bin"]  # a leftover temporary is never listed
            for name in temp_files(root):
                assert client.send(f"SIZE {name}").code >= 500  # nor reachable
                assert client.transfer(f"RETR {name}").codes[0] >= 500
            client.stor("big.bin", b"second try\n")
            assert client.retr("big.bin") == b"second try\n"


# ---------------------------------------------------------------------------------- (b) disk full


class FailingOs:
    """``os`` as seen by :mod:`pyftps.storage.local`, with ``write``/``fsync`` failing on cue."""

    def __init__(
        self, *, write_errno: int | None = None, budget: int = 0, fsync_errno: int | None = None
    ) -> None:
        self.write_errno, self.budget, self.fsync_errno = write_errno, budget, fsync_errno
        self.written = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: Any) -> int:
        if self.write_errno is not None and self.written + len(data) > self.budget:
            raise OSError(self.write_errno, os.strerror(self.write_errno))
        count = os.write(fd, data)
        self.written += count
        return count

    def fsync(self, fd: int) -> None:
        if self.fsync_errno is not None:
            raise OSError(self.fsync_errno, os.strerror(self.fsync_errno))
        os.fsync(fd)


def upload_cut_short(client: FtpRaw, name: str, payload: bytes) -> Reply:
    """STOR that the server may end early: keep sending until it hangs up, then read the final reply."""
    plan = client.plan("epsv")
    sock = client.open_tcp(plan)
    first = client.send(f"STOR {name}")
    assert first.code == 150, first
    data = client.secure_data(sock)
    try:
        with contextlib.suppress(OSError, ssl.SSLError, ValueError):
            data.sendall(payload)
            data.unwrap()
    finally:
        data.close()
    return client.read_reply()


@pytest.mark.parametrize(
    ("call", "error", "code"),
    [
        ("write", errno.ENOSPC, 452),
        ("write", errno.EDQUOT, 552),
        ("write", errno.EFBIG, 552),
        ("fsync", errno.ENOSPC, 452),
        ("fsync", errno.EIO, 451),
    ],
    ids=["write-ENOSPC", "write-EDQUOT", "write-EFBIG", "fsync-ENOSPC", "fsync-EIO"],
)
def test_disk_full_mid_upload_leaves_no_file(
    ftp_server: ServerHandle, monkeypatch: pytest.MonkeyPatch, call: str, error: int, code: int
) -> None:
    root = ftp_server.root
    previous = os.urandom(50_000)
    (root / "keep.bin").write_bytes(previous)
    client = ftp_server.login()
    failing = (
        FailingOs(write_errno=error, budget=512 * 1024) if call == "write" else FailingOs(fsync_errno=error)
    )
    monkeypatch.setattr(local, "os", failing)
    payload = os.urandom(4 * MiB)
    for name in ("new.bin", "keep.bin"):
        failing.written = 0
        reply = upload_cut_short(client, name, payload)
        assert reply.code == code, reply
        assert temp_files(root) == []
    assert not (root / "new.bin").exists()
    assert (root / "keep.bin").read_bytes() == previous  # the acknowledged version survives
    monkeypatch.undo()
    assert client.send("NOOP").code == 200
    client.stor("new.bin", payload)
    assert sha256((root / "new.bin").read_bytes()) == sha256(payload)


# ---------------------------------------------------------------------------------- (c) control lost


@pytest.mark.parametrize("end", ["fin", "rst"])
def test_control_connection_lost_mid_upload_leaves_no_file(ftp_server: ServerHandle, end: str) -> None:
    root = ftp_server.root
    client = ftp_server.login()
    plan = client.plan("epsv")
    sock = client.open_tcp(plan)
    assert client.send("STOR lost.bin").code == 150
    data = client.secure_data(sock)
    try:
        data.sendall(os.urandom(MiB))
        assert wait_until(lambda: any((root / n).stat().st_size > 0 for n in temp_files(root)), 10)
        if end == "rst":
            reset(client.sock)
        else:
            client.sock.close()  # TCP FIN, no QUIT, no close_notify
        assert wait_until(lambda: ftp_server.connection_count() == 0, 10)
        # Finishing the data connection cleanly now must not resurrect the upload.
        with contextlib.suppress(OSError, ssl.SSLError, ValueError):
            data.sendall(os.urandom(MiB))
            data.unwrap()
    finally:
        data.close()
    assert wait_until(lambda: temp_files(root) == [], 10), temp_files(root)
    assert not (root / "lost.bin").exists()
    assert ftp_server.login().send("NOOP").code == 200


# ---------------------------------------------------------------------------------- (d) truncated TLS


def test_upload_without_close_notify_is_426_and_no_file(ftp_server: ServerHandle) -> None:
    root = ftp_server.root
    previous = b"the version before\n"
    (root / "keep.bin").write_bytes(previous)
    client = ftp_server.login()
    for name in ("cut.bin", "keep.bin"):
        result = client.transfer(f"STOR {name}", upload=os.urandom(MiB), end="tcp_close")
        assert result.codes == (150, 426), result.codes
        assert temp_files(root) == []
    assert not (root / "cut.bin").exists()
    assert (root / "keep.bin").read_bytes() == previous


def test_upload_cut_in_the_middle_of_a_tls_record_is_426_and_no_file(ftp_server: ServerHandle) -> None:
    root = ftp_server.root
    client = ftp_server.login()
    plan = client.plan("epsv")
    sock = client.open_tcp(plan)
    assert client.send("STOR midrecord.bin").code == 150
    data = client.secure_data(sock)
    try:
        data.sendall(os.urandom(300_000))
        # Half an application-data record written below TLS, then a bare TCP close.
        with socket.socket(fileno=os.dup(data.fileno())) as raw:
            raw.sendall(b"\x17\x03\x03\x40\x00" + os.urandom(2000))
    finally:
        data.close()
    assert client.read_reply().code == 426
    assert temp_files(root) == []
    assert not (root / "midrecord.bin").exists()
    assert client.send("NOOP").code == 200
