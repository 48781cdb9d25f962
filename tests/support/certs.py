"""Generate a throw-away self-signed TLS certificate for "localhost" / 127.0.0.1 (ECDSA P-256).

The certificate is its own trust anchor: clients pass the certificate file as their CA file
(curl ``--cacert``, lftp ``ssl:ca-file``, ``ssl.create_default_context(cafile=...)``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertPaths:
    """PEM files of a self-signed server certificate."""

    cert: Path
    key: Path

    @property
    def cafile(self) -> Path:
        """What clients trust: the self-signed certificate itself."""
        return self.cert


def make_self_signed_cert(
    directory: Path,
    hostname: str = "localhost",
    ip: str = "127.0.0.1",
    days: int = 7,
) -> CertPaths:
    """Write ``cert.pem`` and ``key.pem`` (unencrypted PKCS#8) into ``directory`` and return their paths.

    The certificate names ``hostname`` and ``ip`` in subjectAltName, is marked CA:TRUE with
    keyCertSign so that OpenSSL and GnuTLS accept it as its own issuer, and carries
    serverAuth so strict verifiers accept it as a server certificate.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = CertPaths(cert=directory / "cert.pem", key=directory / "key.pem")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths.key.chmod(0o600)
    return paths
