"""TLS contexts, wrapping rules and the data-session reuse check (RFC 4217 §7, §10.2; RFC 8996 §4)."""

from __future__ import annotations

import contextlib
import enum
import os
import socket
import ssl
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

from pyftps.tls.session_id import session_id

__all__ = [
    "MODERN_TLS12_CIPHERS",
    "ReuseVerdict",
    "SNIHandler",
    "TLSCertificateError",
    "TLSConfigError",
    "TLSError",
    "TLSHandshakeError",
    "TLSProtocolError",
    "TLSStateError",
    "TLSTruncatedError",
    "client_context",
    "data_session_matches",
    "install_sni_recorder",
    "requested_server_name",
    "server_context",
    "ssl_error_text",
    "wrap_control_bio",
    "wrap_data_bio",
    "wrap_data_client",
    "wrap_data_socket",
]

StrPath = str | os.PathLike[str]

# TLS 1.2 only (TLS 1.3 suites are fixed by OpenSSL): forward-secret ECDHE with AEAD ciphers, in the
# Mozilla "intermediate" order; the server's order wins (OP_CIPHER_SERVER_PREFERENCE).
MODERN_TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)


class TLSError(Exception):
    """Base of every error raised by :mod:`pyftps.tls`."""


class TLSConfigError(TLSError, ValueError):
    """A certificate, key, CA file or setting cannot be used; the message names the file."""


class TLSHandshakeError(TLSError):
    """The TLS handshake failed (bad ClientHello, no common version or cipher, peer alert, EOF)."""


class TLSCertificateError(TLSHandshakeError):
    """The peer's certificate failed verification (untrusted, expired, wrong host name)."""


class TLSProtocolError(TLSError):
    """The peer broke the TLS protocol after the handshake (bad record, fatal alert)."""


class TLSTruncatedError(TLSProtocolError):
    """The byte stream ended without the close_notify that an orderly close needs (RFC 8446 §6.1)."""


class TLSStateError(TLSError):
    """The caller used a TLS endpoint out of order (write before the handshake, feed after EOF...)."""


# --- the ticket switch ----------------------------------------------------------------------------
#
# OpenSSL copies SSL_CTX.num_tickets into each SSL object in SSL_new(), i.e. inside wrap_socket() /
# wrap_bio(). Data connections are wrapped with the control connection's context (resumption needs
# the same context object) but must not push TLS 1.3 tickets: curl and lftp close upload connections
# with those tickets unread, the kernel answers with a TCP reset and the tail of the upload can be lost.
# So the count is set to 0 around the data wrap, and every server-side wrap of this module holds this
# lock so that no control connection is created during that window.
_WRAP_LOCK = threading.Lock()
_NORMAL_TICKETS: weakref.WeakKeyDictionary[ssl.SSLContext, int] = weakref.WeakKeyDictionary()


def _normal_ticket_count(ctx: ssl.SSLContext) -> int:
    return _NORMAL_TICKETS.get(ctx, ctx.num_tickets)


@contextlib.contextmanager
def _without_tickets(ctx: ssl.SSLContext) -> Iterator[None]:
    """Hold the wrap lock with ``ctx.num_tickets`` at 0; OpenSSL copies it when the SSL is created."""
    with _WRAP_LOCK:
        normal = _normal_ticket_count(ctx)
        ctx.num_tickets = 0
        try:
            yield
        finally:
            ctx.num_tickets = normal


def wrap_data_socket(ctx: ssl.SSLContext, sock: socket.socket) -> ssl.SSLSocket:
    """Wrap an accepted or connected data socket as the TLS server (RFC 4217 §7), sending no tickets.

    ``ctx`` must be the object the control connection was wrapped with, or the client's ticket is
    rejected ("Session refers to a different SSLContext"); not the one an SNI callback switched it
    to, whose ticket keys did not seal the ticket (see :func:`install_sni_recorder`). The caller
    runs ``do_handshake()`` (so it can time it out and map failures to 522); ``recv`` raises
    ``ssl.SSLEOFError`` on a bare TCP close and returns ``b""`` on close_notify
    (``suppress_ragged_eofs=False``), which tells a complete upload from a truncated one (RFC 4217
    §12.6; CONFORMANCE §2.4).
    """
    with _without_tickets(ctx):
        return ctx.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False, suppress_ragged_eofs=False
        )


