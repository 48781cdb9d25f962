"""Servers for the client tests, all on 127.0.0.1 with ephemeral ports.

- ``pyftps_server(...)``: an in-process pyftps :class:`~pyftps.server.app.Server` on the test's own
  event loop (explicit and implicit listeners, a user rooted at a fresh directory).
- ``pyftps_thread``: the same server on a private loop thread, for the blocking ``SyncClient``.
- ``pyftpdlib_server``: pyftpdlib's ``TLS_FTPHandler`` (explicit FTPS, TLS required on control and
  data) polled in a thread.
- ``run(coro)``: ``asyncio.run`` with a hard deadline, so no test can hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pyftps.auth.base import Principal
from pyftps.auth.passwords import cheap_hasher
from pyftps.auth.static import StaticAuthenticator
from pyftps.config import ServerConfig
from pyftps.proto.policy import SessionPolicy
from pyftps.server.app import Server
from pyftps.tls.certs import ensure_self_signed
from pyftps.tls.contexts import server_context

HOST = "127.0.0.1"
USER = "alice"
PASSWORD = "wonderland"
TEST_DEADLINE = 20.0  # seconds for one whole scenario
T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T], deadline: float = TEST_DEADLINE) -> T:
    """Run one async scenario to completion, failing (not hanging) past ``deadline``."""

    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, deadline)

    return asyncio.run(bounded())


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> CertPair:
    """The server's self-signed certificate (localhost, 127.0.0.1): clients use it as their CA file."""
    return CertPair(*ensure_self_signed(tmp_path_factory.mktemp("server-tls")))


@pytest.fixture(scope="session")
def other_cert(tmp_path_factory: pytest.TempPathFactory) -> CertPair:
    """An unrelated self-signed certificate: trusting it must not make the server trusted."""
    return CertPair(*ensure_self_signed(tmp_path_factory.mktemp("other-tls")))


@dataclass(frozen=True)
class RunningServer:
    server: Server
    root: Path
    cafile: Path
    host: str = HOST
    user: str = USER
    password: str = PASSWORD

    @property
    def explicit_port(self) -> int:
        assert self.server.explicit_address is not None
        return int(self.server.explicit_address[1])

    @property
    def implicit_port(self) -> int:
        assert self.server.implicit_address is not None
        return int(self.server.implicit_address[1])

    def port(self, mode: str) -> int:
        return self.implicit_port if mode == "implicit" else self.explicit_port

    def login(self, mode: str, **options: Any) -> dict[str, Any]:
        """Keyword arguments for ``Client.connect`` (after host and port)."""
        base: dict[str, Any] = {
            "mode": mode,
            "user": self.user,
            "password": self.password,
            "cafile": self.cafile,
            "timeout": 5.0,
        }
        base.update(options)
        return base


def _build_server(root: Path, cert_pair: CertPair, **config: Any) -> Server:
    session = config.pop("session", SessionPolicy(login_failure_delay=0.05))
    base = ServerConfig(
        host=HOST,
        explicit_port=0,
        implicit_port=0,
        root=root,
        state_dir=root.parent / "state",
        session=session,
        fsync=False,
        handshake_timeout=5.0,
        data_connect_timeout=5.0,
        data_idle_timeout=5.0,
        tls_close_timeout=2.0,
    )
    authenticator = StaticAuthenticator.from_plain(
        {USER: (PASSWORD, Principal(USER, str(root)))}, hasher=cheap_hasher()
    )
    # num_tickets=1 as `pyftps serve` does: the data connection then proves which control session it resumed.
    ctx = server_context(cert_pair.cert, cert_pair.key, num_tickets=1)
    return Server(replace(base, **config), authenticator=authenticator, ssl_context=ctx)


@contextlib.asynccontextmanager
async def pyftps_server(tmp_path: Path, cert_pair: CertPair, **config: Any) -> AsyncIterator[RunningServer]:
    """A pyftps server on the running loop; ``config`` overrides ServerConfig fields."""
    root = tmp_path / "root"
    root.mkdir(parents=True, exist_ok=True)
    server = _build_server(root, cert_pair, **config)
    await server.start()
    try:
        yield RunningServer(server, root, cert_pair.cert)
    finally:
        await server.stop()


@pytest.fixture
def pyftps_thread(tmp_path: Path, cert_pair: CertPair) -> Iterator[RunningServer]:
    """A pyftps server on its own event loop thread (for blocking clients)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    root = tmp_path / "root"
    root.mkdir()

    async def start() -> Server:
        server = _build_server(root, cert_pair)
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield RunningServer(server, root, cert_pair.cert)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# --------------------------------------------------------------------- pyftpdlib


@dataclass(frozen=True)
class ThirdPartyServer:
    host: str
    port: int
    root: Path
    cafile: Path
    user: str = USER
    password: str = PASSWORD


class _PyftpdlibThread(threading.Thread):
    """Polls a pyftpdlib server from one thread; everything pyftpdlib does stays on that thread."""

    def __init__(self, root: Path, cert_pair: CertPair) -> None:
        super().__init__(daemon=True)
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import TLS_FTPHandler
        from pyftpdlib.ioloop import IOLoop
        from pyftpdlib.servers import FTPServer

        authorizer = DummyAuthorizer()
        authorizer.add_user(USER, PASSWORD, str(root), perm="elradfmwMT")

        class Handler(TLS_FTPHandler):  # type: ignore[misc]
            pass

        Handler.authorizer = authorizer
        Handler.certfile = str(cert_pair.cert)
        Handler.keyfile = str(cert_pair.key)
        Handler.tls_control_required = True
        Handler.tls_data_required = True
        Handler.ssl_context = None  # a context per test class, built from the files above
        self.server = FTPServer((HOST, 0), Handler, ioloop=IOLoop())
        self.port = int(self.server.address[1])
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                self.server.serve_forever(timeout=0.02, blocking=False, handle_exit=False)
        finally:
            self.server.close_all()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


@pytest.fixture
def pyftpdlib_server(tmp_path: Path, cert_pair: CertPair) -> Iterator[ThirdPartyServer]:
    """pyftpdlib ``TLS_FTPHandler``: explicit FTPS, TLS required on control and data."""
    pytest.importorskip("OpenSSL", reason="pyftpdlib's TLS handler needs pyopenssl")
    root = tmp_path / "pyftpdlib-root"
    root.mkdir()
    thread = _PyftpdlibThread(root, cert_pair)
    thread.start()
    try:
        yield ThirdPartyServer(HOST, thread.port, root, cert_pair.cert)
    finally:
        thread.stop()
