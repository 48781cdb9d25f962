"""The default self-signed certificate and the certificate facts logged at start-up."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import socket
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from pyftps.tls import (
    TLSChannel,
    TLSConfigError,
    certificate_fingerprint,
    client_context,
    ensure_self_signed,
    load_certificate_info,
    server_context,
)
from pyftps.tls import certs as certs_module


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_creates_pair_with_expected_contents(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed(tmp_path / "tls", ["ftp.example.com", "192.0.2.7"])
    assert (cert_path.name, key_path.name) == ("server.crt", "server.key")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = load(cert_path)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = san.get_values_for_type(x509.DNSName)
    assert dns[0] == "ftp.example.com"
    assert "localhost" in dns and socket.gethostname().lower() in dns
    ips = san.get_values_for_type(x509.IPAddress)
    for ip in ("192.0.2.7", "127.0.0.1", "::1"):
        assert ipaddress.ip_address(ip) in ips
    assert cert.subject.rfc4514_string() == "CN=ftp.example.com" and cert.issuer == cert.subject
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and not basic.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    now = dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=50) < now - cert.not_valid_before_utc < dt.timedelta(minutes=70)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=825)
    assert not list(tmp_path.joinpath("tls").glob("*.tmp"))


def test_second_call_is_idempotent(tmp_path: Path) -> None:
    first = ensure_self_signed(tmp_path)
    before = [p.read_bytes() for p in first]
    second = ensure_self_signed(tmp_path)
    assert second == first
    assert [p.read_bytes() for p in second] == before


def test_new_name_expired_or_broken_pair_is_replaced(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed(tmp_path)
    original = cert_path.read_bytes()
    ensure_self_signed(tmp_path, ["new.example.net"])
    assert cert_path.read_bytes() != original
    assert "new.example.net" in load_certificate_info(cert_path).sans

    cert_path.write_text("garbage")
    ensure_self_signed(tmp_path)
    assert load(cert_path)  # readable again

    key_path.unlink()
    ensure_self_signed(tmp_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    server_context(cert_path, key_path)  # the new key matches the new certificate


def test_expired_certificate_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(certs_module, "VALIDITY", dt.timedelta(minutes=30))  # ends before "now"
    cert_path, _ = ensure_self_signed(tmp_path)
    assert load(cert_path).not_valid_after_utc < dt.datetime.now(dt.UTC)
    monkeypatch.undo()
    ensure_self_signed(tmp_path)
    assert load(cert_path).not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=800)


def test_invalid_explicit_hostname_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid host name"):
        ensure_self_signed(tmp_path, ["a" * 64 + ".example.com"])  # label longer than 63


def test_unwritable_directory_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(TLSConfigError, match="cannot write"):
        ensure_self_signed(blocker / "tls")


def test_loads_into_server_context_and_client_verifies_localhost(tmp_path: Path) -> None:
    cert_path, key_path = ensure_self_signed(tmp_path)
    sctx = server_context(cert_path, key_path)
    for name in ("localhost", "127.0.0.1"):
        client = TLSChannel.client(client_context(cafile=cert_path), name)
        server = TLSChannel.server(sctx)
        for _ in range(5):
            client.handshake()
            server.feed(client.pending_output())
            server.handshake()
            client.feed(server.pending_output())
        assert client.handshake() and server.handshake_complete
        assert client.peer_certificate_der is not None
        assert (
            certificate_fingerprint(client.peer_certificate_der)
            == load_certificate_info(cert_path).fingerprint
        )


def test_certificate_info_and_fingerprint(tmp_path: Path) -> None:
    cert_path, _ = ensure_self_signed(tmp_path, ["files.example.org"])
    info = load_certificate_info(cert_path)
    assert info.subject_cn == info.issuer_cn == "files.example.org" and info.self_signed
    assert info.sans[0] == "files.example.org" and "::1" in info.sans and "127.0.0.1" in info.sans
    assert info.not_before < info.not_after and info.not_after.tzinfo is not None
    der = ssl.PEM_cert_to_DER_cert(cert_path.read_text())
    expected = hashlib.sha256(der).hexdigest().upper()
    assert info.fingerprint.replace(":", "") == expected
    assert len(info.fingerprint) == 32 * 3 - 1 and info.fingerprint == info.fingerprint.upper()
    assert certificate_fingerprint(der) == info.fingerprint
    assert certificate_fingerprint(cert_path.read_text()) == info.fingerprint
    der_file = tmp_path / "cert.der"
    der_file.write_bytes(der)
    assert load_certificate_info(der_file) == info
    with pytest.raises(ValueError):
        certificate_fingerprint(b"not a certificate")
    with pytest.raises(TLSConfigError, match="missing"):
        load_certificate_info(tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(TLSConfigError, match=r"junk\.pem"):
        load_certificate_info(tmp_path / "junk.pem")


def test_key_is_never_world_readable_even_with_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        _, key_path = ensure_self_signed(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
