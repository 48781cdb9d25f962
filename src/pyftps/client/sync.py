"""A blocking wrapper for scripts: the asyncio client runs on a private event loop thread and each
method waits for its result (same names and arguments as :class:`~pyftps.client.connection.Client`)."""

from __future__ import annotations

import asyncio
import datetime as _dt
import os
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, BinaryIO, TypeVar

from pyftps.client.connection import Client, Progress
from pyftps.client.data import ReadStream, WriteStream
from pyftps.proto.listing import RemoteEntry
from pyftps.proto.replies import Reply

__all__ = ["SyncClient", "SyncWriter"]

T = TypeVar("T")
Entries = list[RemoteEntry]  # SyncClient.list shadows the builtin in the class body
Lines = list[str]


class _LoopThread:
    """An event loop running forever in a daemon thread until :meth:`stop`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="pyftps-client", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()  # every wait inside is bounded by the client's timeout
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in the caller: do not leave the work running
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class SyncWriter:
    """The blocking face of :class:`~pyftps.client.data.WriteStream` (a context manager)."""

    def __init__(self, runner: _LoopThread, stream: WriteStream) -> None:
        self._runner, self._stream = runner, stream

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._runner.run(self._stream.write(data))

    def close(self) -> None:
        self._runner.run(self._stream.aclose())

    def abort(self) -> None:
        self._runner.run(self._stream.abort())

    def __enter__(self) -> SyncWriter:
        self._runner.run(self._stream.__aenter__())
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class SyncClient:
    """Blocking FTPS client: ``with SyncClient.connect(host, user=..., password=...) as ftp: ftp.list()``."""

    def __init__(self, runner: _LoopThread, client: Client) -> None:
        self._runner, self._client = runner, client

    @classmethod
    def connect(cls, host: str, port: int | None = None, **options: Any) -> SyncClient:
        """Same arguments as :meth:`Client.connect <pyftps.client.connection.Client.connect>`."""
        runner = _LoopThread()
        try:
            client = runner.run(Client.connect(host, port, **options))
        except BaseException:
            runner.stop()
            raise
        return cls(runner, client)

    @property
    def client(self) -> Client:
        """The asyncio client underneath (its methods must run on this wrapper's loop)."""
        return self._client

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coroutine)

    def features(self) -> dict[str, str]:
        return self._run(self._client.features())

    def noop(self) -> Reply:
        return self._run(self._client.noop())

    def quote(self, verb: str, arg: str | None = None) -> Reply:
        return self._run(self._client.quote(verb, arg))

    def pwd(self) -> str:
        return self._run(self._client.pwd())

    def cwd(self, path: str) -> None:
        self._run(self._client.cwd(path))

    def mkdir(self, path: str) -> str:
        return self._run(self._client.mkdir(path))

    def rmdir(self, path: str) -> None:
        self._run(self._client.rmdir(path))

    def delete(self, path: str) -> None:
        self._run(self._client.delete(path))

    def rename(self, source: str, target: str) -> None:
        self._run(self._client.rename(source, target))

    def list(self, path: str = ".") -> Entries:
        return self._run(self._client.list(path))

    def nlst(self, path: str = ".") -> Lines:
        return self._run(self._client.nlst(path))

    def stat(self, path: str) -> RemoteEntry:
        return self._run(self._client.stat(path))

    def size(self, path: str) -> int:
        return self._run(self._client.size(path))

    def mtime(self, path: str) -> float:
        return self._run(self._client.mtime(path))

    def set_mtime(self, path: str, when: float | _dt.datetime) -> None:
        self._run(self._client.set_mtime(path, when))

    def download(
        self,
        path: str,
        dest: str | os.PathLike[str] | BinaryIO,
        *,
        offset: int = 0,
        progress: Progress | None = None,
    ) -> int:
        """Note: ``progress`` is called on the client's loop thread."""
        return self._run(self._client.download(path, dest, offset=offset, progress=progress))

    def upload(
        self,
        src: str | os.PathLike[str] | BinaryIO,
        path: str,
        *,
        append: bool = False,
        offset: int = 0,
        progress: Progress | None = None,
    ) -> int:
        return self._run(self._client.upload(src, path, append=append, offset=offset, progress=progress))

    def open_read(self, path: str, offset: int = 0) -> Iterator[bytes]:
        """Chunks of a download; closing the generator early sends ABOR."""
        stream: ReadStream = self._client.open_read(path, offset)
        try:
            while True:
                try:
                    chunk = self._run(stream.__anext__())
                except StopAsyncIteration:
                    return
                yield chunk
        finally:
            self._run(stream.aclose())

    def open_write(self, path: str, *, append: bool = False) -> SyncWriter:
        return SyncWriter(self._runner, self._client.open_write(path, append=append))

    def ccc(self) -> None:
        self._run(self._client.ccc())

    def reinitialize(self) -> None:
        self._run(self._client.reinitialize())

    def quit(self) -> None:
        """QUIT and stop the loop thread (idempotent)."""
        try:
            if not self._runner.loop.is_closed():
                self._run(self._client.quit())
        finally:
            self._runner.stop()

    close = quit

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.quit()
