"""Default self-signed server certificate and certificate facts for logs (RFC 5280 §4.2; RFC 4217 §15.1)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pyftps.tls.contexts import TLSConfigError

__all__ = [
    "CERT_FILE_NAME",
    "KEY_FILE_NAME",
    "CertInfo",
    "certificate_fingerprint",
    "ensure_self_signed",
    "load_certificate_info",
]

CERT_FILE_NAME = "server.crt"
KEY_FILE_NAME = "server.key"
VALIDITY = dt.timedelta(days=825)  # the longest lifetime Apple clients accept for TLS server certs
BACKDATE = dt.timedelta(hours=1)  # tolerate clients whose clock is a little behind
RENEW_MARGIN = dt.timedelta(days=1)  # replace a certificate that is about to expire, not only expired
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What a server logs about its certificate at start-up."""

    subject_cn: str | None
    issuer_cn: str | None
    sans: tuple[str, ...]  # DNS names, then IP addresses, as text
    not_before: dt.datetime  # UTC, timezone-aware
    not_after: dt.datetime
    fingerprint: str  # SHA-256 of the DER, "AB:CD:..."
    self_signed: bool  # subject and issuer are the same name: clients must pin or trust it explicitly


def certificate_fingerprint(pem_or_der: bytes | str) -> str:
    """SHA-256 fingerprint of a certificate, uppercase hex pairs joined by colons (as OpenSSL prints)."""
    data = pem_or_der.encode("ascii") if isinstance(pem_or_der, str) else pem_or_der
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            der = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
        else:
            der = x509.load_der_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    except ValueError as exc:
        raise ValueError(f"not a PEM or DER certificate: {exc}") from exc
    return _fingerprint_der(der)


def _fingerprint_der(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _info(cert: x509.Certificate) -> CertInfo:
    sans: list[str] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans += ext.get_values_for_type(x509.DNSName)
        sans += [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertInfo(
        subject_cn=_common_name(cert.subject),
        issuer_cn=_common_name(cert.issuer),
        sans=tuple(sans),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint=_fingerprint_der(der),
        self_signed=cert.subject == cert.issuer,
    )


def load_certificate_info(path: str | os.PathLike[str]) -> CertInfo:
    """Facts about the first (leaf) certificate of a PEM or DER file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"cannot read certificate file {os.fspath(path)!r}: {exc.strerror}") from exc
    try:
        if b"-----BEGIN" in data:
            cert = x509.load_pem_x509_certificates(data)[0]
        else:
            cert = x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise TLSConfigError(f"certificate file {os.fspath(path)!r} holds no certificate: {exc}") from exc
    return _info(cert)


# --- self-signed default ------------------------------------------------------------------------


def _dns_name(raw: str) -> str | None:
    """The A-label form of a host name, or None if it is not one."""
    name = raw.strip().rstrip(".")
    if not name:
        return None
    try:
        return name.encode("idna").decode("ascii").lower()
    except UnicodeError:  # empty or over-long label, invalid characters
        return None


def _wanted_names(hostnames: Sequence[str]) -> tuple[list[str], list[_IPAddress]]:
    """DNS names (A-labels, in order, no duplicates) and IP addresses for the SAN extension."""
    dns: list[str] = []
    ips: list[_IPAddress] = []
    system = [socket.gethostname(), "localhost", "127.0.0.1", "::1"]
    for index, raw in enumerate([*hostnames, *system]):
        try:
            ip = ipaddress.ip_address(raw.strip())
        except ValueError:
            name = _dns_name(raw)
            if name is None and index < len(hostnames):
                raise ValueError(f"invalid host name for the certificate: {raw!r}") from None
            if name is not None and name not in dns:
                dns.append(name)  # an odd system host name is skipped rather than fatal
        else:
            if ip not in ips:
                ips.append(ip)
    return dns, ips


def _existing_is_usable(cert_path: Path, key_path: Path, dns: list[str], ips: list[_IPAddress]) -> bool:
    """True if the pair on disk loads, matches, is not about to expire and covers every wanted name."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound):
        return False
    if cert.public_key() != key.public_key():
        return False
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc - RENEW_MARGIN:
        return False
    have_dns = set(san.get_values_for_type(x509.DNSName))
    have_ips = set(san.get_values_for_type(x509.IPAddress))
    return set(dns) <= have_dns and set(ips) <= have_ips


def _build(dns: list[str], ips: list[_IPAddress]) -> tuple[bytes, bytes]:
    """A fresh ECDSA P-256 key and self-signed server certificate, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    # CN is informational (clients match SANs, RFC 6125 §6.4.4) and limited to 64 characters.
    cn = next((n for n in dns if len(n) <= 64), "localhost")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    san: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    san += [x509.IPAddress(ip) for ip in ips]
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now - BACKDATE + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write to a new temporary file created with ``mode``, then rename it over ``path``.

    O_EXCL with an explicit mode means the key is never readable by others, not even briefly, and
    the rename means a reader never sees half a file.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits; never adds any beyond ``mode``
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def ensure_self_signed(directory: Path, hostnames: Sequence[str] = ()) -> tuple[Path, Path]:
    """Return ``(server.crt, server.key)`` in ``directory``, creating them if needed.

    An existing pair is kept when it loads, matches, is valid for at least another day and its SANs
    cover ``hostnames`` + this host's name + localhost + 127.0.0.1 + ::1; otherwise a new ECDSA P-256
    key (mode 0600) and self-signed certificate (825 days, starting 1 hour ago) replace it. Clients
    must pin it or trust it explicitly (RFC 4217 §15.1.1).
    """
    directory = Path(directory)
    dns, ips = _wanted_names(hostnames)
    cert_path, key_path = directory / CERT_FILE_NAME, directory / KEY_FILE_NAME
    if _existing_is_usable(cert_path, key_path, dns, ips):
        return cert_path, key_path
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        cert_pem, key_pem = _build(dns, ips)
        # Key first: a crash in between leaves a pair that does not match, which the next call
        # detects and replaces.
        _write_atomically(key_path, key_pem, 0o600)
        _write_atomically(cert_path, cert_pem, 0o644)
    except OSError as exc:
        raise TLSConfigError(
            f"cannot write self-signed certificate in {os.fspath(directory)!r}: {exc}"
        ) from exc
    return cert_path, key_path
