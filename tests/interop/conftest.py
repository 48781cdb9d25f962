"""FTPS servers for interop tests, each run as a subprocess on loopback for one test.

Fixtures:

- ``pyftps_server``: ``python -m pyftps serve`` with an explicit and an implicit listener.
- ``pyftpdlib_tls_server``: pyftpdlib's ``TLS_FTPHandler`` (explicit FTPS only, TLS required on
  control and data); a known-good peer that validates the client harness on its own.
- ``endpoint``: parametrized over ``ENDPOINTS``; one (server, explicit|implicit) pair per case.
  Narrow it with ``@pytest.mark.parametrize("endpoint", [...], indirect=True)``.

Every server gets a fresh root directory, a random password, free ports and a random passive
range; its output is attached to the report of a failing test.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.certs import CertPaths
from tests.support.ports import LOOPBACK, free_port, free_port_range
from tests.support.processes import ProcessStartError, RunningProcess, ports_accept, running_process

HOST = LOOPBACK
USER = "alice"
PASSIVE_PORTS = 32
START_TIMEOUT = 10.0
START_ATTEMPTS = 3


@dataclass(frozen=True)
class FtpServer:
    """A running FTPS server as seen by clients."""

    name: str
    host: str
    port: int  # explicit FTPS (AUTH TLS)
    implicit_port: int | None  # implicit FTPS, TLS from the first byte; None when not offered
    root: Path  # directory the user is rooted at
    user: str
    password: str
    cafile: Path
    requires_session_reuse: bool  # data connections must resume the control connection's TLS session
    process: RunningProcess

    def log(self) -> str:
        """Captured output of the server process (for failure messages)."""
        return self.process.output()


@dataclass(frozen=True)
class Endpoint:
    """One way into a server: its explicit or its implicit listener."""

    server: FtpServer
    implicit: bool

    @property
    def port(self) -> int:
        if not self.implicit:
            return self.server.port
        assert self.server.implicit_port is not None, f"{self.server.name} has no implicit listener"
        return self.server.implicit_port

    @property
    def scheme(self) -> str:
        """URL scheme as curl and lftp spell it: ``ftps://`` means implicit FTPS."""
        return "ftps" if self.implicit else "ftp"

    def url(self, path: str = "") -> str:
        return f"{self.scheme}://{self.server.host}:{self.port}/{path.lstrip('/')}"

    def __str__(self) -> str:
        return f"{self.server.name}-{'implicit' if self.implicit else 'explicit'}"


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _port_clash(exc: ProcessStartError) -> bool:
    text = str(exc).lower()
    return "address already in use" in text or "errno 98" in text or "eaddrinuse" in text


@contextmanager
def _start_server(
    name: str,
    argv_for: Callable[[int, int | None, tuple[int, int]], list[str]],
    *,
    implicit: bool,
    workdir: Path,
) -> Iterator[tuple[RunningProcess, int, int | None]]:
    """Start a server on fresh free ports; retry with new ports when another process took one meanwhile."""
    for attempt in range(1, START_ATTEMPTS + 1):
        port = free_port()
        implicit_port = None
        while implicit and implicit_port in (None, port):
            implicit_port = free_port()
        argv = argv_for(port, implicit_port, free_port_range(PASSIVE_PORTS))
        listen = [port] if implicit_port is None else [port, implicit_port]
        stack = ExitStack()
        try:
            proc = stack.enter_context(
                running_process(
                    argv,
                    ready=ports_accept(HOST, *listen),
                    timeout=START_TIMEOUT,
                    name=f"{name}-{attempt}",
                    env=_subprocess_env(),
                    cwd=workdir,
                    log_dir=workdir / "logs",
                )
            )
        except ProcessStartError as exc:
            if attempt < START_ATTEMPTS and _port_clash(exc):
                continue
            raise
        with stack:
            yield proc, port, implicit_port
            if not proc.is_running():
                pytest.fail(f"{name} exited during the test\n{proc.output()}")
        return


