"""In-memory storage backend with the local backend's semantics, for fast protocol and server tests."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from typing import Literal

from pyftps.storage.base import (
    AlreadyExists,
    DirectoryNotEmpty,
    FileInfo,
    InvalidOffset,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    WriteStream,
)
from pyftps.storage.local import display_path, split_virtual_path

__all__ = ["MemoryStorage"]


class _Node:
    __slots__ = ("mode", "mtime", "unique")

    def __init__(self, mode: int) -> None:
        self.mode = mode
        self.mtime = time.time()
        self.unique = secrets.token_hex(8)  # fixed for the node's life, so it survives renames


class _File(_Node):
    __slots__ = ("data",)

    def __init__(self, data: bytes | bytearray = b"") -> None:
        super().__init__(0o644)
        self.data = bytearray(data)


class _Dir(_Node):
    __slots__ = ("children",)

    def __init__(self) -> None:
        super().__init__(0o755)
        self.children: dict[str, _File | _Dir] = {}


def _info(name: str, node: _File | _Dir) -> FileInfo:
    if isinstance(node, _File):
        return FileInfo(name, False, len(node.data), node.mtime, node.mode, node.unique)
    return FileInfo(name, True, 0, node.mtime, node.mode, node.unique)


def _is_within(parts: tuple[str, ...], ancestor: tuple[str, ...]) -> bool:
    return len(parts) > len(ancestor) and parts[: len(ancestor)] == ancestor


class _MemoryReader:
    """A download over a snapshot of the file taken when it was opened."""

    __slots__ = ("_closed", "_data", "_pos")

    def __init__(self, data: bytes, offset: int) -> None:
        self._data = memoryview(data)
        self._pos = offset
        self._closed = False

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        if self._closed:
            raise ValueError("read from a closed file")
        target = memoryview(buffer).cast("B")
        count = min(len(target), len(self._data) - self._pos)
        target[:count] = self._data[self._pos : self._pos + count]
        self._pos += count
        return count

    def close(self) -> None:
        self._closed = True


class _MemoryWriter:
    """An upload: buffered until commit when fresh, written straight into the file node otherwise."""

    def __init__(
        self,
        storage: MemoryStorage,
        path: str,
        *,
        parent: _Dir,
        name: str,
        node: _File | None,
        append: bool = False,
    ) -> None:
        self._storage = storage
        self._path = path
        self._parent = parent
        self._name = name
        self._node = node  # None for a fresh upload: nothing is visible before commit
        self._append = append
        self._buffer = bytearray()
        self._pos = len(node.data) if node is not None else 0
        self._state: Literal["open", "committed", "aborted"] = "open"

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        if self._state != "open":
            raise ValueError("write to a finished upload")
        chunk = memoryview(data).cast("B")
        if self._node is None:
            self._buffer += chunk
            return len(chunk)
        with self._storage._lock:
            if self._append:
                self._pos = len(self._node.data)
            self._node.data[self._pos : self._pos + len(chunk)] = chunk
            self._pos += len(chunk)
            self._node.mtime = time.time()
        return len(chunk)

    def commit(self) -> None:
        if self._state == "committed":
            return
        if self._state == "aborted":
            raise ValueError("commit of an aborted upload")
        self._state = "aborted"  # until publication succeeds, so that a retry cannot report success
        if self._node is None:
            with self._storage._lock:
                if isinstance(self._parent.children.get(self._name), _Dir):
                    raise IsADirectory(f"{display_path(self._path)}: is a directory")
                self._parent.children[self._name] = _File(self._buffer)
                self._parent.mtime = time.time()
        self._buffer = bytearray()
        self._state = "committed"

    def abort(self) -> None:
        if self._state == "open":
            self._state = "aborted"
            self._buffer = bytearray()


class MemoryStorage:
    """A file tree held in memory; one lock makes every operation atomic with respect to the others."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._root = _Dir()

    # -- path mapping (callers hold the lock) --------------------------------------------------

    def _walk(self, parts: tuple[str, ...], path: str) -> _File | _Dir:
        node: _File | _Dir = self._root
        for part in parts:
            if not isinstance(node, _Dir):
                raise NotADirectory(f"{display_path(path)}: not a directory")
            child = node.children.get(part)
            if child is None:
                raise NotFound(f"{display_path(path)}: no such file or directory")
            node = child
        return node

    def _parent(self, parts: tuple[str, ...], path: str) -> _Dir:
        parent = self._walk(parts[:-1], path)
        if not isinstance(parent, _Dir):
            raise NotADirectory(f"{display_path(path)}: not a directory")
        return parent

    def _named(self, path: str) -> tuple[tuple[str, ...], _Dir]:
        """Components and parent directory of a name operation; the root has no name to act on."""
        parts = split_virtual_path(path)
        if not parts:
            raise PermissionDenied(f"{display_path(path)}: permission denied")
        return parts, self._parent(parts, path)

    # -- queries --------------------------------------------------------------------------------

    def stat(self, path: str) -> FileInfo:
        parts = split_virtual_path(path)
        with self._lock:
            return _info(parts[-1] if parts else "/", self._walk(parts, path))

    def list_dir(self, path: str) -> Iterator[FileInfo]:
        parts = split_virtual_path(path)
        with self._lock:
            node = self._walk(parts, path)
            if not isinstance(node, _Dir):
                raise NotADirectory(f"{display_path(path)}: not a directory")
            entries = [_info(name, child) for name, child in node.children.items()]
        return iter(entries)

    # -- transfers ------------------------------------------------------------------------------

    def open_read(self, path: str, offset: int = 0) -> _MemoryReader:
        parts = split_virtual_path(path)
        if offset < 0:
            raise InvalidOffset(f"{display_path(path)}: invalid offset")
        with self._lock:
            node = self._walk(parts, path)
            if not isinstance(node, _File):
                raise IsADirectory(f"{display_path(path)}: is a directory")
            if offset > len(node.data):
                raise InvalidOffset(f"{display_path(path)}: offset beyond end of file")
            data = bytes(node.data)
        return _MemoryReader(data, offset)

    def open_write(self, path: str, *, offset: int = 0, append: bool = False) -> WriteStream:
        parts = split_virtual_path(path)
        if offset < 0 or (append and offset):
            raise InvalidOffset(f"{display_path(path)}: invalid offset")
        if not parts:
            raise IsADirectory(f"{display_path(path)}: is a directory")
        with self._lock:
            parent = self._parent(parts, path)
            name = parts[-1]
            existing = parent.children.get(name)
            if isinstance(existing, _Dir):
                raise IsADirectory(f"{display_path(path)}: is a directory")
            target: _File | None = None  # a fresh upload has no node until commit
            if append:
                target = existing if existing is not None else _File()
                if existing is None:
                    parent.children[name] = target
                    parent.mtime = time.time()
            elif offset:
                if existing is None:
                    raise NotFound(f"{display_path(path)}: no such file or directory")
                if offset > len(existing.data):
                    raise InvalidOffset(f"{display_path(path)}: offset beyond end of file")
                del existing.data[offset:]  # REST then STOR replaces everything from the offset on
                target = existing
            return _MemoryWriter(self, path, parent=parent, name=name, node=target, append=append)

    # -- namespace changes ----------------------------------------------------------------------

    def make_dir(self, path: str) -> None:
        with self._lock:
            parts, parent = self._named(path)
            if parts[-1] in parent.children:
                raise AlreadyExists(f"{display_path(path)}: already exists")
            parent.children[parts[-1]] = _Dir()
            parent.mtime = time.time()

    def remove_dir(self, path: str) -> None:
        with self._lock:
            parts, parent = self._named(path)
            node = self._walk(parts, path)
            if not isinstance(node, _Dir):
                raise NotADirectory(f"{display_path(path)}: not a directory")
            if node.children:
                raise DirectoryNotEmpty(f"{display_path(path)}: directory not empty")
            del parent.children[parts[-1]]
            parent.mtime = time.time()

    def delete(self, path: str) -> None:
        with self._lock:
            parts, parent = self._named(path)
            node = self._walk(parts, path)
            if isinstance(node, _Dir):
                raise IsADirectory(f"{display_path(path)}: is a directory")
            del parent.children[parts[-1]]
            parent.mtime = time.time()

    def rename(self, source: str, target: str) -> None:
        src_parts, dst_parts = split_virtual_path(source), split_virtual_path(target)
        if not src_parts or not dst_parts:
            raise PermissionDenied(f"{display_path(source if not src_parts else target)}: permission denied")
        with self._lock:
            src_parent = self._parent(src_parts, source)
            node = self._walk(src_parts, source)
            if src_parts == dst_parts:
                return
            if isinstance(node, _Dir) and _is_within(dst_parts, src_parts):
                raise PermissionDenied(f"{display_path(target)}: cannot move a directory into itself")
            dst_parent = self._parent(dst_parts, target)
            existing = dst_parent.children.get(dst_parts[-1])
            if isinstance(existing, _Dir):
                # Never clobber a directory, even an empty one (same rule as the local backend).
                kind = AlreadyExists if isinstance(node, _Dir) else IsADirectory
                raise kind(f"{display_path(target)}: is an existing directory")
            if existing is not None and isinstance(node, _Dir):
                raise NotADirectory(f"{display_path(target)}: not a directory")
            del src_parent.children[src_parts[-1]]
            dst_parent.children[dst_parts[-1]] = node
            src_parent.mtime = dst_parent.mtime = time.time()

    # -- optional features ----------------------------------------------------------------------

    def set_mtime(self, path: str, mtime: float) -> None:
        parts = split_virtual_path(path)
        with self._lock:
            self._walk(parts, path).mtime = mtime

    def chmod(self, path: str, mode: int) -> None:
        parts = split_virtual_path(path)
        with self._lock:
            self._walk(parts, path).mode = mode & 0o777
