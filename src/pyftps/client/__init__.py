"""The FTPS client: asyncio :class:`Client`, blocking :class:`SyncClient`, typed errors and URLs
(RFC 959, RFC 4217 explicit FTPS, MS-FTPS §3.1 implicit FTPS)."""

from __future__ import annotations

from pyftps.client.connection import Client, Progress
from pyftps.client.data import ReadStream, WriteStream
from pyftps.client.errors import (
    CertificateMismatch,
    CertificateRejected,
    ConnectionClosed,
    FTPError,
    FTPTimeout,
    PermanentError,
    ProtocolViolation,
    TLSFailure,
    TransferTruncated,
    TransientError,
    UsageError,
)
from pyftps.client.sync import SyncClient, SyncWriter
from pyftps.client.url import FTPURL, parse_url
from pyftps.proto.listing import RemoteEntry

__all__ = [
    "FTPURL",
    "CertificateMismatch",
    "CertificateRejected",
    "Client",
    "ConnectionClosed",
    "FTPError",
    "FTPTimeout",
    "PermanentError",
    "Progress",
    "ProtocolViolation",
    "ReadStream",
    "RemoteEntry",
    "SyncClient",
    "SyncWriter",
    "TLSFailure",
    "TransferTruncated",
    "TransientError",
    "UsageError",
    "WriteStream",
    "parse_url",
]
