"""One data transfer's blocking half: TLS on the data socket, the copy loop and the orderly close.

Runs in a worker thread (TLS-IO.md: blocking ``SSLSocket`` I/O in threads with 256 KiB buffers kept
other sessions' replies at 4 ms p99 and reached 0.8-1.0x OpenSSL's own speed; OpenSSL releases the
GIL while it encrypts). The FTP client is always the TLS client (RFC 4217 §7). Truncation is told
apart from a clean end: a TLS upload must end with close_notify, otherwise it is a failed upload
(CONFORMANCE.md §2.4); the sender always ends with close_notify (RFC 8446 §6.1).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from pyftps.config import ReusePolicy
from pyftps.proto.actions import Transfer, TransferOutcome
from pyftps.proto.ascii import AsciiDecoder, AsciiEncoder
from pyftps.proto.codes import ReplyCode
from pyftps.server.errors import reply_for
from pyftps.server.metrics import Metrics
from pyftps.server.quota import UploadReservation
from pyftps.server.scheduling import TransferPriority, lower_thread_priority
from pyftps.server.throttle import TokenBucket
from pyftps.storage.base import ReadStream, WriteStream
from pyftps.tls.contexts import ReuseVerdict, data_session_matches, ssl_error_text, wrap_data_socket

log = logging.getLogger("pyftps.data")

PREFETCH_LIMIT = 256 * 1024  # listing bytes made ahead of the TLS handshake, at most

REUSE_REQUIRED = (
    "TLS session reuse required: the data connection must resume the control connection's TLS session. "
    "Enable TLS session resumption in your FTP client."
)


@dataclass(frozen=True, slots=True)
class TLSSettings:
    context: ssl.SSLContext
    control_session_id: bytes | None
    reuse: ReusePolicy
    handshake_timeout: float


class _Failed(Exception):
    """Ends a transfer with a given reply."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


