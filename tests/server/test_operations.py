"""Operating a running `pyftps serve`: settings files, SIGHUP certificate reload, SIGTERM drain."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pyftps.client import SyncClient
from pyftps.client.errors import FTPError
from pyftps.tls.certs import certificate_fingerprint
from tests.support.certs import make_self_signed_cert
from tests.support.ports import free_port, free_port_range
from tests.support.processes import RunningProcess, running_process


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _pyftps(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYFTPS_")}
    return subprocess.run(
        [sys.executable, "-m", "pyftps", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_config_check_accepts_a_good_file_and_names_the_bad_setting(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[server]\nport = 2121\npassive_ports = "50000-50100"\n[limits]\nmax_per_ip = 5\n')
    result = _pyftps("config", "check", str(good))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text('[server]\npassive_ports = "80-90"\n')
    result = _pyftps("config", "check", str(bad))
    assert result.returncode == 2
    assert "server.passive_ports" in result.stderr and "1024" in result.stderr
    assert "Traceback" not in result.stderr

    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[server]\nprot = 21\n")
    result = _pyftps("config", "check", str(unknown))
    assert result.returncode == 2 and "unknown setting 'server.prot'" in result.stderr


def test_serve_reports_a_bad_environment_variable_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYFTPS_LIMITS_MAX_PER_IP": "many"}
    result = subprocess.run(
        [sys.executable, "-m", "pyftps", "serve", "--state-dir", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "pyftps: PYFTPS_LIMITS_MAX_PER_IP: expected a whole number, got 'many'"
    ]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RunningProcess, int, Path, Path]]:
    """`pyftps serve` on an explicit port with a certificate the test may replace."""
    certs = tmp_path / "certs"
    certs.mkdir()
    first = make_self_signed_cert(certs)
    root = tmp_path / "root"
    root.mkdir()
    port = free_port()
    low, high = free_port_range(8)
    argv = [
        sys.executable, "-m", "pyftps", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--implicit-port", "0",
        "--passive-ports", f"{low}-{high}", "--cert", str(first.cert), "--key", str(first.key),
        "--user", "alice:secret", "--root", str(root), "--state-dir", str(tmp_path / "state"),
        "--login-delay", "0", "--download-rate", "400000",
    ]  # fmt: skip
    with running_process(argv, ready=lambda: _accepts(port), timeout=20, name="pyftps") as process:
        yield process, port, root, first.cert


def _client(port: int, cert: Path) -> SyncClient:
    return SyncClient.connect(
        "127.0.0.1", port, mode="explicit", user="alice", password="secret", cafile=str(cert)
    )


def test_sighup_loads_a_new_certificate_for_new_sessions_only(
    served: tuple[RunningProcess, int, Path, Path], tmp_path: Path
) -> None:
    process, port, root, cert = served
    (root / "f.bin").write_bytes(os.urandom(100_000))
    old_session = _client(port, cert)
    second = make_self_signed_cert(tmp_path / "new")
    shutil.copyfile(second.cert, cert)
    shutil.copyfile(second.key, cert.with_name("key.pem"))
    os.kill(process.pid, signal.SIGHUP)

    new_fingerprint = certificate_fingerprint(second.cert.read_bytes())
    for _ in range(100):  # the reload is asynchronous: wait until a new handshake shows it
        try:
            options = {"user": "alice", "password": "secret", "fingerprint": new_fingerprint}
            with SyncClient.connect("127.0.0.1", port, mode="explicit", **options) as fresh:
                fresh.noop()
            break
        except FTPError:
            threading.Event().wait(0.1)
    else:
        pytest.fail("the new certificate was never served:\n" + process.stderr_path.read_text())
    # The session opened before the reload keeps its TLS context: its data connections still resume.
    target = tmp_path / "copy.bin"
    old_session.download("f.bin", target)
    assert target.read_bytes() == (root / "f.bin").read_bytes()
    old_session.quit()


def test_sigterm_lets_a_running_transfer_finish_and_closes_idle_sessions(
    served: tuple[RunningProcess, int, Path, Path], tmp_path: Path
) -> None:
    process, port, root, cert = served
    payload = os.urandom(1_200_000)  # about 3 s at the 400 kB/s download limit
    (root / "big.bin").write_bytes(payload)
    idle = _client(port, cert)
    busy = _client(port, cert)
    target = tmp_path / "big.copy"
    result: list[object] = []

    def download() -> None:
        try:
            result.append(busy.download("big.bin", target))
        except Exception as error:  # reported by the assertion below
            result.append(error)

    worker = threading.Thread(target=download)
    worker.start()
    threading.Event().wait(0.8)  # the transfer is under way
    os.kill(process.pid, signal.SIGTERM)
    worker.join(timeout=30)
    assert result == [len(payload)], process.stderr_path.read_text()
    assert target.read_bytes() == payload
    with pytest.raises(FTPError):
        idle.noop()  # it was told 421 and closed while the transfer ran
    assert process.proc.wait(timeout=30) == 0
    assert not _accepts(port)
    for client in (idle, busy):
        with contextlib.suppress(FTPError):
            client.quit()


def test_metrics_logs_and_xferlog_follow_a_transfer(tmp_path: Path) -> None:
    cert = make_self_signed_cert(tmp_path / "certs")
    root = tmp_path / "root"
    root.mkdir()
    port, metrics_port = free_port(), free_port()
    low, high = free_port_range(4)
    xferlog = tmp_path / "xferlog"
    argv = [
        sys.executable, "-m", "pyftps", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--implicit-port", "0",
        "--passive-ports", f"{low}-{high}", "--cert", str(cert.cert), "--key", str(cert.key),
        "--user", "alice:s3cret-pw", "--root", str(root), "--state-dir", str(tmp_path / "state"),
        "--login-delay", "0", "--metrics-listen", f"127.0.0.1:{metrics_port}",
        "--log-format", "json", "--xferlog", str(xferlog),
    ]  # fmt: skip
    ready = lambda: _accepts(port) and _accepts(metrics_port)  # noqa: E731
    with running_process(argv, ready=ready, timeout=20, name="pyftps") as process:
        options = {"user": "alice", "password": "s3cret-pw", "cafile": str(cert.cert)}
        with SyncClient.connect("127.0.0.1", port, mode="explicit", **options) as client:
            source = tmp_path / "up.bin"
            source.write_bytes(os.urandom(50_000))
            client.upload(source, "up.bin")
        with pytest.raises(FTPError):
            SyncClient.connect("127.0.0.1", port, mode="explicit", **{**options, "password": "n0t-the-pw"})
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        health = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=10)
        assert health.status == 200
        assert 'pyftps_logins_total{result="ok"} 1.0' in body
        assert 'pyftps_logins_total{result="failed"} 1.0' in body
        assert 'pyftps_received_bytes_total{kind="STOR"} 50000.0' in body
        assert 'pyftps_data_tls_resumptions_total{verdict="same_session"}' in body
        assert "pyftps_command_duration_seconds_bucket" in body
        os.kill(process.pid, signal.SIGINT)
        process.proc.wait(timeout=20)
        logs = process.stderr_path.read_text()
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    commands = [r for r in records if r.get("command")]
    assert any(r["command"] == "STOR" and r.get("code") == 226 for r in commands), commands
    assert "s3cret-pw" not in logs and "n0t-the-pw" not in logs
    line = xferlog.read_text().strip().split()
    assert line[-10:-5] == ["/up.bin", "b", "_", "i", "r"] and line[-1] == "c" and "50000" in line


def test_anonymous_login_is_read_only_and_off_unless_enabled(tmp_path: Path) -> None:
    cert = make_self_signed_cert(tmp_path / "certs")
    public = tmp_path / "pub"
    public.mkdir()
    (public / "readme.txt").write_bytes(b"welcome\n")
    port = free_port()
    low, high = free_port_range(4)
    base = [
        sys.executable, "-m", "pyftps", "serve",
        "--host", "127.0.0.1", "--port", str(port), "--implicit-port", "0",
        "--passive-ports", f"{low}-{high}", "--cert", str(cert.cert), "--key", str(cert.key),
        "--user", "alice:secret", "--root", str(tmp_path / "root"), "--state-dir", str(tmp_path / "state"),
        "--login-delay", "0",
    ]  # fmt: skip
    options = {"user": "anonymous", "password": "guest@example.org", "cafile": str(cert.cert)}
    with running_process(base, ready=lambda: _accepts(port), timeout=20, name="pyftps"):
        with pytest.raises(FTPError) as refused:
            SyncClient.connect("127.0.0.1", port, mode="explicit", **options)
        assert refused.value.code == 530
    with running_process([*base, "--anonymous-root", str(public)], ready=lambda: _accepts(port), timeout=20):
        with SyncClient.connect("127.0.0.1", port, mode="explicit", **options) as client:
            target = tmp_path / "readme.copy"
            client.download("readme.txt", target)
            assert target.read_bytes() == b"welcome\n"
            with pytest.raises(FTPError) as denied:
                client.upload(target, "upload.txt")
            assert denied.value.code == 550
    assert sorted(p.name for p in public.iterdir()) == ["readme.txt"]


def _client_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate fit for TLS client authentication (extendedKeyUsage clientAuth)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "carol-laptop")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir()
    cert_path, key_path = directory / "client.pem", directory / "client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _lines(sock: ssl.SSLSocket) -> str:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode()


def test_a_client_certificate_mapped_to_a_user_logs_in_with_232(tmp_path: Path) -> None:
    server_cert = make_self_signed_cert(tmp_path / "server")
    client_cert = _client_certificate(tmp_path / "client")
    state = tmp_path / "state"
    user = [sys.executable, "-m", "pyftps", "user", "--state-dir", str(state)]
    added = subprocess.run(
        [*user, "add", "carol", "--home", str(tmp_path)],
        input="a-password\n", capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    mapped = _pyftps("user", "--state-dir", str(state), "set", "carol", "--certificate", str(client_cert[0]))
    assert mapped.returncode == 0, mapped.stderr
    port = free_port()
    argv = [
        sys.executable, "-m", "pyftps", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--implicit-port", "0", "--cert", str(server_cert.cert), "--key", str(server_cert.key),
        "--state-dir", str(state), "--root", str(tmp_path), "--client-ca", str(client_cert[0]),
        "--login-delay", "0",
    ]  # fmt: skip
    with running_process(argv, ready=lambda: _accepts(port), timeout=20, name="pyftps"):
        for present_certificate, user, expected in (
            (True, "carol", "232"),  # RFC 4217 §12.2: no PASS needed
            (True, "admin", "331"),  # the certificate is carol's, not admin's
            (False, "carol", "331"),
        ):
            context = ssl.create_default_context(cafile=str(server_cert.cert))
            if present_certificate:
                context.load_cert_chain(*client_cert)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                _lines(raw)  # type: ignore[arg-type]
                raw.sendall(b"AUTH TLS\r\n")
                assert _lines(raw).startswith("234")  # type: ignore[arg-type]
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(f"USER {user}\r\n".encode())
                    assert _lines(tls).startswith(expected)
                    if expected == "232":
                        tls.sendall(b"PWD\r\n")
                        assert _lines(tls).startswith("257")
