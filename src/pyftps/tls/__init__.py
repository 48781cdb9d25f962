"""TLS for FTPS: contexts, the default certificate and a sans-IO control channel (RFC 4217; RFC 8996)."""

from __future__ import annotations

from pyftps.tls.certs import CertInfo, certificate_fingerprint, ensure_self_signed, load_certificate_info
from pyftps.tls.channel import TLSChannel
from pyftps.tls.contexts import (
    MODERN_TLS12_CIPHERS,
    ReuseVerdict,
    SNIHandler,
    TLSCertificateError,
    TLSConfigError,
    TLSError,
    TLSHandshakeError,
    TLSProtocolError,
    TLSStateError,
    TLSTruncatedError,
    client_context,
    data_session_matches,
    install_sni_recorder,
    requested_server_name,
    server_context,
    ssl_error_text,
    wrap_control_bio,
    wrap_data_bio,
    wrap_data_client,
    wrap_data_socket,
)

__all__ = [
    "MODERN_TLS12_CIPHERS",
    "CertInfo",
    "ReuseVerdict",
    "SNIHandler",
    "TLSCertificateError",
    "TLSChannel",
    "TLSConfigError",
    "TLSError",
    "TLSHandshakeError",
    "TLSProtocolError",
    "TLSStateError",
    "TLSTruncatedError",
    "certificate_fingerprint",
    "client_context",
    "data_session_matches",
    "ensure_self_signed",
    "install_sni_recorder",
    "load_certificate_info",
    "requested_server_name",
    "server_context",
    "ssl_error_text",
    "wrap_control_bio",
    "wrap_data_bio",
    "wrap_data_client",
    "wrap_data_socket",
]
