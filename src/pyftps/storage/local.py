"""Local-disk storage backend: maps virtual paths under one root directory and never lets them leave it."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import secrets
import stat as st
import weakref
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Literal

from pyftps.storage.base import (
    AlreadyExists,
    DirectoryNotEmpty,
    EntryRow,
    FileInfo,
    InsufficientStorage,
    InvalidName,
    InvalidOffset,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    StorageError,
    Unavailable,
    WriteStream,
)

__all__ = ["MAX_NAME_BYTES", "MAX_PATH_BYTES", "LocalStorage", "display_path", "split_virtual_path"]

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096
TEMP_PREFIX = ".pyftps-upload-"
TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"\.pyftps-upload-[0-9a-f]+\.tmp\Z")
_UNSAFE_TEXT = re.compile(r"[\x00-\x1f\x7f]")
_MAX_DISPLAY = 200
# Keyed per process so the MLSx "unique" fact identifies a file without disclosing its inode (RFC 3659 §11).
_UNIQUE_KEY = secrets.token_bytes(32)
# Keyed once: copying the keyed state is much cheaper than keying a new hash per listed entry.
_UNIQUE_HASH = hashlib.blake2b(key=_UNIQUE_KEY, digest_size=8)
_S_IFMT, _S_IFDIR, _S_IFLNK = 0o170000, st.S_IFDIR, st.S_IFLNK

_ERRNO_ERRORS: dict[int, tuple[type[StorageError], str]] = {
    errno.ENOENT: (NotFound, "no such file or directory"),
    errno.EACCES: (PermissionDenied, "permission denied"),
    errno.EPERM: (PermissionDenied, "operation not permitted"),
    # O_NOFOLLOW met a symlink (swapped in after the path was checked): refuse rather than follow.
    errno.ELOOP: (PermissionDenied, "permission denied"),
    errno.EROFS: (PermissionDenied, "read-only storage"),
    errno.EEXIST: (AlreadyExists, "already exists"),
    errno.ENOTDIR: (NotADirectory, "not a directory"),
    errno.EISDIR: (IsADirectory, "is a directory"),
    errno.ENOTEMPTY: (DirectoryNotEmpty, "directory not empty"),
    errno.ENAMETOOLONG: (InvalidName, "name too long"),
    errno.ENOSPC: (InsufficientStorage, "insufficient storage space"),
    errno.EDQUOT: (QuotaExceeded, "storage quota exceeded"),
    errno.EFBIG: (QuotaExceeded, "file too large"),
}


def display_path(path: str) -> str:
    """The virtual path as it may appear in an error text: no control characters, bounded length."""
    text = _UNSAFE_TEXT.sub("?", path)
    return text if len(text) <= _MAX_DISPLAY else text[: _MAX_DISPLAY - 3] + "..."


def split_virtual_path(path: str) -> tuple[str, ...]:
    """Validate an absolute virtual path and return its components (empty for ``/``).

    Paths arrive normalised from the protocol layer; this re-checks them because a backend must not
    rely on its caller for containment.
    """
    if not path.startswith("/"):
        raise InvalidName(f"{display_path(path)}: not an absolute path")
    if "\x00" in path:
        raise InvalidName(f"{display_path(path)}: name not allowed")
    try:
        # surrogateescape: names read from disk that are not UTF-8 round-trip to the same bytes.
        if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
            raise InvalidName(f"{display_path(path)}: path too long")
        parts = tuple(part for part in path.split("/") if part not in ("", "."))
        for part in parts:
            if part == "..":
                raise InvalidName(f"{display_path(path)}: name not allowed")
            if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
                raise InvalidName(f"{display_path(path)}: name too long")
    except UnicodeEncodeError:
        raise InvalidName(f"{display_path(path)}: name not allowed") from None
    return parts


def _os_error(exc: OSError, path: str) -> StorageError:
    """Translate an OSError into the typed error, naming only the virtual path (never the real one)."""
    kind, text = _ERRNO_ERRORS.get(exc.errno or 0, (Unavailable, "storage unavailable"))
    return kind(f"{display_path(path)}: {text}")


def _denied(path: str) -> PermissionDenied:
    return PermissionDenied(f"{display_path(path)}: permission denied")


def _unique(info: os.stat_result, copy: Callable[[], hashlib.blake2b] = _UNIQUE_HASH.copy) -> str:
    # The value only has to be stable within this process (the key is per process), so the cheapest
    # injective encoding of (inode, device) will do: two fixed-width fields.
    digest = copy()
    digest.update(info.st_ino.to_bytes(16, "little") + info.st_dev.to_bytes(16, "little"))
    return digest.hexdigest()


def _file_info(name: str, info: os.stat_result) -> FileInfo:
    mode = info.st_mode
    is_dir = st.S_ISDIR(mode)
    # Positional: this runs once per listed entry, and keyword passing costs measurably more here.
    return FileInfo(name, is_dir, 0 if is_dir else info.st_size, info.st_mtime, mode & 0o7777, _unique(info))


def _open_regular(real: str, flags: int, path: str) -> int:
    """Open a regular file without following a final symlink; anything else is refused."""
    # O_NONBLOCK so that a FIFO planted in the tree cannot hang a worker in open().
    try:
        fd = os.open(real, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO without a reader, or a socket: not a file to transfer
            raise PermissionDenied(f"{display_path(path)}: not a regular file") from exc
        raise _os_error(exc, path) from exc
    try:
        mode = os.fstat(fd).st_mode
        if st.S_ISDIR(mode):
            raise IsADirectory(f"{display_path(path)}: is a directory")
        if not st.S_ISREG(mode):
            raise PermissionDenied(f"{display_path(path)}: not a regular file")
        os.set_blocking(fd, True)
    except OSError as exc:
        os.close(fd)
        raise _os_error(exc, path) from exc
    except BaseException:
        os.close(fd)
        raise
    return fd


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(fd: int, dir_fd: int | None, temp: str | None) -> None:
    """Release an upload's descriptors and remove its temporary file, ignoring errors (cleanup path)."""
    if fd >= 0:
        with suppress(OSError):
            os.close(fd)
    if dir_fd is not None:
        if temp is not None:
            with suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
        with suppress(OSError):
            os.close(dir_fd)