def wrap_data_bio(ctx: ssl.SSLContext, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO) -> ssl.SSLObject:
    """Like :func:`wrap_data_socket` for a data connection driven sans-IO (see ``TLSChannel.data_server``)."""
    with _without_tickets(ctx):
        return ctx.wrap_bio(incoming, outgoing, server_side=True)


def wrap_control_bio(
    ctx: ssl.SSLContext,
    incoming: ssl.MemoryBIO,
    outgoing: ssl.MemoryBIO,
    *,
    server_side: bool,
    server_hostname: str | None = None,
    session: ssl.SSLSession | None = None,
) -> ssl.SSLObject:
    """Create the control connection's ``SSLObject``; on the server it issues the normal ticket count.

    Clients of TLS 1.3 servers can only resume on data connections with a ticket from here.
    """
    if server_side and session is not None:
        raise TLSStateError("a server-side TLS connection cannot be given a session")
    with _WRAP_LOCK:
        if server_side:
            ctx.num_tickets = _normal_ticket_count(ctx)
        return ctx.wrap_bio(
            incoming, outgoing, server_side=server_side, server_hostname=server_hostname, session=session
        )


def wrap_data_client(
    ctx: ssl.SSLContext,
    sock: socket.socket,
    *,
    server_hostname: str | None,
    session: ssl.SSLSession | None,
) -> ssl.SSLSocket:
    """Wrap a data socket as the TLS client (RFC 4217 §7), offering the control session (§10.2).

    Pass the control connection's ``session``; under TLS 1.3 it holds a ticket only after at least one
    reply was read under TLS. The caller runs ``do_handshake()``; ``recv`` raises
    ``ssl.SSLEOFError`` on a bare TCP close so a truncated download is reported (CONFORMANCE §2.4).
    """
    return ctx.wrap_socket(
        sock,
        server_side=False,
        do_handshake_on_connect=False,
        suppress_ragged_eofs=False,
        server_hostname=server_hostname,
        session=session,
    )


# --- contexts -------------------------------------------------------------------------------------


def _check_minimum(minimum_version: ssl.TLSVersion) -> None:
    # RFC 8996 §4-5 (updating RFC 4217): TLS 1.0 and 1.1 MUST NOT be negotiated. MINIMUM_SUPPORTED
    # (-2) would allow them; MAXIMUM_SUPPORTED (-1) means "TLS 1.3 only".
    if minimum_version != ssl.TLSVersion.MAXIMUM_SUPPORTED and minimum_version < ssl.TLSVersion.TLSv1_2:
        raise TLSConfigError(f"minimum TLS version {minimum_version.name} is below TLSv1_2 (RFC 8996)")


