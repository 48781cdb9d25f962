"""Orchestrates one transfer: open the file, get the data connection, 150, run the worker, report.

RFC 959 §5.4 and RFC 4217 §12.5-12.7 sequencing: errors found before the data connection exists
(no such file, MLSD on a file) are answered without a 150; the 150 goes out once the TCP data
connection exists; the TLS handshake, the copy and the close happen in a worker thread; the final
reply comes after the data connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import operator
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pyftps.config import ReusePolicy
from pyftps.proto.actions import Transfer, TransferKind, TransferOutcome
from pyftps.proto.codes import ReplyCode
from pyftps.proto.errors import LocalProtocolError
from pyftps.proto.listing import ListFormatter, MlsdFormatter, StatRow, listable
from pyftps.server.data import DataConnectionError, PendingData
from pyftps.server.errors import reply_for
from pyftps.server.quota import QuotaTracker, UploadReservation
from pyftps.server.worker import DataWorker, TLSSettings
from pyftps.storage.base import (
    FileInfo,
    NotADirectory,
    NotFound,
    ReadStream,
    Storage,
    SupportsEntryRows,
    WriteStream,
)

if TYPE_CHECKING:
    from pyftps.server.control import ControlConnection

LISTING_ROWS = 256  # entries per listing batch (~14 KiB of LIST lines): the rows of a batch are held too
_name_of = operator.itemgetter(0)


class _Refused(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


class TransferRunner:
    def __init__(self, connection: ControlConnection, transfer: Transfer) -> None:
        self.connection = connection
        self.transfer = transfer
        self._worker: DataWorker | None = None
        self._task: asyncio.Task[TransferOutcome] | None = None
        self._aborted = False

    def abort(self) -> None:
        self._aborted = True
        if self._worker is not None:
            self._worker.abort()
        elif self._task is not None:
            self._task.cancel()

    async def run(self) -> TransferOutcome:
        if self._aborted:  # ABOR arrived before the transfer even started
            if self.connection.data is not None:
                self.connection.data.close()
            return TransferOutcome(0, aborted=True)
        self._task = asyncio.ensure_future(self._run())
        try:
            return await self._task
        except asyncio.CancelledError:
            if not self._aborted:
                raise
            return TransferOutcome(self.transfer.progress.bytes_done, aborted=True)

    async def _run(self) -> TransferOutcome:
        conn = self.connection
        server = conn.server
        loop = asyncio.get_running_loop()
        storage = conn.storage
        if storage is None:
            return TransferOutcome(0, ReplyCode.NOT_LOGGED_IN, "Please log in with USER and PASS first.")
        transfer = self.transfer
        user = conn.principal.name if conn.principal else ""
        quota = server.quotas if transfer.kind.upload and server.quotas.tracks(user) else None
        try:
            source, sink, reservation = await loop.run_in_executor(
                server.op_executor, _prepare, storage, transfer, conn.id, quota, user
            )
        except _Refused as refused:
            if conn.data is not None:
                conn.data.close()
            return TransferOutcome(0, refused.code, refused.text)
        try:
            return await self._transfer(source, sink, reservation, user)
        finally:
            if reservation is not None:
                reservation.abort()  # a no-op once the worker committed it

    async def _transfer(
        self,
        source: ReadStream | Iterator[bytes] | None,
        sink: WriteStream | None,
        reservation: UploadReservation | None,
        user: str,
    ) -> TransferOutcome:
        conn, transfer = self.connection, self.transfer
        server = conn.server
        loop = asyncio.get_running_loop()
        try:
            pending = await self._connect()
        except BaseException as error:
            _discard(sink, source)
            if isinstance(error, DataConnectionError):
                return TransferOutcome(0, ReplyCode.CANT_OPEN_DATA, f"Cannot open data connection: {error}.")
            raise
        conn.data_connected()  # 150
        config = conn.config
        tls = None
        if transfer.protect and conn.ssl_context is not None:
            # A logged-in user's data_reuse override travels in the session's effective policy.
            mode = conn.session.policy.data_reuse if conn.session is not None else None
            reuse = ReusePolicy(mode) if mode is not None else config.data_reuse
            tls = TLSSettings(conn.ssl_context, conn.tls_control_session_id, reuse, config.handshake_timeout)
        bandwidth = server.upload_bandwidth if transfer.kind.upload else server.download_bandwidth
        with bandwidth.acquire(user) as bucket:
            self._worker = DataWorker(
                pending.sock,
                transfer,
                handshake=pending.handshake,
                source=source,
                sink=sink,
                tls=tls,
                buffer_size=config.buffer_size,
                idle_timeout=config.data_idle_timeout,
                session_id=conn.id,
                bucket=None if bucket.unlimited else bucket,
                quota=reservation,
                metrics=server.metrics,
                priority=config.transfer_priority,
            )
            if self._aborted:
                self._worker.abort()
            return await loop.run_in_executor(server.transfer_executor, self._worker.run)

    async def _connect(self) -> PendingData:
        conn, transfer = self.connection, self.transfer
        assert conn.data is not None
        if transfer.active is not None:
            timeout = conn.config.data_connect_timeout
            sock = await conn.data.connect(transfer.active.host, transfer.active.port, timeout)
            sock.setblocking(True)
            return PendingData(sock)
        return await conn.data.take_passive()


Endpoint = tuple[ReadStream | Iterator[bytes] | None, WriteStream | None, UploadReservation | None]


def _prepare(
    storage: Storage, transfer: Transfer, session_id: str, quota: QuotaTracker | None, user: str
) -> Endpoint:
    """Open what the transfer reads or writes; refusals here come before any 150."""
    reservation: UploadReservation | None = None
    try:
        kind = transfer.kind
        if kind is TransferKind.RETR:
            return storage.open_read(transfer.path, 0 if transfer.ascii else transfer.offset), None, None
        if kind.upload:
            if quota is not None:
                reservation = _reserve(storage, transfer, quota, user)
            if kind is TransferKind.APPE:
                return None, storage.open_write(transfer.path, append=True), reservation
            return None, storage.open_write(transfer.path, offset=transfer.offset), reservation
        return _listing(transfer, _rows(storage, transfer)), None, None
    except Exception as error:
        if reservation is not None:
            reservation.release()
        if isinstance(error, _Refused):
            raise
        failed = reply_for(error, session_id=session_id)
        raise _Refused(failed.code, failed.text) from None


def _reserve(storage: Storage, transfer: Transfer, quota: QuotaTracker, user: str) -> UploadReservation:
    try:
        old_size, exists = storage.stat(transfer.path).size, True
    except NotFound:
        old_size, exists = 0, False
    append = transfer.kind is TransferKind.APPE
    reservation = quota.begin_upload(
        user,
        old_size=old_size,
        offset=old_size if append else transfer.offset,
        creates=not exists,
        in_place=append or transfer.offset > 0,
    )
    if reservation is None:
        raise _Refused(ReplyCode.STORAGE_EXCEEDED, "File count quota exceeded.")
    return reservation


def _rows(storage: Storage, transfer: Transfer) -> Iterator[StatRow]:
    """The listed entries as rows: straight from a backend that can, else from FileInfo.

    LIST/NLST of a file lists that file; MLSD refuses it (RFC 3659 §7.1). A row backend is asked for
    the directory first, so a directory (the usual case) is resolved once, not once more by stat().
    """
    path = transfer.path
    if isinstance(storage, SupportsEntryRows):
        unique = transfer.kind is TransferKind.MLSD and "unique" in transfer.facts
        try:
            return storage.list_rows(path, unique=unique)
        except NotADirectory:
            info = storage.stat(path)  # a file, or the same error again (a file midway in the path)
            if info.is_dir:  # replaced by a directory meanwhile: not worth a second try
                raise
    else:
        info = storage.stat(path)
        if info.is_dir:
            return map(_row, storage.list_dir(path))
    if transfer.kind is TransferKind.MLSD:
        raise _Refused(ReplyCode.SYNTAX_ERROR_ARGS, "MLSD needs a directory; use MLST for a file.")
    return iter([_row(info)])


def _row(info: FileInfo) -> StatRow:
    return info.name, info.is_dir, info.size, info.mtime, info.mode, info.unique


def _listing(transfer: Transfer, rows: Iterator[StatRow]) -> Iterator[bytes]:
    """Listing lines in batches; generated lazily in the worker so huge directories stream.

    A batch is formatted whole (``map``, no per-entry bookkeeping) and its names checked whole: only
    a name can put CR, LF or NUL in a line (RFC 3659 §2.2: such names would forge listing lines;
    the formatters check or escape every other value), and ``in`` on the joined names is a memchr.
    A batch with such a name, or an empty one, is made again without the unlistable entries.
    """
    line_of = _line_formatter(transfer)
    while chunk := list(itertools.islice(rows, LISTING_ROWS)):
        names = "".join(map(_name_of, chunk))
        text = None
        if "\n" not in names and "\r" not in names and "\0" not in names and all(map(_name_of, chunk)):
            with contextlib.suppress(LocalProtocolError):  # refused below for the entry at fault
                text = "\r\n".join(map(line_of, chunk))
        if text is None:
            text = "\r\n".join([line_of(row) for row in chunk if listable(row[0])])
            if not text:
                continue
        yield (text + "\r\n").encode("utf-8", "surrogateescape")


def _line_formatter(transfer: Transfer) -> Callable[[StatRow], str]:
    """The per-entry line function of one listing, with everything per-listing worked out once."""
    if transfer.kind is TransferKind.NLST:
        return _name_of
    if transfer.kind is TransferKind.MLSD:
        formatter = MlsdFormatter(
            transfer.facts, file_perm=transfer.perm_for_file, dir_perm=transfer.perm_for_dir
        )
        if transfer.access is None:  # no directory rules: one perm value per type for the whole listing
            return formatter.row
        mlsd, entry_perm = formatter.row, transfer.entry_perm
        return lambda row: mlsd(row, entry_perm(row[0], is_dir=row[1]))
    return ListFormatter(now=time.time()).row


def _discard(sink: WriteStream | None, source: object) -> None:
    if sink is not None:
        with contextlib.suppress(Exception):
            sink.abort()
    close = getattr(source, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()