class _LocalReader:
    """A download: an unbuffered file whose read errors come out as typed storage errors."""

    __slots__ = ("_file", "_path")

    def __init__(self, fd: int, path: str) -> None:
        self._file = io.FileIO(fd, "rb", closefd=True)
        self._path = path

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        try:
            return self._file.readinto(buffer)
        except OSError as exc:
            raise _os_error(exc, self._path) from exc

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()


class _LocalWriter:
    """An upload in progress: a hidden temporary file (fresh upload) or the target itself (REST/APPE).

    For a fresh upload ``dir_fd`` pins the directory checked at open time, so the final rename lands
    there even if the path is tampered with meanwhile.
    """

    def __init__(
        self,
        path: str,
        fd: int,
        *,
        fsync: bool,
        dir_fd: int | None = None,
        temp: str | None = None,
        final: str | None = None,
        sync_dir: str | None = None,
    ) -> None:
        self._path = path
        self._fd = fd
        self._fsync = fsync
        self._dir_fd = dir_fd
        self._temp = temp
        self._final = final
        self._sync_dir = sync_dir  # set when APPE created the file: its directory entry needs syncing
        self._state: Literal["open", "committed", "aborted"] = "open"
        # A writer dropped without commit/abort (a crashed worker) still frees its descriptors and temp file.
        self._finalizer = weakref.finalize(self, _discard, fd, dir_fd, temp)

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        if self._state != "open":
            raise ValueError("write to a finished upload")
        view = memoryview(data).cast("B")
        total, done = len(view), 0
        try:
            while done < total:
                written = os.write(self._fd, view[done:])
                if written <= 0:
                    raise OSError(errno.ENOSPC, "short write")
                done += written
        except OSError as exc:
            raise _os_error(exc, self._path) from exc
        return total

    def commit(self) -> None:
        if self._state == "committed":
            return
        if self._state == "aborted":
            raise ValueError("commit of an aborted upload")
        self._finalizer.detach()
        self._state = "aborted"  # until publication succeeds, so that a retry cannot report success
        try:
            self._publish()
            self._state = "committed"
        except OSError as exc:
            raise _os_error(exc, self._path) from exc
        finally:
            _discard(self._fd, self._dir_fd, self._temp)
            self._fd, self._dir_fd, self._temp = -1, None, None

    def _publish(self) -> None:
        fd, self._fd = self._fd, -1
        try:
            if self._fsync:
                os.fsync(fd)
        finally:
            # close() can report a deferred write error (NFS), so it happens before the rename.
            os.close(fd)
        if self._temp is not None and self._dir_fd is not None and self._final is not None:
            os.replace(self._temp, self._final, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            self._temp = None
            if self._fsync:
                os.fsync(self._dir_fd)
        elif self._sync_dir is not None and self._fsync:
            _fsync_dir(self._sync_dir)

    def abort(self) -> None:
        if self._state != "open":
            return
        self._state = "aborted"
        self._finalizer()


class LocalStorage:
    """One directory tree of the local filesystem; the default production backend.

    Every path is resolved with ``realpath`` and must stay under the root's real path, so a symlink
    may point anywhere inside the tree but is never followed out of it. Final opens use
    ``O_NOFOLLOW`` as a second line against a symlink swapped in after the check.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        os.makedirs(root, exist_ok=True)
        self._root = os.path.realpath(root)
        self._prefix = self._root.rstrip(os.sep) + os.sep
        self._fsync = fsync

    @property
    def root(self) -> str:
        """The real path of the root directory (for the operator, never for a client)."""
        return self._root

    # -- path mapping ---------------------------------------------------------------------------

    def _inside(self, real: str) -> bool:
        return real == self._root or real.startswith(self._prefix)

    def _parts(self, path: str) -> tuple[str, ...]:
        parts = split_virtual_path(path)
        if any(_TEMP_NAME.match(part) for part in parts):
            raise InvalidName(f"{display_path(path)}: name reserved for uploads in progress")
        return parts

    def _real(self, path: str) -> str:
        """The fully resolved real path (symlinks followed), refused if it leaves the root."""
        real = os.path.realpath(os.path.join(self._root, *self._parts(path)))
        if not self._inside(real):
            raise _denied(path)
        return real

    def _entry(self, path: str) -> str:
        """The real path of the *name itself* (final symlink not followed), for name operations.

        The root cannot be operated on by name. A final symlink is acted on as a link, but only if
        its target stays inside the root: escaping links are invisible to clients altogether.
        """
        parts = self._parts(path)
        if not parts:
            raise _denied(path)
        parent = os.path.realpath(os.path.join(self._root, *parts[:-1]))
        if not self._inside(parent):
            raise _denied(path)
        host = os.path.join(parent, parts[-1])
        if os.path.islink(host) and not self._inside(os.path.realpath(host)):
            raise _denied(path)
        return host

    # -- queries --------------------------------------------------------------------------------

    def stat(self, path: str) -> FileInfo:
        parts = self._parts(path)
        real = self._real(path)
        try:
            info = os.stat(real)
        except OSError as exc:
            raise _os_error(exc, path) from exc
        return _file_info(parts[-1] if parts else "/", info)

    def list_dir(self, path: str) -> Iterator[FileInfo]:
        rows = self.list_rows(path)
        return (FileInfo(*row) for row in rows)

    def list_rows(self, path: str, *, unique: bool = True) -> Iterator[EntryRow]:
        # Checked now so that NotFound/NotADirectory surface at the call, not at the first next().
        real = self._real(path)
        try:
            is_dir = st.S_ISDIR(os.stat(real).st_mode)
        except OSError as exc:
            raise _os_error(exc, path) from exc
        if not is_dir:
            raise NotADirectory(f"{display_path(path)}: not a directory")
        return self._scan(real, path, unique)

    def _scan(self, real: str, path: str, unique: bool) -> Iterator[EntryRow]:
        """One row per listable entry; the hot loop of LIST and MLSD, so everything is inline."""
        try:
            # Scanning a descriptor makes each entry's stat an fstatat() of the bare name: the kernel
            # does not walk the whole path again per entry (~15 % of a listing's stat time here).
            fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise _os_error(exc, path) from exc
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    name = entry.name
                    if name[0] == "." and name.startswith(TEMP_PREFIX) and _TEMP_NAME.match(name):
                        continue
                    try:
                        # The lstat is the one system call per entry (S_ISLNK/S_ISDIR inline: a
                        # function call per entry is measurable here); a link is followed only after
                        # its target was found inside the root.
                        info = entry.stat(follow_symlinks=False)
                        mode = info.st_mode
                        if mode & _S_IFMT == _S_IFLNK:
                            if not self._inside(os.path.realpath(os.path.join(real, name))):
                                continue
                            info = entry.stat()
                            mode = info.st_mode
                    except OSError:
                        continue  # dangling symlink, or the entry vanished or cannot be read: not listable
                    if mode & _S_IFMT == _S_IFDIR:
                        yield name, True, 0, info.st_mtime, mode & 0o7777, _unique(info) if unique else None
                    else:
                        yield (
                            name,
                            False,
                            info.st_size,
                            info.st_mtime,
                            mode & 0o7777,
                            _unique(info) if unique else None,
                        )
        except OSError as exc:
            raise _os_error(exc, path) from exc
        finally:
            os.close(fd)

    # -- transfers ------------------------------------------------------------------------------

    def open_read(self, path: str, offset: int = 0) -> _LocalReader:
        if offset < 0:
            raise InvalidOffset(f"{display_path(path)}: invalid offset")
        fd = _open_regular(self._real(path), os.O_RDONLY, path)
        try:
            if offset > os.fstat(fd).st_size:
                raise InvalidOffset(f"{display_path(path)}: offset beyond end of file")
            os.lseek(fd, offset, os.SEEK_SET)
        except OSError as exc:
            os.close(fd)
            raise _os_error(exc, path) from exc
        except BaseException:
            os.close(fd)
            raise
        return _LocalReader(fd, path)

    def open_write(self, path: str, *, offset: int = 0, append: bool = False) -> WriteStream:
        if offset < 0 or (append and offset):
            raise InvalidOffset(f"{display_path(path)}: invalid offset")
        real = self._real(path)
        if real == self._root:
            raise IsADirectory(f"{display_path(path)}: is a directory")
        if append:
            return self._open_append(real, path)
        if offset:
            return self._open_continue(real, path, offset)
        return self._open_fresh(real, path)

    def _open_fresh(self, real: str, path: str) -> _LocalWriter:
        directory, name = os.path.split(real)
        try:
            dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise _os_error(exc, path) from exc
        try:
            try:
                target_is_dir = st.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
            except FileNotFoundError:
                target_is_dir = False
            if target_is_dir:
                raise IsADirectory(f"{display_path(path)}: is a directory")
            fd, temp = self._create_temp(dir_fd, path)
        except OSError as exc:
            os.close(dir_fd)
            raise _os_error(exc, path) from exc
        except BaseException:
            os.close(dir_fd)
            raise
        return _LocalWriter(path, fd, fsync=self._fsync, dir_fd=dir_fd, temp=temp, final=name)

    @staticmethod
    def _create_temp(dir_fd: int, path: str) -> tuple[int, str]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for _ in range(8):
            temp = f"{TEMP_PREFIX}{secrets.token_hex(16)}{TEMP_SUFFIX}"
            try:
                return os.open(temp, flags, 0o644, dir_fd=dir_fd), temp
            except FileExistsError:
                continue
        raise Unavailable(f"{display_path(path)}: cannot create a temporary file")

    def _open_continue(self, real: str, path: str, offset: int) -> _LocalWriter:
        fd = _open_regular(real, os.O_WRONLY, path)
        try:
            if offset > os.fstat(fd).st_size:
                raise InvalidOffset(f"{display_path(path)}: offset beyond end of file")
            # REST then STOR replaces everything from the offset on, as a restarted transfer expects.
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        except OSError as exc:
            os.close(fd)
            raise _os_error(exc, path) from exc
        except BaseException:
            os.close(fd)
            raise
        return _LocalWriter(path, fd, fsync=self._fsync)

    def _open_append(self, real: str, path: str) -> _LocalWriter:
        created = not os.path.lexists(real)
        fd = _open_regular(real, os.O_WRONLY | os.O_APPEND | os.O_CREAT, path)
        sync_dir = os.path.dirname(real) if created else None
        return _LocalWriter(path, fd, fsync=self._fsync, sync_dir=sync_dir)

    # -- namespace changes ----------------------------------------------------------------------

    def make_dir(self, path: str) -> None:
        host = self._entry(path)
        try:
            os.mkdir(host, 0o755)
        except OSError as exc:
            raise _os_error(exc, path) from exc

    def remove_dir(self, path: str) -> None:
        host = self._entry(path)
        try:
            os.rmdir(host)
        except OSError as exc:
            if exc.errno == errno.EEXIST:  # some systems report a non-empty directory this way
                raise DirectoryNotEmpty(f"{display_path(path)}: directory not empty") from exc
            raise _os_error(exc, path) from exc

    def delete(self, path: str) -> None:
        host = self._entry(path)
        try:
            if st.S_ISDIR(os.lstat(host).st_mode):
                raise IsADirectory(f"{display_path(path)}: is a directory")
            os.unlink(host)
        except OSError as exc:
            raise _os_error(exc, path) from exc

    def rename(self, source: str, target: str) -> None:
        self._parts(target)  # an invalid target is reported as such even when the source is refused
        src, dst = self._entry(source), self._entry(target)
        try:
            src_is_dir = st.S_ISDIR(os.lstat(src).st_mode)
        except OSError as exc:
            raise _os_error(exc, source) from exc
        if src == dst:
            return
        if src_is_dir and dst.startswith(src + os.sep):
            raise PermissionDenied(f"{display_path(target)}: cannot move a directory into itself")
        try:
            dst_is_dir = st.S_ISDIR(os.lstat(dst).st_mode)
        except FileNotFoundError:
            dst_is_dir = False
        except OSError as exc:
            raise _os_error(exc, target) from exc
        if dst_is_dir:
            # Never clobber a directory, even an empty one (os.replace would).
            kind = AlreadyExists if src_is_dir else IsADirectory
            raise kind(f"{display_path(target)}: is an existing directory")
        try:
            os.replace(src, dst)
        except OSError as exc:
            raise _os_error(exc, target) from exc

    # -- optional features ----------------------------------------------------------------------

    def set_mtime(self, path: str, mtime: float) -> None:
        real = self._real(path)
        try:
            atime_ns = os.stat(real, follow_symlinks=False).st_atime_ns
            os.utime(real, ns=(atime_ns, round(mtime * 1e9)), follow_symlinks=False)
        except OSError as exc:
            raise _os_error(exc, path) from exc

    def chmod(self, path: str, mode: int) -> None:
        real = self._real(path)
        # Linux has no lchmod: a symlink here was swapped in after resolution, so refuse it.
        if os.path.islink(real):
            raise _denied(path)
        try:
            os.chmod(real, mode & 0o777)
        except OSError as exc:
            raise _os_error(exc, path) from exc
