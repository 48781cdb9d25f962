"""Sans-IO TLS endpoint that can start and stop TLS on one control connection (RFC 4217 §4, §5, §13)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import NoReturn

from pyftps.tls.contexts import (
    TLSCertificateError,
    TLSError,
    TLSHandshakeError,
    TLSProtocolError,
    TLSStateError,
    TLSTruncatedError,
    requested_server_name,
    ssl_error_text,
    wrap_control_bio,
    wrap_data_bio,
)

__all__ = ["TLSChannel"]

_READ_SIZE = 64 * 1024


class TLSChannel:
    """One TLS session over a byte stream that the caller moves; no sockets, no threads, no clock.

    Made for the control connection; :meth:`data_server` / :meth:`client` also serve data connections
    driven sans-IO (the truncation rules below are what RFC 4217 §12.6 transfers need).

    The caller feeds ciphertext from the socket with :meth:`feed` / :meth:`feed_eof`, drives
    :meth:`handshake`, exchanges plaintext with :meth:`read` / :meth:`write`, and sends whatever
    :attr:`pending_output` returns after every call (alerts included, also after a failure).

    Closing (CCC, RFC 4217 §5; REIN, §13 and MS-FTPS §3.2.5.3) is :meth:`start_close` then
    :meth:`try_finish_close` until it is True; the socket stays open and :meth:`leftover` returns the
    bytes that followed the peer's close_notify: plaintext FTP after CCC, or the next ClientHello after
    REIN on an implicit session (feed those to a new channel). Nothing is lost because OpenSSL reads a
    ``MemoryBIO`` one record at a time: it never consumes bytes past the close_notify record
    (measured, and the stdlib's ``unwrap`` also turns read-ahead off).

    A clean close sets :attr:`peer_closed`; a bare EOF (``feed_eof`` without close_notify, which
    ``ssl`` reports as ``SSLEOFError``) sets :attr:`truncated` instead (RFC 8446 §6.1). Failures raise
    :class:`~pyftps.tls.contexts.TLSError` subclasses; after one, only :attr:`pending_output` works.
    """

    def __init__(
        self,
        ctx: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
        data_connection: bool = False,
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        # Ciphertext to send now; always drain it after calling any other method. The BIO's own
        # read, bound here: the I/O layer calls this after every step (~8 times a session).
        self.pending_output: Callable[[], bytes] = self._outgoing.read
        if data_connection and server_side:
            self._obj = wrap_data_bio(ctx, self._incoming, self._outgoing)
        else:
            self._obj = wrap_control_bio(
                ctx,
                self._incoming,
                self._outgoing,
                server_side=server_side,
                server_hostname=server_hostname,
                session=session,
            )
        # Plain attributes, not properties: the I/O layer reads them for every record it receives.
        self.handshake_complete = False
        self.closing = False  # True once start_close() was called
        self._eof_fed = False
        self._failed: TLSError | None = None
        self._plain = bytearray()  # plaintext decrypted while closing, handed out by read()
        self.peer_closed = False
        self.truncated = False

    @classmethod
    def server(cls, ctx: ssl.SSLContext) -> TLSChannel:
        """A server endpoint (after ``234`` to AUTH TLS, or on accept on the implicit port)."""
        return cls(ctx, server_side=True)

    @classmethod
    def data_server(cls, ctx: ssl.SSLContext) -> TLSChannel:
        """A server endpoint for a data connection: issues no tickets (see ``wrap_data_socket``)."""
        return cls(ctx, server_side=True, data_connection=True)

    @classmethod
    def client(
        cls, ctx: ssl.SSLContext, server_hostname: str | None, session: ssl.SSLSession | None = None
    ) -> TLSChannel:
        """A client endpoint; ``server_hostname`` is sent as SNI and checked against the certificate."""
        return cls(ctx, server_side=False, server_hostname=server_hostname, session=session)

    # --- bytes in and out -------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Hand over ciphertext received from the socket."""
        if self._eof_fed:
            raise TLSStateError("cannot feed data after EOF")
        if data:
            self._incoming.write(data)

    def feed_eof(self) -> None:
        """Tell the channel that the socket reached EOF (idempotent)."""
        if not self._eof_fed:
            self._eof_fed = True
            self._incoming.write_eof()

    # --- handshake and data -----------------------------------------------------------------------

    def handshake(self) -> bool:
        """Advance the handshake with what was fed; True once it is complete."""
        if self.handshake_complete:
            return True
        self._check_not_failed()
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLCertVerificationError as exc:
            self._fail(TLSCertificateError(f"TLS handshake failed: {ssl_error_text(exc)}"), exc)
        except ssl.SSLEOFError as exc:
            self.truncated = True
            self._fail(TLSHandshakeError("connection closed during the TLS handshake"), exc)
        except ssl.SSLError as exc:
            self._fail(TLSHandshakeError(f"TLS handshake failed: {ssl_error_text(exc)}"), exc)
        self.handshake_complete = True
        return True

    def read(self) -> bytes:
        """All plaintext available now (``b""`` if none).

        Never raises on the end of the stream: check :attr:`peer_closed` (close_notify) and
        :attr:`truncated` (bare EOF) after it. Bytes after the close_notify are not plaintext of
        this session; see :meth:`leftover`.
        """
        if self._failed is not None or not self.handshake_complete:
            self._require_handshake("read")  # raises
        self._pull()
        if not self._plain:
            return b""
        data = bytes(self._plain)
        self._plain.clear()
        return data

    def write(self, data: bytes) -> None:
        """Encrypt ``data``; the records come out of :attr:`pending_output`."""
        if self._failed is not None or not self.handshake_complete or self.closing:
            self._require_handshake("write")
            raise TLSStateError("cannot write after close_notify was sent")
        if not data:
            return
        try:
            self._obj.write(data)
        except ssl.SSLError as exc:
            self._fail(TLSProtocolError(f"TLS write failed: {ssl_error_text(exc)}"), exc)

    def encrypt(self, data: bytes) -> bytes:
        """:meth:`write` then :attr:`pending_output`: the records to send for ``data`` (one reply)."""
        self.write(data)
        return self._outgoing.read()

    def _pull(self) -> None:
        """Decrypt every complete record now buffered into ``_plain``; note how the stream ended."""
        if self.peer_closed or self.truncated:
            return
        while True:
            if not self._eof_fed and not self._incoming.pending and not self._obj.pending():
                # Nothing buffered in either direction: read() could only raise SSLWantReadError,
                # whose construction costs ~4 us (OpenSSL's error queue), a few times per command.
                return
            try:
                chunk = self._obj.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLZeroReturnError:
                # Raised instead of b"" once we have sent our own close_notify as well.
                self.peer_closed = True
                return
            except ssl.SSLEOFError:
                self.truncated = True
                return
            except ssl.SSLError as exc:
                self._fail(TLSProtocolError(f"TLS read failed: {ssl_error_text(exc)}"), exc)
            if not chunk:  # OpenSSL skips empty records, so b"" can only mean close_notify
                self.peer_closed = True
                return
            self._plain += chunk

    # --- closing ----------------------------------------------------------------------------------

    def start_close(self) -> None:
        """Send close_notify (idempotent); before the handshake completed there is nothing to send."""
        if self.closing:
            return
        self.closing = True
        if self._failed is not None or not self.handshake_complete:
            return
        # Decrypt what is buffered first: SSL_shutdown() after sending close_notify fails with
        # APPLICATION_DATA_AFTER_CLOSE_NOTIFY if it meets application data (measured), and data the
        # peer sent before its own close_notify is valid. Later records are read with SSL_read().
        self._pull()
        if self.truncated:
            return
        try:
            self._obj.unwrap()
        except ssl.SSLWantReadError:
            pass  # ours is queued; the peer's has not arrived yet
        except ssl.SSLError as exc:
            self._fail(TLSProtocolError(f"TLS close failed: {ssl_error_text(exc)}"), exc)

    def try_finish_close(self) -> bool:
        """True once both close_notify alerts are exchanged; starts the close if needed.

        Raises :class:`TLSTruncatedError` if the stream ended without the peer's close_notify.
        Plaintext that arrives meanwhile is kept for :meth:`read`.
        """
        self.start_close()
        if not self.handshake_complete:
            return True
        self._check_not_failed()
        self._pull()
        if self.peer_closed:
            return True
        if self.truncated:
            raise TLSTruncatedError("connection closed without TLS close_notify")
        return False

    def leftover(self) -> bytes:
        """Raw bytes received after the peer's close_notify (drained; call after the close)."""
        if not self.peer_closed:
            raise TLSStateError("leftover() is only defined after the peer's close_notify")
        return self._incoming.read()

    # --- state ------------------------------------------------------------------------------------

    def _fail(self, error: TLSError, cause: BaseException) -> NoReturn:
        self._failed = error
        raise error from cause

    def _check_not_failed(self) -> None:
        if self._failed is not None:
            raise TLSStateError(f"TLS channel already failed: {self._failed}")

    def _require_handshake(self, what: str) -> None:
        self._check_not_failed()
        if not self.handshake_complete:
            raise TLSStateError(f"cannot {what} before the TLS handshake completed")

    @property
    def server_side(self) -> bool:
        return self._obj.server_side

    @property
    def ssl_object(self) -> ssl.SSLObject:
        """The underlying object, for ``get_channel_binding`` or :func:`data_session_matches`."""
        return self._obj

    @property
    def version(self) -> str | None:
        return self._obj.version()

    @property
    def cipher(self) -> tuple[str, str, int] | None:
        return self._obj.cipher()

    @property
    def session(self) -> ssl.SSLSession | None:
        """Client: what data connections resume (TLS 1.3: has a ticket only after a read).

        Server: its ``id`` right after the handshake is the control id for ``data_session_matches``.
        """
        return self._obj.session

    @property
    def session_reused(self) -> bool:
        return self._obj.session_reused

    @property
    def peer_certificate_der(self) -> bytes | None:
        if not self.handshake_complete:
            return None
        return self._obj.getpeercert(binary_form=True)

    @property
    def sni(self) -> str | None:
        """Client: the name it sent. Server: the name the client sent (None if none, or an IP).

        The server side needs a context prepared by ``server_context`` or ``install_sni_recorder``:
        the context's ``sni_callback`` stores the name per ``SSLObject`` in a weak dictionary.
        """
        return requested_server_name(self._obj)