def _diagnose_cert_pair(cert_file: StrPath, key_file: StrPath) -> str:
    """Name the file that makes ``load_cert_chain`` fail (OpenSSL's own message does not)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert_name, key_name = os.fspath(cert_file), os.fspath(key_file)
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except OSError as exc:
        return f"cannot read TLS certificate file {cert_name!r}: {exc.strerror or exc}"
    except ValueError as exc:
        return f"TLS certificate file {cert_name!r} holds no usable PEM certificate: {exc}"
    try:
        key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
    except OSError as exc:
        return f"cannot read TLS private key file {key_name!r}: {exc.strerror or exc}"
    except (ValueError, TypeError) as exc:  # TypeError: the key is encrypted
        return f"TLS private key file {key_name!r} holds no usable unencrypted PEM key: {exc}"
    if cert.public_key() != key.public_key():
        return f"TLS private key {key_name!r} does not match certificate {cert_name!r}"
    return f"cannot load TLS certificate {cert_name!r} with key {key_name!r}"


def server_context(
    cert_file: StrPath,
    key_file: StrPath,
    *,
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    ciphers: str = MODERN_TLS12_CIPHERS,
    client_cafile: StrPath | None = None,
    num_tickets: int = 2,
) -> ssl.SSLContext:
    """Build the one server context shared by a listener's control and data connections.

    Session tickets stay on so data connections can resume the control session (RFC 4217 §10.2);
    ``num_tickets`` is what control connections issue (data connections issue none, see
    :func:`wrap_data_socket`). With ``client_cafile`` a client certificate is requested and verified
    but optional. An SNI recorder is installed (:func:`requested_server_name`).
    """
    _check_minimum(minimum_version)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = minimum_version
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    ctx.options &= ~ssl.OP_NO_TICKET
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError as exc:
        raise TLSConfigError(f"no usable TLS 1.2 cipher in {ciphers!r}") from exc
    try:
        ctx.load_cert_chain(os.fspath(cert_file), os.fspath(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(_diagnose_cert_pair(cert_file, key_file)) from exc
    if client_cafile is not None:
        _load_cafile(ctx, client_cafile)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.num_tickets = num_tickets
    _NORMAL_TICKETS[ctx] = num_tickets
    install_sni_recorder(ctx)
    return ctx


def _load_cafile(ctx: ssl.SSLContext, cafile: StrPath) -> None:
    try:
        ctx.load_verify_locations(cafile=os.fspath(cafile))
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise TLSConfigError(f"cannot load CA file {os.fspath(cafile)!r}: {reason}") from exc


def client_context(
    *,
    cafile: StrPath | None = None,
    insecure: bool = False,
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
) -> ssl.SSLContext:
    """Build a client context: certificate and host name checked against ``cafile`` or the system CAs.

    ``insecure`` turns both checks off (self-signed test servers); the channel is then encrypted but
    unauthenticated, so a man in the middle can read everything, passwords included.
    """
    _check_minimum(minimum_version)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = minimum_version
    ctx.options |= ssl.OP_NO_COMPRESSION
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif cafile is not None:
        _load_cafile(ctx, cafile)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    return ctx


# --- SNI ------------------------------------------------------------------------------------------
#
# ssl exposes no SSL_get_servername(), and SSLObject.server_hostname is None on the server side. The
# only hook is the context's sni_callback, which is per context but is called with the SSLObject (or
# SSLSocket) being handshaken (measured: the very object wrap_bio() returned). So one recorder per
# context stores the name per connection, weakly, and anyone can look it up afterwards.

SNIHandler = Callable[[ssl.SSLObject, str | None, ssl.SSLContext], int | None]

_SNI_NAMES: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()


def install_sni_recorder(ctx: ssl.SSLContext, handler: SNIHandler | None = None) -> None:
    """Make ``ctx`` remember the SNI name of each connection, then call ``handler`` if given.

    ``handler`` may switch ``obj.context`` for virtual hosts (RFC 7151 §4: implicit FTPS has only SNI
    for routing; ``server.vhosts`` does). That switches the certificate, not the ticket keys: OpenSSL
    seals and opens tickets with the context the connection was created with (measured, OpenSSL 3),
    so resumed data connections must still be wrapped with that *original* context.
    """

    def record(obj: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> int | None:
        if name is not None:
            _SNI_NAMES[obj] = name
        return handler(obj, name, context) if handler is not None else None

    ctx.sni_callback = record


def requested_server_name(obj: ssl.SSLObject | ssl.SSLSocket) -> str | None:
    """The host name the client sent in SNI on this server-side connection, or None (none or IP)."""
    if not obj.server_side:
        return obj.server_hostname
    return _SNI_NAMES.get(obj)


# --- errors and the reuse check -------------------------------------------------------------------

_REASONS = {
    "WRONG_VERSION_NUMBER": "peer did not send TLS (wrong version number)",
    "HTTP_REQUEST": "peer sent an HTTP request instead of TLS",
    "UNSUPPORTED_PROTOCOL": "peer offered only TLS versions we refuse (below TLS 1.2)",
    "TLSV1_ALERT_PROTOCOL_VERSION": "peer refused our TLS versions",
    "NO_SHARED_CIPHER": "no cipher in common with the peer",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "peer aborted the handshake (handshake failure alert)",
    "UNEXPECTED_EOF_WHILE_READING": "connection closed without TLS close_notify",
    "DECRYPTION_FAILED_OR_BAD_RECORD_MAC": "corrupt TLS record (bad MAC)",
    "SESSION_ID_CONTEXT_UNINITIALIZED": "session resumption misconfigured",
}


def ssl_error_text(exc: ssl.SSLError) -> str:
    """A one-line, log- and reply-safe description of an ``ssl`` exception."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        return _REASONS.get(reason, reason.replace("_", " ").lower())
    return str(exc.args[1] if len(exc.args) > 1 else exc)


