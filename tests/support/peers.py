"""Third-party FTPS servers for interop tests, each on 127.0.0.1 high ports with a configuration of its own.

- :func:`vsftpd` (Debian's vsftpd 3.0.3, installed by ``.ci/run``): explicit FTPS, or implicit with
  ``implicit_ssl=YES``; TLS required for login and data, ``require_ssl_reuse=YES``. It logs in a local
  Unix account, :data:`TEST_USER`, created once (root only) with ``/usr/sbin/nologin`` as its shell.
- :func:`proftpd` (ProFTPD 1.3.8 with mod_tls, explicit or implicit): Debian's proftpd-core conflicts with
  vsftpd, so it is never installed: :func:`proftpd_install` runs ``apt-get download`` and ``dpkg-deb -x``
  once into ``~/.cache/pyftps-peers/`` and the binary runs from there. Its user is virtual (AuthUserFile).

Each context manager yields a :class:`Peer` and removes its directory afterwards; the process is run
and always stopped by :func:`~tests.support.processes.running_process`. When a peer cannot run here,
:class:`PeerUnavailable` says why (tests turn it into a skip).

What vsftpd 3.0.3 needs on this machine (measured): a home directory that exists (it ``chdir``s there
before ``local_root``), a root directory the account can enter (pytest's ``/tmp/pytest-of-root`` is
0700, so peers use their own 0755 directory), ``seccomp_sandbox=NO`` / ``isolate=NO`` /
``isolate_network=NO`` in containers, and no ``ssl_tlsv1_2`` line: 3.0.3 does not know that option and
refuses to start ("unrecognised variable"); TLS 1.2 and 1.3 are on by default. ``pam_service_name``
names a service without a file in ``/etc/pam.d``, so PAM uses ``other`` (pam_unix only): Debian's
``vsftpd`` service also runs pam_shells, which refuses a ``nologin`` account.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.support.ports import LOOPBACK, free_port, free_port_range
from tests.support.processes import ProcessStartError, RunningProcess, ports_accept, running_process

TEST_USER = "pyftpstest"
CACHE = Path.home() / ".cache" / "pyftps-peers"
VSFTPD = Path("/usr/sbin/vsftpd")
PASSIVE_PORTS = 16
START_TIMEOUT = 10.0
START_ATTEMPTS = 3
# ProFTPD 1.3.8 from bookworm: the core, mod_tls (in proftpd-mod-crypto) and the libraries the
# binary links against that a vsftpd machine lacks.
PROFTPD_PACKAGES = (
    "proftpd-core",
    "proftpd-mod-crypto",
    "libhiredis0.14",
    "libmemcached11",
    "libmemcachedutil2",
    "libhashkit2",
    "libpcre2-posix3",
)


class PeerUnavailable(Exception):
    """This peer cannot run here; the message is the reason (used as the skip reason)."""


@dataclass(frozen=True)
class Peer:
    """A running third-party server as clients see it."""

    name: str
    host: str
    port: int
    implicit: bool
    root: Path  # where the user's files land
    user: str
    password: str
    cafile: Path  # the server's self-signed certificate
    requires_session_reuse: bool
    process: RunningProcess

    @property
    def mode(self) -> str:
        return "implicit" if self.implicit else "explicit"

    def log(self) -> str:
        return self.process.output()


# --------------------------------------------------------------------------- shared pieces


def rsa_certificate(directory: Path, days: int = 90) -> tuple[Path, Path]:
    """A self-signed RSA-2048 certificate for localhost/127.0.0.1: ``(cert.pem, key.pem)``.

    RSA because vsftpd's options are named ``rsa_cert_file``/``rsa_private_key_file`` and older builds
    accept nothing else; CA:TRUE so that OpenSSL accepts it as its own trust anchor.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """An exclusive lock shared by every test process on this machine (first-use set-up)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def _peer_directory(prefix: str, owner: int) -> Iterator[Path]:
    """A fresh 0755 directory (the session user can enter it) holding ``root/``, owned by ``owner``."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        base.chmod(0o755)
        (base / "root").mkdir()
        os.chown(base / "root", owner, -1)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


Launch = Callable[[], tuple[list[str], int]]  # writes a configuration on fresh ports: (argv, control port)


@contextlib.contextmanager
def _start(
    name: str, launch: Launch, workdir: Path, env: Mapping[str, str] | None = None
) -> Iterator[tuple[RunningProcess, int]]:
    """Start the server; when another process took one of its ports meanwhile, retry on fresh ones."""
    for attempt in range(1, START_ATTEMPTS + 1):
        argv, port = launch()
        stack = contextlib.ExitStack()
        try:
            proc = stack.enter_context(
                running_process(
                    argv,
                    ready=ports_accept(LOOPBACK, port),
                    timeout=START_TIMEOUT,
                    name=f"{name}-{attempt}",
                    env=env,
                    cwd=workdir,
                    log_dir=workdir / "logs",
                )
            )
        except ProcessStartError as exc:
            text = str(exc).lower()
            if attempt < START_ATTEMPTS and ("address already in use" in text or "bind" in text):
                continue
            raise
        with stack:
            yield proc, port
        return


