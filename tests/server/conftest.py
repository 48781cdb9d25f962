"""An in-process pyftps server on loopback for end-to-end tests over real sockets.

``start_server(**overrides)`` starts a :class:`~pyftps.server.app.Server` with an explicit and an
implicit listener on ephemeral ports of 127.0.0.1, its asyncio loop running in a background thread.
Keyword overrides go to :class:`~pyftps.config.ServerConfig`; ``policy={...}`` overrides fields of
:class:`~pyftps.proto.policy.SessionPolicy`. ``ftp_server`` is one server with the defaults.

Users: ``alice``/``secret`` (all permissions) and ``bob``/``secret`` (read-only), both rooted at
``handle.root``. At teardown every client made through the handle is closed, then the fixture checks
that the server saw every connection go, stops it, and fails the test if a worker thread outlived the
server, if the loop reported an unhandled exception, or if the server logged an error (a traceback).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pyftps.auth.base import Principal
from pyftps.auth.passwords import cheap_hasher
from pyftps.auth.static import StaticAuthenticator
from pyftps.config import ServerConfig
from pyftps.proto.permissions import Permission
from pyftps.proto.policy import SessionPolicy
from pyftps.server.app import Server
from pyftps.tls.certs import ensure_self_signed
from pyftps.tls.contexts import client_context, server_context
from tests.support.ftp_raw import FtpRaw

HOST = "127.0.0.1"
PASSWORD = "secret"
TEARDOWN_GRACE = 5.0
T = TypeVar("T")


@dataclasses.dataclass
class ServerHandle:
    """A running server and what tests need to talk to it."""

    server: Server
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    root: Path
    cert: Path
    host: str
    clients: list[FtpRaw] = dataclasses.field(default_factory=list)
    loop_errors: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def explicit(self) -> tuple[str, int]:
        assert self.server.explicit_address is not None
        return self.server.explicit_address[0], self.server.explicit_address[1]

    @property
    def implicit(self) -> tuple[str, int]:
        assert self.server.implicit_address is not None
        return self.server.implicit_address[0], self.server.implicit_address[1]

    def client_context(self, *, maximum_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (and checks the host name)."""
        ctx = client_context(cafile=self.cert)
        if maximum_version is not None:
            ctx.maximum_version = maximum_version
        return ctx

    def connect(
        self,
        *,
        implicit: bool = False,
        context: ssl.SSLContext | None = None,
        greeting: bool = True,
        timeout: float = 10.0,
    ) -> FtpRaw:
        """A new control connection (closed at teardown); implicit ones are TLS from the start."""
        host, port = self.implicit if implicit else self.explicit
        client = FtpRaw.connect(
            host,
            port,
            implicit=implicit,
            context=context or self.client_context(),
            greeting=greeting,
            timeout=timeout,
        )
        self.clients.append(client)
        return client

    def login(
        self, user: str = "alice", *, implicit: bool = False, context: ssl.SSLContext | None = None
    ) -> FtpRaw:
        """A logged-in TLS session with PROT P (explicit: AUTH TLS, PBSZ 0, PROT P; implicit: as is)."""
        client = self.connect(implicit=implicit, context=context)
        if not implicit:
            client.auth_tls()
            client.prot_p()
        client.login(user, PASSWORD)
        client.expect("TYPE I", 200)
        return client

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def connection_count(self) -> int:
        async def count() -> int:
            return len(self.server.context.connections)

        return self.call(count())


StartServer = Callable[..., ServerHandle]


def _build_config(tmp: Path, overrides: dict[str, Any]) -> ServerConfig:
    policy_overrides = overrides.pop("policy", {})
    policy = dataclasses.replace(SessionPolicy(login_failure_delay=0.05), **policy_overrides)
    values: dict[str, Any] = {
        "host": HOST,
        "explicit_port": 0,
        "implicit_port": 0,
        "root": tmp / "root",
        "state_dir": tmp / "state",
        "session": policy,
        # Bounded so that a broken server fails a test instead of stalling it.
        "handshake_timeout": 10.0,
        "data_connect_timeout": 10.0,
        "data_idle_timeout": 30.0,
        "tls_close_timeout": 5.0,
    }
    values.update(overrides)
    return ServerConfig(**values)


