"""Runs the core's storage and authentication operations against the backends (blocking, in threads)."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

from pyftps.auth.base import Authenticator, Principal
from pyftps.proto import actions as a
from pyftps.proto.ascii import AsciiEncoder
from pyftps.proto.codes import ReplyCode
from pyftps.server.errors import reply_for
from pyftps.storage.base import FileInfo, NotFound, Storage, SupportsChmod, SupportsSetMtime

log = logging.getLogger("pyftps.server")


@dataclass(frozen=True, slots=True)
class LoginResult:
    """What :func:`authenticate` hands back: the principal for the I/O layer, the value for the core."""

    principal: Principal | None
    result: a.OpResult


def authenticate(authenticator: Authenticator, op: a.Authenticate, session_id: str) -> LoginResult:
    try:
        principal = authenticator.authenticate(op.username, op.password)
    except Exception as error:  # a broken user store must not look like a wrong password
        log.error("session %s: authentication backend failed", session_id, exc_info=error)
        return LoginResult(None, a.OpFailed(ReplyCode.SERVICE_NOT_AVAILABLE, "Login service unavailable."))
    if principal is None:
        return LoginResult(None, a.OpFailed(ReplyCode.NOT_LOGGED_IN, "Login incorrect."))
    return LoginResult(
        principal,
        a.OpOk(a.LoginAccepted(principal.name, principal.permissions, rules=principal.directory_rules)),
    )


def run_storage_op(storage: Storage, op: a.Op, session_id: str, *, measure_freed: bool = False) -> a.OpResult:
    """Run one non-transfer operation; every backend error becomes a reply from the one table.

    With ``measure_freed`` (the user has a quota), DELE and a rename that replaces a file answer the
    size they free; else they make no extra ``stat`` (a request each on S3).
    """
    try:
        value = _dispatch(storage, op, measure_freed)
    except Exception as error:
        return reply_for(error, session_id=session_id)
    return value if isinstance(value, a.OpFailed) else a.OpOk(value)


def _dispatch(storage: Storage, op: a.Op, measure_freed: bool) -> object:
    match op:
        case a.StatPath(path):
            return storage.stat(path)
        case a.ListNames(path, limit):
            info = storage.stat(path)
            entries: list[FileInfo] = (
                list(itertools.islice(storage.list_dir(path), limit)) if info.is_dir else []
            )
            return info, entries
        case a.MakeDir(path):
            storage.make_dir(path)
        case a.RemoveDir(path):
            storage.remove_dir(path)
        case a.DeleteFile(path):
            size = storage.stat(path).size if measure_freed else None  # the quota gives it back
            storage.delete(path)
            return size
        case a.RenamePath(source, target):
            replaced = _replaced_size(storage, source, target) if measure_freed else None
            storage.rename(source, target)
            return replaced
        case a.SetMtime(path, mtime):
            if not isinstance(storage, SupportsSetMtime):
                raise NotImplementedError
            storage.set_mtime(path, mtime)
        case a.Chmod(path, mode):
            if not isinstance(storage, SupportsChmod):
                raise NotImplementedError
            storage.chmod(path, mode)
        case a.AsciiSize(path, limit):
            return _ascii_size(storage, path, limit)
        case _:
            raise TypeError(f"not a storage operation: {op!r}")
    return None


def _ascii_size(storage: Storage, path: str, limit: int) -> int | a.OpFailed:
    info = storage.stat(path)
    if info.is_dir:
        return a.OpFailed(ReplyCode.FILE_UNAVAILABLE, "Not a regular file.")
    if info.size > limit:
        return a.OpFailed(
            ReplyCode.FILE_UNAVAILABLE, "SIZE in ASCII mode is not available for large files: use TYPE I."
        )
    stream = storage.open_read(path)
    try:
        encoder, total, buffer = AsciiEncoder(), 0, bytearray(256 * 1024)
        while n := stream.readinto(buffer):
            total += len(encoder.encode(bytes(buffer[:n])))
        return total
    finally:
        stream.close()


def _replaced_size(storage: Storage, source: str, target: str) -> int | None:
    """The size of the file a rename of ``source`` onto ``target`` replaces (the quota gives it back)."""
    try:
        old = storage.stat(target)
    except NotFound:
        return None
    new = storage.stat(source)  # gone or unreadable: the rename would fail the same way
    if old.is_dir or new.is_dir or source == target or (old.unique is not None and old.unique == new.unique):
        return None  # nothing replaced: a directory, or a file renamed onto itself (or a hard link of it)
    return old.size
