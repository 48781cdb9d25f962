"""Real FTPS clients (curl, lftp, Python ftplib) against pyftps and, as a reference, pyftpdlib.

Each case uploads a 3 MiB random file and a small text file, lists the directory (LIST and
NLST), downloads both, compares SHA-256 with the originals and with what the server stored,
and deletes them. Cases run over explicit FTPS (AUTH TLS) and implicit FTPS (TLS from the
first byte), with passive (EPSV/PASV) and active (EPRT/PORT) data connections.
"""

from __future__ import annotations

import ftplib
import hashlib
import io
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.interop.conftest import PYFTPS_ENDPOINTS, Endpoint, FtpServer, require_tool

pytestmark = pytest.mark.interop

BIG_SIZE = 3 * 1024 * 1024
CLIENT_TIMEOUT = 60  # a whole client run; each curl call also gets --max-time 30


@dataclass(frozen=True)
class Payload:
    """Files to upload, and where downloads go."""

    big: Path
    text: Path
    download_dir: Path

    @property
    def files(self) -> tuple[Path, Path]:
        return self.big, self.text


@pytest.fixture
def payload(tmp_path: Path) -> Payload:
    upload = tmp_path / "upload"
    download = tmp_path / "download"
    upload.mkdir()
    download.mkdir()
    big = upload / "big.bin"
    big.write_bytes(os.urandom(BIG_SIZE))
    text = upload / "notes.txt"
    text.write_text("".join(f"line {i}: pyftps interop\n" for i in range(100)))
    return Payload(big=big, text=text, download_dir=download)


def sha256(data: bytes | Path) -> str:
    return hashlib.sha256(data.read_bytes() if isinstance(data, Path) else data).hexdigest()


def assert_stored(server: FtpServer, payload: Payload) -> None:
    """What the server wrote into its root is byte-identical to what was sent."""
    for src in payload.files:
        stored = server.root / src.name
        assert stored.is_file(), f"{stored} missing on the server; root has {sorted(os.listdir(server.root))}"
        assert sha256(stored) == sha256(src), f"{src.name} stored with different content"


def assert_downloaded(payload: Payload) -> None:
    for src in payload.files:
        got = payload.download_dir / src.name
        assert got.is_file(), f"{got} was not downloaded"
        assert sha256(got) == sha256(src), f"{src.name} downloaded with different content"


def assert_deleted(server: FtpServer, payload: Payload) -> None:
    left = sorted(p.name for p in server.root.iterdir())
    assert not any(src.name in left for src in payload.files), f"files left on the server: {left}"


def list_line(listing: str, name: str) -> str:
    """The LIST line for ``name``; LIST formats vary, but the name ends the line."""
    lines = [line for line in listing.splitlines() if line.rstrip().endswith(" " + name)]
    assert len(lines) == 1, f"{name!r} not listed once in:\n{listing}"
    return lines[0]


def assert_listing(listing: str, nlst: str, payload: Payload) -> None:
    names = {line.strip().rsplit("/", 1)[-1] for line in nlst.splitlines() if line.strip()}
    for src in payload.files:
        assert src.name in names, f"NLST lacks {src.name}: {sorted(names)}"
        assert re.search(rf"\b{src.stat().st_size}\b", list_line(listing, src.name)), "LIST shows wrong size"


def run_client(argv: list[str], server: FtpServer, env: dict[str, str] | None = None) -> str:
    """Run a client command; fail with its output and the server's if it does not exit 0."""
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=CLIENT_TIMEOUT,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # the child has been killed by subprocess.run
        pytest.fail(f"{argv[0]} timed out after {CLIENT_TIMEOUT} s\n{_outputs(exc.stdout, exc.stderr)}")
    if done.returncode != 0:
        pytest.fail(
            f"{Path(argv[0]).name} exited {done.returncode}\n$ {' '.join(argv)}\n"
            f"{_outputs(done.stdout, done.stderr)}"
        )
    return done.stdout.decode("utf-8", "replace")


def _outputs(stdout: bytes | None, stderr: bytes | None) -> str:
    out = (stdout or b"").decode("utf-8", "replace")
    err = (stderr or b"").decode("utf-8", "replace")
    return f"--- client stdout ---\n{out}\n--- client stderr ---\n{err}"


# --------------------------------------------------------------------------------------------
# curl

CURL_DATA_MODES = {
    "epsv": [],
    "pasv": ["--disable-epsv"],
    "eprt": ["--ftp-port", "127.0.0.1"],
    "port": ["--ftp-port", "127.0.0.1", "--disable-eprt"],
}


# curl 7.87.0 up to 8.0 lost the TLS layer on active-mode data connections: it sends the file in
# clear after PROT P (curl issue #10666, fixed by PR #10669 in 8.0.0). Debian 12 ships 7.88.1.
CURL_ACTIVE_TLS_BROKEN = ((7, 87, 0), (8, 0, 0))


def _curl_version() -> tuple[int, ...] | None:
    path = shutil.which("curl")
    if path is None:
        return None
    words = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout.split()
    return tuple(int(part) for part in words[1].split("-")[0].split(".")[:3])