def _wait_until(predicate: Callable[[], bool], seconds: float = TEARDOWN_GRACE) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pyftps-")]


async def _stop(server: Server) -> None:
    await server.stop()
    current = asyncio.current_task()
    leftovers = [task for task in asyncio.all_tasks() if task is not current]
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="session")
def server_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ensure_self_signed(tmp_path_factory.mktemp("server-tls"))


@pytest.fixture
def start_server(tmp_path: Path, server_cert: tuple[Path, Path]) -> Iterator[StartServer]:
    """Factory: ``start_server(data_reuse=ReusePolicy.OFF, policy={"ccc": CCCPolicy.NEVER}, ...)``."""
    handles: list[ServerHandle] = []
    errors = _ErrorRecords()
    pyftps_log = logging.getLogger("pyftps")
    pyftps_log.addHandler(errors)

    def start(**overrides: Any) -> ServerHandle:
        # users={"name": Principal(...)}: more accounts with password PASSWORD, homes set to the root.
        extra_users: dict[str, Principal] = overrides.pop("users", {})
        tmp = tmp_path / f"server{len(handles)}"
        config = _build_config(tmp, dict(overrides))
        config.root.mkdir(parents=True, exist_ok=True)
        root = config.root.resolve()
        cert, key = server_cert
        authenticator = StaticAuthenticator.from_plain(
            {
                "alice": (PASSWORD, Principal("alice", str(root), Permission.all())),
                "bob": (PASSWORD, Principal("bob", str(root), Permission.read_only())),
                **{
                    name: (PASSWORD, dataclasses.replace(principal, home=str(root)))
                    for name, principal in extra_users.items()
                },
            },
            hasher=cheap_hasher(),
        )
        loop = asyncio.new_event_loop()
        loop_errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
        thread = threading.Thread(target=loop.run_forever, name="ftp-test-loop", daemon=True)
        thread.start()

        async def make() -> Server:
            server = Server(
                config,
                authenticator=authenticator,
                ssl_context=server_context(cert, key, num_tickets=1),
            )
            await server.start()
            return server

        server = asyncio.run_coroutine_threadsafe(make(), loop).result(10)
        handle = ServerHandle(server, loop, thread, root, cert, config.host, loop_errors=loop_errors)
        handles.append(handle)
        return handle

    yield start

    problems: list[str] = []
    try:
        for handle in handles:
            problems += _teardown(handle)
        if not _wait_until(lambda: not _worker_threads()):
            problems.append(f"worker threads outlived the server: {[t.name for t in _worker_threads()]}")
    finally:
        pyftps_log.removeHandler(errors)
    problems += [f"server logged an error: {errors.format(r)}" for r in errors.records]
    if problems:
        pytest.fail("server teardown checks failed:\n" + "\n".join(problems), pytrace=False)


def _teardown(handle: ServerHandle) -> list[str]:
    problems: list[str] = []
    for client in handle.clients:
        client.close()
    if not _wait_until(lambda: handle.connection_count() == 0):
        problems.append(f"{handle.connection_count()} connection(s) still open after all clients closed")
    try:
        handle.call(_stop(handle.server))
    finally:
        handle.loop.call_soon_threadsafe(handle.loop.stop)
        handle.thread.join(TEARDOWN_GRACE)
    if handle.thread.is_alive():
        problems.append("event loop thread did not stop")
    else:
        handle.loop.run_until_complete(handle.loop.shutdown_default_executor())
        handle.loop.close()
    problems += [f"event loop error: {context.get('message')} {context!r}" for context in handle.loop_errors]
    return problems


@pytest.fixture
def ftp_server(start_server: StartServer) -> ServerHandle:
    """One server with the default policy (TLS required, PROT P required, session reuse required)."""
    return start_server()