class DataWorker:
    """Moves one file or listing over one data connection. Build in the loop, :meth:`run` in a thread."""

    def __init__(
        self,
        sock: socket.socket,
        transfer: Transfer,
        *,
        handshake: concurrent.futures.Future[None] | None = None,
        source: ReadStream | Iterator[bytes] | None = None,
        sink: WriteStream | None = None,
        tls: TLSSettings | None,
        buffer_size: int,
        idle_timeout: float,
        session_id: str = "-",
        bucket: TokenBucket | None = None,
        quota: UploadReservation | None = None,
        metrics: Metrics | None = None,
        priority: TransferPriority = TransferPriority.IDLE,
    ) -> None:
        self.transfer = transfer
        self._sock: socket.socket = sock
        self._handshake = handshake
        self._source, self._sink = source, sink
        self._tls = tls
        self._buffer_size = buffer_size
        self._idle_timeout = idle_timeout
        self._session_id = session_id
        self._aborted = threading.Event()
        self._bucket = bucket  # bandwidth limit shared by this user's transfers in this direction
        self._quota = quota
        self._written = 0
        self._metrics = metrics
        self._priority = priority
        self._ready: list[bytes] = []  # listing batches made while the TLS handshake ran
        self.reuse_verdict: ReuseVerdict | None = None

    def abort(self) -> None:
        """Called from the event loop on ABOR or a lost control connection; wakes the blocked thread."""
        self._aborted.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> TransferOutcome:
        lower_thread_priority(self._priority)  # the loop answers NOOPs first: see server/scheduling.py
        progress = self.transfer.progress
        try:
            self._prefetch()
            conn = self._secure()
            if self.transfer.kind.upload:
                self._receive(conn)
            else:
                self._send(conn)
            return TransferOutcome(progress.bytes_done)
        except _Failed as failure:
            self._discard_upload()
            if self._aborted.is_set():
                return TransferOutcome(progress.bytes_done, aborted=True)
            return TransferOutcome(progress.bytes_done, failure.code, failure.text)
        except Exception as error:  # storage errors and bugs alike end as a reply, never a traceback
            self._discard_upload()
            if self._aborted.is_set():
                return TransferOutcome(progress.bytes_done, aborted=True)
            failed = reply_for(error, session_id=self._session_id)
            return TransferOutcome(progress.bytes_done, failed.code, failed.text)
        finally:
            self._close_source()
            self._settle_handshake()
            with contextlib.suppress(OSError):
                self._sock.close()

    def _prefetch(self) -> None:
        """Make a listing's first batches while the data connection's TLS handshake runs elsewhere.

        The handshake started at accept time in another thread (OpenSSL releases the GIL) and waits
        for the client, which starts it only after our 150: scanning the directory meanwhile takes
        the handshake's round trips off a listing's time. Bounded, so huge directories still stream.
        """
        source, handshake = self._source, self._handshake
        if not isinstance(source, Iterator) or handshake is None or not self.transfer.protect:
            return
        ready, size = self._ready, 0
        while size < PREFETCH_LIMIT and not handshake.done() and not self._aborted.is_set():
            chunk = next(source, None)
            if chunk is None:
                break
            ready.append(chunk)
            size += len(chunk)

    def _settle_handshake(self) -> None:
        """Before the close: a listing that failed while prefetching left the handshake running in
        its thread, and closing under it would free a descriptor number that thread still uses."""
        handshake = self._handshake
        if handshake is None or handshake.done():
            return
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the handshake at once
        with contextlib.suppress(Exception):
            handshake.result()

    # ---------------------------------------------------------------- TLS

    def _secure(self) -> socket.socket:
        handshake = self._handshake
        if not self.transfer.protect or self._tls is None:
            if handshake is not None:  # PROT changed to C after the connection started TLS
                raise _Failed(
                    ReplyCode.CANT_OPEN_DATA, "Data connection was opened under PROT P; open a new one."
                )
            self._sock.settimeout(self._idle_timeout)
            return self._sock
        tls = self._tls
        started = time.monotonic()
        try:
            if handshake is not None:
                handshake.result()  # started at accept time; bounded by the socket's own timeout
                conn = self._sock
            else:
                conn = wrap_data_socket(tls.context, self._sock)
                self._sock = conn  # abort() and the final close act on the TLS socket from now on
                conn.settimeout(tls.handshake_timeout)
                conn.do_handshake()
        except (ssl.SSLError, OSError) as error:
            self._check_abort()
            if self._metrics is not None:
                self._metrics.tls_handshake_failed("data")
            reason = (
                ssl_error_text(error) if isinstance(error, ssl.SSLError) else str(error) or "connection lost"
            )
            raise _Failed(
                ReplyCode.TLS_DATA_NEGOTIATION_FAILED,
                f"TLS negotiation on the data connection failed: {reason}.",
            ) from None
        assert isinstance(conn, ssl.SSLSocket)
        if self._metrics is not None:
            cipher = conn.cipher()
            seconds = time.monotonic() - started  # a handshake begun at accept time: only the wait
            self._metrics.tls_handshake("data", conn.version() or "", cipher[0] if cipher else "", seconds)
        self._check_reuse(tls, conn)
        conn.settimeout(self._idle_timeout)
        return conn

    def _check_reuse(self, tls: TLSSettings, conn: ssl.SSLSocket) -> None:
        """RFC 4217 §10.2 and §15.1.2: the data connection must resume *this* control session.

        TLS 1.3 proves it (SAME_SESSION); another login's ticket (OTHER_SESSION) is data-port theft;
        TLS 1.2 can only show a ticket from this server (REUSED_UNVERIFIED), which is accepted.
        """
        verdict = data_session_matches(tls.control_session_id, conn)
        self.reuse_verdict = verdict
        if self._metrics is not None:
            self._metrics.data_reuse(verdict)
        if (
            verdict in (ReuseVerdict.SAME_SESSION, ReuseVerdict.REUSED_UNVERIFIED)
            or tls.reuse is ReusePolicy.OFF
        ):
            return
        if tls.reuse is ReusePolicy.REQUIRE:
            self._close_tls(conn)
            raise _Failed(ReplyCode.TLS_DATA_NEGOTIATION_FAILED, REUSE_REQUIRED)
        log.warning(
            "session %s: data connection did not resume the control TLS session (%s)",
            self._session_id,
            verdict.value,
        )

    def _close_tls(self, conn: socket.socket) -> None:
        """Send close_notify and give the peer a short while to answer (RFC 8446 §6.1)."""
        if not isinstance(conn, ssl.SSLSocket):
            return
        try:
            conn.settimeout(min(self._idle_timeout, 5.0))
            conn.unwrap()
        except (ssl.SSLError, OSError, ValueError):
            pass  # the peer closed first or reset: our close_notify was sent, which is what matters

    # ---------------------------------------------------------------- copy loops

    def _send(self, conn: socket.socket) -> None:
        progress = self.transfer.progress
        for chunk in self._chunks():
            self._check_abort()
            try:
                conn.sendall(chunk)
            except (OSError, ssl.SSLError) as error:
                raise _Failed(ReplyCode.TRANSFER_ABORTED, f"Data connection lost: {_why(error)}.") from None
            progress.bytes_done += len(chunk)
            self._throttle(len(chunk))
        self._check_abort()
        # Nagle stays on for the bulk (fewer, fuller segments: less CPU per GB) and goes off here:
        # setting TCP_NODELAY pushes out the short last record at once, and the close_notify with it,
        # instead of after the client's delayed ACK (40 ms on Linux, which dominated small listings).
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._close_tls(conn)

    def _chunks(self) -> Iterator[bytes | memoryview]:
        source = self._source
        if source is None:
            return
        if isinstance(source, Iterator):
            ready, self._ready = self._ready, []
            yield from ready
            yield from source  # listing lines, already batched
            return
        stream: ReadStream = source
        buffer = bytearray(self._buffer_size)
        view = memoryview(buffer)
        encoder = AsciiEncoder(skip=self.transfer.offset) if self.transfer.ascii else None
        while True:
            count = stream.readinto(buffer)
            if not count:
                return
            if encoder is None:
                yield view[:count]
            elif data := encoder.encode(bytes(view[:count])):
                yield data

    def _receive(self, conn: socket.socket) -> None:
        sink = self._sink
        assert sink is not None
        progress = self.transfer.progress
        buffer = bytearray(self._buffer_size)
        view = memoryview(buffer)
        decoder = AsciiDecoder() if self.transfer.ascii else None
        limit = self._bucket.max_chunk(self._buffer_size) if self._bucket else self._buffer_size
        while True:
            self._check_abort()
            try:
                count = conn.recv_into(buffer, limit)
            except ssl.SSLEOFError:
                raise _Failed(
                    ReplyCode.TRANSFER_ABORTED,
                    "Upload truncated: the data connection closed without TLS close_notify; file discarded.",
                ) from None
            except (OSError, ssl.SSLError) as error:
                raise _Failed(ReplyCode.TRANSFER_ABORTED, f"Data connection lost: {_why(error)}.") from None
            if not count:
                break
            progress.bytes_done += count
            if self._quota is not None and not self._quota.grow(count):
                raise _Failed(ReplyCode.STORAGE_EXCEEDED, "Disk quota exceeded; upload discarded.")
            self._write(sink, view[:count] if decoder is None else decoder.decode(bytes(view[:count])))
            self._throttle(count)
        self._check_abort()
        if decoder is not None and (tail := decoder.flush()):
            self._write(sink, tail)
        self._close_tls(conn)
        self._sink = None
        sink.commit()  # fsync and rename: only now is the file visible under its name
        if self._quota is not None:
            self._quota.commit(self.transfer.offset + self._written)

    def _write(self, sink: WriteStream, data: bytes | memoryview) -> None:
        sink.write(data)
        self._written += len(data)

    def _throttle(self, count: int) -> None:
        """Sleep off what exceeds the user's bandwidth; ABOR still interrupts at once."""
        if self._bucket is None:
            return
        delay = self._bucket.delay_for(count, time.monotonic())
        if delay > 0 and self._aborted.wait(delay):
            raise _Failed(ReplyCode.TRANSFER_ABORTED, "Transfer aborted.")

    def _check_abort(self) -> None:
        if self._aborted.is_set():
            raise _Failed(ReplyCode.TRANSFER_ABORTED, "Transfer aborted.")

    def _discard_upload(self) -> None:
        quota, self._quota = self._quota, None
        if quota is not None:
            quota.abort()
        sink, self._sink = self._sink, None
        if sink is not None:
            try:
                sink.abort()
            except Exception as error:
                log.error("session %s: discarding an upload failed", self._session_id, exc_info=error)

    def _close_source(self) -> None:
        source, self._source = self._source, None
        close = getattr(source, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()


def _why(error: BaseException) -> str:
    if isinstance(error, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(error, ssl.SSLError):
        return ssl_error_text(error)
    return error.strerror or type(error).__name__ if isinstance(error, OSError) else str(error)