# --------------------------------------------------------------------------- vsftpd


def vsftpd_unavailable() -> str | None:
    """Why vsftpd cannot run here, or None."""
    if not VSFTPD.exists():
        return "vsftpd is not installed (.ci/run installs it with apt)"
    if os.geteuid() != 0:
        return "vsftpd needs root: it logs in a local Unix account and changes to its uid"
    return None


def local_account() -> tuple[str, str]:
    """``(user, password)`` of the local account vsftpd logs in; created once, password kept in the cache.

    The password file (0600) is shared by every test process, so parallel runs never change it under
    each other's feet. The account has no shell and no home of its own (``/``).
    """
    with _locked("account"):
        secret = CACHE / f"{TEST_USER}.password"
        try:
            pwd.getpwnam(TEST_USER)
            created = False
        except KeyError:
            subprocess.run(["useradd", "-M", "-d", "/", "-s", "/usr/sbin/nologin", TEST_USER], check=True)
            created = True
        if created or not secret.exists():
            secret.write_text(secrets.token_urlsafe(18))
            secret.chmod(0o600)
            subprocess.run(["chpasswd"], input=f"{TEST_USER}:{secret.read_text()}", text=True, check=True)
        return TEST_USER, secret.read_text()


def _vsftpd_conf(base: Path, port: int, passive: tuple[int, int], implicit: bool) -> str:
    cert, key = base / "cert.pem", base / "key.pem"
    lines = {
        "listen": "YES", "listen_address": LOOPBACK, "listen_port": port, "background": "NO",
        "anonymous_enable": "NO", "local_enable": "YES", "write_enable": "YES", "local_umask": "022",
        "local_root": base / "root", "pam_service_name": "pyftps-peer-vsftpd",
        "ssl_enable": "YES", "implicit_ssl": "YES" if implicit else "NO", "allow_anon_ssl": "NO",
        "force_local_logins_ssl": "YES", "force_local_data_ssl": "YES", "require_ssl_reuse": "YES",
        "ssl_sslv2": "NO", "ssl_sslv3": "NO", "ssl_tlsv1": "NO",
        "rsa_cert_file": cert, "rsa_private_key_file": key,
        "pasv_enable": "YES", "pasv_min_port": passive[0], "pasv_max_port": passive[1],
        "secure_chroot_dir": base / "empty",
        "seccomp_sandbox": "NO", "isolate": "NO", "isolate_network": "NO",
        "xferlog_enable": "YES", "vsftpd_log_file": base / "vsftpd.log", "max_per_ip": 0, "max_clients": 0,
    }  # fmt: skip
    return "".join(f"{key}={value}\n" for key, value in lines.items())


@contextlib.contextmanager
def vsftpd(*, implicit: bool = False) -> Iterator[Peer]:
    """vsftpd with TLS required on control and data and session reuse required (explicit or implicit)."""
    reason = vsftpd_unavailable()
    if reason is not None:
        raise PeerUnavailable(reason)
    user, password = local_account()
    with _peer_directory("pyftps-vsftpd-", pwd.getpwnam(user).pw_uid) as base:
        (base / "empty").mkdir(mode=0o755)
        cert, _ = rsa_certificate(base)

        def launch() -> tuple[list[str], int]:
            port = free_port()
            (base / "vsftpd.conf").write_text(
                _vsftpd_conf(base, port, free_port_range(PASSIVE_PORTS), implicit)
            )
            return [str(VSFTPD), str(base / "vsftpd.conf")], port

        with _start("vsftpd", launch, base) as (proc, port):
            yield Peer("vsftpd", LOOPBACK, port, implicit, base / "root", user, password, cert, True, proc)


# --------------------------------------------------------------------------- ProFTPD