class ReuseVerdict(enum.Enum):
    """Outcome of :func:`data_session_matches` (RFC 4217 §10.2, §15.1.2)."""

    REFUSED = "full handshake, no session was resumed"
    SAME_SESSION = "resumed the control connection's session"
    OTHER_SESSION = "resumed a session of this context that is not the control connection's"
    REUSED_UNVERIFIED = "resumed a session of this context; its origin cannot be checked"


def data_session_matches(
    control_session_id: bytes | None, data: ssl.SSLSocket | ssl.SSLObject
) -> ReuseVerdict:
    """Check that a handshaken server-side data connection resumed the control connection's session.

    ``control_session_id`` is ``control.session.id`` read on the server right after the control
    handshake (None if the control connection has no TLS). Measured here (CPython 3.11, OpenSSL 3.0,
    stdlib ``ssl``), server side:

    * TLS 1.3: ``session.id`` is a 32-byte id that OpenSSL generates for every NewSessionTicket it
      issues and stores inside the encrypted ticket; after the control handshake it is the id of the
      *last* ticket issued. A data connection resumed with that ticket shows the same id (also after
      ``num_tickets=0`` on the data connection, and for a data connection resumed with a data
      connection's session, since data connections issue no new ticket). The client cannot choose
      it, so equality proves the data client holds this control connection's resumption secret:
      ``SAME_SESSION``. Resuming with the *first* of two tickets shows a different id:
      ``OTHER_SESSION``, like a ticket issued to another connection of the same context. Real
      clients (curl, lftp, Python) keep the last ticket; a server that requires ``SAME_SESSION``
      should use ``num_tickets=1`` to be safe with the rest.
    * TLS 1.2 with tickets (the default): the control connection's ``session.id`` is empty; a resumed
      data connection's id is the session_id the client put in its ClientHello (measured: the
      client's ``SSLSession.id``), i.e. chosen by the client and visible on the wire. All that can be
      checked is that the client presented a ticket that this server's context issued (to some
      connection, possibly another user's) - not that it came from this control connection:
      ``REUSED_UNVERIFIED``. (With session-id caching instead of tickets the ids do match, but a
      client holding any valid ticket could send the victim's id alongside it, so equality is not
      trusted under TLS 1.2 either.)
    * No resumption (``session_reused`` false, fresh ``session.id``): ``REFUSED``.

    ``data`` must have been wrapped without tickets (:func:`wrap_data_socket`, :func:`wrap_data_bio`):
    a connection that issues a TLS 1.3 ticket takes that ticket's new id before ``do_handshake()``
    returns (measured), so it would never show the control id.
    """
    if not data.session_reused:
        return ReuseVerdict.REFUSED
    if data.version() != "TLSv1.3" or not control_session_id:
        return ReuseVerdict.REUSED_UNVERIFIED
    # Not ``data.session``: before CPython 3.12.7 each read leaks a copy of the session (gh-116810).
    data_id = session_id(data)
    if data_id is None:
        return ReuseVerdict.REFUSED
    if data_id == control_session_id:
        return ReuseVerdict.SAME_SESSION
    return ReuseVerdict.OTHER_SESSION
