"""A real, throwaway PostgreSQL server for this directory's tests (Debian's ``postgresql`` package).

``postgres_server`` (session scope) runs ``initdb`` and ``pg_ctl start`` in a fresh temporary directory,
as the ``postgres`` user when the tests run as root (PostgreSQL refuses to run as root), listening on
127.0.0.1 on a free port with its UNIX socket inside that directory; at the end it stops the server
(``pg_ctl stop -m fast``) and removes the directory. ``pg_dsn`` gives each test its own empty schema
in that server (a DSN whose search_path points at it), so tests never see each other's tables.

Without PostgreSQL (no ``initdb`` under /usr/lib/postgresql/*/bin) or psycopg (the ``postgres``
extra) every test using these fixtures is skipped with the reason; set PYFTPS_REQUIRE_POSTGRES=1
(CI does) to make that a failure instead.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.support.ports import LOOPBACK, free_port

START_TIMEOUT = 30
DATABASE = "pyftps_test"


def unavailable(reason: str) -> NoReturn:
    """Skip (or fail, when PostgreSQL is required) the tests that need the server."""
    if os.environ.get("PYFTPS_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required (PYFTPS_REQUIRE_POSTGRES=1): {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason}", allow_module_level=True)


def require_psycopg() -> None:
    """Skip the calling test module (before it imports the PostgreSQL modules) without psycopg."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as error:
        unavailable(f"psycopg is not installed ({error}); pip install -e '.[postgres]'")


def find_bindir() -> Path | None:
    """The newest Debian PostgreSQL bin directory with initdb and pg_ctl, or the one on PATH."""

    def major(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True):
        if os.access(Path(candidate) / "initdb", os.X_OK) and os.access(Path(candidate) / "pg_ctl", os.X_OK):
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int
    run_as: list[str]

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, dbname: str = DATABASE) -> str:
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{dbname}"

    def pg_ctl(self, *args: str, timeout: float = START_TIMEOUT + 10) -> subprocess.CompletedProcess[str]:
        command = [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def start(self) -> subprocess.CompletedProcess[str]:
        options = (
            f"-c listen_addresses={LOOPBACK} -p {self.port} -k {self.root} -c max_connections=200"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        return self.pg_ctl("-l", str(self.log), "-w", "-t", str(START_TIMEOUT), "-o", options, "start")

    def restart(self) -> None:
        """Stop and start again on the same port: every open connection breaks."""
        stopped = self.pg_ctl("-m", "fast", "-w", "stop")
        assert stopped.returncode == 0, stopped.stderr
        started = self.start()
        assert started.returncode == 0, self.output(started)

    def output(self, result: subprocess.CompletedProcess[str]) -> str:
        log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        return f"{result.stdout}\n{result.stderr}\n{log}".strip()


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _prepare_root() -> tuple[Path, list[str]]:
    """A private temporary directory the server's user owns, and the prefix that runs commands as it."""
    root = Path(tempfile.mkdtemp(prefix="pyftps-pg-"))
    if os.geteuid() != 0:
        return root, []
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        shutil.rmtree(root, ignore_errors=True)
        unavailable("running as root but there is no 'postgres' user to run the server as")
    os.chown(root, user.pw_uid, user.pw_gid)
    return root, ["runuser", "-u", "postgres", "--"]


def _start(bindir: Path, root: Path, run_as: list[str]) -> PostgresServer:
    initdb = [*run_as, str(bindir / "initdb"), "-D", str(root / "data"), "-U", "postgres", "-A", "trust"]
    result = _run([*initdb, "-E", "UTF8", "--no-locale", "--no-sync"])
    if result.returncode != 0:
        unavailable(f"initdb failed: {result.stdout}\n{result.stderr}")
    for _ in range(3):  # a free port can be taken between picking it and binding it
        server = PostgresServer(bindir, root, free_port(), run_as)
        result = server.start()
        if result.returncode == 0:
            return server
    unavailable(f"pg_ctl start failed:\n{server.output(result)}")


def _create_database(server: PostgresServer) -> None:
    import psycopg

    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        try:  # a linguistic collation, as production databases have: sorting is then not byte-wise
            conn.execute(
                f"CREATE DATABASE {DATABASE} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'"
                " LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
            )
        except psycopg.Error:
            conn.execute(f"CREATE DATABASE {DATABASE}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    require_psycopg()
    bindir = find_bindir()
    if bindir is None:
        unavailable("no initdb under /usr/lib/postgresql/*/bin: apt-get install postgresql (.ci/run does)")
    root, run_as = _prepare_root()
    server: PostgresServer | None = None
    try:
        server = _start(bindir, root, run_as)
        _create_database(server)
        yield server
    finally:
        if server is not None:
            server.pg_ctl("-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def raw_sql(dsn: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on a separate autocommitted connection, bypassing the code under test."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(query, params)  # type: ignore[arg-type]  # tests pass plain str
        return cursor.fetchall() if cursor.description is not None else []


@pytest.fixture
def pg_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A DSN whose tables land in a fresh, empty schema of the test database."""
    from psycopg.conninfo import make_conninfo

    schema = f"t_{uuid.uuid4().hex[:12]}"
    base = postgres_server.dsn()
    raw_sql(base, f"CREATE SCHEMA {schema}")
    try:
        yield make_conninfo(base, options=f"-c search_path={schema}")
    finally:
        raw_sql(base, f"DROP SCHEMA {schema} CASCADE")