def proftpd_install() -> Path:
    """The extracted ProFTPD tree (``usr/sbin/proftpd`` inside), downloaded on first use.

    Raises PeerUnavailable when apt cannot fetch the packages (no network, no package lists) or the
    binary does not run.
    """
    tree = CACHE / "proftpd" / "root"
    with _locked("proftpd"):
        if not (tree / ".complete").exists():
            _download_proftpd(tree)
        argv = [str(tree / "usr/sbin/proftpd"), "-v"]
        probe = subprocess.run(argv, env=_proftpd_env(tree), capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            raise PeerUnavailable(f"the extracted proftpd does not run: {probe.stderr.strip()[:300]}")
    return tree


def _download_proftpd(tree: Path) -> None:
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise PeerUnavailable("ProFTPD needs apt-get and dpkg-deb to be fetched")
    shutil.rmtree(tree, ignore_errors=True)
    debs = tree.parent / "debs"
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir(parents=True)
    try:
        done = subprocess.run(
            ["apt-get", "download", "-q", *PROFTPD_PACKAGES],
            cwd=debs,
            capture_output=True,
            check=False,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        raise PeerUnavailable("apt-get download of ProFTPD timed out") from None
    if done.returncode != 0:
        raise PeerUnavailable(
            f"apt-get download {' '.join(PROFTPD_PACKAGES)} failed: {done.stderr.strip()[-300:]}"
        )
    tree.mkdir(parents=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
    (tree / ".complete").touch()
    shutil.rmtree(debs, ignore_errors=True)


def _proftpd_env(tree: Path) -> dict[str, str]:
    return dict(os.environ, LD_LIBRARY_PATH=str(tree / "usr/lib/x86_64-linux-gnu"))


def _proftpd_conf(tree: Path, base: Path, port: int, passive: tuple[int, int], implicit: bool) -> str:
    options = "UseImplicitSSL" if implicit else ""
    return f"""
ServerName "pyftps interop"
ServerType standalone
DefaultServer on
Port {port}
DefaultAddress {LOOPBACK}
SocketBindTight on
UseIPv6 off
UseReverseDNS off
User nobody
Group nogroup
PidFile {base}/proftpd.pid
ScoreboardFile {base}/proftpd.scoreboard
DelayTable none
WtmpLog off
ControlsEngine off
ModulePath {tree}/usr/lib/proftpd
LoadModule mod_tls.c
AuthOrder mod_auth_file.c
AuthUserFile {base}/ftpd.passwd
AuthGroupFile {base}/ftpd.group
RequireValidShell off
DefaultRoot ~
Umask 022
PassivePorts {passive[0]} {passive[1]}
TransferLog {base}/xfer.log
<IfModule mod_tls.c>
  TLSEngine on
  TLSRequired on
  TLSProtocol TLSv1.2 TLSv1.3
  TLSRSACertificateFile {base}/cert.pem
  TLSRSACertificateKeyFile {base}/key.pem
  TLSVerifyClient off
  TLSLog {base}/tls.log
  {"TLSOptions " + options if options else ""}
</IfModule>
<Directory />
  AllowOverwrite on
</Directory>
"""


@contextlib.contextmanager
def proftpd(*, implicit: bool = False) -> Iterator[Peer]:
    """ProFTPD with mod_tls: TLS required (``TLSRequired on``); it requires session reuse by default."""
    if os.geteuid() != 0:
        raise PeerUnavailable("ProFTPD runs as root here (it changes to the session user's uid)")
    tree = proftpd_install()
    nobody = pwd.getpwnam("nobody")
    with _peer_directory("pyftps-proftpd-", nobody.pw_uid) as base:
        cert, _ = rsa_certificate(base)
        password = secrets.token_urlsafe(12)
        hashed = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True, check=True
        ).stdout.strip()
        entry = f"{TEST_USER}:{hashed}:{nobody.pw_uid}:{nobody.pw_gid}::{base / 'root'}:/bin/false\n"
        (base / "ftpd.passwd").write_text(entry)
        (base / "ftpd.group").write_text(f"nogroup:x:{nobody.pw_gid}:\n")
        for name in ("ftpd.passwd", "ftpd.group"):
            (base / name).chmod(0o600)

        def launch() -> tuple[list[str], int]:
            port = free_port()
            conf = _proftpd_conf(tree, base, port, free_port_range(PASSIVE_PORTS), implicit)
            (base / "proftpd.conf").write_text(conf)
            return [str(tree / "usr/sbin/proftpd"), "-n", "-q", "-c", str(base / "proftpd.conf")], port

        with _start("proftpd", launch, base, _proftpd_env(tree)) as (proc, port):
            root = base / "root"
            yield Peer("proftpd", LOOPBACK, port, implicit, root, TEST_USER, password, cert, True, proc)


@contextlib.contextmanager
def started(name: str, *, implicit: bool = False) -> Iterator[Peer]:
    """``vsftpd`` or ``proftpd`` for a test: skipped with the reason when it cannot run here, except that
    a missing vsftpd fails under CI, where ``.ci/run`` installs it."""
    import pytest

    factory = {"vsftpd": vsftpd, "proftpd": proftpd}[name]
    with contextlib.ExitStack() as stack:
        try:
            peer = stack.enter_context(factory(implicit=implicit))
        except PeerUnavailable as why:
            if name == "vsftpd" and os.environ.get("CI") and not VSFTPD.exists():
                pytest.fail(str(why))
            pytest.skip(f"{name}: {why}")
        yield peer
