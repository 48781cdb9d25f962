"""The storage seam: the small synchronous interface every file backend implements.

Backends are blocking; the server calls them from worker threads, so a backend never needs asyncio.
Paths handed to a backend are *virtual*: absolute, POSIX-style (``/dir/file``), already normalised by
:mod:`pyftps.proto.paths` (no ``.``/``..`` components, no NUL). A backend maps them under its own
root and must still refuse anything that would leave it (symlinks pointing out, for instance).

Errors are typed (:class:`StorageError` subclasses) so that the server can map them to FTP reply
codes in one table (``pyftps.server.errors``); a backend never formats replies itself.
Optional features are separate one-method protocols (ftpserverlib's extension interfaces), so a
backend implements only what it supports instead of stubbing methods out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What a listing or a stat call knows about one name."""

    name: str  # last path component; "/" for the root itself
    is_dir: bool
    size: int  # bytes; 0 for directories
    mtime: float  # seconds since the epoch, UTC
    mode: int | None = None  # permission bits (0o644) where the backend has them
    unique: str | None = None  # stable opaque id for the MLSx "unique" fact (RFC 3659 §7.5.2)


class StorageError(Exception):
    """Base of every error a backend raises on purpose; the text is safe to show to the client."""


class NotFound(StorageError):
    """The name does not exist (550)."""


class PermissionDenied(StorageError):
    """The backend refuses the operation (550)."""


class AlreadyExists(StorageError):
    """The target name exists and the operation would not replace it (550/553)."""


class NotADirectory(StorageError):
    """A directory was expected (550, or 501 for MLSD per RFC 3659 §7.2.1)."""


class IsADirectory(StorageError):
    """A file was expected (550)."""


class DirectoryNotEmpty(StorageError):
    """RMD of a directory that still has entries (550)."""


class InvalidName(StorageError):
    """The name cannot exist in this backend: too long, a forbidden character, outside the root (553)."""


class InvalidOffset(StorageError):
    """A REST offset beyond the end of the file, or not allowed here (554, RFC 3659 §5.3)."""


class InsufficientStorage(StorageError):
    """The device is full: transient from the client's point of view (452)."""


class QuotaExceeded(StorageError):
    """A storage allocation limit was hit (552)."""


class Unavailable(StorageError):
    """The backend cannot serve right now (disk gone, object store down): 451."""


class ReadStream(Protocol):
    """A file opened for download: blocking reads into a caller's buffer."""

    def readinto(self, buffer: bytearray | memoryview, /) -> int: ...

    def close(self) -> None: ...


class WriteStream(Protocol):
    """A file opened for upload. Nothing is visible under the final name until :meth:`commit`.

    Exactly one of :meth:`commit` or :meth:`abort` must be called. ``abort`` after a fresh upload
    leaves no trace; after a continued upload (REST offset or APPE) the bytes already written stay,
    because they were written in place by request.
    """

    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class Storage(Protocol):
    """One user's view of a file tree. Every method may raise a :class:`StorageError`."""

    def stat(self, path: str) -> FileInfo: ...

    def list_dir(self, path: str) -> Iterator[FileInfo]:
        """Yield the entries of a directory (not ``.``/``..``), lazily so huge directories stream."""
        ...

    def open_read(self, path: str, offset: int = 0) -> ReadStream: ...

    def open_write(self, path: str, *, offset: int = 0, append: bool = False) -> WriteStream:
        """Open for upload: a fresh file (atomic), a continuation at ``offset`` (REST), or an append."""
        ...

    def make_dir(self, path: str) -> None: ...

    def remove_dir(self, path: str) -> None: ...

    def delete(self, path: str) -> None: ...

    def rename(self, source: str, target: str) -> None: ...


@runtime_checkable
class SupportsSetMtime(Protocol):
    """Backends that can set a modification time (MFMT)."""

    def set_mtime(self, path: str, mtime: float) -> None: ...


@runtime_checkable
class SupportsChmod(Protocol):
    """Backends that can change permission bits (SITE CHMOD)."""

    def chmod(self, path: str, mode: int) -> None: ...


# One directory entry as plain values, FileInfo's fields in order (name, is_dir, size, mtime, mode,
# unique): what a listing of many entries reads when one FileInfo per entry costs more than its line.
EntryRow = tuple[str, bool, int, float, int | None, str | None]


@runtime_checkable
class SupportsEntryRows(Protocol):
    """Backends that can list a directory as plain rows (LIST/MLSD of large directories)."""

    def list_rows(self, path: str, *, unique: bool = True) -> Iterator[EntryRow]:
        """``list_dir`` as rows; ``unique=False`` may leave that field None (the listing omits it)."""
        ...