def _curl_modes() -> list[pytest.ParameterSet]:
    version = _curl_version()
    broken = version is not None and CURL_ACTIVE_TLS_BROKEN[0] <= version < CURL_ACTIVE_TLS_BROKEN[1]
    reason = f"curl {'.'.join(map(str, version or ()))} sends active-mode FTPS data unencrypted (curl#10666)"
    return [
        pytest.param(mode, marks=pytest.mark.skipif(broken and "--ftp-port" in args, reason=reason))
        for mode, args in CURL_DATA_MODES.items()
    ]


@pytest.mark.parametrize("data_mode", _curl_modes())
def test_curl(endpoint: Endpoint, data_mode: str, payload: Payload) -> None:
    curl_bin = require_tool("curl")
    server = endpoint.server

    def curl(*args: str) -> str:
        return run_client(
            [
                curl_bin, "--verbose", "--silent", "--show-error", "--max-time", "30",
                "--ssl-reqd", "--cacert", str(server.cafile),
                "--user", f"{server.user}:{server.password}",
                *CURL_DATA_MODES[data_mode], *args,
            ],
            server,
        )  # fmt: skip

    # One transfer per curl run. With several URLs in one run curl reuses the control connection,
    # and under TLS 1.3 its next data connection offers the ticket-less session of the previous
    # data connection instead of the control session: servers that require session reuse refuse
    # it (curl issue #4654, still so in 7.88.1). curl's exit status also reflects only the last URL.
    for src in payload.files:
        curl("-T", str(src), endpoint.url(src.name))
    assert_stored(server, payload)

    assert_listing(curl(endpoint.url()), curl("--list-only", endpoint.url()), payload)

    for src in payload.files:
        curl("-o", str(payload.download_dir / src.name), endpoint.url(src.name))
    assert_downloaded(payload)

    # Quote commands run before the transfer: delete both, then the NLST must not show them.
    deletes = [arg for src in payload.files for arg in ("-Q", f"DELE {src.name}")]
    after = curl("--list-only", *deletes, endpoint.url())
    assert not any(src.name in after.split() for src in payload.files), after
    assert_deleted(server, payload)


# --------------------------------------------------------------------------------------------
# lftp


def _lftp_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_lftp(endpoint: Endpoint, passive: bool, payload: Payload, tmp_path: Path) -> None:
    lftp_bin = require_tool("lftp")
    server = endpoint.server
    if endpoint.implicit:
        open_cmd = f"open -u {server.user},{server.password} {endpoint.url()}"
    else:
        open_cmd = f"open -u {server.user},{server.password} -p {endpoint.port} ftp://{server.host}"
    script = [
        "set cmd:fail-exit yes",  # stop at the first failing command, with a non-zero exit status
        "set net:max-retries 1",
        "set net:timeout 10",
        "set net:reconnect-interval-base 1",
        f"set ssl:ca-file {_lftp_quote(str(server.cafile))}",
        "set ssl:verify-certificate yes",
        "set ssl:check-hostname yes",
        "set ftp:ssl-force true",
        "set ftp:ssl-protect-data true",
        "set ftp:ssl-protect-list true",
        f"set ftp:passive-mode {'on' if passive else 'off'}",
        "set xfer:clobber on",
        open_cmd,
        *(f"put {_lftp_quote(str(src))} -o {src.name}" for src in payload.files),
        "echo @@LIST",
        "ls",
        "echo @@NLST",
        "nlist",
        "echo @@END",
        *(f"get {src.name} -o {_lftp_quote(str(payload.download_dir / src.name))}" for src in payload.files),
        "rm " + " ".join(src.name for src in payload.files),
    ]
    home = tmp_path / "lftp-home"  # no user rc files, bookmarks or history from the machine's $HOME
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "LFTP_HOME": str(home / ".lftp")}
    env.pop("XDG_CONFIG_HOME", None)
    env.pop("XDG_DATA_HOME", None)
    out = run_client([lftp_bin, "--norc", "-c", "\n".join(script)], server, env=env)

    listing = out.split("@@LIST\n", 1)[1].split("@@NLST\n", 1)
    assert_listing(listing[0], listing[1].split("@@END", 1)[0], payload)
    assert_downloaded(payload)
    assert_deleted(server, payload)


# --------------------------------------------------------------------------------------------
# Python ftplib


class SessionReuseMixin:
    """Wrap protected data connections with the control connection's TLS session.

    Plain ``ftplib.FTP_TLS`` does a full handshake on every data connection, which servers
    requiring session reuse (vsftpd's require_ssl_reuse, pyftps by default) refuse with 522.
    """

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        ftp: Any = self
        conn, size = ftplib.FTP.ntransfercmd(ftp, cmd, rest)
        if ftp._prot_p:
            conn = ftp.context.wrap_socket(conn, server_hostname=ftp.host, session=ftp.sock.session)
        return conn, size