def _fresh_dirs(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    state = tmp_path / "state"
    root.mkdir()
    state.mkdir()
    return root, state


@pytest.fixture
def pyftps_server(tmp_path: Path, tls_cert: CertPaths) -> Iterator[FtpServer]:
    """pyftps with explicit and implicit listeners, TLS required, user rooted at a fresh directory."""
    root, state = _fresh_dirs(tmp_path)
    password = secrets.token_urlsafe(12)

    def argv_for(port: int, implicit_port: int | None, passive: tuple[int, int]) -> list[str]:
        return [
            sys.executable, "-m", "pyftps", "serve",
            "--root", str(root),
            "--host", HOST,
            "--port", str(port),
            "--implicit-port", str(implicit_port),
            "--passive-ports", f"{passive[0]}-{passive[1]}",
            "--cert", str(tls_cert.cert),
            "--key", str(tls_cert.key),
            "--user", f"{USER}:{password}",
            "--state-dir", str(state),
        ]  # fmt: skip

    with _start_server("pyftps", argv_for, implicit=True, workdir=tmp_path) as (proc, port, implicit_port):
        yield FtpServer(
            name="pyftps",
            host=HOST,
            port=port,
            implicit_port=implicit_port,
            root=root,
            user=USER,
            password=password,
            cafile=tls_cert.cafile,
            requires_session_reuse=True,
            process=proc,
        )


# Run with ``python -c``; argv: host port passive_lo passive_hi cert key user password root.
PYFTPDLIB_SCRIPT = """
import logging, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import TLS_FTPHandler
from pyftpdlib.log import config_logging
from pyftpdlib.servers import FTPServer

host, port, lo, hi, cert, key, user, password, root = sys.argv[1:]
config_logging(level=logging.DEBUG)
authorizer = DummyAuthorizer()
authorizer.add_user(user, password, root, perm="elradfmwMT")


class Handler(TLS_FTPHandler):
    pass


Handler.authorizer = authorizer
Handler.certfile = cert
Handler.keyfile = key
Handler.tls_control_required = True
Handler.tls_data_required = True
Handler.passive_ports = list(range(int(lo), int(hi) + 1))
FTPServer((host, int(port)), Handler).serve_forever(handle_exit=True)
"""


@pytest.fixture
def pyftpdlib_tls_server(tmp_path: Path, tls_cert: CertPaths) -> Iterator[FtpServer]:
    """pyftpdlib ``TLS_FTPHandler``: explicit FTPS, TLS required on control and data, no reuse check."""
    root, _ = _fresh_dirs(tmp_path)
    password = secrets.token_urlsafe(12)

    def argv_for(port: int, _implicit: int | None, passive: tuple[int, int]) -> list[str]:
        return [
            sys.executable, "-c", PYFTPDLIB_SCRIPT,
            HOST, str(port), str(passive[0]), str(passive[1]),
            str(tls_cert.cert), str(tls_cert.key), USER, password, str(root),
        ]  # fmt: skip

    with _start_server("pyftpdlib", argv_for, implicit=False, workdir=tmp_path) as (proc, port, _):
        yield FtpServer(
            name="pyftpdlib",
            host=HOST,
            port=port,
            implicit_port=None,
            root=root,
            user=USER,
            password=password,
            cafile=tls_cert.cafile,
            requires_session_reuse=False,
            process=proc,
        )


SERVER_FIXTURES = {"pyftps": "pyftps_server", "pyftpdlib": "pyftpdlib_tls_server"}
ENDPOINTS = ["pyftps-explicit", "pyftps-implicit", "pyftpdlib-explicit"]
PYFTPS_ENDPOINTS = ["pyftps-explicit", "pyftps-implicit"]


@pytest.fixture(params=ENDPOINTS)
def endpoint(request: pytest.FixtureRequest) -> Endpoint:
    """A (server, explicit|implicit) pair; the server is started only for the case that needs it."""
    server_name, mode = request.param.split("-")
    server: FtpServer = request.getfixturevalue(SERVER_FIXTURES[server_name])
    return Endpoint(server, implicit=mode == "implicit")


def require_tool(name: str) -> str:
    """Path of a client binary. Missing: skip locally, but fail under CI, where .ci/run installs it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (.ci/run installs it with apt)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the output of every server a failing test used to its report."""
    report: pytest.TestReport = yield
    if report.failed and call.when == "call":
        seen: set[int] = set()
        for value in getattr(item, "funcargs", {}).values():
            server = value.server if isinstance(value, Endpoint) else value
            if isinstance(server, FtpServer) and server.process.pid not in seen:
                seen.add(server.process.pid)
                report.sections.append((f"{server.name} server output", server.log()))
    return report  # type: ignore[return-value]
