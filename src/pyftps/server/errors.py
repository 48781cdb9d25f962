"""The one table that maps backend errors to FTP replies (ftpserverlib's getErrorCode, in Python)."""

from __future__ import annotations

import logging

from pyftps.proto.actions import OpFailed
from pyftps.proto.codes import ReplyCode
from pyftps.storage import base as storage

log = logging.getLogger("pyftps.server")

_CODES: tuple[tuple[type[storage.StorageError], int, str], ...] = (
    (storage.NotFound, ReplyCode.FILE_UNAVAILABLE, "No such file or directory."),
    (storage.PermissionDenied, ReplyCode.FILE_UNAVAILABLE, "Permission denied."),
    (storage.AlreadyExists, ReplyCode.FILE_UNAVAILABLE, "File exists."),
    (storage.NotADirectory, ReplyCode.FILE_UNAVAILABLE, "Not a directory."),
    (storage.IsADirectory, ReplyCode.FILE_UNAVAILABLE, "Is a directory."),
    (storage.DirectoryNotEmpty, ReplyCode.FILE_UNAVAILABLE, "Directory not empty."),
    (storage.InvalidName, ReplyCode.FILE_NAME_NOT_ALLOWED, "File name not allowed."),
    (storage.InvalidOffset, ReplyCode.INVALID_REST, "Invalid REST offset for this file."),
    (storage.InsufficientStorage, ReplyCode.INSUFFICIENT_STORAGE, "Insufficient storage space."),
    (storage.QuotaExceeded, ReplyCode.STORAGE_EXCEEDED, "Storage quota exceeded."),
    (storage.Unavailable, ReplyCode.LOCAL_ERROR, "Storage temporarily unavailable."),
)


def reply_for(error: BaseException, *, session_id: str = "-") -> OpFailed:
    """The reply for an exception raised by a backend; unexpected ones become 451 and are logged."""
    for kind, code, text in _CODES:
        if isinstance(error, kind):
            detail = str(error)
            return OpFailed(code, detail if detail and len(detail) < 200 else text)
    if isinstance(error, NotImplementedError):
        return OpFailed(ReplyCode.NOT_IMPLEMENTED, "Not supported by this storage backend.")
    log.error("session %s: unexpected backend error", session_id, exc_info=error)
    return OpFailed(ReplyCode.LOCAL_ERROR, "Local error in processing.")