class ImplicitConnectMixin:
    """Implicit FTPS (MS-FTPS 3.1.5.1): TLS at once, greeting read inside TLS, no AUTH/PBSZ/PROT sent."""

    def connect(
        self,
        host: str = "",
        port: int = 0,
        timeout: float = -999,
        source_address: tuple[str, int] | None = None,
    ) -> str:
        ftp: Any = self
        if host:
            ftp.host = host
        if port > 0:
            ftp.port = port
        if timeout != -999:
            ftp.timeout = timeout
        if source_address is not None:
            ftp.source_address = source_address
        sys.audit("ftplib.connect", ftp, ftp.host, ftp.port)
        raw = socket.create_connection((ftp.host, ftp.port), ftp.timeout, source_address=ftp.source_address)
        ftp.af = raw.family
        ftp.sock = ftp.context.wrap_socket(raw, server_hostname=ftp.host)
        ftp.file = ftp.sock.makefile("r", encoding=ftp.encoding)
        ftp.welcome = ftp.getresp()
        ftp._prot_p = True  # the server applied PBSZ 0 + PROT P implicitly
        return str(ftp.welcome)


class ExplicitFTPS(SessionReuseMixin, ftplib.FTP_TLS):
    pass


class ImplicitFTPS(ImplicitConnectMixin, SessionReuseMixin, ftplib.FTP_TLS):
    pass


class ImplicitFTPSNoReuse(ImplicitConnectMixin, ftplib.FTP_TLS):
    pass


def ftplib_login(endpoint: Endpoint, reuse: bool = True) -> ftplib.FTP_TLS:
    """Connect and log in; explicit sessions send AUTH TLS, PBSZ 0, PROT P."""
    server = endpoint.server
    context = ssl.create_default_context(cafile=str(server.cafile))
    cls: type[ftplib.FTP_TLS]
    if endpoint.implicit:
        cls = ImplicitFTPS if reuse else ImplicitFTPSNoReuse
    else:
        cls = ExplicitFTPS if reuse else ftplib.FTP_TLS
    ftp = cls(context=context, timeout=30)
    try:
        ftp.connect(server.host, endpoint.port)
        ftp.login(server.user, server.password)  # sends AUTH TLS first unless already under TLS
        if not endpoint.implicit:
            ftp.prot_p()
    except BaseException:
        ftp.close()
        raise
    return ftp


@pytest.fixture
def ftps(endpoint: Endpoint) -> Iterator[ftplib.FTP_TLS]:
    ftp = ftplib_login(endpoint)
    try:
        yield ftp
        ftp.quit()
    finally:
        ftp.close()


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_ftplib(endpoint: Endpoint, ftps: ftplib.FTP_TLS, passive: bool, payload: Payload) -> None:
    ftps.set_pasv(passive)
    for src in payload.files:
        with src.open("rb") as f:
            assert ftps.storbinary(f"STOR {src.name}", f).startswith("226")
    assert_stored(endpoint.server, payload)

    listing: list[str] = []
    ftps.retrlines("LIST", listing.append)
    assert_listing("\n".join(listing), "\n".join(ftps.nlst()), payload)

    for src in payload.files:
        buf = io.BytesIO()
        assert ftps.retrbinary(f"RETR {src.name}", buf.write).startswith("226")
        (payload.download_dir / src.name).write_bytes(buf.getvalue())
    assert_downloaded(payload)

    for src in payload.files:
        ftps.delete(src.name)
    assert_deleted(endpoint.server, payload)


def transfer_reply(ftp: ftplib.FTP_TLS, cmd: str, data: bytes = b"") -> str:
    """Run a transfer command whatever happens on the data connection; return the final reply line."""
    try:
        conn = ftp.transfercmd(cmd)
    except ftplib.Error as exc:  # refused before any data connection was used
        return str(exc)
    try:
        with conn:
            if data:
                conn.sendall(data)
                if isinstance(conn, ssl.SSLSocket):
                    conn.unwrap()
            else:
                while conn.recv(65536):
                    pass
    except OSError:
        pass  # the server drops a data connection it refuses; the control reply says why
    try:
        return ftp.voidresp()
    except ftplib.Error as exc:
        return str(exc)


@pytest.mark.parametrize("endpoint", PYFTPS_ENDPOINTS, indirect=True)
@pytest.mark.parametrize("command", ["NLST", "STOR refused.bin"])
def test_ftplib_without_session_reuse_gets_522(endpoint: Endpoint, command: str) -> None:
    """Protected data connections that do not resume the control session are refused (RFC 4217 §10.2)."""
    ftp = ftplib_login(endpoint, reuse=False)
    try:
        reply = transfer_reply(ftp, command, data=b"x" * 1000 if command.startswith("STOR") else b"")
        assert reply.startswith("522"), reply
        assert re.search(r"reus|resum", reply, re.IGNORECASE), f"522 should mention session reuse: {reply}"
        assert ftp.voidcmd("NOOP").startswith("200"), "control connection should survive a refused transfer"
        ftp.quit()
    finally:
        ftp.close()
